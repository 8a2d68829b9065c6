// run_ort.js — ONNX Runtime side of `make check-interop` (docs/export.md).
//
//   node run_ort.js REF.json TOL MODEL.onnx... [-- INFO.onnx...]
//
// REF.json comes from test/interop/ref (token windows, the simulated graph's perplexity, the
// integer engine's arg-max per position). Each model runs every window with graph
// optimizations disabled (Q/DQ executed literally in float, as our fake-quant simulation does);
// the window perplexity (docs/perplexity.md) must be within TOL (relative) of the simulated
// graph's. Models after "--" (the float graphs: weights quantized, activations not) are run and
// reported but not held to TOL. Prints one JSON line per model; exit status 1 if any model is off.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function run(ref, path) {
  const sess = await ort.InferenceSession.create(path, {graphOptimizationLevel: 'disabled'});
  const T = ref.T;
  let nll = 0, scored = 0, agree = 0, positions = 0;
  const t0 = Date.now();
  for (let w = 0; w < ref.windows; w++) {
    const ids = ref.ids.slice(w * T, (w + 1) * T);
    const input = new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]);
    const out = await sess.run({input_ids: input}, ['logits']);
    const lg = out.logits.data, V = out.logits.dims[2];
    for (let t = 0; t < T; t++) {
      const row = lg.subarray(t * V, (t + 1) * V);
      let mx = -Infinity, best = 0;
      for (let v = 0; v < V; v++) if (row[v] > mx) { mx = row[v]; best = v; }
      if (t + 1 < T) {  // scored positions (as qnpu_compare counts them)
        if (best === ref.int_argmax[w * T + t]) agree++;
        positions++;
        let se = 0;
        for (let v = 0; v < V; v++) se += Math.exp(row[v] - mx);
        nll += Math.log(se) + mx - row[ids[t + 1]];
        scored++;
      }
    }
  }
  const ppl = Math.exp(nll / scored);
  return {model: path, windows: ref.windows, T, scored, ppl_ort: ppl, ppl_sim: ref.ppl_sim,
          rel_diff: ppl / ref.ppl_sim - 1, ppl_int: ref.ppl_int, top1_vs_int: agree / positions, top1_sim_vs_int: ref.top1_sim_int,
          seconds: (Date.now() - t0) / 1000};
}

(async () => {
  const [refPath, tolStr, ...rest] = process.argv.slice(2);
  const cut = rest.indexOf('--');
  const models = cut < 0 ? rest : rest.slice(0, cut), info = cut < 0 ? [] : rest.slice(cut + 1);
  if (!refPath || !models.length) {
    console.error('usage: node run_ort.js REF.json TOL MODEL.onnx... [-- INFO.onnx...]');
    process.exit(2);
  }
  const ref = JSON.parse(fs.readFileSync(refPath, 'utf8'));
  const tol = Number(tolStr);
  let bad = 0;
  for (const m of models) {
    const r = await run(ref, m);
    console.log(JSON.stringify(r));
    if (!(Math.abs(r.rel_diff) <= tol)) {
      console.error(`run_ort: ${m}: perplexity ${r.ppl_ort} vs simulated ${ref.ppl_sim} (off by more than ${tol})`);
      bad++;
    }
  }
  for (const m of info)
    console.log(JSON.stringify(Object.assign(await run(ref, m), {checked: false})));
  process.exit(bad ? 1 : 0);
})().catch((e) => { console.error('run_ort:', e.message || e); process.exit(1); });
