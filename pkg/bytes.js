// @ts-check
// Helpers shared by the byte sources (loader.js, blob.js, storage.js): the GGUF magic check,
// abortable waits, URL normalisation.
import { AbortError, InvalidArgumentError, InvalidModelError } from "./errors.js";

export function checkMagic(bytes) {
  if (bytes.length < 4 || bytes[0] !== 0x47 || bytes[1] !== 0x47 || bytes[2] !== 0x55 || bytes[3] !== 0x46) {
    const text = new TextDecoder().decode(bytes.subarray(0, 16)).replace(/[^\x20-\x7e]/g, ".");
    const hint = /^\s*</.test(text) ? " (looks like an HTML page: wrong URL, or a login/error page?)" : "";
    throw new InvalidModelError(`not a GGUF file: it starts with "${text}"${hint}`);
  }
}

/** Reject with AbortError as soon as `signal` aborts, even if `p` is stuck in a non-abortable step. */
export function raceAbort(p, signal) {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new AbortError());
  let onAbort;
  const aborted = new Promise((_, reject) => {
    onAbort = () => reject(new AbortError());
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

export function sleep(ms, signal) {
  return new Promise(/** @param {(v?: undefined) => void} resolve */ (resolve, reject) => {
    if (signal.aborted) return reject(new AbortError());
    const onAbort = () => {
      clearTimeout(t);
      reject(new AbortError());
    };
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function normalizeUrl(source) {
  let u;
  try {
    u = new URL(String(source), globalThis.location?.href);
  } catch {
    throw new InvalidArgumentError(`not a valid URL: ${String(source)}`);
  }
  u.hash = "";
  return u.href;
}
