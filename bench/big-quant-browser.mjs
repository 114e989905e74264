// Loads one GGUF in headless chromium through the package (the test build in
// tests/.cache/pkg-test) with `backend: "webgpu"` (SwiftShader here), greedy-decodes a few
// tokens and prints one JSON line: tokens, load / generate seconds, peak wasm memory, adapter.
// The model is served by the tests' server (HTTP Range reads), so it must lie under the repo.
//   node bench/big-quant-browser.mjs --model /tests/.cache/8b-q3_k_m.gguf [--tokens 128000,9906] [--gen 2]
import { launch } from "../tests/browser/harness.mjs";
import { startServer } from "../tests/browser/server.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : d);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const server = await startServer({ root: ROOT });
const browser = await launch();
try {
  const page = await browser.page();
  page.setDefaultTimeout(0);
  await page.goto(`${server.origin}/tests/browser/page.html`);
  const r = await page.evaluate(
    async ({ url, tokens, gen }) => {
      const lib = await import("/tests/.cache/pkg-test/index.js");
      let peak = 0;
      const probe = setInterval(() => (peak = Math.max(peak, lib.wasmMemoryBytes())), 200);
      const t0 = performance.now();
      const m = await lib.loadModel(url, { backend: "webgpu", cache: false, contextLength: 64 });
      const t1 = performance.now();
      const out = [];
      for await (const c of m.generate(tokens, { maxTokens: gen, temperature: 0 })) if (c.token != null) out.push(c.token);
      const t2 = performance.now();
      clearInterval(probe);
      peak = Math.max(peak, lib.wasmMemoryBytes());
      const info = { backend: m.info.backend, adapter: m.info.adapter, kernels: m.info.kernels, f16: m.info.f16 };
      await m.dispose();
      return { tokens: out, load_s: (t1 - t0) / 1e3, generate_s: (t2 - t1) / 1e3, peak_wasm_bytes: peak, ...info };
    },
    { url: opt("model"), tokens: opt("tokens", "128000,9906").split(",").map(Number), gen: Number(opt("gen", "2")) },
  );
  console.log(JSON.stringify(r));
} finally {
  await browser.close();
  await server.close();
}
