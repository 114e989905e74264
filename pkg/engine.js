// @ts-check
// The engine where it runs (a worker by default, or the page with useWorker: false): the
// wasm module, the byte source feeding it, and the token loop. Everything crossing to the
// caller is plain data, so the same code serves both cases.
import init, { loadEngine, splitPartNames, wasmMemoryBytes as wasmModuleMemoryBytes } from "./wasm/llama_webgpu.js";
import { TEST_HOOKS, testTrapAsync, testTrapSync } from "./hooks.js";
import { openSources } from "./loader.js";
import { ShardPool, MAX_PARTS, shardsUnavailable } from "./shards.js";
import { engineWasm } from "./simd.js";
import { AbortError, DisposedError, EngineCrashedError, InvalidArgumentError, OutOfMemoryError, WebGPUUnavailableError, crashError, fromPlain, isTrap, toTyped } from "./errors.js";

// A trap (panic, failed allocation) kills this realm's wasm instance for good. In a
// synchronous call it throws a WebAssembly.RuntimeError; inside the async executor it surfaces
// as an uncaught error and the call's promise never settles. So every wasm promise is raced
// against `engineDied`, which rejects with an EngineCrashedError at the first trap.
let dead = null;
let rejectDied;
/** Rejects (once) when this realm's wasm instance traps. */
export const engineDied = new Promise((_, reject) => (rejectDied = reject));
engineDied.catch(() => {});

function markDead(e) {
  if (!dead) {
    dead = isTrap(e) ? crashError(e) : toTyped(e);
    rejectDied(dead);
  }
  return dead;
}

/** The error that killed this realm's engine, or null. */
export function engineDead() {
  return dead;
}

// wasm calls in flight: an uncaught trap while none is running came from someone else's wasm
let inFlight = 0;

function onUncaught(ev) {
  const e = ev.error ?? ev.reason;
  if (isTrap(e) && inFlight > 0) {
    ev.preventDefault?.();
    markDead(e);
  }
}
globalThis.addEventListener?.("error", onUncaught);
globalThis.addEventListener?.("unhandledrejection", onUncaught);

/** A wasm promise, or the engine's death, whichever comes first. */
async function guarded(p) {
  if (dead) throw dead;
  inFlight++;
  try {
    return await Promise.race([p, engineDied]);
  } catch (e) {
    throw isTrap(e) ? markDead(e) : e;
  } finally {
    inFlight--;
  }
}

/** A synchronous wasm call; a trap marks the engine dead. */
function sync(f) {
  if (dead) throw dead;
  try {
    return f();
  } catch (e) {
    throw isTrap(e) ? markDead(e) : e;
  }
}

// A macrotask yield: a MessagePort message lets the thread's event loop run (an abort or
// dispose message to the worker, the page's timers and input with useWorker: false) without
// setTimeout(0)'s clamping to 4 ms. The CPU backend computes a token inside one wasm call, so
// without this the token loop would only ever await microtasks and never let a message in.
const yieldPort = typeof MessageChannel !== "undefined" ? new MessageChannel() : null;
const yieldWaiters = [];
if (yieldPort) yieldPort.port1.onmessage = () => yieldWaiters.shift()?.();
/** Resolves after the event loop has had a turn. */
export function macrotask() {
  if (!yieldPort) return new Promise((r) => setTimeout(r, 0));
  return new Promise((r) => {
    yieldWaiters.push(r);
    yieldPort.port2.postMessage(0);
  });
}

/** Largest GGUF one CPU instance takes: wasm32's 4 GiB less room for the engine itself. With
 *  threads the rows are split over that many instances (shards.js); the wasm engine's check
 *  (cpu::check_fits) plans each instance's share exactly once the header is read. */
const CPU_MAX_MODEL_BYTES = 4 * 2 ** 30 - 256 * 2 ** 20;

// This realm's engine build (simd.js): picked by the first load, then fixed (one instance per realm).
/** @type {{ simd: import("./simd.js").WasmSimd, url: URL } | null} */
let wasmBuild = null;
let wasmReady = null;
/** @param {string} [simd] LoadOptions.simd */
function initWasm(simd = "auto") {
  if (simd !== "auto" && simd !== "simd128") throw new InvalidArgumentError(`simd must be "auto" or "simd128", got ${JSON.stringify(simd)}`);
  const want = engineWasm(simd);
  if (wasmBuild && wasmBuild.simd !== want.simd) {
    throw new InvalidArgumentError(`this thread already runs the ${wasmBuild.simd} engine build; simd: ${JSON.stringify(simd)} needs a fresh one (useWorker: true, the default)`);
  }
  wasmBuild = want;
  wasmReady ??= init({ module_or_path: want.url }).catch((e) => {
    wasmReady = null;
    throw e;
  });
  return wasmReady;
}

/** The CPU backend's adapter line, naming the relaxed build ("simd128+relaxed") where it runs. */
function cpuAdapter(adapter) {
  return wasmBuild?.simd === "relaxed-simd" ? String(adapter).replace(/\bsimd128\b/, "simd128+relaxed") : adapter;
}

/** The compiled module again, for shard workers to instantiate (compiled once, posted to each). */
let shardModule = null;
function compiledModule() {
  shardModule ??= (async () => {
    if (!wasmBuild) throw new Error("the engine's wasm is not loaded");
    const res = await fetch(wasmBuild.url);
    if (!res.ok) throw new Error(`failed to fetch the engine's wasm: HTTP ${res.status}`);
    if (res.headers.get("Content-Type") === "application/wasm") return WebAssembly.compileStreaming(res);
    return WebAssembly.compile(await res.arrayBuffer());
  })().catch((e) => {
    shardModule = null;
    throw e;
  });
  return shardModule;
}

/** Shard pools of the models loaded here (their workers' memory counts as this engine's). */
const livePools = new Set();

/** Linear memory of the wasm instance in this realm (0 before it is instantiated), and of its shard workers. */
export function wasmMemoryBytes() {
  let n = wasmReady ? wasmModuleMemoryBytes() : 0;
  for (const p of livePools) n += p.memoryBytes;
  return n;
}

export async function checkWebGPU() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    throw new WebGPUUnavailableError(
      "WebGPU is not available here. Use a current Chrome or Edge (113+) or another browser with WebGPU enabled, " +
        "on a page served over https or from localhost (and, in a worker, a browser that exposes WebGPU to workers).",
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
  if (!adapter) {
    throw new WebGPUUnavailableError(
      "WebGPU is present but no GPU adapter is available (blocklisted GPU or driver, or hardware acceleration turned off).",
    );
  }
  const i = adapter.info ?? {};
  const fallback = !!(i.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") || "WebGPU adapter";
  return { name: fallback ? `${name} (software)` : name, fallback };
}

export class EngineHost {
  /**
   * @param {string | URL | Blob | File | Array<string | URL | Blob | File>} source
   * @param {Record<string, any>} [opts] the worker's share of LoadOptions (index.d.ts), plus `sha256`
   * @param {(p: import("./index.d.ts").LoadProgress) => void} [emit] progress callback
   */
  static async load(source, opts = {}, emit = () => {}) {
    if (dead) {
      throw new EngineCrashedError(
        `the engine in this thread crashed earlier (${dead.message}); it cannot restart here: reload the page, or load in a worker (useWorker: true, the default)`,
      );
    }
    const signal = opts.signal;
    const backend = opts.backend ?? "auto";
    const threads = opts.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_PARTS) {
      throw new InvalidArgumentError(`threads must be an integer from 1 to ${MAX_PARTS}, got ${JSON.stringify(threads)}`);
    }
    // "auto" looks at the adapter (none, or a software one: the CPU backend is faster there)
    const adapter =
      backend === "cpu" || (backend === "auto" && opts.noWebGPU) ? null
        : backend === "webgpu" ? await checkWebGPU() : await checkWebGPU().catch(() => null);
    const onCpu = backend === "cpu" || (backend === "auto" && (!adapter || adapter.fallback));
    if (signal?.aborted) throw new AbortError();
    const chunkBytes = opts.chunkBytes ?? 8 << 20;
    await initWasm(opts.simd);
    // the loader's byte count never goes down; index.js drops repeats of a phase's count
    const src = await openSources(partsOf(source), {
      cache: opts.cache ?? true,
      signal,
      chunkSize: chunkBytes,
      sha256: opts.sha256,
      onDownload: ({ loaded, total }) => emit({ phase: "download", loaded, total }),
    }).catch((e) => {
      throw toTyped(e);
    });
    // the rows split over the threads that will run (the engine and its shards)
    const splitOver = onCpu && threads > 1 && !shardsUnavailable() ? threads : 1;
    if (onCpu && src.size > splitOver * CPU_MAX_MODEL_BYTES) {
      await src.close?.().catch(() => {});
      const need = Math.ceil(src.size / CPU_MAX_MODEL_BYTES);
      const hint = need <= MAX_PARTS && !shardsUnavailable() ? `threads: ${need} or more, ` : "";
      throw new OutOfMemoryError(
        `the CPU backend holds the model in wasm memory (4 GiB at most per thread); this ${(src.size / 2 ** 30).toFixed(2)} GiB model does not fit ${splitOver} thread(s): use ${hint}WebGPU or a smaller model`,
      );
    }
    // The first error thrown by the source (network, cache, abort) is the one to report: the
    // wasm side only sees it as a failed read.
    let sourceError = null;
    const read = async (offset, length) => {
      try {
        if (signal?.aborted) throw new AbortError();
        return await src.read(offset, length);
      } catch (e) {
        sourceError ??= e;
        throw e;
      }
    };
    // threads > 1 on the CPU: row shards in workers of their own (shards.js), where possible
    let shards = null;
    let threadsReason = onCpu ? (threads > 1 ? "" : "1 thread asked") : "WebGPU";
    const unavailable = onCpu && threads > 1 ? shardsUnavailable() : null;
    if (unavailable) threadsReason = `${threads} threads asked, 1 used: ${unavailable}`;
    let engine;
    try {
      if (onCpu && threads > 1 && !unavailable) {
        // shardLead (a benchmark knob): part 0's weight in the row split (shards.js, LEAD)
        shards = await ShardPool.start(threads, await compiledModule(), opts.shardLead);
        livePools.add(shards);
        threadsReason = `${threads} threads: the engine and ${threads - 1} shard worker(s) over a SharedArrayBuffer`;
      }
      // "upload" counts the bytes of every tensor in the file; tensors the model does not use
      // (rope_freqs, ...) are never uploaded, so the phase is closed at its total once the next
      // phase starts or the load ends
      let upload = null;
      const closeUpload = () => {
        if (upload && upload.loaded < upload.total) emit({ phase: "upload", loaded: upload.total, total: upload.total });
        upload = null;
      };
      const progress = (phase, loaded, total) => {
        if (phase === "upload") upload = { loaded, total };
        else closeUpload();
        emit({ phase, loaded, total });
      };
      engine = await guarded(sync(() => loadEngine(src.size, read, { contextLength: opts.contextLength, kvType: opts.kvType, cpuDot: opts.cpuDot, precision: opts.precision, chunkBytes, maxBindingSize: opts.maxBindingSize, cpuAdapter: !!adapter?.fallback, kernels: opts.kernels, backend, webgpuAdapter: adapter?.name, partSizes: src.partSizes }, progress, shards)));
      closeUpload();
      await shards?.whenReady();
      // the SHA-256 (the sha256 option, or the server's ETag) over every byte, before the model is used
      await src.verify?.();
    } catch (e) {
      // a shard's own failure, not the "stopped" that dispose() leaves (the wasm check's
      // OutOfMemory comes through as itself)
      const shardError = shards?.error;
      shards?.dispose();
      livePools.delete(shards);
      engine?.free();
      if (dead) throw dead;
      throw toTyped(sourceError ?? shardError ?? fromPlain(e));
    } finally {
      await src.close?.().catch(() => {});
    }
    if (opts.draft != null) {
      // the draft: loaded like the target (same backend unless draftBackend), then moved into it
      const { draft, draftBackend, onProgress: _p, ...rest } = opts;
      let d;
      try {
        d = await EngineHost.load(draft, { ...rest, backend: draftBackend ?? (engine.info().backend === "cpu" ? "cpu" : rest.backend), threads: 1 });
        const de = d.engine;
        d.engine = null;
        sync(() => engine.attachDraft(de));
      } catch (e) {
        engine.free();
        throw toTyped(fromPlain(e));
      } finally {
        d?.dispose();
      }
    }
    emit({ phase: "ready", loaded: 1, total: 1 });
    const engineInfo = sync(() => engine.info());
    const info = {
      ...engineInfo,
      threadsReason,
      // the CPU's kernels name the build's SIMD level (the engine knows simd128 only)
      adapter: engineInfo.backend === "webgpu" && adapter ? adapter.name : cpuAdapter(engineInfo.adapter),
      simd: wasmBuild?.simd ?? "simd128",
      fromCache: !!src.fromCache,
      source: src.url ?? src.name ?? null,
      // a split model: every part's URL (or file name), in the order given
      parts: src.urls ?? null,
      // the model loaded, but could not be cached (quota, storage disabled): why
      cacheError: src.cacheError ? toTyped(src.cacheError).toPlain() : null,
    };
    return new EngineHost(engine, info, opts, shards);
  }

  constructor(engine, info, opts, shards = null) {
    this.engine = engine;
    this.shards = shards;
    this.info = info;
    this.contextPolicy = opts.contextPolicy ?? "error";
  }

  /** The wasm engine, or a typed error once it is disposed or dead. */
  get #e() {
    if (dead) throw dead;
    if (!this.engine) throw new DisposedError();
    return this.engine;
  }

  tokenize(text, addSpecial = false) {
    return sync(() => Array.from(this.#e.tokenize(text, addSpecial)));
  }
  detokenize(ids) {
    return sync(() => this.#e.detokenize(Uint32Array.from(ids)));
  }
  chatTokens(messages, tools = null) {
    const msg = (m) => {
      const o = { role: String(m.role), content: contentText(m.content) };
      if (Array.isArray(m.tool_calls)) o.tool_calls = m.tool_calls;
      if (m.tool_call_id != null) o.tool_call_id = String(m.tool_call_id);
      if (m.name != null) o.name = String(m.name);
      return o;
    };
    return sync(() => this.#e.chatTokens(messages.map(msg), tools));
  }
  async logits(ids, stepwise = false) {
    return await guarded(sync(() => this.#e.logits(Uint32Array.from(ids), Boolean(stepwise))));
  }
  /** `{embeddings, tokens}` of each input (text or token ids); see Model.embeddings.create. */
  async embed(inputs, options = {}) {
    return await guarded(sync(() => this.#e.embed(inputs, options)));
  }
  reset() {
    sync(() => this.#e.reset());
  }
  async bench(promptTokens, genTokens) {
    const r = await guarded(sync(() => this.#e.bench(promptTokens, genTokens)));
    if (r.backend === "cpu") r.adapter = cpuAdapter(r.adapter);
    r.simd = wasmBuild?.simd ?? "simd128";
    if (this.shards && !this.shards.error) {
      // where a decoded token's time went (engine rows, wait, between jobs; shards busy/idle),
      // what one job's synchronisation costs, and how many a decoded token has: per layer
      // QKV, attention, the output projection, gate/up and down; then the output layer
      r.shard_stats = this.shards.stats(genTokens);
      r.shard_sync_us = this.shards.barrierUs(500);
      r.shard_syncs_per_token = 5 * this.info.layers + 1;
    }
    return r;
  }
  benchGrammar(schema, steps) {
    return this.engine.benchGrammar(schema, steps);
  }
  loseDevice() {
    sync(() => this.#e.loseDevice());
  }
  /**
   * Test hook (test builds only): a deliberate trap, "panic" or "oom", in a sync call or
   * inside the executor, or in a shard; "hang" blocks this thread for `ms` (as a chat template
   * that never ends would).
   */
  async _crashEngine(kind = "panic", where = "async", ms = 60_000) {
    if (!TEST_HOOKS) throw new InvalidArgumentError("test hooks are only in test builds");
    if (kind === "hang") {
      const t0 = performance.now();
      while (performance.now() - t0 < ms);
      return null;
    }
    if (where === "shard") {
      if (!this.shards) throw new InvalidArgumentError("no CPU shard workers to crash (threads: 1)");
      return this.shards.crashNext(1);
    }
    if (where === "sync") return sync(() => testTrapSync(kind));
    return await guarded(sync(() => testTrapAsync(kind)));
  }

  /**
   * Yields {token, text} per token; `aborted()` is checked between tokens, after a macrotask
   * yield (so an abort message or the page's events get in). Returns stats.
   * Throws AbortError when stopped through `aborted`.
   */
  async *generate(prompt, opts = {}, aborted = () => false) {
    const o = { contextPolicy: this.contextPolicy, ...opts };
    let stopped = false;
    try {
      await guarded(sync(() => this.#e.start(Uint32Array.from(prompt), o)));
      for (;;) {
        await macrotask();
        if (!stopped && aborted()) {
          stopped = true;
          sync(() => this.#e.cancel());
        }
        const piece = await guarded(sync(() => this.#e.next()));
        if (piece === null) break;
        if (!stopped) yield piece;
      }
    } catch (e) {
      throw toTyped(fromPlain(e));
    } finally {
      this.lastStats = this.engine && !dead ? sync(() => this.engine.finish()) : null;
    }
    if (stopped) throw new AbortError("generation aborted");
    return this.lastStats;
  }

  dispose() {
    // a dead instance is not called again; its memory goes with the worker or the page
    if (!dead) this.engine?.free();
    this.engine = null;
    this.shards?.dispose();
    livePools.delete(this.shards);
    this.shards = null;
  }
}

/**
 * The parts to open for `source`: a list as it is; a URL named like a split model's part
 * (`NAME-00001-of-00003.gguf`) → every part's URL beside it; else the source alone.
 */
function partsOf(source) {
  if (Array.isArray(source)) return source;
  if (typeof source !== "string" && !(source instanceof URL)) return [source];
  let u;
  try {
    u = new URL(String(source), globalThis.location?.href);
  } catch {
    return [source];
  }
  const cut = u.pathname.lastIndexOf("/") + 1;
  let name;
  try {
    name = decodeURIComponent(u.pathname.slice(cut));
  } catch {
    return [source];
  }
  const names = splitPartNames(name);
  if (!names || names.length < 2) return [source];
  return names.map((n) => {
    const p = new URL(u.href);
    p.pathname = u.pathname.slice(0, cut) + encodeURIComponent(n);
    return p.href;
  });
}

/** OpenAI content may be a string or an array of parts; we take the text parts. */
function contentText(c) {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => (typeof p === "string" ? p : p?.type === "text" ? p.text : "")).join("");
  return c == null ? "" : String(c);
}

