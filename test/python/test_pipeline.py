"""The binding's error classes, context managers, calibrate(ids=...), Report and Comparison
(stdlib unittest)."""
import math
import os
import pickle
import tempfile
import unittest

import quantnpu
from quantnpu import QnpuError, Status

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")


class TestErrorClasses(unittest.TestCase):
    def test_every_status_has_a_class(self):
        seen = set()
        for status in Status:
            cls = quantnpu.error_class(status)
            if status == Status.OK:
                self.assertIs(cls, QnpuError)
                continue
            self.assertTrue(issubclass(cls, QnpuError))
            self.assertIsNot(cls, QnpuError, status)
            self.assertIs(getattr(quantnpu, cls.__name__), cls)
            seen.add(cls)
            e = QnpuError(status, None, "detail")      # the base class picks the subclass
            self.assertIs(type(e), cls)
            self.assertEqual(e.status, status)
            self.assertEqual(e.status_name, quantnpu.status_string(status))
            self.assertEqual(str(e), f"{e.status_name}: detail")
            again = pickle.loads(pickle.dumps(e))
            self.assertIs(type(again), cls)
            self.assertEqual((again.status, again.message), (status, "detail"))
        self.assertEqual(len(seen), len(Status) - 1)    # one class per status
        unknown = QnpuError(999, "unknown status", "")  # from a newer library
        self.assertIs(type(unknown), QnpuError)
        self.assertEqual(unknown.status, 999)

    def test_raised_by_calls(self):
        with self.assertRaises(quantnpu.IoError) as cm:
            quantnpu.Model("/nonexistent/model.bin")
        self.assertEqual(cm.exception.status, Status.IO)
        with self.assertRaises(quantnpu.InvalidArgError):
            quantnpu.Options(num_threads=5000)
        with self.assertRaises(quantnpu.InvalidArgError):
            quantnpu.Options().load_recipe("no-such-preset")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("version: 1\ncalib:\n  num_sampls: 4\n")
            f.flush()
            with self.assertRaises(quantnpu.RecipeError) as cm:
                quantnpu.Options().load_recipe(f.name)
            self.assertIn("num_sampls", cm.exception.message)
        with tempfile.NamedTemporaryFile("wb", suffix=".qnpu") as f:
            f.write(b"not a qnpu file at all" * 8)
            f.flush()
            with self.assertRaises(quantnpu.FormatError):
                quantnpu.QuantizedModel(f.name)


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN), "needs ../shared")
class TestPipeline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = quantnpu.Model(BIN)
        cls.tok = quantnpu.Tokenizer.from_model(cls.model)
        with open(TRAIN, encoding="utf-8") as f:
            cls.train_ids = cls.tok.tokenize_paragraphs(f.read(40000))
        with open(VALID, encoding="utf-8") as f:
            cls.valid_ids = cls.tok.tokenize_paragraphs(f.read(8000))

    @classmethod
    def tearDownClass(cls):
        cls.tok.close()
        cls.model.close()

    def calibrate(self, **kw):
        opts = dict(num_threads=1, calib_seq_len=64, calib_num_samples=2, calib_first_block=0)
        opts.update(kw)
        with quantnpu.Options(opts) as o:
            o.load_recipe("w4a8-hadamard")
            o.update(opts)
            return quantnpu.calibrate(self.model, None, ids=self.train_ids, options=o)

    def test_calibrate_ids_and_context_managers(self):
        with self.calibrate() as q:
            self.assertFalse(q.closed)
            with self.assertRaises(QnpuError):       # no tokenizer was given: none is stored
                q.tokenizer()
            with quantnpu.IntSession(q, num_threads=1) as s:
                got = s.perplexity_ids(self.valid_ids[:256], 128)
            self.assertTrue(1 < got.ppl < 20, got)
        self.assertTrue(q.closed)
        with self.assertRaises(ValueError):
            q.points()
        with self.assertRaises(QnpuError):           # neither text nor ids
            quantnpu.calibrate(self.model, self.tok)
        # every handle class is a context manager that closes on exit
        for make in (lambda: quantnpu.Options(), lambda: quantnpu.Model(BIN),
                     lambda: quantnpu.Tokenizer.from_model(self.model),
                     lambda: quantnpu.FloatSession(self.model, num_threads=1),
                     lambda: quantnpu.Optimizer(self.model, num_threads=1)):
            with make() as h:
                self.assertFalse(h.closed)
            self.assertTrue(h.closed)

    def test_report_and_comparison(self):
        ids = self.valid_ids[:128]
        with self.calibrate() as q:
            with quantnpu.Options(num_threads=1) as o:
                o.load_recipe("w4a8-hadamard")  # the rotations the model was quantized with
                with quantnpu.Report(self.model, q, ids, 64, o) as r:
                    points = r.points()
                    self.assertEqual(len(points), len(r))
                    self.assertEqual([p.name for p in points], [p.name for p in q.points()])
                    self.assertAlmostEqual(sum(p.share for p in points), 1.0, places=6)
                    t = r.totals()
                    self.assertGreater(t.ppl_quant, t.ppl_float * 0.99)
                    self.assertGreater(t.logit_mse, 0)
                    w = {p.name: p for p in points}["layer0.q.w"]
                    self.assertTrue(w.bits == 4 and 0 < w.sqnr_db < 40, w)
                    with tempfile.TemporaryDirectory() as d:
                        r.write_json(os.path.join(d, "r.json"))
                        r.write_svg(os.path.join(d, "r.svg"))
                        with open(os.path.join(d, "r.svg"), encoding="utf-8") as f:
                            self.assertIn("<svg", f.read())
            with quantnpu.Comparison(q, ids, 64, max_windows=1, num_threads=1) as c:
                t = c.totals()
                self.assertEqual(t.scored, 63)
                self.assertTrue(0.9 <= t.top1_agreement <= 1.0, t)
                sim = q.perplexity_ids(ids[:64], 64, num_threads=1).ppl
                self.assertTrue(math.isclose(t.ppl_sim, sim, rel_tol=1e-6), (t.ppl_sim, sim))
                self.assertTrue(all(p.mismatched <= p.codes for p in c.points()))
        with self.assertRaises(TypeError):
            quantnpu.Comparison("m.qnpu", ids)


if __name__ == "__main__":
    unittest.main()
