// @ts-check
// Hugging Face references → the URLs of a GGUF's file(s), through the Hub's public API:
//   "hf:owner/repo/path/file.gguf"  "hf:owner/repo@revision/file.gguf"  "hf:owner/repo:Q4_K_M"
//   { hfRepo, file, revision? }      { hfRepo, quant: "Q4_K_M", revision? }
// A file is fetched from `{hubUrl}/{repo}/resolve/{revision}/{file}` (the Hub redirects to its
// CDN and sends the file's SHA-256 as x-linked-etag, which the loader checks). A quant lists the
// repo (`GET {hubUrl}/api/models/{repo}/tree/{revision}?recursive=true`) and picks the GGUF
// whose name carries it; a file in several parts (`-00001-of-00003.gguf`) is a split model.
import { GatedModelError, HttpError, InvalidArgumentError, LlamaWebGPUError, ModelNotFoundError, NetworkError, toTyped } from "./errors.js";

export const HF_HUB = "https://huggingface.co";

const REPO = /^[\w.-]+\/[\w.-]+$/;

/** Whether `source` is a Hugging Face reference (a "hf:" string or an object with hfRepo). */
export function isHubRef(source) {
  return (typeof source === "string" && source.startsWith("hf:")) || (source !== null && typeof source === "object" && !Array.isArray(source) && "hfRepo" in source);
}

/** A reference → {repo, revision, file?, quant?}, or an InvalidArgumentError saying what is wrong. */
export function parseHubRef(source) {
  let ref;
  if (typeof source === "string") {
    // hf:owner/repo[@revision](/file | :QUANT)
    const m = /^hf:([^/@:]+\/[^/@:]+)(?:@([^/:]+))?(?:\/(.+)|:([\w.-]+))?$/.exec(source);
    if (!m) throw new InvalidArgumentError(`not a Hugging Face reference: ${JSON.stringify(source)} (expected "hf:owner/repo/file.gguf" or "hf:owner/repo:QUANT")`);
    ref = { repo: m[1], revision: m[2] ?? "main", file: m[3], quant: m[4] };
  } else {
    for (const k of Object.keys(source)) {
      if (!["hfRepo", "file", "quant", "revision"].includes(k)) throw new InvalidArgumentError(`loadModel: unknown field '${k}' in a Hugging Face reference (hfRepo, file, quant, revision)`);
    }
    ref = { repo: source.hfRepo, revision: source.revision ?? "main", file: source.file, quant: source.quant };
    for (const k of ["file", "quant", "revision"]) {
      if (source[k] != null && (typeof source[k] !== "string" || !source[k])) throw new InvalidArgumentError(`loadModel: ${k} must be a non-empty string, got ${JSON.stringify(source[k])}`);
    }
  }
  if (typeof ref.repo !== "string" || !REPO.test(ref.repo)) throw new InvalidArgumentError(`loadModel: hfRepo must be "owner/name", got ${JSON.stringify(ref.repo)}`);
  if ((ref.file == null) === (ref.quant == null)) throw new InvalidArgumentError(`loadModel: a Hugging Face reference names a file or a quant (such as "Q4_K_M"), one of the two`);
  if (ref.file != null && (!ref.file.toLowerCase().endsWith(".gguf") || ref.file.split("/").some((s) => !s || s === "." || s === ".."))) {
    throw new InvalidArgumentError(`loadModel: file must be a path to a .gguf file in the repo, got ${JSON.stringify(ref.file)}`);
  }
  return ref;
}

/** The resolve URL of one file of a repo. */
function resolveUrl(hub, repo, revision, file) {
  return `${hub}/${repo}/resolve/${encodeURIComponent(revision)}/${file.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * A reference → the URL(s) to load: one file (whose parts, if it is a split model's, the loader
 * finds by name), or a quant's file or parts.
 */
export async function resolveHubRef(source, /** @type {{ hubUrl?: string, signal?: AbortSignal }} */ { hubUrl = HF_HUB, signal } = {}) {
  const ref = parseHubRef(source);
  let hub;
  try {
    hub = new URL(hubUrl).href.replace(/\/+$/, "");
  } catch {
    throw new InvalidArgumentError(`hubUrl must be a URL, got ${JSON.stringify(hubUrl)}`);
  }
  if (ref.file != null) return { ...ref, urls: [resolveUrl(hub, ref.repo, ref.revision, ref.file)] };
  const files = await listRepo(hub, ref, signal);
  const files2 = pickQuant(files, ref);
  return { ...ref, files: files2, urls: files2.map((f) => resolveUrl(hub, ref.repo, ref.revision, f)) };
}

/** Every file path in the repo at the revision. */
async function listRepo(hub, ref, signal) {
  const url = `${hub}/api/models/${ref.repo}/tree/${encodeURIComponent(ref.revision)}?recursive=true`;
  let res;
  try {
    res = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (e) {
    if (e?.name === "AbortError") throw toTyped(e);
    throw new NetworkError(`could not reach the Hugging Face Hub at ${hub} (${e?.message ?? e}): offline, or blocked by CORS`);
  }
  if (!res.ok) throw hubError(res.status, `${ref.repo}@${ref.revision}`, res.headers.get("x-error-code"));
  let list;
  try {
    list = await res.json();
  } catch {
    throw new LlamaWebGPUError(`the Hub's listing of ${ref.repo} is not JSON`, "http");
  }
  if (!Array.isArray(list)) throw new LlamaWebGPUError(`the Hub's listing of ${ref.repo} is not a list of files`, "http");
  return list.filter((e) => e && e.type === "file" && typeof e.path === "string").map((e) => e.path);
}

const PART = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** The file (or the parts of the one split model) whose name carries the quant. */
function pickQuant(files, ref) {
  const q = ref.quant.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // the quant as a whole word of the name: Q4_K does not pick Q4_K_M, Q4_0 not Q4_0_4_4
  const re = new RegExp(`(^|[-_./])${q}(?=[-.]|$)`, "i");
  const ggufs = files.filter((f) => f.toLowerCase().endsWith(".gguf"));
  const hits = ggufs.filter((f) => re.test(f.replace(PART, "$1").replace(/\.gguf$/i, "")));
  // a split model's parts count as one model
  const models = new Map();
  for (const f of hits) {
    const m = PART.exec(f);
    const key = m ? `${m[1]}-of-${m[3]}` : f;
    if (!models.has(key)) models.set(key, { count: m ? Number(m[3]) : 1, parts: [] });
    models.get(key).parts.push(f);
  }
  if (models.size === 0) {
    const quants = [...new Set(ggufs.map((f) => /(?:^|[-_.])((?:I?Q\d\w*|F16|BF16|F32))(?:-\d{5}-of-\d{5})?\.gguf$/i.exec(f)?.[1]).filter(Boolean))];
    throw new ModelNotFoundError(`no GGUF file in ${ref.repo}@${ref.revision} has the quant ${ref.quant}${quants.length ? ` (it has ${quants.join(", ")})` : ggufs.length ? "" : " (it has no .gguf files)"}`);
  }
  if (models.size > 1) {
    throw new InvalidArgumentError(`several files in ${ref.repo} have the quant ${ref.quant} (${[...models.values()].map((m) => m.parts[0]).join(", ")}): name one with file`);
  }
  const [{ count, parts }] = models.values();
  return parts.sort().slice(0, Math.max(count, 1));
}

/** A Hub HTTP status → a typed error (the Hub answers 401 for a repo it does not show to anonymous users). */
export function hubError(status, what, code = null) {
  if (code === "GatedRepo" || (status === 403 && code !== "RepoNotFound")) {
    return new GatedModelError(`${what} is gated on Hugging Face (HTTP ${status}): its files need a signed-in account that accepted the model's license, and this package sends no credentials; use an ungated copy of the model`, status);
  }
  if (code === "RepoNotFound" || code === "RevisionNotFound" || code === "EntryNotFound" || status === 404) {
    return new ModelNotFoundError(`${what} was not found on Hugging Face (HTTP ${status}${code ? `, ${code}` : ""}): check the repo, the revision and the file name`, status);
  }
  if (status === 401) {
    return new GatedModelError(`${what} needs authentication on Hugging Face (HTTP 401): the repo is gated or private (or does not exist: the Hub does not say which to anonymous users)`, status);
  }
  return new HttpError(`HTTP ${status} from the Hugging Face Hub for ${what}`, status);
}

/** A load error from a resolve URL → the Hub's typed error (status only: a worker's fetch sees no more). */
export function hubLoadError(e, ref) {
  const what = `${ref.repo}@${ref.revision}${ref.file ? `/${ref.file}` : ""}`;
  if (e instanceof HttpError && [401, 403, 404].includes(e.status)) return hubError(e.status, what);
  return e;
}
