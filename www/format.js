// Number formatting for the UI (sizes, rates, durations) and a download-speed meter.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 → "1.5 KB" (decimal units, like browsers' download UIs and Hugging Face). */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "?";
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[i]}`;
}

/** Seconds → "45 s", "3 min 20 s", "1 h 5 min". */
export function formatDuration(s) {
  if (!Number.isFinite(s) || s < 0) return "?";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Parameter count → "135M", "8.0B"; strings (already formatted by the package) pass through. */
export function formatParams(n) {
  if (typeof n !== "number") return n == null ? "" : String(n);
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${Math.round(n / 1e6)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}K`;
  return String(n);
}

/** Tokens per second with sensible precision. */
export function formatRate(x) {
  if (!Number.isFinite(x) || x <= 0) return "–";
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

/**
 * Bytes-per-second over a sliding window, so the speed and ETA follow the current rate
 * instead of the average since the start (which lags badly after a stall or a resume).
 */
export class RateMeter {
  constructor(windowMs = 4000) { this.windowMs = windowMs; this.reset(); }
  reset() { this.samples = []; }
  add(bytes, t = performance.now()) {
    this.samples.push([t, bytes]);
    while (this.samples.length > 2 && t - this.samples[0][0] > this.windowMs) this.samples.shift();
  }
  /** Bytes per second, or NaN until there is enough signal. */
  rate() {
    const s = this.samples;
    if (s.length < 2) return NaN;
    const [t0, b0] = s[0];
    const [t1, b1] = s[s.length - 1];
    return t1 - t0 < 250 ? NaN : ((b1 - b0) * 1000) / (t1 - t0);
  }
}
