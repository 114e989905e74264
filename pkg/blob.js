// @ts-check
// The Blob / File source: the browser already has random access, nothing to cache.
import { AbortError, DisposedError, InvalidArgumentError } from "./errors.js";
import { checkMagic, raceAbort } from "./bytes.js";

/** @param {Blob & { name?: string }} blob a Blob, or a File (named) */
export async function openBlob(blob, /** @type {{ signal?: AbortSignal, onDownload?: (p: { loaded: number, total: number }) => void }} */ { signal, onDownload } = {}) {
  const size = blob.size;
  const head = new Uint8Array(await raceAbort(blob.slice(0, 4).arrayBuffer(), signal));
  checkMagic(head);
  let closed = false;
  let reported = 0;
  return {
    size,
    name: typeof blob.name === "string" && blob.name ? blob.name : "blob",
    url: null,
    fromCache: false,
    cacheError: null,
    async read(offset, length) {
      if (closed) throw new DisposedError("the model source was closed");
      if (signal?.aborted) throw new AbortError();
      offset = Number(offset);
      length = Number(length);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new InvalidArgumentError(`read(${offset}, ${length}) is outside the file (size ${size})`);
      }
      const bytes = new Uint8Array(await raceAbort(blob.slice(offset, offset + length).arrayBuffer(), signal));
      // Reads are mostly sequential, so the furthest byte read is a fair progress measure.
      if (onDownload && offset + length > reported) {
        reported = offset + length;
        try { onDownload({ loaded: reported, total: size }); } catch (e) { console.error(e); }
      }
      return bytes;
    },
    async close() { closed = true; },
  };
}
