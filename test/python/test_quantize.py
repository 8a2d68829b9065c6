"""Static quantization through the Python binding (stdlib unittest)."""
import os
import tempfile
import unittest

import quantnpu

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN), "needs ../shared")
class TestQuantize(unittest.TestCase):
    def test_rotate_keeps_logits(self):
        with quantnpu.Model(BIN) as m, quantnpu.rotate(m, rotate_r1="random_hadamard") as r:
            self.assertEqual(r.rope_order, 1)
            with quantnpu.FloatSession(m, num_threads=1) as a, quantnpu.FloatSession(r, num_threads=1) as b:
                la, lb = a.eval([1, 403, 407, 261]), b.eval([1, 403, 407, 261])
                self.assertLess(max(abs(x - y) for x, y in zip(la, lb)), 1e-3)

    def test_calibrate_save_load_eval(self):
        with open(TRAIN, encoding="utf-8") as f:
            train = f.read()
        with open(VALID, encoding="utf-8") as f:
            valid = "\n\n".join(f.read().split("\n\n")[:40])
        opts = quantnpu.Options(num_threads=1).load_recipe("w8a8")
        opts.set("calib.num_samples", 2)
        seen = []
        with quantnpu.Model(BIN) as m, quantnpu.Tokenizer.from_model(m) as tok:
            with quantnpu.calibrate(m, tok, train, opts, progress=lambda s, d, t: seen.append(d)) as q:
                self.assertEqual(seen, [1, 2])
                points = {p.name: p for p in q.points()}
                self.assertEqual(points["layer0.k.cache"].bits, 8)
                self.assertTrue(points["layer0.k.cache"].sym)
                self.assertEqual(points["layer0.gate.sig"].scale, 1 / 65536)
                ppl = q.perplexity(valid, ctx=128).ppl
                with quantnpu.FloatSession(m, num_threads=1) as fs:
                    ppl_f = fs.perplexity(valid, tok, ctx=128).ppl
                self.assertGreater(ppl, ppl_f * 0.99)
                self.assertLess(ppl, ppl_f * 1.05)
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "w8a8.qnpu")
                    q.save(path)
                    with quantnpu.QuantizedModel(path) as q2:
                        self.assertEqual(q2.points(), q.points())
                        self.assertEqual(q2.perplexity(valid, ctx=128).ppl, ppl)
            with self.assertRaises(quantnpu.QnpuError) as cm:
                quantnpu.calibrate(m, tok, train, opts, progress=lambda s, d, t: True)
            self.assertEqual(cm.exception.status, quantnpu.Status.CANCELLED)


if __name__ == "__main__":
    unittest.main()
