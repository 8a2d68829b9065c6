#!/usr/bin/env python3
"""Quantize a model through the learned two-stage pipeline and measure it on the integer engine.

    PYTHONPATH=python QNPU_LIBRARY=build/libquantnpu.so.0 \\
        python3 examples/python/quantize.py ../shared/models/stories260K.bin \\
        ../shared/data/tinystories_train_head.txt ../shared/data/tinystories_valid_head.txt

The steps: load the float model; quantize it with a recipe preset (quantnpu-w4a8 by default: stage 1
learns the rotations and scales, showing step and loss; stage 2 calibrates the rest); save the
.qnpu file; open it in the integer-only engine and compare its perplexity with the float model's
on the first few windows of the evaluation text. --steps makes a quick trial run.
"""

import argparse
import math
import sys
import time

import quantnpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="llama2.c checkpoint, GGUF file or Hugging Face directory")
    ap.add_argument("train", help="training and calibration text (stories separated by "
                                  "<|endoftext|> lines, or paragraphs)")
    ap.add_argument("text", help="evaluation text; paragraphs are separated by blank lines")
    ap.add_argument("--recipe", default="quantnpu-w4a8",
                    help="a preset name or a YAML recipe (default quantnpu-w4a8)")
    ap.add_argument("--steps", type=int, default=0,
                    help="stage-1 steps (default: the recipe's, 512 for the presets)")
    ap.add_argument("--out", default="quantized.qnpu", help="the .qnpu file to write")
    ap.add_argument("--ctx", type=int, default=256, help="perplexity window (default 256)")
    ap.add_argument("--windows", type=int, default=8, help="windows to evaluate (default 8)")
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0 = all cores)")
    args = ap.parse_args(argv)

    print(f"libquantnpu {quantnpu.version()} ({quantnpu.library_path})")
    with open(args.train, encoding="utf-8") as f:
        train = f.read()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()

    overrides = {"num_threads": args.threads}
    if args.steps:
        overrides["optim_steps"] = args.steps
    interactive = sys.stderr.isatty()

    def progress(stage, done, total, loss):
        # a line redrawn in place on a terminal; in a log, about ten lines in all
        if interactive:
            print(f"\r{stage} {done}/{total}  loss {loss:.4f}", end="", file=sys.stderr, flush=True)
        elif done == 1 or done == total or done % max(1, total // 10) == 0:
            print(f"{stage} {done}/{total}  loss {loss:.4f}", file=sys.stderr, flush=True)
        return False  # True would cancel (QnpuError with status CANCELLED)

    try:
        # 1. load the float model and its tokenizer
        with quantnpu.Model(args.model) as model, quantnpu.Tokenizer.from_model(model) as tok:
            print(f"model: {model.format}/{model.arch}, dim {model.dim}, {model.layers} layers, "
                  f"vocab {model.vocab}")

            # 2. quantize: the two-stage pipeline with the recipe, then save the .qnpu file
            t0 = time.perf_counter()
            with quantnpu.Optimizer(model, tok, recipe=args.recipe, progress=progress,
                                    **overrides) as opt:
                q = opt.run(train)
                if interactive:
                    print(file=sys.stderr)
                loss = opt.last_loss
            with q:
                q.save(args.out)
                points = q.points()
            bits = {}
            for p in points:
                bits[p.bits] = bits.get(p.bits, 0) + 1
            at = ", ".join(f"{n} at {b} bits" for b, n in sorted(bits.items()) if b)
            summary = f"wrote {args.out}: {len(points)} quantization points ({at})"
            if not math.isnan(loss):
                summary += f", last stage-1 loss {loss:.4f}"
            print(f"{summary}; {time.perf_counter() - t0:.1f} s")

            # 3. evaluate the first windows of the text: float model and integer engine
            ids = tok.tokenize_paragraphs(text)[:args.windows * args.ctx]
            with quantnpu.FloatSession(model, num_threads=args.threads) as fs:
                ppl_float = fs.perplexity_ids(ids, args.ctx).ppl
            with quantnpu.IntSession(args.out, num_threads=args.threads) as s:
                ppl_int, scored = s.perplexity_ids(ids, args.ctx)
            print(f"perplexity over {scored} tokens ({len(ids) // args.ctx} windows of {args.ctx}): "
                  f"float {ppl_float:.4f}, integer engine {ppl_int:.4f} ({ppl_int / ppl_float:.4f} x)")
    except quantnpu.QnpuError as e:
        print(f"error: {e} (status {e.status.name if hasattr(e.status, 'name') else e.status})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
