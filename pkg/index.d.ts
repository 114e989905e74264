// Type declarations for llama-webgpu.

/**
 * A Hugging Face reference: a file of a repo, or the file (or split model) whose name carries a
 * quant such as "Q4_K_M", found by listing the repo. `revision` defaults to "main".
 */
export type HubReference = { hfRepo: string; file: string; revision?: string } | { hfRepo: string; quant: string; revision?: string };

/**
 * A URL (a URL named `NAME-00001-of-0000N.gguf` brings the other parts of its split model,
 * found by name beside it), a Blob or File, the parts of a split model (URLs or Files, any
 * order), "hf:owner/repo/file.gguf" / "hf:owner/repo@revision/file.gguf" / "hf:owner/repo:QUANT",
 * or a HubReference.
 */
export type ModelSource = string | URL | Blob | File | Array<string | URL | Blob | File> | HubReference;

export interface LoadProgress {
  phase: "download" | "upload" | "compile" | "ready";
  /** Bytes so far (download: of the file; upload: of tensor data); 1 of 1 for compile/ready. */
  loaded: number;
  total: number;
}

export type KvType = "f32" | "f16" | "q8_0" | "q4_0";

export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  /** Cache downloads in OPFS (fallback: Cache API), chunk by chunk and resumable. Default true. */
  cache?: boolean;
  signal?: AbortSignal;
  /** KV-cache capacity in tokens, or "max" for the model's own trained context. Default: the model's, capped at 8192. */
  contextLength?: number | "max";
  /** KV-cache element type (llama.cpp's `-ctk/-ctv` names); q8_0 and q4_0 hold ~2× and ~3.6× the context of f16. Default: the backend's. */
  kvType?: KvType;
  /**
   * CPU backend dot products: "int8" quantizes each matmul's activations to 8 bits and multiplies
   * in integers (as llama.cpp; faster), "exact" uses f32 activations and the exact weight decode.
   * Default "exact".
   */
  cpuDot?: "exact" | "int8";
  /**
   * The CPU backend's wasm build: "auto" runs the relaxed SIMD build where the browser validates
   * relaxed SIMD (Chrome 114+; faster int8 dots), else simd128; "simd128" forces the fallback.
   * The build is fixed per thread: on the page (useWorker: false) the first load picks it.
   * Default "auto".
   */
  simd?: "auto" | "simd128";
  /** Run the engine in a dedicated Web Worker. Default true. */
  useWorker?: boolean;
  /** "auto" uses f16 when the adapter has shader-f16. Default "auto". */
  precision?: "auto" | "f32" | "f16";
  /** What happens when the context is full: an error, or a sliding window that keeps the system prompt. Default "error". */
  contextPolicy?: "error" | "sliding";
  /** Bytes per download/upload chunk (wasm memory holds a few of these). Default 8 MiB. */
  chunkBytes?: number;
  /** Cap on any GPU buffer binding below the adapter's own limit (to reproduce small-limit devices). */
  maxBindingSize?: number;
  /** Where the model runs. "auto" takes the CPU (wasm SIMD) when there is no WebGPU or the adapter is a fallback/software one. Default "auto". */
  backend?: "auto" | "webgpu" | "cpu";
  /**
   * A diagnostic: which WebGPU kernel family runs. "auto" is the adapter's own (a fallback or
   * software adapter, such as SwiftShader, takes kernels written for CPUs); "gpu" runs the
   * kernels real GPUs run (matvec at 16 lanes per row, tiled prefill) on any adapter, to test
   * them in a browser without a GPU. Applies to the WebGPU backend (use with
   * `backend: "webgpu"`); an error with `backend: "cpu"`. Default "auto".
   */
  kernels?: "auto" | "gpu";
  /**
   * CPU backend threads: more than 1 starts that many − 1 extra workers, each holding a part of
   * every weight matrix's rows. Needs a cross-origin isolated page (COOP/COEP headers) and the
   * engine in a worker; otherwise 1 thread is used and `info.threadsReason` says why. Default 1.
   */
  threads?: number;
  /**
   * Expected SHA-256 of the file (64 hex digits, URL sources): verified while the file streams
   * (once per cached copy: a verified cache entry is not hashed again). A mismatch rejects with
   * an IntegrityError and drops the cached copy. Without it, a SHA-256 the server gives as its
   * `x-linked-etag` or `ETag` (Hugging Face's `resolve` links do) is verified the same way.
   */
  sha256?: string;
  /** Where Hugging Face references resolve (default https://huggingface.co): a mirror, or a test server. */
  hubUrl?: string | URL;
  /**
   * A draft model for speculative decoding (`speculative: "draft"`): a smaller GGUF with the
   * same vocabulary (Llama 3.2 1B for Llama 3.1 8B). A loaded Model is loaded again from its
   * source next to this one. Another vocabulary rejects with an InvalidModelError.
   */
  draft?: ModelSource | Model;
  /** How long (ms) a worker may take to answer an abort or dispose() before it is terminated (then: AbortError / EngineCrashedError, and loadModel again). Default 1500. */
  stopTimeoutMs?: number;
}

export interface ModelInfo {
  architecture: string;
  name: string;
  parameters: number;
  quantization: string;
  /** KV-cache capacity in tokens. */
  contextLength: number;
  trainContextLength: number;
  vocabSize: number;
  /** Hidden size: the length of an embedding. */
  embeddingLength: number;
  /** The GGUF's pooling for embeddings.create (mean when it names none). */
  pooling: "mean" | "last" | "cls";
  adapter: string;
  /** The engine's wasm build (the `simd` load option): relaxed SIMD or simd128. */
  simd: "relaxed-simd" | "simd128";
  /** The WebGPU kernel family that runs: "gpu" (the one GPUs run) or "cpu" (a fallback adapter's, under `kernels: "auto"`); null on the CPU backend. */
  kernels: "gpu" | "cpu" | null;
  /** The backend that runs the model, and why it was picked. */
  backend: "webgpu" | "cpu";
  backendReason: string;
  /** CPU backend threads (0 on WebGPU). */
  threads: number;
  /** How the thread count came about (e.g. why 1 was used when more were asked). */
  threadsReason: string;
  /** Weight bytes the engine's own wasm instance holds: with CPU threads, its rows of every
   *  matrix only, the rest in the shard workers (0 on WebGPU). */
  heldWeightBytes: number;
  features: { shaderF16: boolean; subgroups: boolean };
  /** Whether the f16 path runs. */
  f16: boolean;
  /** Chat format family: "llama3", "chatml", or "jinja" for any other GGUF template; null for base
   *  models (plain completion). */
  chatTemplate: "jinja" | "llama3" | "chatml" | null;
  /** True when prompts are rendered from the GGUF's own `tokenizer.chat_template` (else a built-in). */
  jinjaTemplate: boolean;
  /** Whether the chat template renders `tools` itself (else a generic JSON tool prompt is used). */
  templateTools: boolean;
  gpuBytes: number;
  weightBytes: number;
  kvBytes: number;
  /** The KV cache's element type. */
  kvType: KvType;
  layers: number;
  /** True when every model byte came from the browser cache. */
  fromCache: boolean;
  source: string | null;
  /** A split model: every part's URL (or file name), in the order given; null for one file. */
  parts: string[] | null;
  /** Set when the model loaded but could not be stored in the browser cache (e.g. quota_exceeded). */
  cacheError: { code: string; message: string } | null;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop?: string | string[];
  contextPolicy?: "error" | "sliding";
  /** The output is an instance of this JSON schema (ends by itself once complete). */
  jsonSchema?: object | boolean;
  /** The output is a JSON object. */
  jsonObject?: boolean;
  /** A context-free grammar: a Lark string, or llama.cpp GBNF / a regex. Invalid → InvalidArgumentError. */
  grammar?: string | { lark: string } | { gbnf: string } | { regex: string };
  /** Report each token's log-probability and this many top alternatives (0–20). */
  logprobs?: number;
  /**
   * Speculative decoding: "lookup" drafts from n-grams of the prompt and output, "draft" from
   * the draft model given to loadModel; the model verifies the drafts in one pass. Greedy
   * output is the same token for token; sampled output has the same distribution. Default false.
   */
  speculative?: "lookup" | "draft" | false;
  signal?: AbortSignal;
}

/** OpenAI's per-token log-probability entry. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface GenerateChunk {
  /** The token id; null for text flushed at the end (a held-back partial character or stop string prefix). */
  token: number | null;
  text: string;
  /** With `logprobs`. */
  logprob?: TokenLogprob;
  topLogprobs?: TokenLogprob[];
}

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens whose KV entries were reused from the previous call. */
  cachedTokens: number;
  prefilledTokens: number;
  generatedTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  stopReason: "eos" | "stop" | "length" | "context" | "cancelled";
  tokens: number[];
  /** With `speculative`: drafts verified, accepted, and the model's forward passes while decoding. */
  speculative?: { drafted: number; accepted: number; targetForwards: number; acceptance: number };
}

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; /** JSON text. */ arguments: string };
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | Array<{ type: "text"; text: string }> | null;
  /** An assistant turn's calls (send them back as they came). */
  tool_calls?: ToolCall[];
  /** A `role: "tool"` result: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

export interface Tool {
  type: "function";
  function: { name: string; description?: string; /** JSON schema of the arguments. */ parameters?: object };
}

export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; schema: object; strict?: boolean } };

export interface ChoiceLogprobs {
  content: Array<TokenLogprob & { top_logprobs: TokenLogprob[] }>;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  /** Default 0.7. */
  temperature?: number;
  /** Default 0.95. */
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  repetition_penalty?: number;
  context_policy?: "error" | "sliding";
  response_format?: ResponseFormat;
  /** Rendered by the model's own template (or a generic JSON prompt); calls are grammar-constrained. */
  tools?: Tool[];
  tool_choice?: ToolChoice;
  logprobs?: boolean;
  top_logprobs?: number;
  /** See GenerateOptions.speculative. */
  speculative?: "lookup" | "draft" | false;
  signal?: AbortSignal;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  timings: { prefilled_tokens: number; prefill_tokens_per_s: number; decode_tokens_per_s: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: "assistant"; content: string | null; tool_calls?: ToolCall[] };
    finish_reason: "stop" | "length" | "tool_calls";
    logprobs: ChoiceLogprobs | null;
  }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: "assistant"; content?: string; tool_calls?: Array<ToolCall & { index: number }> };
    finish_reason: "stop" | "length" | "tool_calls" | null;
    logprobs: ChoiceLogprobs | null;
  }>;
  /** On the last chunk only. */
  usage?: CompletionUsage;
}

export interface EmbeddingRequest {
  /** A text, texts, token ids, or token-id arrays (OpenAI's forms); each is embedded alone. */
  input: string | string[] | number[] | number[][];
  /** How the final-norm hidden states become one vector; default: the GGUF's pooling_type (mean when none). */
  pooling?: "mean" | "last" | "cls";
  /** Scale each vector to length 1 (default true, as OpenAI's are); false gives the pooled state as it is. */
  normalize?: boolean;
  /** "float" (default) or "base64" (little-endian float32 bytes). */
  encoding_format?: "float" | "base64";
  model?: string;
  user?: string;
}

export interface EmbeddingResponse {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface Model {
  readonly info: ModelInfo;
  /** Stats of the last generation (generate or chat). */
  readonly lastStats: GenerationStats | null;
  tokenize(text: string, options?: { addSpecial?: boolean }): Promise<number[]>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  /** Constrained-decoding cost for a JSON schema on this vocabulary (first call also builds the token trie). */
  benchGrammar(schema: object, options?: { steps?: number }): Promise<{ compilerMs: number; compileMs: number; masks: number; maskUsMedian: number; maskUsP99: number; maskUsMax: number }>;
  generate(prompt: string | ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<GenerateChunk, GenerationStats | undefined>;
  chat: {
    completions: {
      create(body: ChatCompletionRequest & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(body: ChatCompletionRequest & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
    };
  };
  embeddings: {
    /** OpenAI's embeddings endpoint; `data[i].embedding` is `number[]` unless encoding_format is "base64". */
    create(body: EmbeddingRequest, options?: { signal?: AbortSignal }): Promise<EmbeddingResponse>;
  };
  /**
   * Logits of every position, [tokenIds.length * vocabSize], from an empty context: one prefill
   * pass, or with `stepwise` one token per pass through the KV cache, as generation decodes.
   */
  logits(tokenIds: ArrayLike<number>, options?: { stepwise?: boolean }): Promise<Float32Array>;
  /** Forget the cached conversation. */
  reset(): Promise<void>;
  /** Speed benchmark (clears the cached conversation). */
  bench(options?: { promptTokens?: number; genTokens?: number }): Promise<BenchResult>;
  dispose(): Promise<void>;
}

export interface BenchResult {
  adapter: string;
  /** The engine's wasm build, as ModelInfo.simd. */
  simd: "relaxed-simd" | "simd128";
  backend: string;
  precision: "f16" | "f32";
  /** CPU backend threads (0 on WebGPU). */
  threads: number;
  first_token_s: number;
  prompt_tokens: number;
  gen_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  /** Weight bytes read per decoded token; bandwidth / this = the roofline. */
  weight_bytes_per_token: number;
  decode_bytes_per_s: number;
  dispatches_per_token: number;
  gpu_memory_bytes: number;
  /** CPU backend with threads > 1: µs per synchronisation with the shard workers (an empty job's round trip), and how many a decoded token has. */
  shard_sync_us?: number;
  shard_syncs_per_token?: number;
  /**
   * CPU backend with threads > 1: a decoded token's time (ms) in the engine's own rows, waiting
   * for the shards' rows, and between jobs (everything else: norms, rope, attention, argmax,
   * embedding, glue); jobs per token and those whose wait slept in Atomics.wait; each shard's
   * ms running jobs and between them.
   */
  shard_stats?: {
    jobs: number;
    own_ms: number;
    wait_ms: number;
    between_ms: number;
    blocked: number;
    shards: { busy_ms: number; idle_ms: number; jobs: number; blocked: number }[];
  };
}

export function loadModel(source: ModelSource, options?: LoadOptions): Promise<Model>;
/** Current wasm memory of the engines of this page (workers included), in bytes. */
export function wasmMemoryBytes(): number;

export interface CachedModel {
  url: string;
  size: number;
  cachedBytes: number;
  complete: boolean;
  lastUsed: number;
}
export function listCachedModels(): Promise<CachedModel[]>;
export function deleteCachedModel(url: string): Promise<void>;
export function clearModelCache(): Promise<void>;

export class LlamaWebGPUError extends Error {
  code: string;
}
export class WebGPUUnavailableError extends LlamaWebGPUError {}
export class LimitsError extends LlamaWebGPUError {}
export class OutOfMemoryError extends LlamaWebGPUError {}
export class DeviceLostError extends LlamaWebGPUError {}
export class InvalidModelError extends LlamaWebGPUError {}
export class UnsupportedModelError extends LlamaWebGPUError {}
export class NetworkError extends LlamaWebGPUError {}
/** The server's bytes are not the file: SHA-256 mismatch, a chunk whose length or Content-Range disagrees with the request, Content-Encoding, mixed origins, a body that always ends short. */
export class IntegrityError extends LlamaWebGPUError {}
export class HttpError extends LlamaWebGPUError {
  status: number;
}
/** A split GGUF whose parts do not add up: one missing (not given, or not found beside the first), given twice, or from another model. */
export class SplitModelError extends LlamaWebGPUError {}
/** A Hugging Face repo, revision, file or quant that is not there (HTTP 404, or no file with the quant). */
export class ModelNotFoundError extends LlamaWebGPUError {
  status: number;
}
/** A gated or private Hugging Face repo (HTTP 401/403): the package sends no credentials. */
export class GatedModelError extends LlamaWebGPUError {
  status: number;
}
export class QuotaExceededError extends LlamaWebGPUError {}
export class ContextOverflowError extends LlamaWebGPUError {}
export class InvalidArgumentError extends LlamaWebGPUError {}
export class AbortError extends LlamaWebGPUError {}
export class DisposedError extends LlamaWebGPUError {}
/** NaN or Inf in the logits or weights (corrupt weights). */
export class NumericalError extends LlamaWebGPUError {}
/** The engine trapped (panic, out of memory) or its worker died; load the model again. */
export class EngineCrashedError extends LlamaWebGPUError {}
