// Hostile and broken input in the browser: a crafted file that used to trap the wasm engine,
// deliberate traps (panic, out of memory; in a synchronous call and inside the async executor)
// and a worker that dies silently all reject with a typed error, and the next loadModel works
// in a fresh worker; NaN/Inf give a NumericalError; two generations at once and dispose()
// during a load or a generation are serialized or rejected with a typed error.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, writeFileSync, openSync, writeSync, ftruncateSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { evalWithLib, launch, TEST_PKG } from "./harness.mjs";
import { startServer } from "./server.mjs";
import { startDemoServer } from "../../www/serve.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = "/tests/fixtures/tiny-q8_0.gguf";

let browser, page, server, scratch, scratchServer;

/** Runs `fn(lib, arg)` in the page with the package imported (harness.mjs). */
function inPage(fn, arg, p = page) {
  return evalWithLib(p, fn, arg);
}

/** Tensor name → {offset (absolute), type} of a GGUF buffer (a minimal header walk). */
function tensorOffsets(b) {
  let p = 8;
  const u32 = () => ((p += 4), b.readUInt32LE(p - 4));
  const u64 = () => ((p += 8), Number(b.readBigUInt64LE(p - 8)));
  const str = () => {
    const n = u64();
    p += n;
    return b.toString("utf8", p - n, p);
  };
  const size = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (ty) => {
    if (ty === 8) str();
    else if (ty === 9) {
      const et = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skip(et);
    } else p += size[ty];
  };
  const nT = u64();
  const nKv = u64();
  let align = 32;
  for (let i = 0; i < nKv; i++) {
    const k = str();
    const ty = u32();
    if (k === "general.alignment") align = b.readUInt32LE(p);
    skip(ty);
  }
  const infos = [];
  for (let i = 0; i < nT; i++) {
    const name = str();
    const nd = u32();
    p += 8 * nd;
    const type = u32();
    infos.push({ name, type, rel: u64() });
  }
  const start = Math.ceil(p / align) * align;
  return Object.fromEntries(infos.map((t) => [t.name, { offset: start + t.rel, type: t.type }]));
}

before(async () => {
  server = await startServer({ root: ROOT });
  scratch = mkdtempSync(join(tmpdir(), "lw-robust-"));
  scratchServer = await startServer({ root: scratch });
  const good = readFileSync(join(ROOT, MODEL));
  const t = tensorOffsets(good);
  // a NaN block scale in a Q8_0 weight (f16 0x7E00 at the block start)
  const nanScale = Buffer.from(good);
  assert.equal(t["blk.1.ffn_up.weight"].type, 8, "Q8_0");
  nanScale.writeUInt16LE(0x7e00, t["blk.1.ffn_up.weight"].offset + 3 * 34);
  writeFileSync(join(scratch, "nan-scale.gguf"), nanScale);
  // an Inf in the output norm (F32, read whole, not scanned): every logit becomes non-finite
  const infNorm = Buffer.from(good);
  assert.equal(t["output_norm.weight"].type, 0, "F32");
  infNorm.writeFloatLE(Infinity, t["output_norm.weight"].offset + 4 * 5);
  writeFileSync(join(scratch, "inf-norm.gguf"), infNorm);
  // the campaign's allocation abort: one u8 array of 2^27 elements (a 128 MiB sparse file)
  const h = Buffer.alloc(64);
  let o = h.write("GGUF", 0, "latin1");
  o = h.writeUInt32LE(3, o);
  o = h.writeBigUInt64LE(0n, o);
  o = h.writeBigUInt64LE(1n, o);
  o = h.writeBigUInt64LE(3n, o);
  o += h.write("big", o, "latin1");
  o = h.writeUInt32LE(9, o);
  o = h.writeUInt32LE(0, o);
  o = h.writeBigUInt64LE(1n << 27n, o);
  const fd = openSync(join(scratch, "u8-array.gguf"), "w");
  writeSync(fd, h, 0, o, 0);
  ftruncateSync(fd, o + 2 ** 27 + 64);
  closeSync(fd);
  browser = await launch();
  page = await browser.page();
  await page.goto(`${server.origin}/tests/browser/page.html`);
});

after(async () => {
  if (process.exitCode && browser) console.log(browser.logs.slice(-40).join("\n"));
  await browser?.close();
  for (const s of [server, scratchServer]) await s?.close();
});

test("a 2^27-element metadata array (it used to trap the engine) is a typed error, in bounded wasm memory", async () => {
  const r = await inPage(
    async (lib, { url, good }) => {
      const out = {};
      try {
        await lib.loadModel(url, { cache: false });
        out.loaded = true;
      } catch (e) {
        out.error = { name: e.name, message: e.message };
      }
      const m = await lib.loadModel(good);
      const toks = [];
      for await (const c of m.generate([1, 2], { maxTokens: 3 })) toks.push(c.token);
      await m.dispose();
      out.after = toks.length;
      return out;
    },
    { url: `${scratchServer.origin}/u8-array.gguf`, good: `${server.origin}${MODEL}` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.error?.name, "InvalidModelError", JSON.stringify(r));
  assert.match(r.error.message, /missing metadata key/);
  assert.equal(r.after, 3);
  // on a page of its own (useWorker: false), the wasm memory the attempt took stays readable
  const p = await browser.context.newPage();
  await p.goto(`${server.origin}/tests/browser/page.html`);
  const m = await inPage(
    async (lib, { url }) => {
      try {
        await lib.loadModel(url, { cache: false, useWorker: false });
      } catch (e) {
        return { name: e.name, mem: lib.wasmMemoryBytes() };
      }
      return { loaded: true };
    },
    { url: `${scratchServer.origin}/u8-array.gguf` },
    p,
  );
  await p.close();
  assert.equal(m.name, "InvalidModelError", JSON.stringify(m));
  console.log(`wasm memory after the 2^27-element array: ${(m.mem / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(m.mem < 2 ** 30, `${m.mem} bytes of wasm memory`);
});

test("deliberate traps (panic, out of memory; sync and async) and a silent worker death reject with EngineCrashedError; the next loadModel works", async () => {
  const r = await inPage(
    async (lib, { url }) => {
      const out = {};
      const cases = [
        ["panic", "async"],
        ["panic", "sync"],
        ["oom", "async"],
        ["exit", "async"],
      ];
      for (const [kind, where] of cases) {
        const key = `${kind}-${where}`;
        const m = await lib.loadModel(url);
        const t0 = performance.now();
        try {
          await m._crashEngine(kind, where);
          out[key] = { resolved: true };
        } catch (e) {
          out[key] = { name: e.name, code: e.code, message: e.message, ms: performance.now() - t0 };
        }
        // the dead model rejects everything with the same typed error, quickly
        try {
          await m.tokenize("hi");
          out[key].after = "resolved";
        } catch (e) {
          out[key].after = e.name;
        }
        try {
          for await (const c of m.generate([1, 2], { maxTokens: 2 })) void c;
          out[key].gen = "resolved";
        } catch (e) {
          out[key].gen = e.name;
        }
        await m.dispose();
        out[key].mem = lib.wasmMemoryBytes();
        // a fresh worker
        const m2 = await lib.loadModel(url);
        const toks = [];
        for await (const c of m2.generate([1, 2, 3], { maxTokens: 4 })) toks.push(c.token);
        out[key].again = toks;
        await m2.dispose();
      }
      return out;
    },
    { url: `${server.origin}${MODEL}` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  const first = r["panic-async"].again;
  for (const k of ["panic-async", "panic-sync", "oom-async", "exit-async"]) {
    assert.equal(r[k].name, "EngineCrashedError", `${k}: ${JSON.stringify(r[k])}`);
    assert.equal(r[k].code, "engine_crashed");
    assert.equal(r[k].after, "EngineCrashedError", k);
    assert.equal(r[k].gen, "EngineCrashedError", k);
    assert.equal(r[k].mem, 0, `${k}: the dead worker's memory is no longer counted`);
    assert.deepEqual(r[k].again, first, `${k}: the next model generates as before`);
    assert.equal(first.length, 4);
  }
  assert.match(r["panic-async"].message, /unreachable|trap/i);
  assert.match(r["exit-async"].message, /stopped/);
});

test("NaN/Inf: a NaN block scale fails the load naming the tensor; non-finite logits fail the generation naming the position", async () => {
  const r = await inPage(
    async (lib, { base }) => {
      const out = {};
      try {
        await lib.loadModel(`${base}/nan-scale.gguf`, { cache: false });
      } catch (e) {
        out.scale = { name: e.name, message: e.message, typed: e instanceof lib.NumericalError };
      }
      const m = await lib.loadModel(`${base}/inf-norm.gguf`, { cache: false });
      try {
        for await (const c of m.generate([1, 2, 3], { maxTokens: 4 })) void c;
        out.logits = "no error";
      } catch (e) {
        out.logits = { name: e.name, message: e.message, typed: e instanceof lib.NumericalError };
      }
      // the model stays usable for calls that do not read logits
      out.tokenize = (await m.tokenize("hi")).length > 0;
      await m.dispose();
      return out;
    },
    { base: scratchServer.origin },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.scale?.name, "NumericalError", JSON.stringify(r));
  assert.ok(r.scale.typed);
  assert.match(r.scale.message, /blk\.1\.ffn_up\.weight/);
  assert.match(r.scale.message, /block 3/);
  assert.equal(r.logits?.name, "NumericalError", JSON.stringify(r));
  assert.ok(r.logits.typed);
  assert.match(r.logits.message, /position 2/);
  assert.match(r.logits.message, /corrupt/);
  assert.equal(r.tokenize, true);
});

test("two generate() calls at once are serialized; dispose during a generation or a load is a typed rejection", async () => {
  writeFileSync(join(scratch, "stall.gguf"), readFileSync(join(ROOT, "tests/fixtures/tiny-f32.gguf")));
  scratchServer.stallAfterBytes("/stall.gguf", 200_000);
  const r = await inPage(
    async (lib, { url, stall }) => {
      const out = {};
      for (const useWorker of [true, false]) {
        const o = (out[useWorker ? "worker" : "page"] = {});
        const m = await lib.loadModel(url, { useWorker });
        const alone = [];
        for await (const c of m.generate([5, 6, 7], { maxTokens: 6 })) alone.push(c.token);
        // two at once: each gets its own tokens, one after the other
        const order = [];
        const run = async (tag, prompt) => {
          const toks = [];
          for await (const c of m.generate(prompt, { maxTokens: 6 })) {
            toks.push(c.token);
            order.push(tag);
          }
          return toks;
        };
        const [a, b] = await Promise.all([run("a", [5, 6, 7]), run("b", [5, 6, 7])]);
        o.same = JSON.stringify(a) === JSON.stringify(alone) && JSON.stringify(b) === JSON.stringify(alone);
        o.serialized = order.join("") === "a".repeat(a.length) + "b".repeat(b.length);
        // dispose while a generation is under way (and its consumer paused)
        const it = m.generate([1, 2, 3], { maxTokens: 40 })[Symbol.asyncIterator]();
        await it.next();
        const queued = m.tokenize("x").then(
          () => "resolved",
          (e) => e.name,
        );
        await m.dispose();
        let err = null;
        try {
          for (;;) if ((await it.next()).done) break;
        } catch (e) {
          err = e.name;
        }
        o.genAfterDispose = err;
        o.queued = await queued;
        try {
          await m.tokenize("x");
        } catch (e) {
          o.afterDispose = e.name;
        }
        o.mem = lib.wasmMemoryBytes();
      }
      // abort during a load (the server stalls mid-file): typed, and the worker goes away
      const ctl = new AbortController();
      const p = lib.loadModel(stall, { signal: ctl.signal, cache: false });
      setTimeout(() => ctl.abort(), 1500);
      try {
        await p;
        out.load = "loaded";
      } catch (e) {
        out.load = e.name;
      }
      out.loadMem = lib.wasmMemoryBytes() - out.page.mem;
      const m = await lib.loadModel(url);
      out.afterLoad = (await m.tokenize("hello")).length;
      await m.dispose();
      return out;
    },
    { url: `${server.origin}${MODEL}`, stall: `${scratchServer.origin}/stall.gguf` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  for (const k of ["worker", "page"]) {
    const o = r[k];
    assert.ok(o.same, `${k}: both concurrent generations equal a lone one`);
    assert.ok(o.serialized, `${k}: the second started after the first ended`);
    // the paused generation ends with a DisposedError (or had already finished its tokens)
    assert.ok(o.genAfterDispose === "DisposedError" || o.genAfterDispose === null, `${k}: ${o.genAfterDispose}`);
    assert.equal(o.queued, "DisposedError", `${k}: a call queued behind the generation`);
    assert.equal(o.afterDispose, "DisposedError", k);
  }
  assert.equal(r.load, "AbortError");
  assert.equal(r.loadMem, 0, "the aborted load's worker is gone");
  assert.ok(r.afterLoad > 0);
});

test("a worker stuck in one call (test hook: hang) is terminated when an abort or dispose() gets no answer within stopTimeoutMs; the next load works", async () => {
  const r = await inPage(
    async (lib, { url }) => {
      const out = {};
      // abort: the call rejects with AbortError once the deadline passes, the model is dead
      const m = await lib.loadModel(url, { backend: "cpu", stopTimeoutMs: 1500 });
      const ctl = new AbortController();
      const stuck = m._crashEngine("hang", "sync", { ms: 120_000, signal: ctl.signal }).then(() => "resolved", (e) => e.name);
      await new Promise((res) => setTimeout(res, 300));
      const t0 = performance.now();
      ctl.abort();
      out.abort = await stuck;
      out.abortMs = performance.now() - t0;
      out.after = await m.tokenize("x").then(() => "ok", (e) => e.name);
      await m.dispose();
      // dispose() during a stuck call resolves; the call rejects with DisposedError
      const m2 = await lib.loadModel(url, { backend: "cpu" });
      const hang = m2._crashEngine("hang", "sync", { ms: 120_000 }).then(() => "resolved", (e) => e.name);
      await new Promise((res) => setTimeout(res, 300));
      const t1 = performance.now();
      await m2.dispose();
      out.disposeMs = performance.now() - t1;
      out.hang = await hang;
      // a generation queued behind the stuck call: its abort rejects it at once
      const m3 = await lib.loadModel(url, { backend: "cpu" });
      m3._crashEngine("hang", "sync", { ms: 120_000 }).catch(() => {});
      const ctl3 = new AbortController();
      const gen = (async () => {
        for await (const c of m3.generate("hello", { maxTokens: 4, signal: ctl3.signal })) void c;
      })().then(() => "done", (e) => e.name);
      await new Promise((res) => setTimeout(res, 300));
      const t2 = performance.now();
      ctl3.abort();
      out.queued = await Promise.race([gen, new Promise((res) => setTimeout(() => res("still waiting"), 3000))]);
      out.queuedMs = performance.now() - t2;
      await m3.dispose();
      // a fresh engine
      const m4 = await lib.loadModel(url, { backend: "cpu" });
      out.again = (await m4.tokenize("hello")).length;
      await m4.dispose();
      return out;
    },
    { url: `${server.origin}${MODEL}` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  console.log(`stuck worker: abort answered in ${r.abortMs.toFixed(0)} ms, dispose in ${r.disposeMs.toFixed(0)} ms`);
  assert.equal(r.abort, "AbortError");
  assert.ok(r.abortMs < 2000, `abort took ${r.abortMs} ms`);
  assert.equal(r.after, "EngineCrashedError", "the stuck engine is gone");
  assert.equal(r.hang, "DisposedError");
  assert.ok(r.disposeMs < 2000, `dispose took ${r.disposeMs} ms`);
  assert.equal(r.queued, "AbortError", JSON.stringify(r));
  assert.ok(r.queuedMs < 1000, `a queued generation's abort took ${r.queuedMs} ms`);
  assert.ok(r.again > 0);
});

/** The GGUF at `path` with its tokenizer.chat_template replaced by `template` (padded with a
 *  Jinja comment to the same length, so every offset stays where it was). */
function withTemplate(path, template) {
  const b = Buffer.from(readFileSync(path));
  const key = Buffer.from("tokenizer.chat_template");
  const at = b.indexOf(key);
  assert.ok(at > 0 && Number(b.readBigUInt64LE(at - 8)) === key.length, "the fixture has a chat template");
  let p = at + key.length;
  assert.equal(b.readUInt32LE(p), 8, "a string");
  const len = Number(b.readBigUInt64LE(p + 4));
  p += 12;
  const pad = len - Buffer.byteLength(template) - 5;
  assert.ok(pad >= 0, `the crafted template fits in the fixture's ${len} bytes`);
  b.write(`${template}{#${" ".repeat(pad)}#}`, p, "utf8");
  return b;
}

test("hostile chat templates (nested loops, string doubling, messages in a loop): the call rejects or its abort lands within 2 s, and the next load works", { timeout: 180_000 }, async () => {
  const TEMPLATES = {
    loops: "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    doubling: '{% set s = namespace(v="xxxxxxxx") %}{% for i in range(64) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}',
    messages: "{% for i in range(100000) %}{% for j in range(100000) %}{{ messages }}{% endfor %}{% endfor %}",
  };
  for (const [k, t] of Object.entries(TEMPLATES)) writeFileSync(join(scratch, `template-${k}.gguf`), withTemplate(join(ROOT, MODEL), t));
  const r = await inPage(
    async (lib, { base, names, good }) => {
      const out = {};
      for (const name of names) {
        // string doubling traps the wasm instance (an allocation over the heap budget aborts):
        // in a worker that is an EngineCrashedError and a fresh worker next time; on the page it
        // would end the page's engine for good, so it runs in the worker only
        for (const useWorker of name === "doubling" ? [true] : [true, false]) {
          const m = await lib.loadModel(`${base}/template-${name}.gguf`, { cache: false, useWorker });
          const ctl = new AbortController();
          const t0 = performance.now();
          // the abort is there for a worker that would not stop; fuel should end the render first
          setTimeout(() => ctl.abort(), 1000);
          const settled = await m.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }, { signal: ctl.signal })
            .then(() => ({ name: "no error" }), (e) => ({ name: e.name, message: e.message }));
          out[`${name}, ${useWorker ? "worker" : "page"}`] = { ...settled, ms: performance.now() - t0 };
          await m.dispose();
        }
      }
      const again = await lib.loadModel(good, { cache: false });
      out.again = (await again.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2 })).choices.length;
      await again.dispose();
      return out;
    },
    { base: scratchServer.origin, names: Object.keys(TEMPLATES), good: `${server.origin}${MODEL}` },
  );
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  for (const [k, o] of Object.entries(r)) {
    if (k === "again") continue;
    console.log(`template ${k}: ${o.name} after ${o.ms.toFixed(0)} ms: ${o.message?.slice(0, 120)}`);
    const typed = ["InvalidModelError", "InvalidArgumentError", "AbortError", ...(k.endsWith("worker") ? ["EngineCrashedError"] : [])];
    assert.ok(typed.includes(o.name), `${k}: ${JSON.stringify(o)}`);
    if (o.name === "InvalidModelError") assert.match(o.message, /chat_template/, k);
    assert.ok(o.ms < 3000, `${k}: settled after ${o.ms} ms`);
  }
  assert.equal(r.again, 1, "the next load works");
});

// Last: it kills this page's own wasm instance for good.
test("on the page (useWorker: false) a trap rejects with EngineCrashedError, and later page loads say why", async () => {
  const p = await browser.context.newPage();
  await p.goto(`${server.origin}/tests/browser/page.html`);
  const r = await inPage(
    async (lib, { url }) => {
      const out = {};
      const m = await lib.loadModel(url, { useWorker: false });
      try {
        await m._crashEngine("panic", "async");
      } catch (e) {
        out.crash = e.name;
      }
      try {
        await m.tokenize("x");
      } catch (e) {
        out.after = e.name;
      }
      try {
        await lib.loadModel(url, { useWorker: false });
      } catch (e) {
        out.reload = { name: e.name, message: e.message };
      }
      const w = await lib.loadModel(url);
      out.worker = (await w.tokenize("hello")).length;
      await w.dispose();
      return out;
    },
    { url: `${server.origin}${MODEL}` },
    p,
  );
  await p.close();
  assert.ok(!r.thrown, JSON.stringify(r.thrown));
  assert.equal(r.crash, "EngineCrashedError");
  assert.equal(r.after, "EngineCrashedError");
  assert.equal(r.reload?.name, "EngineCrashedError");
  assert.match(r.reload.message, /worker/);
  assert.ok(r.worker > 0, "a worker engine still loads on that page");
});

test("demo: a lost device and a crashed engine show their message and a working 'Reload the model'", { timeout: 300_000 }, async () => {
  const demo = await startDemoServer({ port: 0, pkgDir: TEST_PKG }); // the test build: _crashEngine
  const p = await browser.context.newPage();
  try {
    const url = `${server.origin}${MODEL}`;
    // device loss needs a device: ask for WebGPU (auto takes the CPU on SwiftShader)
    await p.goto(`${demo.url}?test-hooks&backend=webgpu&model=${encodeURIComponent(url)}`);
    const ready = () =>
      p.waitForFunction(() => /ready/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 120_000 });
    const reply = async () => {
      const before = await p.locator('[data-testid="message-assistant"]').count();
      await p.fill("#max-tokens", "4");
      await p.fill('[data-testid="prompt-input"]', "Hello");
      await p.press('[data-testid="prompt-input"]', "Enter");
      await p.waitForFunction(
        (n) => document.querySelectorAll('[data-testid="message-assistant"] .meta').length > n || !document.getElementById("error-box").hidden,
        before,
        { timeout: 120_000 },
      );
    };
    for (const [hook, message] of [
      ["_loseDevice()", /GPU was reset/],
      ['_crashEngine("panic")', /engine stopped/i],
    ]) {
      await ready();
      // break the engine, then ask: the reply fails with the error box and its action
      await p.evaluate((h) => {
        const m = window.__demo.model;
        return new Function("m", `return m.${h}.catch(() => {})`)(m);
      }, hook);
      await reply();
      const box = await p.textContent("#error-box");
      assert.match(box, message, box);
      assert.match(await p.textContent('[data-testid="status"]'), /load the model again/i);
      await p.click("#error-box button:has-text('Reload the model')");
      await ready();
      await reply();
      assert.equal(await p.$eval("#error-box", (e) => e.hidden), true, "no error after the reload");
    }
  } finally {
    await p.close();
    await demo.close();
  }
});
