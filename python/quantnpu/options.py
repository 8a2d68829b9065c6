"""Parameters (the params.def table) and the Options bag.

Every parameter has a C name, which is also its YAML recipe key ("eval.seq_len"), and a Python
keyword where dots become underscores (``eval_seq_len``)::

    opts = Options(num_threads=2, eval_seq_len=128)
    opts.set("init.weight", "minmax")
    opts["optim.lr"] = 0.05
    opts.get(Param.EVAL_SEQ_LEN)          # 128
    opts.load_recipe("w4a8")              # a shipped preset, or a path to a YAML recipe

recipe_presets() lists the presets compiled into the library; recipe_preset_text(name) gives
one's YAML text. See docs/recipes.md.
"""

import functools
import numbers
import operator
import os
from ctypes import byref, c_char_p, c_double, c_int, c_int64, c_void_p
from dataclasses import dataclass
from typing import Tuple, Union

from ._ffi import lib
from ._util import Handle, c_text, fspath_bytes
from .enums import Param, ParamType, Status
from .errors import check, fail

__all__ = ["ParamInfo", "Options", "params", "param_info", "resolve_param", "recipe_presets",
           "recipe_preset_text"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class ParamInfo:
    """One row of the parameter table, as the library describes it."""
    id: Union[Param, int]      #: the pinned id (a Param member unless the library is newer)
    name: str                  #: C name and YAML key, e.g. "eval.seq_len"
    keyword: str               #: Python keyword, e.g. "eval_seq_len"
    type: ParamType            #: INT, FLOAT, BOOL, CHOICE or STRING
    min: Union[int, float]     #: lower bound (0 for CHOICE)
    max: Union[int, float]     #: upper bound (0 for CHOICE)
    default: object            #: default value, typed as Options.get returns it
    doc: str                   #: one-line description
    choices: Tuple[str, ...]   #: allowed words of a CHOICE parameter, else ()


def _as_param(pid):
    try:
        return Param(pid)
    except ValueError:
        return int(pid)


def _get(handle, pid, ptype):
    """Read a parameter from an options handle (None reads the default), typed by ptype."""
    if ptype == ParamType.FLOAT:
        v = c_double()
        check(lib.qnpu_options_get_float(handle, pid, byref(v)))
        return v.value
    if ptype in (ParamType.CHOICE, ParamType.STRING):
        s = c_char_p()
        check(lib.qnpu_options_get_str(handle, pid, byref(s)))
        return c_text(s.value)
    v = c_int64()
    check(lib.qnpu_options_get_int(handle, pid, byref(v)))
    return bool(v.value) if ptype == ParamType.BOOL else v.value


def _describe(pid):
    name, ptype, lo, hi = c_char_p(), c_int(), c_double(), c_double()
    check(lib.qnpu_param_info(pid, byref(name), byref(ptype), byref(lo), byref(hi)))
    try:
        ptype = ParamType(ptype.value)
    except ValueError:
        ptype = ptype.value
    lo, hi = lo.value, hi.value
    if ptype in (ParamType.INT, ParamType.BOOL, ParamType.CHOICE, ParamType.STRING):
        lo, hi = int(lo), int(hi)
    choices = c_text(lib.qnpu_param_choices(pid))
    text = c_text(name.value)
    return ParamInfo(id=_as_param(pid), name=text, keyword=text.replace(".", "_"), type=ptype,
                     min=lo, max=hi, default=_get(None, pid, ptype),
                     doc=c_text(lib.qnpu_param_doc(pid)) or "",
                     choices=tuple(choices.split("|")) if choices else ())


@functools.lru_cache(maxsize=None)
def params():
    """Every parameter of the table, in table order (qnpu_param_count / qnpu_param_at)."""
    out = []
    for i in range(lib.qnpu_param_count()):
        pid = c_int()
        check(lib.qnpu_param_at(i, byref(pid)))
        out.append(_describe(pid.value))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _by_key():
    table = {}
    for info in params():
        table[info.name] = info
        table[info.keyword] = info
        table[int(info.id)] = info
    return table


def resolve_param(name_or_id):
    """A Param (or int id) from a C name ("eval.seq_len"), a keyword ("eval_seq_len"), a Param
    or an int id. Unknown names and ids raise QnpuError(INVALID_ARG) with the library's message."""
    if isinstance(name_or_id, str):
        info = _by_key().get(name_or_id)
        if info is not None:
            return info.id
        pid = c_int()
        check(lib.qnpu_param_from_name(name_or_id.encode("utf-8"), byref(pid)))
        return _as_param(pid.value)
    try:
        pid = operator.index(name_or_id)
    except TypeError:
        raise TypeError(f"a parameter is a name or an id, not {type(name_or_id).__name__}") \
            from None
    info = _by_key().get(pid)
    if info is not None:
        return info.id
    check(lib.qnpu_param_info(pid, None, None, None, None))  # raises for an unknown id
    return _as_param(pid)


def param_info(name_or_id):
    """The ParamInfo of one parameter (by name, keyword or id)."""
    pid = resolve_param(name_or_id)
    info = _by_key().get(int(pid))
    return info if info is not None else _describe(pid)


class Options(Handle):
    """A qnpu_options bag holding every parameter, at its default until set.

    ``Options(num_threads=2, eval_seq_len=256)`` sets parameters by keyword (dots of the C name
    become underscores); ``Options({"eval.seq_len": 256})`` takes a mapping of C names or
    keywords. Iterating yields the ParamInfo of every parameter; items() yields (name, value)."""

    _free_name = "qnpu_options_free"

    def __init__(self, values=None, /, **kwargs):
        h = c_void_p()
        check(lib.qnpu_options_create(byref(h)))
        self._h = h.value
        try:
            if values is not None:
                self.update(values)
            if kwargs:
                self.update(kwargs)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _coerce(cls, options, overrides=None):
        """(handle or None, temporary Options to close) for an `options` argument (None, an
        Options, or a mapping of names to values) plus keyword `overrides`."""
        if not overrides:
            if options is None:
                return None, None
            if isinstance(options, Options):
                return options._handle(), None
        if isinstance(options, Options):
            tmp = options.clone()
        else:
            tmp = cls(options)
        try:
            tmp.update(overrides or {})
        except BaseException:
            tmp.close()
            raise
        return tmp._handle(), tmp

    def clone(self):
        """An independent copy (qnpu_options_clone)."""
        h = c_void_p()
        check(lib.qnpu_options_clone(self._handle(), byref(h)))
        new = Options.__new__(Options)
        new._h = h.value
        return new

    __copy__ = clone

    def update(self, values=(), /, **kwargs):
        """Set several parameters from a mapping and/or keywords."""
        items = list(values.items() if hasattr(values, "items") else values) + list(kwargs.items())
        for name, value in items:
            self.set(name, value)

    def set(self, name_or_id, value):
        """Set one parameter, choosing the typed setter from qnpu_param_info's type.

        INT/BOOL take ints (and bools), FLOAT takes numbers, CHOICE takes one of its words, STRING
        takes text; any
        of them takes text as recipes do ("true", "256", "1e-3"). A type mismatch or an
        out-of-range value raises QnpuError(INVALID_ARG) whose message names the parameter."""
        h = self._handle()
        info = param_info(name_or_id)
        pid = int(info.id)
        if isinstance(value, str):
            check(lib.qnpu_options_set_str(h, pid, value.encode("utf-8")))
        elif isinstance(value, numbers.Integral) and info.type != ParamType.FLOAT:
            v = operator.index(value)
            if _INT64_MIN <= v <= _INT64_MAX:
                check(lib.qnpu_options_set_int(h, pid, v))
            else:  # beyond int64: let the library report the range with the bounds
                check(lib.qnpu_options_set_float(h, pid, float(v)))
        elif isinstance(value, numbers.Real):
            check(lib.qnpu_options_set_float(h, pid, float(value)))
        else:
            kind = {ParamType.INT: "an integer", ParamType.FLOAT: "a number",
                    ParamType.BOOL: "true or false",
                    ParamType.CHOICE: "one of " + "|".join(info.choices),
                    ParamType.STRING: "a string"}.get(info.type, "a value")
            fail(Status.INVALID_ARG,
                 f"{info.name}: takes {kind}, not {type(value).__name__} {value!r}")

    def load_recipe(self, recipe):
        """Apply a YAML recipe (qnpu_options_load_recipe) and return self.

        `recipe` is a path (str, bytes or os.PathLike; a str counts as a path when it holds a
        '/' or ends in .yaml/.yml) or the name of a shipped preset (see recipe_presets()).
        Parameters the recipe does not name keep their values. An invalid recipe raises
        QnpuError(RECIPE) whose message is "FILE:LINE:COLUMN: problem", and leaves the options
        unchanged; an unreadable file raises QnpuError(IO)."""
        if not isinstance(recipe, (str, bytes, os.PathLike)):
            raise TypeError(f"a recipe is a path or a preset name, not {type(recipe).__name__}")
        check(lib.qnpu_options_load_recipe(self._handle(), fspath_bytes(recipe)))
        return self

    def get(self, name_or_id):
        """Read one parameter: int for INT, bool for BOOL, float for FLOAT, str for CHOICE and
        STRING."""
        info = param_info(name_or_id)
        return _get(self._handle(), int(info.id), info.type)

    __getitem__ = get
    __setitem__ = set

    def __contains__(self, name_or_id):
        try:
            resolve_param(name_or_id)
        except Exception:
            return False
        return True

    def __iter__(self):
        return iter(params())

    def __len__(self):
        return len(params())

    def items(self):
        """(C name, value) for every parameter, in table order."""
        h = self._handle()
        return [(info.name, _get(h, int(info.id), info.type)) for info in params()]

    def to_dict(self):
        """Every parameter as {name: value} (see items())."""
        return dict(self.items())

    def changed(self):
        """{C name: value} of the parameters that differ from their defaults."""
        return {name: v for (name, v), info in zip(self.items(), params()) if v != info.default}

    def __repr__(self):
        if self.closed:
            return "<quantnpu.Options closed>"
        body = ", ".join(f"{n.replace('.', '_')}={v!r}" for n, v in self.changed().items())
        return f"Options({body})"


def recipe_presets():
    """Names of the recipe presets compiled into the library (qnpu_recipe_preset_name), in the
    library's order, e.g. ("quantnpu-w4a8", "w4a8-hadamard", "w8a8", ...)."""
    names = []
    while True:
        name = lib.qnpu_recipe_preset_name(len(names))
        if name is None:
            return tuple(names)
        names.append(c_text(name))


def recipe_preset_text(name):
    """The YAML text of a shipped preset (qnpu_recipe_preset_text); an unknown name raises
    QnpuError(INVALID_ARG)."""
    text = c_char_p()
    check(lib.qnpu_recipe_preset_text(name.encode("utf-8"), byref(text)))
    return c_text(text.value)
