/*
 * selor_module.h - the ABI between Selor and its loadable modules.
 *
 * A module is a shared object that exports one symbol, `selor_module`, of
 * type `const struct selor_module`.  Selor refuses a module whose `abi`
 * differs from SELOR_MODULE_ABI; any incompatible change to this file
 * increments it.  Account modules answer four kinds of lookup (domain,
 * mailbox, alias, authentication), each either at once or later through a
 * callback, so a module that talks to a database never blocks Selor's
 * event loop.  A TLS module (Tls_module) offers a TLS engine instead:
 * connections driven through memory buffers, so that Selor's transport
 * (src/core/stream.c) moves the bytes on its own event loop and nothing
 * blocks.  Must not: include Selor's internal headers (a module sees
 * only this file and libuv).
 *
 * Life of a module in a running node:
 *   master:  dlopen, init()      read and check options, fail with a message
 *   child:   attach(loop)        per process: timers, connections, files
 *   child:   lookup() ...        from the event loop thread only
 *   child:   detach()            at exit
 * Rules every module keeps:
 *   - lookup() may be called before attach() (selor -t, tools): answer at
 *     once from what init() loaded, or SELOR_TEMPFAIL.
 *   - a module that ever answers SELOR_PENDING implements cancel(); after
 *     cancel() it never touches the request again.
 *   - detach() may be called without attach(); it releases the module's
 *     handles (the loop goes on running for their close callbacks) and frees
 *     the state once they are closed; done() is not called after it.
 *   - the master, which ran init(), exits without calling detach().
 */
#ifndef SELOR_MODULE_H
#define SELOR_MODULE_H

#include <stddef.h>
#include <uv.h>

#define SELOR_MODULE_ABI 2

enum selor_lookup_kind {
    SELOR_LOOKUP_DOMAIN,   /* key: domain; found = it is a local domain */
    SELOR_LOOKUP_MAILBOX,  /* key: user@domain; fills mbox */
    SELOR_LOOKUP_ALIAS,    /* key: user@domain or @domain; fills targets */
    SELOR_LOOKUP_AUTH,     /* key: login name, password set; fills mbox.user */
    /* key: domain; fills targets with the address of every mailbox of the
     * domain (at most SELOR_LIST_MAX_TARGETS), for broadcast aliases
     * (Allow_broadcasts).  Added within ABI 2: a module without the bit in
     * kinds is simply not asked. */
    SELOR_LOOKUP_DOMAIN_MAILBOXES,
};

enum selor_lookup_result {
    SELOR_FOUND = 0,       /* for AUTH: the password is right */
    SELOR_NOTFOUND = 1,    /* for AUTH: unknown user or wrong password */
    SELOR_TEMPFAIL = 2,    /* cannot tell now (database down): try later */
    SELOR_PENDING = 3,     /* returned by lookup(): done() will be called */
};

struct selor_mailbox {
    const char *user;     /* %l: the name the MDA delivers to */
    const char *home;     /* %C: home or mail directory ("" unknown) */
    long uid, gid;        /* -1 = unknown */
    const char *dlocal;   /* this mailbox's own MDA command ("" = Dlocal) */
    long long quota;      /* bytes; 0 = no quota */
};

#define SELOR_ALIAS_MAX_TARGETS 1000
#define SELOR_LIST_MAX_TARGETS 10000

struct selor_lookup {
    /* set by Selor */
    enum selor_lookup_kind kind;
    const char *key;        /* lower case for DOMAIN, MAILBOX and ALIAS */
    const char *password;   /* AUTH only */
    void (*done)(struct selor_lookup *req);  /* after SELOR_PENDING */
    void *owner;            /* Selor's; modules leave it alone */

    /* set by the module before returning a result or calling done */
    int result;                   /* enum selor_lookup_result */
    struct selor_mailbox mbox;    /* MAILBOX, AUTH */
    const char **targets;         /* ALIAS: addresses the alias expands to */
    size_t ntargets;
    char error[160];              /* TEMPFAIL: why, for Warning_log */

    /*
     * Strings and arrays the module puts in the result must stay valid
     * until done() returns (or, for an immediate answer, until lookup()'s
     * caller returns to the loop); the module may allocate them with
     * host->alloc, which ties them to this request.
     */
    void *module_data;            /* the module's own, per request */
};

struct selor_host {
    unsigned abi;
    /* The value of an option in selor.conf (quotes removed), or NULL. */
    const char *(*option)(const char *name);
    /* Where an option was set, for error messages: "file:line" in out. */
    void (*option_where)(const char *name, char *out, size_t outlen);
    void (*log_warn)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
    void (*log_info)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
    /* Memory freed with the request. */
    void *(*alloc)(struct selor_lookup *req, size_t size);
};

struct selor_module_option {
    const char *name;   /* as written in selor.conf */
    int is_text;        /* 1: "quoted text", 0: number */
};

/* A result of selor_tls_ops.read or .write below 0. */
#define SELOR_TLS_EOF   (-1)   /* the peer closed TLS (close_notify) */
#define SELOR_TLS_ERROR (-2)   /* handshake or record error: see .error */

/*
 * A TLS engine.  The module's init() loads the certificate, key and CA
 * files (as root, before privileges drop); a connection is then fed the
 * bytes that came from the network and gives back the bytes to send.
 * Every call returns at once.
 */
struct selor_tls_ops {
    /* A connection: server 1 (SMTP in) or 0 (SMTP out, host: the name to
     * verify and send as SNI, may be NULL); NULL if the module cannot (no
     * certificate for a server), with why in err. */
    void *(*conn_new)(void *state, int server, const char *host, char *err,
                      size_t errlen);
    void (*conn_free)(void *conn);
    /* Bytes from the network. */
    void (*feed)(void *conn, const char *data, size_t len);
    /* Drives the handshake and reads: > 0 bytes of plaintext in out, 0 when
     * it needs more input, SELOR_TLS_EOF or SELOR_TLS_ERROR. */
    long (*read)(void *conn, char *out, size_t outlen);
    /* Plaintext to send (after the handshake): len, or SELOR_TLS_ERROR. */
    long (*write)(void *conn, const char *data, size_t len);
    /* Bytes waiting to go to the network: copies up to outlen of them. */
    size_t (*drain)(void *conn, char *out, size_t outlen);
    size_t (*pending)(void *conn);
    int (*handshake_done)(void *conn);
    /* After the handshake: "TLSv1.3", the cipher's name, its bits. */
    const char *(*version)(void *conn);
    const char *(*cipher)(void *conn);
    int (*bits)(void *conn);
    /* The peer's certificate verified (chain, and for a client the host). */
    int (*verified)(void *conn);
    /* Why the last call failed. */
    const char *(*error)(void *conn);
    /* Queues a close_notify (drain it before closing the socket). */
    void (*shutdown)(void *conn);
    /* A new server certificate: cert holds the chain (PEM), key the
     * private key (PEM), as read from Tls_pubkey and Tls_privkey by the
     * master (root) on SIGHUP.  Connections made from then on use it;
     * open ones keep theirs.  0, or -1 with err (the old one stays). */
    int (*server_pem)(void *state, const char *cert, size_t certlen, const char *key,
                      size_t keylen, char *err, size_t errlen);
};

struct selor_module {
    unsigned abi;                                /* SELOR_MODULE_ABI */
    const char *name;                            /* the name in Modseq_* */
    const char *version;
    const struct selor_module_option *options;   /* ends with {NULL, 0} */
    /* Checks options, loads data; 0, or -1 with a message in err. */
    int (*init)(const struct selor_host *host, void **state, char *err,
                size_t errlen);
    int (*attach)(void *state, uv_loop_t *loop);
    void (*detach)(void *state);
    /* Which lookup kinds this module answers (bit 1 << kind). */
    unsigned kinds;
    /* Returns a selor_lookup_result; SELOR_PENDING means done() follows. */
    int (*lookup)(void *state, struct selor_lookup *req);
    /* The owner of a pending request went away: done() must not be called. */
    void (*cancel)(void *state, struct selor_lookup *req);
    /* A TLS module's engine (NULL for account modules; kinds is then 0). */
    const struct selor_tls_ops *tls;
};

#endif
