// The engine where it runs (a worker by default, or the page with useWorker: false): the
// wasm module, the byte source feeding it, and the token loop. Everything crossing to the
// caller is plain data, so the same code serves both cases.
import init, { loadEngine, wasmMemoryBytes as wasmModuleMemoryBytes } from "./wasm/llama_webgpu.js";
import { openSource } from "./loader.js";
import { AbortError, WebGPUUnavailableError, fromPlain, toTyped } from "./errors.js";

let wasmReady = null;
function initWasm() {
  wasmReady ??= init({ module_or_path: new URL("./wasm/llama_webgpu_bg.wasm", import.meta.url) }).catch((e) => {
    wasmReady = null;
    throw e;
  });
  return wasmReady;
}

/** Linear memory of the wasm instance in this realm (0 before it is instantiated). */
export function wasmMemoryBytes() {
  return wasmReady ? wasmModuleMemoryBytes() : 0;
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
   * @param source URL string | URL | Blob | File
   * @param opts {cache, signal, contextLength, precision, chunkBytes, contextPolicy}
   * @param emit progress callback ({phase, loaded, total})
   */
  static async load(source, opts = {}, emit = () => {}) {
    const signal = opts.signal;
    const adapter = await checkWebGPU();
    if (signal?.aborted) throw new AbortError();
    const chunkBytes = opts.chunkBytes ?? 8 << 20;
    // the loader's byte count never goes down; index.js drops repeats of a phase's count
    const src = await openSource(source, {
      cache: opts.cache ?? true,
      signal,
      chunkSize: chunkBytes,
      onDownload: ({ loaded, total }) => emit({ phase: "download", loaded, total }),
    }).catch((e) => {
      throw toTyped(e);
    });
    await initWasm();
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
    let engine;
    try {
      const progress = (phase, loaded, total) => emit({ phase, loaded, total });
      engine = await loadEngine(src.size, read, { contextLength: opts.contextLength, precision: opts.precision, chunkBytes, maxBindingSize: opts.maxBindingSize, cpuAdapter: adapter.fallback }, progress);
    } catch (e) {
      throw toTyped(sourceError ?? fromPlain(e));
    } finally {
      await src.close?.().catch(() => {});
    }
    emit({ phase: "ready", loaded: 1, total: 1 });
    const info = {
      ...engine.info(),
      adapter: adapter.name,
      fromCache: !!src.fromCache,
      source: src.url ?? src.name ?? null,
      // the model loaded, but could not be cached (quota, storage disabled): why
      cacheError: src.cacheError ? toTyped(src.cacheError).toPlain() : null,
    };
    return new EngineHost(engine, info, opts);
  }

  constructor(engine, info, opts) {
    this.engine = engine;
    this.info = info;
    this.contextPolicy = opts.contextPolicy ?? "error";
  }

  tokenize(text, addSpecial = false) {
    return Array.from(this.engine.tokenize(text, addSpecial));
  }
  detokenize(ids) {
    return this.engine.detokenize(Uint32Array.from(ids));
  }
  chatTokens(messages, tools = null) {
    const msg = (m) => {
      const o = { role: String(m.role), content: contentText(m.content) };
      if (Array.isArray(m.tool_calls)) o.tool_calls = m.tool_calls;
      if (m.tool_call_id != null) o.tool_call_id = String(m.tool_call_id);
      if (m.name != null) o.name = String(m.name);
      return o;
    };
    return this.engine.chatTokens(messages.map(msg), tools);
  }
  async logits(ids) {
    return await this.engine.logits(Uint32Array.from(ids));
  }
  reset() {
    this.engine.reset();
  }
  async bench(promptTokens, genTokens) {
    return await this.engine.bench(promptTokens, genTokens);
  }
  benchGrammar(schema, steps) {
    return this.engine.benchGrammar(schema, steps);
  }
  loseDevice() {
    this.engine.loseDevice();
  }

  /**
   * Yields {token, text} per token; `aborted()` is checked between tokens. Returns stats.
   * Throws AbortError when stopped through `aborted`.
   */
  async *generate(prompt, opts = {}, aborted = () => false) {
    const o = { contextPolicy: this.contextPolicy, ...opts };
    let stopped = false;
    try {
      await this.engine.start(Uint32Array.from(prompt), o);
      for (;;) {
        if (!stopped && aborted()) {
          stopped = true;
          this.engine.cancel();
        }
        const piece = await this.engine.next();
        if (piece === null) break;
        if (!stopped) yield piece;
      }
    } catch (e) {
      throw toTyped(fromPlain(e));
    } finally {
      this.lastStats = this.engine.finish();
    }
    if (stopped) throw new AbortError("generation aborted");
    return this.lastStats;
  }

  dispose() {
    this.engine?.free();
    this.engine = null;
  }
}

/** OpenAI content may be a string or an array of parts; we take the text parts. */
function contentText(c) {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => (typeof p === "string" ? p : p?.type === "text" ? p.text : "")).join("");
  return c == null ? "" : String(c);
}

