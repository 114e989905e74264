// pkg/loader.js in the real browser (headless Chromium): ranged reads, Blob sources, the OPFS and
// Cache API caches, resume after a server crash, corrupt cache chunks, HTTP/CORS/abort errors,
// range-less servers, quota fallback and a module worker.
//   node --test tests/browser/loader.test.mjs
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { launch } from "./harness.mjs";
import { startServer } from "./server.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const Q8 = "/tests/fixtures/tiny-q8_0.gguf"; // 515 328 bytes: 8 chunks of 64 KiB
const F16 = "/tests/fixtures/tiny-f16.gguf"; // 960 736 bytes
const F32 = "/tests/fixtures/tiny-f32.gguf"; // 1 911 008 bytes
const CS = 64 << 10;
const bytesOf = (p) => readFileSync(ROOT + p);
const sha = (b) => createHash("sha256").update(b).digest("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let A; // page origin: CORS + Range
let B; // no CORS (cross-origin from A)
let C; // ignores Range
let D; // crashed and restarted by tests
let E; // ETag controlled by the test
let F; // another origin, for redirects
let etag = '"v1"';
let browser;
let page;

before(async () => {
  [A, B, C, D, E, F] = await Promise.all([
    startServer({ root: ROOT }),
    startServer({ root: ROOT, cors: false }),
    startServer({ root: ROOT, range: false }),
    startServer({ root: ROOT }),
    startServer({ root: ROOT, headers: (p) => (p.endsWith(".gguf") ? { ETag: etag } : {}) }),
    startServer({ root: ROOT }),
  ]);
  browser = await launch();
  page = await browser.page();
  await page.goto(`${A.origin}/pkg/`);
  await page.evaluate(setupPage);
});

after(async () => {
  await browser?.close();
  await Promise.all([A, B, C, D, E, F].map((s) => s?.close()));
});

/** Runs in the page: globalThis.L (the loader) and globalThis.T (test helpers). */
async function setupPage() {
  const L = await import("/pkg/loader.js");
  const hex = async (u8) =>
    [...new Uint8Array(await crypto.subtle.digest("SHA-256", u8))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const plain = (e) => ({ name: e?.name, code: e?.code, status: e?.status, message: String(e?.message ?? e) });
  // Engine-like reads: a header, then odd-sized sequential reads, with a few small random ones
  // (some backwards) halfway through. Returns the SHA-256 of the whole file and of each random read.
  async function readAll(src, step = 100003) {
    const S = src.size;
    const all = new Uint8Array(S);
    const head = Math.min(S, 200000);
    all.set(await src.read(0, head), 0);
    const randoms = [];
    let didRandom = false;
    for (let off = head; off < S; off += step) {
      const len = Math.min(step, S - off);
      all.set(await src.read(off, len), off);
      if (!didRandom && off > S / 2) {
        didRandom = true;
        for (const [o, n] of [[S - 7, 7], [3, 5], [Math.floor(S / 3), 1000], [70000, 131072], [S, 0]]) {
          const b = await src.read(o, n);
          if (b.length !== n) throw new Error(`read(${o}, ${n}) gave ${b.length} bytes`);
          randoms.push({ o, n, hex: await hex(b) });
        }
      }
    }
    return { hex: await hex(all), randoms };
  }
  async function run(source, opts = {}) {
    const events = [];
    const src = await L.openSource(source, { ...opts, onDownload: (e) => events.push(e) });
    try {
      const r = await readAll(src, opts.step);
      return { ...r, size: src.size, name: src.name, url: src.url, fromCache: src.fromCache, stats: { ...src.stats },
        cacheError: src.cacheError && plain(src.cacheError), events };
    } finally {
      await src.close();
    }
  }
  async function tryRun(source, opts = {}) {
    const t0 = performance.now();
    try {
      await run(source, opts);
      return { ok: true, ms: performance.now() - t0 };
    } catch (e) {
      return { error: plain(e), ms: performance.now() - t0 };
    }
  }
  /** The OPFS directory of a cached URL. */
  async function opfsDir(url) {
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle("llama-webgpu-cache");
    for await (const [, h] of top.entries()) {
      if (h.kind !== "directory") continue;
      const meta = JSON.parse(await (await (await h.getFileHandle("meta.json")).getFile()).text());
      if (meta.url === url) return h;
    }
    return null;
  }
  /** Open, read everything as the engine would, verify (the SHA-256), close: {sha256, ms} or {error, ms}. */
  async function check(source, opts = {}) {
    const t0 = performance.now();
    let src = null;
    try {
      src = await L.openSource(source, opts);
      await readAll(src);
      await src.verify();
      return { sha256: src.sha256, fromCache: src.fromCache, ms: performance.now() - t0 };
    } catch (e) {
      return { error: plain(e), ms: performance.now() - t0 };
    } finally {
      await src?.close();
    }
  }
  globalThis.L = L;
  globalThis.T = { hex, plain, readAll, run, tryRun, opfsDir, check };
}

/** Checks a page run against the file on disk. */
function assertBytes(r, path) {
  const file = bytesOf(path);
  assert.equal(r.size, file.length, "size");
  assert.equal(r.hex, sha(file), "whole file bytes");
  assert.ok(r.randoms.length >= 4, "random reads happened");
  for (const { o, n, hex } of r.randoms) assert.equal(hex, sha(file.subarray(o, o + n)), `read(${o}, ${n})`);
}

const run = (url, opts) => page.evaluate(([u, o]) => T.run(u, o), [url, opts]);
const tryRun = (url, opts) => page.evaluate(([u, o]) => T.tryRun(u, o), [url, opts]);
const list = () => page.evaluate(() => L.listCachedModels());
const gets = (srv, path) => srv.stats.requests.filter((q) => q.path === path && q.method === "GET");

test("ranged reads return the file's bytes (64 KiB chunks, one Range request per chunk)", async () => {
  A.resetStats();
  const url = `${A.origin}${Q8}?t=ranged`;
  const r = await run(url, { chunkSize: CS, cache: false });
  assertBytes(r, Q8);
  assert.equal(r.name, "tiny-q8_0.gguf");
  const size = r.size;
  const reqs = gets(A, Q8);
  assert.ok(reqs.length >= Math.ceil(size / CS), `one request per chunk at least (${reqs.length})`);
  for (const q of reqs) {
    assert.equal(q.status, 206);
    const [a, b] = q.range.replace("bytes=", "").split("-").map(Number);
    assert.equal(a % CS, 0, `chunk-aligned start ${q.range}`);
    assert.ok(b - a + 1 <= CS, `at most one chunk ${q.range}`);
  }
  // Uncached, the backward random reads (≤ 6 chunks) may fetch again, nothing more.
  assert.ok(A.stats.bytes[Q8] >= size && A.stats.bytes[Q8] <= size + 8 * CS, `bytes served ${A.stats.bytes[Q8]}`);
  // onDownload: monotonic, ends at total.
  assert.ok(r.events.length > 3);
  for (let i = 1; i < r.events.length; i++) assert.ok(r.events[i].loaded >= r.events[i - 1].loaded, "monotonic");
  assert.deepEqual(r.events.at(-1), { loaded: size, total: size });
  assert.equal(r.fromCache, false);
  // Reads past the end are rejected.
  const e = await page.evaluate(async (u) => {
    const s = await L.openSource(u, { chunkSize: 65536, cache: false });
    try {
      await s.read(s.size - 2, 4);
      return null;
    } catch (err) {
      return T.plain(err);
    } finally {
      await s.close();
    }
  }, url);
  assert.equal(e?.code, "invalid_argument");
  // Purely sequential, unaligned reads: every chunk is requested exactly once.
  A.resetStats();
  const seq = await page.evaluate(async (u) => {
    const s = await L.openSource(u, { chunkSize: 65536, cache: false });
    const all = new Uint8Array(s.size);
    for (let o = 0; o < s.size; o += 30001) all.set(await s.read(o, Math.min(30001, s.size - o)), o);
    await s.close();
    return T.hex(all);
  }, url);
  assert.equal(seq, sha(bytesOf(Q8)));
  assert.equal(A.stats.bytes[Q8], size);
  const ranges = gets(A, Q8).map((q) => q.range);
  assert.equal(new Set(ranges).size, ranges.length, "no chunk fetched twice");
  assert.equal(ranges.length, Math.ceil(size / CS));
  // Read-ahead: reading inside chunk 2 starts fetching chunk 3 before anyone asks for it.
  A.resetStats();
  await page.evaluate(async (u) => {
    const s = await L.openSource(u, { chunkSize: 65536, cache: false });
    await s.read(2 * 65536 + 10, 100);
    await new Promise((r) => setTimeout(r, 300));
    await s.close();
  }, url);
  assert.ok(gets(A, Q8).some((q) => q.range === `bytes=${3 * CS}-${4 * CS - 1}`), JSON.stringify(gets(A, Q8)));
});

test("Blob and File sources", async () => {
  const r = await page.evaluate(async (path) => {
    const blob = await (await fetch(path)).blob();
    const a = await T.run(blob, {});
    const b = await T.run(new File([blob], "model.gguf"), {});
    const bad = await T.tryRun(new Blob(["<!doctype html><html></html>"]), {});
    return { a, b, bad };
  }, Q8);
  assertBytes(r.a, Q8);
  assertBytes(r.b, Q8);
  assert.equal(r.a.url, null);
  assert.equal(r.b.name, "model.gguf");
  assert.equal(r.a.events.at(-1).loaded, r.a.size);
  assert.equal(r.bad.error?.code, "invalid_model");
});

test("second open of a URL is served from the OPFS cache with 0 model bytes over the network", async () => {
  A.resetStats();
  const url = `${A.origin}${Q8}?t=opfs`;
  const first = await run(url, { chunkSize: CS });
  assertBytes(first, Q8);
  assert.equal(first.fromCache, false);
  assert.ok(A.stats.bytes[Q8] >= first.size);
  A.resetStats();
  // Another chunkSize on purpose: the cached grid is reused.
  const second = await run(url, { chunkSize: 1 << 20 });
  assertBytes(second, Q8);
  assert.equal(second.fromCache, true);
  assert.equal(second.stats.networkBytes, 0);
  assert.equal(A.stats.bytes[Q8] ?? 0, 0, "no model bytes served");
  assert.deepEqual(gets(A, Q8), [], "no GET for the model");
  assert.equal(second.events.at(-1).loaded, second.size);
  const entry = (await list()).find((m) => m.url === url);
  assert.deepEqual({ ...entry, lastUsed: 0 }, { url, size: first.size, cachedBytes: first.size, complete: true, lastUsed: 0, backend: "opfs" });
  const files = await page.evaluate(async (u) => {
    const d = await T.opfsDir(u);
    const names = [];
    for await (const [n] of d.entries()) names.push(n);
    return names.sort();
  }, url);
  assert.deepEqual(files, ["0.bin", "1.bin", "2.bin", "3.bin", "4.bin", "5.bin", "6.bin", "7.bin", "meta.json"]);
});

test("Cache API backend: cached and served from cache too", async () => {
  A.resetStats();
  const url = `${A.origin}${Q8}?t=cacheapi`;
  assertBytes(await run(url, { chunkSize: CS, cache: "cache-api" }), Q8);
  A.resetStats();
  const second = await run(url, { chunkSize: CS, cache: "cache-api" });
  assertBytes(second, Q8);
  assert.equal(second.fromCache, true);
  assert.equal(A.stats.bytes[Q8] ?? 0, 0);
  const entry = (await list()).find((m) => m.url === url);
  assert.equal(entry?.backend, "cache-api");
  assert.equal(entry?.complete, true);
});

test("server killed mid-download and back 1.5 s later: the load resumes at the failed chunk", async () => {
  D.resetStats();
  const url = `${D.origin}${F32}?t=crash`;
  const size = bytesOf(F32).length;
  D.failAfterBytes(F32, 800000);
  const t0 = Date.now();
  const p = run(url, { chunkSize: CS });
  while (D.listening) await sleep(20);
  await sleep(1500);
  await D.restart();
  const r = await p;
  assertBytes(r, F32);
  const served = D.stats.bytes[F32];
  assert.ok(served < 1.3 * size, `resumed, not restarted: ${served} bytes served for a ${size}-byte file`);
  assert.ok(Date.now() - t0 > 1500);
});

test("an interrupted download resumes on the next open from the cached chunks", async () => {
  D.resetStats();
  const url = `${D.origin}${F16}?t=resume`;
  const size = bytesOf(F16).length;
  D.failAfterBytes(F16, 500000);
  const fail = await tryRun(url, { chunkSize: CS, retries: 0 });
  assert.equal(fail.error?.code, "network", JSON.stringify(fail));
  await D.restart();
  const partial = (await list()).find((m) => m.url === url);
  assert.equal(partial?.complete, false);
  assert.ok(partial.cachedBytes >= 5 * CS && partial.cachedBytes < size, `partial cache ${partial.cachedBytes}`);
  const before = D.stats.bytes[F16];
  const r = await run(url, { chunkSize: CS });
  assertBytes(r, F16);
  const again = D.stats.bytes[F16] - before;
  assert.ok(again <= size - partial.cachedBytes + CS, `second open fetched ${again} bytes, cache had ${partial.cachedBytes}`);
  assert.equal((await list()).find((m) => m.url === url)?.complete, true);
});

test("a corrupt or truncated cached chunk is evicted and fetched again", async () => {
  const url = `${A.origin}${Q8}?t=corrupt`;
  assertBytes(await run(url, { chunkSize: CS }), Q8);
  await page.evaluate(async (u) => {
    const d = await T.opfsDir(u);
    const flip = async (name, keep) => {
      const fh = await d.getFileHandle(name);
      const b = new Uint8Array(await (await fh.getFile()).arrayBuffer());
      b[1000] ^= 0xff;
      const w = await fh.createWritable();
      await w.write(keep ? b : b.subarray(0, b.length >> 1));
      await w.close();
    };
    await flip("3.bin", true); // same size, one byte changed
    await flip("5.bin", false); // truncated
  }, url);
  A.resetStats();
  const r = await run(url, { chunkSize: CS });
  assertBytes(r, Q8);
  assert.equal(r.fromCache, false);
  assert.equal(A.stats.bytes[Q8], 2 * CS, "exactly the two bad chunks came from the network");
  assert.deepEqual(gets(A, Q8).map((q) => q.range).sort(), [`bytes=${3 * CS}-${4 * CS - 1}`, `bytes=${5 * CS}-${6 * CS - 1}`]);
  A.resetStats();
  const third = await run(url, { chunkSize: CS });
  assertBytes(third, Q8);
  assert.equal(third.fromCache, true, "re-cached");
  assert.equal(A.stats.bytes[Q8] ?? 0, 0);
});

test("file changed on the server: a stale cache (partial or complete) is dropped", async () => {
  const url = `${E.origin}${Q8}`;
  const size = bytesOf(Q8).length;
  etag = '"v1"';
  E.failAfterBytes(Q8, 200000);
  assert.ok((await tryRun(url, { chunkSize: CS, retries: 0 })).error);
  await E.restart();
  assert.equal((await list()).find((m) => m.url === url)?.complete, false);
  etag = '"v2"';
  E.resetStats();
  assertBytes(await run(url, { chunkSize: CS }), Q8);
  assert.ok(E.stats.bytes[Q8] >= size, `partial cache of v1 not reused (${E.stats.bytes[Q8]})`);
  etag = '"v3"';
  E.resetStats();
  const r = await run(url, { chunkSize: CS });
  assertBytes(r, Q8);
  assert.equal(r.fromCache, false);
  assert.ok(E.stats.bytes[Q8] >= size, "complete cache of v2 revalidated and dropped");
  E.resetStats();
  assert.equal((await run(url, { chunkSize: CS })).fromCache, true);
});

test("HTTP 404 → HttpError 404, not retried; 500 retried then HttpError; 503 twice then success", async () => {
  A.resetStats();
  const r404 = await tryRun(`${A.origin}/tests/fixtures/missing.gguf`, { chunkSize: CS });
  assert.equal(r404.error?.code, "http");
  assert.equal(r404.error?.status, 404);
  assert.equal(r404.error?.name, "HttpError");
  assert.equal(gets(A, "/tests/fixtures/missing.gguf").length, 1, "a 404 is not retried");

  A.failStatus(F16, 500);
  const r500 = await tryRun(`${A.origin}${F16}?t=500`, { chunkSize: CS, retries: 2 });
  assert.equal(r500.error?.status, 500);
  assert.equal(gets(A, F16).length, 3, "1 try + 2 retries");
  A.failStatus(F16, 503, 2);
  assertBytes(await run(`${A.origin}${F16}?t=503`, { chunkSize: CS, cache: false }), F16);
});

test("cross-origin server without CORS → NetworkError that names CORS (and fails fast)", async () => {
  const r = await tryRun(`${B.origin}${Q8}`, { chunkSize: CS });
  assert.equal(r.error?.code, "network", JSON.stringify(r));
  assert.match(r.error.message, /CORS/);
  assert.ok(r.ms < 3000, `took ${r.ms} ms`);
});

test("non-GGUF content → InvalidModelError, nothing cached", async () => {
  const html = await tryRun(`${A.origin}/pkg/`, { chunkSize: CS }); // HTML page, no Range
  assert.equal(html.error?.code, "invalid_model", JSON.stringify(html));
  assert.match(html.error.message, /HTML/);
  const js = await tryRun(`${A.origin}/pkg/errors.js`, { chunkSize: CS }); // ranged
  assert.equal(js.error?.code, "invalid_model");
  const urls = (await list()).map((m) => m.url);
  assert.ok(!urls.includes(`${A.origin}/pkg/`) && !urls.includes(`${A.origin}/pkg/errors.js`));
  const dirs = await page.evaluate(async () => {
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle("llama-webgpu-cache");
    let n = 0;
    for await (const _ of top.keys()) n++;
    return n;
  });
  assert.equal(dirs, (await list()).filter((m) => m.backend === "opfs").length, "no stray cache directory");
});

test("a server that ignores Range still works (sequential body, cached as it streams)", async () => {
  C.resetStats();
  const url = `${C.origin}${F16}`;
  const size = bytesOf(F16).length;
  assertBytes(await run(url, { chunkSize: CS, cache: false }), F16);
  assert.ok(gets(C, F16).every((q) => q.status === 200));
  // The backward random reads re-request from the start, but the file is never held whole.
  assert.ok(C.stats.bytes[F16] >= size);
  C.resetStats();
  assertBytes(await run(url, { chunkSize: CS }), F16);
  C.resetStats();
  const cached = await run(url, { chunkSize: CS });
  assert.equal(cached.fromCache, true);
  assert.equal(C.stats.bytes[F16] ?? 0, 0);
});

test("offline: a complete cache loads with the server down", async () => {
  const url = `${D.origin}${Q8}?t=offline`;
  assertBytes(await run(url, { chunkSize: CS }), Q8);
  await D.kill();
  try {
    const r = await run(url, { chunkSize: CS });
    assertBytes(r, Q8);
    assert.equal(r.fromCache, true);
  } finally {
    await D.restart();
  }
});

test("abort: before open, during a stalled download, during retry backoff", async () => {
  const pre = await page.evaluate(async (u) => {
    try {
      await L.openSource(u, { signal: AbortSignal.abort() });
    } catch (e) {
      return T.plain(e);
    }
  }, `${A.origin}${Q8}?t=abort0`);
  assert.equal(pre?.code, "aborted");

  A.stallAfterBytes(F32, 300000);
  const stalled = await page.evaluate(async (u) => {
    const ac = new AbortController();
    const p = T.tryRun(u, { chunkSize: 65536, signal: ac.signal, cache: false });
    // Wait until the read is stuck, then abort.
    await new Promise((r) => setTimeout(r, 1000));
    const t = performance.now();
    ac.abort();
    const r = await p;
    return { ...r, after: performance.now() - t };
  }, `${A.origin}${F32}?t=abort1`);
  assert.equal(stalled.error?.code, "aborted", JSON.stringify(stalled));
  assert.ok(stalled.after < 500, `abort took ${stalled.after} ms`);

  await D.kill();
  try {
    const backoff = await page.evaluate(async (u) => {
      const ac = new AbortController();
      const p = T.tryRun(u, { chunkSize: 65536, signal: ac.signal });
      setTimeout(() => ac.abort(), 1200);
      return p;
    }, `${D.origin}${Q8}?t=abort2`);
    assert.equal(backoff.error?.code, "aborted", JSON.stringify(backoff));
    assert.ok(backoff.ms < 1700, `took ${backoff.ms} ms`);
  } finally {
    await D.restart();
  }
});

test("quota too small → loads uncached with a QuotaExceededError on cacheError", async () => {
  const url = `${A.origin}${Q8}?t=quota`;
  const r = await page.evaluate(async (u) => {
    navigator.storage.estimate = async () => ({ quota: 100000, usage: 50000 });
    try {
      return await T.run(u, { chunkSize: 65536 });
    } finally {
      delete navigator.storage.estimate;
    }
  }, url);
  assertBytes(r, Q8);
  assert.equal(r.cacheError?.code, "quota_exceeded");
  assert.equal((await list()).find((m) => m.url === url), undefined, "nothing cached");
});

test("works inside a module Web Worker", async () => {
  const url = `${A.origin}${Q8}?t=worker`;
  const r = await page.evaluate(async ([origin, u]) => {
    const code = `
      const L = await import(${JSON.stringify(origin + "/pkg/loader.js")});
      const src = await L.openSource(${JSON.stringify(u)}, { chunkSize: 65536 });
      const all = new Uint8Array(src.size);
      for (let o = 0; o < src.size; o += 99999) all.set(await src.read(o, Math.min(99999, src.size - o)), o);
      await src.close();
      const d = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
      postMessage({ hex: [...d].map((b) => b.toString(16).padStart(2, "0")).join(""), cached: (await L.listCachedModels()).some((m) => m.url === ${JSON.stringify(u)} && m.complete) });`;
    const w = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })), { type: "module" });
    return await new Promise((res, rej) => {
      w.onmessage = (e) => res(e.data);
      w.onerror = (e) => rej(new Error(e.message));
    }).finally(() => w.terminate());
  }, [A.origin, url]);
  assert.equal(r.hex, sha(bytesOf(Q8)));
  assert.equal(r.cached, true);
});

test("listCachedModels, deleteCachedModel, clearModelCache", async () => {
  const url = `${A.origin}${Q8}?t=opfs`; // cached by an earlier test
  const before = await list();
  assert.ok(before.some((m) => m.url === url && m.complete));
  assert.equal(await page.evaluate((u) => L.deleteCachedModel(u), url), true);
  const afterDel = await list();
  assert.ok(!afterDel.some((m) => m.url === url));
  assert.equal(afterDel.length, before.length - 1);
  A.resetStats();
  const r = await run(url, { chunkSize: CS });
  assert.equal(r.fromCache, false);
  assert.ok(A.stats.bytes[Q8] >= r.size, "deleted → downloaded again");
  await page.evaluate(() => L.clearModelCache());
  assert.deepEqual(await list(), []);
});

const check = (url, opts) => page.evaluate(([u, o]) => T.check(u, o), [url, opts]);

test("a lying server gets an IntegrityError that says why within 2 s, not retried: short body, wrong Content-Range, gzip, truncation, another origin", async () => {
  const file = bytesOf(Q8);
  const size = file.length;
  // each lies from chunk 1 on (chunk 0, the header, is served honestly)
  const cases = {
    "short body": [/ended after 65535 bytes/, ({ res, start, end, status, headers }) => {
      const body = file.subarray(start, end); // one byte short, with a Content-Length to match
      res.writeHead(status, { ...headers, "Content-Length": body.length });
      res.end(body);
      return true;
    }],
    "Content-Range of other bytes": [/answered bytes 65537-131072 to a request for bytes 65536-131071/, ({ res, start, end, status, headers }) => {
      res.writeHead(status, { ...headers, "Content-Range": `bytes ${start + 1}-${end + 1}/${size}` });
      res.end(file.subarray(start + 1, end + 2));
      return true;
    }],
    gzip: [/Content-Encoding/, ({ res, start, end, status, headers }) => {
      res.writeHead(status, { ...headers, "Content-Encoding": "gzip" });
      res.end(file.subarray(start, end + 1));
      return true;
    }],
    truncation: [/breaks off after \d+ of 65536 bytes, the same way twice/, ({ res, start, end, status, headers }) => {
      res.writeHead(status, headers);
      res.write(file.subarray(start, start + 20000), () => setTimeout(() => res.destroy(), 50));
      return true;
    }],
    "another origin": [/came from http:\/\/127\.0\.0\.1:\d+ \(redirected\), earlier chunks from/, ({ res, start }) => {
      res.writeHead(302, { Location: `${F.origin}${Q8}`, "Access-Control-Allow-Origin": "*" });
      res.end();
      return true;
    }],
  };
  // the other origin has other bytes under the same ETag
  F.intercept(Q8, ({ res, start, end, status, headers }) => {
    const body = Buffer.from(file.subarray(start, end + 1));
    body[0] ^= 0xff;
    const etag = `"${size.toString(16)}-0"`;
    res.writeHead(status, { ...headers, ETag: etag });
    res.end(body);
    return true;
  });
  try {
    for (const [name, [message, lie]] of Object.entries(cases)) {
      A.resetStats();
      A.intercept(Q8, (o) => (o.start === 0 ? false : lie(o)));
      const r = await check(`${A.origin}${Q8}?t=lie-${encodeURIComponent(name)}`, { chunkSize: CS, cache: false });
      A.intercept(Q8, null);
      assert.equal(r.error?.name, "IntegrityError", `${name}: ${JSON.stringify(r)}`);
      assert.equal(r.error.code, "integrity");
      assert.match(r.error.message, message, name);
      assert.ok(r.ms < 2000, `${name}: failed after ${r.ms.toFixed(0)} ms`);
      const tries = gets(A, Q8).filter((q) => q.range === `bytes=${CS}-${2 * CS - 1}`).length;
      assert.ok(tries <= (name === "truncation" || name === "gzip" ? 2 : 1), `${name}: chunk 1 asked ${tries} times`);
    }
  } finally {
    A.intercept(Q8, null);
    F.intercept(Q8, null);
  }
});

test("sha256: verified while streaming, kept with the cached copy; a mismatch (or other bytes under the same headers) is an IntegrityError and drops the cache", async () => {
  const file = bytesOf(Q8);
  const good = sha(file);
  const bad = sha(Buffer.from("not the model"));
  // right digest: verified, and recorded in meta.json
  const url = `${A.origin}${Q8}?t=sha-good`;
  const first = await check(url, { chunkSize: CS, sha256: good.toUpperCase() });
  assert.deepEqual({ sha256: first.sha256, fromCache: first.fromCache }, { sha256: good, fromCache: false });
  const meta = await page.evaluate(async (u) => JSON.parse(await (await (await (await T.opfsDir(u)).getFileHandle("meta.json")).getFile()).text()), url);
  assert.equal(meta.sha256, good, "the digest is kept with the cache entry");
  const second = await check(url, { chunkSize: CS, sha256: good });
  assert.deepEqual({ sha256: second.sha256, fromCache: second.fromCache }, { sha256: good, fromCache: true });
  // the complete cached copy against another digest: refused, and dropped
  const other = await check(url, { chunkSize: CS, sha256: bad });
  assert.equal(other.error?.name, "IntegrityError", JSON.stringify(other));
  assert.match(other.error.message, new RegExp(`SHA-256 of the downloaded file is ${good}, not ${bad}`));
  assert.equal((await list()).find((m) => m.url === url), undefined, "the cached copy was dropped");
  // a wrong digest while downloading; and a body with one byte changed under right headers
  const wrong = await check(`${A.origin}${Q8}?t=sha-bad`, { chunkSize: CS, sha256: bad });
  assert.equal(wrong.error?.name, "IntegrityError");
  assert.equal((await list()).find((m) => m.url === `${A.origin}${Q8}?t=sha-bad`), undefined);
  A.intercept(Q8, ({ res, start, end, status, headers }) => {
    if (start !== 3 * CS) return false;
    const body = Buffer.from(file.subarray(start, end + 1));
    body[100] ^= 1;
    res.writeHead(status, headers);
    res.end(body);
    return true;
  });
  try {
    const flipped = await check(`${A.origin}${Q8}?t=sha-flip`, { chunkSize: CS, sha256: good, cache: false });
    assert.equal(flipped.error?.name, "IntegrityError", JSON.stringify(flipped));
    assert.match(flipped.error.message, /SHA-256 of the downloaded file is [0-9a-f]{64}, not/);
  } finally {
    A.intercept(Q8, null);
  }
  const malformed = await check(`${A.origin}${Q8}?t=sha-malformed`, { sha256: "abc" });
  assert.equal(malformed.error?.name, "InvalidArgumentError");
  assert.match(malformed.error.message, /sha256 must be 64 hex digits/);
});

test("a SHA-256 in the server's ETag or x-linked-etag is verified without being asked", async () => {
  const file = bytesOf(Q8);
  const good = sha(file);
  for (const header of ["ETag", "X-Linked-Etag"]) {
    for (const [digest, ok] of [[good, true], [sha(Buffer.from("x")), false]]) {
      A.intercept(Q8, ({ headers }) => {
        headers[header] = `"${digest}"`;
        return false;
      });
      try {
        const r = await check(`${A.origin}${Q8}?t=etag-${header}-${ok}`, { chunkSize: CS, cache: false });
        if (ok) assert.equal(r.sha256, good, `${header}: ${JSON.stringify(r)}`);
        else assert.equal(r.error?.name, "IntegrityError", `${header}: ${JSON.stringify(r)}`);
      } finally {
        A.intercept(Q8, null);
      }
    }
  }
  // a plain (non-digest) ETag checks nothing
  assert.equal((await check(`${A.origin}${Q8}?t=etag-plain`, { chunkSize: CS, cache: false })).sha256, null);
});
