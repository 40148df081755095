/*
 * seed_queue_file.c - writes the seed l files of the queue_file harness
 * with the real formatter (qf_format): valid envelopes of several shapes,
 * and broken variants of one of them (each a way a reader must refuse a
 * file).  `make fuzz-seeds` runs it: seed_queue_file DIR writes DIR/gen-*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "queue_file.h"

static const char *dir;

static void put(const char *name, const char *text, size_t len)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/gen-%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(text, 1, len, f) != len ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void base(struct queue_file *qf)
{
    qf_init(qf);
    qf->id = qf_str(qf, "1764073273_004211_4975_482131");
    qf->sid = qf_str(qf, "mx1");
    qf->created = 1764073273;
    qf->size = 1523;
    qf->from = qf_str(qf, "alice@example.org");
    qf->client_ip = qf_str(qf, "192.0.2.10");
    qf->client_name = qf_str(qf, "mail.example.org");
    qf->helo = qf_str(qf, "mail.example.org");
    qf->body = qf_str(qf, "8BITMIME");
    qf_add_rcpt(qf, "bob@example.com", "team@example.com");
}

static void emit(const char *name, const struct queue_file *qf, struct buf *keep)
{
    struct buf b = BUF_INIT(0);

    qf_format(qf, &b);
    put(name, b.data, b.len);
    if (keep)
        buf_append(keep, b.data, b.len);
    buf_free(&b);
}

/* The valid text with the first occurrence of from replaced by to. */
static void variant(const char *name, const struct buf *good, const char *from,
                    const char *to)
{
    const char *hit = memmem(good->data, good->len, from, strlen(from));
    struct buf b = BUF_INIT(0);

    if (hit == NULL) {
        fprintf(stderr, "seed %s: \"%s\" not found\n", name, from);
        exit(1);
    }
    buf_append(&b, good->data, (size_t)(hit - good->data));
    buf_puts(&b, to);
    hit += strlen(from);
    buf_append(&b, hit, good->len - (size_t)(hit - good->data));
    put(name, b.data, b.len);
    buf_free(&b);
}

int main(int argc, char **argv)
{
    struct queue_file qf;
    struct qf_rcpt *r;
    struct buf good = BUF_INIT(0);

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];

    base(&qf);
    qf_add_rcpt(&qf, "carol@example.com", "team@example.com");
    emit("valid-two-rcpts", &qf, &good);
    qf_free(&qf);

    base(&qf);
    qf.from = qf_str(&qf, "");  /* a report: null sender */
    qf.flags = QF_F_BOUNCE;
    qf.body = qf_str(&qf, "7BIT");
    emit("valid-bounce", &qf, NULL);
    qf_free(&qf);

    base(&qf);  /* after a delivery run: every state, answers with spaces */
    qf.token = 18446744073709551615ULL;
    qf.attempts = 3;
    qf.next = 1764080000;
    qf.flags = QF_F_HOLD | QF_F_QLIMIT;
    qf.auth = qf_str(&qf, "alice");
    qf.rcpt[0].state = QF_DELIVERED;
    qf.rcpt[0].attempts = 1;
    qf.rcpt[0].answer = qf_str(&qf, "250 2.0.0 Ok: queued as 4Xyz");
    r = qf_add_rcpt(&qf, "dave@example.net", "");
    r->state = QF_FAILED;
    r->attempts = 2;
    r->answer = qf_str(&qf, "550 5.1.1 <dave@example.net>: Recipient address rejected");
    r = qf_add_rcpt(&qf, "erin@example.net", "list@example.org");
    r->state = QF_REPORTED;
    r->answer = qf_str(&qf, "giving up after 48 attempts: 451 4.3.0 try later");
    r = qf_add_rcpt(&qf, "frank@example.net", "");
    r->next = 1764083600;
    r->answer = qf_str(&qf, "connection refused");
    emit("valid-states", &qf, NULL);
    qf_free(&qf);

    base(&qf);  /* awkward values: escapes everywhere */
    qf.sid = qf_str(&qf, "node one");
    qf.client_ip = qf_str(&qf, "2001:db8::1");
    qf.client_name = qf_str(&qf, "-");
    qf.helo = qf_str(&qf, "[192.0.2.1] %41 50%\t\r\n\x01\x7f\xc3\xa9 end");
    qf.auth = qf_str(&qf, "user name");
    qf.rcpt[0].answer = qf_str(&qf, "line one\nline two\r\n%%");
    emit("valid-escapes", &qf, NULL);
    qf_free(&qf);

    base(&qf);  /* version 3: what a rule set for the connection (Def!) */
    qf.hits = -17;
    qf.auth = qf_str(&qf, "alice");
    qf_add_setting(&qf, "Dlocal", "/usr/bin/procmail -d %l 'a b' \"c\"");
    qf_add_setting(&qf, "Max_attempts", "1");
    qf_add_setting(&qf, "Queue_path", "/var/spool/selor-other/");
    qf_add_setting(&qf, "Msg_ok", "250 d\xc3\xa9j\xc3\xa0 -");
    qf_add_setting(&qf, "Relay_host", "");
    emit("valid-settings", &qf, NULL);
    qf_free(&qf);

    base(&qf);  /* the largest numbers a reader accepts */
    qf.created = qf.size = qf.next = 1L << 40;
    qf.attempts = 1000000;
    qf.flags = 4294967295u;
    qf.rcpt[0].attempts = 1000000;
    qf.rcpt[0].next = 1L << 40;
    qf.hits = QF_HITS_MAX;
    emit("valid-limits", &qf, NULL);
    qf_free(&qf);

    base(&qf);  /* quoted local part and a literal, as SMTP allows */
    qf.from = qf_str(&qf, "\"john doe\"@[192.0.2.7]");
    qf_add_rcpt(&qf, "\"x@y\"@example.com", "\"x@y\"@example.com");
    emit("valid-quoted", &qf, NULL);
    qf_free(&qf);

    qf_init(&qf);  /* written, but refused: no recipient */
    emit("bad-no-rcpt", &qf, NULL);
    qf_free(&qf);

    variant("bad-version", &good, "SELOR-L 3", "SELOR-L 4");
    variant("bad-magic", &good, "SELOR-L 3", "SELOR-Q 3");
    variant("bad-v2-with-hits", &good, "SELOR-L 3", "SELOR-L 2");
    variant("bad-no-hits", &good, "hits 0\n", "");
    variant("bad-hits", &good, "hits 0", "hits 1000000001");
    variant("bad-set-fields", &good, "hits 0\n", "hits 0\nset Dlocal\n");
    variant("bad-set-name", &good, "hits 0\n", "hits 0\nset Dl%20ocal x\n");
    variant("bad-set-repeated", &good, "hits 0\n",
            "hits 0\nset Max_attempts 1\nset Max_attempts 2\n");
    {   /* the same envelope as version 2 wrote it: still read */
        struct buf v2 = BUF_INIT(0);
        const char *hits = memmem(good.data, good.len, "hits 0\n", 7);
        buf_puts(&v2, "SELOR-L 2");
        buf_append(&v2, good.data + 9, (size_t)(hits - good.data) - 9);
        buf_append(&v2, hits + 7, good.len - (size_t)(hits + 7 - good.data));
        put("valid-v2", v2.data, v2.len);
        buf_free(&v2);
    }
    variant("bad-count", &good, "end 2", "end 3");
    variant("bad-no-end", &good, "end 2\n", "");
    variant("bad-after-end", &good, "end 2\n", "end 2\nrcpt P 0 0 x@y - - -\n");
    variant("bad-unknown-record", &good, "auth -\n", "auth -\nprio 5\n");
    variant("bad-repeated", &good, "auth -\n", "auth -\nauth bob\n");
    variant("bad-missing", &good, "token 0\n", "");
    variant("bad-escape", &good, "mx1", "mx%4");
    variant("bad-escape-nul", &good, "mx1", "mx%00");
    variant("bad-escape-lower", &good, "mx1", "mx%2d");
    variant("bad-empty-field", &good, "sid mx1", "sid ");
    variant("bad-fields", &good, "sid mx1", "sid mx1 mx2");
    variant("bad-state", &good, "rcpt P", "rcpt X");
    variant("bad-negative", &good, "attempts 0", "attempts -1");
    variant("bad-huge", &good, "size 1523", "size 99999999999999999999");
    variant("bad-token", &good, "token 0", "token +1");
    variant("bad-crlf", &good, "id ", "id\r ");
    variant("bad-no-addr", &good, "bob@example.com", "-");
    {   /* a NUL byte inside the id */
        struct buf b = BUF_INIT(0);
        buf_append(&b, good.data, good.len);
        b.data[14] = '\0';
        put("bad-nul", b.data, b.len);
        buf_free(&b);
    }
    buf_free(&good);
    return 0;
}
