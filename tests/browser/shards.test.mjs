// CPU threads as row shards (crate/src/cpu/shards.rs) in chromium, instance by instance: with
// 2 and 3 threads every wasm instance (the engine and each shard worker) holds its share of
// the weights, token_embd and the output layer included, so the engine holds no whole matrix;
// the rows add up to one thread's; and the logits stay bit-identical to 1 thread. The engine
// runs in tests/browser/instances-worker.mjs (the package's engine module in a worker of
// its own), which reports each instance's weight bytes and wasm memory. The 8B-shaped model
// over 2 instances is a benchmark: bench/browser-8b-cpu.mjs.
//   node --test tests/browser/shards.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inInstancesWorker, launch, openIsolatedPage } from "./harness.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const tiny = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/tiny.json"), "utf8"));

let browser, isoServer, isoPage;

before(async () => {
  browser = await launch();
  ({ server: isoServer, page: isoPage } = await openIsolatedPage(browser));
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  await isoServer?.close();
});

/** Runs `msg` in a fresh instances-worker on the isolated page. */
const inWorker = (msg) => inInstancesWorker(isoPage, msg);

test("threads 2 and 3: each wasm instance holds its share of every matrix (token_embd and output too), logits bit-identical to 1 thread", { timeout: 300_000 }, async () => {
  assert.equal(await isoPage.evaluate(() => crossOriginIsolated), true);
  // q4_1 ties the output layer to token_embd; q8_0 has its own
  for (const t of ["q4_1", "q8_0"]) {
    const run = (threads, extra = {}) => inWorker({ url: `/tests/fixtures/tiny-${t}.gguf`, options: { backend: "cpu", cache: false, contextLength: 64, threads, ...extra }, logits: tiny.tokens });
    const one = await run(1);
    assert.equal(one.type, "done", JSON.stringify(one));
    assert.equal(one.loaded.length, 1);
    const whole = one.loaded[0].weightBytes;
    assert.ok(whole > 0, JSON.stringify(one.loaded));
    for (const n of [2, 3]) {
      const r = await run(n);
      assert.equal(r.type, "done", JSON.stringify(r));
      assert.equal(r.info.threads, n, r.info.threadsReason);
      assert.equal(r.loaded.length, n, "the engine and n - 1 shards report");
      const held = r.loaded.map((i) => i.weightBytes);
      // every row in exactly one instance, and each about 1/n of them (whole row units of 8:
      // part 0 is the largest, by at most 8 rows a matrix)
      assert.equal(held.reduce((a, b) => a + b, 0), whole, `${t}, ${n} threads: ${held}`);
      for (const [i, h] of held.entries()) {
        assert.ok(Math.abs(h - whole / n) < 0.15 * (whole / n), `${t}, ${n} threads: instance ${i} holds ${h} of ${whole} bytes`);
      }
      assert.ok(held[0] >= Math.max(...held.slice(1)), "the engine's part is the largest");
      for (const i of r.ran) assert.ok(i.memoryBytes > 0, JSON.stringify(r.ran));
      const diff = r.logits.findIndex((b, i) => b !== one.logits[i]);
      assert.equal(r.logits.length, one.logits.length);
      assert.equal(diff, -1, `${t}, ${n} threads: logit ${diff} differs from 1 thread`);
      console.log(`${t}, ${n} threads: weight bytes per instance ${held.join(" + ")} (1 thread: ${whole}); wasm memory ${r.ran.map((i) => (i.memoryBytes / 2 ** 20).toFixed(1)).join(" / ")} MiB`);
    }
    // part 0 weighted less than a shard (shardLead, pkg/shards.js LEAD): the engine holds
    // fewer rows, and the logits still do not change
    const r = await run(2, { shardLead: 600 });
    assert.equal(r.type, "done", JSON.stringify(r));
    const held = r.loaded.map((i) => i.weightBytes);
    assert.equal(held.reduce((a, b) => a + b, 0), whole);
    assert.ok(held[0] < 0.45 * whole && held[1] > 0.55 * whole, `${t}, lead 600: ${held}`);
    assert.equal(r.logits.findIndex((b, i) => b !== one.logits[i]), -1, `${t}, lead 600: logits differ from 1 thread`);
  }
});

test("a model too large for the threads asked is an OutOfMemoryError from the per-instance plan, before the weights are fetched", { timeout: 120_000 }, async () => {
  // the KV cache is split by KV heads as the attention is: a ~16M-token cache of the tiny
  // model's 2 heads (3.8 GiB each) fits in 3 threads (the engine none, each shard one), where
  // 2 threads leave the engine one; twice that fits in no thread count, and the error says so
  const r = await inWorker({ url: "/tests/fixtures/tiny-q8_0.gguf", options: { backend: "cpu", cache: false, contextLength: 16_000_000, threads: 2 } });
  assert.equal(r.type, "error", JSON.stringify(r));
  assert.equal(r.name, "OutOfMemoryError", r.message);
  assert.match(r.message, /in the engine's instance at 2 thread\(s\)/);
  assert.match(r.message, /1 of the 2 KV heads of a 16000000-token f16 KV cache/);
  assert.match(r.message, /threads: 3 would fit/);
  const r2 = await inWorker({ url: "/tests/fixtures/tiny-q8_0.gguf", options: { backend: "cpu", cache: false, contextLength: 32_000_000, threads: 2 } });
  assert.equal(r2.name, "OutOfMemoryError", r2.message);
  assert.match(r2.message, /no thread count up to 32 fits/);
});
