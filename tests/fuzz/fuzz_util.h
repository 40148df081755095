/*
 * fuzz_util.h - what the libFuzzer harnesses of tests/fuzz share: the
 * invariant check macro and a reader that takes structured values (bytes,
 * numbers, NUL-separated strings) from the fuzzer's input.
 *
 * A failed check prints the condition and its place, then abort()s, which
 * libFuzzer reports as a crash and saves the input.  Everything here is
 * static: each harness is one translation unit.
 */
#ifndef SELOR_FUZZ_UTIL_H
#define SELOR_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void fuzz_fail(const char *file, int line,
                                                const char *what)
{
    fprintf(stderr, "\n*** fuzz invariant broken at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

/* CHECK(cond): an invariant of the code under test. */
#define CHECK(cond) \
    do { \
        if (!(cond)) \
            fuzz_fail(__FILE__, __LINE__, #cond); \
    } while (0)

/* Prints n bytes escaped, for the report that precedes an abort. */
static inline void fuzz_dump(const char *label, const void *p, size_t n)
{
    const unsigned char *s = p;

    fprintf(stderr, "%s (%zu bytes): \"", label, n);
    for (size_t i = 0; i < n && i < 4096; i++) {
        if (s[i] == '\\' || s[i] == '"')
            fprintf(stderr, "\\%c", s[i]);
        else if (s[i] >= 0x20 && s[i] < 0x7f)
            fputc(s[i], stderr);
        else
            fprintf(stderr, "\\x%02x", s[i]);
    }
    fprintf(stderr, "\"%s\n", n > 4096 ? "..." : "");
}

/* p..p+n lies inside base..base+len. */
static inline int fuzz_inside(const void *p, size_t n, const void *base, size_t len)
{
    const char *a = p, *b = base;

    return a >= b && a <= b + len && n <= (size_t)(b + len - a);
}

/* A memfd holding the n bytes at text, readable by name at path
 * ("/proc/self/fd/N"); the caller closes it. */
static inline int fuzz_memfd(const char *text, size_t n, char *path, size_t pathlen)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    size_t off = 0;

    if (fd < 0)
        abort();
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w <= 0)
            abort();
        off += (size_t)w;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/* Lines in n bytes of text, a last one without its LF included. */
static inline long fuzz_lines(const char *text, size_t n)
{
    long lines = 0;

    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    return lines + (n > 0 && text[n - 1] != '\n');
}

/*
 * The input as a stream of values.  The bytes are copied once, with a NUL
 * after them, so a string is a pointer into the copy: it runs to the next
 * NUL byte (consumed) or the end.  Reads past the end give 0 and "".
 */
struct fuzz_in {
    char *buf;
    size_t len, pos;
};

static inline void fuzz_in_init(struct fuzz_in *f, const uint8_t *data, size_t size)
{
    f->buf = malloc(size + 1);
    if (f->buf == NULL)
        abort();
    if (size)
        memcpy(f->buf, data, size);
    f->buf[size] = '\0';
    f->len = size;
    f->pos = 0;
}

static inline void fuzz_in_free(struct fuzz_in *f)
{
    free(f->buf);
    f->buf = NULL;
}

static inline unsigned fuzz_u8(struct fuzz_in *f)
{
    return f->pos < f->len ? (unsigned char)f->buf[f->pos++] : 0;
}

static inline unsigned long long fuzz_uint(struct fuzz_in *f, int bytes)
{
    unsigned long long v = 0;

    for (int i = 0; i < bytes; i++)
        v = v << 8 | fuzz_u8(f);
    return v;
}

static inline const char *fuzz_str(struct fuzz_in *f)
{
    char *s = f->buf + f->pos;
    size_t n = strlen(s);

    f->pos += n + (f->pos + n < f->len);
    return s;
}

/* The bytes left, as (pointer, length); the stream is then at its end. */
static inline const char *fuzz_rest(struct fuzz_in *f, size_t *n)
{
    const char *s = f->buf + f->pos;

    *n = f->len - f->pos;
    f->pos = f->len;
    return s;
}

#endif
