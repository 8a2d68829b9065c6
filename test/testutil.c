/* testutil.c — shared helpers for the Check suites. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

const char *qt_shared(const char *rel)
{
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("QNPU_SHARED");
    char *b = buf[slot++ % 8];
    snprintf(b, 4096, "%s/%s", root ? root : "../shared", rel);
    return b;
}

int qt_have_shared(const char *rel)
{
    return access(qt_shared(rel), R_OK) == 0;
}

const char *qt_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/qnpu-test-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(dir))
            ck_abort_msg("mkdtemp failed");
    }
    return dir;
}

const char *qt_tmpfile(const char *name)
{
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ % 8];
    snprintf(b, 4096, "%s/%s", qt_tmpdir(), name);
    return b;
}

void qt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

void *qt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

qnpu_options *qt_options(const char *const *kv)
{
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_NUM_THREADS, 1), QNPU_OK);
    for (; kv && kv[0]; kv += 2) {
        qnpu_param p;
        ck_assert_int_eq(qnpu_param_from_name(kv[0], &p), QNPU_OK);
        ck_assert_msg(qnpu_options_set_str(o, p, kv[1]) == QNPU_OK, "%s: %s", kv[0], qnpu_last_error());
    }
    return o;
}

void qt_buf_bytes(qt_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void qt_buf_printf(qt_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
