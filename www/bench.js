// Browser benchmark: load → cold first token → prefill and greedy decode rates, with the
// weight bytes every decoded token reads against the bandwidth roofline. bench/browser.mjs
// runs this page in headless chromium; results go to window.benchResult and the page.
import { loadModel, wasmMemoryBytes } from "../pkg/index.js";

const q = new URLSearchParams(location.search);
const url = q.get("model") || "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const promptTokens = Number(q.get("prompt") || 64);
const genTokens = Number(q.get("gen") || 32);
const bandwidth = q.get("bandwidth") ? Number(q.get("bandwidth")) : null;
const status = document.querySelector("[data-testid=status]");
const out = document.getElementById("result");

async function main() {
  status.textContent = `loading ${url}…`;
  const t0 = performance.now();
  let peakWasm = 0;
  const model = await loadModel(url, {
    cache: q.get("cache") === "1",
    precision: q.get("precision") || "auto",
    // ?backend=cpu|webgpu (default auto: the CPU on a software adapter such as SwiftShader)
    backend: q.get("backend") || "auto",
    // ?threads=N: CPU backend threads (more than 1 needs a cross-origin isolated page)
    threads: Number(q.get("threads") || 1),
    // ?cpuDot=exact|int8: the CPU backend's dot products; ?simd=auto|simd128: its wasm build
    cpuDot: q.get("cpuDot") || "exact",
    simd: q.get("simd") || "auto",
    // ?lead=N: part 0's weight in the CPU threads' row split (pkg/shards.js LEAD; a tuning knob)
    ...(q.get("lead") ? { shardLead: Number(q.get("lead")) } : {}),
    contextLength: promptTokens + genTokens + 8,
    onProgress: (p) => {
      peakWasm = Math.max(peakWasm, wasmMemoryBytes());
      status.textContent = `${p.phase} ${p.total > 1 ? ((100 * p.loaded) / p.total).toFixed(0) + "%" : ""}`;
    },
  });
  const loadS = (performance.now() - t0) / 1000;
  status.textContent = "running…";
  const r = await model.bench({ promptTokens, genTokens });
  const roofline = bandwidth ? (bandwidth * 1e9) / r.weight_bytes_per_token : null;
  const result = {
    model: url,
    name: model.info.name,
    quantization: model.info.quantization,
    userAgent: navigator.userAgent,
    load_s: loadS,
    peak_wasm_memory_bytes: Math.max(peakWasm, wasmMemoryBytes()),
    ...r,
    adapter: model.info.adapter,
    backend: model.info.backend,
    backend_reason: model.info.backendReason,
    threads_reason: model.info.threadsReason,
    roofline_tokens_per_s: roofline,
    fraction_of_roofline: roofline ? r.decode_tokens_per_s / roofline : null,
  };
  await model.dispose();
  const mb = (b) => (b / 1e6).toFixed(1);
  out.textContent =
    `${result.name} (${result.quantization}) on ${result.backend === "cpu" ? "the CPU backend" : "WebGPU"} ` +
    `(${result.backend_reason}): ${result.adapter}, ${result.precision}\n` +
    `load ${loadS.toFixed(2)} s, first token (pipeline compile) ${r.first_token_s.toFixed(2)} s\n` +
    `prefill ${promptTokens} tokens: ${r.prefill_tokens_per_s.toFixed(2)} tokens/s\n` +
    `decode ${genTokens} tokens: ${r.decode_tokens_per_s.toFixed(2)} tokens/s, ${mb(r.weight_bytes_per_token)} MB weights read per token ` +
    `(${(r.decode_bytes_per_s / 1e9).toFixed(2)} GB/s), ${r.dispatches_per_token} dispatches per token\n` +
    (roofline ? `bandwidth roofline ${roofline.toFixed(1)} tokens/s: decode at ${(100 * result.fraction_of_roofline).toFixed(1)}% of it\n` : "") +
    (r.shard_sync_us != null ? `${result.threads_reason}; ${r.shard_sync_us.toFixed(1)} µs per synchronisation, ${r.shard_syncs_per_token} per token\n` : "") +
    `GPU memory ${mb(r.gpu_memory_bytes)} MB, peak wasm memory ${mb(result.peak_wasm_memory_bytes)} MB\n\n` +
    JSON.stringify(result, null, 1);
  window.benchResult = result;
  status.textContent = "done";
}

main().catch((e) => {
  window.benchResult = { error: `${e.name}: ${e.message}` };
  status.textContent = `failed: ${e.name}: ${e.message}`;
});
