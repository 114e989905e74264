// @ts-check
// The dedicated worker the engine runs in by default: the page never blocks on tokenizing,
// uploading or waiting for the GPU. The messages: protocol.js (requests carry an id; a request
// gets progress or chunk messages, then done or error); every message reports the worker's
// wasm memory.
//
// A dead engine: when the wasm instance traps (a panic, a failed allocation) every pending
// request gets an EngineCrashedError marked `fatal`, and the worker closes itself; the page
// then rejects everything on this model, and the next loadModel starts a fresh worker. The
// worker also holds a Web Lock for its lifetime, so the page learns of a death that sends no
// message at all (the browser killing the worker).
import { EngineHost, engineDied, wasmMemoryBytes } from "./engine.js";
import { InvalidArgumentError, isTrap, crashError, toTyped } from "./errors.js";
import { METHODS } from "./protocol.js";

/** @typedef {import("./protocol.js").EngineRequest} EngineRequest */
/** @typedef {import("./protocol.js").EngineAnswer} EngineAnswer */

let host = null;
let dead = null;
const controllers = new Map();
const inflight = new Set();

/** @param {EngineAnswer} m */
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
  for (const id of controllers.keys()) post({ type: "error", id, error: dead.toPlain(), fatal: true });
  post({ type: "error", fatal: true, error: dead.toPlain() });
  self.close();
}
engineDied.catch(die);

const lockName = `llama-webgpu-worker-${Math.random().toString(36).slice(2)}-${Date.now()}`;
if (self.navigator?.locks) {
  self.navigator.locks.request(lockName, () => {
    post({ type: "lock", lock: lockName });
    return new Promise(() => {}); // held until this worker is gone
  }).catch(() => {});
}

/**
 * One handler per request type (abort is answered at once, in onmessage).
 * @type {{ [T in Exclude<EngineRequest["type"], "abort">]: (m: Extract<EngineRequest, { type: T }>, ctl: AbortController) => Promise<void> }}
 */
const HANDLERS = {
  async load(m, ctl) {
    host = await EngineHost.load(m.source, { ...m.options, signal: ctl.signal }, (p) => post({ type: "progress", id: m.id, progress: p }));
    post({ type: "done", id: m.id, value: host.info });
  },
  async call(m) {
    if (typeof m.method !== "string" || !METHODS.has(m.method)) throw new InvalidArgumentError(`no engine method ${JSON.stringify(m.method)}`);
    if (!host) throw new Error("no model loaded");
    if (m.method === "_crashEngine" && m.args[0] === "exit") {
      self.close(); // test hook: the worker stops without a word
      return;
    }
    const value = await host[m.method](...(Array.isArray(m.args) ? m.args : []));
    post({ type: "done", id: m.id, value });
  },
  async stream(m, ctl) {
    if (!host) throw new Error("no model loaded");
    const it = host.generate(...m.args, () => ctl.signal.aborted);
    for (;;) {
      const r = await it.next();
      if (r.done) {
        post({ type: "done", id: m.id, value: r.value });
        break;
      }
      post({ type: "chunk", id: m.id, chunk: r.value });
    }
  },
  async dispose(m) {
    // stop what is running (generations end at their next token), let it finish, then free
    for (const [id, c] of controllers) if (id !== m.id) c.abort();
    await Promise.allSettled([...inflight]);
    host?.dispose();
    host = null;
    post({ type: "done", id: m.id });
  },
};

self.onmessage = async (/** @type {MessageEvent<EngineRequest>} */ { data: m }) => {
  if (m.type === "abort") {
    controllers.get(m.id)?.abort();
    return;
  }
  if (dead) {
    post({ type: "error", id: m.id, error: dead.toPlain(), fatal: true });
    return;
  }
  const ctl = new AbortController();
  controllers.set(m.id, ctl);
  const handler = HANDLERS[m.type];
  const done = handler ? handler(/** @type {any} */ (m), ctl) : Promise.reject(new InvalidArgumentError(`no request type ${JSON.stringify(m.type)}`));
  const tracked = done.catch(() => {});
  if (m.type !== "dispose") inflight.add(tracked);
  try {
    await done;
  } catch (e) {
    if (isTrap(e) || dead) die(e);
    else post({ type: "error", id: m.id, error: toTyped(e).toPlain(), stats: host?.lastStats });
  } finally {
    controllers.delete(m.id);
    inflight.delete(tracked);
  }
};
