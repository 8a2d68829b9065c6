/* encodings.c — Qualcomm QNN / AIMET encodings JSON, versions 0.6.1 and 1.0.0 (FORMATS §1): the
 * writer used by the exporter, and a strict re-reader with a comparison against a quantized
 * model for the tests and the fuzzers. The format, the sign convention (offset = −z) and what
 * is left out are documented in docs/formats.md, section "QNN / AIMET encodings". */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/json.h"
#include "encodings.h"

/* ---- records -> encodings --------------------------------------------------------------- */

qnpu_status qnpu__encoding_of(const char *name, float s, int64_t z, int bits, int sym, qnpu__enc_value *out)
{
    if (bits < 2 || bits > 32)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: %d bits cannot be encoded (2 to 32)", name, bits);
    if (!isfinite(s))
        return qnpu__fail(QNPU_ERR_NUMERIC, "%s: scale %g is not finite", name, (double)s);
    if (!(s > 0))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: scale %.9g is not positive", name, (double)s);
    int64_t levels = (int64_t)1 << bits; /* 2^b */
    if (sym && z != 0)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: symmetric with zero point %lld (must be 0)", name,
                          (long long)z);
    if (!sym && (z < 0 || z > levels - 1))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: zero point %lld is outside [0, %lld] for %d bits", name,
                          (long long)z, (long long)(levels - 1), bits);
    out->bits = bits;
    out->sym = sym;
    out->scale = s;
    out->offset = sym ? -(levels / 2) : -z;
    /* float32 results, as the AIMET specification's worked example (FORMATS §0.1) */
    out->min = (float)out->offset * s;
    out->max = (float)(levels - 1 + out->offset) * s;
    return QNPU_OK;
}

void qnpu__enc_format_float(char *buf, size_t size, float v)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.9g", (double)v);
    /* an application's LC_NUMERIC may print a ',' (or a multi-byte separator): JSON needs '.' */
    size_t o = 0;
    for (const char *c = tmp; *c && o + 1 < size; c++) {
        int ok = (*c >= '0' && *c <= '9') || *c == '-' || *c == '+' || *c == 'e' || *c == 'E';
        if (ok)
            buf[o++] = *c;
        else if (o == 0 || buf[o - 1] != '.')
            buf[o++] = '.';
    }
    if (size)
        buf[o < size ? o : size - 1] = '\0';
}

/* ---- the points of a model, in file order ------------------------------------------------- */

/* Activation points: every per-layer QP (row 1 only in layer 0, METHOD.md §3.1), then the
 * model-wide ones — the order of q->names. */
static int64_t act_count(const qnpu_qmodel *q)
{
    return q->n_layers * QP_LAYER_COUNT - (q->n_layers - 1) + QP_GLOBAL_COUNT;
}

static const qnpu__qp *act_point(const qnpu_qmodel *q, int64_t i, char *name, size_t size)
{
    if (i < QP_LAYER_COUNT) {
        snprintf(name, size, "layer0.%s", qnpu__qp_layer_name((int)i));
        return &q->qp[i];
    }
    i -= QP_LAYER_COUNT;
    int64_t per = QP_LAYER_COUNT - 1;
    if (i < (q->n_layers - 1) * per) {
        int64_t l = 1 + i / per;
        int k = 1 + (int)(i % per); /* QP_IN is 0 and not listed past layer 0 */
        snprintf(name, size, "layer%lld.%s", (long long)l, qnpu__qp_layer_name(k));
        return &q->qp[l * QP_LAYER_COUNT + k];
    }
    i -= (q->n_layers - 1) * per;
    snprintf(name, size, "%s", qnpu__qp_global_name((int)i));
    return &q->gqp[i];
}

static int64_t weight_count(const qnpu_qmodel *q)
{
    return q->n_layers * W_COUNT + 1;
}

static const qnpu__qlinear *weight_at(const qnpu_qmodel *q, int64_t i, char *name, size_t size)
{
    if (i == q->n_layers * W_COUNT) {
        snprintf(name, size, "lm_head.w");
        return &q->head;
    }
    snprintf(name, size, "layer%lld.%s", (long long)(i / W_COUNT), qnpu__weight_name((int)(i % W_COUNT)));
    return &q->lin[i];
}

static qnpu_status check_model(const qnpu_qmodel *q, const char *fn)
{
    if (!q || !q->qp || !q->lin || q->n_layers < 1 || q->n_layers > (1 << 20))
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: not a complete quantized model", fn);
    for (int64_t i = 0; i < weight_count(q); i++) {
        char name[64];
        const qnpu__qlinear *w = weight_at(q, i, name, sizeof name);
        if (w->rows < 1 || !w->scale)
            return qnpu__fail(QNPU_ERR_INVALID_ARG, "%s: weight %s has no scales", fn, name);
    }
    return QNPU_OK;
}

/* ---- the writer --------------------------------------------------------------------------- */

typedef struct writer {
    qnpu__afile f;
    int ver;
    int act_hist[33], par_hist[33]; /* bit-widths written, for quantizer_args */
} writer;

static void put_float(writer *w, float v)
{
    char b[48];
    qnpu__enc_format_float(b, sizeof b, v);
    qnpu__afile_write(&w->f, b, strlen(b));
}

/* A JSON string (the names are ASCII identifiers; escape anyway). */
static void put_string(writer *w, const char *s)
{
    qnpu__afile_write(&w->f, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            qnpu__afile_printf(&w->f, "\\%c", c);
        else if (c < 0x20)
            qnpu__afile_printf(&w->f, "\\u%04x", c);
        else
            qnpu__afile_write(&w->f, s, 1);
    }
    qnpu__afile_write(&w->f, "\"", 1);
}

/* One 0.6.1 Encoding object. */
static void put_v061(writer *w, const qnpu__enc_value *e)
{
    qnpu__afile_printf(&w->f, "{\"bitwidth\": %d, \"dtype\": \"int\", \"is_symmetric\": \"%s\", \"scale\": ", e->bits,
                       e->sym ? "True" : "False");
    put_float(w, e->scale);
    qnpu__afile_printf(&w->f, ", \"offset\": %lld, \"min\": ", (long long)e->offset);
    put_float(w, e->min);
    qnpu__afile_printf(&w->f, ", \"max\": ");
    put_float(w, e->max);
    qnpu__afile_printf(&w->f, "}");
}

/* The start of a 1.0.0 Encoding object, up to the scale array's '['. */
static void put_v100_head(writer *w, const char *name, const char *enc_type, int bits, int sym)
{
    qnpu__afile_printf(&w->f, "{\"name\": ");
    put_string(w, name);
    qnpu__afile_printf(&w->f, ", \"enc_type\": \"%s\", \"dtype\": \"INT\", \"bw\": %d, \"is_sym\": %s, \"scale\": [",
                       enc_type, bits, sym ? "true" : "false");
}

static qnpu_status write_activations(writer *w, const qnpu_qmodel *q)
{
    char name[64];
    int first = 1;
    qnpu__afile_printf(&w->f, w->ver == QNPU__ENC_V061 ? "  \"activation_encodings\": {" : "  \"activation_encodings\": [");
    for (int64_t i = 0; i < act_count(q); i++) {
        const qnpu__qp *p = act_point(q, i, name, sizeof name);
        if (p->bits == 0) /* pass-through: not quantized, left out */
            continue;
        qnpu__enc_value e;
        qnpu_status s = qnpu__encoding_of(name, p->s, p->z, p->bits, p->sym, &e);
        if (s != QNPU_OK)
            return s;
        if (w->ver == QNPU__ENC_V061 && p->bits < 4)
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %d bits need export.encodings_version 1.0.0 (0.6.1 "
                              "encodes 4 to 32 bits)", name, p->bits);
        w->act_hist[p->bits]++;
        qnpu__afile_printf(&w->f, first ? "\n    " : ",\n    ");
        first = 0;
        if (w->ver == QNPU__ENC_V061) {
            put_string(w, name);
            qnpu__afile_printf(&w->f, ": [\n      ");
            put_v061(w, &e);
            qnpu__afile_printf(&w->f, "\n    ]");
        } else {
            put_v100_head(w, name, "PER_TENSOR", e.bits, e.sym);
            put_float(w, e.scale);
            qnpu__afile_printf(&w->f, "], \"offset\": [%lld]}", (long long)e.offset);
        }
    }
    qnpu__afile_printf(&w->f, "%s%s,\n", first ? "" : "\n  ", w->ver == QNPU__ENC_V061 ? "}" : "]");
    return QNPU_OK;
}

static qnpu_status write_params(writer *w, const qnpu_qmodel *q)
{
    char name[64], ch[96];
    qnpu__afile_printf(&w->f, w->ver == QNPU__ENC_V061 ? "  \"param_encodings\": {" : "  \"param_encodings\": [");
    for (int64_t i = 0; i < weight_count(q); i++) {
        const qnpu__qlinear *ql = weight_at(q, i, name, sizeof name);
        if (w->ver == QNPU__ENC_V061 && ql->bits >= 2 && ql->bits < 4) /* other widths: qnpu__encoding_of */
            return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: %d-bit weights need export.encodings_version 1.0.0 "
                              "(0.6.1 encodes 4 to 32 bits)", name, ql->bits);
        w->par_hist[ql->bits >= 0 && ql->bits <= 32 ? ql->bits : 0]++;
        qnpu__afile_printf(&w->f, i ? ",\n    " : "\n    ");
        if (w->ver == QNPU__ENC_V061) {
            put_string(w, name);
            qnpu__afile_printf(&w->f, ": [");
        } else {
            put_v100_head(w, name, "PER_CHANNEL", ql->bits, 1);
        }
        int64_t offset = 0;
        for (int64_t r = 0; r < ql->rows; r++) {
            qnpu__enc_value e;
            snprintf(ch, sizeof ch, "%s channel %lld", name, (long long)r);
            qnpu_status s = qnpu__encoding_of(ch, ql->scale[r], 0, ql->bits, 1, &e);
            if (s != QNPU_OK)
                return s;
            offset = e.offset;
            if (w->ver == QNPU__ENC_V061) {
                qnpu__afile_printf(&w->f, r ? ",\n      " : "\n      ");
                put_v061(w, &e);
            } else {
                if (r)
                    qnpu__afile_printf(&w->f, ", ");
                put_float(w, e.scale);
            }
        }
        if (w->ver == QNPU__ENC_V061) {
            qnpu__afile_printf(&w->f, "\n    ]");
        } else {
            qnpu__afile_printf(&w->f, "], \"offset\": [");
            for (int64_t r = 0; r < ql->rows; r++)
                qnpu__afile_printf(&w->f, r ? ", %lld" : "%lld", (long long)offset);
            qnpu__afile_printf(&w->f, "]}");
        }
    }
    qnpu__afile_printf(&w->f, "\n  %s,\n", w->ver == QNPU__ENC_V061 ? "}" : "]");
    return QNPU_OK;
}

/* The most frequent bit-width (ties: the larger), or `dflt` when nothing was counted. */
static int mode_bits(const int *hist, int dflt)
{
    int best = -1;
    for (int b = 1; b <= 32; b++)
        if (hist[b] && (best < 0 || hist[b] >= hist[best]))
            best = b;
    return best < 0 ? dflt : best;
}

static void write_quantizer_args(writer *w)
{
    int v061 = w->ver == QNPU__ENC_V061;
    const char *t = v061 ? "\"True\"" : "true";
    qnpu__afile_printf(&w->f,
                       "  \"quantizer_args\": {\"activation_bitwidth\": %d, \"dtype\": \"int\", \"is_symmetric\": %s, "
                       "\"param_bitwidth\": %d, \"per_channel_quantization\": %s, \"quant_scheme\": "
                       "\"post_training_tf\"}%s\n",
                       mode_bits(w->act_hist, 16), t, mode_bits(w->par_hist, 8), t, v061 ? "" : ",");
    if (!v061)
        qnpu__afile_printf(&w->f, "  \"excluded_layers\": []\n");
}

qnpu_status qnpu__encodings_write(const qnpu_qmodel *q, const qnpu_options *opts, const char *path)
{
    if (!path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "encodings: no output path");
    qnpu_status s = check_model(q, "encodings");
    if (s != QNPU_OK)
        return s;
    writer w;
    memset(&w, 0, sizeof w);
    w.ver = (int)qnpu__opt_int(opts, QNPU_P_EXPORT_ENCODINGS_VERSION);
    if (w.ver != QNPU__ENC_V061 && w.ver != QNPU__ENC_V100)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "encodings: unknown export.encodings_version %d", w.ver);
    if ((s = qnpu__afile_open(&w.f, path)) != QNPU_OK)
        return s;
    qnpu__afile_printf(&w.f, "{\n  \"version\": \"%s\",\n", w.ver == QNPU__ENC_V061 ? "0.6.1" : "1.0.0");
    s = write_activations(&w, q);
    if (s == QNPU_OK)
        s = write_params(&w, q);
    if (s != QNPU_OK) { /* a record that cannot be encoded (the message names it) */
        qnpu__afile_abort(&w.f);
        qnpu__error_prefix("encodings");
        return s;
    }
    write_quantizer_args(&w);
    qnpu__afile_printf(&w.f, "}\n");
    return qnpu__afile_commit(&w.f); /* QNPU_ERR_IO naming the path; removes the temporary on failure */
}

/* ---- the re-reader ------------------------------------------------------------------------ */

typedef struct reader {
    const char *file;
    qnpu__encodings *e;
} reader;

/* "file:line:column: message" (the position of node `at`) with status st. */
static qnpu_status bad(const reader *r, qnpu_status st, const qnpu__json *at, const char *fmt, ...) QNPU__PRINTF(4, 5);
static qnpu_status bad(const reader *r, qnpu_status st, const qnpu__json *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        return qnpu__fail(st, "%s:%zu:%zu: %s", r->file, at->line, at->column, msg);
    return qnpu__fail(st, "%s: %s", r->file, msg);
}

/* Member `key` of obj (the last one if repeated), or NULL. */
static const qnpu__json *member(const qnpu__json *obj, const char *key)
{
    return qnpu__json_get(obj, key);
}

/* The string value of member `key`, or NULL (missing, or not a string); *node gets the member. */
static const char *str_member(const qnpu__json *obj, const char *key, const qnpu__json **node)
{
    *node = member(obj, key);
    return *node ? qnpu__json_string(*node) : NULL;
}

/* A number that is an integer (written as one, or with an integral value), in [lo, hi]. */
static int int_value(const qnpu__json *v, int64_t lo, int64_t hi, int64_t *out)
{
    double d;
    if (!v || v->type != QNPU__JSON_NUMBER)
        return 0;
    if (v->is_int) {
        if (v->i < lo || v->i > hi)
            return 0;
        *out = v->i;
        return 1;
    }
    if (!qnpu__json_number(v, &d) || !(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return 0;
    *out = (int64_t)d;
    return 1;
}

/* A scale: a finite positive number that stays finite and positive as a float32. */
static int scale_value(const qnpu__json *v, float *out)
{
    double d;
    if (!qnpu__json_number(v, &d) || !isfinite(d))
        return 0;
    float f = (float)d;
    if (!isfinite(f) || !(f > 0))
        return 0;
    *out = f;
    return 1;
}

static qnpu_status rec_alloc(const reader *r, qnpu__enc_record *rec, int64_t n, int minmax)
{
    rec->n = n;
    rec->scale = qnpu__calloc((size_t)n, sizeof *rec->scale);
    rec->offset = qnpu__calloc((size_t)n, sizeof *rec->offset);
    if (minmax) {
        rec->min = qnpu__calloc((size_t)n, sizeof *rec->min);
        rec->max = qnpu__calloc((size_t)n, sizeof *rec->max);
    }
    if (!rec->scale || !rec->offset || (minmax && (!rec->min || !rec->max)))
        return bad(r, QNPU_ERR_NO_MEMORY, NULL, "out of memory");
    return QNPU_OK;
}

static qnpu_status set_name(const reader *r, qnpu__enc_record *rec, const qnpu__json *at, const char *s, size_t len)
{
    if (len == 0 || memchr(s, '\0', len))
        return bad(r, QNPU_ERR_FORMAT, at, "a tensor name is empty or holds a NUL byte");
    if (!(rec->name = qnpu__strndup(s, len)))
        return bad(r, QNPU_ERR_NO_MEMORY, NULL, "out of memory");
    return QNPU_OK;
}

static const char *section_name(int param)
{
    return param ? "param_encodings" : "activation_encodings";
}

/* A float encoding's bit-width: 16 or 32. */
static qnpu_status float_bits(const reader *r, const qnpu__json *enc, const char *key, const char *name, int *bits)
{
    int64_t b;
    const qnpu__json *v = member(enc, key);
    if (!int_value(v, 16, 32, &b) || (b != 16 && b != 32))
        return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s': float encoding needs '%s' 16 or 32", name, key);
    *bits = (int)b;
    return QNPU_OK;
}

/* min and max of a 0.6.1 encoding must be the ones scale and offset give (FORMATS §1.5, 11). */
static qnpu_status check_min_max(const reader *r, const qnpu__json *enc, const char *name, int64_t i, int bits,
                                 float scale, int64_t offset, float *mn, float *mx)
{
    const char *keys[2] = {"min", "max"};
    float *outs[2] = {mn, mx};
    double want[2] = {(double)offset * scale, ((double)(((int64_t)1 << bits) - 1) + (double)offset) * scale};
    for (int k = 0; k < 2; k++) {
        const qnpu__json *v = member(enc, keys[k]);
        double d;
        if (!qnpu__json_number(v, &d) || !isfinite(d))
            return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s' entry %lld: '%s' is %s, not a finite number", name,
                       (long long)i, keys[k], v ? qnpu__json_type_name(v) : "missing");
        if (!(fabs(d - want[k]) <= 1e-6 * fabs(want[k]) + 1e-3 * (double)scale))
            return bad(r, QNPU_ERR_FORMAT, v, "'%s' entry %lld: '%s' %.9g does not match scale and offset (%.9g)",
                       name, (long long)i, keys[k], d, want[k]);
        *outs[k] = (float)d;
    }
    return QNPU_OK;
}

/* One tensor of a 0.6.1 file: `list` is its array of Encoding objects. */
static qnpu_status read_v061_tensor(const reader *r, int param, const qnpu__json *list, qnpu__enc_record *rec)
{
    qnpu_status s = set_name(r, rec, list, list->key, list->key_len);
    if (s != QNPU_OK)
        return s;
    const char *name = rec->name;
    rec->param = param;
    if (list->type != QNPU__JSON_ARRAY || list->len == 0)
        return bad(r, QNPU_ERR_FORMAT, list, "%s: '%s' must be a non-empty array of encodings, not %s%s",
                   section_name(param), name, list->type == QNPU__JSON_ARRAY ? "an empty " : "",
                   qnpu__json_type_name(list));
    int64_t n = (int64_t)list->len;
    int i = 0;
    for (const qnpu__json *enc = list->first; enc; enc = enc->next, i++) {
        if (enc->type != QNPU__JSON_OBJECT)
            return bad(r, QNPU_ERR_FORMAT, enc, "'%s' entry %d: an encoding must be an object, not %s", name, i,
                       qnpu__json_type_name(enc));
        const qnpu__json *node;
        const char *dtype = str_member(enc, "dtype", &node);
        if (node && !dtype)
            return bad(r, QNPU_ERR_FORMAT, node, "'%s' entry %d: 'dtype' must be a string", name, i);
        int is_float = dtype && !strcmp(dtype, "float");
        if (dtype && !is_float && strcmp(dtype, "int"))
            return bad(r, QNPU_ERR_FORMAT, node, "'%s' entry %d: 'dtype' is '%s', not \"int\" or \"float\"", name, i,
                       dtype);
        if (i == 0) {
            rec->is_float = is_float;
            if (is_float) {
                if (n != 1)
                    return bad(r, QNPU_ERR_FORMAT, list, "'%s': a float encoding must be alone in its list", name);
                return float_bits(r, enc, "bitwidth", name, &rec->bits);
            }
            if ((s = rec_alloc(r, rec, n, 1)) != QNPU_OK)
                return s;
            rec->per_channel = n > 1;
        } else if (is_float) {
            return bad(r, QNPU_ERR_FORMAT, node, "'%s' entry %d: float among integer encodings", name, i);
        }
        int64_t b;
        const qnpu__json *v = member(enc, "bitwidth");
        if (!int_value(v, 4, 32, &b))
            return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s' entry %d: 'bitwidth' must be an integer from 4 to 32",
                       name, i);
        const char *sym = str_member(enc, "is_symmetric", &node);
        if (!sym || (strcmp(sym, "True") && strcmp(sym, "False")))
            return bad(r, QNPU_ERR_FORMAT, node ? node : enc,
                       "'%s' entry %d: 'is_symmetric' must be the string \"True\" or \"False\"%s", name, i,
                       node && node->type == QNPU__JSON_BOOL ? " (a JSON boolean is version 1.0.0's is_sym)" : "");
        int is_sym = !strcmp(sym, "True");
        if (i == 0) {
            rec->bits = (int)b;
            rec->sym = is_sym;
        } else if (b != rec->bits || is_sym != rec->sym) {
            return bad(r, QNPU_ERR_FORMAT, enc, "'%s' entry %d: bitwidth %lld / is_symmetric %s differ from entry "
                       "0's %d / %s", name, i, (long long)b, sym, rec->bits, rec->sym ? "True" : "False");
        }
        v = member(enc, "scale");
        if (!scale_value(v, &rec->scale[i]))
            return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s' entry %d: 'scale' must be a finite positive float32",
                       name, i);
        v = member(enc, "offset");
        if (!int_value(v, -(((int64_t)1 << b) - 1), 0, &rec->offset[i]))
            return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s' entry %d: 'offset' must be an integer from %lld to 0",
                       name, i, -(((long long)1 << b) - 1));
        if ((s = check_min_max(r, enc, name, i, (int)b, rec->scale[i], rec->offset[i], &rec->min[i],
                               &rec->max[i])) != QNPU_OK)
            return s;
    }
    return QNPU_OK;
}

/* One Encoding object of a 1.0.0 file. */
static qnpu_status read_v100_encoding(const reader *r, int param, int64_t idx, const qnpu__json *enc,
                                      qnpu__enc_record *rec)
{
    const char *sec = section_name(param);
    rec->param = param;
    if (enc->type != QNPU__JSON_OBJECT)
        return bad(r, QNPU_ERR_FORMAT, enc, "%s[%lld]: an encoding must be an object, not %s", sec, (long long)idx,
                   qnpu__json_type_name(enc));
    const qnpu__json *node;
    const char *nm = str_member(enc, "name", &node);
    if (!nm)
        return bad(r, QNPU_ERR_FORMAT, node ? node : enc, "%s[%lld]: 'name' must be a string", sec, (long long)idx);
    qnpu_status s = set_name(r, rec, node, nm, node->len);
    if (s != QNPU_OK)
        return s;
    const char *name = rec->name;
    const char *et = str_member(enc, "enc_type", &node);
    if (!et)
        return bad(r, QNPU_ERR_FORMAT, node ? node : enc, "'%s': 'enc_type' must be a string", name);
    if (!strcmp(et, "PER_BLOCK") || !strcmp(et, "LPBQ"))
        return bad(r, QNPU_ERR_UNSUPPORTED, node, "'%s': enc_type %s is not supported (PER_TENSOR, PER_CHANNEL)",
                   name, et);
    if (strcmp(et, "PER_TENSOR") && strcmp(et, "PER_CHANNEL"))
        return bad(r, QNPU_ERR_FORMAT, node, "'%s': unknown enc_type '%s'", name, et);
    rec->per_channel = !strcmp(et, "PER_CHANNEL");
    const char *dtype = str_member(enc, "dtype", &node);
    if (!dtype || (strcmp(dtype, "INT") && strcmp(dtype, "FLOAT")))
        return bad(r, QNPU_ERR_FORMAT, node ? node : enc, "'%s': 'dtype' must be \"INT\" or \"FLOAT\"", name);
    if (!strcmp(dtype, "FLOAT")) {
        rec->is_float = 1;
        return float_bits(r, enc, "bw", name, &rec->bits);
    }
    int64_t b;
    const qnpu__json *v = member(enc, "bw");
    if (!int_value(v, 2, 32, &b))
        return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s': 'bw' must be an integer from 2 to 32", name);
    rec->bits = (int)b;
    v = member(enc, "is_sym");
    if (!qnpu__json_bool(v, &rec->sym))
        return bad(r, QNPU_ERR_FORMAT, v ? v : enc, "'%s': 'is_sym' must be a JSON boolean%s", name,
                   v && v->type == QNPU__JSON_STRING ? " (the string form is version 0.6.1's is_symmetric)" : "");
    const qnpu__json *sc = member(enc, "scale"), *of = member(enc, "offset");
    if (!sc || sc->type != QNPU__JSON_ARRAY || sc->len == 0)
        return bad(r, QNPU_ERR_FORMAT, sc ? sc : enc, "'%s': 'scale' must be a non-empty array", name);
    if (!of || of->type != QNPU__JSON_ARRAY || of->len != sc->len)
        return bad(r, QNPU_ERR_FORMAT, of ? of : enc, "'%s': 'offset' must be an array as long as 'scale' (%zu)",
                   name, sc->len);
    if (!rec->per_channel && sc->len != 1)
        return bad(r, QNPU_ERR_FORMAT, sc, "'%s': PER_TENSOR with %zu scales", name, sc->len);
    if ((s = rec_alloc(r, rec, (int64_t)sc->len, 0)) != QNPU_OK)
        return s;
    int64_t i = 0;
    for (const qnpu__json *a = sc->first, *o = of->first; a && o; a = a->next, o = o->next, i++) {
        if (!scale_value(a, &rec->scale[i]))
            return bad(r, QNPU_ERR_FORMAT, a, "'%s': scale[%lld] must be a finite positive float32", name,
                       (long long)i);
        if (!int_value(o, -(((int64_t)1 << b) - 1), 0, &rec->offset[i]))
            return bad(r, QNPU_ERR_FORMAT, o, "'%s': offset[%lld] must be an integer from %lld to 0", name,
                       (long long)i, -(((long long)1 << b) - 1));
    }
    return QNPU_OK;
}

static int cmp_rec_name(const void *a, const void *b)
{
    const qnpu__enc_record *x = *(const qnpu__enc_record *const *)a, *y = *(const qnpu__enc_record *const *)b;
    if (x->param != y->param)
        return x->param - y->param;
    return strcmp(x->name, y->name);
}

static qnpu_status check_unique(const reader *r)
{
    qnpu__encodings *e = r->e;
    if (e->n_rec < 2)
        return QNPU_OK;
    const qnpu__enc_record **v = qnpu__malloc((size_t)e->n_rec * sizeof *v);
    if (!v)
        return bad(r, QNPU_ERR_NO_MEMORY, NULL, "out of memory");
    for (int64_t i = 0; i < e->n_rec; i++)
        v[i] = &e->rec[i];
    qsort(v, (size_t)e->n_rec, sizeof *v, cmp_rec_name);
    qnpu_status s = QNPU_OK;
    for (int64_t i = 1; i < e->n_rec && s == QNPU_OK; i++)
        if (v[i]->param == v[i - 1]->param && !strcmp(v[i]->name, v[i - 1]->name))
            s = bad(r, QNPU_ERR_FORMAT, NULL, "%s: '%s' has more than one encoding", section_name(v[i]->param),
                    v[i]->name);
    qnpu__free(v);
    return s;
}

static qnpu_status read_doc(reader *r, const qnpu__json *root)
{
    if (!root || root->type != QNPU__JSON_OBJECT)
        return bad(r, QNPU_ERR_FORMAT, root, "the top level must be an object, not %s", qnpu__json_type_name(root));
    const qnpu__json *vn;
    const char *ver = str_member(root, "version", &vn);
    if (!ver)
        return bad(r, QNPU_ERR_FORMAT, vn ? vn : root, "'version' must be a string (\"0.6.1\" or \"1.0.0\")");
    if (!strcmp(ver, "0.6.1"))
        r->e->version = QNPU__ENC_V061;
    else if (!strcmp(ver, "1.0.0"))
        r->e->version = QNPU__ENC_V100;
    else
        return bad(r, QNPU_ERR_UNSUPPORTED, vn, "encodings version '%s' is not supported (0.6.1 or 1.0.0)", ver);
    int v061 = r->e->version == QNPU__ENC_V061;
    const qnpu__json *sec[2];
    int64_t total = 0;
    for (int p = 0; p < 2; p++) {
        sec[p] = member(root, section_name(p));
        qnpu__json_type want = v061 ? QNPU__JSON_OBJECT : QNPU__JSON_ARRAY;
        if (sec[p] && sec[p]->type != want)
            return bad(r, QNPU_ERR_FORMAT, sec[p], "'%s' must be %s in version %s, not %s", section_name(p),
                       v061 ? "an object" : "an array", ver, qnpu__json_type_name(sec[p]));
        total += sec[p] ? (int64_t)sec[p]->len : 0;
    }
    const qnpu__json *ex = member(root, "excluded_layers");
    if (ex && ex->type != QNPU__JSON_ARRAY)
        return bad(r, QNPU_ERR_FORMAT, ex, "'excluded_layers' must be an array, not %s", qnpu__json_type_name(ex));
    const qnpu__json *qa = member(root, "quantizer_args");
    if (qa && qa->type != QNPU__JSON_OBJECT)
        return bad(r, QNPU_ERR_FORMAT, qa, "'quantizer_args' must be an object, not %s", qnpu__json_type_name(qa));
    if (total && !(r->e->rec = qnpu__calloc((size_t)total, sizeof *r->e->rec)))
        return bad(r, QNPU_ERR_NO_MEMORY, NULL, "out of memory");
    for (int p = 0; p < 2; p++) {
        int64_t i = 0;
        for (const qnpu__json *c = sec[p] ? sec[p]->first : NULL; c; c = c->next, i++) {
            qnpu__enc_record *rec = &r->e->rec[r->e->n_rec++];
            qnpu_status s = v061 ? read_v061_tensor(r, p, c, rec) : read_v100_encoding(r, p, i, c, rec);
            if (s != QNPU_OK)
                return s;
        }
        if (p == 0)
            r->e->n_act = r->e->n_rec;
    }
    return check_unique(r);
}

qnpu_status qnpu__encodings_parse(const char *name, const void *text, size_t len, qnpu__encodings **out)
{
    if (!out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__encodings_parse: NULL output");
    *out = NULL;
    if (!text && len)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__encodings_parse: NULL text");
    reader r = {name ? name : "encodings", NULL};
    qnpu__json_doc *doc;
    qnpu_status s = qnpu__json_parse(r.file, text ? text : "", len, &doc);
    if (s != QNPU_OK)
        return s;
    if (!(r.e = qnpu__calloc(1, sizeof *r.e))) {
        qnpu__json_free(doc);
        return bad(&r, QNPU_ERR_NO_MEMORY, NULL, "out of memory");
    }
    s = read_doc(&r, qnpu__json_root(doc));
    qnpu__json_free(doc);
    if (s != QNPU_OK) {
        qnpu__encodings_free(r.e);
        return s;
    }
    *out = r.e;
    return QNPU_OK;
}

qnpu_status qnpu__encodings_read(const char *path, qnpu__encodings **out)
{
    if (!path || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__encodings_read: NULL argument");
    char *text;
    size_t len;
    qnpu_status s = qnpu__read_text(path, &text, &len);
    if (s != QNPU_OK)
        return s;
    s = qnpu__encodings_parse(path, text, len, out);
    qnpu__free(text);
    return s;
}

void qnpu__encodings_free(qnpu__encodings *e)
{
    if (!e)
        return;
    for (int64_t i = 0; e->rec && i < e->n_rec; i++) {
        qnpu__enc_record *r = &e->rec[i];
        qnpu__free(r->name);
        qnpu__free(r->scale);
        qnpu__free(r->offset);
        qnpu__free(r->min);
        qnpu__free(r->max);
    }
    qnpu__free(e->rec);
    qnpu__free(e);
}

const qnpu__enc_record *qnpu__encodings_find(const qnpu__encodings *e, int param, const char *name)
{
    if (!e || !name)
        return NULL;
    int64_t lo = param ? e->n_act : 0, hi = param ? e->n_rec : e->n_act;
    for (int64_t i = lo; i < hi; i++)
        if (!strcmp(e->rec[i].name, name))
            return &e->rec[i];
    return NULL;
}

/* ---- comparison with a model -------------------------------------------------------------- */

static qnpu_status differ(const char *name, const char *fmt, ...) QNPU__PRINTF(2, 3);
static qnpu_status differ(const char *name, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qnpu__fail(QNPU_ERR_FORMAT, "encodings: '%s': %s", name, msg);
}

/* Compare channel i of record r with the encoding the writer derives. */
static qnpu_status same_value(const qnpu__enc_record *r, int64_t i, const qnpu__enc_value *e)
{
    if (memcmp(&r->scale[i], &e->scale, sizeof e->scale) != 0)
        return differ(r->name, "channel %lld: scale %.9g in the file, %.9g in the model", (long long)i,
                      (double)r->scale[i], (double)e->scale);
    if (r->offset[i] != e->offset)
        return differ(r->name, "channel %lld: offset %lld in the file, %lld expected", (long long)i,
                      (long long)r->offset[i], (long long)e->offset);
    if (r->min && (r->min[i] != e->min || r->max[i] != e->max))
        return differ(r->name, "channel %lld: min/max %.9g/%.9g in the file, %.9g/%.9g expected", (long long)i,
                      (double)r->min[i], (double)r->max[i], (double)e->min, (double)e->max);
    return QNPU_OK;
}

static qnpu_status same_kind(const qnpu__enc_record *r, int bits, int sym, int64_t n)
{
    if (r->is_float)
        return differ(r->name, "a float encoding for a %d-bit point", bits);
    if (r->bits != bits || r->sym != sym)
        return differ(r->name, "%d bits %s in the file, %d bits %s in the model", r->bits,
                      r->sym ? "symmetric" : "asymmetric", bits, sym ? "symmetric" : "asymmetric");
    if (r->n != n)
        return differ(r->name, "%lld scales in the file, %lld in the model", (long long)r->n, (long long)n);
    return QNPU_OK;
}

qnpu_status qnpu__encodings_compare(const qnpu__encodings *e, const qnpu_qmodel *q)
{
    if (!e)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu__encodings_compare: NULL encodings");
    qnpu_status s = check_model(q, "qnpu__encodings_compare");
    if (s != QNPU_OK)
        return s;
    char name[64];
    int64_t want_act = 0;
    for (int64_t i = 0; i < act_count(q); i++) {
        const qnpu__qp *p = act_point(q, i, name, sizeof name);
        const qnpu__enc_record *r = qnpu__encodings_find(e, 0, name);
        if (p->bits == 0) {
            if (r)
                return differ(name, "an encoding for a pass-through (0-bit) point");
            continue;
        }
        want_act++;
        if (!r)
            return differ(name, "no activation encoding");
        qnpu__enc_value v;
        if ((s = qnpu__encoding_of(name, p->s, p->z, p->bits, p->sym, &v)) != QNPU_OK ||
            (s = same_kind(r, p->bits, p->sym, 1)) != QNPU_OK || (s = same_value(r, 0, &v)) != QNPU_OK)
            return s;
    }
    for (int64_t i = 0; i < weight_count(q); i++) {
        const qnpu__qlinear *w = weight_at(q, i, name, sizeof name);
        const qnpu__enc_record *r = qnpu__encodings_find(e, 1, name);
        if (!r)
            return differ(name, "no parameter encoding");
        if ((s = same_kind(r, w->bits, 1, w->rows)) != QNPU_OK)
            return s;
        if (e->version == QNPU__ENC_V100 && !r->per_channel)
            return differ(name, "enc_type PER_TENSOR for a per-channel weight");
        for (int64_t c = 0; c < w->rows; c++) {
            qnpu__enc_value v;
            if ((s = qnpu__encoding_of(name, w->scale[c], 0, w->bits, 1, &v)) != QNPU_OK ||
                (s = same_value(r, c, &v)) != QNPU_OK)
                return s;
        }
    }
    /* names are unique per section (the reader checks), so equal counts mean no extra names */
    if (e->n_act != want_act || e->n_rec - e->n_act != weight_count(q)) {
        for (int64_t i = 0; i < e->n_rec; i++) {
            int found = 0;
            for (int64_t j = 0; j < (e->rec[i].param ? weight_count(q) : act_count(q)) && !found; j++) {
                if (e->rec[i].param)
                    weight_at(q, j, name, sizeof name);
                else
                    act_point(q, j, name, sizeof name);
                found = !strcmp(name, e->rec[i].name);
            }
            if (!found)
                return differ(e->rec[i].name, "in %s but not a point of the model", section_name(e->rec[i].param));
        }
        return qnpu__fail(QNPU_ERR_FORMAT, "encodings: %lld + %lld encodings, the model has %lld + %lld",
                          (long long)e->n_act, (long long)(e->n_rec - e->n_act), (long long)want_act,
                          (long long)weight_count(q));
    }
    return QNPU_OK;
}
