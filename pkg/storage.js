// @ts-check
// The storage backends of the model cache (OPFS, or the Cache API where OPFS cannot write):
// one entry per model, named files under one key (meta.json, <i>.bin); see loader.js for the
// layout and when chunks are written. Also the cache's public functions (listCachedModels,
// deleteCachedModel, clearModelCache).
import { InvalidArgumentError, LlamaWebGPUError } from "./errors.js";
import { normalizeUrl } from "./bytes.js";

const ROOT = "llama-webgpu-cache";
const CACHE_NAME = "llama-webgpu-cache";
// Cache API keys must be http(s) URLs; a reserved domain can never collide with a real fetch.
const CACHE_URL_BASE = "https://llama-webgpu-cache.invalid/";
export const META_VERSION = 1;

/** Every cached model (both backends): [{url, size, cachedBytes, complete, lastUsed, backend}]. */
export async function listCachedModels() {
  const out = [];
  for (const backend of await allBackends()) {
    for (const key of await backend.keys()) {
      const meta = await readMetaSafe(backend.entry(key));
      if (!meta) continue;
      const n = chunkCount(meta.size, meta.chunkSize);
      let cachedBytes = 0;
      let have = 0;
      for (const k of Object.keys(meta.chunks)) {
        const i = Number(k);
        if (!(i >= 0 && i < n)) continue;
        have++;
        cachedBytes += Math.min(meta.chunkSize, meta.size - i * meta.chunkSize);
      }
      out.push({ url: meta.url, size: meta.size, cachedBytes, complete: have === n, lastUsed: meta.lastUsed ?? 0, backend: backend.name });
    }
  }
  return out.sort((a, b) => b.lastUsed - a.lastUsed);
}

/** Remove one cached model (by the URL, or the cacheKey, it was opened with). True if something was removed. */
export async function deleteCachedModel(url) {
  const keys = new Set([keyOf(String(url))]);
  try {
    keys.add(keyOf(normalizeUrl(url)));
  } catch {
    // a cacheKey that is not a URL
  }
  let removed = false;
  for (const backend of await allBackends()) {
    for (const key of keys) {
      const entry = backend.entry(key);
      await serial(key, async () => {
        if (await readMetaSafe(entry)) removed = true;
        await entry.destroy();
      });
    }
  }
  return removed;
}

/** Remove every cached model. */
export async function clearModelCache() {
  const root = await opfsRoot(false);
  if (root) await root.removeEntry(ROOT, { recursive: true }).catch(ignoreNotFound);
  if (globalThis.caches) await caches.delete(CACHE_NAME);
}

const queues = new Map(); // key → tail promise of that entry's serialized cache operations

/** Runs `fn` after every earlier cache operation on `key`: one entry's reads, writes and deletes never interleave. */
export function serial(key, fn) {
  const prev = queues.get(key) ?? Promise.resolve();
  const run = prev.then(fn);
  const tail = run.catch(() => {});
  queues.set(key, tail);
  tail.then(() => { if (queues.get(key) === tail) queues.delete(key); });
  return run;
}

/** The tail of `key`'s queued cache operations (settles when they have), or undefined. */
export function serialTail(key) {
  return queues.get(key);
}

/** One cached model in a storage backend; subclasses store its files (meta.json, N.bin). */
class Entry {
  /** @abstract @param {string} name @returns {Promise<Uint8Array | null>} */
  readFile(name) { throw new Error(`readFile ${name}: abstract`); }
  /** @abstract @param {string} name @param {Uint8Array} bytes @returns {Promise<void>} */
  writeFile(name, bytes) { throw new Error(`writeFile ${name} (${bytes.length} bytes): abstract`); }
  /** @abstract @param {string} name @returns {Promise<void>} */
  removeFile(name) { throw new Error(`removeFile ${name}: abstract`); }
  async readMeta() {
    const b = await this.readFile("meta.json");
    return b ? JSON.parse(new TextDecoder().decode(b)) : null;
  }
  writeMeta(meta) { return this.writeFile("meta.json", new TextEncoder().encode(JSON.stringify(meta))); }
  readChunk(i) { return this.readFile(`${i}.bin`); }
  writeChunk(i, bytes) { return this.writeFile(`${i}.bin`, bytes); }
  deleteChunk(i) { return this.removeFile(`${i}.bin`); }
}

class OpfsEntry extends Entry {
  constructor(root, key) { super(); this.root = root; this.key = key; }
  async dir(create) {
    try {
      return await this.root.getDirectoryHandle(this.key, { create });
    } catch (e) {
      if (!create && (e.name === "NotFoundError" || e.name === "TypeMismatchError")) return null;
      throw e;
    }
  }
  async readFile(name) {
    const d = await this.dir(false);
    if (!d) return null;
    try {
      const fh = await d.getFileHandle(name);
      return new Uint8Array(await (await fh.getFile()).arrayBuffer());
    } catch (e) {
      if (e.name === "NotFoundError" || e.name === "TypeMismatchError") return null;
      throw e;
    }
  }
  async writeFile(name, bytes) {
    const d = await this.dir(true);
    const fh = await d.getFileHandle(name, { create: true });
    // createWritable writes a swap file and swaps it in on close: a crash never leaves half a chunk.
    const w = await fh.createWritable();
    try {
      await w.write(bytes);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
  }
  async removeFile(name) {
    const d = await this.dir(false);
    if (d) await d.removeEntry(name).catch(ignoreNotFound);
  }
  async destroy() { await this.root.removeEntry(this.key, { recursive: true }).catch(ignoreNotFound); }
}

class CacheApiEntry extends Entry {
  constructor(cache, key) { super(); this.cache = cache; this.key = key; }
  req(name) { return new Request(`${CACHE_URL_BASE}${this.key}/${name}`); }
  async readFile(name) {
    const res = await this.cache.match(this.req(name));
    return res ? new Uint8Array(await res.arrayBuffer()) : null;
  }
  async writeFile(name, bytes) {
    await this.cache.put(this.req(name), new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
  }
  async removeFile(name) { await this.cache.delete(this.req(name)); }
  async destroy() {
    const prefix = `${CACHE_URL_BASE}${this.key}/`;
    for (const r of await this.cache.keys()) if (r.url.startsWith(prefix)) await this.cache.delete(r);
  }
}

async function opfsRoot(create) {
  try {
    if (!globalThis.navigator?.storage?.getDirectory) return null;
    // Safari's main thread has OPFS without createWritable; use the Cache API there.
    if (typeof FileSystemFileHandle === "undefined" || !("createWritable" in FileSystemFileHandle.prototype)) return null;
    const top = await navigator.storage.getDirectory();
    if (!create) {
      try {
        await top.getDirectoryHandle(ROOT);
      } catch {
        return null;
      }
    }
    return top;
  } catch {
    return null; // e.g. private browsing
  }
}

function opfsBackend(top) {
  return {
    name: "opfs",
    entry(key) {
      // llama-webgpu-cache/ is looked up on each use (clearModelCache may remove it) and created
      // only by a write, so a rejected model leaves nothing behind.
      const lazyRoot = {
        async getDirectoryHandle(name, o) {
          return (await top.getDirectoryHandle(ROOT, { create: !!o?.create })).getDirectoryHandle(name, o);
        },
        async removeEntry(name, o) {
          return (await top.getDirectoryHandle(ROOT)).removeEntry(name, o);
        },
      };
      return new OpfsEntry(lazyRoot, key);
    },
    async keys() {
      const out = [];
      let dir;
      try {
        dir = await top.getDirectoryHandle(ROOT);
      } catch {
        return out;
      }
      for await (const [name, h] of dir.entries()) if (h.kind === "directory") out.push(name);
      return out;
    },
  };
}

function cacheApiBackend(cache) {
  return {
    name: "cache-api",
    entry: (key) => new CacheApiEntry(cache, key),
    async keys() {
      const out = [];
      for (const r of await cache.keys()) {
        if (!r.url.startsWith(CACHE_URL_BASE) || !r.url.endsWith("/meta.json")) continue;
        out.push(r.url.slice(CACHE_URL_BASE.length, -"/meta.json".length));
      }
      return out;
    },
  };
}

export async function pickBackend(mode) {
  if (mode === true || mode === "opfs") {
    const top = await opfsRoot(true);
    if (top) return opfsBackend(top);
    if (mode === "opfs") throw new LlamaWebGPUError("OPFS is not available in this context", "cache");
  }
  if (mode === true || mode === "cache-api") {
    if (globalThis.caches) return cacheApiBackend(await caches.open(CACHE_NAME));
    if (mode === "cache-api") throw new LlamaWebGPUError("the Cache API is not available in this context", "cache");
    return null; // no storage (e.g. an insecure context): load uncached, silently
  }
  throw new InvalidArgumentError(`cache must be true, false, "opfs" or "cache-api", got ${String(mode)}`);
}

async function allBackends() {
  const out = [];
  const top = await opfsRoot(false);
  if (top) out.push(opfsBackend(top));
  if (globalThis.caches && (await caches.has(CACHE_NAME))) out.push(cacheApiBackend(await caches.open(CACHE_NAME)));
  return out;
}

export async function readMetaSafe(entry) {
  try {
    const m = await entry.readMeta();
    return m && typeof m === "object" && Number.isSafeInteger(m.size) && m.size > 0 &&
      Number.isSafeInteger(m.chunkSize) && m.chunkSize > 0 && m.chunks && typeof m.chunks === "object" ? m : null;
  } catch {
    return null;
  }
}

export function metaMatches(meta, id) {
  return meta.version === META_VERSION && meta.url === id;
}

/** 64-bit FNV-1a of the URL (as two 32-bit lanes) → a directory name; meta.json holds the URL itself. */
export function keyOf(url) {
  const bytes = new TextEncoder().encode(url);
  let h1 = 0x811c9dc5;
  let h2 = 0xcbf29ce4;
  for (const c of bytes) {
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h1 >>> 7);
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

export function chunkCount(size, chunkSize) { return Math.ceil(size / chunkSize); }

function ignoreNotFound(e) {
  if (e && e.name === "NotFoundError") return;
  throw e;
}
