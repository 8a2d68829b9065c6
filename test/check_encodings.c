/* check_encodings.c — the QNN / AIMET encodings JSON (lib/export/encodings.c, FORMATS §1,
 * docs/formats.md): the worked examples of FORMATS §0.1 by hand, the exact text of both schema
 * versions for a small synthetic model, stories260K quantized by the real calibrator written in
 * both versions (directly and through qnpu_exporter_write) and read back to every scale and
 * offset (checked against the public qnpu_qmodel_qp_info, independently of the writer), the
 * specification's own examples, malformed files with messages naming the tensor and field, write
 * failures, and random corruption. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib/qgraph.h"
#include "export/encodings.h"
#include "testutil.h"

#define BIN "models/stories260K.bin"
#define TRAIN "data/tinystories_train_head.txt"

/* The AIMET specification's A8 example (FORMATS §0.1). */
#define AIMET_S 0.018501389771699905f
#define AIMET_Z 114

static qnpu_options *version_opts(const char *v)
{
    const char *kv[] = {"export.encodings_version", v, NULL};
    return qt_options(kv);
}

/* ---- FORMATS §0.1 worked examples ------------------------------------------------------------ */

START_TEST(test_worked_examples)
{
    qnpu__enc_value e;
    char b[48];
    /* A8 asym: offset -z, min/max from scale and offset as float32 */
    ck_assert_int_eq(qnpu__encoding_of("a8", AIMET_S, AIMET_Z, 8, 0, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, -114);
    ck_assert(e.min == (float)-2.109158515930176);
    ck_assert(e.max == (float)2.6086959838867188);
    ck_assert_int_eq(e.sym, 0);
    qnpu__enc_format_float(b, sizeof b, e.scale);
    ck_assert_str_eq(b, "0.0185013898");
    ck_assert((float)strtod(b, NULL) == AIMET_S);
    qnpu__enc_format_float(b, sizeof b, e.min);
    ck_assert_str_eq(b, "-2.10915852");
    ck_assert((float)strtod(b, NULL) == (float)-2.109158515930176);
    qnpu__enc_format_float(b, sizeof b, e.max);
    ck_assert_str_eq(b, "2.60869598");
    /* W4 sym, one channel: offset -8, min -0.08, max 0.07 */
    ck_assert_int_eq(qnpu__encoding_of("w4", 0.01f, 0, 4, 1, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, -8);
    ck_assert(e.min == -0.08f);
    ck_assert(e.max == 0.07f);
    /* W8 and the int8 KV cache: -128; 16-bit symmetric: -32768 */
    ck_assert_int_eq(qnpu__encoding_of("w8", 0.5f, 0, 8, 1, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, -128);
    ck_assert(e.min == -64.0f && e.max == 63.5f);
    ck_assert_int_eq(qnpu__encoding_of("kv16", 1.0f, 0, 16, 1, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, -32768);
    ck_assert(e.max == 32767.0f);
    /* the fixed sigmoid output: 2^-16, offset 0, max 65535/65536 */
    ck_assert_int_eq(qnpu__encoding_of("sig", ldexpf(1.0f, -16), 0, 16, 0, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, 0);
    ck_assert(e.min == 0.0f);
    ck_assert(e.max == 0.9999847412109375f);
    qnpu__enc_format_float(b, sizeof b, e.scale);
    ck_assert_str_eq(b, "1.52587891e-05");
    ck_assert((float)strtod(b, NULL) == ldexpf(1.0f, -16));
    qnpu__enc_format_float(b, sizeof b, e.min);
    ck_assert_str_eq(b, "0");
    /* 16-bit asymmetric with the largest zero point */
    ck_assert_int_eq(qnpu__encoding_of("a16", 0.25f, 65535, 16, 0, &e), QNPU_OK);
    ck_assert_int_eq(e.offset, -65535);
    ck_assert(e.max == 0.0f);
    /* records that cannot be encoded */
    ck_assert_int_eq(qnpu__encoding_of("x", 0.1f, 3, 8, 1, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "x: symmetric"));
    ck_assert_int_eq(qnpu__encoding_of("x", 0.1f, 256, 8, 0, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encoding_of("x", 0.1f, -1, 8, 0, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encoding_of("x", 0.0f, 0, 8, 0, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encoding_of("x", -1.0f, 0, 8, 0, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encoding_of("x", NAN, 0, 8, 0, &e), QNPU_ERR_NUMERIC);
    ck_assert_int_eq(qnpu__encoding_of("x", INFINITY, 0, 8, 0, &e), QNPU_ERR_NUMERIC);
    ck_assert_int_eq(qnpu__encoding_of("x", 0.1f, 0, 1, 1, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encoding_of("x", 0.1f, 0, 33, 1, &e), QNPU_ERR_INVALID_ARG);
}
END_TEST

/* ---- a small synthetic model ----------------------------------------------------------------- */

static void shape(const qnpu_qmodel *q, int w, int64_t *rows)
{
    int64_t qd = q->n_heads * q->head_dim, kvd = q->n_kv_heads * q->head_dim;
    const int64_t r[W_COUNT] = {qd, kvd, kvd, q->dim, q->ffn, q->ffn, q->dim};
    *rows = r[w];
}

/* Two layers with the default bit-widths (qnpu__qp_assign_bits), deterministic scales and zero
 * points, layer0.qkv.in = the AIMET example, layer1.v.out pass-through, layer0.q.w channel 0 =
 * 0.01. Only what the encodings need is filled in. */
static qnpu_qmodel *tiny_model(int w_bits)
{
    qnpu_qmodel *q = qnpu__calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    q->dim = 4, q->ffn = 6, q->n_layers = 2, q->n_heads = 2, q->n_kv_heads = 1, q->head_dim = 2;
    q->vocab = 5, q->max_seq = 8;
    q->lin = qnpu__calloc((size_t)(q->n_layers * W_COUNT), sizeof *q->lin);
    q->qp = qnpu__calloc((size_t)(q->n_layers * QP_LAYER_COUNT), sizeof *q->qp);
    ck_assert(q->lin && q->qp);
    int8_t wb[2 * W_COUNT];
    int head_bits;
    ck_assert_int_eq(qnpu__qp_assign_bits(NULL, q->n_layers, q->qp, q->gqp, wb, &head_bits), QNPU_OK);
    for (int64_t i = 0; i < q->n_layers * QP_LAYER_COUNT + QP_GLOBAL_COUNT; i++) {
        qnpu__qp *p = i < q->n_layers * QP_LAYER_COUNT ? &q->qp[i] : &q->gqp[i - q->n_layers * QP_LAYER_COUNT];
        if (!p->bits)
            continue;
        p->s = ldexpf(1.0f + (float)(i % 7) / 7.0f, -(int)(i % 11));
        p->z = p->sym ? 0 : (int32_t)((i * 37) % (1 << p->bits));
    }
    q->qp[QP_QKV_IN].s = AIMET_S, q->qp[QP_QKV_IN].z = AIMET_Z;
    for (int64_t l = 0; l < q->n_layers; l++) {
        qnpu__qp *g = &q->qp[l * QP_LAYER_COUNT + QP_GATE_SIG];
        g->s = ldexpf(1.0f, -16), g->z = 0;
    }
    q->qp[QP_LAYER_COUNT + QP_V_OUT].bits = 0; /* layer1.v.out */
    q->qp[QP_LAYER_COUNT + QP_V_OUT].s = 0;
    for (int64_t i = 0; i <= q->n_layers * W_COUNT; i++) {
        qnpu__qlinear *ql = i < q->n_layers * W_COUNT ? &q->lin[i] : &q->head;
        if (i < q->n_layers * W_COUNT)
            shape(q, (int)(i % W_COUNT), &ql->rows);
        else
            ql->rows = q->vocab;
        ql->cols = 1;
        ql->bits = i < q->n_layers * W_COUNT ? w_bits : head_bits;
        ql->scale = qnpu__malloc((size_t)ql->rows * sizeof(float));
        ck_assert_ptr_nonnull(ql->scale);
        for (int64_t r = 0; r < ql->rows; r++)
            ql->scale[r] = 1e-3f + (float)((i * 13 + r * 7) % 101) * 3.7e-4f;
    }
    q->lin[0].scale[0] = 0.01f;
    return q;
}

/* tiny models are not handles (qnpu_qmodel_free would release one); destroy frees the names */
static void free_tiny(qnpu_qmodel *q)
{
    qnpu__qmodel_destroy(q);
}

static char *write_text(const qnpu_qmodel *q, const char *version, const char *file, size_t *len)
{
    qnpu_options *o = version_opts(version);
    const char *path = qt_tmpfile(file);
    ck_assert_msg(qnpu__encodings_write(q, o, path) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_options_free(o);
    return qt_read_file(path, len);
}

#define HAS(text, s) ck_assert_msg(strstr((text), (s)) != NULL, "missing: %s", (s))

START_TEST(test_tiny_text)
{
    qnpu_qmodel *q = tiny_model(4);
    size_t len;
    char *t = write_text(q, "0.6.1", "tiny061.json", &len);
    HAS(t, "{\n  \"version\": \"0.6.1\",\n  \"activation_encodings\": {\n    \"layer0.in\": [\n");
    HAS(t, "\"layer0.qkv.in\": [\n      {\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"False\", "
           "\"scale\": 0.0185013898, \"offset\": -114, \"min\": -2.10915852, \"max\": 2.60869598}\n    ]");
    HAS(t, "\"layer1.gate.sig\": [\n      {\"bitwidth\": 16, \"dtype\": \"int\", \"is_symmetric\": \"False\", "
           "\"scale\": 1.52587891e-05, \"offset\": 0, \"min\": 0, \"max\": 0.999984741}");
    HAS(t, "\"layer0.k.cache\": [\n      {\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", ");
    HAS(t, "\"param_encodings\": {\n    \"layer0.q.w\": [\n      {\"bitwidth\": 4, \"dtype\": \"int\", "
           "\"is_symmetric\": \"True\", \"scale\": 0.00999999978, \"offset\": -8, \"min\": -0.0799999982, "
           "\"max\": 0.0700000003},\n      {\"bitwidth\": 4,");
    HAS(t, "\"lm_head.w\": [\n      {\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", ");
    HAS(t, "\"quantizer_args\": {\"activation_bitwidth\": 16, \"dtype\": \"int\", \"is_symmetric\": \"True\", "
           "\"param_bitwidth\": 4, \"per_channel_quantization\": \"True\", \"quant_scheme\": \"post_training_tf\"}\n}\n");
    ck_assert_ptr_null(strstr(t, "layer1.v.out"));  /* pass-through */
    ck_assert_ptr_null(strstr(t, "layer1.in\""));   /* not a point past layer 0 */
    ck_assert_ptr_nonnull(strstr(t, "\"layer1.k.out\""));
    ck_assert_ptr_nonnull(strstr(t, "\"rope.cos\""));
    ck_assert_ptr_nonnull(strstr(t, "\"logits\""));
    ck_assert_ptr_null(strstr(t, "excluded_layers"));
    qnpu__encodings *e;
    ck_assert_msg(qnpu__encodings_parse("tiny061", t, len, &e) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_int_eq(e->version, QNPU__ENC_V061);
    ck_assert_msg(qnpu__encodings_compare(e, q) == QNPU_OK, "%s", qnpu_last_error());
    const qnpu__enc_record *r = qnpu__encodings_find(e, 0, "layer0.qkv.in");
    ck_assert_ptr_nonnull(r);
    ck_assert(r->scale[0] == AIMET_S && r->offset[0] == -114 && r->bits == 8 && !r->sym && r->n == 1);
    ck_assert(r->min[0] == (float)-2.109158515930176 && r->max[0] == (float)2.6086959838867188);
    r = qnpu__encodings_find(e, 1, "layer0.q.w");
    ck_assert(r && r->n == q->lin[0].rows && r->per_channel && r->sym && r->offset[0] == -8);
    ck_assert(r->scale[0] == 0.01f);
    ck_assert_ptr_null(qnpu__encodings_find(e, 1, "layer0.qkv.in")); /* sections are apart */
    /* records: every activation QP with bits > 0 of the model's own name list, every weight */
    ck_assert_int_eq(qnpu__qmodel_name_points(q), QNPU_OK);
    int64_t n_act = 0;
    for (int64_t i = 0; i < q->n_names - (q->n_layers * W_COUNT + 1); i++) {
        int bits;
        const char *name;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q, i, &name, &bits, NULL, NULL, NULL), QNPU_OK);
        n_act += bits > 0;
        ck_assert_int_eq(qnpu__encodings_find(e, 0, name) != NULL, bits > 0);
    }
    ck_assert_int_eq(e->n_act, n_act);
    ck_assert_int_eq(e->n_rec - e->n_act, q->n_layers * W_COUNT + 1);
    qnpu__encodings_free(e);
    free(t);

    t = write_text(q, "1.0.0", "tiny100.json", &len);
    HAS(t, "{\n  \"version\": \"1.0.0\",\n  \"activation_encodings\": [\n    {\"name\": \"layer0.in\", ");
    HAS(t, "{\"name\": \"layer0.qkv.in\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 8, "
           "\"is_sym\": false, \"scale\": [0.0185013898], \"offset\": [-114]}");
    HAS(t, "{\"name\": \"layer0.gate.sig\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 16, "
           "\"is_sym\": false, \"scale\": [1.52587891e-05], \"offset\": [0]}");
    HAS(t, "{\"name\": \"layer0.v.cache\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 8, "
           "\"is_sym\": true, ");
    HAS(t, "{\"name\": \"layer0.q.w\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4, "
           "\"is_sym\": true, \"scale\": [0.00999999978, ");
    HAS(t, "\"offset\": [-8, -8, -8, -8]}");
    HAS(t, "\"quantizer_args\": {\"activation_bitwidth\": 16, \"dtype\": \"int\", \"is_symmetric\": true, "
           "\"param_bitwidth\": 4, \"per_channel_quantization\": true, \"quant_scheme\": \"post_training_tf\"},\n"
           "  \"excluded_layers\": []\n}\n");
    ck_assert_ptr_null(strstr(t, "\"min\""));
    ck_assert_ptr_null(strstr(t, "layer1.v.out"));
    ck_assert_msg(qnpu__encodings_parse("tiny100", t, len, &e) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_int_eq(e->version, QNPU__ENC_V100);
    ck_assert_msg(qnpu__encodings_compare(e, q) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_ptr_null(qnpu__encodings_find(e, 1, "layer0.q.w")->min);
    qnpu__encodings_free(e);
    free(t);
    free_tiny(q);
}
END_TEST

/* The comparison notices any change of the model: a scale by one ulp, a zero point, a bit-width,
 * a point turned pass-through or on. */
START_TEST(test_compare_detects)
{
    qnpu_qmodel *q = tiny_model(4);
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, qt_tmpfile("cmp.json")), QNPU_OK);
    qnpu__encodings *e;
    ck_assert_msg(qnpu__encodings_read(qt_tmpfile("cmp.json"), &e) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_OK);
    qnpu__qp *p = &q->qp[QP_LAYER_COUNT + QP_O_IN];
    float s = p->s;
    p->s = nextafterf(s, 1.0f);
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "'layer1.o.in'"));
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "scale"));
    p->s = s;
    p->z++;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "offset"));
    p->z--;
    p->bits = 16;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    p->bits = 0;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "pass-through"));
    p->bits = 8;
    q->qp[QP_LAYER_COUNT + QP_V_OUT].bits = 8;
    q->qp[QP_LAYER_COUNT + QP_V_OUT].s = 1.0f;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "'layer1.v.out': no activation encoding"));
    q->qp[QP_LAYER_COUNT + QP_V_OUT].bits = 0;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_OK);
    float *w = &q->lin[W_COUNT + W_DOWN].scale[2];
    *w = nextafterf(*w, 0.0f);
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "'layer1.down.w': channel 2"));
    *w = nextafterf(*w, 1.0f);
    q->head.bits = 4;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "'lm_head.w'"));
    q->head.bits = 8;
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_OK);
    qnpu__encodings_free(e);
    /* a file with an extra name, and one with a name missing */
    const char *extra = "{\"version\": \"1.0.0\", \"activation_encodings\": [{\"name\": \"layer9.q.out\", "
                        "\"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 8, \"is_sym\": false, "
                        "\"scale\": [1], \"offset\": [0]}], \"param_encodings\": []}";
    ck_assert_int_eq(qnpu__encodings_parse("extra", extra, strlen(extra), &e), QNPU_OK);
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_ERR_FORMAT);
    qnpu__encodings_free(e);
    free_tiny(q);
}
END_TEST

/* ---- stories260K ---------------------------------------------------------------------------- */

/* Check every point of q (through the public qnpu_qmodel_qp_info listing, not the writer's
 * enumeration) against the re-read file: bits, scheme, float32 scale bit for bit, offset by
 * FORMATS §0.1; every channel of every weight. */
static void check_against_model(const qnpu__encodings *e, const qnpu_qmodel *q)
{
    int64_t n_w = q->n_layers * W_COUNT + 1, n_act = qnpu_qmodel_qp_count(q) - n_w, written = 0;
    for (int64_t i = 0; i < n_act; i++) {
        const char *name;
        int bits, sym;
        double scale;
        int32_t z;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q, i, &name, &bits, &sym, &scale, &z), QNPU_OK);
        const qnpu__enc_record *r = qnpu__encodings_find(e, 0, name);
        if (bits == 0) {
            ck_assert_msg(r == NULL, "%s is pass-through but encoded", name);
            continue;
        }
        written++;
        ck_assert_msg(r != NULL, "%s missing", name);
        ck_assert_int_eq(r->n, 1);
        ck_assert_int_eq(r->bits, bits);
        ck_assert_int_eq(r->sym, sym);
        ck_assert_msg(r->scale[0] == (float)scale, "%s: %.9g vs %.9g", name, (double)r->scale[0], scale);
        ck_assert_int_eq(r->offset[0], sym ? -(1LL << (bits - 1)) : -(long long)z);
        if (r->min) {
            ck_assert(r->min[0] == (float)r->offset[0] * (float)scale);
            ck_assert(r->max[0] == (float)((1LL << bits) - 1 + r->offset[0]) * (float)scale);
        }
    }
    ck_assert_int_eq(e->n_act, written);
    ck_assert_int_eq(e->n_rec - e->n_act, n_w);
    for (int64_t i = 0; i < n_w; i++) {
        const char *name;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q, n_act + i, &name, NULL, NULL, NULL, NULL), QNPU_OK);
        const qnpu__qlinear *w = i < n_w - 1 ? &q->lin[i] : &q->head;
        const qnpu__enc_record *r = qnpu__encodings_find(e, 1, name);
        ck_assert_msg(r != NULL, "%s missing", name);
        ck_assert_int_eq(r->n, w->rows);
        ck_assert_int_eq(r->bits, w->bits);
        ck_assert(r->sym && r->per_channel);
        for (int64_t c = 0; c < w->rows; c++) {
            ck_assert_msg(memcmp(&r->scale[c], &w->scale[c], sizeof(float)) == 0, "%s[%lld]", name, (long long)c);
            ck_assert_int_eq(r->offset[c], -(1LL << (w->bits - 1)));
        }
    }
}

START_TEST(test_stories260K)
{
    if (!qt_have_shared(BIN) || !qt_have_shared(TRAIN))
        return;
    qnpu_model *m;
    qnpu_tokenizer *t;
    ck_assert_int_eq(qnpu_model_load(qt_shared(BIN), NULL, &m), QNPU_OK);
    ck_assert_int_eq(qnpu_tokenizer_from_model(m, &t), QNPU_OK);
    /* W4A8 with a pass-through point, a 16-bit down.in (default) and a 4-bit one in layer 2 */
    const char *kv[] = {"quant.w_bits", "4", "quant.a_bits", "8", "calib.num_samples", "2",
                        "quant.bits_override", "layer1.q.rope_c:0,layer2.down.in:8", NULL};
    qnpu_options *o = qt_options(kv);
    size_t clen;
    char *calib = qt_read_file(qt_shared(TRAIN), &clen);
    qnpu_calibrator *c;
    qnpu_qmodel *q;
    ck_assert_int_eq(qnpu_calibrator_create(m, t, o, &c), QNPU_OK);
    ck_assert_msg(qnpu_calibrator_run(c, calib, clen, &q) == QNPU_OK, "%s", qnpu_last_error());
    qnpu_calibrator_free(c);
    free(calib);
    ck_assert_int_eq(q->qp[QP_LAYER_COUNT + QP_Q_ROPE_C].bits, 0);
    ck_assert_int_eq(q->qp[2 * QP_LAYER_COUNT + QP_DOWN_IN].bits, 8);
    ck_assert_int_eq(q->qp[2 * QP_LAYER_COUNT + QP_DOWN_OUT].bits, 8);
    static const char *const versions[] = {"0.6.1", "1.0.0"};
    for (int v = 0; v < 2; v++) {
        qnpu_options *eo = version_opts(versions[v]);
        char f1[64], f2[64];
        snprintf(f1, sizeof f1, "s260k-%s-a.json", versions[v]);
        snprintf(f2, sizeof f2, "s260k-%s-b.json", versions[v]);
        const char *p1 = qt_tmpfile(f1), *p2 = qt_tmpfile(f2);
        ck_assert_msg(qnpu__encodings_write(q, eo, p1) == QNPU_OK, "%s", qnpu_last_error());
        ck_assert_msg(qnpu__encodings_write(q, eo, p2) == QNPU_OK, "%s", qnpu_last_error());
        size_t n1, n2;
        char *a = qt_read_file(p1, &n1), *b = qt_read_file(p2, &n2);
        ck_assert_msg(n1 == n2 && memcmp(a, b, n1) == 0, "%s: two writes differ", versions[v]);
        free(b);
        /* the public exporter writes the same bytes */
        qnpu_exporter *x;
        ck_assert_int_eq(qnpu_exporter_create(q, eo, &x), QNPU_OK);
        ck_assert_msg(qnpu_exporter_write(x, QNPU_EXPORT_ENCODINGS, p2) == QNPU_OK, "%s", qnpu_last_error());
        qnpu_exporter_free(x);
        b = qt_read_file(p2, &n2);
        ck_assert_msg(n1 == n2 && memcmp(a, b, n1) == 0, "%s: qnpu_exporter_write differs", versions[v]);
        free(a);
        free(b);
        qnpu__encodings *e;
        ck_assert_msg(qnpu__encodings_read(p1, &e) == QNPU_OK, "%s", qnpu_last_error());
        ck_assert_int_eq(e->version, v);
        check_against_model(e, q);
        ck_assert_msg(qnpu__encodings_compare(e, q) == QNPU_OK, "%s", qnpu_last_error());
        /* the sigmoid output is the fixed 2^-16 of METHOD.md §12 rule 19 */
        const qnpu__enc_record *r = qnpu__encodings_find(e, 0, "layer3.gate.sig");
        ck_assert(r && r->bits == 16 && !r->sym && r->scale[0] == ldexpf(1.0f, -16) && r->offset[0] == 0);
        ck_assert_ptr_null(qnpu__encodings_find(e, 0, "layer1.q.rope_c"));
        ck_assert_ptr_nonnull(qnpu__encodings_find(e, 0, "layer0.q.rope_c"));
        r = qnpu__encodings_find(e, 0, "layer4.k.cache");
        ck_assert(r && r->sym && r->bits == 8 && r->offset[0] == -128);
        qnpu__encodings_free(e);
        qnpu_options_free(eo);
    }
    qnpu_qmodel_free(q);
    qnpu_options_free(o);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
}
END_TEST

/* ---- the specification's examples and malformed files ---------------------------------------- */

/* FORMATS §1.1 / §1.2, verbatim. */
static const char SPEC_061[] =
    "{\n  \"version\": \"0.6.1\",\n  \"activation_encodings\": {\n    \"layers.0.qkv.in\": [\n"
    "      {\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"False\",\n"
    "       \"scale\": 0.018501389771699905, \"offset\": -114,\n"
    "       \"min\": -2.109158515930176, \"max\": 2.6086959838867188}\n    ]\n  },\n"
    "  \"param_encodings\": {\n    \"layers.0.q_proj.weight\": [\n"
    "      {\"bitwidth\": 4, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0.01,  \"offset\": -8, "
    "\"min\": -0.08,  \"max\": 0.07},\n"
    "      {\"bitwidth\": 4, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0.02,  \"offset\": -8, "
    "\"min\": -0.16,  \"max\": 0.14},\n"
    "      {\"bitwidth\": 4, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0.005, \"offset\": -8, "
    "\"min\": -0.04,  \"max\": 0.035}\n    ]\n  },\n"
    "  \"quantizer_args\": {\"activation_bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\",\n"
    "                     \"param_bitwidth\": 4, \"per_channel_quantization\": \"True\",\n"
    "                     \"quant_scheme\": \"post_training_tf\"}\n}\n";

static const char SPEC_100[] =
    "{\n  \"version\": \"1.0.0\",\n  \"activation_encodings\": [\n"
    "    {\"name\": \"layers.0.qkv.in\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 8,\n"
    "     \"is_sym\": false, \"scale\": [0.018501389771699905], \"offset\": [-114]},\n"
    "    {\"name\": \"layers.0.gate.sig\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 16,\n"
    "     \"is_sym\": false, \"scale\": [1.52587890625e-05], \"offset\": [0]}\n  ],\n"
    "  \"param_encodings\": [\n"
    "    {\"name\": \"layers.0.q_proj.weight\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4,\n"
    "     \"is_sym\": true, \"scale\": [0.01, 0.02, 0.005], \"offset\": [-8, -8, -8]}\n  ],\n"
    "  \"quantizer_args\": {\"activation_bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": true,\n"
    "                     \"param_bitwidth\": 4, \"per_channel_quantization\": true,\n"
    "                     \"quant_scheme\": \"post_training_tf\"},\n  \"excluded_layers\": []\n}\n";

START_TEST(test_spec_examples)
{
    qnpu__encodings *e;
    ck_assert_msg(qnpu__encodings_parse("spec061", SPEC_061, strlen(SPEC_061), &e) == QNPU_OK, "%s",
                  qnpu_last_error());
    ck_assert_int_eq(e->version, QNPU__ENC_V061);
    ck_assert_int_eq(e->n_act, 1);
    ck_assert_int_eq(e->n_rec, 2);
    const qnpu__enc_record *r = qnpu__encodings_find(e, 0, "layers.0.qkv.in");
    ck_assert(r && r->bits == 8 && !r->sym && r->scale[0] == AIMET_S && r->offset[0] == -114);
    r = qnpu__encodings_find(e, 1, "layers.0.q_proj.weight");
    ck_assert(r && r->n == 3 && r->per_channel && r->sym && r->bits == 4);
    ck_assert(r->scale[1] == 0.02f && r->offset[2] == -8 && r->max[2] == 0.035f);
    qnpu__encodings_free(e);
    ck_assert_msg(qnpu__encodings_parse("spec100", SPEC_100, strlen(SPEC_100), &e) == QNPU_OK, "%s",
                  qnpu_last_error());
    ck_assert_int_eq(e->version, QNPU__ENC_V100);
    ck_assert_int_eq(e->n_act, 2);
    r = qnpu__encodings_find(e, 0, "layers.0.gate.sig");
    ck_assert(r && r->bits == 16 && r->scale[0] == ldexpf(1.0f, -16) && r->offset[0] == 0 && !r->per_channel);
    r = qnpu__encodings_find(e, 1, "layers.0.q_proj.weight");
    ck_assert(r && r->n == 3 && r->per_channel && r->sym && r->scale[2] == 0.005f && !r->min);
    qnpu__encodings_free(e);
    /* float encodings of both versions */
    const char *f061 = "{\"version\": \"0.6.1\", \"activation_encodings\": {\"x\": [{\"bitwidth\": 16, "
                       "\"dtype\": \"float\"}]}, \"param_encodings\": {}}";
    ck_assert_msg(qnpu__encodings_parse("f061", f061, strlen(f061), &e) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert(e->n_rec == 1 && e->rec[0].is_float && e->rec[0].bits == 16 && e->rec[0].n == 0);
    qnpu__encodings_free(e);
    const char *f100 = "{\"version\": \"1.0.0\", \"activation_encodings\": [], \"param_encodings\": [{\"name\": "
                       "\"w\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"FLOAT\", \"bw\": 32}]}";
    ck_assert_msg(qnpu__encodings_parse("f100", f100, strlen(f100), &e) == QNPU_OK, "%s", qnpu_last_error());
    ck_assert(e->n_rec == 1 && e->n_act == 0 && e->rec[0].is_float && e->rec[0].bits == 32 && e->rec[0].param);
    qnpu__encodings_free(e);
}
END_TEST

/* One 0.6.1 file with the encoding `enc` for tensor "t". */
static char *v061_with(const char *enc)
{
    static char buf[2048];
    snprintf(buf, sizeof buf, "{\"version\": \"0.6.1\", \"activation_encodings\": {\"t\": [%s]}, "
             "\"param_encodings\": {}}", enc);
    return buf;
}

static char *v100_with(const char *enc)
{
    static char buf[2048];
    snprintf(buf, sizeof buf, "{\"version\": \"1.0.0\", \"activation_encodings\": [], \"param_encodings\": [%s]}",
             enc);
    return buf;
}

#define A8 "\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"False\", \"scale\": 0.5"
#define P4 "\"name\": \"w\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true"

START_TEST(test_malformed)
{
    /* DOC: the whole file; W061/W100: the members of one encoding object of tensor "t" (0.6.1) or
     * "w" (1.0.0 parameters); L061/L100: the list of encoding objects itself */
    enum { DOC, W061, L061, W100, L100 };
    static const struct { const char *text; int mode; qnpu_status want; const char *msg; } cases[] = {
        {"", DOC, QNPU_ERR_FORMAT, "bad:"},
        {"[1, 2]", DOC, QNPU_ERR_FORMAT, "top level"},
        {"{\"version\": \"0.6.1\", \"activation_encodings\": {", DOC, QNPU_ERR_FORMAT, "bad:2:1:"},
        {"{\"activation_encodings\": {}}", DOC, QNPU_ERR_FORMAT, "'version'"},
        {"{\"version\": 1.0}", DOC, QNPU_ERR_FORMAT, "'version'"},
        {"{\"version\": \"2.0.0\"}", DOC, QNPU_ERR_UNSUPPORTED, "'2.0.0'"},
        {"{\"version\": \"0.6.1\", \"activation_encodings\": []}", DOC, QNPU_ERR_FORMAT, "must be an object"},
        {"{\"version\": \"1.0.0\", \"param_encodings\": {}}", DOC, QNPU_ERR_FORMAT, "must be an array"},
        {"{\"version\": \"1.0.0\", \"excluded_layers\": 3}", DOC, QNPU_ERR_FORMAT, "excluded_layers"},
        {"{\"version\": \"0.6.1\", \"activation_encodings\": {\"t\": {}}}", DOC, QNPU_ERR_FORMAT, "'t'"},
        {"{\"version\": \"0.6.1\", \"activation_encodings\": {\"t\": []}}", DOC, QNPU_ERR_FORMAT, "non-empty"},
        {"3", L061, QNPU_ERR_FORMAT, "'t' entry 0: an encoding must be an object"},
        {A8 ", \"offset\": -3, \"min\": -1.5, \"max\": 126", W061, QNPU_OK, NULL},
        {A8 ", \"offset\": -3.0, \"min\": -1.5, \"max\": 126", W061, QNPU_OK, NULL},
        {A8 ", \"offset\": 3, \"min\": 1.5, \"max\": 129", W061, QNPU_ERR_FORMAT, "'t' entry 0: 'offset'"},
        {A8 ", \"offset\": -256, \"min\": -128, \"max\": -0.5", W061, QNPU_ERR_FORMAT, "'offset'"},
        {A8 ", \"offset\": -3.5, \"min\": -1.75, \"max\": 126", W061, QNPU_ERR_FORMAT, "'offset'"},
        {A8 ", \"offset\": \"-3\", \"min\": -1.5, \"max\": 126", W061, QNPU_ERR_FORMAT, "'offset'"},
        {A8 ", \"min\": -1.5, \"max\": 126", W061, QNPU_ERR_FORMAT, "'offset'"},
        {A8 ", \"offset\": -3, \"min\": -2.5, \"max\": 126", W061, QNPU_ERR_FORMAT, "'t' entry 0: 'min' -2.5"},
        {A8 ", \"offset\": -3, \"min\": -1.5, \"max\": 127", W061, QNPU_ERR_FORMAT, "'max'"},
        {A8 ", \"offset\": -3, \"max\": 126", W061, QNPU_ERR_FORMAT, "'min' is missing"},
        {A8 ", \"offset\": -3, \"min\": null, \"max\": 126", W061, QNPU_ERR_FORMAT, "'min' is null"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": false, \"scale\": 0.5, \"offset\": 0, "
         "\"min\": 0, \"max\": 127.5", W061, QNPU_ERR_FORMAT, "JSON boolean is version 1.0.0"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"yes\", \"scale\": 0.5, \"offset\": 0, "
         "\"min\": 0, \"max\": 127.5", W061, QNPU_ERR_FORMAT, "'is_symmetric'"},
        {"\"bitwidth\": 3, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0.5, \"offset\": -4, "
         "\"min\": -2, \"max\": 1.5", W061, QNPU_ERR_FORMAT, "'bitwidth'"},
        {"\"bitwidth\": 8.5, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0.5, \"offset\": 0, "
         "\"min\": 0, \"max\": 1", W061, QNPU_ERR_FORMAT, "'bitwidth'"},
        {"\"bitwidth\": 8, \"dtype\": \"int8\", \"is_symmetric\": \"True\", \"scale\": 0.5, \"offset\": 0, "
         "\"min\": 0, \"max\": 1", W061, QNPU_ERR_FORMAT, "'dtype' is 'int8'"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 0, \"offset\": 0, "
         "\"min\": 0, \"max\": 0", W061, QNPU_ERR_FORMAT, "'scale'"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": -1, \"offset\": 0, "
         "\"min\": 0, \"max\": 0", W061, QNPU_ERR_FORMAT, "'scale'"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 1e300, \"offset\": 0, "
         "\"min\": 0, \"max\": 1e302", W061, QNPU_ERR_FORMAT, "'scale'"},
        {"\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"True\", \"scale\": 1e-50, \"offset\": 0, "
         "\"min\": 0, \"max\": 0", W061, QNPU_ERR_FORMAT, "'scale'"},
        {"{\"bitwidth\": 16, \"dtype\": \"float\"}, {\"bitwidth\": 16, \"dtype\": \"float\"}", L061, QNPU_ERR_FORMAT,
         "alone"},
        {"{\"bitwidth\": 8, \"dtype\": \"float\"}", L061, QNPU_ERR_FORMAT, "16 or 32"},
        {"{" A8 ", \"offset\": 0, \"min\": 0, \"max\": 127.5}, {\"bitwidth\": 4, \"dtype\": \"int\", \"is_symmetric\": "
         "\"False\", \"scale\": 0.5, \"offset\": 0, \"min\": 0, \"max\": 7.5}", L061, QNPU_ERR_FORMAT,
         "'t' entry 1: bitwidth 4"},
        {P4 ", \"scale\": [0.5, 0.25], \"offset\": [-8, -8]", W100, QNPU_OK, NULL},
        {P4 ", \"scale\": [0.5, 0.25], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "'w': 'offset' must be an array"},
        {P4 ", \"scale\": [], \"offset\": []", W100, QNPU_ERR_FORMAT, "'scale' must be a non-empty"},
        {P4 ", \"scale\": 0.5, \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "'scale'"},
        {P4 ", \"scale\": [0.5, \"x\"], \"offset\": [-8, -8]", W100, QNPU_ERR_FORMAT, "'w': scale[1]"},
        {P4 ", \"scale\": [0.5, 0.25], \"offset\": [-8, -16]", W100, QNPU_ERR_FORMAT, "'w': offset[1]"},
        {"\"name\": \"w\", \"enc_type\": \"PER_TENSOR\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5, 0.25], \"offset\": [-8, -8]", W100, QNPU_ERR_FORMAT, "PER_TENSOR with 2"},
        {"\"name\": \"w\", \"enc_type\": \"PER_BLOCK\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-8], \"block_size\": 32", W100, QNPU_ERR_UNSUPPORTED, "PER_BLOCK"},
        {"\"name\": \"w\", \"enc_type\": \"PER_AXIS\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "enc_type 'PER_AXIS'"},
        {"\"name\": \"w\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": \"True\", "
         "\"scale\": [0.5], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "string form is version 0.6.1"},
        {"\"name\": \"w\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"int\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "'dtype'"},
        {"\"name\": \"w\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 1, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-1]", W100, QNPU_ERR_FORMAT, "'bw'"},
        {"\"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "param_encodings[0]: 'name'"},
        {"\"name\": \"\", \"enc_type\": \"PER_CHANNEL\", \"dtype\": \"INT\", \"bw\": 4, \"is_sym\": true, "
         "\"scale\": [0.5], \"offset\": [-8]", W100, QNPU_ERR_FORMAT, "empty"},
        {"{" P4 ", \"scale\": [0.5], \"offset\": [-8]}, {" P4 ", \"scale\": [0.5], \"offset\": [-8]}", L100,
         QNPU_ERR_FORMAT, "'w' has more than one encoding"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *text = cases[i].text;
        char wrapped[1024];
        snprintf(wrapped, sizeof wrapped, "{%s}", text);
        if (cases[i].mode == W061)
            text = v061_with(wrapped);
        else if (cases[i].mode == L061)
            text = v061_with(text);
        else if (cases[i].mode == W100)
            text = v100_with(wrapped);
        else if (cases[i].mode == L100)
            text = v100_with(text);
        qnpu__encodings *e = (qnpu__encodings *)&e; /* must be reset */
        qnpu_status s = qnpu__encodings_parse("bad", text, strlen(text), &e);
        ck_assert_msg(s == cases[i].want, "case %zu: %d, not %d (%s)\n%s", i, s, cases[i].want, qnpu_last_error(),
                      text);
        if (s == QNPU_OK) {
            ck_assert_ptr_nonnull(e);
            qnpu__encodings_free(e);
            continue;
        }
        ck_assert_ptr_null(e);
        ck_assert_msg(strstr(qnpu_last_error(), cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i,
                      qnpu_last_error(), cases[i].msg);
        ck_assert_msg(strncmp(qnpu_last_error(), "bad", 3) == 0, "case %zu: '%s'", i, qnpu_last_error());
    }
    /* a missing file, bad arguments */
    qnpu__encodings *e;
    ck_assert_int_eq(qnpu__encodings_read(qt_tmpfile("no-such.json"), &e), QNPU_ERR_IO);
    ck_assert_int_eq(qnpu__encodings_read(NULL, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encodings_parse("x", "{}", 2, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encodings_compare(NULL, NULL), QNPU_ERR_INVALID_ARG);
}
END_TEST

/* Random corruption of a written file: the reader returns OK, FORMAT or UNSUPPORTED, never
 * anything else, and never crashes (run under ASan by make check-asan). */
START_TEST(test_corruption)
{
    qnpu_qmodel *q = tiny_model(4);
    for (int v = 0; v < 2; v++) {
        size_t len;
        char *t = write_text(q, v ? "1.0.0" : "0.6.1", "corrupt.json", &len);
        char *c = malloc(len);
        uint64_t rng = 12345 + (uint64_t)v;
        for (int it = 0; it < 300; it++) {
            memcpy(c, t, len);
            for (int k = 0; k < 1 + it % 4; k++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t at = (size_t)(rng >> 33) % len;
                static const char set[] = "{}[],:\"-0123456789eE.xtfn \\";
                c[at] = set[(rng >> 20) % (sizeof set - 1)];
            }
            size_t n = it % 5 == 4 ? (size_t)(rng >> 40) % len : len; /* sometimes truncated */
            qnpu__encodings *e = NULL;
            qnpu_status s = qnpu__encodings_parse("fuzz", c, n, &e);
            ck_assert_msg(s == QNPU_OK || s == QNPU_ERR_FORMAT || s == QNPU_ERR_UNSUPPORTED, "status %d: %s", s,
                          qnpu_last_error());
            if (s == QNPU_OK) {
                (void)qnpu__encodings_compare(e, q);
                qnpu__encodings_free(e);
            }
        }
        free(c);
        free(t);
    }
    free_tiny(q);
}
END_TEST

/* ---- write failures -------------------------------------------------------------------------- */

static int no_temporaries(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '\\.tmp\\.'", dir);
    return system(cmd) != 0;
}

START_TEST(test_write_errors)
{
    qnpu_qmodel *q = tiny_model(4);
    const char *path = qt_tmpfile("werr.json");
    ck_assert_int_eq(qnpu__encodings_write(NULL, NULL, path), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, ""), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, qt_tmpfile("no-dir/x.json")), QNPU_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "no-dir/x.json"));
    /* a good file first; failed writes leave it as it was, and no temporary */
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_OK);
    size_t n0, n1;
    char *before = qt_read_file(path, &n0);
    float keep = q->lin[W_COUNT + W_UP].scale[1];
    q->lin[W_COUNT + W_UP].scale[1] = NAN;
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "layer1.up.w channel 1"));
    q->lin[W_COUNT + W_UP].scale[1] = 0.0f;
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_ERR_INVALID_ARG);
    q->lin[W_COUNT + W_UP].scale[1] = keep;
    q->qp[QP_K_CACHE].z = 5; /* symmetric with a zero point */
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "layer0.k.cache"));
    q->qp[QP_K_CACHE].z = 0;
    q->gqp[QP_LOGITS].z = 70000; /* outside 16 bits */
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "logits"));
    q->gqp[QP_LOGITS].z = 0;
    char *after = qt_read_file(path, &n1);
    ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
    ck_assert(no_temporaries(qt_tmpdir()));
    free(before);
    free(after);
    free_tiny(q);
    /* 2-bit weights: only 1.0.0 can say so */
    q = tiny_model(2);
    ck_assert_int_eq(qnpu__encodings_write(q, NULL, path), QNPU_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "layer0.q.w: 2-bit weights need export.encodings_version 1.0.0"));
    qnpu_options *o = version_opts("1.0.0");
    ck_assert_msg(qnpu__encodings_write(q, o, path) == QNPU_OK, "%s", qnpu_last_error());
    qnpu__encodings *e;
    ck_assert_int_eq(qnpu__encodings_read(path, &e), QNPU_OK);
    ck_assert_int_eq(qnpu__encodings_compare(e, q), QNPU_OK);
    ck_assert_int_eq(qnpu__encodings_find(e, 1, "layer1.o.w")->offset[0], -2);
    qnpu__encodings_free(e);
    qnpu_options_free(o);
    /* the option itself */
    qnpu_options *bad;
    ck_assert_int_eq(qnpu_options_create(&bad), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_str(bad, QNPU_P_EXPORT_ENCODINGS_VERSION, "2.0.0"), QNPU_ERR_INVALID_ARG);
    const char *word;
    ck_assert_int_eq(qnpu_options_get_str(bad, QNPU_P_EXPORT_ENCODINGS_VERSION, &word), QNPU_OK);
    ck_assert_str_eq(word, "0.6.1");
    qnpu_options_free(bad);
    free_tiny(q);
}
END_TEST

Suite *qnpu_encodings_suite(void)
{
    Suite *s = suite_create("encodings");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_worked_examples);
    tcase_add_test(tc, test_tiny_text);
    tcase_add_test(tc, test_compare_detects);
    tcase_add_test(tc, test_spec_examples);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_corruption);
    tcase_add_test(tc, test_write_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_add_test(tc, test_stories260K);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
