// @ts-check
// Typed errors of llama-webgpu. Every error the package throws is a LlamaWebGPUError with a
// stable `code`; subclasses let apps branch with `instanceof`. Errors cross the worker
// boundary as {code, message, status?} and are rebuilt with `fromPlain`. Each class sets its
// `name` as a literal on its prototype (not `constructor.name`, which a minifier renames), so
// `e.name === "AbortError"` and logs hold after a bundler.

export class LlamaWebGPUError extends Error {
  static { this.prototype.name = "LlamaWebGPUError"; }
  /** @param {string} message @param {string} [code] @param {ErrorOptions} [options] */
  constructor(message, code = "error", options) {
    super(message, options);
    this.code = code;
  }
  toPlain() {
    // status: set by the HTTP-caused subclasses only
    return { code: this.code, message: this.message, status: /** @type {any} */ (this).status };
  }
}

/** navigator.gpu is missing or no adapter/device could be created. */
export class WebGPUUnavailableError extends LlamaWebGPUError {
  static { this.prototype.name = "WebGPUUnavailableError"; }
  constructor(m) { super(m, "no_webgpu"); }
}
/** The adapter's limits cannot hold this model (binding size, buffer size, workgroup size). */
export class LimitsError extends LlamaWebGPUError {
  static { this.prototype.name = "LimitsError"; }
  constructor(m) { super(m, "limits"); }
}
/** GPU (or storage) memory ran out. */
export class OutOfMemoryError extends LlamaWebGPUError {
  static { this.prototype.name = "OutOfMemoryError"; }
  constructor(m) { super(m, "out_of_memory"); }
}
/** The GPU device was lost; load the model again. */
export class DeviceLostError extends LlamaWebGPUError {
  static { this.prototype.name = "DeviceLostError"; }
  constructor(m) { super(m, "device_lost"); }
}
/** The file is not a valid GGUF (bad magic, truncated, corrupt header or tensors). */
export class InvalidModelError extends LlamaWebGPUError {
  static { this.prototype.name = "InvalidModelError"; }
  constructor(m) { super(m, "invalid_model"); }
}
/** A valid GGUF this engine does not run (architecture, tensor type, shapes). */
export class UnsupportedModelError extends LlamaWebGPUError {
  static { this.prototype.name = "UnsupportedModelError"; }
  constructor(m) { super(m, "unsupported_model"); }
}
/** fetch failed: offline, connection reset, or blocked by CORS. */
export class NetworkError extends LlamaWebGPUError {
  static { this.prototype.name = "NetworkError"; }
  constructor(m) { super(m, "network"); }
}
/** The bytes the server sent are not the file asked for: a SHA-256 that does not match (the
 *  `sha256` option, or the digest in the server's ETag), a chunk whose length or Content-Range
 *  disagrees with the request, a compressed (Content-Encoding) body, chunks from another origin,
 *  a body that ends short every time. Not retried; the message says which. */
export class IntegrityError extends LlamaWebGPUError {
  static { this.prototype.name = "IntegrityError"; }
  constructor(m) { super(m, "integrity"); }
}
/** A split GGUF (`NAME-0000K-of-0000N.gguf` parts) that does not add up: a part missing (not
 *  given, or not found beside the first), given twice, or from another model or split. */
export class SplitModelError extends LlamaWebGPUError {
  static { this.prototype.name = "SplitModelError"; }
  constructor(m) { super(m, "split_model"); }
}
/** A Hugging Face reference that names no repo, revision or file there (HTTP 404). */
export class ModelNotFoundError extends LlamaWebGPUError {
  static { this.prototype.name = "ModelNotFoundError"; }
  constructor(m, status = 404) { super(m, "not_found"); this.status = status; }
}
/** A gated or private Hugging Face repo (HTTP 401/403): its files need a signed-in account
 *  that accepted the license, and the package sends no credentials; use an ungated copy. */
export class GatedModelError extends LlamaWebGPUError {
  static { this.prototype.name = "GatedModelError"; }
  constructor(m, status = 401) { super(m, "gated"); this.status = status; }
}
/** The server answered with an HTTP error status (404, 500...). */
export class HttpError extends LlamaWebGPUError {
  static { this.prototype.name = "HttpError"; }
  constructor(m, status) { super(m, "http"); this.status = status; }
}
/** Browser storage quota exceeded while caching the model. */
export class QuotaExceededError extends LlamaWebGPUError {
  static { this.prototype.name = "QuotaExceededError"; }
  constructor(m) { super(m, "quota_exceeded"); }
}
/** Prompt (plus generation) does not fit the context and the policy is "error". */
export class ContextOverflowError extends LlamaWebGPUError {
  static { this.prototype.name = "ContextOverflowError"; }
  constructor(m) { super(m, "context_overflow"); }
}
/** Bad argument from the caller (token id out of vocabulary, empty prompt, bad option). */
export class InvalidArgumentError extends LlamaWebGPUError {
  static { this.prototype.name = "InvalidArgumentError"; }
  constructor(m) { super(m, "invalid_argument"); }
}
/** The operation was aborted through its AbortSignal. */
export class AbortError extends LlamaWebGPUError {
  static { this.prototype.name = "AbortError"; }
  constructor(m = "aborted") { super(m, "aborted"); }
}
/** The model was disposed. */
export class DisposedError extends LlamaWebGPUError {
  static { this.prototype.name = "DisposedError"; }
  constructor(m = "the model was disposed") { super(m, "disposed"); }
}
/** NaN or Inf in the logits or in the weights: the model file's weights are probably corrupt. */
export class NumericalError extends LlamaWebGPUError {
  static { this.prototype.name = "NumericalError"; }
  constructor(m) { super(m, "numerical"); }
}
/** The engine died: its WebAssembly instance trapped (a panic, out of memory) or its worker
 *  stopped. This model is unusable; `loadModel` again starts a fresh worker. */
export class EngineCrashedError extends LlamaWebGPUError {
  static { this.prototype.name = "EngineCrashedError"; }
  constructor(m = "the engine crashed; load the model again") { super(m, "engine_crashed"); }
}

const BY_CODE = {
  no_webgpu: WebGPUUnavailableError,
  limits: LimitsError,
  out_of_memory: OutOfMemoryError,
  device_lost: DeviceLostError,
  invalid_model: InvalidModelError,
  unsupported_model: UnsupportedModelError,
  split_model: SplitModelError,
  network: NetworkError,
  integrity: IntegrityError,
  quota_exceeded: QuotaExceededError,
  context_overflow: ContextOverflowError,
  invalid_argument: InvalidArgumentError,
  aborted: AbortError,
  disposed: DisposedError,
  numerical: NumericalError,
  engine_crashed: EngineCrashedError,
  worker: EngineCrashedError,
};

/** A WebAssembly trap (unreachable after a panic or a failed allocation, out-of-bounds...):
 *  the instance it came from must not be used again. */
export function isTrap(e) {
  return typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError;
}

/** The typed error for a trap `e`. */
export function crashError(e, where = "the engine") {
  const why = e && e.message ? e.message : String(e);
  return new EngineCrashedError(`${where} crashed (WebAssembly trap: ${why}); load the model again`);
}

/** Rebuild a typed error from `{code, message, status}` (worker messages, wasm errors). */
export function fromPlain(p) {
  if (p instanceof LlamaWebGPUError) return p;
  if (isTrap(p)) return crashError(p);
  if (p && p.code === "http") return new HttpError(p.message, p.status);
  if (p && p.code === "not_found") return new ModelNotFoundError(p.message, p.status);
  if (p && p.code === "gated") return new GatedModelError(p.message, p.status);
  const C = p && BY_CODE[p.code];
  if (C) return new C(p.message);
  return new LlamaWebGPUError((p && p.message) || String(p), (p && p.code) || "error");
}

/** Any thrown value → a LlamaWebGPUError (DOMException AbortError/QuotaExceededError included). */
export function toTyped(e) {
  if (e instanceof LlamaWebGPUError) return e;
  if (isTrap(e)) return crashError(e);
  if (e && e.name === "AbortError") return new AbortError(e.message || "aborted");
  if (e && e.name === "QuotaExceededError") return new QuotaExceededError(`storage quota exceeded while caching the model: ${e.message}`);
  if (e && typeof e === "object" && "code" in e && "message" in e) return fromPlain(e);
  return new LlamaWebGPUError(e && e.message ? e.message : String(e));
}
