/* exporter.c — the public exporter: one quantized model written in every deployment format
 * (docs/export.md). The formats live beside it: .qnpu (qnpu_file.c), the QNN/AIMET encodings
 * JSON (encodings.c), ONNX QDQ and float graphs (onnx.c). */
#include "../calib/qgraph.h"
#include "encodings.h"
#include "onnx.h"

struct qnpu_exporter {
    const qnpu_qmodel *q;
    qnpu_options *opts;
};

qnpu_status qnpu_exporter_create(const qnpu_qmodel *q, const qnpu_options *opts, qnpu_exporter **out)
{
    if (out)
        *out = NULL;
    if (!q || !out)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_exporter_create: NULL argument");
    qnpu_exporter *e = qnpu__calloc(1, sizeof *e);
    if (!e)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "qnpu_exporter_create: out of memory");
    qnpu_status s = opts ? qnpu_options_clone(opts, &e->opts) : qnpu_options_create(&e->opts);
    if (s != QNPU_OK) {
        qnpu__free(e);
        return s;
    }
    e->q = q;
    qnpu__handle_acquire(); /* the allocator cannot change while a handle lives */
    *out = e;
    return QNPU_OK;
}

void qnpu_exporter_free(qnpu_exporter *e)
{
    if (!e)
        return;
    qnpu_options_free(e->opts);
    qnpu__free(e);
    qnpu__handle_release();
}

qnpu_status qnpu_exporter_write(qnpu_exporter *e, qnpu_export_format fmt, const char *path)
{
    if (!e || !path || !*path)
        return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_exporter_write: NULL exporter or empty path");
    switch (fmt) {
    case QNPU_EXPORT_QNPU:
        return qnpu_qmodel_save(e->q, path);
    case QNPU_EXPORT_ENCODINGS:
        return qnpu__encodings_write(e->q, e->opts, path);
    case QNPU_EXPORT_ONNX_QDQ:
        return qnpu__onnx_write(e->q, e->opts, 1, path);
    case QNPU_EXPORT_ONNX_FLOAT:
        return qnpu__onnx_write(e->q, e->opts, 0, path);
    }
    return qnpu__fail(QNPU_ERR_INVALID_ARG, "qnpu_exporter_write: unknown format %d", (int)fmt);
}
