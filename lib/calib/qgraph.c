/* qgraph.c — names, observer classes and bit-widths of the quantization points of METHOD.md §3,
 * and the quantized model's destructor. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rotate/hadamard.h"
#include "qgraph.h"

static const struct { const char *name; int cls; } layer_qps[QP_LAYER_COUNT] = {
    [QP_IN] = {"in", QPC_OTHER},
    [QP_QKV_IN] = {"qkv.in", QPC_LINEAR_IN},
    [QP_Q_OUT] = {"q.out", QPC_LINEAR_OUT},
    [QP_K_OUT] = {"k.out", QPC_LINEAR_OUT},
    [QP_V_OUT] = {"v.out", QPC_LINEAR_OUT},
    [QP_Q_ROPE_C] = {"q.rope_c", QPC_ATTENTION},
    [QP_Q_ROT] = {"q.rot", QPC_ATTENTION},
    [QP_Q_ROPE_S] = {"q.rope_s", QPC_ATTENTION},
    [QP_Q_ROPE] = {"q.rope", QPC_ATTENTION},
    [QP_K_ROPE_C] = {"k.rope_c", QPC_ATTENTION},
    [QP_K_ROT] = {"k.rot", QPC_ATTENTION},
    [QP_K_ROPE_S] = {"k.rope_s", QPC_ATTENTION},
    [QP_K_ROPE] = {"k.rope", QPC_ATTENTION},
    [QP_K_CACHE] = {"k.cache", QPC_KV},
    [QP_V_CACHE] = {"v.cache", QPC_KV},
    [QP_QK] = {"qk", QPC_ATTENTION},
    [QP_ATTN_SCALE] = {"attn.scale", QPC_ATTENTION},
    [QP_QK_SCALED] = {"qk.scaled", QPC_ATTENTION},
    [QP_QK_ROWMIN] = {"qk.rowmin", QPC_ATTENTION},
    [QP_MASK_C] = {"mask.c", QPC_ATTENTION},
    [QP_QK_FILL] = {"qk.fill", QPC_ATTENTION},
    [QP_QK_MASKED] = {"qk.masked", QPC_ATTENTION},
    [QP_SOFTMAX] = {"softmax.out", QPC_ATTENTION},
    [QP_O_IN] = {"o.in", QPC_LINEAR_IN},
    [QP_O_OUT] = {"o.out", QPC_LINEAR_OUT},
    [QP_ATTN_RES] = {"attn.res", QPC_OTHER},
    [QP_GATEUP_IN] = {"gateup.in", QPC_LINEAR_IN},
    [QP_GATE_OUT] = {"gate.out", QPC_LINEAR_OUT},
    [QP_UP_OUT] = {"up.out", QPC_LINEAR_OUT},
    [QP_GATE_SIG] = {"gate.sig", QPC_FIXED},
    [QP_GATE_SILU] = {"gate.silu", QPC_OTHER},
    [QP_DOWN_IN] = {"down.in", QPC_LINEAR_IN},
    [QP_DOWN_OUT] = {"down.out", QPC_LINEAR_OUT},
    [QP_MLP_RES] = {"mlp.res", QPC_OTHER},
};

static const struct { const char *name; int cls; } global_qps[QP_GLOBAL_COUNT] = {
    [QP_ROPE_COS] = {"rope.cos", QPC_ATTENTION},
    [QP_ROPE_SIN] = {"rope.sin", QPC_ATTENTION},
    [QP_LM_HEAD_IN] = {"lm_head.in", QPC_OTHER},
    [QP_LOGITS] = {"logits", QPC_OTHER},
};

static const char *const weight_names[W_COUNT] = {"q.w", "k.w", "v.w", "o.w", "gate.w", "up.w", "down.w"};

const char *qnpu__qp_layer_name(int k) { return layer_qps[k].name; }
const char *qnpu__qp_global_name(int k) { return global_qps[k].name; }
int qnpu__qp_layer_class(int k) { return layer_qps[k].cls; }
int qnpu__qp_global_class(int k) { return global_qps[k].cls; }
const char *qnpu__weight_name(int w) { return weight_names[w]; }

static void set(qnpu__qp *qp, int bits, int sym)
{
    memset(qp, 0, sizeof *qp);
    qp->bits = (int8_t)bits;
    qp->sym = (int8_t)sym;
}

/* Apply one "PATTERN:BITS" rule of quant.bits_override to a named point. */
typedef struct override { char pattern[96]; int bits; } override;

static qnpu_status parse_overrides(const char *text, override **out, int *n)
{
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    override *o = qnpu__calloc((size_t)cap, sizeof *o);
    if (!o)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "quant.bits_override: out of memory");
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
        if (!comma)
            comma = p + strlen(p);
        char *end;
        long bits = colon && colon < comma ? strtol(colon + 1, &end, 10) : -1;
        size_t plen = colon ? (size_t)(colon - p) : 0;
        if (!colon || colon > comma || end != comma || plen == 0 || plen >= sizeof o->pattern ||
            !(bits == 0 || bits == 4 || bits == 8 || bits == 16)) {
            qnpu__free(o);
            return qnpu__fail(QNPU_ERR_INVALID_ARG,
                              "quant.bits_override: '%.*s' is not PATTERN:BITS with BITS 0, 4, 8 or 16",
                              (int)(comma - p), p);
        }
        memcpy(o[*n].pattern, p, plen);
        o[*n].bits = (int)bits;
        (*n)++;
        p = comma;
    }
    *out = o;
    return QNPU_OK;
}

/* The last matching rule wins; returns -1 when none matches. */
static int override_bits(const override *o, int n, const char *name)
{
    int bits = -1;
    for (int i = 0; i < n; i++)
        if (fnmatch(o[i].pattern, name, 0) == 0)
            bits = o[i].bits;
    return bits;
}

qnpu_status qnpu__qp_assign_bits(const qnpu_options *opts, int64_t n_layers, qnpu__qp *layer,
                                 qnpu__qp *global, int8_t *w_bits, int *head_w_bits)
{
    int a = (int)qnpu__opt_int(opts, QNPU_P_QUANT_A_BITS);
    int out = (int)qnpu__opt_int(opts, QNPU_P_QUANT_OUT_BITS);
    int down = (int)qnpu__opt_int(opts, QNPU_P_QUANT_DOWN_A_BITS);
    int kv = (int)qnpu__opt_int(opts, QNPU_P_QUANT_KV_BITS);
    int w = (int)qnpu__opt_int(opts, QNPU_P_QUANT_W_BITS);
    *head_w_bits = (int)qnpu__opt_int(opts, QNPU_P_QUANT_HEAD_W_BITS);
    override *ov;
    int n_ov;
    qnpu_status s = parse_overrides(qnpu__opt_str(opts, QNPU_P_QUANT_BITS_OVERRIDE), &ov, &n_ov);
    if (s != QNPU_OK)
        return s;
    char name[128];
    int b;
    for (int64_t l = 0; l < n_layers; l++) {
        qnpu__qp *q = layer + l * QP_LAYER_COUNT;
        for (int k = 0; k < QP_LAYER_COUNT; k++)
            set(&q[k], 16, 0);
        set(&q[QP_IN], l == 0 ? 16 : 0, 0); /* row 1 of layer l > 0 is the previous mlp.res */
        q[QP_QKV_IN].bits = q[QP_O_IN].bits = q[QP_GATEUP_IN].bits = (int8_t)a;
        q[QP_Q_OUT].bits = q[QP_K_OUT].bits = q[QP_V_OUT].bits = (int8_t)out;
        q[QP_O_OUT].bits = q[QP_GATE_OUT].bits = q[QP_UP_OUT].bits = (int8_t)out;
        set(&q[QP_K_CACHE], kv, 1);
        set(&q[QP_V_CACHE], kv, 1);
        q[QP_GATE_SIG].fixed = 1;
        q[QP_GATE_SIG].origin = 2;
        q[QP_DOWN_IN].bits = (int8_t)down;
        for (int k = 0; k < QP_LAYER_COUNT; k++) {
            snprintf(name, sizeof name, "layer%lld.%s", (long long)l, layer_qps[k].name);
            if ((l == 0 || k != QP_IN) && k != QP_GATE_SIG && (b = override_bits(ov, n_ov, name)) >= 0)
                q[k].bits = (int8_t)b;
        }
        /* row 30 follows row 28: 16 bits, or out_bits when down.in is below 16 */
        if (override_bits(ov, n_ov, (snprintf(name, sizeof name, "layer%lld.down.out", (long long)l), name)) < 0)
            q[QP_DOWN_OUT].bits = (int8_t)(q[QP_DOWN_IN].bits && q[QP_DOWN_IN].bits < 16 ? out : 16);
        for (int k = 0; k < W_COUNT; k++) {
            snprintf(name, sizeof name, "layer%lld.%s", (long long)l, weight_names[k]);
            b = override_bits(ov, n_ov, name);
            w_bits[l * W_COUNT + k] = (int8_t)(b >= 0 ? b : w);
        }
    }
    for (int k = 0; k < QP_GLOBAL_COUNT; k++) {
        set(&global[k], 16, 0);
        if ((b = override_bits(ov, n_ov, global_qps[k].name)) >= 0)
            global[k].bits = (int8_t)b;
    }
    if ((b = override_bits(ov, n_ov, "lm_head.w")) >= 0)
        *head_w_bits = b;
    qnpu__free(ov);
    return QNPU_OK;
}

void qnpu__qmodel_destroy(qnpu_qmodel *q)
{
    if (!q)
        return;
    if (q->iplan && q->iplan_free)
        q->iplan_free(q->iplan);
    for (int64_t i = 0; q->lin && i < q->n_layers * W_COUNT; i++) {
        qnpu__free(q->lin[i].q);
        qnpu__free(q->lin[i].scale);
        qnpu__free(q->lin[i].bias);
    }
    qnpu__free(q->lin);
    qnpu__free(q->head.q);
    qnpu__free(q->head.scale);
    qnpu__free(q->head.bias);
    qnpu__free(q->tok_embd);
    qnpu__free(q->qp);
    for (int64_t l = 0; q->r4 && l < q->n_layers; l++)
        qnpu__hadamard_free(q->r4[l]);
    qnpu__free(q->r4);
    qnpu__vocab_free(q->vocab_tok);
    for (int64_t i = 0; q->names && i < q->n_names; i++) /* also on a failed build (issue 7) */
        qnpu__free(q->names[i]);
    qnpu__free(q->names);
    qnpu__free(q);
}
