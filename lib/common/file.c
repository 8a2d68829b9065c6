/* file.c — whole-file access: mmap where allowed, else a read into an owned buffer. */
#include <errno.h>
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
