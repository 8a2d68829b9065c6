"""The integer engine through the Python binding (stdlib unittest)."""
import os
import tempfile
import unittest

import quantnpu

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN), "needs ../shared")
class TestIntSession(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(TRAIN, encoding="utf-8") as f:
            train = f.read()
        with open(VALID, encoding="utf-8") as f:
            cls.valid = "\n\n".join(f.read().split("\n\n")[:40])
        opts = quantnpu.Options(num_threads=1).load_recipe("w4a8-hadamard")
        opts.set("calib.num_samples", 2)
        with quantnpu.Model(BIN) as m, quantnpu.Tokenizer.from_model(m) as tok:
            cls.q = quantnpu.calibrate(m, tok, train, opts)

    @classmethod
    def tearDownClass(cls):
        cls.q.close()

    def test_perplexity_matches_simulated_graph(self):
        sim = self.q.perplexity(self.valid, ctx=128).ppl
        with quantnpu.IntSession(self.q, num_threads=1) as s:
            got = s.perplexity(self.valid, ctx=128)
        self.assertLess(abs(got.ppl / sim - 1), 0.005)
        self.assertGreater(got.scored, 1000)

    def test_kernels_and_file_agree(self):
        ids = [1, 403, 407, 261, 378, 432, 383, 286]
        with quantnpu.IntSession(self.q, engine_kernels="ref", num_threads=1) as a, \
                quantnpu.IntSession(self.q, num_threads=2) as b:
            self.assertEqual(a.generate_greedy(ids, 24), b.generate_greedy(ids, 24))
            self.assertEqual(a.pos, len(ids) + 23)
            la = list(a.eval([5], all_logits=False))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.qnpu")
            self.q.save(path)
            with quantnpu.IntSession(path, engine_kernels="ref", num_threads=1) as c:
                self.assertIsNone(c.quantized_model())
                c.generate_greedy(ids, 24)
                self.assertEqual(list(c.eval([5])), la)

    def test_errors(self):
        with quantnpu.IntSession(self.q, engine_ctx_size=8, num_threads=1) as s:
            with self.assertRaises(quantnpu.QnpuError) as cm:
                s.eval([512])
            self.assertEqual(cm.exception.status, quantnpu.Status.INVALID_ARG)
            with self.assertRaises(quantnpu.QnpuError) as cm:
                s.eval(list(range(1, 10)))
            self.assertEqual(cm.exception.status, quantnpu.Status.STATE)
            self.assertEqual(len(s.generate_greedy([1], 50)), 8)  # stops at the context size
        with self.assertRaises(quantnpu.QnpuError) as cm:
            quantnpu.IntSession("/nonexistent/m.qnpu")
        self.assertEqual(cm.exception.status, quantnpu.Status.IO)
        with self.assertRaises(quantnpu.QnpuError):
            quantnpu.IntSession(self.q, engine_kernels="sse9")


if __name__ == "__main__":
    unittest.main()
