/*
 * sysload.h - the machine's 1-minute load average, for Lavg_negative,
 * Lavg_queue and the load balancer's agent.  Owns: reading it at most once
 * a second per process (the kernel updates it every 5 s, and each read is
 * a syscall; the SMTP side asks at every MAIL).  Must not: decide anything
 * from it.
 */
#ifndef SELOR_SYSLOAD_H
#define SELOR_SYSLOAD_H

/* The load average, 0.0 when it cannot be read. */
double sysload_avg1(void);

#endif
