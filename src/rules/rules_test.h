/*
 * rules_test.h - the dry run of `selorctl rules test` (see rules_test.c).
 */
#ifndef SELOR_RULES_TEST_H
#define SELOR_RULES_TEST_H

#include "rules.h"

struct module_set;

#define RULES_TEST_MAX_RCPT 64

struct rules_test_args {
    const char *ip, *helo, *auth, *from, *data;
    const char *rcpt[RULES_TEST_MAX_RCPT];
    size_t nrcpt;
};

/* Runs the session's events on rules_current for a made-up client and
 * prints what ran; the modules are attached to the run's loop.  0, or 1
 * when the run cannot start. */
int rules_test_run(const struct config *c, struct module_set *mods,
                   const struct rules_test_args *a);

#endif
