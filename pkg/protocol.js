// @ts-check
// The messages between the page and the engine worker (index.js ↔ worker.js), and between the
// CPU backend and its shard workers (shards.js ↔ shard.js): tagged unions, each side
// dispatching on `type` through one handler table. Every engine-worker message also carries
// the worker's wasm memory (`mem`).
import { TEST_HOOKS } from "./hooks.js";

/** The engine methods the page may call (the worker dispatches no others). */
export const METHODS = new Set(["tokenize", "detokenize", "chatTokens", "logits", "embed", "bench", "benchGrammar", "reset", "loseDevice"]);
if (TEST_HOOKS) METHODS.add("_crashEngine");

/**
 * Page → engine worker. `id` pairs a request with its answers.
 * @typedef {{ type: "load", id: number, source: any, options: Record<string, any> }} LoadRequest
 * @typedef {{ type: "call", id: number, method: string, args: any[] }} CallRequest
 * @typedef {{ type: "stream", id: number, args: any[] }} StreamRequest
 * @typedef {{ type: "dispose", id: number }} DisposeRequest
 * @typedef {{ type: "abort", id: number }} AbortRequest
 * @typedef {LoadRequest | CallRequest | StreamRequest | DisposeRequest | AbortRequest} EngineRequest
 */

/**
 * Engine worker → page. A request gets `progress` (load) or `chunk` (stream) messages, then one
 * `done` or `error`; `fatal`: the engine is dead (with an `id`: that request's answer too).
 * `lock`: the Web Lock the worker holds while it lives.
 * @typedef {{ code: string, message: string, status?: number }} PlainError
 * @typedef {{ type: "progress", id: number, progress: import("./index.d.ts").LoadProgress }} ProgressAnswer
 * @typedef {{ type: "chunk", id: number, chunk: any }} ChunkAnswer
 * @typedef {{ type: "done", id: number, value?: any }} DoneAnswer
 * @typedef {{ type: "error", id?: number, error: PlainError, fatal?: boolean, stats?: any }} ErrorAnswer
 * @typedef {{ type: "lock", lock: string }} LockAnswer
 * @typedef {(ProgressAnswer | ChunkAnswer | DoneAnswer | ErrorAnswer | LockAnswer) & { mem?: number }} EngineAnswer
 */

/**
 * CPU backend → shard worker, and its replies.
 * @typedef {{ type: "init", module: WebAssembly.Module, part: number, parts: number, lead: number }} ShardInit
 * @typedef {{ type: "add", id: number, ty: number, rows: number, cols: number, bytes: Uint8Array }} ShardAdd
 * @typedef {{ type: "run", sab: SharedArrayBuffer, part: number, maxIn: number, maxOut: number }} ShardRun
 * @typedef {ShardInit | ShardAdd | ShardRun} ShardRequest
 * @typedef {{ type: "inited" } | { type: "running", mem: number, held: number } | { type: "error", message: string }} ShardReply
 */
