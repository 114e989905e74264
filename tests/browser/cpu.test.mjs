// The CPU backend in the browser (wasm simd128; the package's relaxed SIMD build where the
// browser has it, as this chromium does): every fixture type's logits against
// transformers within 1e-5 of the reference std under f32 KV (prefill, and token by token through the KV
// cache, which runs the simd128 block-dot kernels), greedy tokens through the KV cache
// equal to transformers' generate, info reporting the backend; both builds' block-dot and int8
// kernels against the reference decode, and cpuDot int8 logits within crate/tests/cpu.rs's int8
// bounds in both builds (the same bits for Q8_0 and the K-quants); and `auto` on this headless chromium's SwiftShader
// (a fallback adapter) picking the CPU. Threads (row shards in workers over a SharedArrayBuffer)
// on a second, cross-origin isolated origin: logits bit-identical to 1 thread, a trapping shard a
// typed error, dispose() ending the shard workers; without isolation 1 thread, and why. Long
// context (with SMOLLM2_GGUF): a 4096-token prompt, and SmolLM2's full 8192 tokens with q8_0 KV.
//   node --test tests/browser/cpu.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, openIsolatedPage, readNpy, std } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const FIX = join(ROOT, "tests/fixtures");
const tiny = JSON.parse(readFileSync(join(FIX, "tiny.json"), "utf8"));
const TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k", ...Object.keys(tiny.llama_quantize_types)];
const TOL = 1e-5;

let browser, page, server, isoServer, isoPage;

before(async () => {
  server = await startServer({ root: ROOT });
  browser = await launch();
  page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
  // the same files with COOP/COEP: SharedArrayBuffer and Atomics.wait in the workers
  ({ server: isoServer, page: isoPage } = await openIsolatedPage(browser));
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  await server?.close();
  await isoServer?.close();
});

test("CPU backend in wasm: logits of every fixture type match transformers within 1e-5 of std, prefill and token by token", { timeout: 600_000 }, async () => {
  const r = await page.evaluate(
    async ({ types, tokens }) => {
      const lib = await import("/tests/.cache/pkg-test/index.js");
      const out = {};
      for (const t of types) {
        const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64, kvType: "f32" });
        const prefill = Array.from(await m.logits(tokens));
        const stepwise = Array.from(await m.logits(tokens, { stepwise: true }));
        out[t] = { info: { backend: m.info.backend, reason: m.info.backendReason, adapter: m.info.adapter, threads: m.info.threads }, prefill, stepwise };
        await m.dispose();
      }
      return out;
    },
    { types: TYPES, tokens: tiny.tokens },
  );
  for (const t of TYPES) {
    const { info, prefill, stepwise } = r[t];
    assert.equal(info.backend, "cpu");
    assert.equal(info.reason, "asked for the CPU backend");
    assert.match(info.adapter, /CPU, 1 thread\(s\), simd128\+relaxed, exact dot/);
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
          assert.ok(e <= TOL * sd, `${t} ${pass}: position ${p}: |wasm cpu − transformers| = ${e} > ${TOL} × std ${sd}`);
          worst[pass] = Math.max(worst[pass], e / sd);
        }
      }
    }
    console.log(`${t}: wasm CPU backend, max error / std: prefill ${worst.prefill.toExponential(2)}, token by token ${worst["token by token"].toExponential(2)}`);
  }
});

// The two engine builds (pkg/simd.js): relaxed SIMD where the browser has it, simd128 else.
const BUILDS = { "relaxed-simd": "llama_webgpu_relaxed_bg.wasm", simd128: "llama_webgpu_bg.wasm" };

/** Runs `check` (a checkCpu… export) in a module instance of each build; { build: result }. */
const inEachBuild = (check) =>
  page.evaluate(async ({ builds, check }) => {
    const out = {};
    for (const [name, file] of Object.entries(builds)) {
      // one glue, a module instance of its own per build (the query string)
      const w = await import(`/tests/.cache/pkg-test/wasm/llama_webgpu.js?${name}`);
      await w.default({ module_or_path: `/tests/.cache/pkg-test/wasm/${file}` });
      out[name] = w[check]();
    }
    return out;
  }, { builds: BUILDS, check });

test("CPU backend in wasm: the simd128 block-dot kernel of every supported format matches the reference decode, in both builds", async () => {
  // Q5_0/Q5_1 have no fixture model: this reaches every kernel, in wasm, on random blocks
  for (const [build, r] of Object.entries(await inEachBuild("checkCpuKernels"))) {
    assert.equal(r.simd, "simd128");
    const types = Object.keys(r.worst);
    for (const t of ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]) assert.ok(types.includes(t), `${build}: ${t} not checked: ${types}`);
    for (const [t, e] of Object.entries(r.worst)) assert.ok(e <= TOL, `${build} ${t}: simd128 dot error ${e} of Σ|w·x| > ${TOL}`);
    console.log(`simd128 kernels (${build} build), worst error / Σ|w·x|: ${Object.entries(r.worst).map(([t, e]) => `${t} ${e.toExponential(1)}`).join(", ")}`);
  }
});

test("CPU backend in wasm: the integer (int8) dot kernel of every quantized format matches the scalar one and the decode's bound, in the relaxed SIMD and the simd128 build", async () => {
  const r = await inEachBuild("checkCpuInt8Kernels");
  assert.equal(r["relaxed-simd"].relaxed, true, "the relaxed build runs the relaxed dot");
  assert.equal(r.simd128.relaxed, false);
  // each build's two dots (i16 and i32 lanes) are both checked; it takes the faster one
  for (const k of Object.values(r)) {
    assert.deepEqual(k.dots, ["i16", "i32"]);
    assert.ok(["i16", "i32"].includes(k.chosen));
  }
  for (const [build, k] of Object.entries(r)) {
    assert.equal(k.simd, "simd128");
    const types = Object.keys(k.worst);
    for (const t of ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]) assert.ok(types.includes(t), `${build}: ${t} not checked: ${types}`);
    for (const [t, [vsScalar, vsBound]] of Object.entries(k.worst)) {
      // integer sums are exact: only the f32 scaling rounds differently
      assert.ok(vsScalar <= 1e-6, `${build} ${t}: ${vsScalar} of Σ|w·x| from the scalar integer kernel`);
      assert.ok(vsBound <= 1, `${build} ${t}: ${vsBound} × the activation-rounding bound`);
    }
    console.log(`int8 kernels (${build}, dots ${k.dots}, chosen ${k.chosen}), vs scalar / vs bound: ${Object.entries(k.worst).map(([t, [a, b]]) => `${t} ${a.toExponential(1)} / ${b.toFixed(2)}`).join(", ")}`);
  }
});

// crate/tests/cpu.rs's tol_int8: the int8 path's bound against transformers, × the reference std
const TOL_INT8 = { q8_0: 0.14, q4_0: 0.14, q4_1: 0.17, q4_k_m: 0.35, q5_k_m: 0.35, q6_k: 0.35 };
/** The fixtures whose int8 logits are the same bits in both builds (see below). */
const SAME_BITS = new Set(["q8_0", "q4_k_m", "q5_k_m", "q6_k"]);

test("CPU backend in wasm, cpuDot int8: logits within the int8 bounds of transformers in both builds, the same bits for Q8_0 and the K-quants; auto picks relaxed SIMD here", { timeout: 600_000 }, async () => {
  const types = Object.keys(TOL_INT8);
  const r = await page.evaluate(async ({ types, tokens }) => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const out = {};
    for (const t of types) {
      for (const simd of ["auto", "simd128"]) {
        const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64, kvType: "f32", cpuDot: "int8", simd });
        const prefill = Array.from(await m.logits(tokens));
        const stepwise = Array.from(await m.logits(tokens, { stepwise: true }));
        const bench = await m.bench({ promptTokens: 4, genTokens: 2 });
        out[`${t} ${simd}`] = { simd: m.info.simd, adapter: m.info.adapter, bench: { simd: bench.simd, adapter: bench.adapter }, prefill, stepwise };
        await m.dispose();
      }
    }
    return out;
  }, { types, tokens: tiny.tokens });
  for (const t of types) {
    const relaxed = r[`${t} auto`];
    const simd = r[`${t} simd128`];
    assert.equal(relaxed.simd, "relaxed-simd", `${t}: auto on chromium ${JSON.stringify(relaxed.adapter)}`);
    assert.match(relaxed.adapter, /^CPU, 1 thread\(s\), simd128\+relaxed, int8 dot \((i16|i32) lanes\)$/);
    assert.equal(relaxed.bench.simd, "relaxed-simd");
    assert.match(relaxed.bench.adapter, /simd128\+relaxed, int8 dot/);
    assert.equal(simd.simd, "simd128");
    assert.match(simd.adapter, /^CPU, 1 thread\(s\), simd128, int8 dot \((i16|i32) lanes\)$/);
    assert.equal(simd.bench.simd, "simd128");
    assert.match(simd.bench.adapter, /simd128, int8 dot/);
    const ref = readNpy(join(FIX, `tiny-${t}.logits.npy`));
    const vocab = ref.shape[1];
    const worst = {};
    for (const [build, got] of [["relaxed-simd", relaxed], ["simd128", simd]]) {
      for (const pass of ["prefill", "stepwise"]) {
        assert.equal(got[pass].length, ref.data.length, `${t} ${build} ${pass}`);
        let w = 0;
        for (let p = 0; p < ref.shape[0]; p++) {
          const row = ref.data.subarray(p * vocab, (p + 1) * vocab);
          const sd = std(row);
          for (let i = 0; i < vocab; i++) w = Math.max(w, Math.abs(got[pass][p * vocab + i] - row[i]) / sd);
        }
        assert.ok(w <= TOL_INT8[t], `${t} ${build} ${pass}: max |wasm int8 − transformers| / std = ${w} > ${TOL_INT8[t]}`);
        worst[`${build} ${pass}`] = w;
      }
    }
    // The relaxed dot sums the same integers, into other i32 lanes. Q8_0 keeps the simd128
    // products, and the K-quants (all these fixtures' K-quant files hold) sum the lanes before
    // any f32: the same bits. Q4_0/Q4_1 scale the lanes in f32, so rounding differs, and a
    // rounding step can flip an activation's 8-bit quant downstream: both builds must then
    // hold the bound on their own (checked above).
    const same = ["prefill", "stepwise"].map((pass) => {
      const diff = relaxed[pass].findIndex((x, i) => !Object.is(x, simd[pass][i]));
      if (SAME_BITS.has(t)) assert.equal(diff, -1, `${t} ${pass}: logit ${diff} differs between the relaxed SIMD and the simd128 build`);
      return diff === -1;
    });
    console.log(`${t} int8: max error / std ${Object.entries(worst).map(([k, w]) => `${k} ${w.toExponential(2)}`).join(", ")}; builds ${same.every(Boolean) ? "bit-identical" : "differ in rounding"}`);
  }
  const bad = await page.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    return lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "cpu", cache: false, simd: "avx" }).then(() => "loaded", (e) => `${e.name}: ${e.message}`);
  });
  assert.match(bad, /^InvalidArgumentError: simd must be "auto" or "simd128"/);
});

test("CPU backend in wasm: greedy tokens through the KV cache equal transformers' generate", { timeout: 300_000 }, async () => {
  const r = await page.evaluate(async ({ prompt, n }) => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const out = {};
    for (const t of ["f32", "q8_0", "q4_1"]) {
      const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64, kvType: "f32" });
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
    const lib = await import("/tests/.cache/pkg-test/index.js");
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

/** Web Locks the shard workers hold (one per live worker). */
const shardLocks = async () => (await navigator.locks.query()).held.filter((l) => l.name.startsWith("llama-webgpu-shard-")).length;

test("threads: 2 on a cross-origin isolated page: logits and greedy tokens bit-identical to 1 thread", { timeout: 600_000 }, async () => {
  assert.equal(await isoPage.evaluate(() => crossOriginIsolated), true);
  const r = await isoPage.evaluate(async ({ types, tokens, prompt, locksSrc }) => {
    const shardLocks = eval(locksSrc);
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const out = {};
    for (const t of types) {
      const run = async (threads) => {
        const m = await lib.loadModel(`/tests/fixtures/tiny-${t}.gguf`, { backend: "cpu", cache: false, contextLength: 64, threads });
        const logits = Array.from(new Uint32Array((await m.logits(tokens)).buffer));
        const toks = [];
        for await (const c of m.generate(prompt, { maxTokens: 8, temperature: 0 })) if (c.token != null) toks.push(c.token);
        const locks = await shardLocks();
        const info = { threads: m.info.threads, reason: m.info.threadsReason, adapter: m.info.adapter };
        await m.dispose();
        return { logits, toks, locks, info };
      };
      const one = await run(1);
      const two = await run(2);
      const three = await run(3);
      // the workers release their locks as they end
      let after = await shardLocks();
      for (let i = 0; after > 0 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await shardLocks();
      }
      out[t] = { one, two, three, after };
    }
    return out;
  }, { types: ["q4_1", "q8_0", "q4_k_m"], tokens: tiny.tokens, prompt: tiny.greedy_prompt, locksSrc: shardLocks.toString() });
  for (const [t, { one, two, three, after }] of Object.entries(r)) {
    assert.equal(one.info.threads, 1);
    assert.equal(one.locks, 0, `${t}: 1 thread starts no shard worker`);
    for (const [n, m] of [[2, two], [3, three]]) {
      assert.equal(m.info.threads, n, `${t}: ${m.info.reason}`);
      assert.match(m.info.reason, new RegExp(`${n - 1} shard worker`));
      assert.match(m.info.adapter, new RegExp(`CPU, ${n} thread\\(s\\)`));
      assert.equal(m.locks, n - 1, `${t}: ${n - 1} shard workers while loaded`);
      assert.equal(m.logits.length, one.logits.length);
      const diff = m.logits.findIndex((b, i) => b !== one.logits[i]);
      assert.equal(diff, -1, `${t}, ${n} threads: logit ${diff} differs from 1 thread`);
      assert.ok(m.toks.length > 0);
      assert.deepEqual(m.toks, one.toks, `${t}, ${n} threads: greedy tokens differ`);
    }
    assert.equal(after, 0, `${t}: dispose() ends the shard workers`);
  }
});

test("threads: 2 without cross-origin isolation (or on the page's thread) runs 1 thread and says why", async () => {
  const r = await page.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const m = await lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "cpu", cache: false, threads: 2 });
    const b = await m.bench({ promptTokens: 4, genTokens: 2 });
    const out = { isolated: crossOriginIsolated, threads: m.info.threads, reason: m.info.threadsReason, bench: b.threads };
    await m.dispose();
    return out;
  });
  assert.deepEqual({ ...r, reason: undefined }, { isolated: false, threads: 1, reason: undefined, bench: 1 });
  assert.match(r.reason, /2 threads asked, 1 used: the page is not cross-origin isolated/);
  const local = await isoPage.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const m = await lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "cpu", cache: false, threads: 2, useWorker: false });
    const out = { threads: m.info.threads, reason: m.info.threadsReason };
    await m.dispose();
    return out;
  });
  assert.equal(local.threads, 1);
  assert.match(local.reason, /page's thread/);
  const bad = await page.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    return lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "cpu", cache: false, threads: 0 }).then(() => "loaded", (e) => `${e.name}: ${e.message}`);
  });
  assert.match(bad, /^InvalidArgumentError: threads must be an integer/);
});

test("a shard worker that traps rejects the call with EngineCrashedError (no hang), and dispose() ends the workers", { timeout: 120_000 }, async () => {
  const r = await isoPage.evaluate(async ({ tokens, locksSrc }) => {
    const shardLocks = eval(locksSrc);
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const m = await lib.loadModel("/tests/fixtures/tiny-q4_1.gguf", { backend: "cpu", cache: false, contextLength: 64, threads: 2 });
    const ok = (await m.logits(tokens)).length;
    await m._crashEngine("panic", "shard");
    const err = (p) => p.then(() => null, (e) => ({ name: e.name, code: e.code, message: e.message }));
    const first = await err(m.logits(tokens));
    const second = await err(m.logits(tokens));
    const locks = await shardLocks();
    await m.dispose();
    let after = await shardLocks();
    for (let i = 0; after > 0 && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await shardLocks();
    }
    return { ok, first, second, locks, after };
  }, { tokens: tiny.tokens, locksSrc: shardLocks.toString() });
  assert.ok(r.ok > 0);
  assert.equal(r.first?.name, "EngineCrashedError", JSON.stringify(r.first));
  assert.match(r.first.message, /shard worker 1: WebAssembly trap/);
  assert.equal(r.second?.name, "EngineCrashedError", "a failed shard fails every later call");
  assert.equal(r.locks, 1);
  assert.equal(r.after, 0);
});

test("a load that fails after the shard workers started (server gone) rejects with a typed error and ends them", { timeout: 120_000 }, async () => {
  const path = "/tests/fixtures/tiny-q4_1.gguf";
  const srv = await startServer({ root: ROOT, headers: { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" } });
  const p = await browser.context.newPage();
  try {
    await p.goto(`${srv.origin}/tests/browser/page.html`);
    await p.evaluate(() => import("/tests/.cache/pkg-test/index.js"));
    // the header chunk and the next arrive, then the server dies mid-weights
    srv.failAfterBytes(path, 150_000);
    const r = await p.evaluate(async ({ path, locksSrc }) => {
      const shardLocks = eval(locksSrc);
      const lib = await import("/tests/.cache/pkg-test/index.js");
      const error = await lib.loadModel(path, { backend: "cpu", cache: false, threads: 2, chunkBytes: 64 << 10 }).then(
        () => null,
        (e) => ({ name: e.name, message: e.message }),
      );
      let after = await shardLocks();
      for (let i = 0; after > 0 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await shardLocks();
      }
      return { error, after };
    }, { path, locksSrc: shardLocks.toString() });
    assert.equal(r.error?.name, "NetworkError", JSON.stringify(r.error));
    assert.ok(srv.stats.bytes[path] >= 150_000, "the load got past the header");
    assert.equal(r.after, 0, "no shard worker outlives the failed load");
  } finally {
    await p.close();
    await srv.close();
  }
});

test("CPU backend: abort stops within one token and dispose() ends a generation with DisposedError within 1 s, in a worker and on the page, 1 and 2 threads", { timeout: 300_000 }, async () => {
  // the cross-origin isolated page: threads: 2 in a worker runs a real shard worker
  const r = await isoPage.evaluate(async () => {
    const lib = await import("/tests/.cache/pkg-test/index.js");
    const out = {};
    for (const useWorker of [true, false]) {
      for (const threads of [1, 2]) {
        const key = `${useWorker ? "worker" : "page"}, ${threads} thread(s)`;
        const o = (out[key] = {});
        const load = () => lib.loadModel("/tests/fixtures/tiny-q8_0.gguf", { backend: "cpu", cache: false, contextLength: 512, threads, useWorker });
        let m = await load();
        o.threads = m.info.threads;
        // abort after 5 tokens; the page's timers tick meanwhile (the token loop yields)
        let ticks = 0;
        const tick = setInterval(() => ticks++, 0);
        const ctl = new AbortController();
        let n = 0;
        o.after = 0;
        try {
          for await (const c of m.generate([1, 2, 3], { maxTokens: 400, signal: ctl.signal })) {
            void c;
            if (ctl.signal.aborted) o.after++;
            if (++n === 5) ctl.abort();
          }
          o.abort = "no error";
        } catch (e) {
          o.abort = e.name;
        }
        o.n = n;
        // a whole generation: the page's timers run between its tokens
        ticks = 0;
        let full = 0;
        for await (const c of m.generate([4, 5, 6], { maxTokens: 100 })) full += c.token == null ? 0 : 1;
        clearInterval(tick);
        o.full = full;
        o.ticks = ticks;
        // dispose() in the middle of a generation
        n = 0;
        let disposed = null;
        let disposeMs = null;
        try {
          for await (const c of m.generate([1, 2, 3], { maxTokens: 400 })) {
            void c;
            if (++n === 5) {
              const t0 = performance.now();
              disposed = m.dispose().then(() => (disposeMs = performance.now() - t0));
            }
          }
          o.dispose = "no error";
        } catch (e) {
          o.dispose = e.name;
        }
        await disposed;
        o.disposeMs = disposeMs;
        o.disposedAt = n;
        // a fresh load works
        m = await load();
        o.again = (await m.tokenize("hello")).length;
        await m.dispose();
      }
    }
    return out;
  });
  for (const [k, o] of Object.entries(r)) {
    console.log(`${k}: abort after ${o.n} tokens (${o.after} after the abort), ${o.ticks} timer ticks during ${o.full} tokens, dispose resolved in ${o.disposeMs?.toFixed(0)} ms at token ${o.disposedAt}`);
    assert.equal(o.abort, "AbortError", `${k}: ${JSON.stringify(o)}`);
    assert.ok(o.after <= 1, `${k}: ${o.after} tokens after the abort`);
    assert.ok(o.n <= 6, `${k}: stopped at ${o.n} of 400`);
    assert.equal(o.full, 100, `${k}: ${JSON.stringify(o)}`);
    assert.ok(o.ticks > 0, `${k}: the page's timers never ran during a generation`);
    assert.equal(o.dispose, "DisposedError", `${k}: ${JSON.stringify(o)}`);
    assert.ok(o.disposedAt <= 6, `${k}: the generation went on to token ${o.disposedAt} after dispose()`);
    assert.ok(o.disposeMs != null && o.disposeMs < 1000, `${k}: dispose() took ${o.disposeMs} ms`);
    assert.ok(o.again > 0);
  }
  assert.equal(r["worker, 2 thread(s)"].threads, 2, "threads: 2 in the isolated worker ran a shard worker");
});

const SMOLLM2 = process.env.SMOLLM2_GGUF;
test("long context in wasm: SmolLM2 with kvType q8_0 and contextLength \"max\" gets its 8192 tokens; a 4096-token prompt generates, and a prompt past 4096 reuses it and generates", {
  skip: !SMOLLM2 || !existsSync(SMOLLM2) ? "SMOLLM2_GGUF not set (scripts/setup.sh sets it)" : false,
  timeout: 1_200_000,
}, async () => {
  const models = await startServer({ root: dirname(SMOLLM2) });
  try {
    // one load, one 4096-token prefill; the longer prompt extends it, so only its new tokens run
    const r = await page.evaluate(async ({ url }) => {
      const lib = await import("/tests/.cache/pkg-test/index.js");
      const m = await lib.loadModel(url, { backend: "cpu", cache: false, kvType: "q8_0", contextLength: "max" });
      const i = m.info;
      const info = { backend: i.backend, contextLength: i.contextLength, trainContextLength: i.trainContextLength, kvType: i.kvType, kvBytes: i.kvBytes, layers: i.layers };
      const text = Array.from({ length: 400 }, (_, k) => `Line ${k}: the quick brown fox jumps over the lazy dog.`).join("\n");
      const ids = await m.tokenize(text);
      const run = async (prompt) => {
        const toks = [];
        try {
          for await (const c of m.generate(prompt, { maxTokens: 4, temperature: 0 })) if (c.token != null) toks.push(c.token);
        } catch (e) {
          return { error: `${e.name}: ${e.message}` };
        }
        const s = m.lastStats;
        return { toks, stats: { promptTokens: s.promptTokens, cachedTokens: s.cachedTokens, prefilledTokens: s.prefilledTokens, generatedTokens: s.generatedTokens, stopReason: s.stopReason } };
      };
      const prompt = ids.slice(0, 4096);
      const first = await run(prompt);
      const longer = first.toks ? [...prompt, ...first.toks, ...ids.slice(4096, 4160)] : [];
      const second = first.toks ? await run(longer) : null;
      await m.dispose();
      return { info, available: ids.length, first, second, longer: longer.length };
    }, { url: `${models.origin}/${basename(SMOLLM2)}` });
    assert.equal(r.info.backend, "cpu");
    assert.equal(r.info.trainContextLength, 8192, JSON.stringify(r.info));
    assert.equal(r.info.contextLength, 8192, `"max" gives the model's own context: ${JSON.stringify(r.info)}`);
    assert.equal(r.info.kvType, "q8_0");
    // layers × 8192 positions × K and V × 3 KV heads × one 64-value Q8_0 row (2 blocks of 34 bytes)
    assert.equal(r.info.kvBytes, r.info.layers * 8192 * 2 * 3 * 68, JSON.stringify(r.info));
    assert.ok(r.available >= 4160, `the text gives ${r.available} tokens`);
    assert.ok(!r.first.error, `4096-token prompt: ${r.first.error}`);
    const f = r.first.stats;
    assert.deepEqual([f.promptTokens, f.cachedTokens, f.prefilledTokens], [4096, 0, 4096], JSON.stringify(f));
    assert.ok(r.first.toks.length > 0 && r.first.toks.length === r.first.stats.generatedTokens, JSON.stringify(r.first));
    assert.ok(!r.second.error, `${r.longer}-token prompt: ${r.second.error}`);
    const s = r.second.stats;
    assert.equal(s.promptTokens, r.longer);
    assert.ok(r.longer > 4096 + 64, `${r.longer} tokens`);
    // the cache holds the first prompt and every generated token fed back (all but the last)
    assert.ok(s.cachedTokens >= 4096 + r.first.toks.length - 1, JSON.stringify(s));
    assert.equal(s.cachedTokens + s.prefilledTokens, s.promptTokens, JSON.stringify(s));
    assert.ok(r.second.toks.length > 0 && r.second.toks.length === s.generatedTokens, JSON.stringify(r.second));
    console.log(`SmolLM2 q8_0 KV, context ${r.info.contextLength} (${(r.info.kvBytes / 2 ** 20).toFixed(1)} MiB KV): 4096-token prompt → ${r.first.toks.length} tokens; ${s.promptTokens}-token prompt (${s.cachedTokens} cached) → ${r.second.toks.length} tokens`);
  } finally {
    await models.close();
  }
});
