// @ts-check
// The HTTP side of a URL source (loader.js): what a Range response says and whether it is the
// file's bytes (Content-Range, validators, the change test), reading a chunk's body, the probes
// that explain a failed fetch (CORS, an undecodable Content-Encoding), and the errors its retry
// loop tells apart.

import { HttpError, IntegrityError, InvalidModelError, NetworkError } from "./errors.js";

/** The server has a different file than the cached metadata (or than earlier in this load). */
export class ChangedError extends Error {
  static { this.prototype.name = "ChangedError"; }
}
/** A failure worth retrying at the same chunk (short body, dropped connection). */
export class RetriableError extends Error {
  static { this.prototype.name = "RetriableError"; }
}
/** A response body that broke off after `got` of `want` bytes. */
export class TruncatedError extends Error {
  static { this.prototype.name = "TruncatedError"; }
  constructor(chunk, got, want, cause) {
    super(`the response broke off after ${got} of ${want} bytes (${cause?.message ?? cause})`);
    this.chunk = chunk;
    this.got = got;
    this.want = want;
  }
}

/** The file name a URL ends in (its host when the path has none). */
export function nameOf(url) {
  const u = new URL(url);
  const last = u.pathname.split("/").filter(Boolean).pop();
  try {
    return last ? decodeURIComponent(last) : u.host;
  } catch {
    return last;
  }
}

export function intOrNull(s) {
  if (s == null || !/^\d+$/.test(s.trim())) return null;
  return Number(s.trim());
}

export function parseContentRange(s) {
  const m = s && /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(s);
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? null : Number(m[3]) };
}

/** The SHA-256 an ETag carries (64 hex digits, quoted or weak), or null. */
export function shaOfEtag(e) {
  const m = e && /^(?:W\/)?"?([0-9a-fA-F]{64})"?$/.exec(e.trim());
  return m ? m[1].toLowerCase() : null;
}

export function normEtag(e) { return e == null ? null : e.replace(/^W\//, ""); }

/** Different file? Size must match; then the ETag when both sides have one, else Last-Modified. */
export function differs(old, now) {
  if (now.size != null && old.size != null && now.size !== old.size) return true;
  if (old.etag && now.etag) return normEtag(old.etag) !== normEtag(now.etag);
  if (old.lastModified && now.lastModified) return old.lastModified !== now.lastModified;
  return false;
}

export async function httpError(res, url) {
  res.body?.cancel().catch(() => {});
  const text = res.statusText ? ` ${res.statusText}` : "";
  const hint = res.status === 401 || res.status === 403 ? " (the model may need authentication or accepting its license)" : "";
  return new HttpError(`HTTP ${res.status}${text} for ${url}${hint}`, res.status);
}

/**
 * Up to `max` bytes of `res`'s body (fewer when it ends early; what a server sends past `max` is
 * not chunk `chunk`'s). `onData(received, got)` sees each piece as it arrives. A body that breaks
 * off is a TruncatedError, unless `signal` was aborted.
 * @param {Response} res
 * @param {number} max
 * @param {number} chunk
 * @param {AbortSignal} signal
 * @param {(received: number, got: number) => void} onData
 */
export async function readBody(res, max, chunk, signal, onData) {
  const reader = res.body.getReader();
  const out = new Uint8Array(max);
  let got = 0;
  let done = false;
  try {
    for (;;) {
      let r;
      try {
        r = await reader.read();
      } catch (e) {
        // the body broke off (connection lost, or a server that cuts it): retried once at most
        // when it breaks at the same byte again (see the loader's retrying)
        if (signal.aborted) throw e;
        throw new TruncatedError(chunk, got, max, e);
      }
      if (r.done) { done = true; break; }
      const v = r.value;
      const k = Math.min(v.length, max - got);
      out.set(v.subarray(0, k), got);
      got += k;
      onData(v.length, got);
      if (got === max) break;
    }
  } finally {
    if (!done) reader.cancel().catch(() => {});
  }
  return got === max ? out : out.subarray(0, got);
}

/** A fetch of `url` failed with TypeError: does the server answer a HEAD ({up}), with which Content-Encoding ({enc}, other than identity)? */
export async function probe(url, signal) {
  try {
    const res = await fetch(url, { method: "HEAD", cache: "no-store", signal });
    const enc = res.headers.get("content-encoding");
    return { up: true, enc: enc && enc.trim().toLowerCase() !== "identity" ? enc : null };
  } catch {
    return { up: false, enc: null };
  }
}

/** A cross-origin fetch of `url` failed with TypeError: if a no-cors HEAD gets through, CORS is the cause. */
export async function blockedByCors(url, signal) {
  const here = globalThis.location?.origin;
  if (!here || new URL(url).origin === here) return false;
  try {
    const res = await fetch(url, { method: "HEAD", mode: "no-cors", cache: "no-store", signal });
    return res.type === "opaque";
  } catch {
    return false;
  }
}

/**
 * A file behind a URL, read a chunk at a time on a fixed grid: HTTP Range requests, or one body
 * read front to back where the server ignores Range. The responses tell its size and validators
 * (or the cache did, see reset); a response that is not the file's bytes is an IntegrityError,
 * a different file a ChangedError. One try per call: the loader retries.
 */
export class RemoteFile {
  /**
   * @param {string} url
   * @param {number} chunkSize
   * @param {AbortSignal} signal
   * @param {{ requests: number, networkBytes: number, cacheBytes: number }} stats the source's (requests and network bytes counted here)
   * @param {{ partial: (i: number, got: number) => void, passed: (j: number, bytes: Uint8Array) => void }} hooks
   *   `partial`: chunk i's bytes so far; `passed`: chunk j, read on the way to a later one
   */
  constructor(url, chunkSize, signal, stats, hooks) {
    this.url = url;
    this.signal = signal;
    this.stats = stats;
    this.hooks = hooks;
    this.chunkSize = chunkSize;
    this.size = null;
    this.validators = null; // {size, etag, lastModified, linkedEtag} the bytes must match
    this.mode = "range"; // or "stream" when the server ignores Range
    this.stream = null;
    this.streamLock = Promise.resolve();
    this.gotResponse = false; // a response arrived
    this.origin = null; // where the load's first response came from (after redirects)
  }

  /** Starts over on a grid of `chunkSize`, with the validators (and size) the cache knows, or none. */
  reset(chunkSize, validators) {
    this.stopStream();
    this.mode = "range";
    this.chunkSize = chunkSize;
    this.size = validators?.size ?? null;
    this.validators = validators;
  }

  chunkLen(i) { return this.size == null ? this.chunkSize : Math.max(0, Math.min(this.chunkSize, this.size - i * this.chunkSize)); }

  /** Chunk i, one try. */
  chunkOnce(i) {
    return this.mode === "stream" ? this.withStreamLock(() => this.streamChunkOnce(i)) : this.rangedChunkOnce(i);
  }

  async fetch(init) {
    this.stats.requests++;
    const res = await fetch(this.url, { cache: "no-store", signal: this.signal, ...init });
    this.gotResponse = true;
    return res;
  }

  async rangedChunkOnce(i) {
    const cs = this.chunkSize;
    const start = i * cs;
    const end = (this.size == null ? start + cs : Math.min(this.size, start + cs)) - 1;
    const res = await this.fetch({ headers: { Range: `bytes=${start}-${end}` } });
    if (res.status === 200) {
      // The server ignores Range: read its body sequentially from here on.
      this.mode = "stream";
      return this.withStreamLock(async () => {
        if (this.stream) res.body?.cancel().catch(() => {});
        else this.startStream(res);
        return this.streamChunkOnce(i);
      });
    }
    if (res.status === 416) {
      res.body?.cancel().catch(() => {});
      if (this.size == null) throw new InvalidModelError(`${this.url} is empty, not a GGUF model`);
      throw new ChangedError(); // the file shrank
    }
    if (res.status !== 206) throw await httpError(res, this.url);
    const bad = (why) => {
      res.body?.cancel().catch(() => {});
      throw new IntegrityError(`${this.url}: ${why}`);
    };
    this.checkResponse(res, i, bad);
    const cr = parseContentRange(res.headers.get("content-range"));
    if (cr && (cr.start !== start || cr.end < cr.start || cr.end > end || (cr.end < end && cr.total != null && cr.end !== cr.total - 1))) {
      bad(`the server answered bytes ${cr.start}-${cr.end} to a request for bytes ${start}-${end} (chunk ${i})`);
    }
    const want = end - start + 1;
    const bytes = await readBody(res, want, i, this.signal, (n, got) => {
      this.stats.networkBytes += n;
      this.hooks.partial(i, got);
    });
    let total = cr?.total ?? this.size;
    if (total == null) {
      // Content-Range not exposed cross-origin: a short first chunk is the whole file, else ask HEAD.
      total = bytes.length < want ? start + bytes.length : await this.headSize();
    }
    this.checkValidators(res.headers, total);
    const len = this.chunkLen(i);
    if (cr && cr.end - cr.start + 1 !== len) bad(`the server answered bytes ${cr.start}-${cr.end} to a request for bytes ${start}-${start + len - 1} (chunk ${i})`);
    if (bytes.length !== len) bad(`the response for bytes ${start}-${start + len - 1} (chunk ${i}) ended after ${bytes.length} bytes`);
    return bytes;
  }

  /** Headers that make a response's body not the file's bytes: a Content-Encoding, another origin. */
  checkResponse(res, i, bad) {
    const enc = res.headers.get("content-encoding");
    if (enc && enc.trim().toLowerCase() !== "identity") {
      bad(`the server sent chunk ${i} with Content-Encoding: ${enc}; a model must be served as is (identity), as byte ranges of a compressed body are not the file's bytes`);
    }
    let origin = null;
    try {
      origin = res.url ? new URL(res.url).origin : null;
    } catch {
      origin = null;
    }
    if (origin) {
      this.origin ??= origin;
      if (origin !== this.origin) {
        bad(`chunk ${i} came from ${origin} (redirected), earlier chunks from ${this.origin}; a file from two origins is refused (pass sha256 to check such a file)`);
      }
    }
  }

  async headSize() {
    const res = await this.fetch({ method: "HEAD" });
    const len = intOrNull(res.headers.get("content-length"));
    if (!res.ok || len == null) {
      throw new NetworkError(`cannot learn the size of ${this.url}: the server does not expose Content-Range ` +
        `(Access-Control-Expose-Headers) and HEAD gave no Content-Length`);
    }
    return len;
  }

  checkValidators(headers, size) {
    const v = { size, etag: headers.get("etag"), lastModified: headers.get("last-modified"), linkedEtag: headers.get("x-linked-etag") };
    if (!this.validators) {
      this.validators = v;
      this.size = size;
      return;
    }
    if (differs(this.validators, v)) throw new ChangedError();
    // Fill in what the cached metadata lacked (e.g. an ETag first exposed now).
    this.validators.etag ??= v.etag;
    this.validators.lastModified ??= v.lastModified;
    this.validators.linkedEtag ??= v.linkedEtag;
  }

  // Range-less servers: one response body read front to back. Going backwards to a chunk that is
  // neither in memory nor in the cache re-requests the file from the start.

  withStreamLock(fn) {
    const run = this.streamLock.then(fn);
    this.streamLock = run.catch(() => {});
    return run;
  }

  startStream(res) {
    const len = res.headers.get("content-encoding") ? null : intOrNull(res.headers.get("content-length"));
    if (len == null) {
      res.body?.cancel().catch(() => {});
      throw new NetworkError(`${this.url}: the server supports neither Range requests nor Content-Length, so the model size is unknown`);
    }
    this.checkValidators(res.headers, len);
    const reader = res.body.getReader();
    this.stream = { reader, pos: 0, buf: null, off: 0 };
  }

  stopStream() {
    if (this.stream) this.stream.reader.cancel().catch(() => {});
    this.stream = null;
  }

  async streamChunkOnce(i) {
    const start = i * this.chunkSize;
    if (this.stream && this.stream.pos > start) this.stopStream();
    try {
      if (!this.stream) {
        const res = await this.fetch({});
        if (res.status !== 200) throw await httpError(res, this.url);
        this.startStream(res);
      }
      while (this.stream.pos < start) {
        // Chunks before the one wanted have to be read anyway: keep them in the cache.
        const j = this.stream.pos / this.chunkSize;
        this.hooks.passed(j, await this.take(this.chunkLen(j), j));
      }
      return await this.take(this.chunkLen(i), i);
    } catch (e) {
      this.stopStream();
      throw e;
    }
  }

  async take(n, i) {
    const s = this.stream;
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!s.buf || s.off >= s.buf.length) {
        const r = await s.reader.read();
        if (r.done) break;
        s.buf = r.value;
        s.off = 0;
        this.stats.networkBytes += s.buf.length;
        continue;
      }
      const k = Math.min(n - got, s.buf.length - s.off);
      out.set(s.buf.subarray(s.off, s.off + k), got);
      s.off += k;
      got += k;
      this.hooks.partial(i, got);
    }
    s.pos += got;
    if (got < n) throw new RetriableError(`the response ended ${n - got} bytes early`);
    return out;
  }
}
