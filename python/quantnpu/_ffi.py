"""Low-level ctypes declarations of libquantnpu (include/quantnpu.h).

This module loads the shared library and declares ``argtypes`` and ``restype`` for every public
function, in one table (``_FUNCTIONS``). Nothing here raises on a non-OK status; that is the job
of :mod:`quantnpu.errors` and the classes in :mod:`quantnpu`.

The library is loaded by its SONAME, ``libquantnpu.so.0``, which the dynamic loader finds in the
standard directories (the Debian runtime package installs only that name). For in-tree tests,
the environment variable ``QNPU_LIBRARY`` gives a path to load instead, for example
``QNPU_LIBRARY=$PWD/build/libquantnpu.so.0``. ``ctypes.util.find_library`` is deliberately not
used: it shells out to ldconfig or a compiler, and CPython has soft-deprecated it.

Type mapping (C -> ctypes):
    handles (qnpu_model *, ...)          c_void_p
    out-handles (qnpu_model **)          POINTER(c_void_p)
    qnpu_status, enums, int              c_int
    int64_t / int32_t / unsigned         c_int64 / c_int32 / c_uint
    size_t                               c_size_t
    const char * (in)                    c_char_p (bytes)
    const char * (returned)              c_char_p (copied into bytes; None for NULL)
    callbacks                            CFUNCTYPE objects below
"""

import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_void_p)

__all__ = [
    "SONAME", "lib", "library_path", "FUNCTION_NAMES",
    "PROGRESS_FN", "LOG_FN", "ALLOC_FN", "FREE_FN",
]

SONAME = "libquantnpu.so.0"

# ---- callback types (quantnpu.h, "Callbacks") --------------------------------------------------

#: int (*qnpu_progress_fn)(void *user, const char *stage, int64_t done, int64_t total)
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int64, c_int64)
#: void (*qnpu_log_fn)(void *user, int level, const char *message)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
#: void *(*qnpu_alloc_fn)(void *user, size_t size, size_t alignment)
ALLOC_FN = CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_size_t)
#: void (*qnpu_free_fn)(void *user, void *ptr)
FREE_FN = CFUNCTYPE(None, c_void_p, c_void_p)

# ---- short names for the table ------------------------------------------------------------------

_status = c_int              # qnpu_status
_enum = c_int                # qnpu_param, qnpu_model_dim, qnpu_model_hparam, int type
_handle = c_void_p           # every opaque handle, const or not
_out_handle = POINTER(c_void_p)
_str = c_char_p

# ---- the one table: name, restype, argtypes, in header order ------------------------------------

_FUNCTIONS = (
    # Version
    ("qnpu_version_number", c_uint, ()),
    ("qnpu_version_string", _str, ()),
    # Status codes and errors
    ("qnpu_status_string", _str, (_status,)),
    ("qnpu_last_error", _str, ()),
    # Global settings
    ("qnpu_set_log_callback", _status, (LOG_FN, c_void_p)),
    ("qnpu_set_log_level", _status, (c_int,)),
    ("qnpu_set_allocator", _status, (ALLOC_FN, FREE_FN, c_void_p)),
    # Parameters
    ("qnpu_param_count", c_int, ()),
    ("qnpu_param_at", _status, (c_int, POINTER(_enum))),
    ("qnpu_param_from_name", _status, (_str, POINTER(_enum))),
    ("qnpu_param_info", _status,
     (_enum, POINTER(c_char_p), POINTER(c_int), POINTER(c_double), POINTER(c_double))),
    ("qnpu_param_doc", _str, (_enum,)),
    ("qnpu_param_choices", _str, (_enum,)),
    # Options
    ("qnpu_options_create", _status, (_out_handle,)),
    ("qnpu_options_free", None, (_handle,)),
    ("qnpu_options_clone", _status, (_handle, _out_handle)),
    ("qnpu_options_set_int", _status, (_handle, _enum, c_int64)),
    ("qnpu_options_set_float", _status, (_handle, _enum, c_double)),
    ("qnpu_options_set_str", _status, (_handle, _enum, _str)),
    ("qnpu_options_get_int", _status, (_handle, _enum, POINTER(c_int64))),
    ("qnpu_options_get_float", _status, (_handle, _enum, POINTER(c_double))),
    ("qnpu_options_get_str", _status, (_handle, _enum, POINTER(c_char_p))),
    ("qnpu_options_load_recipe", _status, (_handle, _str)),
    ("qnpu_recipe_preset_name", _str, (c_int,)),
    ("qnpu_recipe_preset_text", _status, (_str, POINTER(c_char_p))),
    # Model
    ("qnpu_model_load", _status, (_str, _handle, _out_handle)),
    ("qnpu_model_free", None, (_handle,)),
    ("qnpu_model_get_dim", _status, (_handle, _enum, POINTER(c_int64))),
    ("qnpu_model_get_hparam", _status, (_handle, _enum, POINTER(c_double))),
    ("qnpu_model_arch", _str, (_handle,)),
    ("qnpu_model_format", _str, (_handle,)),
    ("qnpu_model_tensor_count", c_int64, (_handle,)),
    ("qnpu_model_tensor_name", _str, (_handle, c_int64)),
    ("qnpu_model_tensor_find", _status, (_handle, _str, POINTER(c_int64))),
    ("qnpu_model_tensor_shape", _status, (_handle, c_int64, POINTER(c_int64), POINTER(c_int64))),
    ("qnpu_model_tensor_read", _status, (_handle, c_int64, POINTER(c_float), c_size_t)),
    ("qnpu_model_memory_usage", _status, (_handle, POINTER(c_size_t), POINTER(c_size_t))),
    # Tokenizer
    ("qnpu_tokenizer_load", _status, (_str, c_int64, _out_handle)),
    ("qnpu_tokenizer_from_model", _status, (_handle, _out_handle)),
    ("qnpu_tokenizer_free", None, (_handle,)),
    ("qnpu_tokenizer_vocab_size", c_int64, (_handle,)),
    ("qnpu_tokenizer_bos", c_int32, (_handle,)),
    ("qnpu_tokenizer_eos", c_int32, (_handle,)),
    ("qnpu_tokenizer_encode", _status,
     (_handle, _str, c_size_t, c_int, POINTER(c_int32), c_size_t, POINTER(c_size_t))),
    ("qnpu_tokenizer_decode", _status,
     (_handle, c_int32, c_int32, _str, c_size_t, POINTER(c_size_t))),
    ("qnpu_tokenizer_piece", _str, (_handle, c_int32)),
    # Float session
    ("qnpu_float_session_create", _status, (_handle, _handle, _out_handle)),
    ("qnpu_float_session_free", None, (_handle,)),
    ("qnpu_float_session_reset", None, (_handle,)),
    ("qnpu_float_session_pos", c_int64, (_handle,)),
    ("qnpu_float_session_set_progress", None, (_handle, PROGRESS_FN, c_void_p)),
    ("qnpu_float_session_eval", _status,
     (_handle, POINTER(c_int32), c_size_t, c_int, POINTER(c_float), c_size_t)),
    ("qnpu_float_session_perplexity_ids", _status,
     (_handle, POINTER(c_int32), c_size_t, c_int64, POINTER(c_double), POINTER(c_int64))),
    ("qnpu_float_session_perplexity", _status,
     (_handle, _handle, _str, c_size_t, c_int64, POINTER(c_double), POINTER(c_int64))),
    ("qnpu_tokenize_paragraphs", _status,
     (_handle, _str, c_size_t, POINTER(POINTER(c_int32)), POINTER(c_size_t))),
    ("qnpu_free", None, (c_void_p,)),
    # Rotator, calibrator
    ("qnpu_rotator_create", _status, (_handle, _handle, _out_handle)),
    ("qnpu_rotator_free", None, (_handle,)),
    ("qnpu_rotator_run", _status, (_handle, _out_handle)),
    ("qnpu_calibrator_create", _status, (_handle, _handle, _handle, _out_handle)),
    ("qnpu_calibrator_free", None, (_handle,)),
    ("qnpu_calibrator_set_progress", None, (_handle, PROGRESS_FN, c_void_p)),
    ("qnpu_calibrator_run", _status, (_handle, _str, c_size_t, _out_handle)),
    ("qnpu_calibrator_run_ids", _status, (_handle, POINTER(c_int32), c_size_t, _out_handle)),
    # Optimizer (the two-stage Quant.npu pipeline)
    ("qnpu_optimizer_create", _status, (_handle, _handle, _handle, _out_handle)),
    ("qnpu_optimizer_free", None, (_handle,)),
    ("qnpu_optimizer_set_progress", None, (_handle, PROGRESS_FN, c_void_p)),
    ("qnpu_optimizer_last_loss", c_double, (_handle,)),
    ("qnpu_optimizer_run", _status, (_handle, _str, c_size_t, _out_handle)),
    ("qnpu_optimizer_run_ids", _status, (_handle, POINTER(c_int32), c_size_t, _out_handle)),
    ("qnpu_optimizer_report_json", _status, (_handle, _str, c_size_t, POINTER(c_size_t))),
    # Quantized model
    ("qnpu_qmodel_free", None, (_handle,)),
    ("qnpu_qmodel_save", _status, (_handle, _str)),
    ("qnpu_qmodel_load", _status, (_str, _handle, _out_handle)),
    # Report
    ("qnpu_report_create", _status,
     (_handle, _handle, _handle, POINTER(c_int32), c_size_t, c_int64, _out_handle)),
    ("qnpu_report_free", None, (_handle,)),
    ("qnpu_report_count", c_int64, (_handle,)),
    ("qnpu_report_point", _status,
     (_handle, c_int64, POINTER(c_char_p), POINTER(c_int), POINTER(c_double), POINTER(c_double),
      POINTER(c_double))),
    ("qnpu_report_totals", _status,
     (_handle, POINTER(c_double), POINTER(c_double), POINTER(c_double))),
    ("qnpu_report_write_svg", _status, (_handle, _str)),
    ("qnpu_report_write_json", _status, (_handle, _str)),
    ("qnpu_qmodel_qp_count", c_int64, (_handle,)),
    ("qnpu_qmodel_qp_info", _status,
     (_handle, c_int64, POINTER(_str), POINTER(c_int), POINTER(c_int), POINTER(c_double),
      POINTER(c_int32))),
    ("qnpu_tokenizer_from_qmodel", _status, (_handle, _out_handle)),
    ("qnpu_qmodel_get_dim", _status, (_handle, c_int, POINTER(c_int64))),
    ("qnpu_qmodel_perplexity_ids", _status,
     (_handle, _handle, POINTER(c_int32), c_size_t, c_int64, POINTER(c_double), POINTER(c_int64))),
    # Exporter
    ("qnpu_exporter_create", _status, (_handle, _handle, _out_handle)),
    ("qnpu_exporter_free", None, (_handle,)),
    ("qnpu_exporter_write", _status, (_handle, c_int, _str)),
    # Integer session
    ("qnpu_session_create", _status, (_handle, _handle, _out_handle)),
    ("qnpu_session_open", _status, (_str, _handle, _out_handle)),
    ("qnpu_session_free", None, (_handle,)),
    ("qnpu_session_qmodel", _handle, (_handle,)),
    ("qnpu_session_reset", None, (_handle,)),
    ("qnpu_session_pos", c_int64, (_handle,)),
    ("qnpu_session_set_progress", None, (_handle, PROGRESS_FN, c_void_p)),
    ("qnpu_session_eval", _status,
     (_handle, POINTER(c_int32), c_size_t, c_int, POINTER(c_float), c_size_t)),
    ("qnpu_session_perplexity_ids", _status,
     (_handle, POINTER(c_int32), c_size_t, c_int64, POINTER(c_double), POINTER(c_int64))),
    # Compare
    ("qnpu_compare_run", _status,
     (_handle, _handle, POINTER(c_int32), c_size_t, c_int64, c_int64, _out_handle)),
    ("qnpu_compare_free", None, (_handle,)),
    ("qnpu_compare_count", c_int64, (_handle,)),
    ("qnpu_compare_point", _status,
     (_handle, c_int64, POINTER(_str), POINTER(c_int64), POINTER(c_int64), POINTER(c_int64))),
    ("qnpu_compare_totals", _status,
     (_handle, POINTER(c_double), POINTER(c_double), POINTER(c_double), POINTER(c_int64))),
)

#: every public function name, in header order
FUNCTION_NAMES = tuple(name for name, _, _ in _FUNCTIONS)


def _load():
    """Load the library (QNPU_LIBRARY or the SONAME) and apply the table."""
    path = os.environ.get("QNPU_LIBRARY") or SONAME
    try:
        handle = ctypes.CDLL(path)
    except OSError as e:
        hint = ("set QNPU_LIBRARY to the path of libquantnpu.so.0"
                if path == SONAME else "check the QNPU_LIBRARY environment variable")
        raise ImportError(f"quantnpu: cannot load {path!r} ({e}); {hint}") from e
    # The import-time check: every function of the table must be exported by the library.
    missing = [name for name in FUNCTION_NAMES if not hasattr(handle, name)]
    if missing:
        raise ImportError(f"quantnpu: {path!r} does not export {', '.join(missing)} "
                          f"(an older or incomplete libquantnpu?)")
    for name, restype, argtypes in _FUNCTIONS:
        fn = getattr(handle, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
    return handle, path


lib, library_path = _load()
