// Models offered in the picker. The default is served by `npm run demo` from the local
// SmolLM2 install; the Llama presets are bartowski's public, ungated GGUF conversions on
// Hugging Face, whose `resolve` URLs send CORS headers and support Range requests (a preset
// may name its file by an hf: reference, which the package resolves the same way).

export const PRESETS = [
  {
    id: "smollm2-135m",
    label: "SmolLM2 135M Instruct (local)",
    path: "../models/SmolLM2-135M-Instruct.Q4_1.gguf", // relative to the page, see modelUrl()
    quant: "Q4_1",
    size: 98_362_432,
    note: "Served by npm run demo. Tiny and quick to load; good for trying things out, not for facts.",
  },
  {
    id: "llama-3.2-1b",
    label: "Llama 3.2 1B Instruct",
    url: "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    quant: "Q4_K_M",
    size: 0.81e9,
    note: "Downloaded once from Hugging Face, then kept in browser storage. Runs on most recent GPUs.",
  },
  {
    id: "llama-3.2-3b",
    label: "Llama 3.2 3B Instruct",
    url: "https://huggingface.co/bartowski/Llama-3.2-3B-Instruct-GGUF/resolve/main/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
    quant: "Q4_K_M",
    size: 2.02e9,
    note: "Downloaded once from Hugging Face, then kept in browser storage. Better answers; needs a few GB of free GPU memory.",
  },
  {
    id: "llama-3.1-8b",
    label: "Llama 3.1 8B Instruct",
    url: "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/resolve/main/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    quant: "Q4_K_M",
    size: 4.92e9,
    note: "Downloaded once from Hugging Face, then kept in browser storage. Best answers; needs a desktop-class GPU (8 GB or more recommended).",
  },
  {
    id: "llama-3.1-8b-q3",
    label: "Llama 3.1 8B Instruct",
    url: "hf:bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q3_K_M.gguf",
    quant: "Q3_K_M",
    size: 4.02e9,
    note: "Downloaded once from Hugging Face, then kept in browser storage. The 8B in less memory (fits 8 GB devices); a little below Q4_K_M in quality.",
  },
];

export const DEFAULT_PRESET = PRESETS[0];

/** Absolute URL of a preset (workers resolve relative URLs against their own script), or its hf: reference. */
export function presetUrl(preset, base = document.baseURI) {
  if (preset.url?.startsWith("hf:")) return preset.url;
  return new URL(preset.url || preset.path, base).href;
}

/** The URL a source is cached under: an hf:owner/repo/file reference's resolve URL on the Hub. */
export function cachedUrl(url) {
  const m = /^hf:([^/@:]+\/[^/@:]+)\/(.+\.gguf)$/i.exec(url);
  return m ? `https://huggingface.co/${m[1]}/resolve/main/${m[2]}` : url;
}

export function presetForUrl(url) {
  return PRESETS.find((p) => presetUrl(p) === url) || null;
}

/** A file name for display: the last path segment of a URL, decoded. */
export function nameFromUrl(url) {
  try {
    const seg = new URL(url).pathname.split("/").filter(Boolean).pop() || url;
    return decodeURIComponent(seg);
  } catch {
    return String(url);
  }
}
