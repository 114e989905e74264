// @ts-check
// The HTTP side of a URL source (loader.js): what a Range response says and whether it is the
// file's bytes (Content-Range, validators, the change test), reading a chunk's body, the probes
// that explain a failed fetch (CORS, an undecodable Content-Encoding), and the errors its retry
// loop tells apart.

import { HttpError } from "./errors.js";

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
