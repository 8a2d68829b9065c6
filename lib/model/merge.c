/* merge.c — the merge loop shared by the two tokenizers (merge.h).
 *
 * Candidates are adjacent pairs that merge, in a binary heap ordered by key and then by the
 * left symbol's index. An entry goes stale when a symbol of its pair changes; it stays in the
 * heap and is dropped when popped (its ids no longer match the list).
 *
 * Why the first valid entry popped is the pair a full rescan would pick: every mergeable
 * adjacent pair of the current list has an entry with its current ids (all pairs are queued at
 * the start; a merge changes only the two pairs touching the merged symbol, and exactly those
 * are queued again). So that entry has the smallest key among current pairs and, among equal
 * keys, the smallest left index, which is the leftmost pair because indices follow list order.
 * Each pop either merges (at most n - 1 times) or drops a stale entry (at most 3n pushes in
 * all), so a word of n symbols costs O(n log n). */
#include "merge.h"

struct qnpu__mcand {
    double key;
    int32_t left;    /* index of the pair's left symbol */
    int32_t a, b;    /* the pair's ids when queued */
    int32_t merged;
};

static int before(const qnpu__mcand *x, const qnpu__mcand *y)
{
    if (x->key != y->key)
        return x->key < y->key;
    return x->left < y->left;
}

static qnpu_status push(qnpu__merger *m, qnpu__mcand c)
{
    if (m->n_heap == m->cap_heap) {
        size_t cap = m->cap_heap ? 2 * m->cap_heap : 64, bytes;
        qnpu__mcand *h;
        if (!qnpu__mul_ok(cap, sizeof *h, &bytes) ||
            !(h = qnpu__realloc(m->heap, m->n_heap * sizeof *h, bytes)))
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_tokenizer_encode: out of memory");
        m->heap = h;
        m->cap_heap = cap;
    }
    size_t i = m->n_heap++;
    while (i > 0) { /* sift up */
        size_t parent = (i - 1) / 2;
        if (!before(&c, &m->heap[parent]))
            break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = c;
    return QNPU_OK;
}

static qnpu__mcand pop(qnpu__merger *m)
{
    qnpu__mcand top = m->heap[0], last = m->heap[--m->n_heap];
    size_t i = 0, n = m->n_heap;
    for (;;) { /* sift `last` down from the root */
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && before(&m->heap[child + 1], &m->heap[child]))
            child++;
        if (!before(&m->heap[child], &last))
            break;
        m->heap[i] = m->heap[child];
        i = child;
    }
    if (n > 0)
        m->heap[i] = last;
    return top;
}

/* Queue the pair starting at symbol `left` if it merges. */
static qnpu_status try_pair(qnpu__merger *m, const qnpu__msym *sym, int32_t left)
{
    if (left < 0 || sym[left].next < 0)
        return QNPU_OK;
    qnpu__mcand c = {0, left, sym[left].id, sym[sym[left].next].id, -1};
    if (!m->rule(m->ctx, c.a, c.b, &c.key, &c.merged))
        return QNPU_OK;
    return push(m, c);
}

qnpu_status qnpu__merge_word(qnpu__merger *m, qnpu__msym *sym, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < n ? i + 1 : -1;
    }
    m->n_heap = 0;
    qnpu_status s = QNPU_OK;
    for (int32_t i = 0; i + 1 < n && s == QNPU_OK; i++)
        s = try_pair(m, sym, i);
    while (s == QNPU_OK && m->n_heap > 0) {
        qnpu__mcand c = pop(m);
        qnpu__msym *l = &sym[c.left];
        if (l->id != c.a || l->next < 0 || sym[l->next].id != c.b)
            continue; /* stale */
        int32_t right = l->next;
        l->id = c.merged;
        l->next = sym[right].next;
        if (l->next >= 0)
            sym[l->next].prev = c.left;
        sym[right].id = -1; /* its links are never read again */
        s = try_pair(m, sym, l->prev);
        if (s == QNPU_OK)
            s = try_pair(m, sym, c.left);
    }
    return s;
}

void qnpu__merger_free(qnpu__merger *m)
{
    qnpu__free(m->heap);
    m->heap = NULL;
    m->n_heap = m->cap_heap = 0;
}
