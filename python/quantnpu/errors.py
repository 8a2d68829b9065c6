"""QnpuError and the status check used by every wrapper.

Every call that returns a qnpu_status other than QNPU_OK raises
``QnpuError(status, qnpu_status_string(status), qnpu_last_error())``. The message is read right
after the failing call, on the same thread, which is what qnpu_last_error() requires (the C
message is per thread and ctypes makes the call on the calling Python thread).
"""

from ._ffi import lib
from .enums import LogLevel, ModelDim, ModelHparam, Param, ParamType, Status

__all__ = ["QnpuError", "check", "status_string", "last_error",
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

    Attributes:
        status       the status, a :class:`Status` member (a plain int for a value this binding
                     does not know, e.g. from a newer library)
        status_name  qnpu_status_string(status), e.g. "invalid argument"
        message      qnpu_last_error() at the time of the failure: the detail with context
                     (file path, tensor, parameter name and bounds)
    """

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


def check(status):
    """Raise QnpuError for a non-OK status; return None otherwise."""
    if status != Status.OK:
        # read the detail first: nothing may run between the failing call and this read
        message = last_error()
        raise QnpuError(status, status_string(status), message)


def fail(status, message):
    """Raise a QnpuError detected on the Python side (same shape as a C failure)."""
    raise QnpuError(status, status_string(status), message)
