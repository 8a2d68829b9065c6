#!/usr/bin/env python3
"""Quantize a model for an NPU from Python: the whole pipeline, step by step.

    PYTHONPATH=python QNPU_LIBRARY=build/libquantnpu.so.0 \\
        python3 examples/python/quantize.py ../shared/models/stories260K.bin \\
        ../shared/data/tinystories_train_head.txt ../shared/data/tinystories_valid_head.txt

The steps:
  1. load the float model and its tokenizer;
  2. the static baseline: rotate it (norm fusion, Hadamard R1/R2) and calibrate every scale and
     zero point with a static recipe (w4a8-hadamard by default);
  3. the learned pipeline: the Quant.npu two-stage optimizer with a preset (quantnpu-w4a8 by
     default: stage 1 learns the rotations and scales, showing step and loss; stage 2 calibrates
     the rest), then save the .qnpu file;
  4. open the file in the integer-only engine, compare the perplexity of the float model, the
     static baseline and the learned model on the first windows of the evaluation text, check
     the engine against the simulated NPU graph, and generate a few words;
  5. export the ONNX QDQ graph and the QNN encodings (when the library has the exporter).

The presets take about two minutes on stories260K; --quick cuts every stage down to a few seconds
(a smoke test, not a useful model).
"""

import argparse
import math
import os
import sys
import time

import quantnpu

#: --quick: two steps of one 64-token block, two calibration blocks, two evaluation windows
QUICK = dict(optim_steps=2, optim_batch=1, calib_seq_len=64, calib_num_samples=2,
             calib_first_block=0, init_warmup_calls=16)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="llama2.c checkpoint, GGUF file or Hugging Face directory")
    ap.add_argument("train", help="training and calibration text (stories separated by "
                                  "<|endoftext|> lines, or paragraphs)")
    ap.add_argument("text", help="evaluation text; paragraphs are separated by blank lines")
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer file (default: the model's own: embedded, tokenizer.json, "
                         "or tokenizer.bin / tok512.bin beside a llama2.c checkpoint)")
    ap.add_argument("--recipe", default="quantnpu-w4a8",
                    help="the learned recipe: a preset name or a YAML file (default quantnpu-w4a8)")
    ap.add_argument("--static", default="w4a8-hadamard",
                    help="the static baseline's recipe (default w4a8-hadamard; 'none' skips it)")
    ap.add_argument("--steps", type=int, default=0,
                    help="stage-1 steps (default: the recipe's, 512 for the presets)")
    ap.add_argument("--out", default="quantized.qnpu", help="the .qnpu file to write")
    ap.add_argument("--export-dir", default=None,
                    help="write model.onnx (QDQ), model-float.onnx and model.encodings here")
    ap.add_argument("--ctx", type=int, default=256, help="perplexity window (default 256)")
    ap.add_argument("--windows", type=int, default=8, help="windows to evaluate (default 8)")
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0 = all cores)")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds")
    args = ap.parse_args(argv)

    print(f"libquantnpu {quantnpu.version()} ({quantnpu.library_path})")
    with open(args.train, encoding="utf-8") as f:
        train = f.read()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    if args.quick:
        train = train[:64 * 1024]
        args.ctx, args.windows = min(args.ctx, 128), min(args.windows, 2)

    overrides = dict(QUICK) if args.quick else {}
    overrides["num_threads"] = args.threads
    if args.steps:
        overrides["optim_steps"] = args.steps
    interactive = sys.stderr.isatty()

    def progress(stage, done, total, loss):
        # a line redrawn in place on a terminal; in a log, about ten lines in all
        if interactive:
            print(f"\r{stage} {done}/{total}  loss {loss:.4f}", end="", file=sys.stderr, flush=True)
        elif done == 1 or done == total or done % max(1, total // 10) == 0:
            print(f"{stage} {done}/{total}  loss {loss:.4f}", file=sys.stderr, flush=True)
        return False  # True would cancel: run() raises quantnpu.CancelledError

    try:
        # 1. the float model and its tokenizer; every object is a context manager
        with quantnpu.Model(args.model) as model, \
                (quantnpu.Tokenizer(args.tokenizer) if args.tokenizer
                 else quantnpu.Tokenizer.from_model(model)) as tok:
            print(f"model: {model.format}/{model.arch}, dim {model.dim}, {model.layers} layers, "
                  f"vocab {model.vocab}")
            ids = tok.tokenize_paragraphs(text)[:args.windows * args.ctx]
            with quantnpu.FloatSession(model, num_threads=args.threads) as fs:
                ppl_float = fs.perplexity_ids(ids, args.ctx).ppl
            results = [("float", ppl_float)]

            # 2. static baseline: rotate, then calibrate the rotated model
            if args.static != "none":
                opts = quantnpu.Options(num_threads=args.threads).load_recipe(args.static)
                if args.quick:
                    opts.update({k: v for k, v in QUICK.items() if k.startswith("calib_")})
                with opts, quantnpu.rotate(model, opts) as rotated, \
                        quantnpu.calibrate(rotated, tok, train, opts) as q_static, \
                        quantnpu.IntSession(q_static, num_threads=args.threads) as s:
                    results.append((f"static {args.static}", s.perplexity_ids(ids, args.ctx).ppl))

            # 3. the learned two-stage pipeline, then save the .qnpu file
            t0 = time.perf_counter()
            with quantnpu.Optimizer(model, tok, recipe=args.recipe, progress=progress,
                                    **overrides) as opt:
                q = opt.run(train)
                if interactive:
                    print(file=sys.stderr)
                loss = opt.last_loss
            with q:
                q.save(args.out)
                bits = {}
                for p in q.points():
                    bits[p.bits] = bits.get(p.bits, 0) + 1
                at = ", ".join(f"{n} at {b} bits" for b, n in sorted(bits.items()) if b)
                summary = f"wrote {args.out}: {sum(bits.values())} quantization points ({at})"
                if not math.isnan(loss):
                    summary += f", last stage-1 loss {loss:.4f}"
                print(f"{summary}; {time.perf_counter() - t0:.1f} s")

                # 4b. the integer engine against the simulated NPU graph, before shipping
                with quantnpu.Comparison(q, ids, args.ctx, max_windows=2,
                                         num_threads=args.threads) as c:
                    t = c.totals()
                    print(f"engine vs simulated graph: top-1 agreement {t.top1_agreement:.4f}, "
                          f"perplexity {t.ppl_int:.4f} vs {t.ppl_sim:.4f}")

            # 4. the integer-only engine, opened from the file as a deployment would
            with quantnpu.IntSession(args.out, num_threads=args.threads) as s:
                results.append((f"learned {args.recipe}", s.perplexity_ids(ids, args.ctx).ppl))
                prompt = tok.encode("Once upon a time")
                story = s.generate_greedy(prompt, 24, stop_at=tok.eos)
                print("integer engine says: " + tok.decode(prompt + story))

            print(f"perplexity, {len(ids) // args.ctx} windows of {args.ctx} tokens:")
            for name, ppl in results:
                print(f"  {name:28s} {ppl:8.4f}  ({ppl / ppl_float:.4f} x float)")

        # 5. the deployment files, when this library has the exporter
        if args.export_dir:
            export_files(args.out, args.export_dir)
    except quantnpu.QnpuError as e:
        # e.status is a quantnpu.Status; the class says the same (CancelledError, IoError, ...)
        print(f"error: {e} ({type(e).__name__})", file=sys.stderr)
        return 1
    return 0


def export_files(qnpu_path, out_dir):
    """Write the ONNX QDQ graph, the float ONNX graph and the QNN encodings of a .qnpu file
    (docs/export.md); model-float.onnx + model.encodings go to qnn-onnx-converter."""
    if not hasattr(quantnpu, "Exporter"):  # a binding older than the exporter
        print("export: this quantnpu has no exporter; skipped")
        return
    os.makedirs(out_dir, exist_ok=True)
    with quantnpu.Exporter(qnpu_path) as e:  # options: export_seq_len=..., export_onnx_flavor=...
        for fmt, name in (("onnx", "model.onnx"), ("onnx-float", "model-float.onnx"),
                          ("encodings", "model.encodings")):
            path = e.write(os.path.join(out_dir, name), fmt)
            print(f"export: {path} ({fmt}, {os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
