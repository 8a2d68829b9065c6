"""IntSession: the integer-only engine (qnpu_session) over a QuantizedModel or a .qnpu file."""

import os
from ctypes import byref, c_int64, c_void_p

from ._ffi import lib
from ._util import fspath_bytes
from .enums import ModelDim, Param
from .errors import check
from .options import Options
from .quantize import QuantizedModel
from .session import _Session
from .tokenizer import Tokenizer

__all__ = ["IntSession"]


class IntSession(_Session):
    """The integer-only engine: runs a quantized model with integer codes end to end (only the
    final logits are floats), exactly as the deployed NPU graph.

    ``IntSession(qmodel)`` shares a QuantizedModel (kept open while the session lives; several
    sessions may share one); ``IntSession("m.qnpu")`` loads the file into a session of its own.
    Options: num_threads, eval.seq_len, engine.ctx_size, engine.kernels (auto, ref, avx2,
    vnni: bit-identical). Methods as FloatSession: eval, generate_greedy, perplexity_ids,
    perplexity, reset, pos, set_progress."""

    _free_name = "qnpu_session_free"
    _prefix = "qnpu_session_"

    def __init__(self, model, options=None, **kwargs):
        opt_h, tmp = Options._coerce(options, kwargs)
        borrowed = isinstance(model, QuantizedModel)
        try:
            h = c_void_p()
            if borrowed:
                model_h = model._retain()
                try:
                    check(lib.qnpu_session_create(model_h, opt_h, byref(h)))
                except BaseException:
                    model._release()
                    raise
            else:
                check(lib.qnpu_session_open(fspath_bytes(os.fspath(model)), opt_h, byref(h)))
            ctx = c_int64()  # engine.ctx_size (0: the model's context length)
            if opt_h is not None:
                check(lib.qnpu_options_get_int(opt_h, int(Param.ENGINE_CTX_SIZE), byref(ctx)))
        finally:
            if tmp is not None:
                tmp.close()
        self._h = h.value
        self._model = model if borrowed else None
        q = lib.qnpu_session_qmodel(self._h)
        self._vocab = _dim(q, ModelDim.VOCAB)
        self._limit = ctx.value or _dim(q, ModelDim.MAX_SEQ)

    def quantized_model(self):
        """The session's model: the QuantizedModel it shares, or None when it owns a file."""
        return self._model

    def perplexity(self, text, tokenizer=None, ctx=None):
        """The project's perplexity protocol on text, with the model's own tokenizer by default."""
        if tokenizer is None:
            h = c_void_p()
            check(lib.qnpu_tokenizer_from_qmodel(lib.qnpu_session_qmodel(self._handle()), byref(h)))
            tok = Tokenizer.__new__(Tokenizer)
            tok._adopt(h.value)
            with tok:
                ids = tok.tokenize_paragraphs(text)
        else:
            ids = tokenizer.tokenize_paragraphs(text)
        return self.perplexity_ids(ids, ctx)

    def __repr__(self):
        if self.closed:
            return "<quantnpu.IntSession closed>"
        return f"<quantnpu.IntSession pos={self.pos}>"


def _dim(q, which):
    v = c_int64()
    check(lib.qnpu_qmodel_get_dim(q, int(which), byref(v)))
    return v.value
