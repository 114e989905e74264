// @ts-check
// The dedicated worker the engine runs in by default: the page never blocks on tokenizing,
// uploading or waiting for the GPU. Requests carry an id; answers are {id, ok|error} and, for
// streams, {id, chunk} messages; every message reports the worker's wasm memory.
//
// A dead engine: when the wasm instance traps (a panic, a failed allocation) every pending
// request gets an EngineCrashedError marked `fatal`, and the worker closes itself; the page
// then rejects everything on this model, and the next loadModel starts a fresh worker. The
// worker also holds a Web Lock for its lifetime, so the page learns of a death that sends no
// message at all (the browser killing the worker).
import { EngineHost, engineDied, wasmMemoryBytes } from "./engine.js";
import { InvalidArgumentError, isTrap, crashError, toTyped } from "./errors.js";
import { TEST_HOOKS } from "./hooks.js";

/** What the page may call on the engine: nothing else is dispatched. */
const METHODS = new Set(["tokenize", "detokenize", "chatTokens", "logits", "embed", "bench", "benchGrammar", "reset", "loseDevice"]);
if (TEST_HOOKS) METHODS.add("_crashEngine");

let host = null;
let dead = null;
const controllers = new Map();
const inflight = new Set();

function post(m) {
  let mem = 0;
  try {
    mem = wasmMemoryBytes();
  } catch {
    /* a dead instance may not answer */
  }
  self.postMessage({ ...m, mem });
}

function die(e) {
  if (dead) return;
  dead = isTrap(e) ? crashError(e) : toTyped(e);
  for (const id of controllers.keys()) post({ id, error: dead.toPlain(), fatal: true });
  post({ fatal: true, error: dead.toPlain() });
  self.close();
}
engineDied.catch(die);

const lockName = `llama-webgpu-worker-${Math.random().toString(36).slice(2)}-${Date.now()}`;
if (self.navigator?.locks) {
  self.navigator.locks.request(lockName, () => {
    post({ lock: lockName });
    return new Promise(() => {}); // held until this worker is gone
  }).catch(() => {});
}

async function handle(m, ctl) {
  if (m.type === "load") {
    host = await EngineHost.load(m.source, { ...m.options, signal: ctl.signal }, (p) => post({ id: m.id, progress: p }));
    post({ id: m.id, ok: true, value: host.info });
  } else if (m.type === "call") {
    if (typeof m.method !== "string" || !METHODS.has(m.method)) throw new InvalidArgumentError(`no engine method ${JSON.stringify(m.method)}`);
    if (!host) throw new Error("no model loaded");
    if (m.method === "_crashEngine" && m.args[0] === "exit") {
      self.close(); // test hook: the worker stops without a word
      return;
    }
    const value = await host[m.method](...(Array.isArray(m.args) ? m.args : []));
    post({ id: m.id, ok: true, value });
  } else if (m.type === "stream") {
    if (!host) throw new Error("no model loaded");
    const it = host.generate(...m.args, () => ctl.signal.aborted);
    for (;;) {
      const r = await it.next();
      if (r.done) {
        post({ id: m.id, ok: true, value: r.value });
        break;
      }
      post({ id: m.id, chunk: r.value });
    }
  } else if (m.type === "dispose") {
    // stop what is running (generations end at their next token), let it finish, then free
    for (const [id, c] of controllers) if (id !== m.id) c.abort();
    await Promise.allSettled([...inflight]);
    host?.dispose();
    host = null;
    post({ id: m.id, ok: true });
  }
}

self.onmessage = async ({ data: m }) => {
  if (m.type === "abort") {
    controllers.get(m.id)?.abort();
    return;
  }
  if (dead) {
    post({ id: m.id, error: dead.toPlain(), fatal: true });
    return;
  }
  const ctl = new AbortController();
  controllers.set(m.id, ctl);
  const done = handle(m, ctl);
  const tracked = done.catch(() => {});
  if (m.type !== "dispose") inflight.add(tracked);
  try {
    await done;
  } catch (e) {
    if (isTrap(e) || dead) die(e);
    else post({ id: m.id, error: toTyped(e).toPlain(), stats: host?.lastStats });
  } finally {
    controllers.delete(m.id);
    inflight.delete(tracked);
  }
};
