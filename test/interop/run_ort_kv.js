// run_ort_kv.js — the past-K/V graphs of `make check-interop` (docs/export.md).
//
//   node run_ort_kv.js REF.json TOL FIRST.onnx NEXT.onnx
//
// REF.json comes from `test/interop/ref ... CHUNK` (the integer engine run as CHUNK tokens, then
// the rest of each window on its KV cache). FIRST.onnx is exported with export.seq_len = CHUNK
// (past_len 0), NEXT.onnx with export.seq_len = T - CHUNK and export.past_len = CHUNK. Every
// window runs FIRST on its first CHUNK tokens, then NEXT on the rest with FIRST's
// layerN.k.cache / v.cache outputs as layerN.k.past / v.past. The window perplexity must be
// within TOL (relative) of the engine's chunked run; one JSON line, exit status 1 if off.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

(async () => {
  const [refPath, tolStr, firstPath, nextPath] = process.argv.slice(2);
  if (!nextPath) {
    console.error('usage: node run_ort_kv.js REF.json TOL FIRST.onnx NEXT.onnx');
    process.exit(2);
  }
  const ref = JSON.parse(fs.readFileSync(refPath, 'utf8'));
  const T = ref.T, C = ref.chunk, opt = {graphOptimizationLevel: 'disabled'};
  const first = await ort.InferenceSession.create(firstPath, opt);
  const next = await ort.InferenceSession.create(nextPath, opt);
  const ids64 = (a) => BigInt64Array.from(a.map(BigInt));
  let nll = 0, scored = 0, agree = 0;
  const t0 = Date.now();
  for (let w = 0; w < ref.windows; w++) {
    const ids = ref.ids.slice(w * T, (w + 1) * T);
    const a = await first.run({input_ids: new ort.Tensor('int64', ids64(ids.slice(0, C)), [1, C])});
    const feeds = {input_ids: new ort.Tensor('int64', ids64(ids.slice(C)), [1, T - C])};
    for (const name of next.inputNames)  // layerN.k.past <- FIRST's layerN.k.cache
      if (name !== 'input_ids') feeds[name] = a[name.replace(/\.past$/, '.cache')];
    const b = await next.run(feeds, ['logits']);
    const V = a.logits.dims[2];
    for (let t = 0; t + 1 < T; t++) {
      const row = t < C ? a.logits.data.subarray(t * V, (t + 1) * V)
                        : b.logits.data.subarray((t - C) * V, (t - C + 1) * V);
      let mx = -Infinity, best = 0;
      for (let v = 0; v < V; v++) if (row[v] > mx) { mx = row[v]; best = v; }
      if (best === ref.int_argmax[w * T + t]) agree++;
      let se = 0;
      for (let v = 0; v < V; v++) se += Math.exp(row[v] - mx);
      nll += Math.log(se) + mx - row[ids[t + 1]];
      scored++;
    }
  }
  const ppl = Math.exp(nll / scored);
  const r = {first: firstPath, next: nextPath, windows: ref.windows, T, chunk: C, scored, ppl_ort: ppl,
             ppl_int_chunked: ref.ppl_int_chunked, rel_diff: ppl / ref.ppl_int_chunked - 1,
             ppl_sim_one_window: ref.ppl_sim, top1_vs_int: agree / scored, seconds: (Date.now() - t0) / 1000};
  console.log(JSON.stringify(r));
  if (!(Math.abs(r.rel_diff) <= Number(tolStr))) {
    console.error(`run_ort_kv: perplexity ${ppl} vs the engine's ${ref.ppl_int_chunked} (off by more than ${tolStr})`);
    process.exit(1);
  }
})().catch((e) => { console.error('run_ort_kv:', e.message || e); process.exit(1); });
