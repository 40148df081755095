/*
 * tls_reload.c - a new certificate on SIGHUP, without dropping connections.
 *
 * Owns: the master's side (reading Tls_pubkey and Tls_privkey, as User by
 * then: the key must be readable by Group, root:Group 0640, the way
 * Debian's ssl-cert group works; a worker holds the key in memory anyway,
 * so that gives it nothing new), checking them with the TLS module, handing them to each SMTP worker
 * through its pipe) and the worker's (reading the pipe on its loop and
 * giving the certificate to its copy of the module).  The frame on the
 * pipe is "cert length (4 bytes), key length (4 bytes), cert, key".
 * Why a pipe: one read for all the workers, and a worker never opens a
 * key file itself.  Must not: parse PEM (the module does), or block
 * the master on a worker that does not read (writes are non-blocking and a
 * frame fits the pipe's buffer).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mem.h"
#include "selor_module.h"
#include "tls_reload.h"

#define TLS_RELOAD_FILE_MAX (24 * 1024)   /* a frame stays below the pipe's 64 KB */

static int tls_reload_file(const char *path, struct buf *out, struct buf *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char chunk[4096];
    ssize_t n;

    if (fd < 0) {
        buf_printf(err, "%s: %s%s", path, strerror(errno), errno == EACCES
                   ? " (the node runs as User now: let Group read it, or restart)" : "");
        return -1;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0 && out->len + (size_t)n <= TLS_RELOAD_FILE_MAX)
        buf_append(out, chunk, (size_t)n);
    close(fd);
    if (n != 0) {
        buf_printf(err, "%s: %s", path, n < 0 ? strerror(errno) : "too large to pass on");
        return -1;
    }
    return 0;
}

int tls_reload_master(const struct config *c, const struct stream_tls *eng,
                      const int *fds, int nfds)
{
    struct buf cert = BUF_INIT(0), key = BUF_INIT(0), err = BUF_INIT(0);
    char why[256];
    int ok = 0;

    if (eng->ops == NULL || !c->Tls_pubkey[0]) {
        log_info("SIGHUP: no TLS certificate to reload");
        return 0;
    }
    if (tls_reload_file(c->Tls_pubkey, &cert, &err) < 0 ||
        tls_reload_file(c->Tls_privkey[0] ? c->Tls_privkey : c->Tls_pubkey, &key, &err) < 0) {
        log_warn("SIGHUP: the certificate is not reloaded: %s", buf_cstr(&err));
    } else if (eng->ops->server_pem(eng->state, cert.data, cert.len, key.data, key.len, why,
                                    sizeof(why)) < 0) {
        log_warn("SIGHUP: the certificate is not reloaded: %s", why);
    } else {
        uint32_t hdr[2] = {(uint32_t)cert.len, (uint32_t)key.len};
        ok = 1;
        for (int i = 0; i < nfds; i++) {
            struct buf frame = BUF_INIT(0);
            if (fds[i] < 0)
                continue;
            buf_append(&frame, hdr, sizeof(hdr));
            buf_append(&frame, cert.data, cert.len);
            buf_append(&frame, key.data, key.len);
            if (write(fds[i], frame.data, frame.len) != (ssize_t)frame.len)
                log_warn("SIGHUP: an SMTP worker did not take the new certificate: %s",
                         strerror(errno));
            buf_free(&frame);
        }
        log_info("SIGHUP: TLS certificate %s reloaded", c->Tls_pubkey);
    }
    explicit_bzero(key.data, key.len);
    buf_free(&cert);
    buf_free(&key);
    buf_free(&err);
    return ok ? 0 : -1;
}

/* ---- the worker ---- */

struct tls_reload_in {
    uv_pipe_t pipe;
    const struct stream_tls *eng;
    struct buf in;
    char rbuf[4096];
};

static void tls_reload_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct tls_reload_in *t = h->data;

    *b = uv_buf_init(t->rbuf, sizeof(t->rbuf));
}

static void tls_reload_apply(struct tls_reload_in *t)
{
    uint32_t hdr[2];
    size_t need;
    char why[256];

    while (t->in.len >= sizeof(hdr)) {
        memcpy(hdr, t->in.data, sizeof(hdr));
        need = sizeof(hdr) + (size_t)hdr[0] + hdr[1];
        if (hdr[0] > TLS_RELOAD_FILE_MAX || hdr[1] > TLS_RELOAD_FILE_MAX) {
            log_warn("TLS reload: a malformed frame from the master");
            buf_reset(&t->in);
            return;
        }
        if (t->in.len < need)
            return;
        if (t->eng->ops->server_pem(t->eng->state, t->in.data + sizeof(hdr), hdr[0],
                                    t->in.data + sizeof(hdr) + hdr[0], hdr[1], why,
                                    sizeof(why)) < 0)
            log_warn("TLS reload: %s", why);
        else
            log_info("TLS certificate reloaded");
        explicit_bzero(t->in.data, need);
        buf_consume(&t->in, need);
    }
}

static void tls_reload_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct tls_reload_in *t = s->data;

    if (n < 0) {              /* the master is gone: the worker stops anyway */
        uv_read_stop(s);
        return;
    }
    buf_append(&t->in, b->base, (size_t)n);
    tls_reload_apply(t);
}

void tls_reload_watch(uv_loop_t *loop, int fd, const struct stream_tls *eng)
{
    struct tls_reload_in *t;

    if (fd < 0 || eng->ops == NULL)
        return;
    t = mem_zalloc(sizeof(*t));
    t->eng = eng;
    buf_init(&t->in, 0);
    uv_pipe_init(loop, &t->pipe, 0);
    t->pipe.data = t;
    if (uv_pipe_open(&t->pipe, fd) < 0)
        return;
    uv_unref((uv_handle_t *)&t->pipe);    /* it does not keep a stopping worker */
    uv_read_start((uv_stream_t *)&t->pipe, tls_reload_alloc, tls_reload_read);
}
