// A model larger than one wasm memory on the CPU backend in headless chromium (issue #24):
// loads a GGUF through the package's test build with `backend: "cpu"` and `threads` row shards
// (the engine in tests/browser/instances-worker.mjs, on a cross-origin isolated page), greedy-
// decodes a few tokens of a prompt through the model's tokenizer, runs the engine's bench
// (prefill and decode tok/s), and prints one JSON line with each wasm instance's peak memory
// (engine, then shards) and weight bytes. The model is served by the tests' server (HTTP
// Range reads), so it must lie under the repo (a symlink will do):
//   target/release/llama-webgpu synth --shape llama3-8b --type q4_k_m --tokenizer $LLAMA3_TOKENIZER_JSON \
//     --out /tmp/llama-webgpu-synth-llama3-8b-q4_k_m.gguf
//   ln -sf /tmp/llama-webgpu-synth-llama3-8b-q4_k_m.gguf tests/.cache/8b-q4_k_m.gguf
//   node bench/browser-8b-cpu.mjs --model /tests/.cache/8b-q4_k_m.gguf [--threads 2] [--gen 4] [--bench 4,4] [--context N] [--kv f32] [--cpu-dot int8]
import { inInstancesWorker, ISOLATION, launch } from "../tests/browser/harness.mjs";
import { startServer } from "../tests/browser/server.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : d);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const server = await startServer({ root: ROOT, headers: ISOLATION });
const browser = await launch();
try {
  const page = await browser.page();
  page.setDefaultTimeout(0);
  await page.goto(`${server.origin}/tests/browser/page.html`);
  const [bp, bg] = opt("bench", "4,4").split(",").map(Number);
  const context = opt("context", null);
  const msg = {
    url: opt("model"),
    options: { backend: "cpu", cache: false, threads: Number(opt("threads", "2")), ...(context ? { contextLength: Number(context) } : {}), ...(opt("kv") ? { kvType: opt("kv") } : {}), ...(opt("cpu-dot") ? { cpuDot: opt("cpu-dot") } : {}) },
    generate: { text: opt("prompt", "The capital of France is"), tokens: Number(opt("gen", "4")) },
    bench: bg > 0 ? { prompt: bp, gen: bg } : null,
  };
  const r = await inInstancesWorker(page, msg);
  if (r.type !== "done") {
    console.log(JSON.stringify(r));
    console.log(browser.logs.slice(-20).join("\n"));
    process.exitCode = 1;
  } else {
    const gib = (b) => +(b / 2 ** 30).toFixed(3);
    console.log(
      JSON.stringify({
        model: msg.url,
        threads: r.info.threads,
        context: r.info.contextLength,
        kv_type: r.info.kvType,
        adapter: r.info.adapter,
        load_s: +r.load_s.toFixed(1),
        generate: r.generate,
        prefill_tok_s: r.bench?.prefill_tokens_per_s,
        decode_tok_s: r.bench?.decode_tokens_per_s,
        shard_sync_us: r.bench?.shard_sync_us,
        peak_wasm_memory_gib: r.ran.map((i) => gib(i.memoryBytes)),
        weight_gib: r.ran.map((i) => gib(i.weightBytes)),
        file_weight_gib: gib(r.info.weightBytes),
        bench: r.bench,
      }),
    );
  }
} finally {
  await browser.close();
  await server.close();
}
