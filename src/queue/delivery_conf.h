/*
 * delivery_conf.h - the configuration one delivery run reads.
 *
 * Owns: turning the settings a connection's rules made (Def!, recorded in
 * the l file's "set" records) into the run's view of the options (an
 * overlay of the loaded configuration, in the run's memory), the log line
 * that says which were applied, and the choices that read that view for a
 * mailbox: its MDA command (Dlocal, Dlocal_type, Adlocal_allowed).
 * Must not: change the loaded configuration (selor_conf is shared by every
 * run), read or write files, or start anything.
 */
#ifndef SELOR_DELIVERY_CONF_H
#define SELOR_DELIVERY_CONF_H

#include "arena.h"
#include "config.h"
#include "queue_file.h"

/*
 * The configuration for a run of message qid: base itself when the file
 * has no settings, else an overlay of base in mem with every setting that
 * is an option Def! may change and a valid value applied (the others are
 * warned about and skipped), and one Central_log line listing what was.
 */
const struct config *delivery_conf_for(const struct config *base, const char *qid,
                                       const struct queue_file *qf, struct arena *mem);
/*
 * The MDA command for a mailbox of rcpt whose account asks for `own`
 * ("" for none): own when Adlocal_allowed lists its program and it holds
 * nothing a shell would interpret (then run without a shell: *type 0),
 * else Dlocal with Dlocal_type (and a warning when own was refused).
 */
const char *delivery_conf_mda_command(const struct config *c, const char *qid,
                                      const char *rcpt, const char *own, int *type);

#endif
