/*
 * selorctl_summary.h - `selorctl queue --summary` (selorctl_summary.c).
 */
#ifndef SELOR_SELORCTL_SUMMARY_H
#define SELOR_SELORCTL_SUMMARY_H

/* 1 when a node holds the file of qid (it is being delivered). */
typedef int ctl_summary_holder_fn(const char *qid, void *arg);

/* Prints every queue's summary; 1 when a queue cannot be read. */
int ctl_summary(ctl_summary_holder_fn *holder, void *holder_arg);

#endif
