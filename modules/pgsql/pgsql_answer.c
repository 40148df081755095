/*
 * pgsql_answer.c - what a query's rows mean, and handing an answer to
 * Selor: a DOMAIN row says "local", a MAILBOX or AUTH row is read by
 * column name (user, home, uid, gid, dlocal, quota, password), ALIAS and
 * DOMAIN_MAILBOXES rows are one address each (first column).  AUTH
 * compares the password ({PLAIN} at once in constant time, crypt schemes
 * on libuv's thread pool).
 * Owns: struct pgsql_answer and the password-check jobs.
 * Must not: talk to the database, call crypt on the loop thread, keep the
 * client's password anywhere but the job's own wiped copy, or touch a
 * request once cancelled (pr->req is then NULL).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql.h"
#include "../common/pwscheme.h"
#include "../common/reqmem.h"

void pgsql_answer_free(struct pgsql_answer *a)
{
    if (a == NULL)
        return;
    free((char *)a->mbox.user);
    free((char *)a->mbox.home);
    free((char *)a->mbox.dlocal);
    if (a->secret != NULL) {
        explicit_bzero(a->secret, strlen(a->secret));
        free(a->secret);
    }
    for (size_t i = 0; i < a->ntargets; i++)
        free(a->targets[i]);
    free(a->targets);
    free(a);
}

/* A column of row 0 by name: its text, or NULL when missing or NULL. */
static const char *pgsql_col(const PGresult *res, const char *name)
{
    int col = PQfnumber(res, name);

    if (col < 0 || PQgetisnull(res, 0, col))
        return NULL;
    return PQgetvalue(res, 0, col);
}

/* A number column; def when missing, NULL or not a number. */
static long long pgsql_col_num(const PGresult *res, const char *name, long long def)
{
    const char *s = pgsql_col(res, name);
    char *end;
    long long v;

    if (s == NULL || s[0] == '\0')
        return def;
    errno = 0;
    v = strtoll(s, &end, 10);
    return errno || *end != '\0' ? def : v;
}

static int pgsql_row_mailbox(const PGresult *res, struct pgsql_answer *a)
{
    const char *user = pgsql_col(res, "user");
    const char *home = pgsql_col(res, "home");
    const char *dlocal = pgsql_col(res, "dlocal");
    const char *secret = pgsql_col(res, "password");

    a->has_user = user != NULL && user[0] != '\0';
    a->mbox.user = strdup(a->has_user ? user : "");
    a->mbox.home = strdup(home ? home : "");
    a->mbox.dlocal = strdup(dlocal ? dlocal : "");
    a->secret = strdup(secret ? secret : "");
    a->mbox.uid = (long)pgsql_col_num(res, "uid", -1);
    a->mbox.gid = (long)pgsql_col_num(res, "gid", -1);
    a->mbox.quota = pgsql_col_num(res, "quota", 0);
    if (a->mbox.quota < 0)
        a->mbox.quota = 0;
    return a->mbox.user && a->mbox.home && a->mbox.dlocal && a->secret ? 0 : -1;
}

/* First column of every row, NULLs and empty values skipped; at most max
 * (the rest is left out, with a warning). */
static int pgsql_row_targets(const PGresult *res, struct pgsql_answer *a, size_t max,
                             const struct selor_host *host)
{
    size_t rows = (size_t)PQntuples(res);

    if (rows > max) {
        host->log_warn("pgsql: a list query returned %zu rows; only the first "
                       "%zu are used", rows, max);
        rows = max;
    }
    if ((a->targets = calloc(rows ? rows : 1, sizeof(*a->targets))) == NULL)
        return -1;
    for (size_t i = 0; i < rows; i++) {
        const char *t = PQgetisnull(res, (int)i, 0) ? "" : PQgetvalue(res, (int)i, 0);
        if (t[0] == '\0')
            continue;
        if ((a->targets[a->ntargets] = strdup(t)) == NULL)
            return -1;
        a->ntargets++;
    }
    if (a->ntargets == 0)
        a->result = SELOR_NOTFOUND;
    return 0;
}

struct pgsql_answer *pgsql_answer_from(int kind, const PGresult *res,
                                       const struct selor_host *host,
                                       char *err, size_t errlen)
{
    struct pgsql_answer *a;
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(res);
        snprintf(err, errlen, "query failed: %.*s", (int)strcspn(msg, "\n"), msg);
        return NULL;
    }
    if (PQnfields(res) < 1 && PQntuples(res) > 0) {
        snprintf(err, errlen, "the query returns no column");
        return NULL;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->result = PQntuples(res) > 0 ? SELOR_FOUND : SELOR_NOTFOUND;
    if (a->result == SELOR_FOUND && kind == SELOR_LOOKUP_MAILBOX)
        rc = pgsql_row_mailbox(res, a);
    else if (a->result == SELOR_FOUND && kind == SELOR_LOOKUP_AUTH)
        rc = PQfnumber(res, "password") < 0 ? -2 : pgsql_row_mailbox(res, a);
    else if (a->result == SELOR_FOUND && kind == SELOR_LOOKUP_ALIAS)
        rc = pgsql_row_targets(res, a, SELOR_ALIAS_MAX_TARGETS, host);
    else if (a->result == SELOR_FOUND && kind == SELOR_LOOKUP_DOMAIN_MAILBOXES)
        rc = pgsql_row_targets(res, a, SELOR_LIST_MAX_TARGETS, host);
    if (rc < 0) {
        snprintf(err, errlen, "%s", rc == -2 ? "the auth query returns no "
                 "\"password\" column" : "out of memory");
        pgsql_answer_free(a);
        return NULL;
    }
    return a;
}

/* ---- into the request ---------------------------------------------------- */

static int pgsql_give_mailbox(const struct selor_host *host, struct selor_lookup *req,
                              const struct pgsql_answer *a)
{
    /* No "user" column: the address, as the passwd module does. */
    const char *user = a->has_user ? a->mbox.user : req->key;

    req->mbox = a->mbox;
    req->mbox.user = reqmem_strdup(host, req, user);
    req->mbox.home = reqmem_strdup(host, req, a->mbox.home);
    req->mbox.dlocal = reqmem_strdup(host, req, a->mbox.dlocal);
    return req->mbox.user && req->mbox.home && req->mbox.dlocal ? 0 : -1;
}

static int pgsql_give_targets(const struct selor_host *host, struct selor_lookup *req,
                              const struct pgsql_answer *a)
{
    const char **t = host->alloc(req, (a->ntargets ? a->ntargets : 1) * sizeof(*t));

    if (t == NULL)
        return -1;
    for (size_t i = 0; i < a->ntargets; i++)
        if ((t[i] = reqmem_strdup(host, req, a->targets[i])) == NULL)
            return -1;
    req->targets = t;
    req->ntargets = a->ntargets;
    return 0;
}

static int pgsql_tempfail(struct selor_lookup *req, const char *why)
{
    snprintf(req->error, sizeof(req->error), "pgsql: %s", why);
    return SELOR_TEMPFAIL;
}

/* ---- AUTH: the password check ---------------------------------------------- */

struct pgsql_auth_job {
    uv_work_t work;
    struct pgsql_req *pr;
    int ok;                       /* pwscheme_match: 1, 0 or -1 */
    char *password, *hash;        /* in text[] */
    size_t textlen;
    char text[];
};

static void pgsql_auth_work(uv_work_t *w)
{
    struct pgsql_auth_job *job = PGSQL_CONTAINER(w, struct pgsql_auth_job, work);

    job->ok = pwscheme_match_crypt(job->password, job->hash);
}

static void pgsql_auth_after(uv_work_t *w, int status)
{
    struct pgsql_auth_job *job = PGSQL_CONTAINER(w, struct pgsql_auth_job, work);
    struct pgsql_req *pr = job->pr;
    struct pgsql_state *st = pr->st;
    struct selor_lookup *req = pr->req;
    int ok = status < 0 ? -1 : job->ok;

    explicit_bzero(job->text, job->textlen);
    free(job);
    st->busy--;
    pgsql_req_free(pr);
    if (req != NULL && !st->detaching) {   /* no done() after detach */
        req->result = ok > 0 ? SELOR_FOUND : ok == 0 ? SELOR_NOTFOUND
                      : pgsql_tempfail(req, "password check failed");
        req->done(req);
    }
    pgsql_maybe_free(st);
}

static int pgsql_auth_queue(struct pgsql_state *st, struct pgsql_req *pr,
                            struct selor_lookup *req, const char *hash)
{
    size_t lp = strlen(req->password) + 1, lh = strlen(hash) + 1;
    struct pgsql_auth_job *job;

    if (st->loop == NULL || st->detaching)
        return pgsql_tempfail(req, "module not attached to an event loop");
    if ((job = calloc(1, sizeof(*job) + lp + lh)) == NULL)
        return pgsql_tempfail(req, "out of memory");
    job->textlen = lp + lh;
    job->password = memcpy(job->text, req->password, lp);
    job->hash = memcpy(job->text + lp, hash, lh);
    job->pr = pr;
    if (uv_queue_work(st->loop, &job->work, pgsql_auth_work, pgsql_auth_after) < 0) {
        explicit_bzero(job->text, job->textlen);
        free(job);
        return pgsql_tempfail(req, "cannot queue the password check");
    }
    pr->where = PGSQL_CHECKING;
    req->module_data = pr;
    st->busy++;
    return SELOR_PENDING;
}

static int pgsql_give_auth(struct pgsql_state *st, struct pgsql_req *pr,
                           struct selor_lookup *req, const struct pgsql_answer *a)
{
    const char *secret, *name;
    size_t namelen;
    int scheme = pwscheme_parse(a->secret, &secret, &name, &namelen);

    if (req->password == NULL || strlen(req->password) > PGSQL_PASSWORD_MAX)
        return SELOR_NOTFOUND;
    if (scheme == PWSCHEME_NONE)
        return SELOR_NOTFOUND;
    if (scheme < 0 || pwscheme_check_secret(scheme, secret) != NULL) {
        st->host->log_warn("pgsql: the stored password of %.200s is not a "
                           "usable {PLAIN} or crypt scheme value: login refused",
                           req->key);
        return SELOR_NOTFOUND;
    }
    if (pgsql_give_mailbox(st->host, req, a) < 0)
        return pgsql_tempfail(req, "out of memory");
    if (scheme == PWSCHEME_PLAIN)
        return pwscheme_match(scheme, req->password, secret) ? SELOR_FOUND
               : SELOR_NOTFOUND;
    return pgsql_auth_queue(st, pr, req, secret);
}

int pgsql_answer_give(struct pgsql_state *st, struct pgsql_req *pr,
                      struct selor_lookup *req, const struct pgsql_answer *a)
{
    int rc = 0;

    if (a->result != SELOR_FOUND)
        return SELOR_NOTFOUND;
    switch (req->kind) {
    case SELOR_LOOKUP_DOMAIN:
        break;
    case SELOR_LOOKUP_MAILBOX:
        rc = pgsql_give_mailbox(st->host, req, a);
        break;
    case SELOR_LOOKUP_AUTH:
        return pgsql_give_auth(st, pr, req, a);
    case SELOR_LOOKUP_ALIAS:
    case SELOR_LOOKUP_DOMAIN_MAILBOXES:
        rc = pgsql_give_targets(st->host, req, a);
        break;
    }
    return rc < 0 ? pgsql_tempfail(req, "out of memory") : SELOR_FOUND;
}
