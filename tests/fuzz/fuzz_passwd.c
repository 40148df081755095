/*
 * fuzz_passwd.c - the passwd account module (modules/passwd/selor_passwd.c),
 * driven only through its ABI (src/accounts/selor_module.h), as Selor drives it.
 *
 * Input: the Passwd_file text; after a first NUL byte, if any, the text of
 * the Passwd_system file (used by *@domain:{SYSTEM} lines).  Both go to
 * memfds; selor_module.init loads them, lookups follow, then detach (the
 * module is never attached, so AUTH answers at once: {PLAIN} is compared
 * on the spot, a hash gives SELOR_TEMPFAIL "not attached").
 *
 * Invariants:
 *  - init returns 0, or -1 with "PATH:LINE: why", PATH one of the two
 *    files and LINE within it;
 *  - every lookup returns FOUND or NOTFOUND (AUTH: TEMPFAIL with a reason
 *    for a hash), never PENDING;
 *  - for each entry line of a file that loaded: a mailbox is FOUND as
 *    MAILBOX with user = its key, uid/gid -1..4294967294, quota >= 0, home
 *    and dlocal set; {PLAIN} authenticates with its password and not with
 *    another; an alias is FOUND with one target per comma-separated item,
 *    each the trimmed item, 1..SELOR_ALIAS_MAX_TARGETS of them; the domain
 *    of every entry is FOUND as DOMAIN; a login of the system file with a
 *    mailbox uid is FOUND as MAILBOX at a {SYSTEM} domain;
 *  - lookups of arbitrary keys taken from the input keep the same bounds.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz_util.h"
#include "selor_module.h"

extern const struct selor_module selor_module;

static char file_path[64], sys_path[64];

static const char *h_option(const char *name)
{
    if (strcmp(name, "Passwd_file") == 0)
        return file_path;
    if (strcmp(name, "Passwd_system") == 0)
        return sys_path;
    return NULL;
}

static void h_where(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "fuzz.conf:1");
}

__attribute__((format(printf, 1, 2))) static void h_log(const char *fmt, ...)
{
}

static void *h_alloc(struct selor_lookup *req, size_t size)
{
    CHECK(!"alloc is only for answers given later, and nothing is pending");
    return NULL;
}

static const struct selor_host host = {
    SELOR_MODULE_ABI, h_option, h_where, h_log, h_log, h_alloc,
};

static int lookup(void *st, enum selor_lookup_kind kind, const char *key,
                  const char *password, struct selor_lookup *req)
{
    int r;

    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->key = key;
    req->password = password;
    r = selor_module.lookup(st, req);
    CHECK(r != SELOR_PENDING);
    if (kind == SELOR_LOOKUP_AUTH && r == SELOR_TEMPFAIL)
        CHECK(req->error[0] != '\0' && memchr(req->error, '\0', sizeof(req->error)));
    else
        CHECK(r == SELOR_FOUND || r == SELOR_NOTFOUND);
    if (r != SELOR_FOUND)
        return r;
    if (kind == SELOR_LOOKUP_MAILBOX || kind == SELOR_LOOKUP_AUTH) {
        CHECK(req->mbox.user && req->mbox.home && req->mbox.dlocal);
        CHECK(req->mbox.uid >= -1 && req->mbox.uid <= 4294967294L);
        CHECK(req->mbox.gid >= -1 && req->mbox.gid <= 4294967294L);
        CHECK(req->mbox.quota >= 0);
    }
    if (kind == SELOR_LOOKUP_ALIAS) {
        CHECK(req->ntargets >= 1 && req->ntargets <= SELOR_ALIAS_MAX_TARGETS);
        for (size_t i = 0; i < req->ntargets; i++) {
            const char *t = req->targets[i];
            CHECK(t && t[0] && strlen(t) <= 512 && strchr(t, '@'));
            for (; *t; t++)
                CHECK((unsigned char)*t > ' ' && *t != 0x7f);
        }
    }
    return r;
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = strndup(s, n);

    if (d == NULL)
        abort();
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

static void check_domain_of(void *st, const char *key)
{
    struct selor_lookup req;
    const char *at = strrchr(key, '@');

    CHECK(at != NULL);
    CHECK(lookup(st, SELOR_LOOKUP_DOMAIN, at + 1, NULL, &req) == SELOR_FOUND);
}

struct ctx {
    void *st;
    char *sysdomain;   /* the first {SYSTEM} domain */
};

/* One entry line of a Passwd_file that loaded (a copy we may cut). */
static void check_entry(struct ctx *c, char *line)
{
    struct selor_lookup req;
    char *f1 = strchr(line, ':'), *end, *key, *secret;
    size_t n, k = 0;

    if (f1 == NULL)
        return;
    key = lower_dup(line, (size_t)(f1 - line));
    f1++;
    if ((end = strchr(f1, ':')) != NULL)
        *end = '\0';
    secret = f1[0] == '{' && strchr(f1, '}') ? strchr(f1, '}') + 1 : f1;
    n = (size_t)(secret - f1);
    if (n == 7 && strncasecmp(f1, "{ALIAS}", n) == 0) {
        CHECK(lookup(c->st, SELOR_LOOKUP_ALIAS, key, NULL, &req) == SELOR_FOUND);
        for (char *item = secret, *comma; item; item = comma ? comma + 1 : NULL, k++) {
            size_t len;
            if ((comma = strchr(item, ',')) != NULL)
                *comma = '\0';
            item += strspn(item, " \t");
            len = strlen(item);
            while (len && (item[len - 1] == ' ' || item[len - 1] == '\t'))
                len--;
            CHECK(k < req.ntargets);
            CHECK(strlen(req.targets[k]) == len && strncmp(req.targets[k], item, len) == 0);
        }
        CHECK(k == req.ntargets);
    } else if (n == 8 && strncasecmp(f1, "{SYSTEM}", n) == 0) {
        CHECK(key[0] == '*' && key[1] == '@');
        if (c->sysdomain == NULL && (c->sysdomain = strdup(strrchr(key, '@') + 1)) == NULL)
            abort();
    } else {
        CHECK(lookup(c->st, SELOR_LOOKUP_MAILBOX, key, NULL, &req) == SELOR_FOUND);
        CHECK(strcmp(req.mbox.user, key) == 0);
        if (n == 7 && strncasecmp(f1, "{PLAIN}", n) == 0 && strlen(secret) <= 1024) {
            char *wrong = malloc(strlen(secret) + 2);
            if (wrong == NULL)
                abort();
            CHECK(lookup(c->st, SELOR_LOOKUP_AUTH, key, secret, &req) == SELOR_FOUND);
            CHECK(strcmp(req.mbox.user, key) == 0);
            sprintf(wrong, "%sx", secret);
            CHECK(lookup(c->st, SELOR_LOOKUP_AUTH, key, wrong, &req) == SELOR_NOTFOUND);
            free(wrong);
        } else if (f1[0] == '\0') {
            CHECK(lookup(c->st, SELOR_LOOKUP_AUTH, key, "", &req) == SELOR_NOTFOUND);
        }
    }
    check_domain_of(c->st, key);
    free(key);
}

/* A line of the system file: "login:pw:uid:..." with a mailbox uid. */
static void check_sysline(void *st, const char *line, const char *domain)
{
    struct selor_lookup req;
    char key[600], *f[7];
    char *copy = strdup(line), *p = copy;
    int n = 0;
    long uid;

    if (copy == NULL)
        abort();
    for (; n < 7 && p; n++) {
        f[n] = p;
        if ((p = strchr(p, ':')) != NULL)
            *p++ = '\0';
    }
    if (n == 7 && f[0][0] && !strchr(f[0], '@') && f[0][0] != '+' && f[0][0] != '-' &&
        f[2][0] && strspn(f[2], "0123456789") == strlen(f[2]) && strlen(f[2]) < 11 &&
        strspn(f[3], "0123456789") == strlen(f[3]) && strlen(f[3]) < 11 &&
        strlen(f[0]) + strlen(domain) < 500) {
        uid = strtol(f[2], NULL, 10);
        if ((uid == 0 && strcmp(f[0], "root") == 0) ||
            (uid >= 1000 && uid != 65534 && uid <= 4294967294L)) {
            char *lk = lower_dup(f[0], strlen(f[0]));

            snprintf(key, sizeof(key), "%s@%s", lk, domain);
            CHECK(lookup(st, SELOR_LOOKUP_MAILBOX, key, NULL, &req) == SELOR_FOUND);
            CHECK(strcasecmp(req.mbox.user, f[0]) == 0);
            free(lk);
        }
    }
    free(copy);
}

/* Calls fn on the first entry lines of text (n bytes). */
static void each_line(const char *text, size_t n, int max,
                      void (*fn)(const char *line, void *arg), void *arg)
{
    for (size_t i = 0; i < n && max > 0;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - text - i) : n - i;
        char *line = strndup(text + i, len);
        const char *s;

        if (line == NULL)
            abort();
        if (len && line[len - 1] == '\r')
            line[len - 1] = '\0';
        s = line + strspn(line, " \t");
        if (*s && *s != '#') {
            fn(line, arg);
            max--;
        }
        free(line);
        i += len + 1;
    }
}

static void on_entry(const char *line, void *arg)
{
    char *copy = strdup(line);

    if (copy == NULL)
        abort();
    check_entry(arg, copy);
    free(copy);
}

static void on_sysline(const char *line, void *arg)
{
    struct ctx *c = arg;

    check_sysline(c->st, line, c->sysdomain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data, *nul = memchr(data, '\0', size);
    size_t flen = nul ? (size_t)(nul - text) : size;
    const char *sys = nul ? nul + 1 : "";
    size_t slen = nul ? size - flen - 1 : 0;
    int fd1 = fuzz_memfd(text, flen, file_path, sizeof(file_path));
    int fd2 = fuzz_memfd(sys, slen, sys_path, sizeof(sys_path));
    struct ctx c = {NULL, NULL};
    struct selor_lookup req;
    char err[512];

    memset(err, 0x55, sizeof(err));
    if (selor_module.init(&host, &c.st, err, sizeof(err)) != 0) {
        int in_sys = strncmp(err, sys_path, strlen(sys_path)) == 0 &&
                     err[strlen(sys_path)] == ':';
        const char *path = in_sys ? sys_path : file_path;
        char *end;
        long line;

        CHECK(c.st == NULL && memchr(err, '\0', sizeof(err)));
        if (strncmp(err, path, strlen(path)) != 0 || err[strlen(path)] != ':') {
            fprintf(stderr, "init: %s\n", err);
            CHECK(!"an init error that does not name its file");
        }
        line = strtol(err + strlen(path) + 1, &end, 10);
        CHECK(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
        CHECK(line >= 1 && line <= fuzz_lines(in_sys ? sys : text, in_sys ? slen : flen));
    } else {
        CHECK(c.st != NULL);
        each_line(text, flen, 32, on_entry, &c);
        if (c.sysdomain)
            each_line(sys, slen, 32, on_sysline, &c);
        /* Keys straight from the input: whatever they are, bounded answers. */
        for (size_t i = 0, k = 0; i < flen && k < 8; k++) {
            size_t len = 0;
            char *key;
            while (i + len < flen && text[i + len] != ':' && text[i + len] != '\n')
                len++;
            if ((key = strndup(text + i, len)) == NULL)
                abort();
            for (int kind = SELOR_LOOKUP_DOMAIN; kind <= SELOR_LOOKUP_AUTH; kind++)
                lookup(c.st, (enum selor_lookup_kind)kind, key, key, &req);
            free(key);
            i += len + 1;
        }
        selor_module.detach(c.st);
        free(c.sysdomain);
    }
    close(fd1);
    close(fd2);
    return 0;
}
