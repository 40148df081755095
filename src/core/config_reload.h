/*
 * config_reload.h - selor.conf read again while running (config_reload.c).
 */
#ifndef SELOR_CONFIG_RELOAD_H
#define SELOR_CONFIG_RELOAD_H

#include "buf.h"
#include "config.h"

/* Whether option idx takes effect without a restart. */
int config_reload_live(int idx);
/* How many options need a restart (the table's size, for its test). */
int config_reload_restart_count(void);

/*
 * Reads selor_conf's file again.  0: a new generation is current (options
 * that need a restart keep their running values); 1: nothing live changed;
 * -1: the file failed (FILE:LINE: why in err) and nothing changed.  claim
 * checks the modules' options as at start (NULL: not checked).  report
 * gets one line an option: "changed NAME" or "restart FILE:LINE: ...".
 */
int config_reload(config_claim_fn *claim, void *claim_arg, struct buf *err,
                  struct buf *report);
/* The same in a child: the master has said what changed or why not. */
void config_reload_quiet(config_claim_fn *claim, void *claim_arg);

#endif
