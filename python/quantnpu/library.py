"""Process-wide functions: versions and logging."""

from ._ffi import LOG_FN, lib
from ._util import c_text
from .enums import LogLevel
from .errors import check

__all__ = ["version", "version_number", "set_log_callback", "set_log_level"]

# The installed log callback's CFUNCTYPE object. The library keeps the bare C pointer, so the
# object must stay referenced here for as long as it is installed.
_log_cfunc = None
_log_fn = None


def version():
    """QNPU_VERSION_STRING of the library actually loaded, e.g. "0.1.0"."""
    return c_text(lib.qnpu_version_string())


def version_number():
    """QNPU_VERSION_NUMBER of the library actually loaded (major*10000 + minor*100 + patch)."""
    return lib.qnpu_version_number()


def set_log_callback(fn):
    """Send the library's log lines to `fn(level: LogLevel, message: str)`; None restores
    silence. Process-wide, and only allowed while no handle (Options, Model, Tokenizer,
    FloatSession) exists: otherwise QnpuError(STATE). Lines at or below the level of
    set_log_level() (default WARN) are delivered. `fn` runs on the thread that made the API
    call; an exception it raises is reported by ctypes as unraisable and otherwise ignored."""
    global _log_cfunc, _log_fn
    if fn is None:
        check(lib.qnpu_set_log_callback(LOG_FN(), None))  # LOG_FN() is a NULL pointer
        _log_cfunc = _log_fn = None
        return
    if not callable(fn):
        raise TypeError("log callback must be callable or None")

    def trampoline(user, level, message):
        try:
            level = LogLevel(level)
        except ValueError:
            pass
        fn(level, message.decode("utf-8", errors="replace") if message is not None else "")

    cfunc = LOG_FN(trampoline)
    check(lib.qnpu_set_log_callback(cfunc, None))
    # replaced only on success: after a failure C still holds the previous pointer
    _log_cfunc, _log_fn = cfunc, fn


def set_log_level(level):
    """Deliver log lines at or below `level` (a LogLevel or 0..4; 0 = off)."""
    check(lib.qnpu_set_log_level(int(level)))
