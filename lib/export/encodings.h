/* encodings.h — Qualcomm QNN / AIMET encodings JSON (FORMATS §1; docs/formats.md, section
 * "QNN / AIMET encodings"): the writer, a re-reader for tests and fuzzing, and the comparison of
 * a read file with a quantized model. Private to lib/ and the tests. */
#ifndef QNPU_EXPORT_ENCODINGS_H
#define QNPU_EXPORT_ENCODINGS_H

#include <stddef.h>
#include <stdint.h>

#include "quantnpu.h"
#include "../calib/qgraph.h"

/* Write the encodings of q to `path` (atomically): every activation QP with bits > 0 under
 * "activation_encodings", every weight (per-channel, axis 0) under "param_encodings". The schema
 * version is opts' "export.encodings_version" ("0.6.1", the default, or "1.0.0"); opts may be
 * NULL. QNPU_ERR_INVALID_ARG for bad arguments or a record that cannot be expressed (a scale
 * that is not positive, a zero point outside the range, fewer than 4 bits in 0.6.1),
 * QNPU_ERR_NUMERIC for a NaN/Inf scale, QNPU_ERR_IO for the file. */
qnpu_status qnpu__encodings_write(const qnpu_qmodel *q, const qnpu_options *opts, const char *path);

/* Schema versions (the value of export.encodings_version is the index). */
enum { QNPU__ENC_V061 = 0, QNPU__ENC_V100 = 1 };

/* One integer encoding derived from a record (s, z, bits, sym) by FORMATS §0.1:
 * asymmetric offset = −z, symmetric offset = −2^(bits−1); min = offset·s and
 * max = (2^bits − 1 + offset)·s, both rounded to float32. */
typedef struct qnpu__enc_value {
    int bits, sym;
    float scale;
    int64_t offset;
    float min, max;
} qnpu__enc_value;

/* QNPU_ERR_INVALID_ARG (naming `name`) for bits outside [2, 32], a symmetric record with z != 0,
 * an asymmetric z outside [0, 2^bits − 1], a scale <= 0; QNPU_ERR_NUMERIC for a NaN/Inf scale. */
qnpu_status qnpu__encoding_of(const char *name, float s, int64_t z, int bits, int sym, qnpu__enc_value *out);

/* A float as the encodings file prints it: %.9g (round-trips float32) with '.' whatever the
 * locale. buf needs 32 bytes. */
void qnpu__enc_format_float(char *buf, size_t size, float v);

/* ---- the re-reader ------------------------------------------------------------------------ */

/* One encoding as read from a file: an activation (param 0) or a parameter (param 1). Integer
 * encodings have n >= 1 scales and offsets (n = 1 per tensor; one per output channel for a
 * per-channel encoding); float encodings (is_float) have none. */
typedef struct qnpu__enc_record {
    char *name;
    int param;
    int is_float;
    int per_channel;   /* 1.0.0 enc_type PER_CHANNEL, or a 0.6.1 list of more than one */
    int bits;
    int sym;
    int64_t n;
    float *scale;      /* [n] */
    int64_t *offset;   /* [n] */
    float *min, *max;  /* [n], 0.6.1 only (NULL for 1.0.0) */
} qnpu__enc_record;

typedef struct qnpu__encodings {
    int version;              /* QNPU__ENC_V061 or QNPU__ENC_V100 */
    qnpu__enc_record *rec;    /* activations first, then parameters, each in file order */
    int64_t n_rec, n_act;
} qnpu__encodings;

/* Parse an encodings file of either version (`len` bytes; `name` starts every message). Errors:
 * QNPU_ERR_FORMAT for anything malformed, naming the tensor and field ("name:line:column: ...
 * 'layer0.qkv.in' entry 0: 'offset' ..."); QNPU_ERR_UNSUPPORTED for another schema version or
 * a per-block / LPBQ encoding; QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__encodings_parse(const char *name, const void *text, size_t len, qnpu__encodings **out);
/* The same from a file (QNPU_ERR_IO if it cannot be read). */
qnpu_status qnpu__encodings_read(const char *path, qnpu__encodings **out);
void qnpu__encodings_free(qnpu__encodings *e);
/* The record named `name` in the activations (param 0) or parameters (param 1), or NULL. */
const qnpu__enc_record *qnpu__encodings_find(const qnpu__encodings *e, int param, const char *name);

/* Check that e describes q exactly: one activation encoding per QP with bits > 0 and none for
 * others, one per-channel parameter encoding per weight, every bit-width, scheme, scale (float32,
 * bit for bit) and offset as the writer derives them, and no other names. QNPU_ERR_FORMAT naming
 * the first difference. */
qnpu_status qnpu__encodings_compare(const qnpu__encodings *e, const qnpu_qmodel *q);

#endif
