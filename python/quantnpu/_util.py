"""Helpers shared by the wrappers: handle ownership, text and path conversion, buffers.

Buffers follow CONVENTIONS.md section 12: the standard library's array/memoryview always work;
numpy arrays are accepted when numpy is installed (dtype and contiguity are checked) and numpy
results are produced only when asked for."""

import operator
import os
from array import array
from ctypes import c_float, c_int32

from .enums import Status
from .errors import fail

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

# array('i') and array('f') must be 32-bit for the zero-copy paths below.
assert array("i").itemsize == 4 and array("f").itemsize == 4


class Handle:
    """Base of every class that owns a C handle.

    Subclasses set ``_free_name`` to the name of the C destructor in the ffi table. The handle is
    released by close(), by leaving a ``with`` block, or (defensively) by __del__.

    Borrowing: an object whose C handle another live handle depends on (a model under its
    sessions, a tokenizer during a perplexity call) is _retain()ed by the borrower and
    _release()d when the borrower is done. close() of a borrowed object marks it closed at once
    but frees the C handle only when the last borrower releases it, so no order of close(),
    del or garbage collection can leave C with a dangling pointer."""

    _h = None            # the C pointer as an int, None once freed
    _free_name = None    # e.g. "qnpu_model_free"
    _users = 0           # live borrowers of the C handle
    _closing = False     # close() was called while borrowers remained

    def _handle(self):
        """The live C pointer; ValueError if the object is closed (as with closed files)."""
        h = self._h
        if h is None or self._closing:
            raise ValueError(f"{type(self).__name__} is closed")
        return h

    @property
    def closed(self):
        return self._h is None or self._closing

    def close(self):
        """Free the C handle now, or when the last borrower releases it. Idempotent."""
        if self._h is None or self._closing:
            return
        if self._users > 0:
            self._closing = True
            return
        self._free()

    def _free(self):
        h, self._h = self._h, None
        if h is not None:
            from ._ffi import lib
            getattr(lib, self._free_name)(h)

    def _retain(self):
        """Start borrowing the C handle (which must be open); returns it."""
        h = self._handle()
        self._users += 1
        return h

    def _release(self):
        """Stop borrowing; frees the handle if a close() was deferred."""
        self._users -= 1
        if self._users == 0 and self._closing:
            self._closing = False
            self._free()

    def __enter__(self):
        self._handle()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # Defensive: at interpreter shutdown module globals may already be gone; never raise.
        try:
            self.close()
        except Exception:
            pass


def fspath_bytes(path):
    """A str, bytes or os.PathLike path as bytes for C (os.fsencode)."""
    return os.fsencode(path)


def text_bytes(text):
    """str -> UTF-8 bytes; bytes-like -> bytes. Anything else is a TypeError."""
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, bytes):
        return text
    if isinstance(text, (bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"expected str or bytes, not {type(text).__name__}")


def c_text(b):
    """bytes from a `const char *` return (or None) -> str, invalid UTF-8 replaced."""
    return None if b is None else b.decode("utf-8", errors="replace")


def numpy_module(required):
    """numpy if importable; with required=True an ImportError says why it is needed."""
    try:
        import numpy
    except ImportError:
        if required:
            raise ImportError("numpy=True was requested but numpy is not installed") from None
        return None
    return numpy


def _buffer_format(mv):
    """The struct format letter of a memoryview without its byte-order prefix."""
    fmt = mv.format
    return fmt[1:] if fmt[:1] in "@=<" else fmt


def int32_array(tokens):
    """Token ids (an int, an iterable of ints, array('i'), a numpy int32 array) as a ctypes
    c_int32 array (a copy). Ids outside int32 raise QnpuError(INVALID_ARG); the library checks
    them against the vocabulary itself."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError("token ids must be integers; encode text with a Tokenizer first")
    try:
        tokens = (operator.index(tokens),)  # one id: an int or an integer scalar
    except TypeError:
        pass
    try:
        mv = memoryview(tokens)
    except TypeError:
        mv = None
    if mv is not None and mv.ndim == 1 and mv.itemsize == 4 and mv.c_contiguous \
            and _buffer_format(mv) in ("i", "l"):
        return (c_int32 * len(mv)).from_buffer_copy(mv)
    values = []
    for t in tokens:
        v = operator.index(t)  # ints, numpy integer scalars; a float is a TypeError
        if not _INT32_MIN <= v <= _INT32_MAX:
            fail(Status.INVALID_ARG, f"token id {v} does not fit in int32")
        values.append(v)
    if not values:
        return (c_int32 * 0)()
    return (c_int32 * len(values)).from_buffer_copy(array("i", values))


def float_output(n, *, out=None, numpy=False, shape=None):
    """Storage for `n` float32 results.

    Returns (ctypes array over the storage, capacity in floats, object to return). `out` is a
    caller's writable, C-contiguous float32 buffer (array('f'), numpy float32, memoryview) of at
    least n floats; otherwise a new numpy array of `shape` (numpy=True) or a new array('f')."""
    if out is not None:
        try:
            mv = memoryview(out)
        except TypeError:
            raise TypeError(f"out must support the buffer protocol, not {type(out).__name__}") \
                from None
        if mv.readonly:
            raise ValueError("out is read-only")
        if mv.itemsize != 4 or _buffer_format(mv) != "f":
            raise ValueError(f"out must hold float32 values (format 'f'), not {mv.format!r}")
        if not mv.c_contiguous:
            raise ValueError("out must be C-contiguous")
        cap = mv.nbytes // 4
        if cap < n:
            raise ValueError(f"out holds {cap} floats, {n} are needed")
        return (c_float * cap).from_buffer(mv), cap, out
    if numpy:
        np = numpy_module(True)
        res = np.zeros(shape if shape is not None else n, dtype=np.float32)
        return (c_float * n).from_buffer(res), n, res
    res = array("f", bytes(4 * n))
    return (c_float * n).from_buffer(res), n, res
