/* onnx.c — the quantized model as an ONNX graph (FORMATS.md §1.4 and §2; docs/export.md).
 *
 * The graph computes what the simulated NPU graph (lib/calib/simgraph.c) computes: T =
 * export.seq_len tokens at positions P .. P+T-1 (P = export.past_len, 0: a prefill from an empty
 * cache), input_ids int64 [1, T] -> logits float [1, T, vocab], plus every layer's K and V of the
 * new tokens as cached ([1, T, kv_heads, head_dim], outputs "layerN.k.cache" / "layerN.v.cache").
 * With P > 0 the earlier positions' K and V are inputs "layerN.k.past" / "layerN.v.past"
 * [1, P, kv_heads, head_dim] (the dequantized cache: the k/v.cache outputs of the graphs that ran
 * them, concatenated), attention runs over all P + T keys (qk.rowmin too), and the causal mask
 * hides key j from query t when j > P + t. Shapes are static: one graph per (T, P).
 *
 * Tensor names. Every QP of METHOD.md §3 is the tensor its consumers read, named exactly as the
 * quantized model names it ("layer3.qk.masked", "rope.cos", "logits"); weights likewise
 * ("layer3.down.w", "lm_head.w"). In the QDQ graph a QP NAME is produced as
 *     NAME.pre -> QuantizeLinear(NAME.scale, NAME.zero_point) -> NAME.q -> DequantizeLinear -> NAME
 * and a weight as the integer initializer NAME.q -> DequantizeLinear(NAME.scale, NAME.zero_point,
 * per output channel) -> NAME. In the float graph the producer writes NAME directly and weights
 * are float initializers NAME holding the dequantized integers. A QP at 0 bits is a plain
 * tensor. Tensors that are not QPs (reshapes, the RMSNorm steps, ...) carry a '/' in their name.
 *
 * The file is built as protobuf-c messages (generated at build time from Debian's onnx.proto, the
 * ONNX 1.12 schema) in an arena, then packed in field order: the same model and options give the
 * same bytes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"

#include "../float/ops.h"
#include "../rotate/hadamard.h"
#include "onnx.h"

#define MS_DOMAIN "com.microsoft"

/* Float and integer initializers are copied as host bytes into raw_data, which is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lib/export/onnx.c writes raw_data in host byte order and needs a little-endian host"
#endif

typedef struct ox {
    const qnpu_qmodel *q;
    int qdq;          /* 1: Q/DQ graph; 0: float graph */
    int compat;       /* QDQ: 16-/4-bit Q/DQ in com.microsoft, opset 17 */
    int opset;        /* of the default domain */
    int gemm;         /* float graph: linears as Gemm (else 1x1 Conv) */
    int64_t T;        /* new tokens */
    int64_t P;        /* past positions (export.past_len): K/V inputs, positions P .. P+T-1 */
    qnpu_status st;   /* first failure */
    void **mem;       /* arena: every allocation, freed together */
    size_t n_mem, cap_mem;
    Onnx__NodeProto **node;
    size_t n_node, cap_node;
    Onnx__TensorProto **init;
    size_t n_init, cap_init;
    Onnx__ValueInfoProto **out;
    size_t n_out, cap_out;
    Onnx__ValueInfoProto **in;
    size_t n_in, cap_in;
} ox;

/* ---- arena and growable arrays ---------------------------------------------------------- */

static int grow(ox *x, void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **a = qnpu__realloc(*arr, *cap * sizeof *a, nc * sizeof *a);
        if (!a) {
            if (x->st == QNPU_OK)
                x->st = qnpu__fail(QNPU_ERR_NO_MEMORY, "ONNX export: out of memory");
            return 0;
        }
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 1;
}

static void *ox_alloc(ox *x, size_t n)
{
    if (x->st != QNPU_OK)
        return NULL;
    void *p = qnpu__calloc(1, n ? n : 1);
    if (!p) {
        x->st = qnpu__fail(QNPU_ERR_NO_MEMORY, "ONNX export: out of memory (%zu bytes)", n);
        return NULL;
    }
    if (!grow(x, &x->mem, &x->n_mem, &x->cap_mem, p)) {
        qnpu__free(p);
        return NULL;
    }
    return p;
}

static char *ox_str(ox *x, const char *fmt, ...) QNPU__PRINTF(2, 3);
static char *ox_str(ox *x, const char *fmt, ...)
{
    /* after a failure names may be NULL: never format them (every NULL name implies x->st set) */
    if (x->st != QNPU_OK)
        return NULL;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        if (x->st == QNPU_OK)
            x->st = qnpu__fail(QNPU_ERR_INVALID_ARG, "ONNX export: tensor name too long");
        return NULL;
    }
    char *s = ox_alloc(x, (size_t)n + 1);
    if (s)
        memcpy(s, buf, (size_t)n + 1);
    return s;
}

static void ox_free(ox *x)
{
    for (size_t i = 0; i < x->n_mem; i++)
        qnpu__free(x->mem[i]);
    qnpu__free(x->mem);
    qnpu__free(x->node);
    qnpu__free(x->init);
    qnpu__free(x->out);
    qnpu__free(x->in);
}

/* ---- initializers ----------------------------------------------------------------------- */

/* Add initializer `name` of type dt and shape dims[nd]; raw (nbytes, little-endian) must live in
 * the arena (or outlive the packing). */
static void init_raw(ox *x, const char *name, int dt, const int64_t *dims, int nd, void *raw, size_t nbytes)
{
    Onnx__TensorProto *t = ox_alloc(x, sizeof *t);
    int64_t *d = ox_alloc(x, (size_t)(nd ? nd : 1) * sizeof *d);
    char *nm = ox_str(x, "%s", name);
    if (!t || !d || !nm)
        return;
    onnx__tensor_proto__init(t);
    if (nd) /* a scalar passes dims = NULL; memcpy from NULL is undefined even for 0 bytes */
        memcpy(d, dims, (size_t)nd * sizeof *d);
    t->n_dims = (size_t)nd;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dt;
    t->name = nm;
    t->has_raw_data = 1;
    t->raw_data.len = nbytes;
    t->raw_data.data = raw;
    grow(x, (void ***)&x->init, &x->n_init, &x->cap_init, t);
}

static void init_copy(ox *x, const char *name, int dt, const int64_t *dims, int nd, const void *src,
                      size_t nbytes)
{
    void *raw = ox_alloc(x, nbytes);
    if (raw) {
        memcpy(raw, src, nbytes);
        init_raw(x, name, dt, dims, nd, raw, nbytes);
    }
}

static int has_init(const ox *x, const char *name)
{
    for (size_t i = x->n_init; i-- > 0;)
        if (!strcmp(x->init[i]->name, name))
            return 1;
    return 0;
}

static void init_f32(ox *x, const char *name, float v)
{
    init_copy(x, name, QNPU__OT_FLOAT, NULL, 0, &v, sizeof v);
}

/* A 1-D int64 constant (shapes, Slice bounds, axes), added once under a name made from its
 * values. */
static const char *i64s(ox *x, const char *what, int n, const int64_t *v)
{
    char buf[200];
    int len = snprintf(buf, sizeof buf, "const/%s", what);
    for (int i = 0; i < n && len > 0 && (size_t)len < sizeof buf; i++)
        len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%lld", i ? "_" : ":", (long long)v[i]);
    char *name = ox_str(x, "%s", buf);
    if (name && !has_init(x, name)) {
        int64_t dims[1] = {n};
        init_copy(x, name, QNPU__OT_INT64, dims, 1, v, (size_t)n * sizeof *v);
    }
    return name;
}

static const char *shape(ox *x, int n, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e)
{
    int64_t v[5] = {a, b, c, d, e};
    return i64s(x, "shape", n, v);
}

/* ---- nodes ------------------------------------------------------------------------------ */

static Onnx__NodeProto *node(ox *x, const char *op, const char *domain, int n_in, const char *const *in,
                             const char *out)
{
    Onnx__NodeProto *nd = ox_alloc(x, sizeof *nd);
    char **ins = ox_alloc(x, (size_t)n_in * sizeof *ins);
    char **outs = ox_alloc(x, sizeof *outs);
    if (!nd || !ins || !outs || !out)
        return NULL;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) /* a failed name upstream; x->st is set */
            return NULL;
        ins[i] = (char *)in[i];
    }
    onnx__node_proto__init(nd);
    nd->n_input = (size_t)n_in;
    nd->input = ins;
    outs[0] = (char *)out;
    nd->n_output = 1;
    nd->output = outs;
    nd->op_type = (char *)op;
    nd->name = (char *)out;
    nd->domain = domain ? (char *)domain : NULL;
    if (!grow(x, (void ***)&x->node, &x->n_node, &x->cap_node, nd))
        return NULL;
    return nd;
}

static const char *op1(ox *x, const char *op, const char *a, const char *out)
{
    const char *in[1] = {a};
    node(x, op, NULL, 1, in, out);
    return out;
}

static const char *op2(ox *x, const char *op, const char *a, const char *b, const char *out)
{
    const char *in[2] = {a, b};
    node(x, op, NULL, 2, in, out);
    return out;
}

static Onnx__AttributeProto *attr(ox *x, Onnx__NodeProto *nd, const char *name)
{
    if (!nd)
        return NULL;
    Onnx__AttributeProto *a = ox_alloc(x, sizeof *a);
    Onnx__AttributeProto **arr = ox_alloc(x, (nd->n_attribute + 1) * sizeof *arr);
    if (!a || !arr)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    if (nd->n_attribute) /* the first attribute: nd->attribute is NULL (memcpy from NULL is UB) */
        memcpy(arr, nd->attribute, nd->n_attribute * sizeof *arr);
    arr[nd->n_attribute] = a;
    nd->attribute = arr;
    nd->n_attribute++;
    return a;
}

static void attr_i(ox *x, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(x, nd, name);
    if (a) {
        a->has_type = 1;
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        a->has_i = 1;
        a->i = v;
    }
}

static void attr_ints(ox *x, Onnx__NodeProto *nd, const char *name, int n, const int64_t *v)
{
    Onnx__AttributeProto *a = attr(x, nd, name);
    int64_t *c = ox_alloc(x, (size_t)n * sizeof *c);
    if (a && c) {
        memcpy(c, v, (size_t)n * sizeof *c);
        a->has_type = 1;
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        a->n_ints = (size_t)n;
        a->ints = c;
    }
}

static const char *reshape(ox *x, const char *in, const char *shp, const char *out)
{
    return op2(x, "Reshape", in, shp, out);
}

static const char *transpose(ox *x, const char *in, int64_t a, int64_t b, int64_t c, int64_t d, const char *out)
{
    int64_t perm[4] = {a, b, c, d};
    const char *ins[1] = {in};
    attr_ints(x, node(x, "Transpose", NULL, 1, ins, out), "perm", 4, perm);
    return out;
}

/* ReduceMean / ReduceMin over the last axis, keepdims = 1: axes is an input from opset 18. */
static const char *reduce_last(ox *x, const char *op, const char *in, const char *out)
{
    int64_t m1 = -1;
    if (x->opset >= 18) {
        op2(x, op, in, i64s(x, "axes", 1, &m1), out);
    } else {
        const char *ins[1] = {in};
        attr_ints(x, node(x, op, NULL, 1, ins, out), "axes", 1, &m1);
    }
    return out;
}

/* ---- quantization points ---------------------------------------------------------------- */

static int qp_type(int bits, int sym)
{
    switch (bits) {
    case 4: return sym ? QNPU__OT_INT4 : QNPU__OT_UINT4;
    case 8: return sym ? QNPU__OT_INT8 : QNPU__OT_UINT8;
    case 16: return sym ? QNPU__OT_INT16 : QNPU__OT_UINT16;
    default: return 0;
    }
}

static int wide_type(int t)
{
    return t == QNPU__OT_UINT16 || t == QNPU__OT_INT16 || t == QNPU__OT_UINT4 || t == QNPU__OT_INT4;
}

static const char *qdomain(const ox *x, int t)
{
    return x->compat && wide_type(t) ? MS_DOMAIN : NULL;
}

/* Little-endian bytes of `n` integers of ONNX type t (4-bit: two per byte, element 0 in the low
 * nibble, an odd count's last high nibble 0), into the arena. */
static void *pack_ints(ox *x, int t, const int32_t *v, size_t n, size_t *nbytes)
{
    size_t w = t == QNPU__OT_UINT16 || t == QNPU__OT_INT16 ? 2 : t == QNPU__OT_INT32 ? 4 : 1;
    int nibbles = t == QNPU__OT_UINT4 || t == QNPU__OT_INT4;
    *nbytes = nibbles ? (n + 1) / 2 : n * w;
    unsigned char *b = ox_alloc(x, *nbytes);
    if (!b)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)v[i];
        if (nibbles)
            b[i / 2] |= (unsigned char)((u & 0xFu) << (i % 2 ? 4 : 0));
        else
            for (size_t k = 0; k < w; k++)
                b[i * w + k] = (unsigned char)(u >> (8 * k));
    }
    return b;
}

/* The name a producer of QP `name` writes to. */
static const char *pre(ox *x, const char *name, const qnpu__qp *r)
{
    return x->qdq && r->bits ? ox_str(x, "%s.pre", name) : name;
}

/* QP `name` from tensor src: Q/DQ in the QDQ graph; an Identity where src has another name. */
static const char *point(ox *x, const char *src, const char *name, const qnpu__qp *r)
{
    if (!src || !name)
        return NULL;
    if (!x->qdq || !r->bits) {
        if (strcmp(src, name))
            op1(x, "Identity", src, name);
        return name;
    }
    int t = qp_type(r->bits, r->sym);
    if (!t) {
        if (x->st == QNPU_OK)
            x->st = qnpu__fail(QNPU_ERR_UNSUPPORTED,
                               "ONNX export: point '%s' has %d bits; ONNX Q/DQ takes 4, 8 or 16", name, r->bits);
        return NULL;
    }
    const char *sc = ox_str(x, "%s.scale", name), *zp = ox_str(x, "%s.zero_point", name);
    const char *qn = ox_str(x, "%s.q", name);
    size_t nb;
    void *zb = pack_ints(x, t, &r->z, 1, &nb);
    if (!sc || !zp || !qn || !zb)
        return NULL;
    init_f32(x, sc, r->s);
    init_raw(x, zp, t, NULL, 0, zb, nb);
    const char *qin[3] = {src, sc, zp}, *dqin[3] = {qn, sc, zp};
    node(x, "QuantizeLinear", qdomain(x, t), 3, qin, qn);
    node(x, "DequantizeLinear", qdomain(x, t), 3, dqin, name);
    return name;
}

static const qnpu__qp *LQ(const ox *x, int64_t l, int k) { return &x->q->qp[l * QP_LAYER_COUNT + k]; }

static const char *lname(ox *x, int64_t l, const char *what)
{
    return ox_str(x, "layer%lld.%s", (long long)l, what);
}

/* ---- linears ---------------------------------------------------------------------------- */

/* The input form of a linear: [1,T,k] as is (QDQ, MatMul), [T,k,1,1] (Conv) or [T,k] (Gemm). One
 * per shared input. */
static const char *lin_input(ox *x, const char *in, int64_t k)
{
    if (x->qdq)
        return in;
    if (x->gemm)
        return reshape(x, in, shape(x, 2, x->T, k, 0, 0, 0), ox_str(x, "%s/2d", in));
    return reshape(x, in, shape(x, 4, x->T, k, 1, 1, 0), ox_str(x, "%s/4d", in));
}

/* Weight `name` of ql as the tensor the linear reads (see the file comment). */
static const char *weight(ox *x, const char *name, const qnpu__qlinear *ql)
{
    int64_t R = ql->rows, C = ql->cols;
    size_t n = (size_t)(R * C);
    if (!name)
        return NULL;
    if (!x->qdq) {
        float *w = ox_alloc(x, n * sizeof *w);
        if (!w)
            return NULL;
        for (size_t i = 0; i < n; i++)
            w[i] = (float)ql->q[i] * ql->scale[i / (size_t)C];
        int64_t dims[4] = {R, C, 1, 1};
        init_raw(x, name, QNPU__OT_FLOAT, dims, x->gemm ? 2 : 4, w, n * sizeof *w);
        return name;
    }
    int t = ql->bits <= 4 ? QNPU__OT_INT4 : QNPU__OT_INT8;
    int32_t *codes = qnpu__malloc(n * sizeof *codes);  /* B = q^T: [C][R] */
    int32_t *zeros = qnpu__calloc((size_t)R, sizeof *zeros);
    if (!codes || !zeros) {
        qnpu__free(codes);
        qnpu__free(zeros);
        if (x->st == QNPU_OK)
            x->st = qnpu__fail(QNPU_ERR_NO_MEMORY, "ONNX export: out of memory");
        return NULL;
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            codes[c * R + r] = ql->q[r * C + c];
    size_t nb, zb_n;
    void *b = pack_ints(x, t, codes, n, &nb);
    void *zb = pack_ints(x, t, zeros, (size_t)R, &zb_n);
    qnpu__free(codes);
    qnpu__free(zeros);
    const char *qn = ox_str(x, "%s.q", name), *sc = ox_str(x, "%s.scale", name);
    const char *zp = ox_str(x, "%s.zero_point", name);
    float *s = ox_alloc(x, (size_t)R * sizeof *s);
    if (!b || !zb || !qn || !sc || !zp || !s)
        return NULL;
    memcpy(s, ql->scale, (size_t)R * sizeof *s);
    int64_t dims[2] = {C, R};
    init_raw(x, qn, t, dims, 2, b, nb);
    init_raw(x, sc, QNPU__OT_FLOAT, &R, 1, s, (size_t)R * sizeof *s);
    init_raw(x, zp, t, &R, 1, zb, zb_n);
    const char *in[3] = {qn, sc, zp};
    attr_i(x, node(x, "DequantizeLinear", qdomain(x, t), 3, in, name), "axis", 1);
    return name;
}

/* The bias of ql read by the linear, or NULL: in the QDQ graph int32 codes
 * rne(b / (s_x s_w[o])) -> DQ(s_x s_w, axis 0) when the input is quantized (FORMATS §2.2). */
static const char *bias(ox *x, const char *wname, const qnpu__qlinear *ql, const qnpu__qp *in_qp)
{
    if (!ql->bias || !wname)
        return NULL;
    int64_t R = ql->rows;
    const char *name = ox_str(x, "%.*s.b", (int)strlen(wname) - 2, wname);  /* "layer0.q.w" -> "layer0.q.b" */
    if (!name)
        return NULL;
    if (!x->qdq || !in_qp->bits) {
        init_copy(x, name, QNPU__OT_FLOAT, &R, 1, ql->bias, (size_t)R * sizeof(float));
        return name;
    }
    int32_t *codes = ox_alloc(x, (size_t)R * sizeof *codes);
    float *s = ox_alloc(x, (size_t)R * sizeof *s);
    const char *qn = ox_str(x, "%s.q", name), *sc = ox_str(x, "%s.scale", name);
    if (!codes || !s || !qn || !sc)
        return NULL;
    for (int64_t o = 0; o < R; o++) {
        s[o] = in_qp->s * ql->scale[o];
        double v = rint((double)ql->bias[o] / (double)s[o]);
        codes[o] = v > 2147483647.0 ? INT32_MAX : v < -2147483648.0 ? INT32_MIN : (int32_t)v;
    }
    init_raw(x, qn, QNPU__OT_INT32, &R, 1, codes, (size_t)R * sizeof *codes);
    init_raw(x, sc, QNPU__OT_FLOAT, &R, 1, s, (size_t)R * sizeof *s);
    const char *in[2] = {qn, sc};
    attr_i(x, node(x, "DequantizeLinear", NULL, 2, in, name), "axis", 0);
    return name;
}

/* out [1,T,n] = in [1,T,k] W^T (+ b); xin is lin_input(in). */
static const char *linear(ox *x, const char *xin, const qnpu__qlinear *ql, const char *wname,
                          const qnpu__qp *in_qp, const char *out)
{
    const char *w = weight(x, wname, ql), *b = bias(x, wname, ql, in_qp);
    if (!out)
        return NULL;
    if (x->qdq) {
        if (!b)
            return op2(x, "MatMul", xin, w, out);
        return op2(x, "Add", op2(x, "MatMul", xin, w, ox_str(x, "%s/mm", out)), b, out);
    }
    const char *in[3] = {xin, w, b};
    const char *tmp = ox_str(x, "%s/%s", out, x->gemm ? "2d" : "4d");
    Onnx__NodeProto *nd = node(x, x->gemm ? "Gemm" : "Conv", NULL, b ? 3 : 2, in, tmp);
    if (x->gemm) {
        attr_i(x, nd, "transB", 1);
    } else {
        int64_t ks[2] = {1, 1};
        attr_ints(x, nd, "kernel_shape", 2, ks);
    }
    return reshape(x, tmp, shape(x, 3, 1, x->T, ql->rows, 0, 0), out);
}

/* ---- blocks ----------------------------------------------------------------------------- */

/* RMSNorm with the fused (unit) weight, as simgraph's: in / sqrt(mean(in^2) + eps) -> out. */
static const char *rmsnorm(ox *x, const char *in, const char *name, const char *out)
{
    if (!name)
        return NULL;
    const char *sq = op2(x, "Mul", in, in, ox_str(x, "%s/sq", name));
    const char *ms = reduce_last(x, "ReduceMean", sq, ox_str(x, "%s/ms", name));
    const char *ad = op2(x, "Add", ms, "const/rms_eps", ox_str(x, "%s/ms_eps", name));
    const char *rt = op1(x, "Sqrt", ad, ox_str(x, "%s/rms", name));
    const char *iv = op1(x, "Reciprocal", rt, ox_str(x, "%s/inv_rms", name));
    return op2(x, "Mul", in, iv, out);
}

/* RoPE of one projection (METHOD.md §3.1 row 7): in [1,T,heads*dh] -> "{p}.rope" [1,T,heads,dh],
 * through the points {p}.rope_c, .rot, .rope_s, .rope (first_qp = the layer's *_ROPE_C). */
static const char *rope(ox *x, int64_t l, const char *p, const char *in, int64_t heads, int first_qp)
{
    const qnpu_qmodel *q = x->q;
    int64_t dh = q->head_dim, half = dh / 2, zero = 0, m1 = -1;
    const char *base = lname(x, l, p);
    const char *xr = reshape(x, in, shape(x, 4, 1, x->T, heads, dh, 0), ox_str(x, "%s/heads", base));
    const char *nc = ox_str(x, "%s.rope_c", base), *nr = ox_str(x, "%s.rot", base);
    const char *ns = ox_str(x, "%s.rope_s", base), *nx = ox_str(x, "%s.rope", base);
    const qnpu__qp *rc = LQ(x, l, first_qp), *rr = LQ(x, l, first_qp + 1);
    const qnpu__qp *rs = LQ(x, l, first_qp + 2), *rx = LQ(x, l, first_qp + 3);
    point(x, op2(x, "Mul", xr, "rope.cos", pre(x, nc, rc)), nc, rc);
    const char *axes = i64s(x, "axes", 1, &m1);
    const char *s_lo[5] = {xr, i64s(x, "start", 1, &zero), i64s(x, "end", 1, &half), axes, NULL};
    const char *s_hi[5] = {xr, i64s(x, "start", 1, &half), i64s(x, "end", 1, &dh), axes, NULL};
    const char *x1 = ox_str(x, "%s/x1", base), *x2 = ox_str(x, "%s/x2", base);
    node(x, "Slice", NULL, 4, s_lo, x1);
    node(x, "Slice", NULL, 4, s_hi, x2);
    const char *cat[2] = {op1(x, "Neg", x2, ox_str(x, "%s/neg_x2", base)), x1};
    attr_i(x, node(x, "Concat", NULL, 2, cat, pre(x, nr, rr)), "axis", -1);
    point(x, pre(x, nr, rr), nr, rr);
    point(x, op2(x, "Mul", nr, "rope.sin", pre(x, ns, rs)), ns, rs);
    return point(x, op2(x, "Add", nc, ns, pre(x, nx, rx)), nx, rx);
}

/* A constant QP (attn.scale, mask.c): a float scalar initializer through its point. */
static const char *constant(ox *x, int64_t l, int k, float v)
{
    const char *name = lname(x, l, qnpu__qp_layer_name(k));
    const char *src = name ? pre(x, name, LQ(x, l, k)) : NULL;
    if (!src)
        return NULL;
    init_f32(x, src, v);
    return point(x, src, name, LQ(x, l, k));
}

/* Rows 10-18: q [1,T,H,dh] (q.rope), k and v [1,T,KV,dh] (the caches) -> o.in [1,T,H*dh]. With
 * past positions, the keys and values are Concat(layerN.k.past, k.cache) over S = P + T. */
static const char *attention(ox *x, int64_t l, const char *qn, const char *kn, const char *vn)
{
    const qnpu_qmodel *q = x->q;
    int64_t T = x->T + x->P, H = q->n_heads, KV = q->n_kv_heads, G = H / KV, dh = q->head_dim, Tq = x->T;
    const char *base = lname(x, l, "attn");
    if (x->P) {
        const char *kc[2] = {lname(x, l, "k.past"), kn}, *vc[2] = {lname(x, l, "v.past"), vn};
        kn = ox_str(x, "%s/k_all", base);
        vn = ox_str(x, "%s/v_all", base);
        attr_i(x, node(x, "Concat", NULL, 2, kc, kn), "axis", 1);
        attr_i(x, node(x, "Concat", NULL, 2, vc, vn), "axis", 1);
    }
    const char *q5 = reshape(x, transpose(x, qn, 0, 2, 1, 3, ox_str(x, "%s/q_t", base)),
                             shape(x, 5, 1, KV, G, Tq, dh), ox_str(x, "%s/q5", base));
    const char *k5 = reshape(x, transpose(x, kn, 0, 2, 3, 1, ox_str(x, "%s/k_t", base)),
                             shape(x, 5, 1, KV, 1, dh, T), ox_str(x, "%s/k5", base));
    const char *v5 = reshape(x, transpose(x, vn, 0, 2, 1, 3, ox_str(x, "%s/v_t", base)),
                             shape(x, 5, 1, KV, 1, T, dh), ox_str(x, "%s/v5", base));
#define PT(k) lname(x, l, qnpu__qp_layer_name(k)), LQ(x, l, k)
#define PRE(k) pre(x, lname(x, l, qnpu__qp_layer_name(k)), LQ(x, l, k))
    const char *s5 = op2(x, "MatMul", q5, k5, ox_str(x, "%s/qk5", base));
    const char *qk = point(x, reshape(x, s5, shape(x, 4, 1, H, Tq, T, 0), PRE(QP_QK)), PT(QP_QK));
    const char *sc = constant(x, l, QP_ATTN_SCALE, (float)(1.0 / sqrt((double)dh)));
    const char *scaled = point(x, op2(x, "Mul", qk, sc, PRE(QP_QK_SCALED)), PT(QP_QK_SCALED));
    const char *mn = point(x, reduce_last(x, "ReduceMin", scaled, PRE(QP_QK_ROWMIN)), PT(QP_QK_ROWMIN));
    const char *m20 = constant(x, l, QP_MASK_C, -20.0f);
    const char *fill = point(x, op2(x, "Add", mn, m20, PRE(QP_QK_FILL)), PT(QP_QK_FILL));
    const char *w_in[3] = {"const/causal_mask", fill, scaled};
    const char *masked = PRE(QP_QK_MASKED);
    node(x, "Where", NULL, 3, w_in, masked);
    masked = point(x, masked, PT(QP_QK_MASKED));
    const char *sm = PRE(QP_SOFTMAX);
    attr_i(x, node(x, "Softmax", NULL, 1, &masked, sm), "axis", -1);
    sm = point(x, sm, PT(QP_SOFTMAX));
    const char *p5 = reshape(x, sm, shape(x, 5, 1, KV, G, Tq, T), ox_str(x, "%s/p5", base));
    const char *o5 = op2(x, "MatMul", p5, v5, ox_str(x, "%s/o5", base));
    const char *o4 = reshape(x, o5, shape(x, 4, 1, H, Tq, dh, 0), ox_str(x, "%s/o4", base));
    const char *ot = transpose(x, o4, 0, 2, 1, 3, ox_str(x, "%s/o_t", base));
    return point(x, reshape(x, ot, shape(x, 3, 1, Tq, H * dh, 0, 0), PRE(QP_O_IN)), PT(QP_O_IN));
}

/* The dense matrix M of layer l's online R4 (x -> x M, as qnpu__hadamard_apply on rows). */
static const char *r4_matrix(ox *x, int64_t l)
{
    int64_t ff = x->q->ffn;
    float *m = ox_alloc(x, (size_t)(ff * ff) * sizeof *m);
    const char *name = ox_str(x, "layer%lld/r4", (long long)l);
    if (!m || !name)
        return NULL;
    for (int64_t i = 0; i < ff; i++)
        m[i * ff + i] = 1.0f;
    qnpu_status s = qnpu__hadamard_apply(x->q->r4[l], m, ff, ff);
    if (s != QNPU_OK) {
        if (x->st == QNPU_OK)
            x->st = s;
        return NULL;
    }
    int64_t dims[2] = {ff, ff};
    init_raw(x, name, QNPU__OT_FLOAT, dims, 2, m, (size_t)(ff * ff) * sizeof *m);
    return name;
}

static void layer(ox *x, int64_t l, const char **res)
{
    const qnpu_qmodel *q = x->q;
    const qnpu__qlinear *lin = q->lin + l * W_COUNT;
    int64_t d = q->dim, ff = q->ffn;
#define WN(w) lname(x, l, qnpu__weight_name(w))
    const char *xn = point(x, rmsnorm(x, *res, lname(x, l, "attn_norm"), PRE(QP_QKV_IN)), PT(QP_QKV_IN));
    const char *xin = lin_input(x, xn, d);
    const qnpu__qp *qi = LQ(x, l, QP_QKV_IN);
    const char *qo = point(x, linear(x, xin, &lin[W_Q], WN(W_Q), qi, PRE(QP_Q_OUT)), PT(QP_Q_OUT));
    const char *ko = point(x, linear(x, xin, &lin[W_K], WN(W_K), qi, PRE(QP_K_OUT)), PT(QP_K_OUT));
    const char *vo = point(x, linear(x, xin, &lin[W_V], WN(W_V), qi, PRE(QP_V_OUT)), PT(QP_V_OUT));
    const char *qr = rope(x, l, "q", qo, q->n_heads, QP_Q_ROPE_C);
    const char *kr = rope(x, l, "k", ko, q->n_kv_heads, QP_K_ROPE_C);
    const char *kc = point(x, kr, PT(QP_K_CACHE));
    const char *v4 = reshape(x, vo, shape(x, 4, 1, x->T, q->n_kv_heads, q->head_dim, 0),
                             ox_str(x, "layer%lld.v/heads", (long long)l));
    const char *vc = point(x, v4, PT(QP_V_CACHE));
    const char *oi = attention(x, l, qr, kc, vc);
    const char *oo = point(x, linear(x, lin_input(x, oi, q->n_heads * q->head_dim), &lin[W_O], WN(W_O),
                                     LQ(x, l, QP_O_IN), PRE(QP_O_OUT)), PT(QP_O_OUT));
    const char *ar = point(x, op2(x, "Add", *res, oo, PRE(QP_ATTN_RES)), PT(QP_ATTN_RES));
    const char *gn = point(x, rmsnorm(x, ar, lname(x, l, "ffn_norm"), PRE(QP_GATEUP_IN)), PT(QP_GATEUP_IN));
    const char *gin = lin_input(x, gn, d);
    const qnpu__qp *gi = LQ(x, l, QP_GATEUP_IN);
    const char *go = point(x, linear(x, gin, &lin[W_GATE], WN(W_GATE), gi, PRE(QP_GATE_OUT)), PT(QP_GATE_OUT));
    const char *uo = point(x, linear(x, gin, &lin[W_UP], WN(W_UP), gi, PRE(QP_UP_OUT)), PT(QP_UP_OUT));
    const char *sg = point(x, op1(x, "Sigmoid", go, PRE(QP_GATE_SIG)), PT(QP_GATE_SIG));
    const char *sl = point(x, op2(x, "Mul", go, sg, PRE(QP_GATE_SILU)), PT(QP_GATE_SILU));
    const char *di;
    if (q->r4 && q->r4[l]) {
        const char *pr = op2(x, "Mul", sl, uo, ox_str(x, "layer%lld.down/silu_up", (long long)l));
        di = op2(x, "MatMul", pr, r4_matrix(x, l), PRE(QP_DOWN_IN));
    } else {
        di = op2(x, "Mul", sl, uo, PRE(QP_DOWN_IN));
    }
    di = point(x, di, PT(QP_DOWN_IN));
    const char *dn = point(x, linear(x, lin_input(x, di, ff), &lin[W_DOWN], WN(W_DOWN), LQ(x, l, QP_DOWN_IN),
                                     PRE(QP_DOWN_OUT)), PT(QP_DOWN_OUT));
    *res = point(x, op2(x, "Add", ar, dn, PRE(QP_MLP_RES)), PT(QP_MLP_RES));
#undef WN
}
#undef PT
#undef PRE

/* ---- graph and model -------------------------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(ox *x, const char *name, int dt, int nd, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = ox_alloc(x, sizeof *v);
    Onnx__TypeProto *tp = ox_alloc(x, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ox_alloc(x, sizeof *tt);
    Onnx__TensorShapeProto *sh = ox_alloc(x, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = ox_alloc(x, (size_t)nd * sizeof *dd);
    if (!v || !tp || !tt || !sh || !dd || !name)
        return NULL;
    for (int i = 0; i < nd; i++) {
        if (!(dd[i] = ox_alloc(x, sizeof *dd[i])))
            return NULL;
        onnx__tensor_shape_proto__dimension__init(dd[i]);
        dd[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dd[i]->dim_value = dims[i];
    }
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)nd;
    sh->dim = dd;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    tt->shape = sh;
    onnx__type_proto__init(tp);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = tp;
    return v;
}

static void add_output(ox *x, const char *name, int nd, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = value_info(x, name, QNPU__OT_FLOAT, nd, dims);
    if (v)
        grow(x, (void ***)&x->out, &x->n_out, &x->cap_out, v);
}

/* Shared constants: the RoPE tables of positions 0..T-1 (rotate-half layout, [T,1,dh], through
 * rope.cos / rope.sin), the causal mask (bool [T,T], true = masked), eps. */
static void constants(ox *x)
{
    const qnpu_qmodel *q = x->q;
    int64_t T = x->T, P = x->P, S = P + T, dh = q->head_dim, half = dh / 2;
    float *c = qnpu__malloc((size_t)(S * half) * sizeof *c), *s = qnpu__malloc((size_t)(S * half) * sizeof *s);
    float *ct = ox_alloc(x, (size_t)(T * dh) * sizeof *ct), *st = ox_alloc(x, (size_t)(T * dh) * sizeof *st);
    unsigned char *mask = ox_alloc(x, (size_t)(T * S));
    if (!c || !s || !ct || !st || !mask) {
        qnpu__free(c);
        qnpu__free(s);
        if (x->st == QNPU_OK)
            x->st = qnpu__fail(QNPU_ERR_NO_MEMORY, "ONNX export: out of memory");
        return;
    }
    qnpu__rope_tables(c, s, S, dh, q->rope_theta);
    for (int64_t p = 0; p < T; p++)   /* positions P .. P+T-1 */
        for (int64_t i = 0; i < dh; i++) {
            ct[p * dh + i] = c[(P + p) * half + i % half];
            st[p * dh + i] = s[(P + p) * half + i % half];
        }
    qnpu__free(c);
    qnpu__free(s);
    int64_t dims[3] = {T, 1, dh};
    const qnpu__qp *gc = &q->gqp[QP_ROPE_COS], *gs = &q->gqp[QP_ROPE_SIN];
    init_raw(x, pre(x, "rope.cos", gc), QNPU__OT_FLOAT, dims, 3, ct, (size_t)(T * dh) * sizeof *ct);
    init_raw(x, pre(x, "rope.sin", gs), QNPU__OT_FLOAT, dims, 3, st, (size_t)(T * dh) * sizeof *st);
    point(x, pre(x, "rope.cos", gc), "rope.cos", gc);
    point(x, pre(x, "rope.sin", gs), "rope.sin", gs);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < S; j++)
            mask[t * S + j] = j > P + t;
    int64_t md[2] = {T, S};
    init_raw(x, "const/causal_mask", QNPU__OT_BOOL, md, 2, mask, (size_t)(T * S));
    init_f32(x, "const/rms_eps", (float)q->rms_eps);
}

static void add_input(ox *x, const char *name, int dt, int nd, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = value_info(x, name, dt, nd, dims);
    if (v)
        grow(x, (void ***)&x->in, &x->n_in, &x->cap_in, v);
}

static qnpu_status build(ox *x, Onnx__ModelProto *m, Onnx__GraphProto *g, Onnx__OperatorSetIdProto *ops,
                         Onnx__OperatorSetIdProto **opsp)
{
    const qnpu_qmodel *q = x->q;
    int64_t T = x->T;
    constants(x);
    /* embedding: a float table gathered, quantized at layer0.in (METHOD.md §3.2 T0) */
    int64_t ed[2] = {q->vocab, q->dim};
    /* borrowed: protobuf-c only reads raw_data while packing */
    init_raw(x, "embedding.w", QNPU__OT_FLOAT, ed, 2, (void *)q->tok_embd,
             (size_t)(q->vocab * q->dim) * sizeof(float));
    const qnpu__qp *in0 = LQ(x, 0, QP_IN);
    const char *res = point(x, op2(x, "Gather", "embedding.w", "input_ids", pre(x, "layer0.in", in0)),
                            "layer0.in", in0);
    for (int64_t l = 0; l < q->n_layers && x->st == QNPU_OK; l++)
        layer(x, l, &res);
    const qnpu__qp *gl = &q->gqp[QP_LM_HEAD_IN], *gg = &q->gqp[QP_LOGITS];
    const char *hn = point(x, rmsnorm(x, res, "norm", pre(x, "lm_head.in", gl)), "lm_head.in", gl);
    point(x, linear(x, lin_input(x, hn, q->dim), &q->head, "lm_head.w", gl, pre(x, "logits", gg)), "logits", gg);
    int64_t od[3] = {1, T, q->vocab}, kd[4] = {1, T, q->n_kv_heads, q->head_dim}, id[2] = {1, T};
    add_output(x, "logits", 3, od);
    for (int64_t l = 0; l < q->n_layers; l++) {
        add_output(x, lname(x, l, "k.cache"), 4, kd);
        add_output(x, lname(x, l, "v.cache"), 4, kd);
    }
    add_input(x, "input_ids", QNPU__OT_INT64, 2, id);
    int64_t pd[4] = {1, x->P, q->n_kv_heads, q->head_dim};
    for (int64_t l = 0; x->P && l < q->n_layers; l++) {
        add_input(x, lname(x, l, "k.past"), QNPU__OT_FLOAT, 4, pd);
        add_input(x, lname(x, l, "v.past"), QNPU__OT_FLOAT, 4, pd);
    }
    if (x->st != QNPU_OK)
        return x->st;

    onnx__graph_proto__init(g);
    g->name = "quantnpu";
    g->n_node = x->n_node;
    g->node = x->node;
    g->n_initializer = x->n_init;
    g->initializer = x->init;
    g->n_input = x->n_in;
    g->input = x->in;
    g->n_output = x->n_out;
    g->output = x->out;
    g->doc_string = x->qdq ? "libquantnpu QDQ graph (docs/export.md)"
                           : "libquantnpu float graph for QNN encodings (docs/export.md)";
    int n_ops = 1;
    onnx__operator_set_id_proto__init(&ops[0]);
    ops[0].domain = "";
    ops[0].has_version = 1;
    ops[0].version = x->opset;
    opsp[0] = &ops[0];
    if (x->compat) {
        onnx__operator_set_id_proto__init(&ops[1]);
        ops[1].domain = MS_DOMAIN;
        ops[1].has_version = 1;
        ops[1].version = 1;
        opsp[1] = &ops[1];
        n_ops = 2;
    }
    onnx__model_proto__init(m);
    m->has_ir_version = 1;
    m->ir_version = x->opset >= 21 ? 10 : 8;
    m->n_opset_import = (size_t)n_ops;
    m->opset_import = opsp;
    m->producer_name = "libquantnpu";
    m->producer_version = QNPU_VERSION_STRING;
    m->graph = g;
    /* metadata: what the graph is, for the tools that load it */
    const char *meta[][2] = {
        {"quantnpu.graph", x->qdq ? (x->compat ? "qdq-compat" : "qdq-standard") : (x->gemm ? "float-gemm" : "float-conv1x1")},
        {"quantnpu.seq_len", ox_str(x, "%lld", (long long)T)},
        {"quantnpu.past_len", ox_str(x, "%lld", (long long)x->P)},
        {"quantnpu.arch", q->arch},
    };
    size_t n_meta = sizeof meta / sizeof meta[0];
    Onnx__StringStringEntryProto *kv = ox_alloc(x, n_meta * sizeof *kv);
    Onnx__StringStringEntryProto **kvp = ox_alloc(x, n_meta * sizeof *kvp);
    if (!kv || !kvp || !meta[1][1] || !meta[2][1])
        return x->st;
    for (size_t i = 0; i < n_meta; i++) {
        onnx__string_string_entry_proto__init(&kv[i]);
        kv[i].key = (char *)meta[i][0];
        kv[i].value = (char *)meta[i][1];
        kvp[i] = &kv[i];
    }
    m->n_metadata_props = n_meta;
    m->metadata_props = kvp;
    return QNPU_OK;
}

/* Build the model described by opts into x / m; the caller packs it, then ox_free. */
static qnpu_status setup(ox *x, const qnpu_qmodel *q, const qnpu_options *opts, int qdq)
{
    memset(x, 0, sizeof *x);
    if (!q)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "ONNX export: NULL model");
    x->q = q;
    x->qdq = qdq;
    x->compat = qdq && qnpu__opt_int(opts, QNPU_P_EXPORT_ONNX_FLAVOR) == 1;
    x->opset = qdq && !x->compat ? 21 : 17;
    x->gemm = !qdq && qnpu__opt_int(opts, QNPU_P_EXPORT_QNN_LINEAR_AS) == 1;
    x->T = qnpu__opt_int(opts, QNPU_P_EXPORT_SEQ_LEN);
    x->P = qnpu__opt_int(opts, QNPU_P_EXPORT_PAST_LEN);
    if (q->n_kv_heads <= 0 || q->n_heads % q->n_kv_heads || q->head_dim % 2)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "ONNX export: %lld heads over %lld KV heads of dim %lld",
                          (long long)q->n_heads, (long long)q->n_kv_heads, (long long)q->head_dim);
    /* the initializers alone, before anything is built: refuse a model over the protobuf limit */
    double bytes = 4.0 * (double)q->vocab * (double)q->dim;
    for (int64_t i = 0; i <= q->n_layers * W_COUNT; i++) {
        const qnpu__qlinear *ql = i < q->n_layers * W_COUNT ? &q->lin[i] : &q->head;
        bytes += (double)ql->rows * (double)ql->cols * (!qdq ? 4.0 : ql->bits <= 4 ? 0.5 : 1.0);
    }
    for (int64_t l = 0; q->r4 && l < q->n_layers; l++)
        bytes += q->r4[l] ? 4.0 * (double)q->ffn * (double)q->ffn : 0.0;
    if (bytes > (double)INT32_MAX)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED, "ONNX export: the weights alone need %.0f bytes, over the "
                          "2 GB protobuf limit (external data is not written yet)", bytes);
    return QNPU_OK;
}

typedef struct sink {
    ProtobufCBuffer base;
    qnpu__afile *f;
} sink;

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    qnpu__afile_write(((sink *)b)->f, data, len);
}

#define PB_LIMIT ((size_t)INT32_MAX)

static qnpu_status make(const qnpu_qmodel *q, const qnpu_options *opts, int qdq, qnpu__afile *f,
                        unsigned char **buf, size_t *len)
{
    ox x;
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto ops[2], *opsp[2];
    qnpu_status s = setup(&x, q, opts, qdq);
    if (s == QNPU_OK)
        s = build(&x, &m, &g, ops, opsp);
    if (s == QNPU_OK) {
        size_t n = protobuf_c_message_get_packed_size(&m.base);
        if (n > PB_LIMIT) {
            s = qnpu__fail(QNPU_ERR_UNSUPPORTED, "ONNX export: the model needs %zu bytes, over the 2 GB "
                           "protobuf limit (external data is not written yet)", n);
        } else if (f) {
            sink k = {{sink_append}, f};
            protobuf_c_message_pack_to_buffer(&m.base, &k.base);
        } else if (!(*buf = qnpu__malloc(n ? n : 1))) {
            s = qnpu__fail(QNPU_ERR_NO_MEMORY, "ONNX export: out of memory (%zu bytes)", n);
        } else {
            *len = protobuf_c_message_pack(&m.base, *buf);
        }
    }
    ox_free(&x);
    return s;
}

qnpu_status qnpu__onnx_pack(const qnpu_qmodel *q, const qnpu_options *opts, int qdq, unsigned char **out,
                            size_t *len)
{
    if (!out || !len)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "ONNX export: NULL argument");
    *out = NULL;
    *len = 0;
    return make(q, opts, qdq, NULL, out, len);
}

qnpu_status qnpu__onnx_write(const qnpu_qmodel *q, const qnpu_options *opts, int qdq, const char *path)
{
    if (!q || !path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "ONNX export: NULL model or path");
    qnpu__afile f;
    qnpu_status s = qnpu__afile_open(&f, path);
    if (s != QNPU_OK)
        return s;
    s = make(q, opts, qdq, &f, NULL, NULL);
    if (s != QNPU_OK) {
        qnpu__afile_abort(&f);
        return s;
    }
    return qnpu__afile_commit(&f);
}
