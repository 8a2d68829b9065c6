/* bpe.h — byte-level BPE from a Hugging Face tokenizer.json (lib/model/tokenizer_bpe.c), private
 * to lib/model/. The qnpu_tokenizer handle (tokenizer.c) owns a qnpu__bpe and forwards encoding
 * to it; decoding needs nothing from here (the handle's pieces are the raw bytes of each token). */
#ifndef QNPU_BPE_H
#define QNPU_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

typedef struct qnpu__bpe qnpu__bpe;

/* 1 if `path` looks like a tokenizer.json: its name ends in ".json", or its first non-blank
 * byte is '{' followed by a blank, '"' or '}'. */
int qnpu__bpe_is_json(const char *path);

/* Load a tokenizer.json (and BOS/EOS from config.json / tokenizer_config.json beside it) into a
 * new tokenizer handle. vocab_size > 0 bounds the ids (QNPU_ERR_FORMAT when the file uses more)
 * and pads the tokenizer to that many ids (the extra ones decode to nothing).
 * QNPU_ERR_FORMAT / QNPU_ERR_UNSUPPORTED name the file and the JSON field. */
qnpu_status qnpu__bpe_load(const char *path, int64_t vocab_size, qnpu_tokenizer **out);

/* Build the handle around `bpe` (ownership passes, also on failure): n pieces (raw bytes),
 * bos/eos in [-1, n) (-1: none). Defined in tokenizer.c. */
qnpu_status qnpu__tokenizer_create_bpe(int64_t n, char *const *pieces, const uint32_t *lens,
                                       int32_t bos, int32_t eos, qnpu__bpe *bpe,
                                       qnpu_tokenizer **out);

/* Encode len bytes of text (no BOS). Ids go to ids[*n ..] while *n < cap; *n counts them all.
 * Thread-safe on one qnpu__bpe (all scratch is per call). */
qnpu_status qnpu__bpe_encode(const qnpu__bpe *b, const char *text, size_t len, int32_t *ids,
                             size_t cap, size_t *n);

/* Ids per input byte at most: 1, or 3 with the NFC normalizer (NFC may expand text 3x). */
size_t qnpu__bpe_ids_per_byte(const qnpu__bpe *b);

void qnpu__bpe_free(qnpu__bpe *b);

/* The tokenizer as bytes for the .qnpu file (new buffer, qnpu__free), and back: `what` starts
 * every message ("file: section 'vocab'"); QNPU_ERR_FORMAT for anything inconsistent. */
qnpu_status qnpu__bpe_serialize(const qnpu__bpe *b, unsigned char **out, size_t *size);
qnpu_status qnpu__bpe_deserialize(const unsigned char *p, size_t size, const char *what,
                                  int32_t bos, int32_t eos, qnpu_tokenizer **out);

#endif
