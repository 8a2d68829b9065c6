"""quantnpu - Python (ctypes) binding of libquantnpu.

    import quantnpu
    with quantnpu.Model("stories260K.bin") as model, \\
         quantnpu.Tokenizer.from_model(model) as tok, \\
         quantnpu.FloatSession(model, num_threads=1) as session:
        ppl, scored = session.perplexity(open("valid.txt").read(), tok)

The library is loaded by its SONAME, libquantnpu.so.0, or from the path in the environment
variable QNPU_LIBRARY. Every failing call raises QnpuError (see quantnpu.errors). Only the
standard library is required; numpy arrays are produced on request (numpy=True) and accepted
as buffers when numpy is installed. See docs/python.md.
"""

from ._ffi import library_path
from .enums import LogLevel, ModelDim, ModelHparam, Param, ParamType, Status
from .errors import (BufferTooSmallError, CancelledError, FormatError, InternalError,
                     InvalidArgError, IoError, NoMemoryError, NumericError, QnpuError, RecipeError,
                     StateError, UnsupportedError, error_class, last_error, status_string)
from .library import set_log_callback, set_log_level, version, version_number
from .model import MemoryUsage, Model
from .options import Options, ParamInfo, param_info, params, recipe_preset_text, recipe_presets
from .quantize import QuantizedModel, QuantPoint, calibrate, rotate
from .optimize import Optimizer, optimize
from .session import FloatSession, Perplexity, argmax
from .engine import IntSession
from .export import ExportFormat, Exporter, export
from .report import CompareTotals, ComparePoint, Comparison, Report, ReportPoint, ReportTotals
from .tokenizer import Tokenizer

__all__ = [
    "QnpuError", "Status", "Param", "ParamType", "ModelDim", "ModelHparam", "LogLevel",
    "version", "version_number", "set_log_callback", "set_log_level", "status_string",
    "last_error", "library_path",
    "Options", "ParamInfo", "params", "param_info", "recipe_presets", "recipe_preset_text",
    "Model", "MemoryUsage", "Tokenizer", "FloatSession", "Perplexity", "argmax",
    "QuantizedModel", "QuantPoint", "calibrate", "rotate", "Optimizer", "optimize", "IntSession",
    "evaluate",
    "error_class", "InvalidArgError", "NoMemoryError", "IoError", "FormatError", "UnsupportedError",
    "StateError", "CancelledError", "BufferTooSmallError", "NumericError", "RecipeError",
    "InternalError",
    "Report", "ReportPoint", "ReportTotals", "Comparison", "ComparePoint", "CompareTotals",
    "ExportFormat", "Exporter", "export",
]

#: version of this Python package (the library's is version())
__version__ = "0.1.0"


def evaluate(model_path, text_path, ctx=256, options=None, progress=None):
    """Perplexity of a model on a text file by the project's protocol (paragraphs split on
    blank lines, windows of `ctx` tokens), with the model's own tokenizer.
    Returns Perplexity(ppl, scored). `progress(stage, done, total)` may cancel by returning
    True."""
    with open(text_path, "rb") as f:
        text = f.read()
    with Model(model_path, options) as model, Tokenizer.from_model(model) as tok, \
            FloatSession(model, options) as session:
        if progress is not None:
            session.set_progress(progress)
        return session.perplexity(text, tok, ctx)
