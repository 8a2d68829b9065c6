/* check_qnpu_file.c — the .qnpu container (lib/export/qnpu_file.c, docs/formats.md): exact round
 * trips of synthetic quantized models, byte-identical saves, the documented layout, atomic
 * replacement (failed saves leave the previous file and no temporary behind), and malformed
 * input: truncation and a flipped byte in every section, bad magic, versions, section tables,
 * impossible values with valid checksums, allocation failures and random corruption. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib/qgraph.h"
#include "export/qnpu_file.h"
#include "rotate/hadamard.h"
#include "testutil.h"

/* ---- synthetic models ----------------------------------------------------------------------- */

enum {
    V_BIAS = 1,      /* biases on q/k/v                                    */
    V_R4 = 2,        /* PaleyI(11) on layer 0, Q_3 ⊗ H_4 on layer 1         */
    V_VOCAB = 4,     /* a tokenizer                                         */
    V_TYPES = 8,     /* ... with token types                                */
    V_R4_ARRAY = 16, /* an R4 table with no plan in it                      */
    V_FFN16 = 32,    /* ffn 16 and, with V_R4, a Sylvester plan on layer 1 */
    V_PARTIAL = 64   /* a partial (I_3 ⊗ H_4) plan on layer 0               */
};
#define V_ALL (V_BIAS | V_R4 | V_VOCAB | V_TYPES)

static uint64_t rng;

static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

static float rndf(void)
{
    return (float)rnd() / 1073741824.0f - 1.0f;
}

/* The shape of decoder linear w, written out independently of the library. */
static void shape(const qnpu_qmodel *q, int w, int64_t *rows, int64_t *cols)
{
    int64_t qd = q->n_heads * q->head_dim, kvd = q->n_kv_heads * q->head_dim;
    const int64_t r[W_COUNT] = {qd, kvd, kvd, q->dim, q->ffn, q->ffn, q->dim};
    const int64_t c[W_COUNT] = {q->dim, q->dim, q->dim, qd, q->dim, q->dim, q->ffn};
    *rows = r[w];
    *cols = c[w];
}

static void fill_linear(qnpu__qlinear *ql, int64_t rows, int64_t cols, int bits, int bias)
{
    ql->rows = rows, ql->cols = cols, ql->bits = bits;
    ql->q = qnpu__malloc((size_t)(rows * cols));
    ql->scale = qnpu__malloc((size_t)rows * sizeof(float));
    ck_assert(ql->q && ql->scale);
    int lo = -(1 << (bits - 1)), span = 1 << bits;
    for (int64_t i = 0; i < rows * cols; i++)
        ql->q[i] = (int8_t)(lo + (int)(rnd() % (uint32_t)span));
    ql->q[0] = (int8_t)lo; /* both extremes appear */
    ql->q[1] = (int8_t)(lo + span - 1);
    for (int64_t r = 0; r < rows; r++)
        ql->scale[r] = 1e-3f + (float)(rnd() % 1000) * 1.2345e-4f;
    if (bias) {
        ql->bias = qnpu__malloc((size_t)rows * sizeof(float));
        ck_assert_ptr_nonnull(ql->bias);
        for (int64_t r = 0; r < rows; r++)
            ql->bias[r] = rndf();
    }
}

static void fill_qp(qnpu__qp *r)
{
    static const int8_t bits[] = {0, 4, 8, 16, 2, 12};
    r->bits = bits[rnd() % 6];
    r->sym = (int8_t)(rnd() % 2);
    r->s = r->bits ? ldexpf(1.0f + (float)(rnd() % 1000) / 999.0f, -(int)(rnd() % 20)) : 0.0f;
    r->z = (r->sym || !r->bits) ? 0 : (int32_t)(rnd() % (1u << r->bits));
    r->fixed = (int8_t)(rnd() % 2);
    r->origin = (int8_t)(rnd() % 3);
}

static qnpu__vocab *make_vocab(int64_t n, int types)
{
    qnpu__vocab *v = qnpu__calloc(1, sizeof *v);
    ck_assert_ptr_nonnull(v);
    v->n = n;
    v->pieces = qnpu__calloc((size_t)n, sizeof *v->pieces);
    v->lens = qnpu__calloc((size_t)n, sizeof *v->lens);
    v->scores = qnpu__calloc((size_t)n, sizeof *v->scores);
    if (types)
        v->types = qnpu__calloc((size_t)n, sizeof *v->types);
    for (int64_t i = 0; i < n; i++) {
        char buf[32];
        uint32_t len;
        if (i == 3) {
            len = 0;                                   /* an empty piece */
        } else if (i == 4) {
            memcpy(buf, "a\0b", 3), len = 3;           /* an embedded NUL */
        } else if (i == 5) {
            memcpy(buf, "\xe2\x96\x81\xff", 4), len = 4;
        } else {
            len = (uint32_t)snprintf(buf, sizeof buf, i == 0 ? "<unk>" : "piece%lld", (long long)i);
        }
        v->pieces[i] = qnpu__malloc(len + 1);
        memcpy(v->pieces[i], buf, len);
        v->pieces[i][len] = '\0';
        v->lens[i] = len;
        v->scores[i] = -0.5f * (float)i;
        if (types)
            v->types[i] = i < 3 ? 3 : (i == 7 ? 6 : 1);
    }
    return v;
}

static qnpu_qmodel *make_model(int variant, uint64_t seed)
{
    rng = seed;
    qnpu_qmodel *q = qnpu__calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    snprintf(q->arch, sizeof q->arch, "llama");
    q->dim = 9; /* odd: int4 rows end in a padding nibble */
    q->ffn = (variant & V_FFN16) ? 16 : 12;
    q->n_layers = 2, q->n_heads = 2, q->n_kv_heads = 1, q->head_dim = 4, q->vocab = 16, q->max_seq = 32;
    q->rope_theta = 10000.0, q->rms_eps = 1e-5, q->bos = 1, q->eos = 2;
    size_t ne = (size_t)(q->vocab * q->dim);
    q->tok_embd = qnpu__malloc(ne * sizeof(float));
    for (size_t i = 0; i < ne; i++)
        q->tok_embd[i] = rndf();
    static const int bits[W_COUNT] = {4, 8, 4, 3, 2, 5, 4};
    q->lin = qnpu__calloc((size_t)(q->n_layers * W_COUNT), sizeof *q->lin);
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int w = 0; w < W_COUNT; w++) {
            int64_t rows, cols;
            shape(q, w, &rows, &cols);
            fill_linear(&q->lin[l * W_COUNT + w], rows, cols, bits[(w + l) % W_COUNT],
                        (variant & V_BIAS) && w <= W_V);
        }
    fill_linear(&q->head, q->vocab, q->dim, 8, 0);
    q->qp = qnpu__calloc((size_t)(q->n_layers * QP_LAYER_COUNT), sizeof *q->qp);
    for (int64_t k = 0; k < q->n_layers * QP_LAYER_COUNT; k++)
        fill_qp(&q->qp[k]);
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        fill_qp(&q->gqp[k]);
    if (variant & (V_R4 | V_R4_ARRAY | V_PARTIAL))
        q->r4 = qnpu__calloc((size_t)q->n_layers, sizeof *q->r4);
    if ((variant & V_R4) && !(variant & V_FFN16)) {
        ck_assert_int_eq(qnpu__hadamard_plan(12, 1024, 0, seed, 1, &q->r4[0]), QNPU_OK);
        ck_assert_int_eq(qnpu__hadamard_plan(12, 3, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, seed + 1, 1,
                                             &q->r4[1]), QNPU_OK);
        ck_assert_int_eq(q->r4[0]->kind, QNPU__HAD_PALEY1);
        ck_assert_int_eq(q->r4[1]->kind, QNPU__HAD_RANDOM_ORTHOGONAL);
    }
    if ((variant & V_R4) && (variant & V_FFN16)) {
        ck_assert_int_eq(qnpu__hadamard_plan(16, 1024, 0, seed, 1, &q->r4[1]), QNPU_OK);
        ck_assert_int_eq(q->r4[1]->kind, QNPU__HAD_SYLVESTER);
    }
    if (variant & V_PARTIAL) {
        ck_assert_int_eq(qnpu__hadamard_plan(12, 3, QNPU__HAD_FALLBACK_PARTIAL, seed, 0, &q->r4[0]), QNPU_OK);
        ck_assert_int_eq(q->r4[0]->kind, QNPU__HAD_PARTIAL);
    }
    if (variant & V_VOCAB)
        q->vocab_tok = make_vocab(q->vocab, (variant & V_TYPES) != 0);
    return q;
}

/* ---- comparison ----------------------------------------------------------------------------- */

#define SAME_BYTES(a, b, n) ck_assert_int_eq(memcmp((a), (b), (n)), 0)

static void same_linear(const qnpu__qlinear *a, const qnpu__qlinear *b)
{
    ck_assert_int_eq(a->rows, b->rows);
    ck_assert_int_eq(a->cols, b->cols);
    ck_assert_int_eq(a->bits, b->bits);
    SAME_BYTES(a->q, b->q, (size_t)(a->rows * a->cols));
    SAME_BYTES(a->scale, b->scale, (size_t)a->rows * sizeof(float));
    ck_assert_int_eq(a->bias == NULL, b->bias == NULL);
    if (a->bias)
        SAME_BYTES(a->bias, b->bias, (size_t)a->rows * sizeof(float));
}

static void same_qp(const qnpu__qp *a, const qnpu__qp *b)
{
    SAME_BYTES(&a->s, &b->s, sizeof a->s);
    ck_assert_int_eq(a->z, b->z);
    ck_assert_int_eq(a->bits, b->bits);
    ck_assert_int_eq(a->sym, b->sym);
    ck_assert_int_eq(a->fixed, b->fixed);
    ck_assert_int_eq(a->origin, b->origin);
}

static void same_plan(const qnpu__hadamard *a, const qnpu__hadamard *b)
{
    ck_assert_int_eq(a->n, b->n);
    ck_assert_int_eq(a->p, b->p);
    ck_assert_int_eq(a->r, b->r);
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_int_eq(a->q, b->q);
    ck_assert_int_eq(a->exact, b->exact);
    SAME_BYTES(&a->scale, &b->scale, sizeof a->scale);
    SAME_BYTES(a->sigma, b->sigma, (size_t)a->n);
    size_t pp = (size_t)(a->p * a->p);
    ck_assert_int_eq(a->a_pm1 == NULL, b->a_pm1 == NULL);
    if (a->a_pm1)
        SAME_BYTES(a->a_pm1, b->a_pm1, pp);
    ck_assert_int_eq(a->a == NULL, b->a == NULL);
    if (a->a)
        SAME_BYTES(a->a, b->a, pp * sizeof(double));
    ck_assert_int_eq(a->at_scaled == NULL, b->at_scaled == NULL);
    if (a->at_scaled)
        SAME_BYTES(a->at_scaled, b->at_scaled, pp * sizeof(float));
    ck_assert_str_eq(a->desc, b->desc);
}

static void same_model(const qnpu_qmodel *a, const qnpu_qmodel *b)
{
    ck_assert_str_eq(a->arch, b->arch);
    ck_assert_int_eq(a->dim, b->dim);
    ck_assert_int_eq(a->ffn, b->ffn);
    ck_assert_int_eq(a->n_layers, b->n_layers);
    ck_assert_int_eq(a->n_heads, b->n_heads);
    ck_assert_int_eq(a->n_kv_heads, b->n_kv_heads);
    ck_assert_int_eq(a->head_dim, b->head_dim);
    ck_assert_int_eq(a->vocab, b->vocab);
    ck_assert_int_eq(a->max_seq, b->max_seq);
    SAME_BYTES(&a->rope_theta, &b->rope_theta, sizeof(double));
    SAME_BYTES(&a->rms_eps, &b->rms_eps, sizeof(double));
    ck_assert_int_eq(a->bos, b->bos);
    ck_assert_int_eq(a->eos, b->eos);
    SAME_BYTES(a->tok_embd, b->tok_embd, (size_t)(a->vocab * a->dim) * sizeof(float));
    for (int64_t k = 0; k < a->n_layers * W_COUNT; k++)
        same_linear(&a->lin[k], &b->lin[k]);
    same_linear(&a->head, &b->head);
    for (int64_t k = 0; k < a->n_layers * QP_LAYER_COUNT; k++)
        same_qp(&a->qp[k], &b->qp[k]);
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        same_qp(&a->gqp[k], &b->gqp[k]);
    ck_assert_int_eq(a->r4 == NULL, b->r4 == NULL);
    for (int64_t l = 0; a->r4 && l < a->n_layers; l++) {
        ck_assert_int_eq(a->r4[l] == NULL, b->r4[l] == NULL);
        if (a->r4[l])
            same_plan(a->r4[l], b->r4[l]);
    }
    ck_assert_int_eq(a->vocab_tok == NULL, b->vocab_tok == NULL);
    if (a->vocab_tok) {
        const qnpu__vocab *x = a->vocab_tok, *y = b->vocab_tok;
        ck_assert_int_eq(x->n, y->n);
        SAME_BYTES(x->lens, y->lens, (size_t)x->n * sizeof *x->lens);
        SAME_BYTES(x->scores, y->scores, (size_t)x->n * sizeof *x->scores);
        ck_assert_int_eq(x->types == NULL, y->types == NULL);
        if (x->types)
            SAME_BYTES(x->types, y->types, (size_t)x->n * sizeof *x->types);
        for (int64_t i = 0; i < x->n; i++) {
            SAME_BYTES(x->pieces[i], y->pieces[i], x->lens[i]);
            ck_assert_int_eq(y->pieces[i][y->lens[i]], 0);
        }
    }
}

/* ---- files ---------------------------------------------------------------------------------- */

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static void wrf(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

static void wrd(unsigned char *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    wr64(p, u);
}

typedef struct tsec {
    uint32_t id, index;
    uint64_t off, size;
    char name[48];
} tsec;

/* The table of a well-formed file. */
static int sections(const unsigned char *b, tsec *out, int cap)
{
    int n = (int)rd32(b + QNPU__QH_SECTION_COUNT);
    ck_assert_int_le(n, cap);
    for (int i = 0; i < n; i++) {
        const unsigned char *e = b + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i;
        tsec *s = &out[i];
        s->id = rd32(e + QNPU__QE_ID);
        s->index = rd32(e + QNPU__QE_INDEX);
        s->off = rd64(e + QNPU__QE_OFFSET);
        s->size = rd64(e + QNPU__QE_SIZE);
        switch (s->id) {
        case QNPU__QS_CONFIG: snprintf(s->name, sizeof s->name, "config"); break;
        case QNPU__QS_EMBEDDING: snprintf(s->name, sizeof s->name, "embedding"); break;
        case QNPU__QS_LINEAR:
            snprintf(s->name, sizeof s->name, "layer%u.%s", s->index / W_COUNT,
                     qnpu__weight_name((int)(s->index % W_COUNT)));
            break;
        case QNPU__QS_LM_HEAD: snprintf(s->name, sizeof s->name, "lm_head.w"); break;
        case QNPU__QS_QP: snprintf(s->name, sizeof s->name, "qp"); break;
        case QNPU__QS_R4: snprintf(s->name, sizeof s->name, "layer%u.r4", s->index); break;
        case QNPU__QS_VOCAB: snprintf(s->name, sizeof s->name, "vocab"); break;
        default: ck_abort_msg("unknown section id %u", s->id);
        }
    }
    return n;
}

static const tsec *find(const tsec *s, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    ck_abort_msg("no section %s", name);
    return NULL;
}

/* Recompute every checksum a (possibly corrupted) file's table lets us reach. */
static void fix_crcs(unsigned char *b, size_t n)
{
    if (n < QNPU__QF_HEADER_SIZE)
        return;
    uint64_t count = rd32(b + QNPU__QH_SECTION_COUNT);
    uint64_t tend = QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * count;
    if (count > QNPU__QF_MAX_SECTIONS || tend > n)
        return;
    for (uint64_t i = 0; i < count; i++) {
        unsigned char *e = b + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i;
        uint64_t off = rd64(e + QNPU__QE_OFFSET), size = rd64(e + QNPU__QE_SIZE);
        if (off <= n && size <= n - off)
            wr32(e + QNPU__QE_CRC, qnpu__crc32(0, b + off, (size_t)size));
    }
    wr32(b + QNPU__QH_CRC, 0);
    wr32(b + QNPU__QH_CRC, qnpu__crc32(0, b, (size_t)tend));
}

static unsigned char *save_bytes(const qnpu_qmodel *q, const char *path, size_t *n)
{
    ck_assert_msg(qnpu_qmodel_save(q, path) == QNPU_OK, "%s", qnpu_last_error());
    return qt_read_file(path, n);
}

/* Load must fail with `want`, a message naming the file and holding s1 and s2. */
static void expect_fail(const char *path, qnpu_status want, const char *s1, const char *s2)
{
    qnpu_qmodel *q = (qnpu_qmodel *)&q;
    qnpu_status s = qnpu_qmodel_load(path, NULL, &q);
    const char *m = qnpu_last_error();
    ck_assert_msg(s == want, "status %d (%s), expected %d", (int)s, m, (int)want);
    ck_assert_ptr_null(q);
    ck_assert_msg(strstr(m, path) != NULL, "'%s' does not name the file", m);
    ck_assert_msg(!s1 || strstr(m, s1), "'%s' lacks '%s'", m, s1);
    ck_assert_msg(!s2 || strstr(m, s2), "'%s' lacks '%s'", m, s2);
}

/* Write a scratch file. Unlinking first is much cheaper than truncating on filesystems mounted
 * with online discard, and these tests write thousands of files. */
static void write_scratch(const char *path, const void *b, size_t n)
{
    unlink(path);
    qt_write_file(path, b, n);
}

static void expect_fail_bytes(const unsigned char *b, size_t n, qnpu_status want, const char *s1,
                              const char *s2)
{
    const char *path = qt_tmpfile("qf_bad.qnpu");
    write_scratch(path, b, n);
    expect_fail(path, want, s1, s2);
}

/* Number of directory entries whose name holds ".tmp.". */
static int tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static const char *fresh_dir(const char *name)
{
    const char *dir = qt_tmpfile(name);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    return dir;
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_crc32)
{
    ck_assert_uint_eq(qnpu__crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(qnpu__crc32(0, "", 0), 0);
    unsigned char buf[1000];
    rng = 7;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)rnd();
    for (size_t start = 0; start < 9; start++) {
        uint32_t ref = 0xFFFFFFFFu; /* bitwise reference */
        for (size_t i = start; i < sizeof buf; i++) {
            ref ^= buf[i];
            for (int k = 0; k < 8; k++)
                ref = (ref & 1) ? 0xEDB88320u ^ (ref >> 1) : ref >> 1;
        }
        ref = ~ref;
        ck_assert_uint_eq(qnpu__crc32(0, buf + start, sizeof buf - start), ref);
        size_t cut = 13 * start + 5;
        uint32_t c = qnpu__crc32(0, buf + start, cut);
        ck_assert_uint_eq(qnpu__crc32(c, buf + start + cut, sizeof buf - start - cut), ref);
    }
}
END_TEST

START_TEST(test_roundtrip)
{
    static const int variants[] = {0, V_ALL, V_R4_ARRAY | V_VOCAB, V_FFN16 | V_R4 | V_BIAS,
                                   V_PARTIAL | V_VOCAB | V_TYPES, V_FFN16};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++)
        for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
            qnpu_qmodel *a = make_model(variants[v], 100 + v);
            const char *path = qt_tmpfile("qf_roundtrip.qnpu");
            ck_assert_msg(qnpu_qmodel_save(a, path) == QNPU_OK, "%s", qnpu_last_error());
            qnpu_options *o;
            ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
            ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, mmap_on), QNPU_OK);
            qnpu_qmodel *b = NULL;
            ck_assert_msg(qnpu_qmodel_load(path, o, &b) == QNPU_OK, "variant %d: %s", variants[v],
                          qnpu_last_error());
            qnpu_options_free(o);
            same_model(a, b);
            /* the public face works on a loaded model */
            int64_t n = qnpu_qmodel_qp_count(b), d;
            ck_assert_int_eq(n, b->n_layers * (QP_LAYER_COUNT + W_COUNT) - (b->n_layers - 1) + QP_GLOBAL_COUNT + 1);
            const char *name;
            int bits;
            ck_assert_int_eq(qnpu_qmodel_qp_info(b, n - 1, &name, &bits, NULL, NULL, NULL), QNPU_OK);
            ck_assert_str_eq(name, "lm_head.w");
            ck_assert_int_eq(bits, 8);
            ck_assert_int_eq(qnpu_qmodel_get_dim(b, QNPU_DIM_FFN, &d), QNPU_OK);
            ck_assert_int_eq(d, a->ffn);
            qnpu_qmodel_free(b);
            qnpu__qmodel_destroy(a);
        }
}
END_TEST

/* A loaded R4 plan computes exactly what the original computes. */
START_TEST(test_r4_usable)
{
    static const int variants[] = {V_R4, V_FFN16 | V_R4, V_PARTIAL};
    for (size_t v = 0; v < 3; v++) {
        qnpu_qmodel *a = make_model(variants[v], 5);
        const char *path = qt_tmpfile("qf_r4.qnpu");
        ck_assert_int_eq(qnpu_qmodel_save(a, path), QNPU_OK);
        qnpu_qmodel *b;
        ck_assert_msg(qnpu_qmodel_load(path, NULL, &b) == QNPU_OK, "%s", qnpu_last_error());
        for (int64_t l = 0; l < a->n_layers; l++) {
            if (!a->r4[l])
                continue;
            int64_t n = a->ffn, rows = 3;
            float x[3 * 16], y[3 * 16];
            for (int64_t i = 0; i < rows * n; i++)
                x[i] = y[i] = rndf();
            ck_assert_int_eq(qnpu__hadamard_apply(a->r4[l], x, rows, n), QNPU_OK);
            ck_assert_int_eq(qnpu__hadamard_apply(b->r4[l], y, rows, n), QNPU_OK);
            SAME_BYTES(x, y, (size_t)(rows * n) * sizeof(float));
            if (a->r4[l]->exact) {
                int64_t xi[16], yi[16], work[16];
                for (int64_t i = 0; i < n; i++)
                    xi[i] = yi[i] = (int64_t)(rnd() % 255) - 127;
                ck_assert_int_eq(qnpu__hadamard_apply_i64(a->r4[l], xi, 1, n, work), QNPU_OK);
                ck_assert_int_eq(qnpu__hadamard_apply_i64(b->r4[l], yi, 1, n, work), QNPU_OK);
                SAME_BYTES(xi, yi, (size_t)n * sizeof(int64_t));
            }
        }
        qnpu_qmodel_free(b);
        qnpu__qmodel_destroy(a);
    }
}
END_TEST

/* A model without an R4 table (config flag clear: NULL in memory and after loading) and one
 * with a partly filled table run the simulated graph, loaded or not, to the same perplexity
 * (a file without the flag once made the graph copy the table from NULL; found by fuzz_qnpu). */
START_TEST(test_perplexity_with_and_without_r4)
{
    static const int variants[] = {0, V_R4};
    int32_t ids[24];
    for (int i = 0; i < 24; i++)
        ids[i] = (int32_t)(i * 7 % 16);
    for (size_t v = 0; v < 2; v++) {
        qnpu_qmodel *a = make_model(variants[v], 11);
        ck_assert(variants[v] ? a->r4 != NULL : a->r4 == NULL);
        const char *path = qt_tmpfile("qf_ppl.qnpu");
        ck_assert_int_eq(qnpu_qmodel_save(a, path), QNPU_OK);
        qnpu_qmodel *b;
        ck_assert_msg(qnpu_qmodel_load(path, NULL, &b) == QNPU_OK, "%s", qnpu_last_error());
        ck_assert(variants[v] ? b->r4 != NULL : b->r4 == NULL);
        double pa, pb;
        int64_t na, nb;
        ck_assert_msg(qnpu_qmodel_perplexity_ids(a, NULL, ids, 24, 8, &pa, &na) == QNPU_OK, "%s",
                      qnpu_last_error());
        ck_assert_msg(qnpu_qmodel_perplexity_ids(b, NULL, ids, 24, 8, &pb, &nb) == QNPU_OK, "%s",
                      qnpu_last_error());
        ck_assert_int_eq(na, nb);
        ck_assert(na > 0 && pa == pb);
        qnpu_qmodel_free(b);
        qnpu__qmodel_destroy(a);
    }
}
END_TEST

START_TEST(test_deterministic)
{
    qnpu_qmodel *a = make_model(V_ALL, 11), *a2 = make_model(V_ALL, 11);
    size_t n1, n2, n3;
    unsigned char *b1 = save_bytes(a, qt_tmpfile("qf_det1.qnpu"), &n1);
    unsigned char *b2 = save_bytes(a2, qt_tmpfile("qf_det2.qnpu"), &n2);
    ck_assert_uint_eq(n1, n2);
    SAME_BYTES(b1, b2, n1);
    /* load and save again: the same bytes */
    qnpu_qmodel *c;
    ck_assert_int_eq(qnpu_qmodel_load(qt_tmpfile("qf_det1.qnpu"), NULL, &c), QNPU_OK);
    unsigned char *b3 = save_bytes(c, qt_tmpfile("qf_det3.qnpu"), &n3);
    ck_assert_uint_eq(n1, n3);
    SAME_BYTES(b1, b3, n1);
    free(b1);
    free(b2);
    free(b3);
    qnpu_qmodel_free(c);
    qnpu__qmodel_destroy(a);
    qnpu__qmodel_destroy(a2);
}
END_TEST

/* The bytes are where docs/formats.md says they are. */
START_TEST(test_layout)
{
    qnpu_qmodel *q = make_model(V_ALL, 3);
    size_t n;
    unsigned char *b = save_bytes(q, qt_tmpfile("qf_layout.qnpu"), &n);
    SAME_BYTES(b, "QNPU", 4);
    ck_assert_uint_eq(rd32(b + QNPU__QH_FORMAT_VERSION), QNPU_FORMAT_VERSION);
    ck_assert_uint_eq(rd32(b + QNPU__QH_LIB_VERSION), QNPU_VERSION_NUMBER);
    ck_assert_str_eq((const char *)b + QNPU__QH_LIB_VERSION_STR, QNPU_VERSION_STRING);
    ck_assert_uint_eq(rd32(b + QNPU__QH_HEADER_SIZE), 64);
    ck_assert_uint_eq(rd32(b + QNPU__QH_ENTRY_SIZE), 32);
    ck_assert_uint_eq(rd64(b + QNPU__QH_TABLE_OFFSET), 64);
    ck_assert_uint_eq(rd64(b + QNPU__QH_FILE_SIZE), n);
    tsec s[64];
    int ns = sections(b, s, 64);
    ck_assert_int_eq(ns, 2 + 2 * W_COUNT + 2 + 2 + 1);
    for (int i = 0; i < ns; i++) {
        ck_assert_uint_eq(s[i].off % 64, 0);
        ck_assert(i == 0 || s[i].off >= s[i - 1].off + s[i - 1].size);
    }
    ck_assert_uint_eq(s[ns - 1].off + s[ns - 1].size, n);
    /* config */
    const unsigned char *c = b + find(s, ns, "config")->off;
    ck_assert_uint_eq(rd64(c), 9);
    ck_assert_uint_eq(rd64(c + 8), 12);
    ck_assert_uint_eq(rd64(c + 16), 2);
    ck_assert_uint_eq(rd32(c + 88), 1);
    ck_assert_str_eq((const char *)c + 104, "llama");
    /* int4 rows: two codes per byte, low nibble first, rows padded to whole bytes */
    const tsec *t = find(s, ns, "layer0.q.w");
    const qnpu__qlinear *ql = &q->lin[W_Q];
    const unsigned char *p = b + t->off;
    ck_assert_int_eq(ql->bits, 4);
    ck_assert_uint_eq(rd64(p), 8);
    ck_assert_uint_eq(rd64(p + 8), 9);
    ck_assert_uint_eq(rd32(p + 16), 4);
    ck_assert_uint_eq(rd32(p + 20), 1);    /* bias */
    ck_assert_uint_eq(rd64(p + 24), 5);    /* row bytes */
    ck_assert_uint_eq(rd64(p + 32), 128);  /* 64 + 8 * 5 = 104 -> 128 */
    ck_assert_uint_eq(rd64(p + 40), 192);  /* 128 + 32 -> 192 */
    ck_assert_uint_eq(t->size, 192 + 32);
    for (int64_t r = 0; r < 8; r++)
        for (int64_t j = 0; j < 9; j++) {
            unsigned byte = p[64 + r * 5 + j / 2];
            int nib = (j & 1) ? byte >> 4 : byte & 15;
            ck_assert_int_eq(nib >= 8 ? nib - 16 : nib, ql->q[r * 9 + j]);
            if (j == 8)
                ck_assert_uint_eq(byte >> 4, 0);  /* the padding nibble */
        }
    float f;
    memcpy(&f, p + 128 + 4 * 3, 4);
    ck_assert(f == ql->scale[3]);
    memcpy(&f, p + 192 + 4 * 7, 4);
    ck_assert(f == ql->bias[7]);
    /* int8: one byte per code */
    t = find(s, ns, "layer0.k.w");
    p = b + t->off;
    ck_assert_uint_eq(rd32(p + 16), 8);
    ck_assert_uint_eq(rd64(p + 24), 9);
    SAME_BYTES(p + 64, q->lin[W_K].q, 4 * 9);
    /* the QP records */
    p = b + find(s, ns, "qp")->off;
    const qnpu__qp *r = &q->qp[QP_LAYER_COUNT + QP_SOFTMAX];
    p += 12 * (QP_LAYER_COUNT + QP_SOFTMAX);
    memcpy(&f, p, 4);
    ck_assert(f == r->s);
    ck_assert_int_eq((int32_t)rd32(p + 4), r->z);
    ck_assert_int_eq((int8_t)p[8], r->bits);
    ck_assert_int_eq(p[9], r->sym);
    /* R4: header, signs at 64, the ±1 factor at the next multiple of 64 */
    t = find(s, ns, "layer0.r4");
    p = b + t->off;
    ck_assert_uint_eq(rd64(p), 12);
    ck_assert_uint_eq(rd64(p + 8), 12);
    ck_assert_uint_eq(rd64(p + 16), 1);
    ck_assert_uint_eq(rd64(p + 24), 11);
    ck_assert_uint_eq(rd32(p + 32), QNPU__HAD_PALEY1);
    ck_assert_uint_eq(rd32(p + 48), QNPU__QF_DENSE_PM1);
    SAME_BYTES(p + 64, q->r4[0]->sigma, 12);
    SAME_BYTES(p + 128, q->r4[0]->a_pm1, 144);
    ck_assert_uint_eq(t->size, 128 + 144);
    t = find(s, ns, "layer1.r4");
    ck_assert_uint_eq(rd32(b + t->off + 48), QNPU__QF_DENSE_F64);
    ck_assert_uint_eq(t->size, 128 + 9 * 8);
    /* vocab */
    p = b + find(s, ns, "vocab")->off;
    ck_assert_uint_eq(rd64(p), 16);
    ck_assert_uint_eq(rd32(p + 8), 1);
    ck_assert_uint_eq(rd32(p + 16 + 8), 5);
    SAME_BYTES(p + 16 + 12, "<unk>", 5);
    free(b);
    qnpu__qmodel_destroy(q);
}
END_TEST

START_TEST(test_bad_args)
{
    qnpu_qmodel *q = make_model(0, 1), *out;
    ck_assert_int_eq(qnpu_qmodel_save(NULL, "x"), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_qmodel_save(q, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_qmodel_load(NULL, NULL, &out), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_qmodel_load("x", NULL, NULL), QNPU_ERR_INVALID_ARG);
    expect_fail(qt_tmpfile("qf_does_not_exist.qnpu"), QNPU_ERR_IO, "cannot open", NULL);
    expect_fail(qt_tmpdir(), QNPU_ERR_IO, NULL, NULL);
    qnpu__qmodel_destroy(q);
}
END_TEST

/* Models with impossible values are refused by save, naming the tensor; nothing is written. */
START_TEST(test_save_refuses_bad_models)
{
    const char *dir = fresh_dir("qf_refuse");
    char path[4096];
    snprintf(path, sizeof path, "%s/m.qnpu", dir);
    qt_write_file(path, "previous", 8);
    struct { const char *what; const char *name; } cases[] = {
        {"bits", "layer1.k.w"}, {"scale", "layer0.up.w"}, {"code", "layer0.o.w"}, {"qp bits", "layer1.softmax.out"},
        {"qp scale", "logits"}, {"sym z", "layer0.k.cache"}, {"sigma", "layer0.r4"}, {"dims", "config"},
        {"head bias", "lm_head.w"}, {"arch", "config"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qnpu_qmodel *q = make_model(V_ALL, 2);
        switch (i) {
        case 0: q->lin[W_COUNT + W_K].bits = 9; break;
        case 1: q->lin[W_UP].scale[2] = NAN; break;
        case 2: q->lin[W_O].q[5] = 4; break; /* 3 bits: [-4, 3] */
        case 3: q->qp[QP_LAYER_COUNT + QP_SOFTMAX].bits = 1; break;
        case 4: q->gqp[QP_LOGITS].bits = 8, q->gqp[QP_LOGITS].s = 0; break;
        case 5: q->qp[QP_K_CACHE].bits = 8, q->qp[QP_K_CACHE].sym = 1, q->qp[QP_K_CACHE].z = 3; break;
        case 6: q->r4[0]->sigma[4] = 0; break;
        case 7: q->n_kv_heads = 3; break;
        case 8: q->head.bias = qnpu__calloc((size_t)q->vocab, sizeof(float)); break;
        case 9: memset(q->arch, 'x', sizeof q->arch); break;
        }
        qnpu_status s = qnpu_qmodel_save(q, path);
        ck_assert_msg(s == QNPU_ERR_INVALID_ARG, "%s: status %d", cases[i].what, (int)s);
        ck_assert_msg(strstr(qnpu_last_error(), cases[i].name), "%s: '%s'", cases[i].what, qnpu_last_error());
        if (i == 8) {
            qnpu__free(q->head.bias);
            q->head.bias = NULL;
        }
        qnpu__qmodel_destroy(q);
    }
    size_t n;
    char *b = qt_read_file(path, &n);
    ck_assert_uint_eq(n, 8);
    SAME_BYTES(b, "previous", 8);
    free(b);
    ck_assert_int_eq(tmp_files(dir), 0);
}
END_TEST

START_TEST(test_save_atomic)
{
    qnpu_qmodel *q = make_model(V_ALL, 4);
    /* a directory that does not exist: nothing is created */
    const char *missing = qt_tmpfile("qf_no_such_dir");
    char path[4096];
    snprintf(path, sizeof path, "%s/m.qnpu", missing);
    ck_assert_int_eq(qnpu_qmodel_save(q, path), QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), path) && strstr(qnpu_last_error(), strerror(ENOENT)), "%s",
                  qnpu_last_error());
    ck_assert_int_eq(access(missing, F_OK), -1);

    /* the path is a directory: rename fails, the temporary is removed */
    const char *dir = fresh_dir("qf_atomic");
    snprintf(path, sizeof path, "%s/isdir.qnpu", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(qnpu_qmodel_save(q, path), QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), path) && strstr(qnpu_last_error(), "rename"), "%s",
                  qnpu_last_error());
    ck_assert_int_eq(qnpu__is_dir(path), 1);
    ck_assert_int_eq(tmp_files(dir), 0);

    /* replacing a file: the new one is complete, and keeps the old one's mode */
    snprintf(path, sizeof path, "%s/m.qnpu", dir);
    qt_write_file(path, "old", 3);
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(qnpu_qmodel_save(q, path), QNPU_OK);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(tmp_files(dir), 0);
    size_t n_prev;
    unsigned char *prev = qt_read_file(path, &n_prev);

    /* a write that fails midway (the file size limit: EFBIG), the previous file survives */
    qnpu_qmodel *other = make_model(V_ALL, 99);
    struct rlimit old, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 2048;
    ck_assert_uint_gt(n_prev, 2 * 2048);
    void (*h)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    qnpu_status s = qnpu_qmodel_save(other, path);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, h);
    ck_assert_int_eq(s, QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), path) && strstr(qnpu_last_error(), strerror(EFBIG)), "%s",
                  qnpu_last_error());
    size_t n_now;
    unsigned char *now = qt_read_file(path, &n_now);
    ck_assert_uint_eq(n_now, n_prev);
    SAME_BYTES(now, prev, n_prev);
    ck_assert_int_eq(tmp_files(dir), 0);
    qnpu_qmodel *back;
    ck_assert_int_eq(qnpu_qmodel_load(path, NULL, &back), QNPU_OK);
    same_model(q, back);
    qnpu_qmodel_free(back);
    free(prev);
    free(now);
    qnpu__qmodel_destroy(other);
    qnpu__qmodel_destroy(q);
}
END_TEST

/* ---- allocation failures -------------------------------------------------------------------- */

static long alloc_calls, alloc_fail_at = -1, alloc_live;

static void *t_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    if (alloc_calls++ == alloc_fail_at)
        return NULL;
    void *p = aligned_alloc(align, (size + align - 1) & ~(align - 1));
    alloc_live += p != NULL;
    return p;
}

static void t_free(void *user, void *p)
{
    (void)user;
    alloc_live -= p != NULL;
    free(p);
}

START_TEST(test_alloc_failures)
{
    qnpu_qmodel *q = make_model(V_ALL, 8);
    const char *dir = fresh_dir("qf_alloc");
    char path[4096];
    snprintf(path, sizeof path, "%s/m.qnpu", dir);
    ck_assert_int_eq(qnpu_qmodel_save(q, path), QNPU_OK);
    size_t n_prev;
    unsigned char *prev = qt_read_file(path, &n_prev);
    ck_assert_int_eq(qnpu_set_allocator(t_alloc, t_free, NULL), QNPU_OK);
    qnpu_qmodel *other = make_model(V_ALL, 9); /* different bytes */
    int saved = 0;
    for (long k = 0; k < 100 && !saved; k++) {
        alloc_calls = 0, alloc_fail_at = k;
        long live = alloc_live;
        qnpu_status s = qnpu_qmodel_save(other, path);
        ck_assert_int_eq(alloc_live, live);
        if (s == QNPU_OK) {
            saved = 1;
            break;
        }
        ck_assert_int_eq(s, QNPU_ERR_NO_MEMORY);
        size_t n;
        unsigned char *b = qt_read_file(path, &n);
        ck_assert_uint_eq(n, n_prev);
        SAME_BYTES(b, prev, n);
        free(b);
        ck_assert_int_eq(tmp_files(dir), 0);
    }
    ck_assert(saved);
    for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
        qnpu_options *o;
        alloc_fail_at = -1;
        ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
        ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_MODEL_MMAP, mmap_on), QNPU_OK);
        int loaded = 0;
        for (long k = 0; k < 1000 && !loaded; k++) {
            alloc_calls = 0, alloc_fail_at = k;
            long live = alloc_live;
            qnpu_qmodel *b = NULL;
            qnpu_status s = qnpu_qmodel_load(path, o, &b);
            alloc_fail_at = -1;
            if (s == QNPU_OK) {
                same_model(other, b);
                qnpu_qmodel_free(b);
                loaded = 1;
            } else {
                ck_assert_msg(s == QNPU_ERR_NO_MEMORY, "k %ld: %d %s", k, (int)s, qnpu_last_error());
                ck_assert_ptr_null(b);
            }
            ck_assert_int_eq(alloc_live, live);
        }
        ck_assert(loaded);
        qnpu_options_free(o);
    }
    alloc_fail_at = -1;
    qnpu__qmodel_destroy(other);
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_OK);
    free(prev);
    qnpu__qmodel_destroy(q);
}
END_TEST

/* ---- malformed files ------------------------------------------------------------------------ */

static unsigned char *good_file(size_t *n, tsec *s, int *ns)
{
    qnpu_qmodel *q = make_model(V_ALL, 21);
    unsigned char *b = save_bytes(q, qt_tmpfile("qf_good.qnpu"), n);
    qnpu__qmodel_destroy(q);
    *ns = sections(b, s, 64);
    return b;
}

START_TEST(test_truncated)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *b = good_file(&n, s, &ns);
    char want[96];
    for (int i = 0; i < ns; i++) {
        const uint64_t cuts[3] = {s[i].off, s[i].off + s[i].size / 2, s[i].off + s[i].size - 1};
        snprintf(want, sizeof want, "section '%s' needs bytes %llu..%llu", s[i].name,
                 (unsigned long long)s[i].off, (unsigned long long)(s[i].off + s[i].size));
        for (int c = 0; c < 3; c++) {
            char has[64];
            snprintf(has, sizeof has, "the file has %llu", (unsigned long long)cuts[c]);
            expect_fail_bytes(b, (size_t)cuts[c], QNPU_ERR_IO, want, has);
        }
    }
    const size_t head_cuts[] = {0, 3, 10, 63};
    for (size_t c = 0; c < 4; c++)
        expect_fail_bytes(b, head_cuts[c], QNPU_ERR_IO, "truncated: section 'header'", NULL);
    const size_t table_cuts[] = {64, 64 + 32 * (size_t)ns - 1};
    for (size_t c = 0; c < 2; c++)
        expect_fail_bytes(b, table_cuts[c], QNPU_ERR_IO, "truncated: section 'section table'", NULL);
    free(b);
}
END_TEST

START_TEST(test_bitflip)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *b = good_file(&n, s, &ns);
    char want[96];
    for (int i = 0; i < ns; i++) {
        const uint64_t at[3] = {s[i].off, s[i].off + s[i].size / 2, s[i].off + s[i].size - 1};
        snprintf(want, sizeof want, "section '%s': checksum mismatch", s[i].name);
        for (int k = 0; k < 3; k++) {
            b[at[k]] ^= 0x10;
            expect_fail_bytes(b, n, QNPU_ERR_FORMAT, want, NULL);
            b[at[k]] ^= 0x10;
        }
    }
    /* the header and the table are covered by the header's checksum */
    const size_t at[] = {9, 50, 64 + 32 * 3 + 20, 64 + 32 * (size_t)ns - 1};
    for (size_t k = 0; k < 4; k++) {
        b[at[k]] ^= 1;
        expect_fail_bytes(b, n, QNPU_ERR_FORMAT, "section 'header': checksum mismatch", NULL);
        b[at[k]] ^= 1;
    }
    /* and the untouched file still loads */
    const char *path = qt_tmpfile("qf_bad.qnpu");
    qt_write_file(path, b, n);
    qnpu_qmodel *q;
    ck_assert_int_eq(qnpu_qmodel_load(path, NULL, &q), QNPU_OK);
    qnpu_qmodel_free(q);
    free(b);
}
END_TEST

START_TEST(test_magic_and_version)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *b = good_file(&n, s, &ns);
    b[3] = 'X';
    expect_fail_bytes(b, n, QNPU_ERR_FORMAT, "bad magic", NULL);
    expect_fail_bytes(b, 4, QNPU_ERR_FORMAT, "bad magic", NULL);
    expect_fail_bytes((const unsigned char *)"GGUF", 4, QNPU_ERR_FORMAT, "not a .qnpu file", NULL);
    expect_fail_bytes((const unsigned char *)"QX", 2, QNPU_ERR_FORMAT, "bad magic", NULL);
    b[3] = 'U';
    wr32(b + QNPU__QH_FORMAT_VERSION, QNPU_FORMAT_VERSION + 1);
    expect_fail_bytes(b, n, QNPU_ERR_UNSUPPORTED, "format version 2 is newer", QNPU_VERSION_STRING);
    wr32(b + QNPU__QH_FORMAT_VERSION, 0xFFFFFFFFu);
    expect_fail_bytes(b, 100, QNPU_ERR_UNSUPPORTED, "newer", NULL);
    wr32(b + QNPU__QH_FORMAT_VERSION, 0);
    fix_crcs(b, n);
    expect_fail_bytes(b, n, QNPU_ERR_FORMAT, "format version 0", NULL);
    free(b);
}
END_TEST

/* Edit the table of a good file, fix the checksums, expect a failure. */
typedef void (*edit_fn)(unsigned char *b, size_t *n, const tsec *s, int ns);

static unsigned char *entry_of(unsigned char *b, int i)
{
    return b + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i;
}

static void run_edit(edit_fn f, qnpu_status want, const char *s1, const char *s2)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *b = good_file(&n, s, &ns);
    b = realloc(b, n + 4096);
    f(b, &n, s, ns);
    fix_crcs(b, n);
    expect_fail_bytes(b, n, want, s1, s2);
    free(b);
}

static void e_misaligned(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr64(entry_of(b, 1) + QNPU__QE_OFFSET, s[1].off + 8);
}
static void e_overlap(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr64(entry_of(b, 3) + QNPU__QE_OFFSET, s[2].off);
}
static void e_swapped_entries(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    unsigned char t[32];
    memcpy(t, entry_of(b, 4), 32);
    memcpy(entry_of(b, 4), entry_of(b, 5), 32);
    memcpy(entry_of(b, 5), t, 32);
}
static void e_swapped_ids(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    /* offsets ascending, but layer0.v.w listed before layer0.k.w */
    wr32(entry_of(b, 3) + QNPU__QE_INDEX, 2);
    wr32(entry_of(b, 4) + QNPU__QE_INDEX, 1);
}
static void e_unknown_required(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(entry_of(b, ns - 1) + QNPU__QE_ID, 99);
}
static void e_alignment(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    b[QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * 2 + QNPU__QE_ALIGN] = 32;
}
static void e_missing(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    /* layer1.q.w becomes an unknown optional section: skipped, so it is missing */
    unsigned char *e = entry_of(b, 2 + W_COUNT);
    wr32(e + QNPU__QE_ID, 99);
    e[QNPU__QE_FLAGS] = 1;
}
static void e_repeated(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    /* the vocab entry claims to be a second config */
    wr32(entry_of(b, ns - 1) + QNPU__QE_ID, QNPU__QS_CONFIG);
}
static void e_indexed_config(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(entry_of(b, 0) + QNPU__QE_INDEX, 3);
}
static void e_r4_order(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(entry_of(b, ns - 2) + QNPU__QE_INDEX, 0); /* layer1.r4 -> a second layer0.r4 */
}
static void e_r4_beyond(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(entry_of(b, ns - 2) + QNPU__QE_INDEX, 2);
}
static void e_count_zero(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(b + QNPU__QH_SECTION_COUNT, 0);
}
static void e_count_huge(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(b + QNPU__QH_SECTION_COUNT, QNPU__QF_MAX_SECTIONS + 1);
}
static void e_header_size(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr32(b + QNPU__QH_HEADER_SIZE, 128);
}
static void e_flags(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    entry_of(b, 1)[QNPU__QE_FLAGS] = 2;
}
static void e_trailing(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    memset(b + *n, 0, 64);
    *n += 64;
}
static void e_file_size_big(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr64(b + QNPU__QH_FILE_SIZE, *n + 1);
}
static void e_size_overflow(unsigned char *b, size_t *n, const tsec *s, int ns)
{
    wr64(entry_of(b, 1) + QNPU__QE_SIZE, UINT64_MAX - 10);
}

START_TEST(test_bad_table)
{
    run_edit(e_misaligned, QNPU_ERR_FORMAT, "section 'embedding'", "misaligned");
    run_edit(e_overlap, QNPU_ERR_FORMAT, "section 'layer0.k.w'", "overlap");
    run_edit(e_swapped_entries, QNPU_ERR_FORMAT, "section 'layer0.v.w'", "out of order");
    run_edit(e_swapped_ids, QNPU_ERR_FORMAT, "expected section 'layer0.k.w', found 'layer0.v.w'", NULL);
    run_edit(e_unknown_required, QNPU_ERR_FORMAT, "unknown required section id 99", NULL);
    run_edit(e_alignment, QNPU_ERR_FORMAT, "section 'layer0.q.w' declares alignment 32", NULL);
    run_edit(e_missing, QNPU_ERR_FORMAT, "expected section 'layer1.q.w', found 'layer1.k.w'", NULL);
    run_edit(e_repeated, QNPU_ERR_FORMAT, "unexpected section 'config'", NULL);
    run_edit(e_indexed_config, QNPU_ERR_FORMAT, "expected section 'config', found 'config#3'", NULL);
    run_edit(e_r4_order, QNPU_ERR_FORMAT, "section 'layer0.r4' is repeated", NULL);
    run_edit(e_r4_beyond, QNPU_ERR_FORMAT, "section 'layer2.r4'", "beyond");
    run_edit(e_count_zero, QNPU_ERR_FORMAT, "section count 0", NULL);
    run_edit(e_count_huge, QNPU_ERR_FORMAT, "section count", NULL);
    run_edit(e_header_size, QNPU_ERR_FORMAT, "header size 128", NULL);
    run_edit(e_flags, QNPU_ERR_FORMAT, "section 'embedding' has unknown flags", NULL);
    run_edit(e_trailing, QNPU_ERR_FORMAT, "64 unexpected bytes", NULL);
    run_edit(e_file_size_big, QNPU_ERR_IO, "truncated", NULL);
    run_edit(e_size_overflow, QNPU_ERR_FORMAT, "section 'embedding' has an impossible size", NULL);
}
END_TEST

/* An unknown section flagged optional is skipped. */
START_TEST(test_optional_section_skipped)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *b = good_file(&n, s, &ns);
    unsigned char *e = entry_of(b, ns - 1); /* vocab */
    wr32(e + QNPU__QE_ID, 1000);
    e[QNPU__QE_FLAGS] = 1;
    fix_crcs(b, n);
    const char *path = qt_tmpfile("qf_optional.qnpu");
    qt_write_file(path, b, n);
    qnpu_qmodel *q;
    ck_assert_msg(qnpu_qmodel_load(path, NULL, &q) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_ptr_null(q->vocab_tok);
    ck_assert_ptr_nonnull(q->r4[1]);
    qnpu_qmodel_free(q);
    free(b);
}
END_TEST

/* Impossible values behind valid checksums: each is refused, naming the tensor. */
typedef struct vcase {
    const char *section;
    size_t at;        /* byte offset inside the section */
    int kind;         /* 0 u8, 1 u32, 2 u64, 3 float, 4 double */
    double value;
    qnpu_status want;
    const char *s1, *s2;
} vcase;

START_TEST(test_bad_values)
{
    const size_t QP = QNPU__QF_QP_RECORD;
    const vcase cases[] = {
        {"config", 0, 2, 0, QNPU_ERR_FORMAT, "section 'config'", "hidden size"},
        {"config", 32, 2, 3, QNPU_ERR_FORMAT, "section 'config'", "kv head count"},
        {"config", 48, 2, 1e12, QNPU_ERR_FORMAT, "section 'config'", "vocab size"},
        {"config", 72, 4, NAN, QNPU_ERR_FORMAT, "section 'config'", "rms_norm_eps"},
        {"config", 80, 1, 16, QNPU_ERR_FORMAT, "section 'config'", "bos 16"},
        {"config", 88, 1, 2, QNPU_ERR_FORMAT, "section 'config'", "unknown flags"},
        {"config", 92, 1, 8, QNPU_ERR_FORMAT, "section 'config'", "8 linears"},
        {"config", 16, 2, 3, QNPU_ERR_FORMAT, "expected section 'layer2.q.w', found 'lm_head.w'", NULL},
        {"embedding", 40, 3, INFINITY, QNPU_ERR_FORMAT, "tensor 'embedding'", "not finite"},
        {"layer0.q.w", 16, 1, 9, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "9-bit"},
        {"layer0.q.w", 16, 1, 1, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "1-bit"},
        {"layer0.q.w", 0, 2, 9, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "shape 9x9, expected 8x9"},
        {"layer0.q.w", 20, 1, 0, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "layout"},
        {"layer0.q.w", 20, 1, 4, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "unknown flags"},
        {"layer0.q.w", 32, 2, 192, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "layout"},
        {"layer0.q.w", 128, 3, NAN, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "scale of row 0"},
        {"layer0.q.w", 132, 3, 0, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "scale of row 1"},
        {"layer0.q.w", 136, 3, -1, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "scale of row 2"},
        {"layer0.q.w", 192, 3, NAN, QNPU_ERR_FORMAT, "tensor 'layer0.q.w'", "bias 0"},
        {"layer0.o.w", 64, 0, 0x77, QNPU_ERR_FORMAT, "tensor 'layer0.o.w'", "code 7"},  /* 3 bits */
        {"layer0.gate.w", 64, 0, 0x22, QNPU_ERR_FORMAT, "tensor 'layer0.gate.w'", "code 2"}, /* 2 bits */
        {"lm_head.w", 20, 1, 1, QNPU_ERR_FORMAT, "tensor 'lm_head.w'", "bias"},
        {"lm_head.w", 8, 2, 8, QNPU_ERR_FORMAT, "tensor 'lm_head.w'", "shape 16x8, expected 16x9"},
        {"qp", 8, 0, 1, QNPU_ERR_FORMAT, "'layer0.in'", "1 bits"},
        {"qp", QP * QP_SOFTMAX + 8, 0, 17, QNPU_ERR_FORMAT, "'layer0.softmax.out'", "17 bits"},
        {"qp", QP * (2 * QP_LAYER_COUNT + QP_LOGITS), 3, NAN, QNPU_ERR_FORMAT, "'logits'", "scale nan"},
        {"qp", QP * (QP_LAYER_COUNT + QP_K_CACHE) + 9, 0, 2, QNPU_ERR_FORMAT, "'layer1.k.cache'", "sym 2"},
        {"qp", QP * (QP_LAYER_COUNT + QP_K_CACHE) + 11, 0, 9, QNPU_ERR_FORMAT, "'layer1.k.cache'", "origin 9"},
        {"qp", QP * (2 * QP_LAYER_COUNT + QP_ROPE_SIN), 3, NAN, QNPU_ERR_FORMAT, "'rope.sin'", "scale"},
        {"layer0.r4", 0, 2, 13, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "order 13"},
        {"layer0.r4", 8, 2, 3, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "power of two"},
        {"layer0.r4", 24, 2, 7, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "Paley prime 7"},
        {"layer0.r4", 32, 1, 9, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "unknown Hadamard kind 9"},
        {"layer0.r4", 32, 1, QNPU__HAD_PARTIAL, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "dense encoding"},
        {"layer0.r4", 36, 1, 0, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "exact = 0"},
        {"layer0.r4", 40, 4, 2.0, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "scale 2"},
        {"layer0.r4", 40, 4, NAN, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "scale"},
        {"layer0.r4", 48, 1, 2, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "dense encoding"},
        {"layer0.r4", 64 + 5, 0, 2, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "sign 5 is 2"},
        {"layer0.r4", 128 + 7, 0, 0, QNPU_ERR_FORMAT, "tensor 'layer0.r4'", "Hadamard entry 7"},
        {"layer1.r4", 128 + 8, 4, 1.5, QNPU_ERR_FORMAT, "tensor 'layer1.r4'", "orthogonal entry 1"},
        {"layer1.r4", 128, 4, NAN, QNPU_ERR_FORMAT, "tensor 'layer1.r4'", "orthogonal entry 0"},
        {"vocab", 0, 2, 0, QNPU_ERR_FORMAT, "section 'vocab'", "0 pieces"},
        {"vocab", 0, 2, 17, QNPU_ERR_FORMAT, "section 'vocab'", "piece 16"},
        {"vocab", 0, 2, 15, QNPU_ERR_FORMAT, "section 'vocab'", "bytes after the last piece"},
        {"vocab", 0, 2, 1ull << 40, QNPU_ERR_FORMAT, "section 'vocab'", "pieces do not fit"},
        {"vocab", 8, 1, 4, QNPU_ERR_FORMAT, "section 'vocab'", "unknown flags"},
        {"vocab", 8, 1, 2, QNPU_ERR_FORMAT, "section 'vocab'", "byte-level BPE runs past the end"},
        {"vocab", 16 + 8, 1, 1u << 31, QNPU_ERR_FORMAT, "section 'vocab'", "piece 0"},
    };
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *good = good_file(&n, s, &ns);
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const vcase *c = &cases[i];
        memcpy(b, good, n);
        unsigned char *p = b + find(s, ns, c->section)->off + c->at;
        switch (c->kind) {
        case 0: *p = (unsigned char)c->value; break;
        case 1: wr32(p, (uint32_t)c->value); break;
        case 2: wr64(p, (uint64_t)c->value); break;
        case 3: wrf(p, (float)c->value); break;
        default: wrd(p, c->value); break;
        }
        fix_crcs(b, n);
        const char *path = qt_tmpfile("qf_value.qnpu");
        write_scratch(path, b, n);
        qnpu_qmodel *q = NULL;
        qnpu_status st = qnpu_qmodel_load(path, NULL, &q);
        const char *m = qnpu_last_error();
        ck_assert_msg(st == c->want, "case %zu (%s +%zu): status %d: %s", i, c->section, c->at, (int)st,
                      st ? m : "loaded");
        ck_assert_msg(strstr(m, path), "case %zu: %s", i, m);
        ck_assert_msg(!c->s1 || strstr(m, c->s1), "case %zu: '%s' lacks '%s'", i, m, c->s1);
        ck_assert_msg(!c->s2 || strstr(m, c->s2), "case %zu: '%s' lacks '%s'", i, m, c->s2);
    }
    free(b);
    free(good);
}
END_TEST

/* Random corruption behind valid checksums never crashes, leaks or returns a surprise status. */
START_TEST(test_fuzz)
{
    size_t n;
    tsec s[64];
    int ns;
    unsigned char *good = good_file(&n, s, &ns);
    unsigned char *b = malloc(n);
    const char *path = qt_tmpfile("qf_fuzz.qnpu");
    rng = 12345;
    int ok = 0, failed = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, good, n);
        size_t len = n;
        int flips = 1 + (int)(rnd() % 3);
        for (int k = 0; k < flips; k++) {
            /* half the time aim at the header, the table or a section header */
            size_t at = (rnd() % 2) ? rnd() % n : (rnd() % 2 ? rnd() % (64 + 32 * (size_t)ns)
                                                             : s[rnd() % ns].off + rnd() % 64);
            if (at < n)
                b[at] ^= (unsigned char)(1u << (rnd() % 8));
        }
        if (rnd() % 8 == 0)
            len = rnd() % n;
        if (rnd() % 4)
            fix_crcs(b, len);
        write_scratch(path, b, len);
        qnpu_qmodel *q = NULL;
        qnpu_status st = qnpu_qmodel_load(path, NULL, &q);
        ck_assert_msg(st == QNPU_OK || st == QNPU_ERR_FORMAT || st == QNPU_ERR_IO || st == QNPU_ERR_UNSUPPORTED,
                      "iteration %d: status %d: %s", it, (int)st, qnpu_last_error());
        if (st == QNPU_OK) {
            ok++;
            qnpu_qmodel_free(q);
        } else {
            failed++;
            ck_assert_ptr_null(q);
        }
    }
    ck_assert_int_gt(failed, 1000);
    ck_assert_int_gt(ok, 0); /* flips in embedding values or biases are legitimate models */
    free(b);
    free(good);
}
END_TEST

/* A model from the real calibrator (stories260K, W4A8, online R4 in selected layers): it saves,
 * loads back identical, and the loaded model evaluates to the same perplexity, bit for bit. */
START_TEST(test_calibrated_model)
{
    const char *bin = "models/stories260K.bin", *train = "data/tinystories_train_head.txt";
    const char *valid = "data/tinystories_valid_head.txt";
    if (!qt_have_shared(bin) || !qt_have_shared(train) || !qt_have_shared(valid))
        return;
    qnpu_model *m;
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_model_load(qt_shared(bin), NULL, &m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    const char *kv[] = {"num_threads", "1", "quant.w_bits", "4", "quant.a_bits", "8", "rotate.r4", "selected",
                        "rotate.r4_layers", "1,3", "calib.num_samples", "2", NULL};
    for (int i = 0; kv[i]; i += 2) {
        qnpu_param p;
        ck_assert_int_eq(qnpu_param_from_name(kv[i], &p), QNPU_OK);
        ck_assert_msg(qnpu_options_set_str(o, p, kv[i + 1]) == QNPU_OK, "%s", qnpu_last_error());
    }
    size_t clen, vlen, n;
    char *calib = qt_read_file(qt_shared(train), &clen), *text = qt_read_file(qt_shared(valid), &vlen);
    qnpu_calibrator *c;
    qnpu_qmodel *a, *b;
    ck_assert_int_eq(qnpu_calibrator_create(m, t, o, &c), QNPU_OK);
    ck_assert_msg(qnpu_calibrator_run(c, calib, clen, &a) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_calibrator_free(c);
    ck_assert_ptr_nonnull(a->r4);
    ck_assert(a->r4[1] && a->r4[3] && !a->r4[0]);
    const char *path = qt_tmpfile("qf_stories260K.qnpu");
    ck_assert_msg(qnpu_qmodel_save(a, path) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_msg(qnpu_qmodel_load(path, NULL, &b) == QNPU_OK, "%s", qnpu_last_error());
    same_model(a, b);
    for (int64_t i = 0; i < qnpu_qmodel_qp_count(a); i++) {
        const char *na, *nb;
        ck_assert_int_eq(qnpu_qmodel_qp_info(a, i, &na, NULL, NULL, NULL, NULL), QNPU_OK);
        ck_assert_int_eq(qnpu_qmodel_qp_info(b, i, &nb, NULL, NULL, NULL, NULL), QNPU_OK);
        ck_assert_str_eq(na, nb);
    }
    int32_t *ids;
    ck_assert_int_eq(qnpu_tokenize_paragraphs(t, text, vlen, &ids, &n), QNPU_OK);
    n = n < 2 * 128 ? n : 2 * 128;
    double pa, pb;
    ck_assert_int_eq(qnpu_qmodel_perplexity_ids(a, o, ids, n, 128, &pa, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu_qmodel_perplexity_ids(b, o, ids, n, 128, &pb, NULL), QNPU_OK);
    ck_assert_msg(memcmp(&pa, &pb, sizeof pa) == 0, "%.17g vs %.17g", pa, pb);
    qnpu_free(ids);
    qnpu_qmodel_free(b);
    qnpu_qmodel_free(a);
    qnpu_options_free(o);
    free(calib);
    free(text);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

Suite *qnpu_qnpu_file_suite(void)
{
    Suite *s = suite_create("qnpu_file");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_crc32);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_r4_usable);
    tcase_add_test(tc, test_perplexity_with_and_without_r4);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_calibrated_model);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("save");
    tcase_add_test(tc, test_bad_args);
    tcase_add_test(tc, test_save_refuses_bad_models);
    tcase_add_test(tc, test_save_atomic);
    tcase_add_test(tc, test_alloc_failures);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_bitflip);
    tcase_add_test(tc, test_magic_and_version);
    tcase_add_test(tc, test_bad_table);
    tcase_add_test(tc, test_optional_section_skipped);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_fuzz);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
