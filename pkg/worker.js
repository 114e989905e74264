// The dedicated worker the engine runs in by default: the page never blocks on tokenizing,
// uploading or waiting for the GPU. Requests carry an id; answers are {id, ok|error} and, for
// streams, {id, chunk} messages; every message reports the worker's wasm memory.
import { EngineHost, wasmMemoryBytes } from "./engine.js";
import { toTyped } from "./errors.js";

let host = null;
const controllers = new Map();

function post(m) {
  self.postMessage({ ...m, mem: wasmMemoryBytes() });
}

self.onmessage = async ({ data: m }) => {
  if (m.type === "abort") {
    controllers.get(m.id)?.abort();
    return;
  }
  const ctl = new AbortController();
  controllers.set(m.id, ctl);
  try {
    if (m.type === "load") {
      host = await EngineHost.load(m.source, { ...m.options, signal: ctl.signal }, (p) => post({ id: m.id, progress: p }));
      post({ id: m.id, ok: true, value: host.info });
    } else if (m.type === "call") {
      if (!host) throw new Error("no model loaded");
      const value = await host[m.method](...m.args);
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
      host?.dispose();
      host = null;
      post({ id: m.id, ok: true });
    }
  } catch (e) {
    post({ id: m.id, error: toTyped(e).toPlain(), stats: host?.lastStats });
  } finally {
    controllers.delete(m.id);
  }
};
