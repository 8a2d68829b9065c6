"""Model: float weights loaded from a llama2.c checkpoint, a GGUF v3 file or a Hugging Face
directory (qnpu_model_load)."""

import os
from collections import namedtuple
from ctypes import byref, c_double, c_int64, c_size_t, c_void_p

from ._ffi import lib
from ._util import Handle, c_text, float_output, fspath_bytes
from .enums import ModelDim, ModelHparam, Status
from .errors import check, fail
from .options import Options

__all__ = ["Model", "MemoryUsage"]

#: qnpu_model_memory_usage: bytes owned by the model and bytes of memory-mapped files
MemoryUsage = namedtuple("MemoryUsage", "owned mapped")


def _dim(which, doc, conv=int):
    return property(lambda self: conv(self.get_dim(which)), doc=doc)


def _hparam(which, doc):
    return property(lambda self: self.get_hparam(which), doc=doc)


class Model(Handle):
    """A loaded model; read-only, shareable by many sessions.

    ``Model(path, options=None)`` or ``Model.load(path, options=None)``; `options` is an
    Options, a mapping of parameter names to values, or None; keywords are accepted too
    (``Model(path, model_mmap=False)``). Failures raise QnpuError: IO (the message names the
    path), FORMAT, UNSUPPORTED, NUMERIC, NO_MEMORY.

    Ownership: sessions made from a model keep a reference to it, and close() of a model still
    in use by an open session only marks it closed; the C handle is freed when the last such
    session is closed. Tokenizers made from a model are independent of it."""

    _free_name = "qnpu_model_free"

    def __init__(self, path, options=None, **kwargs):
        self.path = os.fspath(path)
        opt_h, tmp = Options._coerce(options, kwargs)
        try:
            h = c_void_p()
            check(lib.qnpu_model_load(fspath_bytes(path), opt_h, byref(h)))
            self._h = h.value
        finally:
            if tmp is not None:
                tmp.close()

    @classmethod
    def load(cls, path, options=None, **kwargs):
        """Load a model (same as the constructor)."""
        return cls(path, options, **kwargs)

    # ---- dimensions and hyper-parameters -----------------------------------------------

    def get_dim(self, which):
        """qnpu_model_get_dim: one ModelDim as an int."""
        v = c_int64()
        check(lib.qnpu_model_get_dim(self._handle(), int(which), byref(v)))
        return v.value

    def get_hparam(self, which):
        """qnpu_model_get_hparam: one ModelHparam as a float."""
        v = c_double()
        check(lib.qnpu_model_get_hparam(self._handle(), int(which), byref(v)))
        return v.value

    hidden = _dim(ModelDim.HIDDEN, "d, the residual width")
    ffn = _dim(ModelDim.FFN, "d_ff, the MLP width")
    layers = _dim(ModelDim.LAYERS, "number of decoder layers")
    heads = _dim(ModelDim.HEADS, "number of query heads")
    kv_heads = _dim(ModelDim.KV_HEADS, "number of key/value heads (GQA)")
    head_dim = _dim(ModelDim.HEAD_DIM, "d_h, the width of one head")
    vocab = _dim(ModelDim.VOCAB, "vocabulary size")
    max_seq = _dim(ModelDim.MAX_SEQ, "maximum context length")
    rope_order = _dim(ModelDim.ROPE_ORDER, "0 = interleaved pairs (llama2.c, GGUF), 1 = rotate-half (HF)")
    tied = _dim(ModelDim.TIED, "True if the classifier shares the token embedding", bool)
    qkv_bias = _dim(ModelDim.QKV_BIAS, "True if q/k/v carry biases (Qwen2)", bool)
    bos = _dim(ModelDim.BOS, "BOS token id")
    eos = _dim(ModelDim.EOS, "EOS token id")
    # common aliases
    dim = hidden
    n_layers = layers
    n_heads = heads
    n_kv_heads = kv_heads
    vocab_size = vocab
    max_seq_len = max_seq

    rope_theta = _hparam(ModelHparam.ROPE_THETA, "RoPE base frequency")
    rms_eps = _hparam(ModelHparam.RMS_EPS, "RMSNorm epsilon")

    @property
    def arch(self):
        """Architecture: "llama" or "qwen2"."""
        return c_text(lib.qnpu_model_arch(self._handle()))

    @property
    def format(self):
        """Source format: "llama2c", "gguf" or "safetensors"."""
        return c_text(lib.qnpu_model_format(self._handle()))

    def memory_usage(self):
        """MemoryUsage(owned, mapped) in bytes."""
        owned, mapped = c_size_t(), c_size_t()
        check(lib.qnpu_model_memory_usage(self._handle(), byref(owned), byref(mapped)))
        return MemoryUsage(owned.value, mapped.value)

    # ---- tensors --------------------------------------------------------------------------

    @property
    def tensor_count(self):
        """Number of weight tensors (qnpu_model_tensor_count)."""
        return lib.qnpu_model_tensor_count(self._handle())

    def tensor_names(self):
        """Canonical (GGUF-style) names of every weight tensor, in model order."""
        h = self._handle()
        return [c_text(lib.qnpu_model_tensor_name(h, i))
                for i in range(lib.qnpu_model_tensor_count(h))]

    def tensor_index(self, name_or_index):
        """Index of a tensor given its canonical name (or an index, checked)."""
        h = self._handle()
        if isinstance(name_or_index, str):
            idx = c_int64()
            check(lib.qnpu_model_tensor_find(h, name_or_index.encode("utf-8"), byref(idx)))
            return idx.value
        i = int(name_or_index)
        n = lib.qnpu_model_tensor_count(h)
        if not 0 <= i < n:
            fail(Status.INVALID_ARG, f"tensor index {i} is outside 0..{n - 1}")
        return i

    def tensor_shape(self, name_or_index):
        """(rows, cols) of a tensor: output by input features; a vector has rows 1."""
        rows, cols = c_int64(), c_int64()
        check(lib.qnpu_model_tensor_shape(self._handle(), self.tensor_index(name_or_index),
                                          byref(rows), byref(cols)))
        return rows.value, cols.value

    def read_tensor(self, name_or_index, *, numpy=False, out=None):
        """A copy of a tensor as row-major float32.

        Returns a flat array('f') of rows*cols values, or with numpy=True a numpy float32 array
        of shape (rows, cols). `out` may be a writable C-contiguous float32 buffer to fill
        instead (it is returned)."""
        i = self.tensor_index(name_or_index)
        rows, cols = self.tensor_shape(i)
        n = rows * cols
        buf, cap, result = float_output(n, out=out, numpy=numpy, shape=(rows, cols))
        check(lib.qnpu_model_tensor_read(self._handle(), i, buf, cap))
        return result

    def __repr__(self):
        if self.closed:
            return f"<quantnpu.Model {self.path!r} closed>"
        return (f"<quantnpu.Model {self.path!r} {self.format}/{self.arch} dim={self.hidden} "
                f"layers={self.layers} heads={self.heads}/{self.kv_heads} vocab={self.vocab}>")
