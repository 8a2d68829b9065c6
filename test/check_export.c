/* check_export.c — the exporter (lib/export/exporter.c, onnx.c; docs/export.md): byte-identical
 * ONNX files, a structural re-read of every graph through protobuf-c (one Q/DQ pair per
 * quantization point named as the model names it, scales and zero points equal to the model's
 * records, weight initializers that decode to the model's integers, int4 nibble order, a graph in
 * topological order with every tensor defined once), the options, bad arguments, and atomic
 * writes (a failed export leaves the previous file). ONNX Runtime itself runs in
 * `make check-interop` (test/interop). */
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

#include "onnx.pb-c.h"

#include "calib/qgraph.h"
#include "export/onnx.h"
#include "rotate/hadamard.h"
#include "testutil.h"

/* ---- a synthetic quantized model --------------------------------------------------------- */

static uint64_t seed_state;

static uint32_t next(void)
{
    seed_state = seed_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(seed_state >> 33);
}

static void make_linear(qnpu__qlinear *ql, int64_t rows, int64_t cols, int bits, int with_bias)
{
    ql->rows = rows, ql->cols = cols, ql->bits = bits;
    ql->q = qnpu__malloc((size_t)(rows * cols));
    ql->scale = qnpu__malloc((size_t)rows * sizeof(float));
    ck_assert(ql->q && ql->scale);
    int lo = -(1 << (bits - 1));
    for (int64_t i = 0; i < rows * cols; i++)
        ql->q[i] = (int8_t)(lo + (int)(next() % (1u << bits)));
    ql->q[0] = (int8_t)lo;
    ql->q[1] = (int8_t)(-lo - 1);
    for (int64_t r = 0; r < rows; r++)
        ql->scale[r] = 0.001f + (float)(next() % 997) * 1e-4f;
    if (with_bias) {
        ql->bias = qnpu__malloc((size_t)rows * sizeof(float));
        ck_assert_ptr_nonnull(ql->bias);
        for (int64_t r = 0; r < rows; r++)
            ql->bias[r] = (float)(next() % 2001) / 1000.0f - 1.0f;
    }
}

static void make_qp(qnpu__qp *r, int i)
{
    static const int8_t bits[] = {8, 16, 4, 0, 16, 8};
    r->bits = bits[i % 6];
    r->sym = (int8_t)(r->bits && next() % 3 == 0);
    r->s = r->bits ? ldexpf(1.0f + (float)(next() % 1000) / 1000.0f, -(int)(next() % 12)) : 0.0f;
    r->z = r->bits && !r->sym ? (int32_t)(next() % (1u << r->bits)) : 0;
}

/* dim 9, ffn 13 (odd counts of int4 weights and zero points), 2 heads over 1 KV head of dim 4,
 * biases on q/k/v, an online R4 (a random orthogonal 13 x 13) on layer 1. */
static qnpu_qmodel *make_model(uint64_t seed)
{
    seed_state = seed;
    qnpu_qmodel *q = qnpu__calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
    snprintf(q->arch, sizeof q->arch, "llama");
    q->dim = 9, q->ffn = 13, q->n_layers = 2, q->n_heads = 2, q->n_kv_heads = 1, q->head_dim = 4;
    q->vocab = 15, q->max_seq = 32, q->rope_theta = 10000.0, q->rms_eps = 1e-5, q->bos = 1, q->eos = 2;
    q->tok_embd = qnpu__malloc((size_t)(q->vocab * q->dim) * sizeof(float));
    ck_assert_ptr_nonnull(q->tok_embd);
    for (int64_t i = 0; i < q->vocab * q->dim; i++)
        q->tok_embd[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
    int64_t qd = q->n_heads * q->head_dim, kvd = q->n_kv_heads * q->head_dim;
    const int64_t rows[W_COUNT] = {qd, kvd, kvd, q->dim, q->ffn, q->ffn, q->dim};
    const int64_t cols[W_COUNT] = {q->dim, q->dim, q->dim, qd, q->dim, q->dim, q->ffn};
    static const int wbits[W_COUNT] = {4, 8, 4, 3, 4, 8, 4};
    q->lin = qnpu__calloc((size_t)(q->n_layers * W_COUNT), sizeof *q->lin);
    ck_assert_ptr_nonnull(q->lin);
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int w = 0; w < W_COUNT; w++)
            make_linear(&q->lin[l * W_COUNT + w], rows[w], cols[w], wbits[(w + l) % W_COUNT], w <= W_V);
    make_linear(&q->head, q->vocab, q->dim, 8, 0);
    q->qp = qnpu__calloc((size_t)(q->n_layers * QP_LAYER_COUNT), sizeof *q->qp);
    ck_assert_ptr_nonnull(q->qp);
    for (int i = 0; i < q->n_layers * QP_LAYER_COUNT; i++)
        make_qp(&q->qp[i], i);
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        make_qp(&q->gqp[k], k + 1);
    q->qp[QP_QKV_IN].bits = 8;   /* layer 0's q/k/v biases go through int32 codes */
    q->qp[QP_QKV_IN].sym = 0;
    q->qp[QP_QKV_IN].z = 100;
    q->qp[QP_QKV_IN].s = 0.02f;
    q->qp[QP_LAYER_COUNT + QP_QKV_IN].bits = 0; /* layer 1's stay float */
    q->r4 = qnpu__calloc((size_t)q->n_layers, sizeof *q->r4);
    ck_assert_ptr_nonnull(q->r4);
    ck_assert_int_eq(qnpu__hadamard_plan(q->ffn, 16, QNPU__HAD_FALLBACK_RANDOM_ORTHOGONAL, seed, 1,
                                         &q->r4[1]), QNPU_OK);
    ck_assert_int_eq(qnpu__qmodel_name_points(q), QNPU_OK);
    return q;
}

static void free_model(qnpu_qmodel *q)
{
    for (int64_t i = 0; i < q->n_names; i++)
        qnpu__free(q->names[i]);
    qnpu__free(q->names);
    q->names = NULL;
    qnpu__qmodel_destroy(q);
}

static qnpu_options *opts_with(const char *flavor, const char *seq_len, const char *linear_as)
{
    const char *kv[8] = {0};
    int n = 0;
    if (flavor)
        kv[n++] = "export.onnx_flavor", kv[n++] = flavor;
    if (seq_len)
        kv[n++] = "export.seq_len", kv[n++] = seq_len;
    if (linear_as)
        kv[n++] = "export.qnn.linear_as", kv[n++] = linear_as;
    return qt_options(kv);
}

/* ---- reading the graph back -------------------------------------------------------------- */

static Onnx__ModelProto *pack_unpack(const qnpu_qmodel *q, const qnpu_options *o, int qdq)
{
    unsigned char *buf;
    size_t len;
    ck_assert_int_eq(qnpu__onnx_pack(q, o, qdq, &buf, &len), QNPU_OK);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    qnpu__free(buf);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(m->graph);
    return m;
}

static const Onnx__TensorProto *init_of(const Onnx__GraphProto *g, const char *name)
{
    const Onnx__TensorProto *t = NULL;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name)) {
            ck_assert_msg(!t, "initializer %s twice", name);
            t = g->initializer[i];
        }
    return t;
}

static const Onnx__NodeProto *producer(const Onnx__GraphProto *g, const char *name, int *count)
{
    const Onnx__NodeProto *p = NULL;
    *count = 0;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t j = 0; j < g->node[i]->n_output; j++)
            if (!strcmp(g->node[i]->output[j], name)) {
                p = g->node[i];
                ++*count;
            }
    return p;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (!strcmp(n->attribute[i]->name, name))
            return n->attribute[i]->i;
    return dflt;
}

/* Element i of an integer tensor of ONNX type dt (4-bit: low nibble first). */
static int32_t elem(const Onnx__TensorProto *t, size_t i)
{
    const uint8_t *b = t->raw_data.data;
    switch (t->data_type) {
    case QNPU__OT_UINT8: return b[i];
    case QNPU__OT_INT8: return (int8_t)b[i];
    case QNPU__OT_UINT16: return (int32_t)(b[2 * i] | b[2 * i + 1] << 8);
    case QNPU__OT_INT16: return (int16_t)(b[2 * i] | b[2 * i + 1] << 8);
    case QNPU__OT_INT32: return (int32_t)((uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                                          (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24);
    case QNPU__OT_UINT4: return (b[i / 2] >> (i % 2 ? 4 : 0)) & 0xF;
    case QNPU__OT_INT4: {
        int v = (b[i / 2] >> (i % 2 ? 4 : 0)) & 0xF;
        return v >= 8 ? v - 16 : v;
    }
    }
    ck_abort_msg("type %d is not an integer type", t->data_type);
    return 0;
}

static size_t elems(const Onnx__TensorProto *t)
{
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++)
        n *= (size_t)t->dims[i];
    return n;
}

static float f32_at(const Onnx__TensorProto *t, size_t i)
{
    ck_assert_int_eq(t->data_type, QNPU__OT_FLOAT);
    ck_assert_uint_ge(t->raw_data.len, (i + 1) * 4);
    float f;
    memcpy(&f, t->raw_data.data + 4 * i, 4);
    return f;
}

static int expected_type(int bits, int sym)
{
    return bits == 4 ? (sym ? QNPU__OT_INT4 : QNPU__OT_UINT4)
         : bits == 8 ? (sym ? QNPU__OT_INT8 : QNPU__OT_UINT8)
                     : (sym ? QNPU__OT_INT16 : QNPU__OT_UINT16);
}

/* Topological order and single definition: every node input is a graph input, an initializer
 * or the output of an earlier node; no tensor is defined twice. */
static void check_wellformed(const Onnx__GraphProto *g)
{
    size_t cap = g->n_node + g->n_initializer + g->n_input, n = 0;
    const char **def = malloc(cap * sizeof *def);
    ck_assert_ptr_nonnull(def);
#define DEFINED(nm, found) do { found = 0; for (size_t k_ = 0; k_ < n; k_++) if (!strcmp(def[k_], nm)) { found = 1; break; } } while (0)
    int f;
    for (size_t i = 0; i < g->n_input; i++)
        def[n++] = g->input[i]->name;
    for (size_t i = 0; i < g->n_initializer; i++) {
        DEFINED(g->initializer[i]->name, f);
        ck_assert_msg(!f, "%s defined twice", g->initializer[i]->name);
        def[n++] = g->initializer[i]->name;
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        for (size_t j = 0; j < nd->n_input; j++) {
            DEFINED(nd->input[j], f);
            ck_assert_msg(f, "%s (%s) reads %s before it is defined", nd->name, nd->op_type, nd->input[j]);
        }
        ck_assert_uint_eq(nd->n_output, 1);
        DEFINED(nd->output[0], f);
        ck_assert_msg(!f, "%s defined twice", nd->output[0]);
        def[n++] = nd->output[0];
    }
    for (size_t i = 0; i < g->n_output; i++) {
        DEFINED(g->output[i]->name, f);
        ck_assert_msg(f, "graph output %s is not defined", g->output[i]->name);
    }
#undef DEFINED
    free(def);
}

/* The QP records in qnpu_qmodel_qp_info order, resolved to the model's structs. */
static const qnpu__qp *record(const qnpu_qmodel *q, const char *name)
{
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int k = 0; k < QP_LAYER_COUNT; k++) {
            char buf[96];
            snprintf(buf, sizeof buf, "layer%lld.%s", (long long)l, qnpu__qp_layer_name(k));
            if (!strcmp(buf, name))
                return &q->qp[l * QP_LAYER_COUNT + k];
        }
    for (int k = 0; k < QP_GLOBAL_COUNT; k++)
        if (!strcmp(qnpu__qp_global_name(k), name))
            return &q->gqp[k];
    return NULL;
}

static const qnpu__qlinear *weight_of(const qnpu_qmodel *q, const char *name)
{
    if (!strcmp(name, "lm_head.w"))
        return &q->head;
    for (int64_t l = 0; l < q->n_layers; l++)
        for (int w = 0; w < W_COUNT; w++) {
            char buf[96];
            snprintf(buf, sizeof buf, "layer%lld.%s", (long long)l, qnpu__weight_name(w));
            if (!strcmp(buf, name))
                return &q->lin[l * W_COUNT + w];
        }
    return NULL;
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(test_deterministic)
{
    qnpu_qmodel *q = make_model(7);
    static const char *const flavors[2] = {"standard", "compat"};
    for (int v = 0; v < 3; v++) {
        qnpu_options *o = opts_with(v < 2 ? flavors[v] : NULL, "5", NULL);
        unsigned char *a, *b;
        size_t na, nb;
        ck_assert_int_eq(qnpu__onnx_pack(q, o, v < 2, &a, &na), QNPU_OK);
        ck_assert_int_eq(qnpu__onnx_pack(q, o, v < 2, &b, &nb), QNPU_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert_int_eq(memcmp(a, b, na), 0);
        /* the file is the packed model */
        qnpu_exporter *e;
        ck_assert_int_eq(qnpu_exporter_create(q, o, &e), QNPU_OK);
        const char *path = qt_tmpfile(v == 0 ? "det0.onnx" : v == 1 ? "det1.onnx" : "det2.onnx");
        ck_assert_int_eq(qnpu_exporter_write(e, v < 2 ? QNPU_EXPORT_ONNX_QDQ : QNPU_EXPORT_ONNX_FLOAT, path),
                         QNPU_OK);
        size_t nf;
        unsigned char *f = qt_read_file(path, &nf);
        ck_assert_uint_eq(nf, na);
        ck_assert_int_eq(memcmp(f, a, na), 0);
        free(f);
        qnpu_exporter_free(e);
        qnpu__free(a);
        qnpu__free(b);
        qnpu_options_free(o);
    }
    free_model(q);
}
END_TEST

/* Every point of the QDQ graph (flavour _i: standard, compat). */
START_TEST(test_qdq_structure)
{
    int compat = _i;
    qnpu_qmodel *q = make_model(11 + (uint64_t)_i);
    qnpu_options *o = opts_with(compat ? "compat" : "standard", "6", NULL);
    Onnx__ModelProto *m = pack_unpack(q, o, 1);
    const Onnx__GraphProto *g = m->graph;
    ck_assert_int_eq(m->ir_version, compat ? 8 : 10);
    ck_assert_uint_eq(m->n_opset_import, compat ? 2 : 1);
    ck_assert_str_eq(m->opset_import[0]->domain, "");
    ck_assert_int_eq(m->opset_import[0]->version, compat ? 17 : 21);
    if (compat) {
        ck_assert_str_eq(m->opset_import[1]->domain, "com.microsoft");
        ck_assert_int_eq(m->opset_import[1]->version, 1);
    }
    check_wellformed(g);
    ck_assert_uint_eq(m->n_metadata_props, 4);
    ck_assert_str_eq(m->metadata_props[0]->key, "quantnpu.graph");
    ck_assert_str_eq(m->metadata_props[0]->value, compat ? "qdq-compat" : "qdq-standard");
    ck_assert_str_eq(m->metadata_props[1]->value, "6");
    ck_assert_str_eq(m->metadata_props[2]->value, "0");
    ck_assert_uint_eq(g->n_input, 1);
    ck_assert_str_eq(g->input[0]->name, "input_ids");
    ck_assert_int_eq(g->input[0]->type->tensor_type->elem_type, QNPU__OT_INT64);
    ck_assert_int_eq(g->input[0]->type->tensor_type->shape->dim[1]->dim_value, 6);
    ck_assert_str_eq(g->output[0]->name, "logits");
    ck_assert_uint_eq(g->n_output, 1 + 2 * (size_t)q->n_layers);

    int n_quant = 0, n_q_nodes = 0, c;
    for (size_t i = 0; i < g->n_node; i++)
        n_q_nodes += !strcmp(g->node[i]->op_type, "QuantizeLinear");
    for (int64_t i = 0; i < qnpu_qmodel_qp_count(q); i++) {
        const char *name;
        int bits, sym;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q, i, &name, &bits, &sym, NULL, NULL), QNPU_OK);
        char buf[128];
        const qnpu__qp *r = record(q, name);
        const qnpu__qlinear *ql = weight_of(q, name);
        ck_assert_msg(r || ql, "%s is neither a point nor a weight", name);
        const Onnx__NodeProto *p = producer(g, name, &c);
        ck_assert_msg(c == 1, "%s is produced %d times", name, c);
        if (r && !r->bits) {
            ck_assert_str_ne(p->op_type, "DequantizeLinear");
            continue;
        }
        /* ... -> Q -> NAME.q -> DQ -> NAME, both reading NAME.scale and NAME.zero_point */
        ck_assert_str_eq(p->op_type, "DequantizeLinear");
        snprintf(buf, sizeof buf, "%s.q", name);
        ck_assert_str_eq(p->input[0], buf);
        snprintf(buf, sizeof buf, "%s.scale", name);
        ck_assert_str_eq(p->input[1], buf);
        const Onnx__TensorProto *sc = init_of(g, buf);
        snprintf(buf, sizeof buf, "%s.zero_point", name);
        ck_assert_str_eq(p->input[2], buf);
        const Onnx__TensorProto *zp = init_of(g, buf);
        ck_assert(sc && zp);
        int t = r ? expected_type(r->bits, r->sym) : ql->bits <= 4 ? QNPU__OT_INT4 : QNPU__OT_INT8;
        ck_assert_int_eq(zp->data_type, t);
        int wide = t == QNPU__OT_UINT16 || t == QNPU__OT_INT16 || t == QNPU__OT_UINT4 || t == QNPU__OT_INT4;
        ck_assert_str_eq(p->domain ? p->domain : "", compat && wide ? "com.microsoft" : "");
        if (r) {
            n_quant++;
            ck_assert_uint_eq(sc->n_dims, 0);
            ck_assert_uint_eq(zp->n_dims, 0);
            ck_assert_msg(f32_at(sc, 0) == r->s, "%s: scale %g, record %g", name, f32_at(sc, 0), r->s);
            ck_assert_int_eq(elem(zp, 0), r->z);
            snprintf(buf, sizeof buf, "%s.q", name);
            const Onnx__NodeProto *qn = producer(g, buf, &c);
            ck_assert_int_eq(c, 1);
            ck_assert_str_eq(qn->op_type, "QuantizeLinear");
            ck_assert_str_eq(qn->input[1], p->input[1]);
            ck_assert_str_eq(qn->input[2], p->input[2]);
            ck_assert_str_eq(qn->domain ? qn->domain : "", compat && wide ? "com.microsoft" : "");
        } else {
            /* B = q^T [in, out], per output channel along axis 1, zero points 0 */
            ck_assert_int_eq(attr_int(p, "axis", 1), 1);
            snprintf(buf, sizeof buf, "%s.q", name);
            const Onnx__TensorProto *w = init_of(g, buf);
            ck_assert_ptr_nonnull(w);
            ck_assert_int_eq(w->data_type, t);
            ck_assert_uint_eq(w->n_dims, 2);
            ck_assert_int_eq(w->dims[0], ql->cols);
            ck_assert_int_eq(w->dims[1], ql->rows);
            size_t n = (size_t)(ql->rows * ql->cols);
            ck_assert_uint_eq(w->raw_data.len, t == QNPU__OT_INT4 ? (n + 1) / 2 : n);
            for (int64_t rr = 0; rr < ql->rows; rr++)
                for (int64_t cc = 0; cc < ql->cols; cc++)
                    ck_assert_int_eq(elem(w, (size_t)(cc * ql->rows + rr)), ql->q[rr * ql->cols + cc]);
            ck_assert_uint_eq(elems(sc), (size_t)ql->rows);
            ck_assert_uint_eq(elems(zp), (size_t)ql->rows);
            for (int64_t rr = 0; rr < ql->rows; rr++) {
                ck_assert(f32_at(sc, (size_t)rr) == ql->scale[rr]);
                ck_assert_int_eq(elem(zp, (size_t)rr), 0);
            }
        }
    }
    ck_assert_int_eq(n_q_nodes, n_quant); /* one pair per point, shared by all consumers */
    /* the shared inputs: q, k and v read the one tensor layer0.qkv.in */
    int readers = 0;
    for (size_t i = 0; i < g->n_node; i++)
        readers += !strcmp(g->node[i]->op_type, "MatMul") && !strcmp(g->node[i]->input[0], "layer0.qkv.in");
    ck_assert_int_eq(readers, 3);
    /* layer 0's biases: int32 rne(b / (s_x s_w)) -> DQ(s_x s_w); layer 1's (input not quantized) float */
    const Onnx__TensorProto *bq = init_of(g, "layer0.k.b.q"), *bs = init_of(g, "layer0.k.b.scale");
    ck_assert(bq && bs);
    ck_assert_int_eq(bq->data_type, QNPU__OT_INT32);
    const qnpu__qlinear *k0 = &q->lin[W_K];
    for (int64_t rr = 0; rr < k0->rows; rr++) {
        float s = q->qp[QP_QKV_IN].s * k0->scale[rr];
        ck_assert(f32_at(bs, (size_t)rr) == s);
        ck_assert_int_eq(elem(bq, (size_t)rr), (int32_t)rint((double)k0->bias[rr] / (double)s));
    }
    const Onnx__TensorProto *b1 = init_of(g, "layer1.k.b");
    ck_assert(b1 && b1->data_type == QNPU__OT_FLOAT && f32_at(b1, 1) == q->lin[W_COUNT + W_K].bias[1]);
    /* the online R4 of layer 1 is a dense MatMul into down.in, layer 0 has none */
    ck_assert_ptr_nonnull(init_of(g, "layer1/r4"));
    ck_assert_ptr_null(init_of(g, "layer0/r4"));
    onnx__model_proto__free_unpacked(m, NULL);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

/* export.past_len = P: K/V inputs per layer, attention over P + T keys, the mask and RoPE tables
 * of positions P .. P+T-1. */
START_TEST(test_past_kv)
{
    qnpu_qmodel *q = make_model(17);
    static const char *const kv[] = {"export.seq_len", "2", "export.past_len", "3", NULL};
    qnpu_options *o = qt_options(kv);
    Onnx__ModelProto *m = pack_unpack(q, o, _i);
    const Onnx__GraphProto *g = m->graph;
    check_wellformed(g);
    ck_assert_uint_eq(g->n_input, 1 + 2 * (size_t)q->n_layers);
    ck_assert_str_eq(g->input[1]->name, "layer0.k.past");
    ck_assert_str_eq(g->input[2]->name, "layer0.v.past");
    const Onnx__TensorShapeProto *sh = g->input[1]->type->tensor_type->shape;
    ck_assert_uint_eq(sh->n_dim, 4);
    ck_assert_int_eq(sh->dim[1]->dim_value, 3);
    ck_assert_int_eq(sh->dim[2]->dim_value, q->n_kv_heads);
    ck_assert_int_eq(sh->dim[3]->dim_value, q->head_dim);
    int c;
    const Onnx__NodeProto *k = producer(g, "layer1.attn/k_all", &c);
    ck_assert_int_eq(c, 1);
    ck_assert_str_eq(k->op_type, "Concat");
    ck_assert_str_eq(k->input[0], "layer1.k.past");
    ck_assert_str_eq(k->input[1], "layer1.k.cache");
    const Onnx__TensorProto *mask = init_of(g, "const/causal_mask");
    ck_assert_int_eq(mask->dims[0], 2);
    ck_assert_int_eq(mask->dims[1], 5);
    static const unsigned char want[10] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
    ck_assert_int_eq(memcmp(mask->raw_data.data, want, 10), 0);
    /* rope.cos rows are positions 3 and 4: cos(p * theta^0) in column 0 */
    const Onnx__TensorProto *cs = init_of(g, _i && q->gqp[QP_ROPE_COS].bits ? "rope.cos.pre" : "rope.cos");
    ck_assert_ptr_nonnull(cs);
    ck_assert_float_eq_tol(f32_at(cs, 0), (float)cos(3.0), 1e-6f);
    ck_assert_float_eq_tol(f32_at(cs, (size_t)q->head_dim), (float)cos(4.0), 1e-6f);
    onnx__model_proto__free_unpacked(m, NULL);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

START_TEST(test_int4_packing)
{
    qnpu_qmodel *q = make_model(3);
    /* layer 0's gate (13 x 9, 4-bit): known codes, 117 elements, an odd count */
    qnpu__qlinear *g0 = &q->lin[W_GATE];
    ck_assert_int_eq(g0->bits, 4);
    for (int64_t i = 0; i < g0->rows * g0->cols; i++)
        g0->q[i] = 0;
    g0->q[0 * 9 + 0] = -8;  /* B[0][0] */
    g0->q[1 * 9 + 0] = 7;   /* B[0][1] */
    g0->q[12 * 9 + 8] = -1; /* B[8][12], the last element, index 116 */
    Onnx__ModelProto *m = pack_unpack(q, NULL, 1);
    const Onnx__TensorProto *w = init_of(m->graph, "layer0.gate.w.q");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->raw_data.len, 59);
    ck_assert_uint_eq(w->raw_data.data[0], 0x78);  /* element 0 (-8) low, element 1 (7) high */
    ck_assert_uint_eq(w->raw_data.data[58], 0x0F); /* element 116 (-1) low, padding nibble 0 */
    for (size_t i = 1; i < 58; i++)
        ck_assert_uint_eq(w->raw_data.data[i], 0);
    const Onnx__TensorProto *zp = init_of(m->graph, "layer0.gate.w.zero_point");
    ck_assert_uint_eq(zp->raw_data.len, 7); /* 13 zeros */
    onnx__model_proto__free_unpacked(m, NULL);
    free_model(q);
}
END_TEST

/* The float graph: the same names, no Q/DQ, dequantized weights as 1x1 Conv or Gemm. */
START_TEST(test_float_graph)
{
    int gemm = _i;
    qnpu_qmodel *q = make_model(5);
    qnpu_options *o = opts_with("compat", "4", gemm ? "gemm" : "conv1x1");
    Onnx__ModelProto *m = pack_unpack(q, o, 0);
    const Onnx__GraphProto *g = m->graph;
    ck_assert_int_eq(m->ir_version, 8);
    ck_assert_uint_eq(m->n_opset_import, 1);
    ck_assert_int_eq(m->opset_import[0]->version, 17);
    check_wellformed(g);
    int convs = 0, c;
    for (size_t i = 0; i < g->n_node; i++) {
        ck_assert_str_ne(g->node[i]->op_type, "QuantizeLinear");
        ck_assert_str_ne(g->node[i]->op_type, "DequantizeLinear");
        convs += !strcmp(g->node[i]->op_type, gemm ? "Gemm" : "Conv");
    }
    ck_assert_int_eq(convs, (int)(q->n_layers * W_COUNT + 1));
    for (int64_t i = 0; i < qnpu_qmodel_qp_count(q); i++) {
        const char *name;
        ck_assert_int_eq(qnpu_qmodel_qp_info(q, i, &name, NULL, NULL, NULL, NULL), QNPU_OK);
        const qnpu__qlinear *ql = weight_of(q, name);
        const Onnx__TensorProto *t = init_of(g, name);
        producer(g, name, &c);
        ck_assert_msg(c + (t != NULL) == 1, "%s defined %d times", name, c + (t != NULL));
        if (!ql)
            continue;
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->n_dims, gemm ? 2 : 4);
        ck_assert_int_eq(t->dims[0], ql->rows);
        ck_assert_int_eq(t->dims[1], ql->cols);
        for (int64_t k = 0; k < ql->rows * ql->cols; k++)
            ck_assert(f32_at(t, (size_t)k) == (float)ql->q[k] * ql->scale[k / ql->cols]);
    }
    onnx__model_proto__free_unpacked(m, NULL);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

START_TEST(test_bad_args)
{
    qnpu_qmodel *q = make_model(9);
    qnpu_exporter *e = (qnpu_exporter *)&e;
    ck_assert_int_eq(qnpu_exporter_create(NULL, NULL, &e), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(qnpu_exporter_create(q, NULL, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_exporter_write(NULL, QNPU_EXPORT_ONNX_QDQ, "x.onnx"), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_exporter_create(q, NULL, &e), QNPU_OK);
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, ""), QNPU_ERR_INVALID_ARG);
    const char *path = qt_tmpfile("bad_fmt.onnx");
    ck_assert_int_eq(qnpu_exporter_write(e, (qnpu_export_format)9, path), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "format 9"));
    ck_assert_int_eq(access(path, F_OK), -1);
    /* a point ONNX Q/DQ cannot express: UNSUPPORTED, naming it; nothing written */
    q->qp[QP_LAYER_COUNT + QP_QK].bits = 12;
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, path), QNPU_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(qnpu_last_error(), "layer1.qk") && strstr(qnpu_last_error(), "12 bits"), "%s",
                  qnpu_last_error());
    ck_assert_int_eq(access(path, F_OK), -1);
    /* ... the float graph has no Q/DQ and is fine */
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_FLOAT, path), QNPU_OK);
    /* a model over the 2 GB protobuf limit is refused before anything is built (only the
     * dimensions are read: a 2^20 x 2^10 float embedding is 4 GB) */
    int64_t vocab = q->vocab;
    q->vocab = (int64_t)1 << 20;
    q->dim = 1024;
    const char *big = qt_tmpfile("big.onnx");
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, big), QNPU_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(qnpu_last_error(), "2 GB") != NULL, "%s", qnpu_last_error());
    ck_assert_int_eq(access(big, F_OK), -1);
    q->vocab = vocab;
    q->dim = 9;
    qnpu_exporter_free(e);
    qnpu_exporter_free(NULL);
    /* options out of range are refused where they are set */
    qnpu_options *o;
    qnpu_param p;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_param_from_name("export.seq_len", &p), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, p, 0), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_param_from_name("export.onnx_flavor", &p), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_str(o, p, "newest"), QNPU_ERR_INVALID_ARG);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

static int tmp_count(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strstr(de->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

START_TEST(test_atomic)
{
    qnpu_qmodel *q = make_model(21);
    const char *dir = qt_tmpfile("export_atomic");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    qnpu_options *o = opts_with(NULL, "8", NULL);
    qnpu_exporter *e;
    ck_assert_int_eq(qnpu_exporter_create(q, o, &e), QNPU_OK);
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, path), QNPU_OK);
    size_t n_prev;
    unsigned char *prev = qt_read_file(path, &n_prev);
    ck_assert_uint_gt(n_prev, 4096);

    /* a missing directory: QNPU_ERR_IO naming the path */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no_such_dir/m.onnx", dir);
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_FLOAT, bad), QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), bad) != NULL, "%s", qnpu_last_error());

    /* a model the QDQ graph cannot take: refused, the previous file is untouched */
    q->gqp[QP_LOGITS].bits = 6;
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_ONNX_QDQ, path), QNPU_ERR_UNSUPPORTED);
    q->gqp[QP_LOGITS].bits = 16;
    size_t n_now;
    unsigned char *now = qt_read_file(path, &n_now);
    ck_assert_uint_eq(n_now, n_prev);
    ck_assert_int_eq(memcmp(now, prev, n_prev), 0);
    free(now);
    ck_assert_int_eq(tmp_count(dir), 0);

    /* a write that fails midway (EFBIG under a 2 KiB file size limit): the previous file survives */
    struct rlimit old, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 2048;
    void (*h)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    qnpu_status s = qnpu_exporter_write(e, QNPU_EXPORT_ONNX_FLOAT, path);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, h);
    ck_assert_int_eq(s, QNPU_ERR_IO);
    ck_assert_msg(strstr(qnpu_last_error(), strerror(EFBIG)) != NULL, "%s", qnpu_last_error());
    now = qt_read_file(path, &n_now);
    ck_assert_uint_eq(n_now, n_prev);
    ck_assert_int_eq(memcmp(now, prev, n_prev), 0);
    ck_assert_int_eq(tmp_count(dir), 0);
    free(now);
    free(prev);
    qnpu_exporter_free(e);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

/* Allocation failures anywhere in the export: QNPU_ERR_NO_MEMORY, nothing leaked, the previous
 * file intact and no temporary left; the allocations are failed one by one, then at growing
 * strides, until the export succeeds. */
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
    int qdq = _i;
    const char *dir = qt_tmpfile(qdq ? "export_alloc_qdq" : "export_alloc_float");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    qt_write_file(path, "previous", 8);
    ck_assert_int_eq(qnpu_set_allocator(t_alloc, t_free, NULL), QNPU_OK);
    qnpu_qmodel *q = make_model(41);
    int done = 0;
    long tries = 0;
    for (long k = 0; !done; k += k < 64 ? 1 : k / 32) {
        alloc_calls = 0, alloc_fail_at = k;
        long live = alloc_live;
        qnpu_status s = qnpu__onnx_write(q, NULL, qdq, path);
        alloc_fail_at = -1;
        ck_assert_int_eq(alloc_live, live);
        tries++;
        if (s == QNPU_OK) {
            done = 1;
            break;
        }
        ck_assert_msg(s == QNPU_ERR_NO_MEMORY, "k %ld: %d %s", k, (int)s, qnpu_last_error());
        size_t n;
        char *b = qt_read_file(path, &n);
        ck_assert(n == 8 && !memcmp(b, "previous", 8));
        free(b);
        ck_assert_int_eq(tmp_count(dir), 0);
    }
    ck_assert_int_gt(tries, 64);
    free_model(q);
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_OK);
}
END_TEST

/* The other formats go through the same call: .qnpu is qnpu_qmodel_save's bytes, the encodings
 * a JSON object. */
START_TEST(test_other_formats)
{
    qnpu_qmodel *q = make_model(33);
    qnpu_exporter *e;
    static const char *const kv[] = {"export.encodings_version", "1.0.0", NULL}; /* 3-bit weights */
    qnpu_options *o = qt_options(kv);
    ck_assert_int_eq(qnpu_exporter_create(q, o, &e), QNPU_OK);
    qnpu_options_free(o); /* the exporter holds its own copy */
    const char *a = qt_tmpfile("exp_a.qnpu"), *b = qt_tmpfile("exp_b.qnpu");
    ck_assert_int_eq(qnpu_exporter_write(e, QNPU_EXPORT_QNPU, a), QNPU_OK);
    ck_assert_int_eq(qnpu_qmodel_save(q, b), QNPU_OK);
    size_t na, nb;
    unsigned char *da = qt_read_file(a, &na), *db = qt_read_file(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(da, db, na), 0);
    free(da);
    free(db);
    const char *j = qt_tmpfile("exp.encodings");
    qnpu_status st = qnpu_exporter_write(e, QNPU_EXPORT_ENCODINGS, j);
    ck_assert_msg(st == QNPU_OK, "%s", qnpu_last_error());
    size_t nj;
    char *dj = qt_read_file(j, &nj);
    ck_assert_uint_gt(nj, 2);
    ck_assert_int_eq(dj[0], '{');
    ck_assert_ptr_nonnull(strstr(dj, "\"layer0.qkv.in\""));
    free(dj);
    qnpu_exporter_free(e);
    free_model(q);
}
END_TEST

/* Debian's onnx checker (python3-onnx 1.12, full_check) accepts the compat and float graphs of
 * the synthetic model: 4-, 8- and 16-bit points of both schemes, int32 biases, GQA, an R4. Skipped
 * without /usr/bin/python3 and its onnx module. */
START_TEST(test_onnx_checker)
{
    if (system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") != 0)
        return;
    qnpu_qmodel *q = make_model(13);
    qnpu_options *o = opts_with("compat", "6", NULL);
    const char *a = qt_tmpfile("checker-compat.onnx"), *b = qt_tmpfile("checker-float.onnx");
    ck_assert_int_eq(qnpu__onnx_write(q, o, 1, a), QNPU_OK);
    ck_assert_int_eq(qnpu__onnx_write(q, o, 0, b), QNPU_OK);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import onnx, sys\n"
             "for f in sys.argv[1:]: onnx.checker.check_model(onnx.load(f), full_check=True)' '%s' '%s'", a, b);
    ck_assert_int_eq(system(cmd), 0);
    qnpu_options_free(o);
    free_model(q);
}
END_TEST

Suite *qnpu_export_suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("onnx");
    tcase_add_test(tc, test_deterministic);
    tcase_add_loop_test(tc, test_qdq_structure, 0, 2);
    tcase_add_test(tc, test_int4_packing);
    tcase_add_loop_test(tc, test_past_kv, 0, 2);
    tcase_add_loop_test(tc, test_float_graph, 0, 2);
    tcase_add_test(tc, test_onnx_checker);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("write");
    tcase_add_test(tc, test_bad_args);
    tcase_add_test(tc, test_atomic);
    tcase_add_loop_test(tc, test_alloc_failures, 0, 2);
    tcase_add_test(tc, test_other_formats);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
