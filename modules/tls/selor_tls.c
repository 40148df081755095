/*
 * selor_tls.c - the TLS engine (Tls_module), on OpenSSL 3.
 *
 * Owns: the server and client contexts (Tls_pubkey, Tls_privkey,
 * Tls_cafile read in init(), as root), and connections driven through
 * memory BIOs: Selor feeds what the socket gave and drains what must go to
 * it, so a handshake never blocks an event loop.  TLS 1.2 and 1.3 only, no
 * renegotiation, buffers released while a connection is idle (thousands of
 * idle sessions).  Must not: touch a socket, or know SMTP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "selor_module.h"

/* Forward secrecy and AEAD for TLS 1.2; TLS 1.3 keeps OpenSSL's suites. */
#define TLS_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!RC4:!3DES"

struct tls_state {
    const struct selor_host *host;
    SSL_CTX *server;          /* NULL without Tls_pubkey/Tls_privkey */
    SSL_CTX *client;
};

struct tls_conn {
    SSL *ssl;
    BIO *in, *out;
    char err[200];
};

static const struct selor_module_option tls_options[] = {
    {NULL, 0},
};

static void tls_last_error(char *out, size_t outlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[160] = "";

    if (e)
        ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    snprintf(out, outlen, "%s%s%s", what, msg[0] ? ": " : "", msg);
}

static const char *tls_opt(const struct selor_host *h, const char *name)
{
    const char *v = h->option(name);

    return v && v[0] ? v : NULL;
}

/* "file:line: Tls_x \"path\": why", as selor -t reports config errors. */
static int tls_fail(const struct selor_host *h, const char *opt, const char *why,
                    char *err, size_t errlen)
{
    char where[300];

    h->option_where(opt, where, sizeof(where));
    snprintf(err, errlen, "%s: %s \"%s\": %s", where, opt, tls_opt(h, opt) ? tls_opt(h, opt) : "",
             why);
    return -1;
}

static void tls_ctx_common(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12);
}

/* The server context from the files named now; NULL with err. */
static SSL_CTX *tls_server_ctx(const struct selor_host *h, char *err, size_t errlen)
{
    const char *pub = tls_opt(h, "Tls_pubkey"), *priv = tls_opt(h, "Tls_privkey");
    const char *ca = tls_opt(h, "Tls_cafile");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[200];

    tls_ctx_common(ctx);
    if (SSL_CTX_use_certificate_chain_file(ctx, pub) != 1) {
        tls_last_error(why, sizeof(why), "cannot load the certificate chain");
        tls_fail(h, "Tls_pubkey", why, err, errlen);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, priv ? priv : pub, SSL_FILETYPE_PEM) != 1) {
        tls_last_error(why, sizeof(why), "cannot load the private key");
        tls_fail(h, priv ? "Tls_privkey" : "Tls_pubkey", why, err, errlen);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_last_error(why, sizeof(why), "the key does not match the certificate");
        tls_fail(h, priv ? "Tls_privkey" : "Tls_pubkey", why, err, errlen);
    } else if (ca && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        tls_last_error(why, sizeof(why), "cannot load the CA file");
        tls_fail(h, "Tls_cafile", why, err, errlen);
    } else {
        /* one ticket is enough: clients reconnect, they rarely resume twice */
        SSL_CTX_set_num_tickets(ctx, 1);
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *tls_client_ctx(const struct selor_host *h, char *err, size_t errlen)
{
    const char *ca = tls_opt(h, "Tls_cafile");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[200];

    tls_ctx_common(ctx);
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_last_error(why, sizeof(why), "cannot load the CA file");
        tls_fail(h, "Tls_cafile", why, err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* verified or not is decided per delivery (Tls_delivery): the
     * handshake goes on and the result is read afterwards */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

static int tls_init(const struct selor_host *host, void **state, char *err, size_t errlen)
{
    struct tls_state *st = calloc(1, sizeof(*st));

    st->host = host;
    if (tls_opt(host, "Tls_pubkey") && !(st->server = tls_server_ctx(host, err, errlen)))
        goto fail;
    if (!tls_opt(host, "Tls_pubkey") && tls_opt(host, "Tls_privkey")) {
        tls_fail(host, "Tls_privkey", "a key without a certificate (Tls_pubkey)", err, errlen);
        goto fail;
    }
    if (!(st->client = tls_client_ctx(host, err, errlen)))
        goto fail;
    *state = st;
    return 0;
fail:
    SSL_CTX_free(st->server);
    free(st);
    return -1;
}

/* The chain and key from memory (SIGHUP: the master read the files). */
static SSL_CTX *tls_server_ctx_pem(const struct tls_state *st, const char *cert,
                                   size_t certlen, const char *key, size_t keylen,
                                   char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *cb = BIO_new_mem_buf(cert, (int)certlen), *kb = BIO_new_mem_buf(key, (int)keylen);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    const char *ca = tls_opt(st->host, "Tls_cafile");
    int ok = x && pk && SSL_CTX_use_certificate(ctx, x) == 1;

    tls_ctx_common(ctx);
    for (X509 *more; ok && (more = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL;)
        ok = SSL_CTX_add0_chain_cert(ctx, more) == 1;
    ERR_clear_error();   /* the end of the chain reads as an error */
    ok = ok && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1 &&
         (!ca || SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1);
    if (!ok) {
        tls_last_error(err, errlen, x == NULL ? "no certificate in Tls_pubkey"
                                    : pk == NULL ? "no private key in Tls_privkey"
                                                 : "the key does not match the certificate");
        SSL_CTX_free(ctx);
        ctx = NULL;
    } else {
        SSL_CTX_set_num_tickets(ctx, 1);
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    BIO_free(cb);
    BIO_free(kb);
    return ctx;
}

static int tls_server_pem(void *state, const char *cert, size_t certlen, const char *key,
                          size_t keylen, char *err, size_t errlen)
{
    struct tls_state *st = state;
    SSL_CTX *ctx = tls_server_ctx_pem(st, cert, certlen, key, keylen, err, errlen);

    if (ctx == NULL)
        return -1;      /* the old certificate stays in use */
    SSL_CTX_free(st->server);   /* open connections hold their own reference */
    st->server = ctx;
    return 0;
}

static void *tls_conn_new(void *state, int server, const char *host, char *err,
                          size_t errlen)
{
    struct tls_state *st = state;
    struct tls_conn *c;

    if (server && !st->server) {
        snprintf(err, errlen, "no certificate (Tls_pubkey)");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    c->ssl = SSL_new(server ? st->server : st->client);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);   /* empty means "more later", not EOF */
    SSL_set_bio(c->ssl, c->in, c->out);
    if (server) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        if (host && host[0]) {
            SSL_set_tlsext_host_name(c->ssl, host);
            SSL_set1_host(c->ssl, host);
        }
    }
    return c;
}

static void tls_conn_free(void *conn)
{
    struct tls_conn *c = conn;

    if (c) {
        SSL_free(c->ssl);     /* frees both BIOs */
        free(c);
    }
}

static void tls_feed(void *conn, const char *data, size_t len)
{
    struct tls_conn *c = conn;

    BIO_write(c->in, data, (int)len);
}

static long tls_result(struct tls_conn *c, int r, const char *what)
{
    int e = SSL_get_error(c->ssl, r);

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return SELOR_TLS_EOF;
    tls_last_error(c->err, sizeof(c->err), what);
    return SELOR_TLS_ERROR;
}

static long tls_read(void *conn, char *out, size_t outlen)
{
    struct tls_conn *c = conn;
    int r;

    ERR_clear_error();
    if (!SSL_is_init_finished(c->ssl)) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1)
            return tls_result(c, r, "handshake");
    }
    r = SSL_read(c->ssl, out, (int)(outlen > 1 << 30 ? 1 << 30 : outlen));
    return r > 0 ? r : tls_result(c, r, "read");
}

static long tls_write(void *conn, const char *data, size_t len)
{
    struct tls_conn *c = conn;
    size_t done = 0;

    ERR_clear_error();
    while (done < len) {
        int r = SSL_write(c->ssl, data + done, (int)(len - done > 1 << 30 ? 1 << 30
                                                                        : len - done));
        if (r <= 0) {
            tls_result(c, r, "write");
            return SELOR_TLS_ERROR;
        }
        done += (size_t)r;
    }
    return (long)len;
}

static size_t tls_drain(void *conn, char *out, size_t outlen)
{
    struct tls_conn *c = conn;
    int r = BIO_read(c->out, out, (int)(outlen > 1 << 30 ? 1 << 30 : outlen));

    return r > 0 ? (size_t)r : 0;
}

static size_t tls_pending(void *conn)
{
    return BIO_ctrl_pending(((struct tls_conn *)conn)->out);
}

static int tls_handshake_done(void *conn)
{
    return SSL_is_init_finished(((struct tls_conn *)conn)->ssl);
}

static const char *tls_version(void *conn)
{
    return SSL_get_version(((struct tls_conn *)conn)->ssl);
}

static const char *tls_cipher(void *conn)
{
    return SSL_get_cipher_name(((struct tls_conn *)conn)->ssl);
}

static int tls_bits(void *conn)
{
    return SSL_get_cipher_bits(((struct tls_conn *)conn)->ssl, NULL);
}

static int tls_verified(void *conn)
{
    SSL *ssl = ((struct tls_conn *)conn)->ssl;
    X509 *peer = SSL_get0_peer_certificate(ssl);

    return peer && SSL_get_verify_result(ssl) == X509_V_OK;
}

static const char *tls_error(void *conn)
{
    return ((struct tls_conn *)conn)->err;
}

static void tls_shutdown(void *conn)
{
    struct tls_conn *c = conn;

    if (SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    ERR_clear_error();
}

static const struct selor_tls_ops tls_ops = {
    .conn_new = tls_conn_new,
    .conn_free = tls_conn_free,
    .feed = tls_feed,
    .read = tls_read,
    .write = tls_write,
    .drain = tls_drain,
    .pending = tls_pending,
    .handshake_done = tls_handshake_done,
    .version = tls_version,
    .cipher = tls_cipher,
    .bits = tls_bits,
    .verified = tls_verified,
    .error = tls_error,
    .shutdown = tls_shutdown,
    .server_pem = tls_server_pem,
};

const struct selor_module selor_module = {
    .abi = SELOR_MODULE_ABI,
    .name = "tls",
    .version = "1.0",
    .options = tls_options,
    .init = tls_init,
    .kinds = 0,
    .tls = &tls_ops,
};
