// @ts-check
// A worker that loads a model through the package's engine module directly (as the package's
// own worker does, so CPU threads run as shard workers) and reports what each wasm instance
// holds: the engine's and every shard's memory (it only grows, so it is the peak) and weight
// bytes, after loading and after running. For tests/browser/shards.test.mjs and
// bench/browser-8b-cpu.mjs; the page must be cross-origin isolated for threads > 1.
//   new Worker("/tests/browser/instances-worker.mjs", { type: "module" }).postMessage({ url, options, logits, generate, bench })
import { EngineHost, wasmMemoryBytes } from "/tests/.cache/pkg-test/engine.js";

/** @param {EngineHost} host */
function instances(host) {
  const shards = host.shards ? host.shards.instances() : [];
  const engine = { memoryBytes: wasmMemoryBytes() - shards.reduce((a, s) => a + s.memoryBytes, 0), weightBytes: host.info.heldWeightBytes };
  return [engine, ...shards];
}

self.onmessage = async ({ data: m }) => {
  let host = null;
  try {
    const t0 = performance.now();
    host = await EngineHost.load(m.url, m.options);
    const out = { info: host.info, load_s: (performance.now() - t0) / 1e3, loaded: instances(host) };
    if (m.logits) out.logits = Array.from(new Uint32Array((await host.logits(m.logits)).buffer));
    if (m.generate) {
      const ids = host.tokenize(m.generate.text, true);
      const t = performance.now();
      const toks = [];
      for await (const c of host.generate(ids, { maxTokens: m.generate.tokens, temperature: 0 })) if (c.token != null) toks.push(c.token);
      out.generate = { prompt: ids.length, tokens: toks, text: host.detokenize(toks), s: (performance.now() - t) / 1e3 };
    }
    if (m.bench) out.bench = await host.bench(m.bench.prompt, m.bench.gen);
    out.ran = instances(host);
    self.postMessage({ type: "done", ...out });
  } catch (e) {
    self.postMessage({ type: "error", name: e?.name, message: e?.message ?? String(e) });
  } finally {
    host?.dispose();
  }
};
