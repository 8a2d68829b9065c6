"""unittest of the recipe wrappers: Options.load_recipe, recipe_presets, recipe_preset_text.

Run from the repository root (the recipe paths below are relative to it), as test_quantnpu.py
says; the malformed recipes themselves are covered by test/check_recipe.c.
"""

import os
import pathlib
import tempfile
import unittest

import quantnpu
from quantnpu import Options, QnpuError, Status

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.path.join(ROOT, "test", "data", "recipes")
PRESETS = ("quantnpu-w4a4-mixed", "quantnpu-w4a8", "w4a16", "w4a4-mixed", "w4a8-hadamard", "w4a8",
           "w8a8")


class TestRecipes(unittest.TestCase):
    def test_presets(self):
        self.assertEqual(quantnpu.recipe_presets(), PRESETS)
        for name in PRESETS:
            with open(os.path.join(ROOT, "recipes", name + ".yaml"), encoding="utf-8") as f:
                self.assertEqual(quantnpu.recipe_preset_text(name), f.read())
        with self.assertRaises(QnpuError) as cm:
            quantnpu.recipe_preset_text("w5a5")
        self.assertEqual(cm.exception.status, Status.INVALID_ARG)
        self.assertIn("w4a8-hadamard", cm.exception.message)

    def test_load_preset(self):
        with Options(num_threads=3) as o:
            self.assertIs(o.load_recipe("w4a4-mixed"), o)
            self.assertEqual(o["quant.a_bits"], 4)
            self.assertEqual(o["rotate.r1"], "random_hadamard")
            self.assertEqual(o["quant.bits_override"], "layer0.*.in:8")
            self.assertEqual(o["num_threads"], 3)       # not in the recipe: kept
            o.load_recipe("w8a8")
            self.assertEqual(o["quant.w_bits"], 8)
            self.assertEqual(o["rotate.r2"], "identity")

    def test_load_path_forms(self):
        path = os.path.join(DATA, "good_nested.yaml")
        with Options() as a, Options() as b, Options() as c:
            a.load_recipe(path)
            b.load_recipe(pathlib.Path(path))
            c.load_recipe(os.fsencode(path))
            self.assertEqual(a.to_dict(), b.to_dict())
            self.assertEqual(a.to_dict(), c.to_dict())
            self.assertEqual(a["calib.text"], "data/my text.txt")
            self.assertEqual(a["rotate.r4_layers"], "0,3,4")
            self.assertAlmostEqual(a["optim.lr"], 0.001)
            self.assertIs(a["optim.shuffle"], True)

    def test_errors_leave_options_unchanged(self):
        with Options(quant_w_bits=6) as o:
            before = o.to_dict()
            with self.assertRaises(QnpuError) as cm:
                o.load_recipe(os.path.join(DATA, "bad_value_range.yaml"))
            self.assertEqual(cm.exception.status, Status.RECIPE)
            self.assertTrue(cm.exception.message.endswith(
                "bad_value_range.yaml:5:11: quant.a_bits: 32 is outside [4, 16]"),
                cm.exception.message)
            self.assertEqual(o.to_dict(), before)
            with tempfile.TemporaryDirectory() as d:
                missing = os.path.join(d, "missing.yaml")
                with self.assertRaises(QnpuError) as cm:
                    o.load_recipe(missing)
                self.assertEqual(cm.exception.status, Status.IO)
                self.assertIn(missing, cm.exception.message)
            with self.assertRaises(QnpuError) as cm:
                o.load_recipe("no-such-preset")
            self.assertEqual(cm.exception.status, Status.INVALID_ARG)
            with self.assertRaises(TypeError):
                o.load_recipe(4)
            self.assertEqual(o.to_dict(), before)


if __name__ == "__main__":
    unittest.main()
