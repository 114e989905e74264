// @ts-check
// Model byte source for the engine: random-access reads over a URL (chunked, cached in the
// browser, resumable, retried, verified; here) or a Blob/File (blob.js). The HTTP side of a URL
// (Range requests, the Range-less stream, response checks) is range.js, the chunks held in
// memory chunks.js, the cache's storage backends storage.js, shared helpers bytes.js. Runs in a
// page or a module Web Worker, so it uses no DOM. The engine reads mostly sequential ranges of up
// to ~8 MiB; only a few chunks are held in memory, never the whole file.
//
// Cache layout (OPFS, or the Cache API where OPFS cannot write):
//   llama-webgpu-cache/<hash of url>/meta.json   {version, url, size, etag, lastModified,
//                                                chunkSize, chunks: {index: checksum}, lastUsed}
//   llama-webgpu-cache/<hash of url>/<index>.bin one file per chunk of the fixed chunk grid
// A chunk is written first and listed in meta.json after, so an interrupted download leaves only
// listed, complete chunks; the next open of the same URL fetches just the missing ones.
//
// Integrity: with an expected SHA-256 (the `sha256` option, else a 64-hex-digit x-linked-etag or
// ETag from the server) the chunks are hashed in file order as they arrive (@noble/hashes,
// incremental, ~130-150 MiB/s in V8) and verify() finishes the digest at the end of the load; a
// match is kept in meta.json (sha256), so a complete cached copy is not hashed again. A chunk
// whose Content-Range or length disagrees with the request, a Content-Encoding, a response from
// another origin than the load's first, or a body cut at the same byte twice is an IntegrityError
// at once, never retried.
//
// Quota: when the storage estimate says the model cannot fit, or a write fails with a quota
// error, caching stops for this load and the load continues from the network. The
// QuotaExceededError is then on `source.cacheError` and passed to `onCacheError`; chunks already
// written stay (listCachedModels shows them as incomplete; deleteCachedModel frees them).

import { sha256 as sha256Hasher } from "./vendor/noble-hashes/sha2.js";
import {
  AbortError,
  DisposedError,
  HttpError,
  IntegrityError,
  InvalidArgumentError,
  LlamaWebGPUError,
  NetworkError,
  QuotaExceededError,
  SplitModelError,
  toTyped,
} from "./errors.js";
import { openBlob } from "./blob.js";
import { ChunkCache } from "./chunks.js";
import { blockedByCors, ChangedError, differs, intOrNull, nameOf, probe, RemoteFile, RetriableError, shaOfEtag, TruncatedError } from "./range.js";
import { checkMagic, normalizeUrl, raceAbort, sleep } from "./bytes.js";
import { chunkCount, keyOf, META_VERSION, metaMatches, pickBackend, readMetaSafe, serial, serialTail } from "./storage.js";

export { listCachedModels, deleteCachedModel, clearModelCache } from "./storage.js";

const MAX_PENDING_WRITES = 2; // cache writes queued before network fetching waits for them
const REVALIDATE_TIMEOUT_MS = 3000;

/**
 * @param {string|URL|Blob} source
 * @param {{cache?: boolean|"opfs"|"cache-api", signal?: AbortSignal, chunkSize?: number,
 *          onDownload?: (p: {loaded: number, total: number}) => void, retries?: number,
 *          cacheKey?: string, onCacheError?: (e: Error) => void, sha256?: string}} [opts]
 */
export async function openSource(source, opts = {}) {
  const { signal } = opts;
  if (signal?.aborted) throw new AbortError();
  if (typeof Blob !== "undefined" && source instanceof Blob) return openBlob(source, opts);
  if (typeof source === "string" || source instanceof URL) {
    const src = new UrlSource(source, opts);
    try {
      await raceAbort(src.init(), signal);
    } catch (e) {
      await src.close().catch(() => {});
      throw toTyped(e);
    }
    return src.handle();
  }
  throw new InvalidArgumentError("model source must be a URL string, a URL, a Blob or a File");
}

/**
 * A split GGUF's parts (URLs or Blobs) as one byte source: laid end to end in the order given
 * (the engine reads each part's header and orders them by `split.no`), each opened, cached and
 * resumed on its own, under its own URL; opened in parallel. `partSizes` tells the engine where
 * each part starts. A part the server does not have is a SplitModelError naming it.
 */
export async function openSources(sources, opts = {}) {
  if (sources.length === 1) return openSource(sources[0], opts);
  if (opts.sha256 != null) throw new InvalidArgumentError("sha256 names one file's digest; a model in several parts is checked part by part (by each server's x-linked-etag / ETag)");
  const n = sources.length;
  const loaded = new Array(n).fill(0);
  const totals = new Array(n).fill(0);
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const onDownload = (i) => ({ loaded: l, total: t }) => {
    loaded[i] = l;
    totals[i] = t;
    opts.onDownload?.({ loaded: sum(loaded), total: sum(totals) });
  };
  const settled = await Promise.allSettled(sources.map((src, i) => openSource(src, { ...opts, cacheKey: undefined, onDownload: onDownload(i) })));
  const failed = settled.findIndex((r) => r.status === "rejected");
  if (failed >= 0) {
    for (const r of settled) if (r.status === "fulfilled") await r.value.close?.().catch(() => {});
    const e = toTyped(/** @type {PromiseRejectedResult} */ (settled[failed]).reason);
    const which = typeof sources[failed] === "string" || sources[failed] instanceof URL ? String(sources[failed]) : sources[failed]?.name || "a Blob";
    if (e.status === 404 || e.status === 410) throw new SplitModelError(`part ${failed + 1} of ${n} of the split model is missing: ${which} (HTTP ${e.status})`);
    throw e;
  }
  const parts = settled.map((r) => /** @type {PromiseFulfilledResult<any>} */ (r).value);
  const starts = [];
  let size = 0;
  for (const p of parts) {
    starts.push(size);
    size += p.size;
  }
  const read = async (offset, length) => {
    offset = Number(offset);
    length = Number(length);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new InvalidArgumentError(`read(${offset}, ${length}) is outside the file (size ${size})`);
    }
    const out = new Uint8Array(length);
    let at = offset;
    while (at < offset + length) {
      // the part holding byte `at` (an empty one holds none)
      let i = 0;
      while (at >= starts[i] + parts[i].size) i++;
      const n = Math.min(offset + length, starts[i] + parts[i].size) - at;
      out.set(await parts[i].read(at - starts[i], n), at - offset);
      at += n;
    }
    return out;
  };
  return {
    size,
    partSizes: parts.map((p) => p.size),
    name: parts[0].name,
    url: parts[0].url,
    urls: parts.map((p) => p.url ?? p.name),
    get fromCache() { return parts.every((p) => p.fromCache); },
    get cacheError() { return parts.find((p) => p.cacheError)?.cacheError ?? null; },
    read,
    verify: async () => { for (const p of parts) await p.verify?.(); },
    close: async () => { await Promise.all(parts.map((p) => p.close?.().catch(() => {}))); },
  };
}


// ---------------------------------------------------------------------------------------------
// URL source

class UrlSource {
  constructor(source, opts) {
    const { cache = true, signal, chunkSize = 8 << 20, onDownload, retries = 5, cacheKey, onCacheError, sha256 } = opts;
    if (sha256 != null && !(typeof sha256 === "string" && /^[0-9a-f]{64}$/i.test(sha256))) {
      throw new InvalidArgumentError(`sha256 must be 64 hex digits, got ${JSON.stringify(String(sha256)).slice(0, 80)}`);
    }
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1024) throw new InvalidArgumentError(`chunkSize must be an integer >= 1024, got ${chunkSize}`);
    if (!Number.isInteger(retries) || retries < 0) throw new InvalidArgumentError(`retries must be an integer >= 0, got ${retries}`);
    if (![true, false, "opfs", "cache-api"].includes(cache)) throw new InvalidArgumentError(`cache must be true, false, "opfs" or "cache-api", got ${String(cache)}`);
    this.url = normalizeUrl(source);
    this.key = keyOf(cacheKey ?? this.url);
    this.cacheId = cacheKey ?? this.url;
    this.name = nameOf(this.url);
    this.cacheMode = cache;
    this.defaultChunkSize = chunkSize;
    this.retries = retries;
    this.onDownload = onDownload;
    this.onCacheError = onCacheError;
    this.userSignal = signal;
    // One controller for everything in flight: the caller's signal and close() both abort it.
    this.ac = new AbortController();
    this.onUserAbort = () => this.ac.abort(signal.reason);
    signal?.addEventListener("abort", this.onUserAbort, { once: true });
    this.closed = false;
    this.entry = null; // cache entry (backend-specific), null when not caching
    this.cacheOn = false; // writes allowed
    this.cacheError = null;
    this.meta = null;
    this.chunks = new ChunkCache((i) => this.loadChunk(i), (i) => !this.closed && this.size != null && i < this.nChunks());
    // Chunks fetched but not yet in the cache (writes are queued): a read that comes back to one
    // after the LRU dropped it takes these bytes instead of the network.
    this.unwritten = new Map();
    this.completeAtOpen = false;
    this.opened = false;
    this.quotaCheck = null;
    this.corsChecked = false;
    this.pendingWrites = 0;
    this.progress = { counted: new Set(), obtained: 0, partial: new Map(), reported: 0, lastEmit: 0 };
    this.stats = { networkBytes: 0, cacheBytes: 0, requests: 0 };
    this.remote = new RemoteFile(this.url, chunkSize, this.ac.signal, this.stats, {
      partial: (i, got) => this.chunkPartial(i, got),
      // read on the way to a later chunk (a Range-less server): counted, hashed, cached like any
      passed: (j, bytes) => {
        if (this.meta?.chunks[j] != null) {
          this.chunkObtained(j, bytes.length);
          this.feed(j, bytes);
        } else {
          this.accept(j, bytes);
        }
      },
    });
    this.expectedSha = sha256 ? sha256.toLowerCase() : null;
    this.digest = null; // the running SHA-256 (see feed), once the expected digest is known
    this.integrityError = null; // once set, every read fails with it
    this.truncated = new Map(); // chunk → bytes its last response body broke off at
    this.unreadable = new Map(); // chunk → fetches in a row that failed while the server answered HEAD
  }

  /** The public object: {size, name, url, fromCache, cacheError, stats, read, close}. */
  handle() {
    const self = this;
    return {
      get size() { return self.size; },
      name: this.name,
      url: this.url,
      /** True while every byte so far came from a complete cache entry. */
      get fromCache() { return self.completeAtOpen && self.stats.networkBytes === 0; },
      get cacheError() { return self.cacheError; },
      stats: this.stats,
      read: (offset, length) => this.read(offset, length),
      /** Finishes the SHA-256 check (reading what the engine skipped); rejects with an IntegrityError on a mismatch. */
      verify: () => this.verify(),
      /** The verified SHA-256 (hex), or null when none was expected. */
      get sha256() { return self.digest?.verified ?? null; },
      close: () => this.close(),
    };
  }

  async init() {
    await this.openCache();
    let meta = this.entry ? await readMetaSafe(this.entry) : null;
    if (meta && !metaMatches(meta, this.cacheId)) {
      await this.dropEntry();
      meta = null;
    }
    // Two passes at most: if the server's copy differs from the cached one, the cache is dropped
    // and the second pass starts fresh. Nothing has been handed to the engine yet, so it is safe.
    for (let pass = 0; ; pass++) {
      this.useMeta(meta);
      try {
        if (meta && this.isComplete()) {
          if (await this.changedOnServer(meta)) throw new ChangedError();
          this.completeAtOpen = true;
        }
        const c0 = await this.chunks.get(0);
        checkMagic(c0); // cached chunk 0 (a fetched one was checked on arrival)
        if (meta && !this.completeAtOpen && !this.gotResponse) {
          // A partial cache: fetch the first missing chunk now. It is needed soon anyway, and its
          // validators tell whether the cached chunks still belong to the file on the server.
          await this.chunks.get(this.firstMissing());
        }
        break;
      } catch (e) {
        if (!(e instanceof ChangedError)) throw e;
        await this.dropEntry();
        if (pass > 0) throw new NetworkError(`${this.url} changed on the server during the download; open it again`);
        meta = null;
      }
    }
    if (this.meta && this.cacheOn) {
      this.meta.lastUsed = Date.now();
      this.queueWrite(() => this.entry.writeMeta(this.meta));
    }
    this.opened = true;
  }

  useMeta(meta) {
    this.meta = meta;
    this.chunks.clear();
    this.completeAtOpen = false;
    // the cached grid wins over the requested chunk size
    if (meta) this.remote.reset(meta.chunkSize, { size: meta.size, etag: meta.etag, lastModified: meta.lastModified });
    else this.remote.reset(this.defaultChunkSize, null);
  }

  async openCache() {
    if (!this.cacheMode) return;
    try {
      const backend = await pickBackend(this.cacheMode);
      if (!backend) return;
      this.entry = backend.entry(this.key);
      this.cacheOn = true;
    } catch (e) {
      this.cacheFailed(e);
    }
  }

  async dropEntry() {
    if (!this.entry) return;
    const entry = this.entry;
    await serial(this.key, () => entry.destroy()).catch(() => {});
  }

  /** Best-effort HEAD: true only when the server positively reports a different file. Offline → false. */
  async changedOnServer(meta) {
    const ac = new AbortController();
    const stop = () => ac.abort();
    this.ac.signal.addEventListener("abort", stop, { once: true });
    const timer = setTimeout(stop, REVALIDATE_TIMEOUT_MS);
    try {
      const res = await fetch(this.url, { method: "HEAD", cache: "no-store", signal: ac.signal });
      if (!res.ok) return false;
      const h = res.headers;
      const len = h.get("content-encoding") ? null : intOrNull(h.get("content-length"));
      return differs(meta, { size: len, etag: h.get("etag"), lastModified: h.get("last-modified") });
    } catch {
      this.throwIfAborted();
      return false;
    } finally {
      clearTimeout(timer);
      this.ac.signal.removeEventListener("abort", stop);
    }
  }

  async checkQuota() {
    try {
      const est = await globalThis.navigator?.storage?.estimate?.();
      if (!est || !est.quota) return;
      const need = this.size - this.cachedBytes();
      const free = est.quota - (est.usage || 0);
      if (need > free) {
        this.cacheFailed(new QuotaExceededError(
          `not enough browser storage to cache this model (${mb(need)} needed, ${mb(free)} available); loading without caching`));
      }
    } catch {
      // no estimate: find out when writing
    }
  }

  cachedBytes() {
    if (!this.meta) return 0;
    let n = 0;
    for (const k of Object.keys(this.meta.chunks)) n += this.chunkLen(Number(k));
    return n;
  }

  cacheFailed(e) {
    const err = toTyped(e);
    this.cacheOn = false;
    if (this.cacheError) return;
    this.cacheError = err instanceof QuotaExceededError ? err : new LlamaWebGPUError(`model cache disabled for this load: ${err.message}`, "cache");
    console.warn(`llama-webgpu: ${this.cacheError.message}`);
    try { this.onCacheError?.(this.cacheError); } catch (cbErr) { console.error(cbErr); }
  }

  // --- reading -------------------------------------------------------------------------------

  async read(offset, length) {
    if (this.closed) throw new DisposedError("the model source was closed");
    if (this.integrityError) throw this.integrityError;
    offset = Number(offset);
    length = Number(length);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read(${offset}, ${length}) is outside the file (size ${this.size})`);
    }
    try {
      return await raceAbort(this.chunks.read(offset, length, this.chunkSize), this.ac.signal);
    } catch (e) {
      if (this.closed) throw new DisposedError("the model source was closed");
      throw toTyped(e);
    }
  }

  /** Chunk i from the cache, the queued writes or the network (the chunk cache's loader). */
  async loadChunk(i) {
    this.throwIfAborted();
    const unwritten = this.unwritten.get(i);
    if (unwritten) return unwritten;
    if (this.meta && this.meta.chunks[i] != null && this.entry) {
      const bytes = await this.readCached(i);
      if (bytes) {
        this.stats.cacheBytes += bytes.length;
        this.chunkObtained(i, bytes.length);
        this.feed(i, bytes);
        return bytes;
      }
    }
    await this.writeBackpressure();
    const bytes = await this.retrying(`chunk ${i}`, () =>
      this.remote.chunkOnce(i));
    this.accept(i, bytes);
    return bytes;
  }

  /** A chunk from the cache, verified (size and checksum); a bad one is evicted → null. */
  async readCached(i) {
    let bytes = null;
    try {
      bytes = await this.entry.readChunk(i);
    } catch {
      bytes = null;
    }
    if (bytes && bytes.length === this.chunkLen(i) && checksum(bytes) === this.meta.chunks[i]) return bytes;
    console.warn(`llama-webgpu: cached chunk ${i} of ${this.url} is ${bytes ? "corrupt" : "missing"}; fetching it again`);
    const meta = this.meta;
    delete meta.chunks[i];
    this.completeAtOpen = false;
    const entry = this.entry;
    this.queueWrite(async () => {
      await entry.deleteChunk(i).catch(() => {});
      if (this.meta === meta) await entry.writeMeta(meta);
    }, true);
    return null;
  }

  /** A chunk that came from the network: magic check, progress, cache write. */
  accept(i, bytes) {
    if (i === 0) checkMagic(bytes);
    this.chunkObtained(i, bytes.length);
    this.feed(i, bytes);
    this.store(i, bytes);
  }

  // --- integrity -----------------------------------------------------------------------------

  /** The expected SHA-256 and where it came from, or null. */
  expected() {
    const fromServer = shaOfEtag(this.validators?.linkedEtag) ?? shaOfEtag(this.validators?.etag);
    if (this.expectedSha && fromServer && fromServer !== this.expectedSha) {
      this.fail(`${this.url}: the server's ETag names SHA-256 ${fromServer}, not the expected ${this.expectedSha}`);
    }
    if (this.expectedSha) return { hex: this.expectedSha, from: "the sha256 option" };
    return fromServer ? { hex: fromServer, from: "the server's ETag" } : null;
  }

  /** An IntegrityError: every later read fails with it, and the cached copy is dropped. */
  fail(message) {
    const e = new IntegrityError(message);
    if (!this.integrityError) {
      this.integrityError = e;
      this.cacheOn = false;
      this.dropEntry();
    }
    throw e;
  }

  /** Chunk i's bytes into the SHA-256, in file order (a few chunks ahead of it are held). */
  feed(i, bytes) {
    if (this.size == null) return;
    if (!this.digest) {
      const exp = this.expected();
      if (!exp) {
        this.digest = { off: true };
      } else if (this.meta?.sha256 === exp.hex && this.completeAtOpen) {
        this.digest = { off: true, verified: exp.hex }; // this cached copy was verified before
      } else {
        this.digest = { exp, h: sha256Hasher.create(), next: 0, pending: new Map(), verified: null };
      }
    }
    const d = this.digest;
    if (d.off || d.verified || i < d.next) return;
    if (i > d.next) {
      if (d.pending.size < 2) d.pending.set(i, bytes); // else verify() reads it again
      return;
    }
    d.h.update(bytes);
    d.next++;
    while (d.pending.has(d.next)) {
      d.h.update(d.pending.get(d.next));
      d.pending.delete(d.next++);
    }
    if (d.next < this.nChunks()) return;
    const got = [...d.h.digest()].map((b) => b.toString(16).padStart(2, "0")).join("");
    d.pending.clear();
    if (got !== d.exp.hex) this.fail(`${this.url}: the SHA-256 of the downloaded file is ${got}, not ${d.exp.hex} (${d.exp.from}); the cached copy was dropped`);
    d.verified = got;
    if (this.meta && this.cacheOn) {
      this.meta.sha256 = got;
      const meta = this.meta;
      this.queueWrite(() => this.entry.writeMeta(meta));
    }
  }

  /** Completes the SHA-256 over every chunk (those the engine did not read, or read out of order, are read again). */
  async verify() {
    if (this.integrityError) throw this.integrityError;
    if (this.size == null) return;
    if (!this.digest) this.feed(-1, null);
    const d = this.digest;
    while (!d.off && !d.verified) {
      const i = d.next;
      const bytes = await raceAbort(this.chunks.get(i), this.ac.signal);
      this.feed(i, bytes);
    }
  }

  store(i, bytes) {
    if (!this.cacheOn || !this.entry || this.size == null) return;
    if (!this.meta) {
      const v = this.validators;
      this.meta = { version: META_VERSION, url: this.cacheId, size: this.size, etag: v?.etag ?? null, lastModified: v?.lastModified ?? null,
        chunkSize: this.chunkSize, chunks: {}, lastUsed: Date.now() };
    }
    if (this.meta.chunks[i] != null) return;
    this.meta.etag ??= this.validators?.etag ?? null;
    this.meta.lastModified ??= this.validators?.lastModified ?? null;
    const meta = this.meta;
    const entry = this.entry;
    const sum = checksum(bytes);
    this.unwritten.set(i, bytes);
    this.queueWrite(async () => {
      // Before the first chunk write: does the rest of the model fit at all?
      await (this.quotaCheck ??= this.checkQuota());
      if (!this.cacheOn || this.meta !== meta) return;
      await entry.writeChunk(i, bytes);
      meta.chunks[i] = sum;
      meta.lastUsed = Date.now();
      await entry.writeMeta(meta);
    }).finally(() => this.unwritten.delete(i));
  }

  /** Cache writes run one at a time per cache entry (across sources of this realm). */
  queueWrite(fn, always = false) {
    this.pendingWrites++;
    return serial(this.key, async () => {
      if (!always && !this.cacheOn) return;
      try {
        await fn();
      } catch (e) {
        this.cacheFailed(e);
      }
    }).finally(() => this.pendingWrites--);
  }

  async writeBackpressure() {
    // Writing to the cache slower than the network must not pile chunks up in memory.
    while (this.pendingWrites > MAX_PENDING_WRITES) await (serialTail(this.key) ?? sleep(10, this.ac.signal));
  }

  // --- network -------------------------------------------------------------------------------

  async retrying(what, once) {
    let delay = 500;
    for (let attempt = 0; ; attempt++) {
      this.throwIfAborted();
      try {
        return await once();
      } catch (e) {
        this.throwIfAborted();
        if (e instanceof IntegrityError) {
          if (!this.integrityError) {
            this.integrityError = e;
            this.cacheOn = false;
            await this.dropEntry();
          }
          throw e;
        }
        if (e instanceof TruncatedError) {
          // the same chunk's body broke off at the same byte again: the server sends it that way
          if (this.truncated.get(e.chunk) === e.got) {
            const err = new IntegrityError(`${this.url}: the response for ${what} breaks off after ${e.got} of ${e.want} bytes, the same way twice (a truncated file or a broken server)`);
            this.integrityError = err;
            throw err;
          }
          this.truncated.set(e.chunk, e.got);
        }
        if (e instanceof ChangedError) {
          if (!this.opened) throw e; // init() starts over with a fresh cache
          this.cacheOn = false;
          await this.dropEntry();
          throw new NetworkError(`${this.url} changed on the server during the download; open it again`);
        }
        const retriable = e instanceof RetriableError || e instanceof TypeError || e instanceof TruncatedError ||
          (e instanceof HttpError && (e.status >= 500 || e.status === 408 || e.status === 429)) ||
          (e && e.name === "AbortError"); // a transport-level abort that was not ours
        if (!retriable) throw e;
        if (e instanceof TypeError && this.gotResponse) {
          // The server answered before, yet this fetch failed: if it still answers a HEAD, the
          // browser could not read this response (a body it failed to decode, such as a bogus
          // Content-Encoding: the fetch fails with no response to look at). Twice in a row → refused.
          const head = await probe(this.url, this.ac.signal);
          if (head.enc) this.fail(`${this.url}: the server sends ${what} with Content-Encoding: ${head.enc}; a model must be served as is (identity), as byte ranges of a compressed body are not the file's bytes`);
          if (head.up) {
            const n = (this.unreadable.get(what) ?? 0) + 1;
            this.unreadable.set(what, n);
            if (n >= 2) this.fail(`${this.url}: the server answers, but twice the browser could not read its response for ${what} (${e.message}); a Content-Encoding it fails to decode (ERR_CONTENT_DECODING_FAILED) does this`);
          }
        }
        if (e instanceof TypeError && !this.gotResponse && !this.corsChecked) {
          this.corsChecked = true;
          if (await blockedByCors(this.url, this.ac.signal)) {
            throw new NetworkError(`fetching ${this.url} was blocked by CORS: the server answers, but without ` +
              `Access-Control-Allow-Origin for ${globalThis.location?.origin ?? "this origin"} (it must also allow the Range header ` +
              `and expose Content-Range). Serve the model with CORS headers, or from this origin.`);
          }
        }
        if (attempt >= this.retries) {
          if (e instanceof HttpError) throw e;
          const why = e instanceof TypeError && !this.gotResponse
            ? "the server may be down or unreachable, or the request was blocked by CORS"
            : "the connection kept failing";
          throw new NetworkError(`failed to fetch ${what} of ${this.url} after ${attempt + 1} attempt(s) (${e.message}); ${why}`);
        }
        await sleep(delay, this.ac.signal);
        delay = Math.min(delay * 2, 8000);
      }
    }
  }

  // --- progress ------------------------------------------------------------------------------

  chunkPartial(i, bytes) {
    const p = this.progress;
    if (p.counted.has(i)) return;
    p.partial.set(i, bytes);
    const now = Date.now();
    if (now - p.lastEmit >= 100) this.emitProgress(now);
  }

  chunkObtained(i, len) {
    const p = this.progress;
    p.partial.delete(i);
    if (p.counted.has(i)) return;
    p.counted.add(i);
    p.obtained += len;
    this.emitProgress(Date.now());
  }

  emitProgress(now) {
    const p = this.progress;
    if (!this.onDownload || this.size == null) return;
    let loaded = p.obtained;
    for (const b of p.partial.values()) loaded += b;
    loaded = Math.min(loaded, this.size);
    if (loaded <= p.reported) return; // monotonic: the partial bytes of a retried chunk don't count twice
    p.reported = loaded;
    p.lastEmit = now;
    try {
      this.onDownload({ loaded, total: this.size });
    } catch (e) {
      console.error(e);
    }
  }

  // --- helpers -------------------------------------------------------------------------------

  /** What the responses (or the cache) said of the file: its size and validators, and the chunk grid. */
  get size() { return this.remote.size; }
  get validators() { return this.remote.validators; }
  get chunkSize() { return this.remote.chunkSize; }
  /** A response arrived, so a later TypeError is not CORS. */
  get gotResponse() { return this.remote.gotResponse; }
  nChunks() { return chunkCount(this.size, this.chunkSize); }
  chunkLen(i) { return this.remote.chunkLen(i); }
  isComplete() { return Object.keys(this.meta.chunks).length === this.nChunks(); }
  firstMissing() {
    const n = this.nChunks();
    for (let i = 0; i < n; i++) if (this.meta.chunks[i] == null) return i;
    return 0;
  }

  throwIfAborted() {
    if (this.closed) throw new DisposedError("the model source was closed");
    if (this.ac.signal.aborted) throw new AbortError();
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    this.userSignal?.removeEventListener("abort", this.onUserAbort);
    this.ac.abort();
    this.remote.stopStream();
    this.chunks.clear();
    // Let queued cache writes of chunks already fetched land, so the next open finds them.
    await serialTail(this.key)?.catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/**
 * 32-bit checksum of a chunk: FNV-1a-style multiply/xor over 32-bit words in two lanes, with a
 * rotation so high bits feed back into low ones. ~10x faster than a byte-wise CRC32 in JS; meant
 * to catch truncated or damaged cache files, not tampering.
 */
function checksum(bytes) {
  const n = bytes.length;
  const words = n >>> 2;
  const u32 = bytes.byteOffset % 4 === 0
    ? new Uint32Array(bytes.buffer, bytes.byteOffset, words)
    : new Uint32Array(bytes.slice(0, words * 4).buffer);
  let a = 0x811c9dc5 ^ n;
  let b = 0x9e3779b9;
  let i = 0;
  for (; i + 1 < words; i += 2) {
    a = Math.imul(a ^ u32[i], 0x01000193);
    a = (a << 13) | (a >>> 19);
    b = Math.imul(b ^ u32[i + 1], 0x5bd1e995);
    b = (b << 15) | (b >>> 17);
  }
  if (i < words) a = Math.imul(a ^ u32[i], 0x01000193);
  for (let j = words * 4; j < n; j++) b = Math.imul(b ^ bytes[j], 0x5bd1e995);
  let h = a ^ Math.imul(b, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}

function mb(n) { return `${(n / (1 << 20)).toFixed(1)} MiB`; }


