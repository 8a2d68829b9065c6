"""unittest suite of the quantnpu Python binding (standard library only).

Run in-tree:
    make B=build/h-py build/h-py/libquantnpu.so.0.1.0
    QNPU_LIBRARY=$PWD/build/h-py/libquantnpu.so.0 QNPU_SHARED=../shared PYTHONPATH=python \\
        python3 -m unittest discover -s test/python -t test/python -v

Tests that need the shared model and data files are skipped when QNPU_SHARED (default
../shared) does not hold them.
"""

import array
import gc
import math
import os
import re
import tempfile
import threading
import unittest
import weakref

import quantnpu
from quantnpu import (FloatSession, LogLevel, Model, ModelDim, ModelHparam, Options, Param,
                      ParamType, QnpuError, Status, Tokenizer)
from quantnpu import _ffi

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "..", "include", "quantnpu.h")
SHARED = os.environ.get("QNPU_SHARED", "../shared")
MODEL = os.path.join(SHARED, "models", "stories260K.bin")
TOK512 = os.path.join(SHARED, "models", "tok512.bin")
GREEDY = os.path.join(SHARED, "models", "stories260K.greedy256.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")

have_shared = all(os.path.exists(p) for p in (MODEL, TOK512, GREEDY, VALID))
needs_shared = unittest.skipUnless(have_shared, f"shared files not found under {SHARED!r}")

SENTENCE = "Once upon a time, there was a little girl named Lily."
SENTENCE_IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]


def header_text():
    with open(HEADER, encoding="utf-8") as f:
        return f.read()


def header_enum(prefix):
    """{NAME_WITHOUT_PREFIX: value} for the enum constants `prefix`NAME = value of the header."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"\b" + prefix + r"(\w+)\s*=\s*(\d+)", header_text())}


def first_paragraphs(path, count):
    """The first `count` non-empty paragraphs (split on blank lines) joined by blank lines."""
    with open(path, encoding="utf-8") as f:
        paragraphs = [p.strip("\n") for p in f.read().split("\n\n")]
    return "\n\n".join([p for p in paragraphs if p][:count])


def collect():
    for _ in range(3):
        gc.collect()


# ---- version, enums, the ffi table ---------------------------------------------------------------

class TestVersionAndTable(unittest.TestCase):
    def test_version_matches_header(self):
        text = header_text()
        string = re.search(r'#define QNPU_VERSION_STRING "([^"]+)"', text).group(1)
        major, minor, patch = (int(re.search(rf"#define QNPU_VERSION_{k} (\d+)", text).group(1))
                               for k in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(quantnpu.version(), string)
        self.assertEqual(quantnpu.version_number(), major * 10000 + minor * 100 + patch)
        self.assertEqual(string, f"{major}.{minor}.{patch}")

    def test_table_covers_header(self):
        declared = set(re.findall(r"QNPU_API\b[^;{]*?\b(qnpu_\w+)\s*\(", header_text()))
        self.assertTrue(declared)
        self.assertEqual(declared, set(_ffi.FUNCTION_NAMES))
        self.assertEqual(len(_ffi.FUNCTION_NAMES), len(set(_ffi.FUNCTION_NAMES)))
        for name in _ffi.FUNCTION_NAMES:
            fn = getattr(_ffi.lib, name)
            self.assertIsNotNone(fn.argtypes, name)

    def test_table_types_match_header(self):
        """argtypes/restype of every function agree with the C declaration."""
        c = _ffi.ctypes
        handles = set(re.findall(r"typedef struct (qnpu_\w+) \1;", header_text()))
        enums = {"qnpu_status", "qnpu_param", "qnpu_model_dim", "qnpu_model_hparam",
                 "qnpu_export_format", "int"}
        scalars = {"unsigned": c.c_uint, "int64_t": c.c_int64, "int32_t": c.c_int32,
                   "size_t": c.c_size_t, "double": c.c_double, "float": c.c_float}
        callbacks = {"qnpu_progress_fn": _ffi.PROGRESS_FN, "qnpu_log_fn": _ffi.LOG_FN,
                     "qnpu_alloc_fn": _ffi.ALLOC_FN, "qnpu_free_fn": _ffi.FREE_FN}

        def ctype(decl):
            decl = decl.replace("const", " ").replace("*", " * ")
            words = decl.split()
            stars = words.count("*")
            base = [w for w in words if w != "*"][0]
            if base == "void":
                return None if stars == 0 else c.c_void_p
            if base == "char":
                return c.c_char_p if stars == 1 else c.POINTER(c.c_char_p)
            if base in handles:
                return c.c_void_p if stars == 1 else c.POINTER(c.c_void_p)
            t = c.c_int if base in enums else scalars.get(base) or callbacks[base]
            for _ in range(stars):
                t = c.POINTER(t)
            return t

        decls = re.findall(r"QNPU_API\s+([^;{#]*?\b(qnpu_\w+)\s*\(([^)]*)\))\s*;", header_text())
        self.assertEqual(len(decls), len(_ffi.FUNCTION_NAMES))
        for whole, name, params in decls:
            fn = getattr(_ffi.lib, name)
            ret = whole[:whole.index(name)]
            self.assertIs(fn.restype, ctype(ret), name)
            params = [] if params.strip() == "void" else params.split(",")
            # drop each parameter's name (the last identifier)
            args = [ctype(re.sub(r"\w+\s*$", "", p.strip())) for p in params]
            self.assertEqual(len(fn.argtypes), len(args), name)
            for i, (got, want) in enumerate(zip(fn.argtypes, args)):
                self.assertIs(got, want, f"{name} argument {i + 1}")

    def test_library_soname_default(self):
        self.assertEqual(_ffi.SONAME, "libquantnpu.so.0")
        if os.environ.get("QNPU_LIBRARY"):
            self.assertEqual(_ffi.library_path, os.environ["QNPU_LIBRARY"])


class TestEnums(unittest.TestCase):
    def test_status_matches_header(self):
        expected = {"OK": int(re.search(r"\bQNPU_OK\s*=\s*(\d+)", header_text()).group(1))}
        expected.update(header_enum("QNPU_ERR_"))
        self.assertEqual({s.name: s.value for s in Status}, expected)

    def test_status_strings(self):
        self.assertEqual(sorted(int(s) for s in Status), list(range(12)))
        texts = set()
        for value in range(12):
            text = quantnpu.status_string(value)
            self.assertNotEqual(text, "unknown status", value)
            self.assertTrue(text)
            texts.add(text)
        self.assertEqual(len(texts), 12)
        self.assertEqual(quantnpu.status_string(12), "unknown status")
        self.assertEqual(quantnpu.status_string(-1), "unknown status")

    def test_param_enum_matches_library(self):
        # every Python member is a C parameter with the matching name, both ways
        for p in Param:
            info = quantnpu.param_info(p)
            self.assertIs(info.id, p)
            self.assertEqual(info.name.replace(".", "_").upper(), p.name)
            self.assertEqual(quantnpu.params()[[i.id for i in quantnpu.params()].index(p)], info)
            out = _ffi.ctypes.c_int()
            self.assertEqual(_ffi.lib.qnpu_param_from_name(info.name.encode(), _ffi.ctypes.byref(out)),
                             Status.OK)
            self.assertEqual(out.value, p.value)
        # every C parameter (qnpu_param_count / qnpu_param_at) is in the Python enum
        count = _ffi.lib.qnpu_param_count()
        self.assertEqual(count, len(Param))
        for i in range(count):
            out = _ffi.ctypes.c_int()
            self.assertEqual(_ffi.lib.qnpu_param_at(i, _ffi.ctypes.byref(out)), Status.OK)
            self.assertIn(out.value, Param.__members__.values())
        self.assertEqual(_ffi.lib.qnpu_param_at(count, _ffi.ctypes.byref(out)), Status.INVALID_ARG)

    def test_param_enum_matches_header(self):
        self.assertEqual({p.name: p.value for p in Param}, header_enum("QNPU_P_"))

    def test_other_enums_match_header(self):
        self.assertEqual({e.name: e.value for e in ParamType}, header_enum("QNPU_PTYPE_"))
        self.assertEqual({e.name: e.value for e in ModelDim}, header_enum("QNPU_DIM_"))
        self.assertEqual({e.name: e.value for e in ModelHparam}, header_enum("QNPU_HP_"))
        self.assertEqual({e.name: e.value for e in LogLevel}, header_enum("QNPU_LOG_"))

    def test_param_types(self):
        for info in quantnpu.params():
            self.assertIsInstance(info.type, ParamType)
            if info.type == ParamType.CHOICE:
                self.assertGreaterEqual(len(info.choices), 2, info.name)
                self.assertIn(info.default, info.choices)
            elif info.type == ParamType.STRING:
                self.assertEqual(info.default, "")
                self.assertEqual(info.choices, ())
            else:
                self.assertEqual(info.choices, ())
                self.assertLessEqual(info.min, info.max)
                self.assertTrue(info.min <= info.default <= info.max, info.name)
            self.assertTrue(info.doc, info.name)
            self.assertEqual(info.keyword, info.name.replace(".", "_"))

    def test_error_object(self):
        e = QnpuError(Status.IO, "input/output error", "x.bin: cannot open")
        self.assertEqual(e.status, Status.IO)
        self.assertEqual(e.status_name, "input/output error")
        self.assertEqual(e.message, "x.bin: cannot open")
        self.assertIn("x.bin", str(e))
        self.assertEqual(QnpuError(99).status, 99)
        self.assertEqual(QnpuError(99).status_name, "unknown status")


# ---- options -------------------------------------------------------------------------------------

class TestOptions(unittest.TestCase):
    def assertInvalid(self, fn, *args, mentions=None):
        with self.assertRaises(QnpuError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        if mentions is not None:
            self.assertIn(mentions, cm.exception.message)
        return cm.exception

    def test_defaults(self):
        with Options() as o:
            for info in quantnpu.params():
                self.assertEqual(o.get(info.name), info.default, info.name)
            self.assertEqual(o.get("eval.seq_len"), 256)
            self.assertEqual(len(o.items()), _ffi.lib.qnpu_param_count())
            self.assertEqual(o.changed(), {})

    def test_round_trips(self):
        with Options() as o:
            o.set("num_threads", 3)
            self.assertEqual(o.get("num_threads"), 3)
            o.set(Param.EVAL_SEQ_LEN, 128)
            self.assertEqual(o.get("eval_seq_len"), 128)
            o["seed"] = 4294967295
            self.assertEqual(o["seed"], 4294967295)
            o.set("optim.lr", 0.025)
            self.assertEqual(o.get("optim.lr"), 0.025)
            o.set("optim.lr", 2)                       # an int into a FLOAT
            self.assertEqual(o.get("optim.lr"), 2.0)
            self.assertIsInstance(o.get("optim.lr"), float)
            o.set("optim.steps", 10.0)                 # an integral float into an INT
            self.assertEqual(o.get("optim.steps"), 10)
            o.set("model.mmap", False)
            self.assertIs(o.get("model.mmap"), False)
            o.set("model.mmap", "true")
            self.assertIs(o.get("model.mmap"), True)
            o.set("init.weight", "minmax")
            self.assertEqual(o.get("init.weight"), "minmax")
            o.set("calib.num_samples", "32")
            self.assertEqual(o.get("calib.num_samples"), 32)
            o.set(int(Param.MIXED_P), "0.5")
            self.assertEqual(o.get("mixed.p"), 0.5)
            self.assertEqual(set(o.changed()), {"num_threads", "eval.seq_len", "seed", "optim.lr",
                                               "optim.steps", "init.weight", "calib.num_samples",
                                               "mixed.p"})

    def test_keywords(self):
        with Options(num_threads=2, eval_seq_len=64, init_weight="minmax",
                     model_check_finite=False) as o:
            self.assertEqual(o.get("num_threads"), 2)
            self.assertEqual(o.get("eval.seq_len"), 64)
            self.assertEqual(o.get("init.weight"), "minmax")
            self.assertFalse(o.get("model.check_finite"))
            self.assertIn("eval_seq_len=64", repr(o))
        with Options({"eval.seq_len": 32, "optim_lr": 0.5}) as o:
            self.assertEqual(o.get("eval.seq_len"), 32)
            self.assertEqual(o.get("optim.lr"), 0.5)

    def test_range_errors_name_the_parameter(self):
        with Options() as o:
            e = self.assertInvalid(o.set, "num_threads", 5000, mentions="num_threads")
            self.assertIn("1024", e.message)  # the bounds are given
            self.assertInvalid(o.set, "eval.seq_len", 1, mentions="eval.seq_len")
            self.assertInvalid(o.set, "mixed.p", 1.5, mentions="mixed.p")
            self.assertInvalid(o.set, "seed", -1, mentions="seed")
            self.assertInvalid(o.set, "seed", 1 << 70, mentions="seed")
            self.assertInvalid(o.set, "optim.lr", float("nan"), mentions="optim.lr")
            # a failed set leaves the value unchanged
            self.assertEqual(o.get("num_threads"), 0)

    def test_type_errors_name_the_parameter(self):
        with Options() as o:
            self.assertInvalid(o.set, "num_threads", 1.5, mentions="num_threads")
            self.assertInvalid(o.set, "num_threads", "many", mentions="num_threads")
            self.assertInvalid(o.set, "num_threads", [1], mentions="num_threads")
            self.assertInvalid(o.set, "num_threads", None, mentions="num_threads")
            self.assertInvalid(o.set, "init.weight", 1, mentions="init.weight")
            self.assertInvalid(o.set, "init.weight", "median", mentions="init.weight")
            self.assertInvalid(o.set, "model.mmap", "maybe", mentions="model.mmap")
            self.assertInvalid(o.set, "model.mmap", 2, mentions="model.mmap")
            self.assertInvalid(o.set, "no.such_param", 1, mentions="no.such_param")
            self.assertInvalid(o.set, 9999, 1, mentions="9999")
        with self.assertRaises(QnpuError) as cm:
            Options(no_such_param=1)
        self.assertIn("no_such_param", cm.exception.message)

    def test_iteration(self):
        with Options() as o:
            infos = list(o)
            self.assertEqual(len(infos), len(o))
            self.assertEqual([i.id for i in infos], [i.id for i in quantnpu.params()])
            names = {i.name for i in infos}
            self.assertIn("calib.num_samples", names)
            self.assertIn("eval.seq_len", o)
            self.assertIn("eval_seq_len", o)
            self.assertNotIn("no.such", o)
            for info in infos:
                self.assertIn(info.type, set(ParamType))
                if info.type == ParamType.INT:
                    self.assertIsInstance(info.min, int)

    def test_clone_and_lifecycle(self):
        o = Options(eval_seq_len=100)
        c = o.clone()
        o.set("eval.seq_len", 50)
        self.assertEqual(c.get("eval.seq_len"), 100)
        o.close()
        o.close()  # idempotent
        self.assertTrue(o.closed)
        with self.assertRaises(ValueError):
            o.get("eval.seq_len")
        self.assertEqual(c.get("eval.seq_len"), 100)
        with c:
            pass
        self.assertTrue(c.closed)


# ---- model ---------------------------------------------------------------------------------------

@needs_shared
class TestModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = Model.load(MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()
        del cls.model

    def test_dims(self):
        m = self.model
        self.assertEqual(m.dim, 64)
        self.assertEqual(m.hidden, 64)
        self.assertEqual(m.layers, 5)
        self.assertEqual(m.n_layers, 5)
        self.assertEqual(m.vocab, 512)
        self.assertEqual(m.vocab_size, 512)
        self.assertEqual(m.heads * m.head_dim, m.hidden)
        self.assertEqual(m.heads % m.kv_heads, 0)
        self.assertGreater(m.ffn, 0)
        self.assertGreater(m.max_seq, 32)
        self.assertEqual(m.rope_order, 0)
        self.assertIsInstance(m.tied, bool)
        self.assertFalse(m.qkv_bias)
        self.assertEqual((m.bos, m.eos), (1, 2))
        self.assertEqual(m.get_dim(ModelDim.LAYERS), 5)
        self.assertEqual(m.rope_theta, 10000.0)
        self.assertGreater(m.rms_eps, 0)
        self.assertEqual(m.get_hparam(ModelHparam.ROPE_THETA), 10000.0)
        self.assertEqual(m.arch, "llama")
        self.assertEqual(m.format, "llama2c")
        with self.assertRaises(QnpuError) as cm:
            m.get_dim(99)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)

    def test_tensors(self):
        m = self.model
        names = m.tensor_names()
        self.assertEqual(len(names), m.tensor_count)
        self.assertIn("token_embd.weight", names)
        self.assertIn("blk.4.ffn_down.weight", names)
        self.assertEqual(m.tensor_shape("token_embd.weight"), (512, 64))
        self.assertEqual(m.tensor_shape("output_norm.weight"), (1, 64))
        w = m.read_tensor("token_embd.weight")
        self.assertIsInstance(w, array.array)
        self.assertEqual(w.typecode, "f")
        self.assertEqual(len(w), 512 * 64)
        self.assertTrue(all(math.isfinite(x) for x in w))
        self.assertTrue(any(x != 0 for x in w))
        # the same bytes through a caller's buffer, and through the index
        buf = array.array("f", bytes(4 * 512 * 64 + 8))
        self.assertIs(m.read_tensor(names.index("token_embd.weight"), out=buf), buf)
        self.assertEqual(buf[:512 * 64], w)
        with self.assertRaises(ValueError):
            m.read_tensor("token_embd.weight", out=array.array("f", [0.0]))
        with self.assertRaises(ValueError):
            m.read_tensor("token_embd.weight", out=array.array("d", bytes(8 * 512 * 64)))
        with self.assertRaises(QnpuError) as cm:
            m.read_tensor("blk.99.attn_q.weight")
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        self.assertIn("blk.99.attn_q.weight", cm.exception.message)
        with self.assertRaises(QnpuError):
            m.tensor_shape(len(names))

    def test_numpy_optional(self):
        try:
            import numpy
        except ImportError:
            with self.assertRaises(ImportError):
                self.model.read_tensor("token_embd.weight", numpy=True)
            return
        w = self.model.read_tensor("token_embd.weight", numpy=True)
        self.assertEqual(w.shape, (512, 64))
        self.assertEqual(w.dtype, numpy.float32)
        self.assertEqual(w.ravel().tolist(), self.model.read_tensor("token_embd.weight").tolist())

    def test_memory_usage(self):
        usage = self.model.memory_usage()
        self.assertGreater(usage.owned + usage.mapped, 1_000_000 * 0.9)
        with Model(MODEL, model_mmap=False) as copy:
            self.assertEqual(copy.memory_usage().mapped, 0)
            self.assertEqual(copy.read_tensor("blk.0.attn_q.weight"),
                             self.model.read_tensor("blk.0.attn_q.weight"))
        with Options(model_mmap=False) as o, Model(MODEL, o) as copy:
            self.assertEqual(copy.memory_usage().mapped, 0)
        with Options(model_mmap=False) as o, Model(MODEL, o, model_mmap=True) as mapped:
            self.assertGreater(mapped.memory_usage().mapped, 0)  # keywords override
            self.assertFalse(o.get("model.mmap"))                 # on a copy

    def test_missing_file(self):
        path = os.path.join(tempfile.gettempdir(), "quantnpu-no-such-dir", "missing.bin")
        with self.assertRaises(QnpuError) as cm:
            Model(path)
        self.assertEqual(cm.exception.status, Status.IO)
        self.assertEqual(cm.exception.status_name, quantnpu.status_string(Status.IO))
        self.assertIn(path, cm.exception.message)
        self.assertIn(path, str(cm.exception))

    def test_bad_file(self):
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(b"\x00" * 100)
            f.flush()
            with self.assertRaises(QnpuError) as cm:
                Model(f.name)
            self.assertIn(cm.exception.status, (Status.FORMAT, Status.IO, Status.UNSUPPORTED))

    def test_closed(self):
        m = Model(MODEL)
        self.assertIn("dim=64", repr(m))
        m.close()
        self.assertTrue(m.closed)
        self.assertIn("closed", repr(m))
        with self.assertRaises(ValueError):
            m.dim
        with self.assertRaises(ValueError):
            Tokenizer.from_model(m)
        with self.assertRaises(ValueError):
            FloatSession(m)


# ---- tokenizer -----------------------------------------------------------------------------------

@needs_shared
class TestTokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with Model(MODEL) as m:
            cls.tok = Tokenizer.from_model(m)  # independent of the model once made

    @classmethod
    def tearDownClass(cls):
        cls.tok.close()
        del cls.tok

    def test_properties(self):
        self.assertEqual(self.tok.vocab_size, 512)
        self.assertEqual(len(self.tok), 512)
        self.assertEqual(self.tok.bos, 1)
        self.assertEqual(self.tok.eos, 2)
        self.assertEqual(self.tok.piece(403), " Once")
        self.assertEqual(self.tok.piece_bytes(403), b" Once")
        with self.assertRaises(QnpuError) as cm:
            self.tok.piece(512)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)

    def test_encode_decode(self):
        ids = self.tok.encode(SENTENCE)
        self.assertEqual(ids, SENTENCE_IDS)
        self.assertEqual(self.tok.encode(SENTENCE.encode()), SENTENCE_IDS)
        self.assertEqual(self.tok.encode(SENTENCE, add_bos=False), SENTENCE_IDS[1:])
        self.assertEqual(self.tok.decode(ids), SENTENCE)
        self.assertEqual(self.tok.decode(ids[1:]), SENTENCE)
        self.assertEqual(self.tok.decode_bytes(ids), SENTENCE.encode())
        self.assertEqual(self.tok.encode(""), [1])
        self.assertEqual(self.tok.encode("", add_bos=False), [])
        # token by token, chaining prev/id: the leading space survives after a non-BOS token
        self.assertEqual(self.tok.decode_token(1, 403), b"Once")
        self.assertEqual(self.tok.decode_token(426, 403), b" Once")
        with self.assertRaises(QnpuError) as cm:
            self.tok.decode([1, 5000])
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)

    def test_byte_fallback_round_trip(self):
        # CJK text needs about one id per byte: larger than the first buffer guess, so the
        # BUFFER_TOO_SMALL retry runs
        for text in ["日本語のテキスト" * 20, "a\x00b é\n\nü€😀", "\n", "  two  spaces  "]:
            ids = self.tok.encode(text)
            self.assertTrue(all(0 <= i < 512 for i in ids))
            self.assertEqual(self.tok.decode(ids), text)
        raw = bytes(range(1, 256))  # not UTF-8
        self.assertEqual(self.tok.decode_bytes(self.tok.encode(raw)), raw)

    def test_load_from_file(self):
        with Tokenizer.load(TOK512) as t:
            self.assertEqual(t.vocab_size, 512)
            self.assertEqual(t.encode(SENTENCE), SENTENCE_IDS)
        with Tokenizer(TOK512, vocab_size=300) as t:
            self.assertEqual(t.vocab_size, 300)
        with self.assertRaises(QnpuError) as cm:
            Tokenizer.load(os.path.join(SHARED, "no-such-tokenizer.bin"))
        self.assertEqual(cm.exception.status, Status.IO)
        self.assertIn("no-such-tokenizer.bin", cm.exception.message)

    def test_tokenize_paragraphs(self):
        text = "\nOnce upon a time.\n\n\n\nThe end.\n"
        ids = self.tok.tokenize_paragraphs(text)
        # paragraphs: "\nOnce upon a time.", "" (skipped), "The end.\n"; newlines stripped
        self.assertEqual(ids, self.tok.encode("Once upon a time.") + self.tok.encode("The end."))
        self.assertEqual(ids.count(1), 2)
        self.assertEqual(self.tok.tokenize_paragraphs("A.\n\nB."),
                         self.tok.encode("A.") + self.tok.encode("B."))
        with self.assertRaises(QnpuError) as cm:
            self.tok.tokenize_paragraphs("\n\n\n")
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)


# ---- float session -------------------------------------------------------------------------------

@needs_shared
class TestFloatSession(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = Model(MODEL)
        cls.tok = Tokenizer.from_model(cls.model)
        cls.session = FloatSession(cls.model, num_threads=1)

    @classmethod
    def tearDownClass(cls):
        cls.session.close()
        cls.tok.close()
        cls.model.close()
        del cls.session, cls.tok, cls.model

    def setUp(self):
        self.session.set_progress(None)
        self.session.reset()

    def golden(self):
        with open(GREEDY, encoding="utf-8") as f:
            return [int(x) for x in f.read().splitlines()[2].split()]

    def test_greedy_matches_golden(self):
        s = self.session
        token, ids = self.tok.bos, []
        for _ in range(32):
            logits = s.eval([token])
            self.assertIsInstance(logits, array.array)
            self.assertEqual(len(logits), 512)
            token = quantnpu.argmax(logits)
            ids.append(token)
        self.assertEqual(s.pos, 32)
        self.assertEqual(ids, self.golden()[:32])
        s.reset()
        self.assertEqual(s.pos, 0)
        self.assertEqual(s.generate_greedy([self.tok.bos], 32), self.golden()[:32])

    def test_all_logits(self):
        s = self.session
        prompt = SENTENCE_IDS[:6]
        every = s.eval(prompt, all_logits=True)
        self.assertEqual(len(every), len(prompt) * 512)
        self.assertEqual(s.pos, 6)
        s.reset()
        last = s.eval(prompt)
        for a, b in zip(every[5 * 512:], last):
            self.assertAlmostEqual(a, b, delta=1e-4)
        # decode one position at a time gives the same rows as prefill
        s.reset()
        for t, token in enumerate(prompt):
            row = s.eval(token)
            for a, b in zip(every[t * 512:(t + 1) * 512], row):
                self.assertAlmostEqual(a, b, delta=1e-3)
        # into a caller's buffer; no logits at all
        s.reset()
        buf = array.array("f", bytes(4 * 512))
        self.assertIs(s.eval(prompt, out=buf), buf)
        self.assertIsNone(s.eval([5], return_logits=False))
        self.assertEqual(s.pos, 7)
        self.assertEqual(len(s.eval([])), 512)  # nothing to run

    def test_bad_tokens(self):
        s = self.session
        for bad in ([1, 512], [-1], [1, 1 << 40]):
            with self.assertRaises(QnpuError) as cm:
                s.eval(bad)
            self.assertEqual(cm.exception.status, Status.INVALID_ARG, bad)
        with self.assertRaises(QnpuError) as cm:
            s.eval([1, 2, 3, 512])
        self.assertIn("512", cm.exception.message)
        self.assertEqual(s.pos, 0)  # nothing was run
        with self.assertRaises(TypeError):
            s.eval("text")
        with self.assertRaises(TypeError):
            s.eval([1.5])

    def test_context_limit(self):
        s = self.session
        with self.assertRaises(QnpuError) as cm:
            s.eval([1] * (self.model.max_seq + 1), return_logits=False)
        self.assertEqual(cm.exception.status, Status.STATE)

    def test_perplexity(self):
        text = first_paragraphs(VALID, 50)
        ppl, scored = self.session.perplexity(text, self.tok, ctx=256)
        self.assertTrue(math.isfinite(ppl))
        self.assertTrue(3 < ppl < 10, ppl)
        ids = self.tok.tokenize_paragraphs(text)
        self.assertEqual(ids.count(self.tok.bos), 50)
        windows = (len(ids) + 255) // 256
        self.assertEqual(scored, len(ids) - windows)
        again = self.session.perplexity_ids(ids, 256)
        self.assertEqual(again, (ppl, scored))
        self.assertEqual(again.ppl, ppl)
        # the default window is eval.seq_len (256)
        self.assertEqual(self.session.perplexity(text.encode(), self.tok), (ppl, scored))
        with FloatSession(self.model, eval_seq_len=64, num_threads=1) as short:
            self.assertEqual(short.perplexity_ids(ids), short.perplexity_ids(ids, 64))
            self.assertNotEqual(short.perplexity_ids(ids)[1], scored)
        with self.assertRaises(QnpuError) as cm:
            self.session.perplexity_ids([1])
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)

    def test_progress_and_cancel(self):
        text = first_paragraphs(VALID, 20)
        calls = []

        def record(stage, done, total):
            calls.append((stage, done, total))
            return False

        self.session.set_progress(record)
        ppl, scored = self.session.perplexity(text, self.tok, ctx=64)
        self.assertGreater(len(calls), 1)
        self.assertEqual(calls[-1][0], "eval")
        self.assertEqual(calls[-1][1], calls[-1][2])

        self.session.set_progress(lambda stage, done, total: True)
        with self.assertRaises(QnpuError) as cm:
            self.session.perplexity(text, self.tok, ctx=64)
        self.assertEqual(cm.exception.status, Status.CANCELLED)

        # an exception in the callback cancels and comes back out
        def boom(stage, done, total):
            raise KeyError("from the callback")

        self.session.set_progress(boom)
        with self.assertRaises(KeyError):
            self.session.perplexity(text, self.tok, ctx=64)

        # re-entering the session from its own callback is refused, not a crash
        errors = []

        def reenter(stage, done, total):
            for call in (lambda: self.session.eval([1]), self.session.reset,
                         lambda: self.session.set_progress(None), self.session.close):
                try:
                    call()
                except QnpuError as e:
                    errors.append(e.status)
            return False

        self.session.set_progress(reenter)
        self.session.perplexity(text, self.tok, ctx=64)
        self.assertEqual(len(errors) % 4, 0)
        self.assertTrue(errors)
        self.assertEqual(set(errors), {Status.STATE})
        self.assertFalse(self.session.closed)

        self.session.set_progress(None)
        self.assertEqual(self.session.perplexity(text, self.tok, ctx=64), (ppl, scored))

    def test_callback_kept_alive(self):
        hits = []
        self.session.set_progress(lambda *a: hits.append(a) and False)
        collect()  # the CFUNCTYPE object lives on the session, not in a temporary
        self.session.perplexity_ids(SENTENCE_IDS * 4, 16)
        self.assertEqual(len(hits), 4)

    def test_threads(self):
        """Different sessions on one model run concurrently (ctypes releases the GIL)."""
        results = {}

        def work(k):
            with FloatSession(self.model, num_threads=1) as s:
                results[k] = s.perplexity_ids(self.golden()[:200], 50)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(set(results.values())), 1)


@needs_shared
class TestOwnership(unittest.TestCase):
    def test_model_deleted_before_session(self):
        model = Model(MODEL)
        session = FloatSession(model, num_threads=1)
        ref = weakref.ref(model)
        del model
        collect()
        self.assertIsNotNone(ref())  # the session keeps it
        self.assertEqual(quantnpu.argmax(session.eval([1])), 403)
        del session
        collect()
        self.assertIsNone(ref())

    def test_session_deleted_before_model(self):
        model = Model(MODEL)
        session = FloatSession(model, num_threads=1)
        session.eval([1])
        del session
        collect()
        self.assertEqual(model.dim, 64)
        del model
        collect()

    def test_explicit_close_is_deferred(self):
        model = Model(MODEL)
        session = FloatSession(model, num_threads=1)
        model.close()  # the session still uses it: freed when the session closes
        self.assertTrue(model.closed)
        with self.assertRaises(ValueError):
            model.dim
        with self.assertRaises(ValueError):
            FloatSession(model)
        self.assertEqual(quantnpu.argmax(session.eval([1])), 403)
        session.close()
        self.assertIsNone(model._h)
        session.close()
        model.close()
        with self.assertRaises(ValueError):
            session.eval([1])

    def test_cycle_any_order(self):
        for _ in range(3):
            model = Model(MODEL)
            sessions = [FloatSession(model, num_threads=1) for _ in range(2)]
            tok = Tokenizer.from_model(model)
            cycle = [model, sessions, tok]
            cycle.append(cycle)
            sessions[0].set_progress(lambda *a: cycle and False)
            del model, sessions, tok, cycle
            collect()

    def test_tokenizer_closed_during_perplexity(self):
        with Model(MODEL) as model, FloatSession(model, num_threads=1) as session:
            tok = Tokenizer.from_model(model)
            session.set_progress(lambda *a: tok.close())
            ppl, scored = session.perplexity(first_paragraphs(VALID, 3), tok, ctx=32)
            self.assertTrue(math.isfinite(ppl))
            self.assertTrue(tok.closed)
            self.assertIsNone(tok._h)  # freed once the call returned
            with self.assertRaises(ValueError):
                session.perplexity("text", tok)

    def test_tokenizer_outlives_model(self):
        with Model(MODEL) as model:
            tok = Tokenizer.from_model(model)
        self.assertEqual(tok.encode(SENTENCE), SENTENCE_IDS)
        tok.close()

    def test_evaluate(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
            f.write(first_paragraphs(VALID, 5))
            f.flush()
            result = quantnpu.evaluate(MODEL, f.name, ctx=128)
            with Model(MODEL) as m, Tokenizer.from_model(m) as t, FloatSession(m) as s:
                with open(f.name, encoding="utf-8") as g:
                    self.assertEqual(result, s.perplexity(g.read(), t, 128))
            self.assertTrue(3 < result.ppl < 20)


try:
    import numpy
except ImportError:
    numpy = None


@needs_shared
@unittest.skipIf(numpy is None, "numpy is not installed (it is optional)")
class TestNumpy(unittest.TestCase):
    def test_numpy_buffers(self):
        with Model(MODEL) as m, FloatSession(m, num_threads=1) as s:
            ids = numpy.array(SENTENCE_IDS[:4], dtype=numpy.int32)
            every = s.eval(ids, all_logits=True, numpy=True)
            self.assertEqual(every.shape, (4, 512))
            self.assertEqual(every.dtype, numpy.float32)
            s.reset()
            last = s.eval(ids.astype(numpy.int64), numpy=True)
            self.assertEqual(last.shape, (512,))
            self.assertTrue(numpy.allclose(every[-1], last, atol=1e-4))
            s.reset()
            out = numpy.zeros((4, 512), numpy.float32)
            self.assertIs(s.eval(ids, all_logits=True, out=out), out)
            self.assertTrue(numpy.allclose(out, every, atol=1e-4))
            with self.assertRaises(ValueError):
                s.eval(1, out=numpy.zeros(512, numpy.float64))
            with self.assertRaises(ValueError):
                s.eval(1, out=numpy.zeros((512, 2), numpy.float32)[:, 0])
            s.reset()
            self.assertEqual(quantnpu.argmax(s.eval(numpy.int64(1), numpy=True)), 403)


# ---- logging (last: it needs every handle of the earlier tests to be gone) -----------------------

@needs_shared
class TestZLogging(unittest.TestCase):
    def test_log_callback(self):
        collect()
        lines = []
        quantnpu.set_log_callback(lambda level, msg: lines.append((level, msg)))
        try:
            quantnpu.set_log_level(LogLevel.DEBUG)
            with self.assertRaises(QnpuError):
                Model(os.path.join(SHARED, "no-such-model.bin"))
            self.assertTrue(any("no-such-model.bin" in msg for _, msg in lines), lines)
            self.assertTrue(all(isinstance(level, LogLevel) for level, _ in lines))
            # a handle exists: the global setter refuses
            with Options():
                with self.assertRaises(QnpuError) as cm:
                    quantnpu.set_log_callback(None)
                self.assertEqual(cm.exception.status, Status.STATE)
            with self.assertRaises(QnpuError) as cm:
                quantnpu.set_log_level(7)
            self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        finally:
            quantnpu.set_log_level(LogLevel.WARN)
            quantnpu.set_log_callback(None)


if __name__ == "__main__":
    unittest.main()
