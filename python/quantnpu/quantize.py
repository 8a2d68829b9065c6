"""Static quantization from Python: rotate a model, calibrate it into a QuantizedModel, save
and load .qnpu files, evaluate the simulated NPU graph (docs/quantization.md).

    with quantnpu.Model("stories260K.bin") as m, quantnpu.Tokenizer.from_model(m) as tok:
        opts = quantnpu.Options().load_recipe("w4a8-hadamard")
        with quantnpu.calibrate(m, tok, open("train.txt").read(), opts) as q:
            q.save("w4a8h.qnpu")
            print(q.perplexity(open("valid.txt").read()))
"""

import os
from collections import namedtuple
from ctypes import byref, c_char_p, c_double, c_int, c_int32, c_int64, c_void_p

from ._ffi import PROGRESS_FN, lib
from ._util import Handle, c_text, fspath_bytes, int32_array, text_bytes
from .enums import Status
from .errors import check, fail
from .model import Model
from .options import Options
from .session import Perplexity, _Progress
from .tokenizer import Tokenizer

__all__ = ["QuantizedModel", "QuantPoint", "rotate", "calibrate"]

#: one quantization point of a QuantizedModel (bits 0 = left in float)
QuantPoint = namedtuple("QuantPoint", "name bits sym scale zero")


def _wrap_model(h, path):
    m = Model.__new__(Model)
    m.path = path
    m._h = h
    return m


def rotate(model, options=None, **kwargs):
    """METHOD.md §4: norm fusion, untying, rotate-half RoPE and the R1/R2/R4 rotations of
    `options` (rotate.*), as a new, independent Model (qnpu_rotator_run)."""
    opt_h, tmp = Options._coerce(options, kwargs)
    r = c_void_p()
    try:
        check(lib.qnpu_rotator_create(model._handle(), opt_h, byref(r)))
        try:
            out = c_void_p()
            check(lib.qnpu_rotator_run(r, byref(out)))
        finally:
            lib.qnpu_rotator_free(r)
    finally:
        if tmp is not None:
            tmp.close()
    return _wrap_model(out.value, model.path)


def calibrate(model, tokenizer, text=None, options=None, progress=None, *, ids=None, **kwargs):
    """Calibrate every quantization point and return the QuantizedModel (qnpu_calibrator).

    `text` (str or bytes; stories separated by <|endoftext|> lines, or paragraphs) is cut into
    blocks with `tokenizer`; or give token `ids` (a list, array('i') or numpy int32 array, cut
    into blocks as they are, no BOS added) instead, and then `tokenizer` may be None (the model
    then carries no tokenizer). `model` is a plain Model (rotated here with the options'
    rotate.*) or one returned by rotate(). `options` carries the recipe (Options.load_recipe, a
    mapping, or None); keywords override single parameters (calib_num_samples=4).
    `progress(stage, done, total)` sees each calibration block and may cancel by returning True
    (CancelledError, a QnpuError with status CANCELLED)."""
    if (text is None) == (ids is None):
        fail(Status.INVALID_ARG, "calibrate needs text or ids (one of them)")
    opt_h, tmp = Options._coerce(options, kwargs)
    if ids is not None:
        arr = int32_array(ids)
        fn, args = lib.qnpu_calibrator_run_ids, (arr, len(arr))
    else:
        data = text_bytes(text)
        fn, args = lib.qnpu_calibrator_run, (data, len(data))
    c = c_void_p()
    try:
        tok_h = tokenizer._handle() if tokenizer is not None else None
        check(lib.qnpu_calibrator_create(model._handle(), tok_h, opt_h, byref(c)))
        try:
            state = _Progress(progress) if progress else None
            cfunc = PROGRESS_FN(state) if state else PROGRESS_FN()
            lib.qnpu_calibrator_set_progress(c, cfunc, None)
            q = c_void_p()
            status = fn(c, *args, byref(q))
            if state and state.error is not None:
                raise state.error
            check(status)
        finally:
            lib.qnpu_calibrator_free(c)
    finally:
        if tmp is not None:
            tmp.close()
    return QuantizedModel._adopt(q.value)


class QuantizedModel(Handle):
    """A quantized model (qnpu_qmodel): integer weights and every scale and zero point.
    ``QuantizedModel(path)`` loads a .qnpu file; calibrate() makes a new one."""

    _free_name = "qnpu_qmodel_free"

    def __init__(self, path, options=None, **kwargs):
        opt_h, tmp = Options._coerce(options, kwargs)
        try:
            h = c_void_p()
            check(lib.qnpu_qmodel_load(fspath_bytes(path), opt_h, byref(h)))
            self._h = h.value
        finally:
            if tmp is not None:
                tmp.close()

    @classmethod
    def _adopt(cls, h):
        q = cls.__new__(cls)
        q._h = h
        return q

    @classmethod
    def load(cls, path, options=None, **kwargs):
        """The same as QuantizedModel(path, options, **kwargs): load a .qnpu file."""
        return cls(path, options, **kwargs)

    def save(self, path):
        """Write a .qnpu file atomically (qnpu_qmodel_save)."""
        check(lib.qnpu_qmodel_save(self._handle(), fspath_bytes(os.fspath(path))))

    def points(self):
        """Every quantization point (activations in graph order, then weights) as QuantPoint."""
        h = self._handle()
        out = []
        for i in range(lib.qnpu_qmodel_qp_count(h)):
            name, bits, sym, scale, zero = c_char_p(), c_int(), c_int(), c_double(), c_int32()
            check(lib.qnpu_qmodel_qp_info(h, i, byref(name), byref(bits), byref(sym), byref(scale),
                                          byref(zero)))
            out.append(QuantPoint(c_text(name.value), bits.value, bool(sym.value), scale.value, zero.value))
        return out

    def get_dim(self, which):
        """A dimension of the model (a ModelDim, as Model.get_dim)."""
        v = c_int64()
        check(lib.qnpu_qmodel_get_dim(self._handle(), int(which), byref(v)))
        return v.value

    def tokenizer(self):
        """The tokenizer stored in the model (an independent Tokenizer)."""
        h = c_void_p()
        check(lib.qnpu_tokenizer_from_qmodel(self._handle(), byref(h)))
        tok = Tokenizer.__new__(Tokenizer)
        tok._adopt(h.value)
        return tok

    def perplexity_ids(self, ids, ctx=256, options=None, **kwargs):
        """Window perplexity of the simulated NPU graph on token ids."""
        arr = int32_array(ids)
        opt_h, tmp = Options._coerce(options, kwargs)
        ppl, scored = c_double(), c_int64()
        try:
            check(lib.qnpu_qmodel_perplexity_ids(self._handle(), opt_h, arr, len(arr), int(ctx),
                                                 byref(ppl), byref(scored)))
        finally:
            if tmp is not None:
                tmp.close()
        return Perplexity(ppl.value, scored.value)

    def perplexity(self, text, tokenizer=None, ctx=256, options=None, **kwargs):
        """The project's perplexity protocol on text, with the model's own tokenizer by default."""
        own = tokenizer is None
        tok = self.tokenizer() if own else tokenizer
        try:
            ids = tok.tokenize_paragraphs(text)
        finally:
            if own:
                tok.close()
        return self.perplexity_ids(ids, ctx, options, **kwargs)

    def __repr__(self):
        if self.closed:
            return "<quantnpu.QuantizedModel closed>"
        return f"<quantnpu.QuantizedModel points={lib.qnpu_qmodel_qp_count(self._h)}>"
