// The WebGPU kernel family real GPUs run (matmul.wgsl at 16 lanes per row, matmul_tiled.wgsl
// for prefill), compiled by the browser's own WGSL compiler: chromium's only adapter here is
// SwiftShader, a fallback adapter, which takes the CPU-adapter kernels unless the package is
// told `kernels: "gpu"`. Every fixture type through it: logits against transformers (a 24-token
// prefill through the tiled kernel, and token by token through the matvec) within the native
// fixture bound, and greedy tokens after a 40-token prompt (two tiles, one partial) equal to the
// native CLI's (`--backend gpu` on lavapipe, which itself runs the CPU-adapter family: the GPU
// family there is ~100× slower, and crate/tests/kernels.rs checks both families natively).
//   node --test tests/browser/gpu_kernels.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, readNpy, std } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const FIX = join(ROOT, "tests/fixtures");
const tiny = JSON.parse(readFileSync(join(FIX, "tiny.json"), "utf8"));
// tests/make_fixtures.py's types and llama-quantize's (tests/make_quant_fixtures.py)
const TYPES = [...Object.keys(tiny.types), ...Object.keys(tiny.llama_quantize_types)];
// the native f32 fixture bound (crate/tests/model_fixtures.rs): max |ours − transformers| per
// position, as a fraction of that position's logit std
const TOL = 0.01;
// longer than one 32-token tile of the prefill kernel
const LONG_PROMPT = [...tiny.tokens, ...tiny.greedy_prompt, ...tiny.tokens.slice(0, 8)];
const NEW_TOKENS = 8;

let browser, page, server;

/** The native engine on the GPU backend, f32 (SwiftShader has no shader-f16). */
function cli(args) {
  const out = execFileSync(
    "cargo",
    ["run", "-q", "--locked", "--bin", "llama-webgpu", "--", ...args, "--backend", "gpu", "--precision", "f32", "--json"],
    { cwd: ROOT, encoding: "utf8", env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" }, maxBuffer: 64 << 20 },
  );
  return JSON.parse(out.trim().split("\n").pop());
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

test('kernels: "gpu" on SwiftShader: every fixture type, logits match transformers, greedy tokens equal the native CLI\'s', { timeout: 900_000 }, async () => {
  assert.ok(LONG_PROMPT.length > 32, "the prompt spans more than one prefill tile");
  const r = await page.evaluate(
    async ({ types, tokens, prompt, n }) => {
      const lib = await import("/tests/.cache/pkg-test/index.js");
      const out = {};
      for (const t of types) {
        const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "webgpu", kernels: "gpu", precision: "f32", cache: false, contextLength: 64 });
        const prefill = Array.from(await m.logits(tokens));
        const stepwise = Array.from(await m.logits(tokens, { stepwise: true }));
        const greedy = [];
        for await (const c of m.generate(prompt, { maxTokens: n, temperature: 0 })) if (c.token != null) greedy.push(c.token);
        out[t] = { info: { backend: m.info.backend, kernels: m.info.kernels, adapter: m.info.adapter, f16: m.info.f16 }, prefill, stepwise, greedy };
        await m.dispose();
      }
      return out;
    },
    { types: TYPES, tokens: tiny.tokens, prompt: LONG_PROMPT, n: NEW_TOKENS },
  );
  for (const t of TYPES) {
    const { info, prefill, stepwise, greedy } = r[t];
    assert.equal(info.backend, "webgpu", `${t}: ${JSON.stringify(info)}`);
    assert.equal(info.kernels, "gpu", `${t}: the GPU kernel family runs`);
    assert.equal(info.f16, false);
    const ref = readNpy(join(FIX, `tiny-${t}.logits.npy`));
    const vocab = ref.shape[1];
    const worst = {};
    for (const [pass, got] of [["prefill", prefill], ["token by token", stepwise]]) {
      assert.equal(got.length, ref.data.length, `${t} ${pass}`);
      worst[pass] = 0;
      for (let p = 0; p < ref.shape[0]; p++) {
        const row = ref.data.subarray(p * vocab, (p + 1) * vocab);
        const sd = std(row);
        for (let i = 0; i < vocab; i++) {
          const e = Math.abs(got[p * vocab + i] - row[i]);
          assert.ok(e <= TOL * sd, `${t} ${pass}: position ${p}: |browser − transformers| = ${e} > ${TOL} × std ${sd}`);
          worst[pass] = Math.max(worst[pass], e / sd);
        }
      }
    }
    const native = cli(["generate", "--model", join(FIX, `tiny-${t}.gguf`), "--tokens", LONG_PROMPT.join(","), "--max-tokens", String(NEW_TOKENS)]);
    assert.ok(native.tokens.length > 0, `${t}: the CLI produced no tokens`);
    assert.deepEqual(greedy, native.tokens, `${t}: browser greedy tokens (GPU kernels) = native CLI tokens`);
    console.log(`${t}: GPU kernels in chromium, max error / std: prefill ${worst.prefill.toExponential(2)}, token by token ${worst["token by token"].toExponential(2)}; ${greedy.length} greedy tokens = CLI`);
  }
});

test('kernels: "auto" keeps the CPU-adapter family on SwiftShader; bad values are typed errors', async () => {
  const r = await page.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const m = await lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "webgpu", cache: false, useWorker: false, contextLength: 64 });
    const auto = m.info.kernels;
    await m.dispose();
    const err = async (opts) => {
      try {
        await lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", opts);
        return null;
      } catch (e) {
        return { name: e.name, code: e.code, message: e.message };
      }
    };
    return { auto, bad: await err({ kernels: "tiled" }), cpu: await err({ backend: "cpu", kernels: "gpu" }) };
  });
  assert.equal(r.auto, "cpu", "a fallback adapter takes the CPU-adapter kernels by default");
  for (const e of [r.bad, r.cpu]) {
    assert.ok(e, "rejected");
    assert.equal(e.code, "invalid_argument", JSON.stringify(e));
  }
  assert.match(r.bad.message, /kernels must be "auto" or "gpu"/);
});
