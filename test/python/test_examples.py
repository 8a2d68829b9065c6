"""examples/python/quantize.py runs end to end (with --quick) and writes a usable .qnpu file."""
import contextlib
import importlib.util
import io
import os
import tempfile
import unittest

import quantnpu

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")
VALID = os.path.join(SHARED, "data", "tinystories_valid_head.txt")
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "quantize.py")


def load_example():
    spec = importlib.util.spec_from_file_location("quantize_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(module, *argv):
    """main(argv) with stdout and stderr captured: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = module.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN) and os.path.exists(VALID),
                     "needs ../shared")
class TestQuantizeExample(unittest.TestCase):
    def test_quick_pipeline(self):
        example = load_example()
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "q.qnpu")
            rc, stdout, stderr = run(example, BIN, TRAIN, VALID, "--quick", "--threads", "1",
                                     "--out", out, "--export-dir", os.path.join(d, "export"))
            self.assertEqual(rc, 0, stderr)
            self.assertIn("train 2/2", stderr)  # the progress callback ran on both steps
            self.assertIn("static w4a8-hadamard", stdout)
            self.assertIn("learned quantnpu-w4a8", stdout)
            self.assertIn("integer engine says: Once upon a time", stdout)
            ppl = {line.split()[0]: float(line.split()[-4]) for line in stdout.splitlines()
                   if line.startswith("  ")}
            # the quantized models are worse than float, but not broken
            for name in ("static", "learned"):
                self.assertTrue(ppl["float"] < ppl[name] < 2 * ppl["float"], stdout)
            with quantnpu.QuantizedModel(out) as q:
                self.assertEqual(len(q.points()), int(stdout.split("quantization points")[0].split()[-1]))
            if hasattr(quantnpu, "Exporter"):
                for name in ("model.onnx", "model-float.onnx", "model.encodings"):
                    self.assertGreater(os.path.getsize(os.path.join(d, "export", name)), 0)
                    self.assertIn(f"export: {os.path.join(d, 'export', name)}", stdout)
                with open(os.path.join(d, "export", "model.encodings"), encoding="utf-8") as f:
                    self.assertIn("layer0.qkv.in", f.read())

    def test_error_exit(self):
        example = load_example()
        with tempfile.TemporaryDirectory() as d:
            rc, _, stderr = run(example, os.path.join(d, "missing.bin"), TRAIN, VALID, "--quick",
                                "--out", os.path.join(d, "q.qnpu"))
        self.assertEqual(rc, 1)
        self.assertIn("IoError", stderr)


if __name__ == "__main__":
    unittest.main()
