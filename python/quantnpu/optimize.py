"""The Quant.npu two-stage pipeline from Python (qnpu_optimizer, METHOD.md §8): stage 1 learns the
rotations R1/R2 and the rotated tensors' scales and zero points on the end-to-end cross-entropy of
the fake-quantized model, stage 2 fuses the rotations and calibrates every other point. The result
is a QuantizedModel, as calibrate() gives (docs/python.md, "Learned quantization").

    def show(stage, done, total, loss):
        print(f"{stage} {done}/{total} loss {loss:.4f}")

    with quantnpu.Model("stories260K.bin") as m:
        with quantnpu.optimize(m, open("train.txt").read(), recipe="quantnpu-w4a8",
                               progress=show, num_threads=2) as q:
            q.save("quantnpu-w4a8.qnpu")
"""

import json
import math
from ctypes import byref, c_size_t, c_void_p, create_string_buffer

from ._ffi import PROGRESS_FN, lib
from ._util import Handle, int32_array, text_bytes
from .enums import Status
from .errors import QnpuError, check, fail
from .model import Model
from .options import Options
from .quantize import QuantizedModel
from .tokenizer import Tokenizer

__all__ = ["Optimizer", "optimize"]


class _TrainProgress:
    """The C progress callback of an Optimizer: calls fn(stage, done, total, loss) with the loss of
    the step just done (qnpu_optimizer_last_loss). Holds the C pointer, not the Optimizer, so
    installing it creates no reference cycle."""

    def __init__(self, fn, handle):
        self.fn = fn
        self.handle = handle
        self.error = None  # an exception raised by fn, re-raised after the C call returns

    def __call__(self, user, stage, done, total):
        try:
            loss = lib.qnpu_optimizer_last_loss(self.handle)
            stop = self.fn(stage.decode("utf-8", errors="replace"), done, total, loss)
            return 1 if stop else 0
        except BaseException as e:  # never let an exception unwind through C: cancel instead
            self.error = e
            return 1


def _options_handle(options, recipe, overrides):
    """(handle or None, temporary Options to close): `options` (None, an Options or a mapping),
    then the recipe `recipe` loaded over it, then the keyword overrides."""
    if recipe is None:
        return Options._coerce(options, overrides)
    tmp = options.clone() if isinstance(options, Options) else Options(options)
    try:
        tmp.load_recipe(recipe)
        tmp.update(overrides or {})
    except BaseException:
        tmp.close()
        raise
    return tmp._handle(), tmp


class Optimizer(Handle):
    """The two-stage learned pipeline over a float Model (qnpu_optimizer).

    ``Optimizer(model, tokenizer=None, options=None, *, recipe=None, progress=None, **keywords)``:
    `model` is a plain float Model (or one rotated with identity R1/R2, rotate.r4 off). The
    tokenizer cuts training text into blocks and goes into the quantized model; None takes the
    model's own when one is found (otherwise only token ids can be given to run(), and the
    quantized model carries no tokenizer). The options are `options` (an Options, a mapping or
    None for the defaults), then `recipe` (a preset name such as "quantnpu-w4a8", or a YAML path)
    loaded over them, then the keyword overrides (``optim_steps=2``); they are copied, so later
    changes do not affect the optimizer. Options used: calib.*, optim.*, init.*, quant.*,
    observer.*, rotate.r1 / r2 / seed, num_threads.

    The model (and a tokenizer passed in) stay open while the optimizer lives. Use it as a
    context manager, or call close()."""

    _free_name = "qnpu_optimizer_free"
    _model = None
    _tokenizer = None      # (Tokenizer, owned) or None
    _progress = None       # (_TrainProgress, CFUNCTYPE object) while a callback is installed
    _busy = False          # run() is in progress (re-entry guard)

    def __init__(self, model, tokenizer=None, options=None, *, recipe=None, progress=None, **kwargs):
        if not isinstance(model, Model):
            raise TypeError(f"Optimizer needs a quantnpu.Model, not {type(model).__name__}")
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a quantnpu.Tokenizer or None, not "
                            f"{type(tokenizer).__name__}")
        model_h = model._retain()
        tok, owned, tmp = tokenizer, False, None
        try:
            if tok is None:
                try:
                    tok, owned = Tokenizer.from_model(model), True
                except QnpuError as e:
                    if e.status != Status.UNSUPPORTED:
                        raise
                    tok = None  # no tokenizer beside the model: token ids only
            tok_h = None
            if tok is not None:
                tok_h = tok._handle() if owned else tok._retain()
            try:
                opt_h, tmp = _options_handle(options, recipe, kwargs)
                h = c_void_p()
                check(lib.qnpu_optimizer_create(model_h, tok_h, opt_h, byref(h)))
            except BaseException:
                if owned:
                    tok.close()
                elif tok is not None:
                    tok._release()
                raise
        except BaseException:
            model._release()
            raise
        finally:
            if tmp is not None:
                tmp.close()
        self._h = h.value
        self._model = model
        self._tokenizer = (tok, owned) if tok is not None else None
        if progress is not None:
            self.set_progress(progress)

    def close(self):
        """Free the optimizer; then the model and tokenizer may be freed if their close() was
        deferred. A QuantizedModel it returned is independent of it."""
        if self._h is None:
            return
        self._check_not_busy("close")
        self._free()
        self._progress = None
        model, self._model = self._model, None
        tok, self._tokenizer = self._tokenizer, None
        if tok is not None and tok[1]:
            tok[0].close()
        elif tok is not None:
            tok[0]._release()
        if model is not None:
            model._release()

    @property
    def model(self):
        """The float Model the optimizer was made over."""
        return self._model

    @property
    def tokenizer(self):
        """The Tokenizer in use (the model's own when none was given), or None."""
        return self._tokenizer[0] if self._tokenizer else None

    @property
    def last_loss(self):
        """The loss of the last completed stage-1 step of the current or last run: the mean
        next-token cross-entropy (nats) of the step's blocks under fake quantization
        (qnpu_optimizer_last_loss). NaN before the first step or when a run trains no step."""
        return lib.qnpu_optimizer_last_loss(self._handle())

    def mixed_report(self):
        """The mixed-precision step of the last run as a dict (qnpu_optimizer_report_json): the
        mode and p, every candidate's relative error r, what was promoted, the bit-width counts
        and the per-token cost of the decoder linears before and after. Raises QnpuError(STATE)
        before any run."""
        h = self._handle()
        n = c_size_t(0)
        st = lib.qnpu_optimizer_report_json(h, None, 0, byref(n))
        if st != Status.BUFFER_TOO_SMALL:
            check(st)
        buf = create_string_buffer(n.value + 1)
        check(lib.qnpu_optimizer_report_json(h, buf, len(buf), byref(n)))
        return json.loads(buf.value.decode("utf-8"))

    def _check_not_busy(self, what):
        """The optimizer's own progress callback must not call back into it, except to read
        last_loss: that raises QnpuError(STATE)."""
        if self._busy:
            fail(Status.STATE, f"Optimizer.{what}() called from the optimizer's own progress callback")

    def set_progress(self, fn):
        """Install `fn(stage: str, done: int, total: int, loss: float)` as the progress callback
        (None removes it). Stage "train" reports each stage-1 step, with the loss of that step. A
        true return value cancels: run() raises QnpuError(CANCELLED). An exception raised by fn
        also cancels and is re-raised by run()."""
        h = self._handle()
        self._check_not_busy("set_progress")
        if fn is None:
            lib.qnpu_optimizer_set_progress(h, PROGRESS_FN(), None)  # a NULL pointer
            self._progress = None
            return
        if not callable(fn):
            raise TypeError("progress callback must be callable or None")
        state = _TrainProgress(fn, h)
        cfunc = PROGRESS_FN(state)
        lib.qnpu_optimizer_set_progress(h, cfunc, None)
        self._progress = (state, cfunc)  # kept here: C holds the pointer until replaced

    def run(self, text=None, *, ids=None):
        """Run both stages on `text` (str or bytes: stories separated by <|endoftext|> lines, or
        paragraphs; cut into blocks of calib.seq_len tokens) or on token `ids` (cut as they are,
        no BOS added), and return the new QuantizedModel.
        Raises QnpuError: INVALID_ARG (too few blocks for calib.first_block + calib.num_samples,
        text without a tokenizer, an id out of range), UNSUPPORTED (rotate.r4 not off), NUMERIC,
        CANCELLED (by the progress callback)."""
        h = self._handle()
        self._check_not_busy("run")
        if (text is None) == (ids is None):
            fail(Status.INVALID_ARG, "Optimizer.run needs text or ids (one of them)")
        if ids is not None:
            arr = int32_array(ids)
            fn, args = lib.qnpu_optimizer_run_ids, (arr, len(arr))
        else:
            data = text_bytes(text)
            fn, args = lib.qnpu_optimizer_run, (data, len(data))
        q = c_void_p()
        self._busy = True
        try:
            st = fn(h, *args, byref(q))
        finally:
            self._busy = False
        progress = self._progress[0] if self._progress else None
        if progress is not None and progress.error is not None:
            error, progress.error = progress.error, None
            raise error
        check(st)
        return QuantizedModel._adopt(q.value)

    def __repr__(self):
        if self.closed:
            return "<quantnpu.Optimizer closed>"
        loss = lib.qnpu_optimizer_last_loss(self._h)
        last = "" if math.isnan(loss) else f" last_loss={loss:.4f}"
        return f"<quantnpu.Optimizer model={self._model.path!r}{last}>"


def optimize(model, text=None, *, ids=None, tokenizer=None, options=None, recipe=None, progress=None,
             **kwargs):
    """Quantize `model` through the two-stage pipeline and return the QuantizedModel: an
    Optimizer(model, tokenizer, options, recipe=recipe, progress=progress, **kwargs) run once on
    `text` or `ids` (see Optimizer and Optimizer.run). `progress(stage, done, total, loss)` sees
    every stage-1 step with its loss and may cancel by returning True (QnpuError, status
    CANCELLED)."""
    with Optimizer(model, tokenizer, options, recipe=recipe, progress=progress, **kwargs) as o:
        return o.run(text, ids=ids)
