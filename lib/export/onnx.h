/* onnx.h — ONNX export of a quantized model (FORMATS.md §1.4 and §2; docs/export.md). Private to
 * lib/ and the tests. */
#ifndef QNPU_EXPORT_ONNX_H
#define QNPU_EXPORT_ONNX_H

#include "quantnpu.h"
#include "../calib/qgraph.h"

/* Write q as an ONNX model to `path`, atomically (qnpu__afile_*). qdq = 1: the QDQ graph (every
 * QP a QuantizeLinear -> DequantizeLinear pair, weights int4/int8 initializers -> per-axis DQ);
 * opts' export.onnx_flavor picks standard (ai.onnx 21, IR 10) or compat (ai.onnx 17 +
 * com.microsoft 1 for 16- and 4-bit Q/DQ, IR 8). qdq = 0: the float graph of FORMATS §1.4 (same
 * tensor names, dequantized weights, opset 17, linears as export.qnn.linear_as). The graph runs
 * export.seq_len tokens after export.past_len cached positions (K/V inputs when > 0; 0 = a
 * prefill from an empty cache). opts may be NULL (defaults).
 * QNPU_ERR_INVALID_ARG (NULL), QNPU_ERR_UNSUPPORTED (an activation QP of a bit-width ONNX Q/DQ
 * cannot express, or a model over the 2 GB protobuf limit), QNPU_ERR_IO, QNPU_ERR_NO_MEMORY. */
qnpu_status qnpu__onnx_write(const qnpu_qmodel *q, const qnpu_options *opts, int qdq, const char *path);

/* The same model serialized into a new buffer (qnpu__free it): what qnpu__onnx_write writes. */
qnpu_status qnpu__onnx_pack(const qnpu_qmodel *q, const qnpu_options *opts, int qdq,
                            unsigned char **out, size_t *len);

/* ONNX TensorProto.DataType numbers used (the 1.12 schema lacks the 4-bit ones). */
enum {
    QNPU__OT_FLOAT = 1, QNPU__OT_UINT8 = 2, QNPU__OT_INT8 = 3, QNPU__OT_UINT16 = 4,
    QNPU__OT_INT16 = 5, QNPU__OT_INT32 = 6, QNPU__OT_INT64 = 7, QNPU__OT_BOOL = 9,
    QNPU__OT_UINT4 = 21, QNPU__OT_INT4 = 22
};

#endif
