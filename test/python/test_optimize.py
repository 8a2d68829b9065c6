"""The two-stage learned pipeline through the Python binding: optimize(), Optimizer (stdlib
unittest). Every run is tiny (2 steps of one 64-token block, 2 calibration blocks, one thread);
the loss values themselves are checked against an independent reference in test/check_optim.c."""
import math
import os
import tempfile
import unittest

import quantnpu
from quantnpu import Optimizer, QnpuError, Status, optimize

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")

#: what every run here uses on top of its recipe: a few seconds at most
TINY = dict(optim_steps=2, optim_batch=1, calib_seq_len=64, calib_num_samples=2, calib_first_block=0,
            num_threads=1)


def first_stories(path, n):
    """The first n stories of a <|endoftext|>-separated file, separators kept."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return "<|endoftext|>".join(text.split("<|endoftext|>")[:n]) + "<|endoftext|>\n"


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN), "needs ../shared")
class TestOptimize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = first_stories(TRAIN, 12)  # a short calibration text: more than 3 blocks of 64
        cls.model = quantnpu.Model(BIN)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def test_progress_losses_save_and_engine(self):
        seen = []
        with Optimizer(self.model, recipe="quantnpu-w4a8", **TINY) as o:
            self.assertTrue(math.isnan(o.last_loss))  # before any step
            self.assertIsNotNone(o.tokenizer)          # the model's own (tok512.bin beside it)

            def progress(stage, done, total, loss):
                seen.append((stage, done, total, loss))
                self.assertEqual(o.last_loss, loss)    # readable from inside the callback
                return False

            o.set_progress(progress)
            with o.run(self.text) as q:
                self.assertEqual([s[:3] for s in seen], [("train", 1, 2), ("train", 2, 2)])
                for _, _, _, loss in seen:
                    # a mean next-token cross-entropy: above 0, below uniform over 512 tokens
                    self.assertTrue(0.5 < loss < math.log(512), loss)
                self.assertEqual(o.last_loss, seen[-1][3])
                points = {p.name: p for p in q.points()}
                self.assertEqual(points["layer0.qkv.in"].bits, 8)
                self.assertEqual(points["layer0.q.w"].bits, 4)
                with open(VALID, encoding="utf-8") as f:
                    valid = "\n\n".join(f.read().split("\n\n")[:10])
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "quantnpu-w4a8.qnpu")
                    q.save(path)
                    with quantnpu.IntSession(path, num_threads=1) as s:
                        ppl = s.perplexity(valid, ctx=128).ppl
                self.assertTrue(1.0 < ppl < 50.0, ppl)
            self.assertIn("last_loss=", repr(o))
        self.assertEqual(repr(o), "<quantnpu.Optimizer closed>")
        with self.assertRaises(ValueError):
            o.last_loss

    def test_mixed_report(self):
        with Optimizer(self.model, recipe="quantnpu-w4a4-mixed", **TINY) as o:
            with self.assertRaises(QnpuError) as cm:
                o.mixed_report()  # no run yet
            self.assertEqual(cm.exception.status, Status.STATE)
            with o.run(self.text) as q:
                r = o.mixed_report()
                self.assertEqual(r["mode"], "act_4to8")
                self.assertGreaterEqual(len(r["selected"]), 1)
                points = {p.name: p for p in q.points()}
                for sel in r["selected"]:  # every promoted point is at 8 bits in the quantized model
                    self.assertEqual((sel["from"], sel["to"]), (4, 8))
                    self.assertEqual(points[sel["point"]].bits, 8)

    def test_optimize_function_and_ids(self):
        losses = []
        with quantnpu.Tokenizer.from_model(self.model) as tok:
            ids = tok.tokenize_paragraphs(self.text)
        with optimize(self.model, ids=ids, options=quantnpu.Options(quant_w_bits=8), **TINY,
                      progress=lambda stage, done, total, loss: losses.append(loss)) as q:
            self.assertEqual(len(losses), 2)
            self.assertTrue(all(math.isfinite(x) for x in losses))
            self.assertEqual({p.name: p.bits for p in q.points()}["layer2.down.w"], 8)
            with q.tokenizer() as t:                   # the model's tokenizer went in
                self.assertEqual(t.vocab_size, 512)
        # the same stream gives the same losses and the same model (one thread, seed 0)
        again = []
        with optimize(self.model, ids=ids, options={"quant.w_bits": 8}, **TINY,
                      progress=lambda stage, done, total, loss: again.append(loss)) as q2:
            self.assertEqual(again, losses)

    def test_cancel(self):
        calls = []

        def stop_after_first(stage, done, total, loss):
            calls.append(done)
            return True

        with Optimizer(self.model, recipe="quantnpu-w4a8", progress=stop_after_first, **TINY) as o:
            with self.assertRaises(QnpuError) as cm:
                o.run(self.text)
            self.assertEqual(cm.exception.status, Status.CANCELLED)
            self.assertEqual(calls, [1])
            self.assertTrue(math.isfinite(o.last_loss))  # step 1 was done

            # an exception in the callback cancels and comes back out of run()
            def boom(stage, done, total, loss):
                raise KeyError("from the callback")

            o.set_progress(boom)
            with self.assertRaises(KeyError):
                o.run(self.text)

            # the callback may not re-enter the optimizer
            def reenter(stage, done, total, loss):
                o.run(self.text)

            o.set_progress(reenter)
            with self.assertRaises(QnpuError) as cm:
                o.run(self.text)
            self.assertEqual(cm.exception.status, Status.STATE)
            o.set_progress(None)
            with o.run(self.text) as q:                 # usable again
                self.assertGreater(len(q.points()), 0)

    def test_errors(self):
        with self.assertRaises(QnpuError) as cm:         # fewer than the 2 blocks of 64 tokens
            optimize(self.model, "Once upon a time, there was a cat.\n", **TINY)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        self.assertIn("blocks", cm.exception.message)
        with self.assertRaises(QnpuError) as cm:
            optimize(self.model, self.text, recipe="no-such-preset", **TINY)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        self.assertIn("quantnpu-w4a8", cm.exception.message)  # the list of presets
        with self.assertRaises(QnpuError) as cm:
            optimize(self.model, self.text, rotate_r4="all", **TINY)  # with mixed.mode down_8to16
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        self.assertIn("mixed.mode", cm.exception.message)
        with self.assertRaises(QnpuError) as cm:
            optimize(self.model, ids=[1, 2, 512] * 100, **TINY)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        with self.assertRaises(QnpuError) as cm:
            optimize(self.model, optim_steps=-1)
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        with Optimizer(self.model, **TINY) as o:
            with self.assertRaises(QnpuError) as cm:
                o.run()
            self.assertEqual(cm.exception.status, Status.INVALID_ARG)
            with self.assertRaises(QnpuError):
                o.run(self.text, ids=[1, 2, 3])
            with self.assertRaises(TypeError):
                o.set_progress(42)
        with self.assertRaises(TypeError):
            Optimizer("stories260K.bin")
        # a model closed while an optimizer uses it stays alive until the optimizer closes
        m = quantnpu.Model(BIN)
        o = Optimizer(m, **TINY)
        m.close()
        self.assertTrue(m.closed)
        with o.run(self.text) as q:
            self.assertGreater(len(q.points()), 0)
        o.close()


if __name__ == "__main__":
    unittest.main()
