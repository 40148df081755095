/*
 * smtp_worker.h - one SMTP worker process: its event loop, its listening
 * socket, the sessions it serves and what they share.
 *
 * Owns: accepting connections, the worker's spool handle, queue ID
 * generator and read buffer, and a clean stop on SIGTERM (no new
 * connections; open transactions finish or are aborted; then exit).
 * Must not: speak SMTP (smtp_server.c does) or touch the spool directly.
 */
#ifndef SELOR_SMTP_WORKER_H
#define SELOR_SMTP_WORKER_H

#include <uv.h>

#include "queue_id.h"
#include "spool.h"

struct dns;
struct selor_node;
struct smtp_session;

#define SMTP_WORKER_RBUF 65536
#define SMTP_WORKER_PBUF 16384     /* plaintext of one TLS record */

struct smtp_worker {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sig_term, sig_int, sig_usr1, sig_usr2;
    uv_timer_t stop_timer;
    uv_prepare_t log_flush;          /* buffered log lines, once a loop turn */
    struct selor_node *node;
    int index;                     /* 0.. among the node's workers */
    struct spool spool;
    struct dns *dns;               /* Resolve_all, From_level_check, rules */
    struct rules_exec_pool *exec;  /* the rules' programs (Exec?, Exec!) */
    struct queue_id_gen idgen;
    struct smtp_session *sessions; /* every open session */
    unsigned long nsessions, next_cid;
    int stopping;
    char rbuf[SMTP_WORKER_RBUF];   /* one read at a time per process */
    char pbuf[SMTP_WORKER_PBUF];   /* what TLS decrypted from it */
};

/* Runs a worker in this (forked) process; never returns. */
void smtp_worker_main(struct selor_node *node, int index, int listen_fd)
    __attribute__((noreturn));

/* A session was freed (the worker may be waiting for the last one). */
void smtp_worker_session_gone(struct smtp_worker *w);

#endif
