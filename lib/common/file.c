/* file.c — whole-file access: mmap where allowed, else a read into an owned buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"

static qnpu_status read_all(int fd, const char *path, unsigned char *buf, size_t size)
{
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return qnpu__fail(QNPU_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path, got,
                              size, r < 0 ? strerror(errno) : "unexpected end of file");
        got += (size_t)r;
    }
    return QNPU_OK;
}

qnpu_status qnpu__file_open(const char *path, int use_mmap, qnpu__file *f)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qnpu__fail(QNPU_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qnpu__fail(QNPU_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    qnpu_status s = QNPU_OK;
    if (size == 0) {
        f->data = (const unsigned char *)"";
    } else if (use_mmap) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            s = qnpu__fail(QNPU_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        else {
            f->data = p;
            f->mapped = 1;
        }
    } else {
        unsigned char *buf = qnpu__malloc(size);
        if (!buf)
            s = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes", path, size);
        else if ((s = read_all(fd, path, buf, size)) != QNPU_OK)
            qnpu__free(buf);
        else
            f->data = buf;
    }
    close(fd);
    if (s == QNPU_OK)
        f->size = size;
    return s;
}

void qnpu__file_close(qnpu__file *f)
{
    if (f->size && f->mapped)
        munmap((void *)f->data, f->size);
    else if (f->size)
        qnpu__free((void *)f->data);
    memset(f, 0, sizeof *f);
}

qnpu_status qnpu__read_text(const char *path, char **out, size_t *len)
{
    qnpu__file f;
    qnpu_status s = qnpu__file_open(path, 0, &f);
    if (s != QNPU_OK)
        return s;
    char *buf = qnpu__malloc(f.size + 1);
    if (!buf) {
        qnpu__file_close(&f);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes", path, f.size + 1);
    }
    memcpy(buf, f.data, f.size);
    buf[f.size] = '\0';
    *len = f.size;
    *out = buf;
    qnpu__file_close(&f);
    return QNPU_OK;
}

int qnpu__is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *qnpu__path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = qnpu__malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

char *qnpu__path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return qnpu__strdup(".");
    if (slash == path)
        return qnpu__strdup("/");
    return qnpu__strndup(path, (size_t)(slash - path));
}

/* ---- atomic output files ------------------------------------------------------------------ */

#define AFILE_BUF (1u << 16)

static void afile_fail(qnpu__afile *f, int err, const char *what)
{
    if (!f->err) {
        f->err = err ? err : EIO;
        f->what = what;
    }
}

static void afile_put(qnpu__afile *f, const unsigned char *p, size_t n)
{
    while (!f->err && n) {
        ssize_t r = write(f->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            afile_fail(f, r < 0 ? errno : EIO, "write");
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void afile_flush(qnpu__afile *f)
{
    afile_put(f, f->buf, f->fill);
    f->fill = 0;
}

qnpu_status qnpu__afile_open(qnpu__afile *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = path;
    f->mode = 0644; /* a new file; a replaced one keeps its permission bits */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        f->mode = st.st_mode & 07777;
    f->tmp = qnpu__malloc(strlen(path) + sizeof ".tmp.XXXXXX");
    f->buf = qnpu__malloc(AFILE_BUF);
    if (!f->tmp || !f->buf) {
        qnpu__afile_abort(f);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while opening it for writing", path);
    }
    sprintf(f->tmp, "%s.tmp.XXXXXX", path);
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        qnpu__free(f->tmp); /* nothing was created */
        f->tmp = NULL;
        qnpu__afile_abort(f);
        return qnpu__fail(QNPU_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    return QNPU_OK;
}

void qnpu__afile_write(qnpu__afile *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    f->pos += n;
    if (f->fill + n > AFILE_BUF) {
        afile_flush(f);
        if (n >= AFILE_BUF) {
            afile_put(f, s, n);
            return;
        }
    }
    memcpy(f->buf + f->fill, s, n);
    f->fill += n;
}

void qnpu__afile_printf(qnpu__afile *f, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        afile_fail(f, EINVAL, "format");
        return;
    }
    if ((size_t)n < sizeof small) {
        qnpu__afile_write(f, small, (size_t)n);
        return;
    }
    char *big = qnpu__malloc((size_t)n + 1);
    if (!big) {
        afile_fail(f, ENOMEM, "format");
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    qnpu__afile_write(f, big, (size_t)n);
    qnpu__free(big);
}

void qnpu__afile_pwrite(qnpu__afile *f, const void *p, size_t n, uint64_t at)
{
    afile_flush(f);
    const unsigned char *s = p;
    while (!f->err && n) {
        ssize_t r = pwrite(f->fd, s, n, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            afile_fail(f, r < 0 ? errno : EIO, "write");
            return;
        }
        s += r;
        n -= (size_t)r;
        at += (uint64_t)r;
    }
}

/* Make the rename durable; best effort (the file is already in place). */
static void sync_dir(const char *path)
{
    /* on the stack when it fits, so that a successful commit allocates nothing (issue 7) */
    char small[1024], *dir = small;
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0;
    if (n < sizeof small) {
        memcpy(small, n ? path : ".", n ? n : 1);
        small[n ? n : 1] = '\0';
    } else if (!(dir = qnpu__path_dirname(path))) {
        return;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    if (dir != small)
        qnpu__free(dir);
}

qnpu_status qnpu__afile_commit(qnpu__afile *f)
{
    if (f->fd < 0) {
        qnpu__afile_abort(f);
        return qnpu__fail(QNPU_ERR_IO, "%s: the output file is not open", f->path ? f->path : "(null)");
    }
    afile_flush(f);
    if (!f->err && fchmod(f->fd, (mode_t)f->mode) != 0)
        afile_fail(f, errno, "fchmod");
    if (!f->err && fsync(f->fd) != 0)
        afile_fail(f, errno, "fsync");
    if (close(f->fd) != 0)
        afile_fail(f, errno, "close");
    f->fd = -1;
    if (!f->err && rename(f->tmp, f->path) != 0)
        afile_fail(f, errno, "rename");
    qnpu_status s = QNPU_OK;
    if (f->err) {
        s = qnpu__fail(QNPU_ERR_IO, "%s: cannot save (%s of the temporary file %s failed): %s", f->path,
                       f->what, f->tmp, strerror(f->err));
    } else {
        sync_dir(f->path);
        qnpu__free(f->tmp); /* renamed: nothing to remove */
        f->tmp = NULL;
    }
    qnpu__afile_abort(f);
    return s;
}

void qnpu__afile_abort(qnpu__afile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp)
        unlink(f->tmp);
    qnpu__free(f->tmp);
    qnpu__free(f->buf);
    f->tmp = NULL;
    f->buf = NULL;
    f->fill = 0;
}
