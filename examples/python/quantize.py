#!/usr/bin/env python3
"""Load a model, measure its float perplexity on a text, and generate greedily.

    PYTHONPATH=python QNPU_LIBRARY=build/libquantnpu.so.0 \\
        python3 examples/python/quantize.py ../shared/models/stories260K.bin \\
        ../shared/data/tinystories_valid_head.txt

Quantization is not part of libquantnpu 0.1 yet: this example shows the float baseline that
a quantized model will be compared with. When the calibrator, rotator and optimizer handles
land, the quantize step goes between "load" and "evaluate" below, and the same perplexity
protocol measures what quantization cost.
"""

import argparse
import sys
import time

import quantnpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="llama2.c checkpoint, GGUF file or Hugging Face directory")
    ap.add_argument("text", help="UTF-8 text; paragraphs are separated by blank lines")
    ap.add_argument("--ctx", type=int, default=256, help="perplexity window (default 256)")
    ap.add_argument("--paragraphs", type=int, default=0,
                    help="evaluate only the first N paragraphs (default: all)")
    ap.add_argument("--steps", type=int, default=64, help="tokens to generate (default 64)")
    # A model this small runs fastest on one thread; use 0 (all cores) for bigger ones.
    ap.add_argument("--threads", type=int, default=1, help="worker threads (0 = all cores)")
    args = ap.parse_args(argv)

    print(f"libquantnpu {quantnpu.version()} ({quantnpu.library_path})")
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    if args.paragraphs:
        paragraphs = [p.strip("\n") for p in text.split("\n\n")]
        text = "\n\n".join([p for p in paragraphs if p][:args.paragraphs])

    options = quantnpu.Options(num_threads=args.threads, eval_seq_len=args.ctx)
    try:
        # 1. load: the model, its tokenizer, and a float32 session over it
        with quantnpu.Model(args.model, options) as model, \
                quantnpu.Tokenizer.from_model(model) as tok, \
                quantnpu.FloatSession(model, options) as session:
            print(f"model: {model.format}/{model.arch}, dim {model.dim}, {model.layers} layers, "
                  f"{model.heads} heads ({model.kv_heads} KV), vocab {model.vocab}, "
                  f"context {model.max_seq}")

            # (2. quantize: coming in a later release.)

            # 3. evaluate: window perplexity, reporting progress on stderr
            def progress(stage, done, total):
                if done == total or done % max(1, total // 20) == 0:
                    print(f"\r{stage}: window {done}/{total}", end="", file=sys.stderr,
                          flush=True)
                return False  # True would cancel (QnpuError with status CANCELLED)

            session.set_progress(progress)
            t0 = time.perf_counter()
            ppl, scored = session.perplexity(text, tok)  # ctx = eval.seq_len
            print(file=sys.stderr)
            print(f"perplexity {ppl:.6f} over {scored} tokens (ctx {args.ctx}, "
                  f"{time.perf_counter() - t0:.1f} s)")
            session.set_progress(None)

            # 4. generate: greedy decoding from BOS, stopping at EOS or BOS
            session.reset()
            ids = session.generate_greedy([tok.bos], args.steps, stop_at={tok.bos, tok.eos})
            print(f"greedy, {len(ids)} tokens:")
            print(tok.decode(ids))
    except quantnpu.QnpuError as e:
        print(f"error: {e} (status {e.status.name if hasattr(e.status, 'name') else e.status})",
              file=sys.stderr)
        return 1
    finally:
        options.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
