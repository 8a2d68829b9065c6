"""Measuring a quantized model: the per-point error report against the float model
(qnpu_report, docs/quantization.md) and the integer engine against the simulated NPU graph
(qnpu_compare, docs/engine.md).

    with quantnpu.Report(model, qmodel, ids[:1024], ctx=256) as r:
        print(r.totals())                      # ReportTotals(ppl_float, ppl_quant, logit_mse)
        worst = max(r.points(), key=lambda p: p.share)
        r.write_svg("report.svg")
    with quantnpu.Comparison(qmodel, ids, ctx=256, max_windows=4) as c:
        print(c.totals().top1_agreement)
"""

import os
from collections import namedtuple
from ctypes import byref, c_char_p, c_double, c_int, c_int64, c_void_p

from ._ffi import lib
from ._util import Handle, c_text, fspath_bytes, int32_array
from .errors import check
from .model import Model
from .options import Options
from .quantize import QuantizedModel

__all__ = ["Report", "ReportPoint", "ReportTotals", "Comparison", "ComparePoint", "CompareTotals"]

#: one point of a Report: SQNR in dB (NaN at 0 bits, inf for no error), the mean squared logit
#: difference when only this point is quantized, and its share of the sum over points
ReportPoint = namedtuple("ReportPoint", "name bits sqnr_db mse_only share")
#: Report totals: perplexity of the float reference and of the fully quantized graph, logit MSE
ReportTotals = namedtuple("ReportTotals", "ppl_float ppl_quant logit_mse")
#: one stored tensor of a Comparison: codes compared, codes that differ, largest difference
ComparePoint = namedtuple("ComparePoint", "name codes mismatched max_diff")
#: Comparison totals: perplexity of the simulated graph and of the engine, top-1 agreement
CompareTotals = namedtuple("CompareTotals", "ppl_sim ppl_int top1_agreement scored")


def _create(fn, options, kwargs, *args):
    """Call fn(*args[:k], opts, *args[k:], &out) with the Options handle at the position of the
    `None` placeholder in args, and return the new handle (raises QnpuError on failure)."""
    opt_h, tmp = Options._coerce(options, kwargs)
    out = c_void_p()
    try:
        check(fn(*(opt_h if a is None else a for a in args), byref(out)))
    finally:
        if tmp is not None:
            tmp.close()
    return out.value


class Report(Handle):
    """The quantization error of every point of `qmodel` against `model`, the float model it was
    made from (qnpu_report_create), on every full window of `ctx` tokens of `ids` (0: the
    eval.seq_len option). Keep `ids` short: one forward per window per point. `model` may be the
    plain model, rotated with the options' rotate.* (pass the recipe used to quantize), or the
    rotated one. The report is independent of its inputs once made."""

    _free_name = "qnpu_report_free"

    def __init__(self, model, qmodel, ids, ctx=0, options=None, **kwargs):
        if not isinstance(model, Model) or not isinstance(qmodel, QuantizedModel):
            raise TypeError("Report needs a quantnpu.Model and a quantnpu.QuantizedModel")
        arr = int32_array(ids)
        self._h = _create(lib.qnpu_report_create, options, kwargs, model._handle(),
                          qmodel._handle(), None, arr, len(arr), int(ctx))

    def __len__(self):
        return lib.qnpu_report_count(self._handle())

    def points(self):
        """Every point as ReportPoint, in QuantizedModel.points() order."""
        h, out = self._handle(), []
        for i in range(lib.qnpu_report_count(h)):
            name, bits, sqnr, mse, share = c_char_p(), c_int(), c_double(), c_double(), c_double()
            check(lib.qnpu_report_point(h, i, byref(name), byref(bits), byref(sqnr), byref(mse),
                                        byref(share)))
            out.append(ReportPoint(c_text(name.value), bits.value, sqnr.value, mse.value, share.value))
        return out

    def totals(self):
        """ReportTotals(ppl_float, ppl_quant, logit_mse) over the windows."""
        a, b, c = c_double(), c_double(), c_double()
        check(lib.qnpu_report_totals(self._handle(), byref(a), byref(b), byref(c)))
        return ReportTotals(a.value, b.value, c.value)

    def write_svg(self, path):
        """An SVG bar chart of the 40 largest shares (written atomically)."""
        check(lib.qnpu_report_write_svg(self._handle(), fspath_bytes(os.fspath(path))))

    def write_json(self, path):
        """The whole report as one JSON object (written atomically)."""
        check(lib.qnpu_report_write_json(self._handle(), fspath_bytes(os.fspath(path))))

    def __repr__(self):
        return "<quantnpu.Report closed>" if self.closed else f"<quantnpu.Report points={len(self)}>"


class Comparison(Handle):
    """The integer engine against the simulated (fake-quant) graph on the same windows
    (qnpu_compare_run): per stored tensor, how many codes differ and by how much; perplexity and
    top-1 agreement of both. At most `max_windows` windows of `ctx` tokens (0: all / eval.seq_len).
    Options as IntSession (num_threads, engine.kernels, ...)."""

    _free_name = "qnpu_compare_free"

    def __init__(self, qmodel, ids, ctx=0, max_windows=0, options=None, **kwargs):
        if not isinstance(qmodel, QuantizedModel):
            raise TypeError("Comparison needs a quantnpu.QuantizedModel")
        arr = int32_array(ids)
        self._h = _create(lib.qnpu_compare_run, options, kwargs, qmodel._handle(), None, arr,
                          len(arr), int(ctx), int(max_windows))

    def __len__(self):
        return lib.qnpu_compare_count(self._handle())

    def points(self):
        """Every compared tensor as ComparePoint, in graph order."""
        h, out = self._handle(), []
        for i in range(lib.qnpu_compare_count(h)):
            name, codes, bad, diff = c_char_p(), c_int64(), c_int64(), c_int64()
            check(lib.qnpu_compare_point(h, i, byref(name), byref(codes), byref(bad), byref(diff)))
            out.append(ComparePoint(c_text(name.value), codes.value, bad.value, diff.value))
        return out

    def totals(self):
        """CompareTotals(ppl_sim, ppl_int, top1_agreement, scored)."""
        a, b, c, n = c_double(), c_double(), c_double(), c_int64()
        check(lib.qnpu_compare_totals(self._handle(), byref(a), byref(b), byref(c), byref(n)))
        return CompareTotals(a.value, b.value, c.value, n.value)

    def __repr__(self):
        return "<quantnpu.Comparison closed>" if self.closed else f"<quantnpu.Comparison points={len(self)}>"
