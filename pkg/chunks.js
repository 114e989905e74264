// @ts-check
// The chunk cache of a URL source (loader.js): reads of any byte range over a fixed grid of
// chunks, each chunk loaded once however many reads want it (its promise is shared), the few most
// recently used kept in memory, and one chunk read ahead of sequential reads so the network
// overlaps the engine's work. Where a chunk comes from (browser cache, network) is the loader's.

const LRU_CHUNKS = 4; // 3 recently used + 1 read-ahead

export class ChunkCache {
  /**
   * @param {(i: number) => Promise<Uint8Array>} load fetches chunk i
   * @param {(i: number) => boolean} readable whether chunk i may be read ahead (it exists, the source is open)
   */
  constructor(load, readable) {
    this.load = load;
    this.readable = readable;
    /** @type {Map<number, Promise<Uint8Array>>} */
    this.lru = new Map();
    this.lastOffset = 0;
  }

  /** Bytes `offset..offset + length` over chunks of `chunkSize` (the caller checked the bounds). */
  async read(offset, length, chunkSize) {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const cs = chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    const forward = offset >= this.lastOffset;
    this.lastOffset = offset;
    for (let c = first; c <= last; c++) {
      const p = this.get(c);
      // Read-ahead of one chunk for sequential reads, overlapping the network with the engine.
      if (c < last || forward) this.prefetch(c + 1);
      const bytes = await p;
      const from = Math.max(offset, c * cs);
      const to = Math.min(offset + length, c * cs + bytes.length);
      out.set(bytes.subarray(from - c * cs, to - c * cs), from - offset);
    }
    return out;
  }

  prefetch(i) {
    if (!this.readable(i) || this.lru.has(i)) return;
    this.get(i).catch(() => {});
  }

  /** Chunk i, deduplicated, kept in a small LRU. */
  get(i) {
    let p = this.lru.get(i);
    if (p) {
      this.lru.delete(i);
      this.lru.set(i, p);
      return p;
    }
    p = this.load(i);
    this.lru.set(i, p);
    // A failed chunk is forgotten so a later read tries again.
    p.catch(() => { if (this.lru.get(i) === p) this.lru.delete(i); });
    while (this.lru.size > LRU_CHUNKS) this.lru.delete(this.lru.keys().next().value);
    return p;
  }

  clear() {
    this.lru.clear();
  }
}
