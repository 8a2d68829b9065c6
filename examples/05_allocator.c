/* 05_allocator.c — give libquantnpu your own allocator: here one that counts every allocation
 * and byte, can be given a budget, and lets the program check at the end that the library freed
 * everything it allocated.
 *
 *   cc 05_allocator.c $(pkg-config --cflags --libs libquantnpu) -o 05_allocator
 *   ./05_allocator ../shared/models/stories260K.bin
 *
 * qnpu_set_allocator must be called before the first handle exists (QNPU_ERR_STATE otherwise);
 * it covers the library's tensors and workspaces (BLIS and libyaml keep their own malloc). The
 * library may allocate from its worker threads, so the counters are atomic. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <quantnpu.h>

struct counter {
    atomic_llong calls, frees, live_blocks, live_bytes, peak_bytes;
    long long budget; /* 0 = unlimited; otherwise fail allocations past this many live bytes */
};

/* Each block gets a header of `alignment` bytes (at least 16) just before the pointer returned,
 * holding its size and the header length, so the free function can account for it. */
static void *count_alloc(void *user, size_t size, size_t alignment)
{
    struct counter *c = user;
    size_t head = alignment < 16 ? 16 : alignment;
    size_t total = (head + size + head - 1) / head * head; /* aligned_alloc wants a multiple */
    atomic_fetch_add(&c->calls, 1);
    if (c->budget && atomic_load(&c->live_bytes) + (long long)size > c->budget)
        return NULL; /* the library must report QNPU_ERR_NO_MEMORY, not crash */
    unsigned char *raw = aligned_alloc(head, total);
    if (!raw)
        return NULL;
    size_t *meta = (size_t *)(raw + head) - 2;
    meta[0] = size;
    meta[1] = head;
    long long now = atomic_fetch_add(&c->live_bytes, (long long)size) + (long long)size;
    for (long long peak = atomic_load(&c->peak_bytes);
         now > peak && !atomic_compare_exchange_weak(&c->peak_bytes, &peak, now);)
        ; /* raise the peak to `now` unless another thread raised it further */
    atomic_fetch_add(&c->live_blocks, 1);
    return raw + head;
}

static void count_free(void *user, void *ptr)
{
    struct counter *c = user;
    if (!ptr)
        return;
    size_t *meta = (size_t *)ptr - 2;
    atomic_fetch_add(&c->frees, 1);
    atomic_fetch_sub(&c->live_blocks, 1);
    atomic_fetch_sub(&c->live_bytes, (long long)meta[0]);
    free((unsigned char *)ptr - meta[1]);
}

/* Load the model, run a float session over a sentence, free it all; returns the last status. */
static qnpu_status work(const char *path, double *ppl)
{
    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_float_session *s = NULL;
    int64_t scored;
    const char *text = "Once upon a time, there was a little girl named Lily.";
    qnpu_status st = qnpu_model_load(path, NULL, &m);
    if (st == QNPU_OK)
        st = qnpu_tokenizer_from_model(m, &t);
    if (st == QNPU_OK)
        st = qnpu_float_session_create(m, NULL, &s);
    if (st == QNPU_OK)
        st = qnpu_float_session_perplexity(s, t, text, strlen(text), 64, ppl, &scored);
    if (st == QNPU_OK) /* while handles exist, the allocator cannot change */
        st = qnpu_set_allocator(NULL, NULL, NULL) == QNPU_ERR_STATE ? QNPU_OK : QNPU_ERR_INTERNAL;
    qnpu_float_session_free(s);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    static struct counter c; /* zero-initialized; must outlive every allocation */
    if (qnpu_set_allocator(count_alloc, count_free, &c) != QNPU_OK) {
        fprintf(stderr, "set_allocator: %s\n", qnpu_last_error());
        return 1;
    }
    double ppl = 0;
    qnpu_status st = work(argv[1], &ppl);
    if (st != QNPU_OK) {
        fprintf(stderr, "%s: %s\n", qnpu_status_string(st), qnpu_last_error());
        return st == QNPU_ERR_IO ? 77 : 1; /* 77: the model is not there, skip */
    }
    printf("perplexity %.4f; %lld allocations, %lld frees, peak %lld bytes live\n", ppl,
           (long long)c.calls, (long long)c.frees, (long long)c.peak_bytes);
    int rc = 0;
    if (c.calls == 0 || c.live_blocks != 0 || c.live_bytes != 0) {
        fprintf(stderr, "FAIL: %lld blocks (%lld bytes) still allocated\n", (long long)c.live_blocks,
                (long long)c.live_bytes);
        rc = 1;
    }

    /* The same work on a budget of a quarter of that peak: a clean QNPU_ERR_NO_MEMORY, and
     * still nothing leaked on the way out. */
    c.budget = c.peak_bytes / 4;
    st = work(argv[1], &ppl);
    printf("with a budget of %lld bytes: %s (%s)\n", c.budget, qnpu_status_string(st), qnpu_last_error());
    if (st != QNPU_ERR_NO_MEMORY || c.live_blocks != 0) {
        fprintf(stderr, "FAIL: expected QNPU_ERR_NO_MEMORY and nothing live, got %lld blocks\n",
                (long long)c.live_blocks);
        rc = 1;
    }
    qnpu_set_allocator(NULL, NULL, NULL); /* back to the default (no handle exists now) */
    return rc;
}
