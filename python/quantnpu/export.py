"""Exporters: a QuantizedModel written in the deployment formats (docs/export.md) - the
library's .qnpu, the QNN/AIMET encodings JSON, an ONNX QDQ graph and the float ONNX graph that
goes with the encodings.

    with quantnpu.QuantizedModel.load("w4a8.qnpu") as q:
        quantnpu.export(q, "w4a8.onnx", "onnx", export_onnx_flavor="compat", export_seq_len=64)
        with quantnpu.Exporter(q) as e:
            e.write("w4a8.encodings", "encodings")
            e.write("w4a8-float.onnx", "onnx-float")
"""

import os
from ctypes import byref, c_void_p
from enum import IntEnum

from ._ffi import lib
from ._util import Handle, fspath_bytes
from .enums import Status
from .errors import check, fail
from .options import Options
from .quantize import QuantizedModel

__all__ = ["ExportFormat", "Exporter", "export"]


class ExportFormat(IntEnum):
    """qnpu_export_format; the names are also accepted as text ("onnx", "onnx-float", ...)."""
    QNPU = 0
    ENCODINGS = 1
    ONNX_QDQ = 2
    ONNX_FLOAT = 3


_NAMES = {"qnpu": ExportFormat.QNPU, "encodings": ExportFormat.ENCODINGS,
          "onnx": ExportFormat.ONNX_QDQ, "onnx-qdq": ExportFormat.ONNX_QDQ,
          "onnx-float": ExportFormat.ONNX_FLOAT}


def _format(fmt):
    if isinstance(fmt, str):
        if fmt not in _NAMES:
            fail(Status.INVALID_ARG, f"unknown export format {fmt!r} (one of {', '.join(_NAMES)})")
        return _NAMES[fmt]
    return ExportFormat(fmt)


class Exporter(Handle):
    """qnpu_exporter over a QuantizedModel (kept open while the exporter lives) or a .qnpu path
    (loaded and owned). Options (an Options, a mapping, keywords with dots as underscores):
    export.encodings_version, export.onnx_flavor (standard | compat), export.seq_len,
    export.past_len, export.qnn.linear_as (conv1x1 | gemm); they are copied at creation."""

    _free_name = "qnpu_exporter_free"

    def __init__(self, model, options=None, **kwargs):
        owned = not isinstance(model, QuantizedModel)
        if owned:
            model = QuantizedModel.load(os.fspath(model))
        opt_h, tmp = Options._coerce(options, kwargs)
        try:
            model_h = model._retain()
            h = c_void_p()
            try:
                check(lib.qnpu_exporter_create(model_h, opt_h, byref(h)))
            except BaseException:
                model._release()
                if owned:
                    model.close()
                raise
        finally:
            if tmp is not None:
                tmp.close()
        self._h = h.value
        self._model = model
        self._owned = owned

    def _free(self):
        super()._free()
        model, self._model = self._model, None
        if model is not None:
            model._release()
            if self._owned:
                model.close()

    def write(self, path, format="onnx"):
        """Write the model to `path` (atomically) as `format`: an ExportFormat or "qnpu",
        "encodings", "onnx" (the QDQ graph) or "onnx-float". Returns the path."""
        check(lib.qnpu_exporter_write(self._handle(), int(_format(format)), fspath_bytes(path)))
        return path


def export(model, path, format="onnx", options=None, **kwargs):
    """Write `model` (a QuantizedModel or a .qnpu path) to `path` as `format` with one
    short-lived Exporter; keywords set options (export_onnx_flavor="compat")."""
    with Exporter(model, options, **kwargs) as e:
        return e.write(path, format)


# quantnpu.export is this function (the package re-exports it over the submodule's name); the
# module's names stay reachable through it, so `from quantnpu import export` followed by
# export.export(...) or export.Exporter(...) works as well as export(...).
export.export = export
export.Exporter = Exporter
export.ExportFormat = ExportFormat
