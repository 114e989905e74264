// @ts-check
// The CPU backend's other threads in the browser: row shards (crate/src/cpu/shards.rs). Stable
// Rust cannot build wasm threads, so each extra thread is a worker (shard.js) with a wasm
// instance of its own that holds one contiguous part of the rows of every weight matrix. The
// engine runs the whole graph; for every matmul (or group reading one input) its wasm calls
// start(), computes its own rows, then finish(), which waits for the shards' rows. Attention is
// split the same way by KV heads: each shard keeps the KV cache of its heads.
//
// One SharedArrayBuffer carries each job: the engine writes the input and the job, bumps GEN
// and wakes the shards (Atomics.notify); each shard computes, writes its rows to its own output
// region and stores the generation in its DONE slot (negated, with a message, on error). Both
// sides poll (poller), then block in Atomics.wait. Cross-origin isolation (COOP/COEP) is
// what makes SharedArrayBuffer and Atomics.wait available; the engine must run in a worker (the
// page's thread cannot block).
//
// Weights reach the shards while the engine loads: the engine reads each tensor from the
// source once (cache, progress and resume as for one thread), in pieces, posts the shards
// their rows of each piece and keeps its own, so the model is fetched once and held once, and
// no instance ever holds a whole matrix (token_embd and the output layer included: the
// engine asks a token's embedding row of its holder). A model larger than one wasm memory
// (4 GiB) loads over enough threads.
import { EngineCrashedError } from "./errors.js";

// control words (Int32) at the start of the buffer
/**
 * The most each side polls the shared buffer before it blocks in Atomics.wait (ms). On a quiet
 * 2-core machine a wake-up from Atomics.wait took ~50 µs, 121 times a token; polling first cut
 * the barrier to 2–6 µs and raised 2-thread decode from 43–50 to 59–67 tok/s. Where threads
 * outnumber cores, a side that polls holds the core its partner needs (2 busy processes beside
 * the page: 22 tok/s without polling, 14 with a fixed 0.2 ms), so the budget adapts: see poller().
 */
export const SPIN_MS = 0.2;

/**
 * `wait(ctl, i, v, timeoutMs)`: returns once `ctl[i]` may differ from `v` (or at the timeout),
 * polling first for a budget that doubles (up to SPIN_MS) while partners answer within SPIN_MS
 * and halves while they do not, so polling stops where it cannot pay. Returns whether it
 * blocked in Atomics.wait.
 */
export function poller() {
  let budget = SPIN_MS;
  return (ctl, i, v, timeoutMs) => {
    const t0 = performance.now();
    while (performance.now() - t0 < budget) if (Atomics.load(ctl, i) !== v) return false;
    Atomics.wait(ctl, i, v, timeoutMs);
    const took = performance.now() - t0;
    budget = took < SPIN_MS ? Math.min(SPIN_MS, Math.max(2 * budget, 0.01)) : budget / 2;
    return true;
  };
}
const GEN = 0; // job generation, bumped by the engine
const QUIT = 1; // set by dispose()
const JOBLEN = 2;
const XLEN = 3;
const CRASH = 4; // test hook: the shard (1..) that traps on this job
const DONE = 8; // DONE + p: the generation shard p finished (−gen: failed)
const OUTLEN = 8 + 32; // OUTLEN + p: f32s shard p wrote
const JOB = 8 + 64; // the job: [n_tokens, weight ids…]
const MAX_JOB = 64;
export const MAX_PARTS = 32;
const MEM = JOB + MAX_JOB; // MEM + p: shard p's wasm memory in 64 KiB pages, after its last job
const ERR = (MEM + MAX_PARTS) * 4; // byte offset of the error texts, ERR_BYTES per shard
const ERR_BYTES = 1024;
// STATS + p * STAT_N: shard p's Float64 counters of its single-token jobs since the last
// longer one (a prefill): ms running them, ms between them, jobs, how many waits blocked
const STATS = ERR + MAX_PARTS * ERR_BYTES;
const STAT_N = 4;
const CTL_BYTES = STATS + MAX_PARTS * STAT_N * 8;
export const LAYOUT = { GEN, QUIT, JOBLEN, XLEN, CRASH, DONE, OUTLEN, JOB, MEM, ERR, ERR_BYTES, STATS, STAT_N, CTL_BYTES };

/** The token count of a job's first word (its flags masked off: JOB_INT8, JOB_EMBED, JOB_SILU, JOB_ATTN). */
export const jobTokens = (word) => word & 0x0fffffff;

/** A shard that has not answered after this (plus 50× the engine's own time for its rows) is taken for dead. */
const DEADLINE_MS = 30_000;

function fail(message) {
  return new EngineCrashedError(message);
}

/** Where the engine can block on Atomics.wait (a worker, cross-origin isolated); else why not. */
export function shardsUnavailable() {
  if (!globalThis.crossOriginIsolated || typeof SharedArrayBuffer === "undefined") {
    return "the page is not cross-origin isolated (SharedArrayBuffer needs the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
  }
  if (typeof WorkerGlobalScope === "undefined" || !(globalThis instanceof WorkerGlobalScope)) {
    return "the engine runs on the page's thread (useWorker: false), which cannot wait for other threads";
  }
  return null;
}

/**
 * Part 0's weight in the row split, in thousandths of each shard's (crate/src/cpu/shards.rs,
 * Split): the engine also runs everything that is not a matmul, so it takes fewer rows.
 */
export const LEAD = 1000;

export class ShardPool {
  /**
   * Starts `parts - 1` shard workers, each instantiating `module` (the engine's compiled wasm).
   * Resolves once all of them are up. `lead`: part 0's weight (LEAD when not given).
   */
  static async start(parts, module, lead = LEAD) {
    const pool = new ShardPool(parts, lead ?? LEAD);
    try {
      await Promise.all(pool.workers.map((w, i) => pool.#ask(w, { type: "init", module, part: i + 1, parts, lead: pool.lead }, "inited")));
    } catch (e) {
      pool.dispose();
      throw e;
    }
    return pool;
  }

  constructor(parts, lead = LEAD) {
    this.n = parts;
    /** Part 0's weight in the split (read by the wasm engine). */
    this.lead = Math.round(lead);
    this.error = null;
    this.gen = 0;
    this.wait = poller();
    this.t0 = 0;
    this.crashPart = 0;
    this.#resetStats();
    this.workers = [];
    this.waiters = new Map();
    /** Each shard's wasm memory in bytes, as it reported once loaded (see instances). */
    this.mem = new Array(parts - 1).fill(0);
    /** Weight bytes each shard holds. */
    this.held = new Array(parts - 1).fill(0);
    for (let p = 1; p < parts; p++) {
      const w = new Worker(new URL("./shard.js", import.meta.url), { type: "module", name: `llama-webgpu-shard-${p}` });
      w.onerror = (e) => {
        e.preventDefault?.();
        this.#broke(fail(`CPU shard worker ${p} failed: ${e.message || "script error"}`));
      };
      w.onmessage = ({ data }) => {
        if (data.type === "error") this.#broke(fail(`CPU shard worker ${p}: ${data.message}`));
        else {
          if (data.mem) this.mem[p - 1] = data.mem;
          if (data.held != null) this.held[p - 1] = data.held;
          this.waiters.get(w)?.(data);
        }
      };
      this.workers.push(w);
    }
  }

  #resetStats() {
    /** The engine's side of its single-token jobs since the last longer one (see stats()). */
    this.st = { jobs: 0, own: 0, wait: 0, gap: 0, blocked: 0, last: 0 };
  }

  #broke(e) {
    this.error ??= e;
    for (const f of [...this.waiters.values()]) f({ type: "error" });
  }

  /** Posts `msg` to `w` and waits for its `reply` (or the pool's first error). */
  #ask(w, msg, reply, transfer = []) {
    return new Promise((resolve, reject) => {
      if (this.error) return reject(this.error);
      this.waiters.set(w, (d) => {
        this.waiters.delete(w);
        if (d.type === reply) resolve(d);
        else reject(this.error ?? fail(`CPU shard worker: unexpected ${d.type}`));
      });
      w.postMessage(msg, transfer);
    });
  }

  /** Each shard's wasm memory (bytes; it only grows, so this is its peak) and weight bytes. */
  instances() {
    return this.mem.map((m, i) => ({ memoryBytes: Math.max(m, this.ctl ? Atomics.load(this.ctl, MEM + i + 1) * 65536 : 0), weightBytes: this.held[i] }));
  }

  /** Bytes of wasm memory the shards hold. */
  get memoryBytes() {
    return this.workers.length ? this.instances().reduce((a, b) => a + b.memoryBytes, 0) : 0;
  }

  /** Threads in all, the engine's included (read by the wasm engine). */
  get parts() {
    return this.n;
  }

  // --- called by the wasm engine (crate/src/wasm.rs, JsShardPool) ---

  /** While loading: the next piece of shard `part`'s rows of weight `id` (a view of the engine's memory). */
  load(part, id, ty, rows, cols, bytes) {
    if (this.error) throw this.error;
    const copy = bytes.slice();
    this.workers[part - 1].postMessage({ type: "add", id, ty, rows, cols, bytes: copy }, [copy.buffer]);
  }

  /** Every weight is sent: the exchange buffer for inputs of `maxIn` and outputs of `maxOut` f32s. */
  ready(maxIn, maxOut) {
    if (this.error) throw this.error;
    this.maxIn = maxIn;
    this.maxOut = maxOut;
    this.sab = new SharedArrayBuffer(CTL_BYTES + 4 * (maxIn + (this.n - 1) * maxOut));
    this.ctl = new Int32Array(this.sab, 0, CTL_BYTES / 4);
    this.job = new Uint32Array(this.sab, JOB * 4, MAX_JOB);
    this.f32 = new Float32Array(this.sab, CTL_BYTES);
    // each shard answers once every weight before this message is in (messages keep their order)
    this.running = Promise.all(this.workers.map((w, i) => this.#ask(w, { type: "run", sab: this.sab, part: i + 1, maxIn, maxOut }, "running")));
    this.running.catch(() => {});
  }

  /** Resolves when every shard holds its weights and waits for jobs. */
  async whenReady() {
    await this.running;
    if (this.error) throw this.error;
  }

  start(job, x) {
    if (this.error) throw this.error;
    if (job.length > MAX_JOB || x.length > this.maxIn) throw fail(`CPU shard job too large (${job.length} ids, ${x.length} inputs)`);
    const ctl = this.ctl;
    this.job.set(job);
    ctl[JOBLEN] = job.length;
    ctl[XLEN] = x.length;
    this.f32.set(x, 0);
    ctl[CRASH] = this.crashPart;
    this.crashPart = 0;
    const n = job.length ? jobTokens(job[0]) : 0;
    if (n > 1) this.#resetStats();
    this.single = n === 1;
    if (this.single && this.st.last) this.st.gap += performance.now() - this.st.last;
    this.gen = this.gen >= 0x3fffffff ? 1 : this.gen + 1;
    Atomics.store(ctl, GEN, this.gen);
    Atomics.notify(ctl, GEN);
    this.t0 = performance.now();
  }

  finish(out) {
    const { ctl, gen: g } = this;
    const now = performance.now();
    let blocked = false;
    const deadline = now + DEADLINE_MS + 50 * (now - this.t0);
    let at = 0;
    for (let p = 1; p < this.n; p++) {
      const slot = DONE + p;
      let v = Atomics.load(ctl, slot);
      while (v !== g && v !== -g) {
        if (performance.now() > deadline) throw this.#dead(fail(`CPU shard worker ${p} did not answer in ${((performance.now() - this.t0) / 1000).toFixed(0)} s`));
        blocked = this.wait(ctl, slot, v, 100) || blocked;
        v = Atomics.load(ctl, slot);
      }
      if (v === -g) throw this.#dead(fail(`CPU shard worker ${p}: ${this.#message(p)}`));
      const len = ctl[OUTLEN + p];
      if (at + len > out.length) throw this.#dead(fail(`CPU shard worker ${p} returned ${len} values, more than expected`));
      const base = this.maxIn + (p - 1) * this.maxOut;
      out.set(this.f32.subarray(base, base + len), at);
      at += len;
    }
    if (at !== out.length) throw this.#dead(fail(`CPU shard workers returned ${at} values, expected ${out.length}`));
    if (this.single) {
      const st = this.st;
      st.last = performance.now();
      st.jobs++;
      st.own += now - this.t0;
      st.wait += st.last - now;
      st.blocked += +blocked;
    }
  }

  /**
   * Where the time of the single-token jobs since the last prefill went, in ms per token over
   * `tokens` tokens: the engine's own rows (from handing out a job to asking for its result),
   * its wait for the shards' rows (and copying them in), its work between jobs (norms, rope,
   * attention, the output's argmax, embedding, JS glue), and each shard's time running jobs
   * and between them; `blocked`: jobs the waits slept in Atomics.wait (a wake-up's latency).
   */
  stats(tokens) {
    const st = this.st;
    const per = (v) => v / Math.max(tokens, 1);
    const shards = [];
    for (let p = 1; p < this.n && this.sab; p++) {
      const f = new Float64Array(this.sab, STATS + p * STAT_N * 8, STAT_N);
      shards.push({ busy_ms: per(f[0]), idle_ms: per(f[1]), jobs: per(f[2]), blocked: per(f[3]) });
    }
    return { jobs: per(st.jobs), own_ms: per(st.own), wait_ms: per(st.wait), between_ms: per(st.gap), blocked: per(st.blocked), shards };
  }

  #dead(e) {
    this.error ??= e;
    return e;
  }

  #message(p) {
    const b = new Uint8Array(this.sab, ERR + p * ERR_BYTES, ERR_BYTES);
    const len = Math.min(new DataView(this.sab, ERR + p * ERR_BYTES, 4).getUint32(0, true), ERR_BYTES - 4);
    return new TextDecoder().decode(b.slice(4, 4 + len)) || "failed";
  }

  // --- for the engine's JS ---

  /** µs per round trip of an empty job (the cost of one matmul's synchronisation). */
  barrierUs(rounds = 200) {
    const job = Uint32Array.of(0);
    const none = new Float32Array(0);
    const t = performance.now();
    for (let i = 0; i < rounds; i++) {
      this.start(job, none);
      this.finish(none);
    }
    return ((performance.now() - t) * 1000) / rounds;
  }

  /** Test hook: shard `part` traps (a panic in its wasm) on the next job. */
  crashNext(part = 1) {
    this.crashPart = part;
  }

  dispose() {
    if (this.ctl) {
      Atomics.store(this.ctl, QUIT, 1);
      Atomics.store(this.ctl, GEN, -1);
      Atomics.notify(this.ctl, GEN);
    }
    for (const w of this.workers) w.terminate();
    this.workers = [];
    this.error ??= fail("the CPU shard workers were stopped");
  }
}
