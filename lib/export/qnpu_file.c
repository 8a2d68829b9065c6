/* qnpu_file.c — the .qnpu container of a quantized model (docs/formats.md, ".qnpu (quantized
 * model)"): a deterministic writer that replaces the destination atomically, and a reader that
 * validates every byte it accepts (section table, checksums, shapes, bit-widths, scales) before
 * the model is handed out. Layout constants live in qnpu_file.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../calib/qgraph.h"
#include "../rotate/hadamard.h"
#include "qnpu_file.h"

/* The vocabulary bound of qnpu__model_check_dims (lib/model/model.c), for the tokenizer section. */
#define QF_MAX_PIECES ((int64_t)1 << 24)
/* Writer buffer; a packed row (at most MAX_DIM = 2^20 bytes) always fits in it. */
#define QF_WBUF ((size_t)1 << 20)

/* ---- little-endian bytes ------------------------------------------------------------------- */

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static float getf(const unsigned char *p)
{
    uint32_t u = get32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double getd(const unsigned char *p)
{
    uint64_t u = get64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static void putf(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put32(p, u);
}

static void putd(unsigned char *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    put64(p, u);
}

static uint64_t align64(uint64_t x)
{
    return (x + QNPU__QF_ALIGN - 1) & ~(uint64_t)(QNPU__QF_ALIGN - 1);
}

/* ---- CRC-32 (slicing by 8) ------------------------------------------------------------------ */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t qnpu__crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = crc ^ get32(p), b = get32(p + 4);
        crc = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^ crc_tab[5][(a >> 16) & 0xff] ^
              crc_tab[4][a >> 24] ^ crc_tab[3][b & 0xff] ^ crc_tab[2][(b >> 8) & 0xff] ^
              crc_tab[1][(b >> 16) & 0xff] ^ crc_tab[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- names and shapes ----------------------------------------------------------------------- */

/* The name of a section, as messages give it. */
static void sec_name(uint32_t id, uint32_t index, char *buf, size_t cap)
{
    switch (id) {
    case QNPU__QS_CONFIG: snprintf(buf, cap, "config"); break;
    case QNPU__QS_EMBEDDING: snprintf(buf, cap, "embedding"); break;
    case QNPU__QS_LINEAR:
        snprintf(buf, cap, "layer%u.%s", index / W_COUNT, qnpu__weight_name((int)(index % W_COUNT)));
        break;
    case QNPU__QS_LM_HEAD: snprintf(buf, cap, "lm_head.w"); break;
    case QNPU__QS_QP: snprintf(buf, cap, "qp"); break;
    case QNPU__QS_R4: snprintf(buf, cap, "layer%u.r4", index); break;
    case QNPU__QS_VOCAB: snprintf(buf, cap, "vocab"); break;
    default: snprintf(buf, cap, "id %u index %u", id, index); return;
    }
    size_t len = strlen(buf);
    if (index && id != QNPU__QS_LINEAR && id != QNPU__QS_R4 && len < cap)
        snprintf(buf + len, cap - len, "#%u", index); /* these carry no index: show a bad one */
}

static int known_id(uint32_t id)
{
    return id >= QNPU__QS_CONFIG && id <= QNPU__QS_VOCAB;
}

/* Shape [rows][cols] of decoder linear w (W[out][in]). */
static void linear_shape(const qnpu_qmodel *q, int w, int64_t *rows, int64_t *cols)
{
    int64_t qd = q->n_heads * q->head_dim, kvd = q->n_kv_heads * q->head_dim;
    static const int kind[W_COUNT] = {0, 1, 1, 2, 3, 3, 4};
    switch (kind[w]) {
    case 0: *rows = qd, *cols = q->dim; break;
    case 1: *rows = kvd, *cols = q->dim; break;
    case 2: *rows = q->dim, *cols = qd; break;
    case 3: *rows = q->ffn, *cols = q->dim; break;
    default: *rows = q->dim, *cols = q->ffn; break;
    }
}

/* Bytes per packed row: two codes per byte (low nibble first) up to 4 bits, else one. */
static uint64_t row_bytes(int bits, int64_t cols)
{
    return bits <= 4 ? ((uint64_t)cols + 1) / 2 : (uint64_t)cols;
}

/* ---- validation, shared by save (QNPU_ERR_INVALID_ARG) and load (QNPU_ERR_FORMAT) ---------- */

static qnpu_status check_config(const qnpu_qmodel *q, const char *path, qnpu_status st)
{
    if (!memchr(q->arch, 0, sizeof q->arch))
        return qnpu__fail(st, "%s: section 'config': the architecture name is not NUL-terminated", path);
    char where[4096];
    snprintf(where, sizeof where, "%s: section 'config'", path);
    struct qnpu_model m;
    memset(&m, 0, sizeof m);
    m.path = where;
    m.dim = q->dim, m.ffn = q->ffn, m.n_layers = q->n_layers, m.n_heads = q->n_heads;
    m.n_kv_heads = q->n_kv_heads, m.head_dim = q->head_dim, m.vocab = q->vocab;
    m.max_seq = q->max_seq, m.rope_theta = q->rope_theta, m.rms_eps = q->rms_eps;
    m.bos = q->bos, m.eos = q->eos;
    qnpu_status s = qnpu__model_check_dims(&m);
    if (s != QNPU_OK && s != st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qnpu_last_error());
        return qnpu__fail(st, "%s", msg);
    }
    return s;
}

static qnpu_status check_linear(const qnpu__qlinear *ql, int64_t rows, int64_t cols, const char *path,
                                const char *name, qnpu_status st)
{
    if (ql->rows != rows || ql->cols != cols)
        return qnpu__fail(st, "%s: tensor '%s' has shape %lldx%lld, expected %lldx%lld", path, name,
                          (long long)ql->rows, (long long)ql->cols, (long long)rows, (long long)cols);
    if (ql->bits < 2 || ql->bits > 8)
        return qnpu__fail(st, "%s: tensor '%s' has %d-bit weights, expected 2..8", path, name, ql->bits);
    if (!ql->q || !ql->scale)
        return qnpu__fail(st, "%s: tensor '%s' has no codes or no scales", path, name);
    int hi = (1 << (ql->bits - 1)) - 1, lo = -hi - 1;
    for (int64_t i = 0; i < rows * cols; i++)
        if (ql->q[i] < lo || ql->q[i] > hi)
            return qnpu__fail(st, "%s: tensor '%s': code %d at [%lld][%lld] is outside [%d, %d] of %d bits",
                              path, name, ql->q[i], (long long)(i / cols), (long long)(i % cols), lo, hi,
                              ql->bits);
    for (int64_t r = 0; r < rows; r++)
        if (!(isfinite(ql->scale[r]) && ql->scale[r] > 0))
            return qnpu__fail(st, "%s: tensor '%s': the scale of row %lld is %g, not finite and positive",
                              path, name, (long long)r, (double)ql->scale[r]);
    for (int64_t r = 0; ql->bias && r < rows; r++)
        if (!isfinite(ql->bias[r]))
            return qnpu__fail(st, "%s: tensor '%s': bias %lld is %g, not finite", path, name, (long long)r,
                              (double)ql->bias[r]);
    return QNPU_OK;
}

static qnpu_status check_qp(const qnpu__qp *r, const char *path, const char *name, qnpu_status st)
{
    if (!(r->bits == 0 || (r->bits >= 2 && r->bits <= 16)))
        return qnpu__fail(st, "%s: quantization point '%s' has %d bits, expected 0 or 2..16", path, name,
                          r->bits);
    if ((r->sym != 0 && r->sym != 1) || (r->fixed != 0 && r->fixed != 1) || r->origin < 0 || r->origin > 3)
        return qnpu__fail(st, "%s: quantization point '%s': sym %d, fixed %d or origin %d is out of range",
                          path, name, r->sym, r->fixed, r->origin);
    if (!isfinite(r->s) || (r->bits && !(r->s > 0)))
        return qnpu__fail(st, "%s: quantization point '%s': scale %g is not finite and positive", path, name,
                          (double)r->s);
    if (r->sym && r->z != 0)
        return qnpu__fail(st, "%s: quantization point '%s' is symmetric with zero point %d", path, name,
                          (int)r->z);
    return QNPU_OK;
}

/* Everything but the dense data (sigma, a_pm1 and a are checked when present). */
static qnpu_status check_r4(const qnpu__hadamard *h, int64_t ffn, const char *path, const char *name,
                            qnpu_status st)
{
    if (h->n != ffn)
        return qnpu__fail(st, "%s: tensor '%s' has order %lld, expected the ffn width %lld", path, name,
                          (long long)h->n, (long long)ffn);
    if (h->p < 1 || h->r < 1 || h->p > h->n || h->r > h->n || h->p * h->r != h->n || (h->r & (h->r - 1)))
        return qnpu__fail(st, "%s: tensor '%s': order %lld is not p = %lld times the power of two r = %lld",
                          path, name, (long long)h->n, (long long)h->p, (long long)h->r);
    if ((int)h->kind < QNPU__HAD_SYLVESTER || (int)h->kind > QNPU__HAD_PARTIAL)
        return qnpu__fail(st, "%s: tensor '%s': unknown Hadamard kind %d", path, name, (int)h->kind);
    if ((h->kind == QNPU__HAD_SYLVESTER) != (h->p == 1))
        return qnpu__fail(st, "%s: tensor '%s': kind %d with a dense factor of order %lld", path, name,
                          (int)h->kind, (long long)h->p);
    int q_ok = h->kind == QNPU__HAD_PALEY1   ? h->q >= 3 && h->p == h->q + 1
               : h->kind == QNPU__HAD_PALEY2 ? h->q >= 5 && h->p == 2 * (h->q + 1)
                                             : h->q == 0;
    if (!q_ok)
        return qnpu__fail(st, "%s: tensor '%s': Paley prime %lld does not fit kind %d of order %lld", path,
                          name, (long long)h->q, (int)h->kind, (long long)h->p);
    if (h->exact != (h->kind != QNPU__HAD_RANDOM_ORTHOGONAL))
        return qnpu__fail(st, "%s: tensor '%s': exact = %d contradicts kind %d", path, name, h->exact,
                          (int)h->kind);
    if (!(isfinite(h->scale) && h->scale > 0 && h->scale <= 1))
        return qnpu__fail(st, "%s: tensor '%s': scale %g is outside (0, 1]", path, name, h->scale);
    if (!h->sigma)
        return qnpu__fail(st, "%s: tensor '%s' has no signs", path, name);
    for (int64_t i = 0; i < h->n; i++)
        if (h->sigma[i] != 1 && h->sigma[i] != -1)
            return qnpu__fail(st, "%s: tensor '%s': sign %lld is %d, not +-1", path, name, (long long)i,
                              h->sigma[i]);
    int64_t pp = h->p * h->p;
    if (h->kind == QNPU__HAD_RANDOM_ORTHOGONAL) {
        if (!h->a)
            return qnpu__fail(st, "%s: tensor '%s' has no dense factor", path, name);
        for (int64_t i = 0; i < pp; i++)
            if (!(fabs(h->a[i]) <= 1.0))
                return qnpu__fail(st, "%s: tensor '%s': orthogonal entry %lld is %g, outside [-1, 1]", path,
                                  name, (long long)i, h->a[i]);
    } else if (h->kind != QNPU__HAD_PARTIAL) {
        if (!h->a_pm1)
            return qnpu__fail(st, "%s: tensor '%s' has no +-1 factor", path, name);
        for (int64_t i = 0; i < pp; i++)
            if (h->a_pm1[i] != 1 && h->a_pm1[i] != -1)
                return qnpu__fail(st, "%s: tensor '%s': Hadamard entry %lld is %d, not +-1", path, name,
                                  (long long)i, h->a_pm1[i]);
    }
    return QNPU_OK;
}

/* The whole model. `st` is the status of a violation. */
static qnpu_status validate(const qnpu_qmodel *q, const char *path, qnpu_status st)
{
    qnpu_status s = check_config(q, path, st);
    if (s != QNPU_OK)
        return s;
    if (!q->tok_embd || !q->lin || !q->qp)
        return qnpu__fail(st, "%s: the model is incomplete (no embedding, linears or QP records)", path);
    size_t ne = (size_t)(q->vocab * q->dim);
    for (size_t i = 0; i < ne; i++)
        if (!isfinite(q->tok_embd[i]))
            return qnpu__fail(st, "%s: tensor 'embedding': value %g of token %lld is not finite", path,
                              (double)q->tok_embd[i], (long long)(i / (size_t)q->dim));
    char name[96];
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int w = 0; w < W_COUNT; w++) {
            int64_t rows, cols;
            linear_shape(q, w, &rows, &cols);
            snprintf(name, sizeof name, "layer%lld.%s", (long long)l, qnpu__weight_name(w));
            if ((s = check_linear(&q->lin[l * W_COUNT + w], rows, cols, path, name, st)) != QNPU_OK)
                return s;
        }
    if ((s = check_linear(&q->head, q->vocab, q->dim, path, "lm_head.w", st)) != QNPU_OK)
        return s;
    if (q->head.bias)
        return qnpu__fail(st, "%s: tensor 'lm_head.w' carries a bias, which the graph does not have", path);
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int k = 0; k < QP_LAYER_COUNT; k++) {
            snprintf(name, sizeof name, "layer%lld.%s", (long long)l, qnpu__qp_layer_name(k));
            if ((s = check_qp(&q->qp[l * QP_LAYER_COUNT + k], path, name, st)) != QNPU_OK)
                return s;
        }
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        if ((s = check_qp(&q->gqp[k], path, qnpu__qp_global_name(k), st)) != QNPU_OK)
            return s;
    for (int64_t l = 0; q->r4 && l < q->n_layers; l++) {
        snprintf(name, sizeof name, "layer%lld.r4", (long long)l);
        if (q->r4[l] && (s = check_r4(q->r4[l], q->ffn, path, name, st)) != QNPU_OK)
            return s;
    }
    const qnpu__vocab *v = q->vocab_tok;
    if (v) {
        if (v->n < 1 || v->n > QF_MAX_PIECES || !v->pieces || !v->lens || !v->scores)
            return qnpu__fail(st, "%s: section 'vocab': %lld pieces, or missing arrays", path, (long long)v->n);
        for (int64_t i = 0; i < v->n; i++)
            if (!v->pieces[i])
                return qnpu__fail(st, "%s: section 'vocab': piece %lld is NULL", path, (long long)i);
    }
    return QNPU_OK;
}

/* ---- writer --------------------------------------------------------------------------------- */

typedef struct writer {
    qnpu__afile f;       /* the atomic output file */
    unsigned char *buf;  /* QF_WBUF bytes */
    size_t fill;
    uint64_t pos;        /* file offset of the next byte */
    uint32_t crc;        /* CRC-32 of the current section so far */
} writer;

typedef struct sect {
    uint32_t id, index;
    uint64_t off, size;
    uint32_t crc;
} sect;

static void w_flush(writer *w)
{
    qnpu__afile_write(&w->f, w->buf, w->fill);
    w->fill = 0;
}

/* Room for n <= QF_WBUF bytes at the end of the buffer; fill them, then w_commit(w, n). */
static unsigned char *w_reserve(writer *w, size_t n)
{
    if (w->fill + n > QF_WBUF)
        w_flush(w);
    return w->buf + w->fill;
}

static void w_commit(writer *w, size_t n)
{
    w->crc = qnpu__crc32(w->crc, w->buf + w->fill, n);
    w->fill += n;
    w->pos += n;
}

static void w_bytes(writer *w, const void *data, size_t n)
{
    const unsigned char *s = data;
    while (n) {
        size_t k = n < QF_WBUF ? n : QF_WBUF;
        memcpy(w_reserve(w, k), s, k);
        w_commit(w, k);
        s += k;
        n -= k;
    }
}

static void w_zeros(writer *w, size_t n)
{
    while (n) {
        size_t k = n < QF_WBUF ? n : QF_WBUF;
        memset(w_reserve(w, k), 0, k);
        w_commit(w, k);
        n -= k;
    }
}

static void w_f32s(writer *w, const float *x, size_t n)
{
    while (n) {
        size_t k = n < QF_WBUF / 4 ? n : QF_WBUF / 4;
        unsigned char *d = w_reserve(w, 4 * k);
        for (size_t i = 0; i < k; i++)
            putf(d + 4 * i, x[i]);
        w_commit(w, 4 * k);
        x += k;
        n -= k;
    }
}

static void sec_begin(writer *w, sect *s)
{
    w_zeros(w, (size_t)(align64(w->pos) - w->pos));
    s->off = w->pos;
    w->crc = 0;
}

static void sec_end(writer *w, sect *s)
{
    s->size = w->pos - s->off;
    s->crc = w->crc;
}

static void write_config(writer *w, const qnpu_qmodel *q)
{
    unsigned char c[QNPU__QF_CONFIG_SIZE] = {0};
    const int64_t dims[8] = {q->dim, q->ffn, q->n_layers, q->n_heads, q->n_kv_heads, q->head_dim,
                             q->vocab, q->max_seq};
    for (int i = 0; i < 8; i++)
        put64(c + 8 * i, (uint64_t)dims[i]);
    putd(c + 64, q->rope_theta);
    putd(c + 72, q->rms_eps);
    put32(c + 80, (uint32_t)q->bos);
    put32(c + 84, (uint32_t)q->eos);
    put32(c + 88, q->r4 ? QNPU__QF_CONFIG_HAS_R4 : 0);
    put32(c + 92, W_COUNT);
    put32(c + 96, QP_LAYER_COUNT);
    put32(c + 100, QP_GLOBAL_COUNT);
    memcpy(c + 104, q->arch, strlen(q->arch)); /* NUL-padded, so the bytes are deterministic */
    w_bytes(w, c, sizeof c);
}

static void write_linear(writer *w, const qnpu__qlinear *ql)
{
    uint64_t rb = row_bytes(ql->bits, ql->cols), codes = (uint64_t)ql->rows * rb;
    uint64_t so = align64(QNPU__QF_LINEAR_HEADER + codes);
    uint64_t bo = ql->bias ? align64(so + 4 * (uint64_t)ql->rows) : 0;
    unsigned char h[QNPU__QF_LINEAR_HEADER] = {0};
    put64(h, (uint64_t)ql->rows);
    put64(h + 8, (uint64_t)ql->cols);
    put32(h + 16, (uint32_t)ql->bits);
    put32(h + 20, ql->bias ? QNPU__QF_LINEAR_HAS_BIAS : 0);
    put64(h + 24, rb);
    put64(h + 32, so);
    put64(h + 40, bo);
    w_bytes(w, h, sizeof h);
    for (int64_t r = 0; r < ql->rows; r++) {
        const int8_t *row = ql->q + r * ql->cols;
        unsigned char *d = w_reserve(w, (size_t)rb);
        if (ql->bits <= 4) {
            for (int64_t c = 0; c < ql->cols; c += 2) {
                unsigned lo = (uint8_t)row[c] & 0xFu;
                unsigned hi = c + 1 < ql->cols ? (uint8_t)row[c + 1] & 0xFu : 0u;
                d[c / 2] = (unsigned char)(lo | hi << 4);
            }
        } else {
            memcpy(d, row, (size_t)rb);
        }
        w_commit(w, (size_t)rb);
    }
    w_zeros(w, (size_t)(so - QNPU__QF_LINEAR_HEADER - codes));
    w_f32s(w, ql->scale, (size_t)ql->rows);
    if (ql->bias) {
        w_zeros(w, (size_t)(bo - so - 4 * (uint64_t)ql->rows));
        w_f32s(w, ql->bias, (size_t)ql->rows);
    }
}

static void write_qp_record(writer *w, const qnpu__qp *r)
{
    unsigned char *d = w_reserve(w, QNPU__QF_QP_RECORD);
    putf(d, r->s);
    put32(d + 4, (uint32_t)r->z);
    d[8] = (unsigned char)r->bits;
    d[9] = (unsigned char)r->sym;
    d[10] = (unsigned char)r->fixed;
    d[11] = (unsigned char)r->origin;
    w_commit(w, QNPU__QF_QP_RECORD);
}

static int dense_kind(qnpu__had_kind k)
{
    return k == QNPU__HAD_PARTIAL ? QNPU__QF_DENSE_NONE
           : k == QNPU__HAD_RANDOM_ORTHOGONAL ? QNPU__QF_DENSE_F64
                                              : QNPU__QF_DENSE_PM1;
}

static void write_r4(writer *w, const qnpu__hadamard *h)
{
    unsigned char hd[QNPU__QF_R4_HEADER] = {0};
    int dense = dense_kind(h->kind);
    put64(hd, (uint64_t)h->n);
    put64(hd + 8, (uint64_t)h->p);
    put64(hd + 16, (uint64_t)h->r);
    put64(hd + 24, (uint64_t)h->q);
    put32(hd + 32, (uint32_t)h->kind);
    put32(hd + 36, (uint32_t)h->exact);
    putd(hd + 40, h->scale);
    put32(hd + 48, (uint32_t)dense);
    w_bytes(w, hd, sizeof hd);
    w_bytes(w, h->sigma, (size_t)h->n);
    if (dense == QNPU__QF_DENSE_NONE)
        return;
    w_zeros(w, (size_t)(align64(w->pos) - w->pos)); /* sections start aligned, so this aligns */
    size_t pp = (size_t)(h->p * h->p);
    if (dense == QNPU__QF_DENSE_PM1) {
        w_bytes(w, h->a_pm1, pp);
        return;
    }
    for (size_t i = 0; i < pp; i++) {
        unsigned char *d = w_reserve(w, 8);
        putd(d, h->a[i]);
        w_commit(w, 8);
    }
}

static void write_vocab(writer *w, const qnpu__vocab *v)
{
    unsigned char hd[QNPU__QF_VOCAB_HEADER] = {0};
    put64(hd, (uint64_t)v->n);
    put32(hd + 8, (v->types ? QNPU__QF_VOCAB_HAS_TYPES : 0) | (v->bpe ? QNPU__QF_VOCAB_HAS_BPE : 0));
    w_bytes(w, hd, sizeof hd);
    for (int64_t i = 0; i < v->n; i++) {
        unsigned char *d = w_reserve(w, 12);
        putf(d, v->scores[i]);
        put32(d + 4, v->types ? (uint32_t)v->types[i] : 0);
        put32(d + 8, v->lens[i]);
        w_commit(w, 12);
        w_bytes(w, v->pieces[i], v->lens[i]);
    }
    if (v->bpe) { /* u64 size, then lib/model/tokenizer_bpe.c's serialized form */
        unsigned char sz[8];
        put64(sz, (uint64_t)v->bpe_size);
        w_bytes(w, sz, 8);
        w_bytes(w, v->bpe, v->bpe_size);
    }
}

/* Stream every section into w, filling secs (ids and indices already set). */
static void write_sections(writer *w, const qnpu_qmodel *q, sect *secs)
{
    int64_t L = q->n_layers;
    size_t i = 0;
    sec_begin(w, &secs[i]);
    write_config(w, q);
    sec_end(w, &secs[i++]);
    sec_begin(w, &secs[i]);
    w_f32s(w, q->tok_embd, (size_t)(q->vocab * q->dim));
    sec_end(w, &secs[i++]);
    for (int64_t k = 0; k < L * W_COUNT; k++) {
        sec_begin(w, &secs[i]);
        write_linear(w, &q->lin[k]);
        sec_end(w, &secs[i++]);
    }
    sec_begin(w, &secs[i]);
    write_linear(w, &q->head);
    sec_end(w, &secs[i++]);
    sec_begin(w, &secs[i]);
    for (int64_t k = 0; k < L * QP_LAYER_COUNT; k++)
        write_qp_record(w, &q->qp[k]);
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        write_qp_record(w, &q->gqp[k]);
    sec_end(w, &secs[i++]);
    for (int64_t l = 0; q->r4 && l < L; l++)
        if (q->r4[l]) {
            sec_begin(w, &secs[i]);
            write_r4(w, q->r4[l]);
            sec_end(w, &secs[i++]);
        }
    if (q->vocab_tok) {
        sec_begin(w, &secs[i]);
        write_vocab(w, q->vocab_tok);
        sec_end(w, &secs[i++]);
    }
    w_flush(w);
}

qnpu_status qnpu_qmodel_save(const qnpu_qmodel *q, const char *path)
{
    if (!q || !path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_save: NULL argument or empty path");
    qnpu_status s = validate(q, path, QNPU_ERR_INVALID_ARG);
    if (s != QNPU_OK) {
        qnpu__error_prefix("qnpu_qmodel_save");
        return s;
    }
    int64_t L = q->n_layers;
    size_t n_r4 = 0;
    for (int64_t l = 0; q->r4 && l < L; l++)
        n_r4 += q->r4[l] != NULL;
    size_t nsec = 2 + (size_t)(L * W_COUNT) + 2 + n_r4 + (q->vocab_tok ? 1 : 0);
    size_t tlen = QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * nsec;
    sect *secs = qnpu__calloc(nsec, sizeof *secs);
    unsigned char *hdr = qnpu__calloc(1, tlen);
    writer w = {.f = {.fd = -1}, .buf = qnpu__malloc(QF_WBUF)};
    if (!secs || !hdr || !w.buf) {
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory while saving", path);
        goto out;
    }
    /* the table: ids and indices in file order */
    size_t i = 0;
    secs[i++].id = QNPU__QS_CONFIG;
    secs[i++].id = QNPU__QS_EMBEDDING;
    for (int64_t k = 0; k < L * W_COUNT; k++, i++)
        secs[i].id = QNPU__QS_LINEAR, secs[i].index = (uint32_t)k;
    secs[i++].id = QNPU__QS_LM_HEAD;
    secs[i++].id = QNPU__QS_QP;
    for (int64_t l = 0; q->r4 && l < L; l++)
        if (q->r4[l])
            secs[i].id = QNPU__QS_R4, secs[i++].index = (uint32_t)l;
    if (q->vocab_tok)
        secs[i++].id = QNPU__QS_VOCAB;

    if ((s = qnpu__afile_open(&w.f, path)) != QNPU_OK)
        goto out;
    w_zeros(&w, tlen); /* header and table, written last */
    write_sections(&w, q, secs);

    memcpy(hdr + QNPU__QH_MAGIC, QNPU__QF_MAGIC, 4);
    put32(hdr + QNPU__QH_FORMAT_VERSION, QNPU_FORMAT_VERSION);
    put32(hdr + QNPU__QH_LIB_VERSION, QNPU_VERSION_NUMBER);
    put32(hdr + QNPU__QH_HEADER_SIZE, QNPU__QF_HEADER_SIZE);
    put32(hdr + QNPU__QH_SECTION_COUNT, (uint32_t)nsec);
    put32(hdr + QNPU__QH_ENTRY_SIZE, QNPU__QF_ENTRY_SIZE);
    put64(hdr + QNPU__QH_TABLE_OFFSET, QNPU__QF_HEADER_SIZE);
    put64(hdr + QNPU__QH_FILE_SIZE, w.pos);
    memcpy(hdr + QNPU__QH_LIB_VERSION_STR, QNPU_VERSION_STRING,
           strlen(QNPU_VERSION_STRING) < 15 ? strlen(QNPU_VERSION_STRING) : 15);
    for (i = 0; i < nsec; i++) {
        unsigned char *e = hdr + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i;
        put32(e + QNPU__QE_ID, secs[i].id);
        put32(e + QNPU__QE_INDEX, secs[i].index);
        put64(e + QNPU__QE_OFFSET, secs[i].off);
        put64(e + QNPU__QE_SIZE, secs[i].size);
        put32(e + QNPU__QE_CRC, secs[i].crc);
        put16(e + QNPU__QE_ALIGN, QNPU__QF_ALIGN);
        put16(e + QNPU__QE_FLAGS, 0);
    }
    put32(hdr + QNPU__QH_CRC, qnpu__crc32(0, hdr, tlen)); /* computed with the field still zero */
    qnpu__afile_pwrite(&w.f, hdr, tlen, 0);
    s = qnpu__afile_commit(&w.f);
out:
    qnpu__afile_abort(&w.f);
    qnpu__free(w.buf);
    qnpu__free(hdr);
    qnpu__free(secs);
    return s;
}

/* ---- reader --------------------------------------------------------------------------------- */

typedef struct entry {
    uint32_t id, index;
    uint64_t off, size;
    uint32_t crc;
    uint16_t align, flags;
    char name[48];
} entry;

typedef struct loader {
    const char *path;
    const unsigned char *data;
    size_t size;
    entry *e;
    uint32_t n;
    int has_r4;
} loader;

/* Header, table geometry and every checksum. */
static qnpu_status read_table(loader *ld)
{
    const unsigned char *d = ld->data;
    const char *path = ld->path;
    size_t n = ld->size;
    if (memcmp(d, QNPU__QF_MAGIC, n < 4 ? n : 4) != 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: not a .qnpu file (bad magic)", path);
    if (n < QNPU__QF_HEADER_SIZE)
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: section 'header' needs bytes 0..%d, the file has %zu",
                          path, QNPU__QF_HEADER_SIZE, n);
    uint32_t ver = get32(d + QNPU__QH_FORMAT_VERSION);
    char writer_version[17] = {0};
    memcpy(writer_version, d + QNPU__QH_LIB_VERSION_STR, 16);
    for (int i = 0; i < 16; i++)
        if (writer_version[i] && (writer_version[i] < 0x20 || writer_version[i] > 0x7e))
            writer_version[i] = '?';
    if (ver > QNPU_FORMAT_VERSION)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: format version %u is newer than this library's %d (written by libquantnpu "
                          "%s); upgrade libquantnpu", path, ver, QNPU_FORMAT_VERSION, writer_version);
    if (ver == 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: header: format version 0 is invalid", path);
    uint32_t hsize = get32(d + QNPU__QH_HEADER_SIZE), count = get32(d + QNPU__QH_SECTION_COUNT);
    uint32_t esize = get32(d + QNPU__QH_ENTRY_SIZE);
    uint64_t toff = get64(d + QNPU__QH_TABLE_OFFSET);
    if (hsize != QNPU__QF_HEADER_SIZE || esize != QNPU__QF_ENTRY_SIZE || toff != QNPU__QF_HEADER_SIZE)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: header: header size %u, entry size %u and table offset %llu are not %d, %d "
                          "and %d", path, hsize, esize, (unsigned long long)toff, QNPU__QF_HEADER_SIZE,
                          QNPU__QF_ENTRY_SIZE, QNPU__QF_HEADER_SIZE);
    if (count < 1 || count > QNPU__QF_MAX_SECTIONS)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: header: section count %u is outside [1, %u]", path, count,
                          QNPU__QF_MAX_SECTIONS);
    uint64_t tend = QNPU__QF_HEADER_SIZE + (uint64_t)QNPU__QF_ENTRY_SIZE * count;
    if (tend > n)
        return qnpu__fail(QNPU_ERR_IO,
                          "%s: truncated: section 'section table' needs bytes %d..%llu, the file has %zu",
                          path, QNPU__QF_HEADER_SIZE, (unsigned long long)tend, n);
    static const unsigned char zero[4];
    uint32_t crc = qnpu__crc32(0, d, QNPU__QH_CRC);
    crc = qnpu__crc32(crc, zero, 4);
    crc = qnpu__crc32(crc, d + QNPU__QH_CRC + 4, (size_t)tend - QNPU__QH_CRC - 4);
    if (crc != get32(d + QNPU__QH_CRC))
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: section 'header': checksum mismatch (stored %08x, computed %08x): the header "
                          "or the section table is corrupt", path, get32(d + QNPU__QH_CRC), crc);
    if (get32(d + QNPU__QH_FLAGS) != 0)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: header: unknown flags 0x%x", path, get32(d + QNPU__QH_FLAGS));

    ld->e = qnpu__calloc(count, sizeof *ld->e);
    if (!ld->e)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    ld->n = count;
    uint64_t prev_end = tend;
    const char *prev = "section table";
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *p = d + QNPU__QF_HEADER_SIZE + (size_t)QNPU__QF_ENTRY_SIZE * i;
        entry *e = &ld->e[i];
        e->id = get32(p + QNPU__QE_ID);
        e->index = get32(p + QNPU__QE_INDEX);
        e->off = get64(p + QNPU__QE_OFFSET);
        e->size = get64(p + QNPU__QE_SIZE);
        e->crc = get32(p + QNPU__QE_CRC);
        e->align = get16(p + QNPU__QE_ALIGN);
        e->flags = get16(p + QNPU__QE_FLAGS);
        sec_name(e->id, e->index, e->name, sizeof e->name);
        if (e->align != QNPU__QF_ALIGN)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: section '%s' declares alignment %u, not %d",
                              path, e->name, e->align, QNPU__QF_ALIGN);
        if (e->flags & ~QNPU__QE_FLAG_OPTIONAL)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: section '%s' has unknown flags 0x%x", path,
                              e->name, e->flags);
        if (!known_id(e->id) && !(e->flags & QNPU__QE_FLAG_OPTIONAL))
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: unknown required section id %u (entry %u)",
                              path, e->id, i);
        if (e->off % QNPU__QF_ALIGN)
            return qnpu__fail(QNPU_ERR_FORMAT,
                              "%s: section table: section '%s' at offset %llu is misaligned (not a multiple "
                              "of %d)", path, e->name, (unsigned long long)e->off, QNPU__QF_ALIGN);
        if (e->off < prev_end)
            return qnpu__fail(QNPU_ERR_FORMAT,
                              "%s: section table: section '%s' at offset %llu starts before the end (%llu) of "
                              "'%s': sections overlap or are out of order", path, e->name,
                              (unsigned long long)e->off, (unsigned long long)prev_end, prev);
        if (e->size > UINT64_MAX - e->off)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: section '%s' has an impossible size %llu",
                              path, e->name, (unsigned long long)e->size);
        if (e->off + e->size > n)
            return qnpu__fail(QNPU_ERR_IO, "%s: truncated: section '%s' needs bytes %llu..%llu, the file has %zu",
                              path, e->name, (unsigned long long)e->off,
                              (unsigned long long)(e->off + e->size), n);
        prev_end = e->off + e->size;
        prev = e->name;
    }
    uint64_t fsize = get64(d + QNPU__QH_FILE_SIZE);
    if (fsize > n)
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: the header says the file has %llu bytes, it has %zu",
                          path, (unsigned long long)fsize, n);
    if (fsize < n)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: %llu unexpected bytes after the end of the file (%llu)", path,
                          (unsigned long long)(n - fsize), (unsigned long long)fsize);
    for (uint32_t i = 0; i < count; i++) {
        const entry *e = &ld->e[i];
        uint32_t c = qnpu__crc32(0, d + e->off, (size_t)e->size);
        if (c != e->crc)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section '%s': checksum mismatch (stored %08x, computed %08x)",
                              path, e->name, e->crc, c);
    }
    return QNPU_OK;
}

static const entry *next_known(const loader *ld, uint32_t *i)
{
    while (*i < ld->n && !known_id(ld->e[*i].id))
        (*i)++;
    return *i < ld->n ? &ld->e[(*i)++] : NULL;
}

/* The table's next section must be (id, index); e is what it holds (NULL: it ended). */
static qnpu_status expect(const loader *ld, const entry *e, uint32_t id, uint32_t index)
{
    if (e && e->id == id && e->index == index)
        return QNPU_OK;
    char want[48];
    sec_name(id, index, want, sizeof want);
    if (!e)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: section '%s' is missing", ld->path, want);
    return qnpu__fail(QNPU_ERR_FORMAT,
                      "%s: section table: expected section '%s', found '%s' (missing, repeated or out of order)",
                      ld->path, want, e->name);
}

static qnpu_status size_is(const loader *ld, const entry *e, uint64_t want, const char *what)
{
    if (e->size == want)
        return QNPU_OK;
    return qnpu__fail(QNPU_ERR_FORMAT, "%s: section '%s' has %llu bytes, expected %llu (%s)", ld->path, e->name,
                      (unsigned long long)e->size, (unsigned long long)want, what);
}

static void get_f32s(float *dst, const unsigned char *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++)
        dst[i] = getf(src + 4 * i);
#endif
}

static qnpu_status parse_config(loader *ld, const entry *e, qnpu_qmodel *q)
{
    qnpu_status s = size_is(ld, e, QNPU__QF_CONFIG_SIZE, "the fixed config record");
    if (s != QNPU_OK)
        return s;
    const unsigned char *c = ld->data + e->off;
    int64_t *dims[8] = {&q->dim, &q->ffn, &q->n_layers, &q->n_heads, &q->n_kv_heads, &q->head_dim,
                        &q->vocab, &q->max_seq};
    for (int i = 0; i < 8; i++)
        *dims[i] = (int64_t)get64(c + 8 * i);
    q->rope_theta = getd(c + 64);
    q->rms_eps = getd(c + 72);
    q->bos = (int32_t)get32(c + 80);
    q->eos = (int32_t)get32(c + 84);
    uint32_t flags = get32(c + 88);
    if (flags & ~QNPU__QF_CONFIG_HAS_R4)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'config': unknown flags 0x%x", ld->path, flags);
    ld->has_r4 = (flags & QNPU__QF_CONFIG_HAS_R4) != 0;
    if (get32(c + 92) != W_COUNT || get32(c + 96) != QP_LAYER_COUNT || get32(c + 100) != QP_GLOBAL_COUNT)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: section 'config': the file has %u linears and %u + %u quantization points per "
                          "layer and model, this library's graph has %d and %d + %d", ld->path, get32(c + 92),
                          get32(c + 96), get32(c + 100), W_COUNT, QP_LAYER_COUNT, QP_GLOBAL_COUNT);
    memcpy(q->arch, c + 104, sizeof q->arch);
    return check_config(q, ld->path, QNPU_ERR_FORMAT);
}

static qnpu_status parse_embedding(loader *ld, const entry *e, qnpu_qmodel *q)
{
    size_t n = (size_t)(q->vocab * q->dim);
    qnpu_status s = size_is(ld, e, 4 * (uint64_t)n, "vocab x dim float32");
    if (s != QNPU_OK)
        return s;
    if (!(q->tok_embd = qnpu__malloc(n * sizeof(float))))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor 'embedding': out of memory", ld->path);
    get_f32s(q->tok_embd, ld->data + e->off, n);
    return QNPU_OK;
}

static qnpu_status parse_linear(loader *ld, const entry *e, qnpu__qlinear *ql, int64_t rows, int64_t cols,
                                int allow_bias)
{
    const char *path = ld->path, *name = e->name;
    const unsigned char *p = ld->data + e->off;
    if (e->size < QNPU__QF_LINEAR_HEADER)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': the section has %llu bytes, less than its header",
                          path, name, (unsigned long long)e->size);
    int64_t r = (int64_t)get64(p), c = (int64_t)get64(p + 8);
    uint32_t bits = get32(p + 16), flags = get32(p + 20);
    if (r != rows || c != cols)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' has shape %lldx%lld, expected %lldx%lld", path, name,
                          (long long)r, (long long)c, (long long)rows, (long long)cols);
    if (bits < 2 || bits > 8)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' has %u-bit weights, expected 2..8", path, name, bits);
    if (flags & ~QNPU__QF_LINEAR_HAS_BIAS)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': unknown flags 0x%x", path, name, flags);
    int bias = (flags & QNPU__QF_LINEAR_HAS_BIAS) != 0;
    if (bias && !allow_bias)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s' carries a bias, which the graph does not have", path,
                          name);
    uint64_t rb = row_bytes((int)bits, cols), codes = (uint64_t)rows * rb;
    uint64_t so = align64(QNPU__QF_LINEAR_HEADER + codes);
    uint64_t bo = bias ? align64(so + 4 * (uint64_t)rows) : 0;
    uint64_t size = (bias ? bo : so) + 4 * (uint64_t)rows;
    if (get64(p + 24) != rb || get64(p + 32) != so || get64(p + 40) != bo || e->size != size)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: tensor '%s': layout (row bytes %llu, scales at %llu, bias at %llu, %llu bytes) "
                          "is not the expected (%llu, %llu, %llu, %llu)", path, name,
                          (unsigned long long)get64(p + 24), (unsigned long long)get64(p + 32),
                          (unsigned long long)get64(p + 40), (unsigned long long)e->size,
                          (unsigned long long)rb, (unsigned long long)so, (unsigned long long)bo,
                          (unsigned long long)size);
    ql->rows = rows, ql->cols = cols, ql->bits = (int)bits;
    ql->q = qnpu__malloc((size_t)(rows * cols));
    ql->scale = qnpu__malloc((size_t)rows * sizeof(float));
    if (bias)
        ql->bias = qnpu__malloc((size_t)rows * sizeof(float));
    if (!ql->q || !ql->scale || (bias && !ql->bias))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", path, name);
    const unsigned char *src = p + QNPU__QF_LINEAR_HEADER;
    for (int64_t i = 0; i < rows; i++, src += rb) {
        int8_t *dst = ql->q + i * cols;
        if (bits <= 4) {
            for (int64_t j = 0; j < cols; j++) {
                int nib = (j & 1) ? src[j / 2] >> 4 : src[j / 2] & 0xF;
                dst[j] = (int8_t)(nib >= 8 ? nib - 16 : nib);
            }
        } else {
            memcpy(dst, src, (size_t)cols);
        }
    }
    get_f32s(ql->scale, p + so, (size_t)rows);
    if (bias)
        get_f32s(ql->bias, p + bo, (size_t)rows);
    return QNPU_OK;
}

static void read_qp_record(qnpu__qp *r, const unsigned char *p)
{
    r->s = getf(p);
    r->z = (int32_t)get32(p + 4);
    r->bits = (int8_t)p[8];
    r->sym = (int8_t)p[9];
    r->fixed = (int8_t)p[10];
    r->origin = (int8_t)p[11];
}

static qnpu_status parse_qp(loader *ld, const entry *e, qnpu_qmodel *q)
{
    int64_t nl = q->n_layers * QP_LAYER_COUNT;
    qnpu_status s = size_is(ld, e, (uint64_t)(nl + QP_GLOBAL_COUNT) * QNPU__QF_QP_RECORD,
                            "12-byte records for every layer's and the model's points");
    if (s != QNPU_OK)
        return s;
    const unsigned char *p = ld->data + e->off;
    for (int64_t k = 0; k < nl; k++, p += QNPU__QF_QP_RECORD)
        read_qp_record(&q->qp[k], p);
    for (int k = 0; k < QP_GLOBAL_COUNT; k++, p += QNPU__QF_QP_RECORD)
        read_qp_record(&q->gqp[k], p);
    return QNPU_OK;
}

static qnpu_status parse_r4(loader *ld, const entry *e, qnpu_qmodel *q, int64_t l)
{
    const char *path = ld->path, *name = e->name;
    const unsigned char *p = ld->data + e->off;
    if (e->size < QNPU__QF_R4_HEADER)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': the section has %llu bytes, less than its header",
                          path, name, (unsigned long long)e->size);
    qnpu__hadamard *h = qnpu__calloc(1, sizeof *h);
    if (!h)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", path, name);
    q->r4[l] = h;
    h->n = (int64_t)get64(p);
    h->p = (int64_t)get64(p + 8);
    h->r = (int64_t)get64(p + 16);
    h->q = (int64_t)get64(p + 24);
    uint32_t kind = get32(p + 32), exact = get32(p + 36), dense = get32(p + 48);
    h->kind = (qnpu__had_kind)(kind <= QNPU__HAD_PARTIAL ? kind : 99);
    h->exact = exact <= 1 ? (int)exact : 99;
    h->scale = getd(p + 40);
    /* the geometry first: n = ffn bounds p and r, so p * p cannot overflow */
    if (h->n != q->ffn || h->p < 1 || h->r < 1 || h->p > h->n || h->r > h->n || h->p * h->r != h->n)
        return check_r4(h, q->ffn, path, name, QNPU_ERR_FORMAT);
    if (kind > QNPU__HAD_PARTIAL)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': unknown Hadamard kind %u", path, name, kind);
    if (dense != (uint32_t)dense_kind(h->kind))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: tensor '%s': dense encoding %u does not fit kind %u", path, name,
                          dense, kind);
    uint64_t pp = (uint64_t)h->p * (uint64_t)h->p, n = (uint64_t)h->n;
    uint64_t doff = align64(QNPU__QF_R4_HEADER + n);
    uint64_t size = dense == QNPU__QF_DENSE_NONE ? QNPU__QF_R4_HEADER + n
                    : doff + pp * (dense == QNPU__QF_DENSE_F64 ? 8 : 1);
    qnpu_status s = size_is(ld, e, size, "header, signs and dense factor");
    if (s != QNPU_OK)
        return s;
    h->sigma = qnpu__malloc((size_t)n);
    if (!h->sigma)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", path, name);
    memcpy(h->sigma, p + QNPU__QF_R4_HEADER, (size_t)n);
    if (dense == QNPU__QF_DENSE_PM1) {
        h->a_pm1 = qnpu__malloc((size_t)pp);
        h->a = qnpu__malloc((size_t)pp * sizeof *h->a);
        if (!h->a_pm1 || !h->a)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", path, name);
        memcpy(h->a_pm1, p + doff, (size_t)pp);
        for (uint64_t k = 0; k < pp; k++)
            h->a[k] = h->a_pm1[k];
    } else if (dense == QNPU__QF_DENSE_F64) {
        h->a = qnpu__malloc((size_t)pp * sizeof *h->a);
        if (!h->a)
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: tensor '%s': out of memory", path, name);
        for (uint64_t k = 0; k < pp; k++)
            h->a[k] = getd(p + doff + 8 * k);
    }
    /* every value, before anything is derived from them */
    if ((s = check_r4(h, q->ffn, path, name, QNPU_ERR_FORMAT)) != QNPU_OK)
        return s;
    if ((s = qnpu__hadamard_derive(h)) != QNPU_OK)
        qnpu__error_prefix("%s: tensor '%s'", path, name);
    return s;
}

static qnpu_status parse_vocab(loader *ld, const entry *e, qnpu_qmodel *q)
{
    const char *path = ld->path;
    const unsigned char *p = ld->data + e->off;
    uint64_t size = e->size;
    if (size < QNPU__QF_VOCAB_HEADER)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab' has %llu bytes, less than its header", path,
                          (unsigned long long)size);
    int64_t n = (int64_t)get64(p);
    uint32_t flags = get32(p + 8);
    if (flags & ~(QNPU__QF_VOCAB_HAS_TYPES | QNPU__QF_VOCAB_HAS_BPE))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': unknown flags 0x%x", path, flags);
    if (n < 1 || n > QF_MAX_PIECES || (uint64_t)n > (size - QNPU__QF_VOCAB_HEADER) / 12)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': %lld pieces do not fit in %llu bytes (or "
                          "exceed %lld)", path, (long long)n, (unsigned long long)size, (long long)QF_MAX_PIECES);
    qnpu__vocab *v = qnpu__calloc(1, sizeof *v);
    if (!v)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: section 'vocab': out of memory", path);
    q->vocab_tok = v;
    v->pieces = qnpu__calloc((size_t)n, sizeof *v->pieces);
    v->lens = qnpu__calloc((size_t)n, sizeof *v->lens);
    v->scores = qnpu__calloc((size_t)n, sizeof *v->scores);
    if (flags & QNPU__QF_VOCAB_HAS_TYPES)
        v->types = qnpu__calloc((size_t)n, sizeof *v->types);
    if (!v->pieces || !v->lens || !v->scores || ((flags & QNPU__QF_VOCAB_HAS_TYPES) && !v->types))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: section 'vocab': out of memory", path);
    v->n = n;
    uint64_t off = QNPU__QF_VOCAB_HEADER;
    for (int64_t i = 0; i < n; i++) {
        if (size - off < 12)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': piece %lld runs past the end of the section",
                              path, (long long)i);
        v->scores[i] = getf(p + off);
        if (v->types)
            v->types[i] = (int32_t)get32(p + off + 4);
        uint32_t len = get32(p + off + 8);
        off += 12;
        if (len > size - off)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': piece %lld (%u bytes) runs past the end of "
                              "the section", path, (long long)i, len);
        if (!(v->pieces[i] = qnpu__malloc((size_t)len + 1)))
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: section 'vocab': out of memory", path);
        memcpy(v->pieces[i], p + off, len);
        v->pieces[i][len] = '\0';
        v->lens[i] = len;
        off += len;
    }
    if ((flags & QNPU__QF_VOCAB_HAS_BPE) && (size - off < 8 || get64(p + off) > size - off - 8))
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': the byte-level BPE runs past the end of the "
                          "section", path);
    if (flags & QNPU__QF_VOCAB_HAS_BPE) {
        v->bpe_size = (size_t)get64(p + off);
        if (!(v->bpe = qnpu__malloc(v->bpe_size ? v->bpe_size : 1)))
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: section 'vocab': out of memory", path);
        memcpy(v->bpe, p + off + 8, v->bpe_size);
        off += 8 + v->bpe_size;
    }
    if (off != size)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section 'vocab': %llu bytes after the last piece", path,
                          (unsigned long long)(size - off));
    if (v->bpe) { /* check it whole now, as everything else: build it once and drop it */
        char what[4200];
        snprintf(what, sizeof what, "%s: section 'vocab'", path);
        qnpu_tokenizer *t = NULL;
        qnpu_status s = qnpu__tokenizer_from_vocab(v, what, -1, -1, &t);
        qnpu_tokenizer_free(t);
        return s;
    }
    return QNPU_OK;
}

/* Walk the table in the canonical order, filling q. */
static qnpu_status parse(loader *ld, qnpu_qmodel *q)
{
    uint32_t i = 0;
    const entry *e = next_known(ld, &i);
    qnpu_status s;
    if ((s = expect(ld, e, QNPU__QS_CONFIG, 0)) != QNPU_OK || (s = parse_config(ld, e, q)) != QNPU_OK)
        return s;
    int64_t L = q->n_layers;
    q->lin = qnpu__calloc((size_t)(L * W_COUNT), sizeof *q->lin);
    q->qp = qnpu__calloc((size_t)(L * QP_LAYER_COUNT), sizeof *q->qp);
    if (ld->has_r4)
        q->r4 = qnpu__calloc((size_t)L, sizeof *q->r4);
    if (!q->lin || !q->qp || (ld->has_r4 && !q->r4))
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", ld->path);
    e = next_known(ld, &i);
    if ((s = expect(ld, e, QNPU__QS_EMBEDDING, 0)) != QNPU_OK || (s = parse_embedding(ld, e, q)) != QNPU_OK)
        return s;
    for (int64_t k = 0; k < L * W_COUNT; k++) {
        int64_t rows, cols;
        linear_shape(q, (int)(k % W_COUNT), &rows, &cols);
        e = next_known(ld, &i);
        if ((s = expect(ld, e, QNPU__QS_LINEAR, (uint32_t)k)) != QNPU_OK ||
            (s = parse_linear(ld, e, &q->lin[k], rows, cols, 1)) != QNPU_OK)
            return s;
    }
    e = next_known(ld, &i);
    if ((s = expect(ld, e, QNPU__QS_LM_HEAD, 0)) != QNPU_OK ||
        (s = parse_linear(ld, e, &q->head, q->vocab, q->dim, 0)) != QNPU_OK)
        return s;
    e = next_known(ld, &i);
    if ((s = expect(ld, e, QNPU__QS_QP, 0)) != QNPU_OK || (s = parse_qp(ld, e, q)) != QNPU_OK)
        return s;
    int64_t last = -1;
    for (e = next_known(ld, &i); e && e->id == QNPU__QS_R4; e = next_known(ld, &i)) {
        if (!q->r4)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section '%s' is present but the config says the model has "
                              "no R4 rotations", ld->path, e->name);
        if ((int64_t)e->index <= last || (int64_t)e->index >= L)
            return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: section '%s' is repeated, out of order or "
                              "beyond the model's %lld layers", ld->path, e->name, (long long)L);
        last = e->index;
        if ((s = parse_r4(ld, e, q, last)) != QNPU_OK)
            return s;
    }
    if (e && e->id == QNPU__QS_VOCAB) {
        if ((s = expect(ld, e, QNPU__QS_VOCAB, 0)) != QNPU_OK || (s = parse_vocab(ld, e, q)) != QNPU_OK)
            return s;
        e = next_known(ld, &i);
    }
    if (e)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: section table: unexpected section '%s' (repeated or out of order)",
                          ld->path, e->name);
    return QNPU_OK;
}

/* Free a model that was never handed out (no handle was acquired). */
static void discard(qnpu_qmodel *q)
{
    if (!q)
        return;
    /* names are filled in order, so a partial list ends at the first NULL */
    for (int64_t i = 0; q->names && (i < q->n_names || (q->n_names == 0 && q->names[i])); i++)
        qnpu__free(q->names[i]);
    qnpu__free(q->names);
    q->names = NULL;
    qnpu__qmodel_destroy(q);
}

qnpu_status qnpu_qmodel_load(const char *path, const qnpu_options *opts, qnpu_qmodel **out)
{
    if (!path || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_qmodel_load: NULL argument");
    *out = NULL;
    qnpu__file f;
    qnpu_status s = qnpu__file_open(path, (int)qnpu__opt_int(opts, QNPU_P_MODEL_MMAP), &f);
    if (s != QNPU_OK)
        return s;
    loader ld = {.path = path, .data = f.data, .size = f.size};
    qnpu_qmodel *q = NULL;
    s = read_table(&ld);
    if (s == QNPU_OK && !(q = qnpu__calloc(1, sizeof *q)))
        s = qnpu__fail(QNPU_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == QNPU_OK)
        s = parse(&ld, q);
    qnpu__free(ld.e);
    qnpu__file_close(&f);
    if (s == QNPU_OK)
        s = validate(q, path, QNPU_ERR_FORMAT);
    if (s == QNPU_OK)
        s = qnpu__qmodel_name_points(q);
    if (s != QNPU_OK) {
        discard(q);
        return s;
    }
    qnpu__handle_acquire();
    *out = q;
    return QNPU_OK;
}
