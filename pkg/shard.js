// @ts-check
// A CPU shard worker (see shards.js): a wasm instance of its own holding one part of the rows
// of every weight matrix. It takes its weights as messages while the engine loads, then serves
// jobs from the shared buffer until the engine's dispose() terminates it; while serving, it
// polls (poller) then blocks in Atomics.wait, and reads no more messages. A trap (a panic,
// a failed allocation) is answered on the shared buffer, so the engine's call fails instead of
// waiting forever.
// It holds a Web Lock named llama-webgpu-shard-… while it lives.
import init, { ShardEngine, wasmMemoryBytes } from "./wasm/llama_webgpu.js";
import { TEST_HOOKS, testTrapSync } from "./hooks.js";
import { LAYOUT, jobTokens, poller } from "./shards.js";

const { GEN, QUIT, JOBLEN, XLEN, CRASH, DONE, OUTLEN, JOB, MEM, ERR, ERR_BYTES, STATS, STAT_N, CTL_BYTES } = LAYOUT;
let engine = null;
let broken = null; // the trap that killed this instance

function describe(e) {
  if (e instanceof WebAssembly.RuntimeError) return `WebAssembly trap: ${e.message}`;
  return (e && e.message) || String(e);
}

/** Holds a Web Lock until this worker is gone (resolves once it is held). */
function holdLock() {
  const locks = self.navigator?.locks;
  if (!locks) return Promise.resolve();
  const name = `llama-webgpu-shard-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  return new Promise(/** @param {(v?: undefined) => void} held */ (held) => {
    locks.request(name, () => {
      held();
      return new Promise(() => {});
    }).catch(() => held());
  });
}

/**
 * Serves jobs until dispose(). `announce` tells the engine this shard is running; the first
 * generation is read before it, since the engine may hand out a job as soon as every shard has
 * announced, before this thread reads the buffer (a shard that read that job's generation as its
 * starting one never ran it, and the engine gave up after 30 s).
 * @param {{ sab: SharedArrayBuffer, part: number, maxIn: number, maxOut: number }} m
 * @param {() => void} announce
 */
function serve({ sab, part, maxIn, maxOut }, announce) {
  const ctl = new Int32Array(sab, 0, CTL_BYTES / 4);
  let seen = Atomics.load(ctl, GEN);
  announce();
  const f32 = new Float32Array(sab, CTL_BYTES);
  const text = new TextEncoder();
  const wait = poller();
  // busy ms, idle ms, jobs, blocked waits: of single-token jobs since the last longer one
  const stats = new Float64Array(sab, STATS + part * STAT_N * 8, STAT_N);
  let idle = performance.now();
  let blocked = false;
  for (;;) {
    const g = Atomics.load(ctl, GEN);
    if (g === seen) {
      blocked = wait(ctl, GEN, seen) || blocked;
      continue;
    }
    seen = g;
    if (Atomics.load(ctl, QUIT)) return;
    const t0 = performance.now();
    try {
      if (broken) throw broken;
      if (TEST_HOOKS && ctl[CRASH] === part) testTrapSync("panic");
      const job = new Uint32Array(sab, JOB * 4, ctl[JOBLEN]);
      const n = job.length ? jobTokens(job[0]) : 0;
      if (n > 1) stats.fill(0);
      const out = engine.run(job, f32.subarray(0, ctl[XLEN]));
      if (out.length > maxOut) throw new Error(`${out.length} outputs, more than the ${maxOut} the buffer holds`);
      f32.set(out, maxIn + (part - 1) * maxOut);
      Atomics.store(ctl, OUTLEN + part, out.length);
      Atomics.store(ctl, MEM + part, wasmMemoryBytes() / 65536);
      if (n === 1) {
        const t1 = performance.now();
        stats[0] += t1 - t0;
        stats[1] += t0 - idle;
        stats[2]++;
        stats[3] += +blocked;
      }
      Atomics.store(ctl, DONE + part, g);
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) broken = e;
      const msg = text.encode(describe(e)).slice(0, ERR_BYTES - 4);
      new DataView(sab, ERR + part * ERR_BYTES, 4).setUint32(0, msg.length, true);
      new Uint8Array(sab, ERR + part * ERR_BYTES + 4, msg.length).set(msg);
      Atomics.store(ctl, DONE + part, -g);
    }
    Atomics.notify(ctl, DONE + part);
    idle = performance.now();
    blocked = false;
  }
}

/** @param {import("./protocol.js").ShardReply} r */
function reply(r) {
  self.postMessage(r);
}

/**
 * One handler per request type (protocol.js).
 * @type {{ [T in import("./protocol.js").ShardRequest["type"]]: (m: Extract<import("./protocol.js").ShardRequest, { type: T }>) => Promise<void> | void }}
 */
const HANDLERS = {
  async init(m) {
    await init({ module_or_path: m.module });
    engine = new ShardEngine(m.part, m.parts, m.lead);
    await holdLock();
    reply({ type: "inited" });
  },
  add(m) {
    engine.add(m.id, m.ty, m.rows, m.cols, m.bytes);
  },
  run(m) {
    serve(m, () => reply({ type: "running", mem: wasmMemoryBytes(), held: engine.heldBytes() }));
  },
};

self.onmessage = async (/** @type {MessageEvent<import("./protocol.js").ShardRequest>} */ { data: m }) => {
  try {
    await HANDLERS[m.type]?.(/** @type {any} */ (m));
  } catch (e) {
    reply({ type: "error", message: describe(e) });
  }
};
