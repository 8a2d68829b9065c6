/* merge.h — the merge loop of both tokenizers (SentencePiece scores in tokenizer.c, byte-level
 * BPE ranks in tokenizer_bpe.c), private to lib/model/.
 *
 * A word is a list of symbols (token ids) kept in an array in text order and linked both ways;
 * a merge keeps the left symbol (with the merged id) and unlinks the right one, so the array
 * index of a live symbol is also its rank from the left. While some adjacent pair merges, the
 * pair with the smallest key is merged, the leftmost among equal keys: run.c's and Hugging
 * Face's rescan of the whole word after every merge, in O(n log n) (see merge.c). */
#ifndef QNPU_MERGE_H
#define QNPU_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

typedef struct qnpu__msym {
    int32_t id;         /* -1 once merged into its left neighbour */
    int32_t prev, next; /* indices, -1 at the ends */
} qnpu__msym;

/* Whether the pair of ids (a, b) merges; if so its key (smaller merges first) and the id it
 * merges into. */
typedef int (*qnpu__merge_rule)(const void *ctx, int32_t a, int32_t b, double *key,
                                int32_t *merged);

typedef struct qnpu__mcand qnpu__mcand;

/* The rule and the heap of candidate merges (scratch, reused from word to word; per call, so
 * that threads sharing a tokenizer do not interfere). Start as {rule, ctx}. */
typedef struct qnpu__merger {
    qnpu__merge_rule rule;
    const void *ctx;
    qnpu__mcand *heap;
    size_t n_heap, cap_heap;
} qnpu__merger;

/* Link sym[0..n) (ids set by the caller) into a list and merge until no pair merges; the
 * result is the list from sym[0] along `next` (when n > 0). QNPU_ERR_NO_MEMORY if the heap
 * cannot grow. */
qnpu_status qnpu__merge_word(qnpu__merger *m, qnpu__msym *sym, int32_t n);

void qnpu__merger_free(qnpu__merger *m);

#endif
