// @ts-check
// llama-webgpu: Llama 3 (and other Llama-architecture GGUF models) in the browser on WebGPU.
// Public API. The engine runs in a dedicated worker by default (useWorker: false runs it on
// this thread); this module only proxies calls, serializes them, and shapes results the way
// OpenAI's chat API does. No init() call is needed: the wasm loads on the first loadModel.
import { AbortError, DisposedError, EngineCrashedError, InvalidArgumentError, WebGPUUnavailableError, fromPlain, toTyped } from "./errors.js";
import { listCachedModels, deleteCachedModel, clearModelCache } from "./storage.js";
import { hubLoadError, isHubRef, resolveHubRef } from "./hub.js";
import { TEST_HOOKS } from "./hooks.js";
import { METHODS } from "./protocol.js";
import { validateChatRequest, validateEmbeddingsRequest, validateGenerateOptions, validatePrompt } from "./validate.js";

export * from "./errors.js";
export { listCachedModels, deleteCachedModel, clearModelCache };

const workerMem = new Map();

/**
 * How long (ms) a worker may take to answer an abort or a dispose before it is terminated (a
 * chat template or a call that never ends): the aborted call rejects with AbortError, the
 * model with EngineCrashedError, and the next loadModel starts a fresh worker. Generation
 * checks for an abort between tokens, so only a single step longer than this (a very long
 * prefill on the CPU backend) gets there. `loadModel(src, { stopTimeoutMs })` changes it.
 */
const STOP_TIMEOUT_MS = 1500;

let localHostModule = null;

/** Current wasm memory of the engines in this page and its workers, in bytes (diagnostics). */
export function wasmMemoryBytes() {
  let n = localHostModule ? localHostModule.wasmMemoryBytes() : 0;
  for (const v of workerMem.values()) n += v;
  return n;
}

/** The engine in this thread. */
class LocalBackend {
  static async load(source, options, onProgress) {
    localHostModule ??= await import("./engine.js");
    const host = await localHostModule.EngineHost.load(source, options, onProgress);
    return new LocalBackend(host);
  }
  constructor(host) {
    this.host = host;
    this.info = host.info;
    /** Generations running (dispose waits for them: they stop at their next token). */
    this.running = new Set();
  }
  /** The error that killed the page's engine (all page models share one wasm instance). */
  get dead() {
    return localHostModule.engineDead();
  }
  async call(method, args) {
    if (!METHODS.has(method)) throw new InvalidArgumentError(`no engine method ${JSON.stringify(method)}`);
    try {
      return await this.host[method](...args);
    } catch (e) {
      throw toTyped(e);
    }
  }
  async *stream(args, signal) {
    const it = this.host.generate(...args, () => !!signal?.aborted);
    let ended;
    const done = new Promise((r) => (ended = r));
    this.running.add(done);
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
        yield r.value;
      }
    } finally {
      this.lastStats = this.host.lastStats;
      this.running.delete(done);
      ended();
    }
  }
  async dispose() {
    // a generation in progress was aborted by Model.dispose(): it ends at its next token
    await Promise.race([Promise.all([...this.running]), new Promise((r) => setTimeout(r, STOP_TIMEOUT_MS))]);
    this.host.dispose();
  }
}

/** The engine in a dedicated module worker. */
class WorkerBackend {
  static async load(source, options, onProgress) {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "llama-webgpu" });
    const b = new WorkerBackend(worker);
    const { signal, stopTimeoutMs, ...rest } = options;
    if (stopTimeoutMs != null) b.stopTimeoutMs = stopTimeoutMs;
    try {
      b.info = await b.request({ type: "load", source, options: rest }, signal, onProgress);
    } catch (e) {
      b.terminate();
      throw e;
    }
    return b;
  }
  /** @param {Worker} worker */
  constructor(worker) {
    /** @type {import("./index.d.ts").ModelInfo | undefined} set once loaded */
    this.info = undefined;
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.stopTimeoutMs = STOP_TIMEOUT_MS;
    /** Set once the engine is gone (crashed, or worker terminated): every request fails with it. */
    this.dead = null;
    worker.onmessage = (/** @type {MessageEvent<import("./protocol.js").EngineAnswer>} */ { data }) => {
      if (this.terminated) return;
      workerMem.set(this, data.mem ?? 0);
      if (data.type === "lock") return this.#watch(data.lock);
      if (data.type === "error" && data.fatal && data.id === undefined) return this.#die(fromPlain(data.error));
      this.pending.get(data.id)?.(data);
      if (data.type === "error" && data.fatal) this.#die(fromPlain(data.error));
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      this.#die(new EngineCrashedError(`the engine worker failed: ${e.message || "script error"}; load the model again`));
    };
  }
  /** The worker holds the Web Lock `name` while it lives: getting it means the worker died. */
  #watch(name) {
    globalThis.navigator?.locks?.request(name, () => {
      if (!this.terminated) this.#die(new EngineCrashedError("the engine worker stopped unexpectedly; load the model again"));
    }).catch(() => {});
  }
  /** The engine is gone: fail what is pending and everything after, free the worker. */
  #die(err) {
    this.dead ??= err;
    this.terminate();
  }
  request(msg, signal, onMessage) {
    const id = this.nextId++;
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      let deadline = null;
      const onAbort = () => {
        if (this.terminated) return;
        this.worker.postMessage({ type: "abort", id });
        // no answer in time: the worker is stuck in one call; it is stopped
        deadline ??= setTimeout(() => {
          if (!this.pending.has(id) || this.terminated) return;
          this.pending.get(id)({ type: "error", id, error: new AbortError(`aborted; the engine did not stop within ${this.stopTimeoutMs} ms, so its worker was terminated`).toPlain() });
          this.#die(new EngineCrashedError(`the engine did not answer an abort within ${this.stopTimeoutMs} ms (a call that does not end, such as a runaway chat template) and was stopped; load the model again`));
        }, this.stopTimeoutMs);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      /** @type {{ [T in Exclude<import("./protocol.js").EngineAnswer["type"], "lock">]: (d: any) => void }} */
      const answers = {
        progress: (d) => onMessage?.(d.progress),
        chunk: (d) => onMessage?.(d.chunk),
        done: (d) => {
          settle();
          resolve(d.value);
        },
        error: (d) => {
          settle();
          if (d.stats) this.lastStats = d.stats;
          reject(fromPlain(d.error));
        },
      };
      const settle = () => {
        this.pending.delete(id);
        clearTimeout(deadline);
        signal?.removeEventListener("abort", onAbort);
      };
      this.pending.set(id, (d) => answers[d.type]?.(d));
      this.worker.postMessage({ ...msg, id });
      if (signal?.aborted) onAbort();
    });
  }
  call(method, args, signal) {
    if (!METHODS.has(method)) return Promise.reject(new InvalidArgumentError(`no engine method ${JSON.stringify(method)}`));
    return this.request({ type: "call", method, args }, signal);
  }
  async *stream(args, signal) {
    // chunks are queued as they arrive; the consumer pulls them at its own pace
    const queue = [];
    let wake = null;
    let end = null;
    this.request({ type: "stream", args }, signal, (chunk) => {
      queue.push(chunk);
      wake?.();
    }).then(
      (stats) => (end = { stats }),
      (error) => (end = { error }),
    ).finally(() => wake?.());
    for (;;) {
      // after an abort, tokens the worker sent before it saw the abort are dropped
      if (queue.length && !signal?.aborted) {
        yield queue.shift();
        continue;
      }
      if (end) {
        if (end.error) throw end.error;
        this.lastStats = end.stats;
        return end.stats;
      }
      await new Promise((r) => (wake = r));
      wake = null;
    }
  }
  terminate() {
    if (this.terminated) return;
    this.terminated = true;
    this.worker.terminate();
    workerMem.delete(this);
    this.dead ??= new DisposedError();
    // an answer of the protocol's error type: the pending handlers dispatch on `type`
    for (const [id, h] of [...this.pending]) h({ type: "error", id, error: this.dead.toPlain() });
  }
  async dispose() {
    // the worker stops what runs (a generation ends at its next token), then frees the GPU;
    // a worker that does not answer in time is stuck in a call, and is terminated
    if (!this.dead) {
      let timer;
      const late = new Promise((r) => (timer = setTimeout(r, this.stopTimeoutMs)));
      await Promise.race([this.request({ type: "dispose" }).catch(() => {}), late]);
      clearTimeout(timer);
    }
    this.terminate();
  }
}

function checkOne(source) {
  const isBlob = typeof Blob !== "undefined" && source instanceof Blob;
  if (!(typeof source === "string" || source instanceof URL || isBlob)) {
    throw new InvalidArgumentError("loadModel: source must be a URL string, a URL, a Blob or a File, a list of them (the parts of a split model), or a Hugging Face reference (\"hf:owner/repo/file.gguf\", {hfRepo, file | quant})");
  }
  // relative URLs resolve against the page, not against the worker script
  return isBlob ? source : new URL(String(source), globalThis.location?.href).href;
}

/** A source as the engine takes it: a URL string or a Blob, or a list of them (a split model's parts). */
function checkSource(source) {
  if (!Array.isArray(source)) return checkOne(source);
  if (source.length === 0) throw new InvalidArgumentError("loadModel: an empty list of model parts");
  return source.length === 1 ? checkOne(source[0]) : source.map(checkOne);
}

/** A Hugging Face reference → its URL(s); anything else as it is. */
async function fromHub(source, hubUrl, signal) {
  if (!isHubRef(source)) return { source, ref: null };
  const ref = await resolveHubRef(source, { hubUrl, signal });
  return { source: ref.urls.length === 1 ? ref.urls[0] : ref.urls, ref };
}

/**
 * Loads a GGUF model (URL, Blob or File) onto the GPU, or the CPU (`backend: "cpu"`, or
 * `"auto"` where there is no WebGPU or only a fallback/software adapter).
 * @param {import("./index.d.ts").ModelSource} source
 * @param {import("./index.d.ts").LoadOptions} [options]
 * @returns {Promise<Model>}
 */
export async function loadModel(source, options = {}) {
  if (options.hubUrl != null && typeof options.hubUrl !== "string" && !(options.hubUrl instanceof URL)) {
    throw new InvalidArgumentError(`loadModel: hubUrl must be a URL, got ${typeof options.hubUrl}`);
  }
  const hub = await fromHub(source, options.hubUrl ? String(options.hubUrl) : undefined, options.signal);
  const src = checkSource(hub.source);
  const want = options.backend ?? "auto";
  if (!["auto", "webgpu", "cpu"].includes(want)) {
    throw new InvalidArgumentError(`loadModel: backend must be "auto", "webgpu" or "cpu", got ${JSON.stringify(want)}`);
  }
  const kernels = options.kernels ?? "auto";
  if (!["auto", "gpu"].includes(kernels)) {
    throw new InvalidArgumentError(`loadModel: kernels must be "auto" or "gpu", got ${JSON.stringify(kernels)}`);
  }
  if (kernels === "gpu" && want === "cpu") {
    throw new InvalidArgumentError('loadModel: kernels: "gpu" picks WebGPU kernels; it does not apply to backend: "cpu"');
  }
  // without WebGPU, "auto" runs on the CPU backend
  if (want === "webgpu" && !globalThis.navigator?.gpu) {
    throw new WebGPUUnavailableError(
      "WebGPU is not available in this browser. Use a current Chrome or Edge (113+), or enable WebGPU in your browser's settings/flags; pages must be served over https or from localhost.",
    );
  }
  /** @type {Record<string, any>} what the engine host receives */
  const { onProgress, useWorker = true, hubUrl, ...rest } = options;
  // a loaded Model drafts from its source, loaded again in this model's engine
  if (rest.draft instanceof Model) rest.draft = rest.draft.source;
  if (rest.draft != null) rest.draft = checkSource((await fromHub(rest.draft, hubUrl ? String(hubUrl) : undefined, options.signal)).source);
  // a page without WebGPU: the worker is told, it may still see navigator.gpu of its own
  if (!globalThis.navigator?.gpu) rest.noWebGPU = true;
  const useW = useWorker && typeof Worker !== "undefined";
  const emit = monotonic(onProgress);
  let backend;
  try {
    backend = await (useW ? WorkerBackend : LocalBackend).load(src, rest, emit);
  } catch (e) {
    // a resolve URL's 401/403/404: the Hub's typed errors
    throw hub.ref ? hubLoadError(e, hub.ref) : e;
  }
  const model = new Model(backend, options);
  /** the loaded source (what a draft model of another load is given) */
  model.source = src;
  return model;
}

/** Drops progress events that would go backwards within a phase, or repeat its last count. */
function monotonic(cb) {
  if (!cb) return () => {};
  const last = {};
  return (p) => {
    if ((last[p.phase] ?? -1) >= p.loaded) return;
    last[p.phase] = p.loaded;
    try {
      cb({ phase: p.phase, loaded: p.loaded, total: p.total });
    } catch {
      /* a throwing progress callback must not break the load */
    }
  };
}

let completionCounter = 0;
const FINISH = { eos: "stop", stop: "stop", length: "length", context: "length", cancelled: "stop" };

export class Model {
  constructor(backend, options) {
    /** @type {any} set by loadModel */
    this.source = undefined;
    this.backend = backend;
    this.info = backend.info;
    this.options = options;
    this.lastStats = null;
    this.queue = Promise.resolve();
    this.disposed = false;
    this.chat = { completions: { create: (body, reqOpts) => this.#chatCreate(body, reqOpts) } };
    this.embeddings = { create: (body, reqOpts) => this.#embeddingsCreate(body, reqOpts) };
  }

  /** Waits for every earlier call to finish (the engine does one thing at a time); returns
   *  the function that lets the next one run. */
  async #acquire(signal) {
    if (this.disposed) throw new DisposedError();
    let release;
    const done = new Promise((r) => (release = r));
    const prev = this.queue;
    this.queue = prev.then(() => done);
    if (!signal) {
      await prev;
      return release;
    }
    // aborted while waiting for its turn: reject now; the turn passes on once it comes
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => reject(new AbortError());
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      await Promise.race([prev, aborted]);
    } catch (e) {
      prev.then(release);
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return release;
  }

  /** DisposedError, or the error that killed the engine. */
  #check() {
    if (this.disposed) throw new DisposedError();
    if (this.backend.dead) throw this.backend.dead;
  }

  async #exclusive(fn) {
    const release = await this.#acquire();
    try {
      this.#check();
      return await fn();
    } finally {
      release();
    }
  }

  async tokenize(text, { addSpecial = false } = {}) {
    return this.#exclusive(() => this.backend.call("tokenize", [String(text), addSpecial]));
  }
  async detokenize(ids) {
    return this.#exclusive(() => this.backend.call("detokenize", [Array.from(ids)]));
  }
  /**
   * Logits of every position, Float32Array [n_tokens * vocab] (starts a fresh context).
   * `stepwise`: one token per pass through the KV cache, as generation decodes, instead of
   * one prefill pass.
   */
  async logits(tokenIds, { stepwise = false } = {}) {
    return this.#exclusive(() => this.backend.call("logits", [Array.from(tokenIds), Boolean(stepwise)]));
  }
  /**
   * Speed benchmark: a cold first token, then `promptTokens` of prefill and `genTokens` of
   * greedy decode → {prefill_tokens_per_s, decode_tokens_per_s, weight_bytes_per_token, …}.
   * Clears the cached conversation.
   */
  async bench({ promptTokens = 64, genTokens = 32 } = {}) {
    return this.#exclusive(() => this.backend.call("bench", [promptTokens, genTokens]));
  }

  /**
   * Constrained-decoding cost on this model's vocabulary for a JSON schema: grammar-engine
   * setup (first call only), schema compile time and per-token mask time (median, p99, max).
   */
  async benchGrammar(schema, { steps = 200 } = {}) {
    return this.#exclusive(() => this.backend.call("benchGrammar", [schema, steps]));
  }

  /** Forget the conversation cached on the GPU. */
  async reset() {
    return this.#exclusive(() => this.backend.call("reset", []));
  }

  /**
   * Streams {token, text} for a text prompt (BOS added as the model wants) or token ids.
   * Options: maxTokens, temperature (0 = greedy, the default), topK, topP, minP,
   * repetitionPenalty, seed, stop (string[]), contextPolicy ("error" | "sliding"), signal.
   */
  /** @param {string | ArrayLike<number>} prompt @param {import("./index.d.ts").GenerateOptions} [opts] */
  async *generate(prompt, opts = {}) {
    validatePrompt(prompt);
    validateGenerateOptions(opts ?? {});
    const { signal, ...o } = opts ?? {};
    if (typeof o.stop === "string") o.stop = [o.stop];
    yield* this.#generation(async (sig) => {
      const ids = typeof prompt === "string" ? await this.backend.call("tokenize", [prompt, true], sig) : Array.from(prompt);
      return [ids, o];
    }, signal);
  }

  /** Streams one generation once earlier calls are done; `prepare(signal)` gives [promptIds, options]. */
  async *#generation(prepare, signal) {
    const release = await this.#acquire(signal);
    // aborted by the caller's signal, or by dispose()
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.current = ctl;
    try {
      this.#check();
      if (signal?.aborted) throw new AbortError();
      const args = await prepare(ctl.signal);
      if (ctl.signal.aborted) throw new AbortError();
      yield* this.#stream(args, ctl.signal);
    } catch (e) {
      if (this.disposed && e?.code === "aborted") throw new DisposedError("the model was disposed during the generation");
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (this.current === ctl) this.current = null;
      release();
    }
  }

  async *#stream(args, signal) {
    try {
      yield* this.backend.stream(args, signal);
    } finally {
      this.lastStats = this.backend.lastStats ?? null;
    }
  }

  async #chatCreate(body = {}, reqOpts = {}) {
    validateChatRequest(body);
    const signal = reqOpts?.signal ?? body.signal;
    /** @type {Record<string, any>} the engine's generate options */
    const opts = {
      maxTokens: body.max_tokens ?? body.max_completion_tokens ?? 512,
      temperature: body.temperature ?? 0.7,
      topP: body.top_p ?? 0.95,
      seed: body.seed ?? Math.floor(Math.random() * 2 ** 32),
      stop: body.stop == null ? [] : [].concat(body.stop),
      repetitionPenalty: body.repetition_penalty,
      contextPolicy: body.context_policy ?? this.options.contextPolicy,
      ...responseFormat(body.response_format),
    };
    if (body.speculative != null) opts.speculative = body.speculative;
    if (body.logprobs) opts.logprobs = body.top_logprobs ?? 0;
    const tools = toolPlan(body, !!this.info.templateTools);
    if (tools.grammar) {
      if (opts.jsonSchema || opts.jsonObject) {
        throw new InvalidArgumentError("chat.completions.create: response_format cannot be combined with tools");
      }
      Object.assign(opts, tools.grammar);
    }
    const id = `chatcmpl-${Date.now().toString(36)}${(completionCounter++).toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.info.name || "llama-webgpu";
    const run = () =>
      this.#generation(async (sig) => {
        const { tokens, keep } = await this.backend.call("chatTokens", [tools.messages, tools.templateTools], sig);
        return [tokens, { ...opts, keep }];
      }, signal);
    const usage = () => {
      const s = this.lastStats ?? {};
      return {
        prompt_tokens: s.promptTokens ?? 0,
        completion_tokens: s.generatedTokens ?? 0,
        total_tokens: (s.promptTokens ?? 0) + (s.generatedTokens ?? 0),
        prompt_tokens_details: { cached_tokens: s.cachedTokens ?? 0 },
        timings: {
          prefilled_tokens: s.prefilledTokens ?? 0,
          prefill_tokens_per_s: s.prefillTokensPerSecond ?? 0,
          decode_tokens_per_s: s.decodeTokensPerSecond ?? 0,
        },
      };
    };
    const finish = () => FINISH[this.lastStats?.stopReason] ?? "stop";
    const lp = (c) => (c.logprob ? [{ ...c.logprob, top_logprobs: c.topLogprobs ?? [] }] : []);

    if (!body.stream) {
      let content = "";
      const lps = [];
      for await (const c of run()) {
        content += c.text;
        lps.push(...lp(c));
      }
      const logprobs = body.logprobs ? { content: lps } : null;
      const calls = tools.active ? parseToolCalls(content, id) : null;
      const message = calls ? { role: "assistant", content: null, tool_calls: calls } : { role: "assistant", content };
      const finish_reason = calls ? "tool_calls" : finish();
      return { id, object: "chat.completion", created, model, choices: [{ index: 0, message, finish_reason, logprobs }], usage: usage() };
    }
    const chunk = (delta, finish_reason = null, logprobs = null) => ({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason, logprobs }] });
    return {
      async *[Symbol.asyncIterator]() {
        yield chunk({ role: "assistant", content: "" });
        // With tools, output that opens with "{" is a call: it is held back and sent as
        // delta.tool_calls once complete; anything else streams as content.
        let held = tools.active ? "" : null;
        for await (const c of run()) {
          const logprobs = body.logprobs ? { content: lp(c) } : null;
          if (held !== null) {
            held += c.text;
            if (!held.trimStart()) continue;
            if (held.trimStart().startsWith("{")) continue;
            const text = held;
            held = null;
            yield chunk({ content: text }, null, logprobs);
          } else if (c.text || logprobs?.content.length) {
            yield chunk({ content: c.text }, null, logprobs);
          }
        }
        const calls = held !== null ? parseToolCalls(held, id) : null;
        if (calls) {
          yield chunk({ tool_calls: calls.map((c, index) => ({ index, ...c })) });
          yield { ...chunk({}, "tool_calls"), usage: usage() };
          return;
        }
        if (held) yield chunk({ content: held });
        yield { ...chunk({}, finish()), usage: usage() };
      },
    };
  }

  /**
   * OpenAI's embeddings endpoint: one vector per input (a string, strings, or token ids), each
   * run alone from position 0 (no KV shared between inputs; the cached conversation is
   * forgotten). `pooling` defaults to the GGUF's (mean when it names none); `normalize`
   * (default true, as OpenAI's vectors are unit length) scales each to length 1.
   */
  async #embeddingsCreate(body, reqOpts = {}) {
    validateEmbeddingsRequest(body);
    const signal = reqOpts?.signal ?? body.signal;
    const single = typeof body.input === "string" || typeof body.input[0] === "number";
    const inputs = single ? [body.input] : body.input;
    const release = await this.#acquire(signal);
    let r;
    try {
      this.#check();
      if (signal?.aborted) throw new AbortError();
      // one engine call: an abort is seen before it starts (it does not stop midway)
      r = await this.backend.call("embed", [inputs, { pooling: body.pooling, normalize: body.normalize ?? true }]);
    } finally {
      release();
    }
    const base64 = body.encoding_format === "base64";
    const data = r.embeddings.map((v, index) => ({ object: "embedding", index, embedding: base64 ? f32Base64(v) : v }));
    const n = r.tokens.reduce((a, b) => a + b, 0);
    return { object: "list", data, model: this.info.name || "llama-webgpu", usage: { prompt_tokens: n, total_tokens: n } };
  }

  /** Test hook: destroy the GPU device as a driver reset would. */
  async _loseDevice() {
    return this.#exclusive(() => this.backend.call("loseDevice", []));
  }

  /** Frees GPU memory (and the worker). The model is unusable afterwards: calls waiting
   *  for their turn reject with a DisposedError, a generation in progress stops at its next
   *  token with one. */
  async dispose() {
    if (this.disposing) return this.disposing;
    this.disposed = true;
    this.current?.abort();
    this.disposing = this.backend.dispose();
    return this.disposing;
  }

  static {
    if (TEST_HOOKS) {
      /** Test hook (test builds only): a deliberate WebAssembly trap in the engine ("panic" or
       *  "oom"; "exit" stops the worker without a word; "hang" blocks it, with `{ms, signal}`). */
      /** @type {any} */ (this.prototype)._crashEngine = async function (kind = "panic", where = "async", /** @type {{ ms?: number, signal?: AbortSignal }} */ { ms, signal } = {}) {
        return this.#exclusive(() => this.backend.call("_crashEngine", [kind, where, ms], signal));
      };
    }
  }
}

/** A vector as OpenAI's `encoding_format: "base64"` sends it: little-endian float32 bytes. */
function f32Base64(v) {
  const b = new Uint8Array(Float32Array.from(v).buffer);
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** OpenAI `response_format` → generate options. */
function responseFormat(rf) {
  if (rf == null || rf.type === "text") return {};
  if (rf.type === "json_object") return { jsonObject: true };
  if (rf.type === "json_schema") {
    const schema = rf.json_schema?.schema;
    if (schema == null || typeof schema !== "object") {
      throw new InvalidArgumentError("response_format.json_schema.schema must be a JSON schema object");
    }
    return { jsonSchema: schema };
  }
  throw new InvalidArgumentError(`response_format.type '${rf.type}' (expected text, json_object or json_schema)`);
}

/** The JSON schema of one call in Llama 3.1's format: {"name": …, "parameters": {…}}. */
function callSchema(fn) {
  return {
    type: "object",
    properties: { name: { const: fn.name }, parameters: fn.parameters ?? { type: "object" } },
    required: ["name", "parameters"],
    additionalProperties: false,
  };
}

/**
 * How `tools` / `tool_choice` shape a request: the messages to render (for templates without
 * tool support, the tools are described in a system turn and tool turns become text), the
 * tools handed to the template, and the grammar that holds the output to a call.
 */
function toolPlan(body, templateTools) {
  const list = body.tools ?? [];
  if (!Array.isArray(list)) throw new InvalidArgumentError("tools must be an array");
  const fns = list.map((t) => {
    if (t?.type !== "function" || typeof t.function?.name !== "string") {
      throw new InvalidArgumentError("each tool must be {type: \"function\", function: {name, parameters}}");
    }
    return t.function;
  });
  const choice = body.tool_choice ?? (fns.length ? "auto" : "none");
  if (!fns.length || choice === "none") return { messages: body.messages, templateTools: null, active: false };
  let grammar;
  if (choice === "required") {
    grammar = { jsonSchema: { anyOf: fns.map(callSchema) } };
  } else if (choice === "auto") {
    // Free text that does not open with "{", or one call.
    const call = JSON.stringify({ anyOf: fns.map(callSchema) });
    grammar = { grammar: { lark: `start: TEXT | call\nTEXT: /[^{\\s](.|\\n)*/\ncall: %json ${call}\n` } };
  } else if (choice?.type === "function" && typeof choice.function?.name === "string") {
    const fn = fns.find((f) => f.name === choice.function.name);
    if (!fn) throw new InvalidArgumentError(`tool_choice names '${choice.function.name}', which is not in tools`);
    grammar = { jsonSchema: callSchema(fn) };
  } else {
    throw new InvalidArgumentError("tool_choice must be \"auto\", \"none\", \"required\" or {type: \"function\", function: {name}}");
  }
  if (templateTools) return { messages: body.messages, templateTools: list, active: true, grammar };
  // Generic JSON form for templates that do not render tools.
  const describe =
    "You can call these functions. To call one, reply with only a JSON object " +
    '{"name": <function name>, "parameters": <arguments object>}.\n' +
    fns.map((f) => JSON.stringify({ name: f.name, description: f.description ?? "", parameters: f.parameters ?? {} })).join("\n");
  const msgs = body.messages.map((m) => {
    if (m.role === "tool") return { role: "user", content: `Result of ${m.name ?? "the call"} (${m.tool_call_id ?? ""}): ${textOf(m.content)}` };
    if (m.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length) {
      const c = m.tool_calls[0].function;
      const args = typeof c.arguments === "string" ? JSON.parse(c.arguments || "{}") : c.arguments;
      return { role: "assistant", content: JSON.stringify({ name: c.name, parameters: args }) };
    }
    return m;
  });
  const sys = msgs[0]?.role === "system" ? [{ ...msgs[0], content: `${textOf(msgs[0].content)}\n\n${describe}` }, ...msgs.slice(1)] : [{ role: "system", content: describe }, ...msgs];
  return { messages: sys, templateTools: null, active: true, grammar };
}

function textOf(c) {
  return typeof c === "string" ? c : Array.isArray(c) ? c.map((p) => p?.text ?? "").join("") : c == null ? "" : String(c);
}

/** A reply that is a call (`{"name", "parameters"|"arguments"}`) → OpenAI `tool_calls`, else null. */
function parseToolCalls(text, id) {
  const t = text.trim().replace(/^<\|python_tag\|>/, "");
  if (!t.startsWith("{")) return null;
  let v;
  try {
    v = JSON.parse(t);
  } catch {
    return null;
  }
  if (typeof v?.name !== "string") return null;
  const args = v.parameters ?? v.arguments ?? {};
  return [{ id: `call_${id.slice(9)}0`, type: "function", function: { name: v.name, arguments: JSON.stringify(args) } }];
}
