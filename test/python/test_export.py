"""The exporters through the Python binding (stdlib unittest): quantnpu.Exporter / export."""
import os
import tempfile
import unittest

import quantnpu

SHARED = os.environ.get("QNPU_SHARED", "../shared")
BIN = os.path.join(SHARED, "models", "stories260K.bin")
TRAIN = os.path.join(SHARED, "data", "tinystories_train_head.txt")


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(TRAIN), "needs ../shared")
class TestExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(TRAIN, encoding="utf-8") as f:
            train = f.read()
        opts = quantnpu.Options(num_threads=1).load_recipe("w4a8")
        opts.set("calib.num_samples", 2)
        with quantnpu.Model(BIN) as m, quantnpu.Tokenizer.from_model(m) as tok:
            cls.q = quantnpu.calibrate(m, tok, train, opts)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.q.close()
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def test_every_format(self):
        with quantnpu.Exporter(self.q, export_seq_len=16) as e:
            self.assertEqual(e.write(self.path("a.onnx")), self.path("a.onnx"))
            e.write(self.path("a.qnpu"), "qnpu")
            e.write(self.path("a.encodings"), quantnpu.ExportFormat.ENCODINGS)
            e.write(self.path("a-float.onnx"), "onnx-float")
        # the exporter kept the model open; it is still usable
        self.q.save(self.path("b.qnpu"))
        self.assertEqual(self.read("a.qnpu"), self.read("b.qnpu"))
        onnx = self.read("a.onnx")
        self.assertIn(b"QuantizeLinear", onnx)
        self.assertIn(b"layer0.qkv.in.zero_point", onnx)
        self.assertNotIn(b"com.microsoft", onnx)
        self.assertNotIn(b"QuantizeLinear", self.read("a-float.onnx"))
        self.assertTrue(self.read("a.encodings").startswith(b"{"))

    def test_export_helper_and_options(self):
        quantnpu.export(self.q, self.path("c.onnx"), "onnx", export_onnx_flavor="compat",
                        export_seq_len=16)
        self.assertIn(b"com.microsoft", self.read("c.onnx"))
        quantnpu.export(self.q, self.path("d.onnx"), "onnx", {"export.onnx_flavor": "compat",
                                                                "export.seq_len": 16})
        self.assertEqual(self.read("c.onnx"), self.read("d.onnx"))  # deterministic
        # from a path: the exporter loads and owns the model
        self.q.save(self.path("e.qnpu"))
        quantnpu.export(self.path("e.qnpu"), self.path("e.onnx"), "onnx", export_onnx_flavor="compat",
                        export_seq_len=16)
        self.assertEqual(self.read("c.onnx"), self.read("e.onnx"))

    def test_errors(self):
        with self.assertRaises(quantnpu.QnpuError) as cm:
            quantnpu.export(self.q, self.path("x.onnx"), "tflite")
        self.assertEqual(cm.exception.status, quantnpu.Status.INVALID_ARG)
        with self.assertRaises(quantnpu.QnpuError) as cm:
            quantnpu.export(self.q, self.path("x.onnx"), export_onnx_flavor="newest")
        self.assertEqual(cm.exception.status, quantnpu.Status.INVALID_ARG)
        with self.assertRaises(quantnpu.IoError):
            quantnpu.export(self.q, os.path.join(self.path("missing"), "x.onnx"))
        self.assertFalse(os.path.exists(self.path("x.onnx")))
        e = quantnpu.Exporter(self.q)
        e.close()
        with self.assertRaises(ValueError):
            e.write(self.path("x.onnx"))


if __name__ == "__main__":
    unittest.main()
