"""QnpuError and the status check used by every wrapper.

Every call that returns a qnpu_status other than QNPU_OK raises
``QnpuError(status, qnpu_status_string(status), qnpu_last_error())``. The message is read right
after the failing call, on the same thread, which is what qnpu_last_error() requires (the C
message is per thread and ctypes makes the call on the calling Python thread).
"""

from ._ffi import lib
from .enums import LogLevel, ModelDim, ModelHparam, Param, ParamType, Status

__all__ = ["QnpuError", "check", "status_string", "last_error", "error_class",
           "InvalidArgError", "NoMemoryError", "IoError", "FormatError", "UnsupportedError",
           "StateError", "CancelledError", "BufferTooSmallError", "NumericError", "RecipeError",
           "InternalError",
           "Status", "Param", "ParamType", "ModelDim", "ModelHparam", "LogLevel"]


def _text(b):
    """bytes from C (or None) -> str; invalid UTF-8 is replaced, never raised."""
    return "" if b is None else b.decode("utf-8", errors="replace")


def status_string(status):
    """qnpu_status_string: static English text for a status ("unknown status" if unknown)."""
    return _text(lib.qnpu_status_string(int(status)))


def last_error():
    """qnpu_last_error: the message of the last failing call on this thread ("" if none)."""
    return _text(lib.qnpu_last_error())


class QnpuError(Exception):
    """A libquantnpu call failed.

    Every status has its own subclass (InvalidArgError for Status.INVALID_ARG, IoError for
    Status.IO, CancelledError for Status.CANCELLED, ...; see error_class), and constructing a
    QnpuError with a status gives an instance of that subclass, so both
    ``except quantnpu.CancelledError`` and ``except QnpuError as e: if e.status == ...`` work.

    Attributes:
        status       the status, a :class:`Status` member (a plain int for a value this binding
                     does not know, e.g. from a newer library)
        status_name  qnpu_status_string(status), e.g. "invalid argument"
        message      qnpu_last_error() at the time of the failure: the detail with context
                     (file path, tensor, parameter name and bounds)
    """

    def __new__(cls, status=None, status_name=None, message=""):
        if cls is QnpuError and status is not None:
            try:
                cls = _CLASSES.get(int(status), QnpuError)
            except (TypeError, ValueError):
                pass
        return super().__new__(cls, status, status_name, message)

    def __init__(self, status, status_name=None, message=""):
        try:
            status = Status(status)
        except ValueError:
            status = int(status)
        if status_name is None:
            status_name = status_string(status)
        super().__init__(status, status_name, message)
        self.status = status
        self.status_name = status_name
        self.message = message

    def __str__(self):
        return f"{self.status_name}: {self.message}" if self.message else self.status_name

    def __repr__(self):
        return f"QnpuError({self.status!r}, {self.status_name!r}, {self.message!r})"


def _subclass(status, name, doc):
    cls = type(name, (QnpuError,), {"__doc__": f"QnpuError with status Status.{status.name}: {doc}",
                                    "__module__": "quantnpu"})
    return cls


# One subclass per status (OK excepted), named after it; the text is the header's comment.
InvalidArgError = _subclass(Status.INVALID_ARG, "InvalidArgError",
                            "a NULL handle, a bad value, an out-of-range option.")
NoMemoryError = _subclass(Status.NO_MEMORY, "NoMemoryError", "an allocation failed.")
IoError = _subclass(Status.IO, "IoError",
                    "open/read/write/mmap failed, or a file is truncated.")
FormatError = _subclass(Status.FORMAT, "FormatError",
                        "a file is malformed: magic, header, shapes, offsets.")
UnsupportedError = _subclass(Status.UNSUPPORTED, "UnsupportedError",
                             "well-formed but not supported: dtype, architecture, ...")
StateError = _subclass(Status.STATE, "StateError",
                       "the call is not valid now (e.g. a global setter too late).")
CancelledError = _subclass(Status.CANCELLED, "CancelledError", "a progress callback asked to stop.")
BufferTooSmallError = _subclass(Status.BUFFER_TOO_SMALL, "BufferTooSmallError",
                                "the caller's buffer is too small.")
NumericError = _subclass(Status.NUMERIC, "NumericError",
                         "NaN or Inf found in weights or activations.")
RecipeError = _subclass(Status.RECIPE, "RecipeError", "a YAML recipe is invalid.")
InternalError = _subclass(Status.INTERNAL, "InternalError",
                          "a broken invariant: please report it.")

_CLASSES = {
    Status.INVALID_ARG: InvalidArgError, Status.NO_MEMORY: NoMemoryError, Status.IO: IoError,
    Status.FORMAT: FormatError, Status.UNSUPPORTED: UnsupportedError, Status.STATE: StateError,
    Status.CANCELLED: CancelledError, Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.NUMERIC: NumericError, Status.RECIPE: RecipeError, Status.INTERNAL: InternalError,
}


def error_class(status):
    """The QnpuError subclass raised for `status` (QnpuError itself for a status this binding
    does not know, e.g. one added by a newer library)."""
    return _CLASSES.get(int(status), QnpuError)


def check(status):
    """Raise QnpuError for a non-OK status; return None otherwise."""
    if status != Status.OK:
        # read the detail first: nothing may run between the failing call and this read
        message = last_error()
        raise QnpuError(status, status_string(status), message)


def fail(status, message):
    """Raise a QnpuError detected on the Python side (same shape as a C failure)."""
    raise QnpuError(status, status_string(status), message)
