// The CPU backend in the browser (wasm simd128): every fixture type's logits against
// transformers within 1e-5 of the reference std (prefill), greedy tokens through the KV cache
// equal to transformers' generate, info reporting the backend, and `auto` on this headless chromium's SwiftShader
// (a fallback adapter) picking the CPU.
//   node --test tests/browser/cpu.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const FIX = join(ROOT, "tests/fixtures");
const tiny = JSON.parse(readFileSync(join(FIX, "tiny.json"), "utf8"));
const TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k"];
const TOL = 1e-5;

let browser, page, server;

function readNpy(path) {
  const b = readFileSync(path);
  const hlen = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hlen).toString("latin1");
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  return { shape, data: new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length)) };
}

function std(a) {
  let m = 0;
  for (const x of a) m += x;
  m /= a.length;
  let v = 0;
  for (const x of a) v += (x - m) ** 2;
  return Math.sqrt(v / a.length);
}

before(async () => {
  server = await startServer({ root: ROOT });
  browser = await launch();
  page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  await server?.close();
});

test("CPU backend in wasm: logits of every fixture type match transformers within 1e-5 of std", { timeout: 600_000 }, async () => {
  const r = await page.evaluate(
    async ({ types, tokens }) => {
      const lib = await import("/pkg/index.js");
      const out = {};
      for (const t of types) {
        const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64 });
        const prefill = Array.from(await m.logits(tokens));
        out[t] = { info: { backend: m.info.backend, reason: m.info.backendReason, adapter: m.info.adapter, threads: m.info.threads }, prefill };
        await m.dispose();
      }
      return out;
    },
    { types: TYPES, tokens: tiny.tokens },
  );
  for (const t of TYPES) {
    const { info, prefill } = r[t];
    assert.equal(info.backend, "cpu");
    assert.equal(info.reason, "asked for the CPU backend");
    assert.match(info.adapter, /CPU, 1 thread\(s\), simd128/);
    const ref = readNpy(join(FIX, `tiny-${t}.logits.npy`));
    const vocab = ref.shape[1];
    assert.equal(prefill.length, ref.data.length);
    let worst = 0;
    for (let p = 0; p < ref.shape[0]; p++) {
      const row = ref.data.subarray(p * vocab, (p + 1) * vocab);
      const sd = std(row);
      for (let i = 0; i < vocab; i++) {
        const e = Math.abs(prefill[p * vocab + i] - row[i]);
        assert.ok(e <= TOL * sd, `${t}: position ${p}: |wasm cpu − transformers| = ${e} > ${TOL} × std ${sd}`);
        worst = Math.max(worst, e / sd);
      }
    }
    console.log(`${t}: wasm CPU backend, max error / std ${worst.toExponential(2)}`);
  }
});

test("CPU backend in wasm: greedy tokens through the KV cache equal transformers' generate", { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async ({ prompt, n }) => {
    const lib = await import("/pkg/index.js");
    const out = {};
    for (const t of ["f32", "q8_0", "q4_1"]) {
      const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64 });
      const toks = [];
      for await (const c of m.generate(prompt, { maxTokens: n, temperature: 0 })) if (c.token != null) toks.push(c.token);
      out[t] = toks;
      await m.dispose();
    }
    return out;
  }, { prompt: tiny.greedy_prompt, n: tiny.greedy_new_tokens });
  for (const t of ["f32", "q8_0", "q4_1"]) {
    const want = tiny.types[t].greedy;
    // generation may stop at an end-of-text token: compare the tokens it did produce
    assert.ok(r[t].length > 0, `${t}: no tokens`);
    assert.deepEqual(r[t], want.slice(0, r[t].length), `${t}: wasm CPU greedy tokens differ from transformers`);
  }
});

test("auto on a fallback adapter (SwiftShader here) or with no WebGPU picks the CPU, and says why", async () => {
  const r = await page.evaluate(async () => {
    const lib = await import("/pkg/index.js");
    const m = await lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { cache: false, useWorker: false });
    const info = { backend: m.info.backend, reason: m.info.backendReason };
    const b = await m.bench({ promptTokens: 4, genTokens: 2 });
    await m.dispose();
    return { info, bench: { backend: b.backend, threads: b.threads } };
  });
  assert.equal(r.info.backend, "cpu");
  assert.match(r.info.reason, /fallback \(software\) adapter|no WebGPU adapter/);
  assert.deepEqual(r.bench, { backend: "cpu", threads: 1 });
});
