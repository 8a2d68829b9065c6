/* alloc.c — every tensor and workspace allocation of the library goes through here, so
 * qnpu_set_allocator can redirect it (and tests can inject failures). */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

static qnpu_alloc_fn user_alloc;
static qnpu_free_fn user_free;
static void *user_data;

qnpu_status qnpu_set_allocator(qnpu_alloc_fn alloc, qnpu_free_fn free_fn, void *user)
{
    if ((alloc == NULL) != (free_fn == NULL))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_set_allocator: give both functions or neither");
    if (qnpu__handles_live())
        return qnpu__fail(QNPU_ERR_STATE, "qnpu_set_allocator: called while handles exist");
    user_alloc = alloc;
    user_free = free_fn;
    user_data = user;
    return QNPU_OK;
}

int qnpu__mul_ok(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

void *qnpu__malloc(size_t size)
{
    if (size == 0)
        return NULL;
    if (user_alloc)
        return user_alloc(user_data, size, QNPU__ALIGN);
    size_t rounded = (size + QNPU__ALIGN - 1) & ~(size_t)(QNPU__ALIGN - 1);
    if (rounded < size)
        return NULL;
    return aligned_alloc(QNPU__ALIGN, rounded);
}

void *qnpu__calloc(size_t n, size_t size)
{
    size_t total;
    if (!qnpu__mul_ok(n, size, &total))
        return NULL;
    void *p = qnpu__malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void *qnpu__realloc(void *p, size_t old_size, size_t new_size)
{
    void *q = qnpu__malloc(new_size);
    if (!q)
        return NULL;
    if (p)
        memcpy(q, p, old_size < new_size ? old_size : new_size);
    qnpu__free(p);
    return q;
}

void qnpu__free(void *p)
{
    if (!p)
        return;
    if (user_free)
        user_free(user_data, p);
    else
        free(p);
}

void qnpu_free(void *p)
{
    qnpu__free(p);
}

char *qnpu__strndup(const char *s, size_t n)
{
    char *d = qnpu__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *qnpu__strdup(const char *s)
{
    return qnpu__strndup(s, strlen(s));
}
