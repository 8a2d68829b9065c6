"""FloatSession: the float32 reference engine (prefill, KV-cache decode, perplexity)."""

from collections import namedtuple
from ctypes import byref, c_double, c_int64, c_void_p

from ._ffi import PROGRESS_FN, lib
from ._util import Handle, float_output, int32_array, text_bytes
from .enums import Status
from .errors import check, fail
from .model import Model
from .options import Options
from .tokenizer import Tokenizer

__all__ = ["FloatSession", "Perplexity", "argmax"]

#: result of a perplexity evaluation: the perplexity and the number of scored tokens
Perplexity = namedtuple("Perplexity", "ppl scored")


def argmax(values, start=0, stop=None):
    """Index of the largest value in values[start:stop] (the first one on ties), relative to
    `start`; works on array('f'), lists and 1-D numpy arrays."""
    stop = len(values) if stop is None else stop
    best, best_i = values[start], start
    for i in range(start + 1, stop):
        v = values[i]
        if v > best:
            best, best_i = v, i
    return best_i - start


class _Progress:
    """The Python side of an installed progress callback. It holds no reference to the
    session, so installing a callback creates no reference cycle."""

    def __init__(self, fn):
        self.fn = fn
        self.error = None  # an exception raised by fn, re-raised after the C call returns

    def __call__(self, user, stage, done, total):
        try:
            stop = self.fn(stage.decode("utf-8", errors="replace"), done, total)
            return 1 if stop else 0
        except BaseException as e:  # never let an exception unwind through C: cancel instead
            self.error = e
            return 1


class _Session(Handle):
    """What the float and the integer sessions share: the C functions are
    ``<_prefix>{reset,pos,set_progress,eval,perplexity_ids}``, the model is retained while the
    session lives, and calls are guarded against re-entry from a progress callback."""

    _prefix = None
    _model = None
    _busy = False      # a C call of this session is running (re-entry guard)
    _progress = None   # (_Progress, CFUNCTYPE object) while a callback is installed
    _vocab = 0
    _limit = 0         # positions the session can hold

    def _c(self, name):
        return getattr(lib, self._prefix + name)

    def close(self):
        """Free the session; then the model may be freed if its close() was deferred."""
        h = self._h
        if h is None:
            return
        self._check_not_busy("close")
        self._free()
        self._progress = None
        model, self._model = self._model, None
        if model is not None:
            model._release()

    @property
    def model(self):
        """The model the session runs (kept open while the session lives)."""
        return self._model

    @property
    def pos(self):
        """Number of positions held in the KV cache."""
        return self._c("pos")(self._handle())

    def reset(self):
        """Forget all positions (the KV cache memory is reused)."""
        h = self._handle()
        self._check_not_busy("reset")
        self._c("reset")(h)

    # ---- calls into C, guarded against re-entry from a progress callback ----------------

    def _check_not_busy(self, what):
        """A session's own progress callback must not call back into it (the C rule): that
        raises QnpuError(STATE) instead of corrupting the running call or freeing the
        callback while it runs."""
        if self._busy:
            fail(Status.STATE, f"{type(self).__name__}.{what}() called from the session's own "
                               f"progress callback")

    def _call(self, fn, *args):
        h = self._handle()
        self._check_not_busy(fn.__name__.replace(self._prefix, ""))
        self._busy = True
        try:
            st = fn(h, *args)
        finally:
            self._busy = False
        progress = self._progress[0] if self._progress else None
        if progress is not None and progress.error is not None:
            error, progress.error = progress.error, None
            raise error
        check(st)

    def set_progress(self, fn):
        """Install `fn(stage: str, done: int, total: int)` as the progress callback (None
        removes it). A true return value cancels: the running call raises
        QnpuError(CANCELLED). An exception raised by fn also cancels and is re-raised."""
        h = self._handle()
        self._check_not_busy("set_progress")
        if fn is None:
            self._c("set_progress")(h, PROGRESS_FN(), None)  # a NULL pointer
            self._progress = None
            return
        if not callable(fn):
            raise TypeError("progress callback must be callable or None")
        state = _Progress(fn)
        cfunc = PROGRESS_FN(state)
        self._c("set_progress")(h, cfunc, None)
        self._progress = (state, cfunc)  # kept here: C holds the pointer until replaced

    # ---- forward -------------------------------------------------------------------------

    def eval(self, tokens, all_logits=False, *, numpy=False, out=None, return_logits=True):
        """Run `tokens` at the next positions (prefill when several, decode when one).

        Returns the logits of the last position (vocab floats) or, with all_logits, of every
        position (n*vocab floats, row-major): an array('f'), or with numpy=True a numpy array of
        shape (vocab,) or (n, vocab). `out` may be a caller's float32 buffer to fill instead.
        With return_logits=False no logits are computed and None is returned.
        Raises QnpuError: INVALID_ARG (a token id out of range), STATE (the context would
        exceed the session's size)."""
        ids = int32_array(tokens)
        n = len(ids)
        if not return_logits:
            self._call(self._c("eval"), ids, n, 0, None, 0)
            return None
        count = n * self._vocab if all_logits else self._vocab
        shape = (n, self._vocab) if all_logits else (self._vocab,)
        buf, cap, result = float_output(count, out=out, numpy=numpy, shape=shape)
        self._call(self._c("eval"), ids, n, 1 if all_logits else 0, buf, cap)
        return result

    def generate_greedy(self, prompt, steps, *, stop_at=None):
        """Greedy (argmax) decoding: evaluate `prompt` (ids) at the next positions, then append
        the most likely token `steps` times, feeding each back. Stops early after emitting a
        token in `stop_at` (an id or a collection of ids) or at the session's context limit.
        Returns the generated ids (without the prompt)."""
        stops = {stop_at} if isinstance(stop_at, int) else set(stop_at or ())
        prompt = int32_array(prompt)
        if len(prompt) == 0:
            fail(Status.INVALID_ARG, "generate_greedy needs a prompt of at least one token")
        logits = self.eval(prompt)
        generated = []
        while len(generated) < steps:
            token = argmax(logits)
            generated.append(token)
            if token in stops or self.pos >= self._limit or len(generated) == steps:
                break
            logits = self.eval(token, out=logits)
        return generated

    def perplexity_ids(self, ids, ctx=None):
        """Window perplexity of a token stream: windows of `ctx` tokens (None or 0: the
        session's eval.seq_len, 256 by default), every token but each window's first scored.
        Resets the session. Returns Perplexity(ppl, scored)."""
        arr = int32_array(ids)
        ppl, scored = c_double(), c_int64()
        self._call(self._c("perplexity_ids"), arr, len(arr), int(ctx or 0), byref(ppl), byref(scored))
        return Perplexity(ppl.value, scored.value)


class FloatSession(_Session):
    """A float32 forward over a Model with a KV cache.

    The session keeps a reference to its model, so garbage-collection order can never free the
    model first; Model.close() is deferred while the session is open. Options used:
    num_threads (0 = all cores) and eval.seq_len (the default perplexity window)."""

    _free_name = "qnpu_float_session_free"
    _prefix = "qnpu_float_session_"

    def __init__(self, model, options=None, **kwargs):
        if not isinstance(model, Model):
            raise TypeError(f"FloatSession needs a quantnpu.Model, not {type(model).__name__}")
        model_h = model._retain()
        opt_h, tmp = None, None
        try:
            opt_h, tmp = Options._coerce(options, kwargs)
            h = c_void_p()
            check(lib.qnpu_float_session_create(model_h, opt_h, byref(h)))
        except BaseException:
            model._release()
            raise
        finally:
            if tmp is not None:
                tmp.close()
        self._h = h.value
        self._model = model
        self._vocab = model.vocab
        self._limit = model.max_seq

    def perplexity(self, text, tokenizer, ctx=None):
        """The project's perplexity protocol on text (str or bytes): paragraphs split on blank
        lines, each [BOS] + encode(paragraph), then perplexity_ids. Returns Perplexity."""
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"perplexity needs a quantnpu.Tokenizer, not {type(tokenizer).__name__}")
        data = text_bytes(text)
        ppl, scored = c_double(), c_int64()
        tok_h = tokenizer._retain()  # a progress callback closing it cannot free it mid-call
        try:
            self._call(lib.qnpu_float_session_perplexity, tok_h, data, len(data),
                       int(ctx or 0), byref(ppl), byref(scored))
        finally:
            tokenizer._release()
        return Perplexity(ppl.value, scored.value)

    def __repr__(self):
        if self.closed:
            return "<quantnpu.FloatSession closed>"
        return f"<quantnpu.FloatSession pos={self.pos} model={self._model.path!r}>"
