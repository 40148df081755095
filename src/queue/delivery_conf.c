/*
 * delivery_conf.c - the configuration one delivery run reads (see
 * delivery_conf.h).
 *
 * Owns: a run's overlay of the options and the decisions read from it for
 * a mailbox.  Must not: write selor_conf, or keep anything past the run
 * (everything lives in the run's arena).
 */
#include <ctype.h>
#include <string.h>

#include "buf.h"
#include "delivery_conf.h"
#include "log.h"

/* A value as the log shows it: text quoted, control bytes as '?' so one
 * setting cannot break the line. */
static void dc_log_value(struct buf *out, const struct config *c, int idx)
{
    char tmp[32];
    const char *v = config_value_text(c, idx, tmp, sizeof(tmp));
    int text = config_option(idx)->is_text;

    buf_printf(out, " %s=%s", config_option(idx)->name, text ? "\"" : "");
    for (; *v; v++)
        buf_putc(out, (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v);
    if (text)
        buf_putc(out, '"');
}

/* One setting onto the overlay; 0, or -1 with why in err. */
static int dc_apply(struct config *ov, struct arena *mem, const struct qf_setting *s,
                    int *idx, struct buf *err)
{
    *idx = config_option_index(s->name);
    if (*idx < 0) {
        buf_printf(err, "unknown option");
        return -1;
    }
    if (!(config_option(*idx)->flags & CONF_F_DEF)) {
        buf_printf(err, "%s cannot be changed per connection", config_option(*idx)->name);
        return -1;
    }
    return config_def_set(ov, mem, *idx, s->value, err);
}

const struct config *delivery_conf_for(const struct config *base, const char *qid,
                                       const struct queue_file *qf, struct arena *mem)
{
    struct buf err = BUF_INIT(0), applied = BUF_INIT(0);
    struct config *ov;
    int idx;

    if (qf->nsettings == 0)
        return base;
    ov = config_overlay(base, mem);
    for (size_t i = 0; i < qf->nsettings; i++) {
        buf_reset(&err);
        if (dc_apply(ov, mem, &qf->settings[i], &idx, &err) < 0) {
            log_warn("%s: setting %s=\"%.200s\" from the connection is skipped: %s", qid,
                     qf->settings[i].name, qf->settings[i].value, buf_cstr(&err));
            continue;
        }
        dc_log_value(&applied, ov, idx);
    }
    if (applied.len)
        log_central(qid, "settings from the connection:%s", buf_cstr(&applied));
    buf_free(&err);
    buf_free(&applied);
    return ov;
}

/*
 * A mailbox's own command (its account's dlocal) is one program that
 * Adlocal_allowed lists, and plain arguments: nothing a shell would
 * interpret, and it never runs through one (Dlocal_type does not apply).
 * The account database is not trusted to write shell.  "" when fine, else
 * why not.
 */
static const char *dc_own_command_refused(const char *own, const char *allowed)
{
    size_t n = strcspn(own, " \t");
    int listed = 0;

    for (const char *p = allowed; *p && !listed; ) {
        size_t k = strcspn(p, " \t,");
        listed = k == n && strncmp(p, own, n) == 0;
        p += k;
        p += strspn(p, " \t,");
    }
    if (!listed)
        return "which Adlocal_allowed does not list";
    for (const char *p = own; *p; p++) {
        if (isalnum((unsigned char)*p) || strchr("/._-+,:=@% \t", *p))
            continue;
        if (*p == '<' && (p[1] == '\0' || p[1] == ' ' || p[1] == '\t') &&
            (p == own || p[-1] == ' ' || p[-1] == '\t'))
            continue;   /* a lone "<", as the reference's examples end */
        return "with characters a shell would interpret";
    }
    return "";
}

const char *delivery_conf_mda_command(const struct config *c, const char *qid,
                                      const char *rcpt, const char *own, int *type)
{
    const char *why;

    *type = (int)c->Dlocal_type;
    if (own[0] == '\0')
        return c->Dlocal;
    why = dc_own_command_refused(own, c->Adlocal_allowed);
    if (why[0] == '\0') {
        *type = 0;
        return own;
    }
    log_warn("%s: mailbox %s asks for MDA \"%.*s\", %s; using Dlocal", qid,
             rcpt ? rcpt : "?", (int)strcspn(own, " \t"), own, why);
    return c->Dlocal;
}
