#!/usr/bin/env node
// Peer benchmark: llama.cpp's Vulkan backend, prebuilt, through node-llama-cpp 3.22.1
// (@node-llama-cpp/linux-x64-vulkan). Mirrors `llama-webgpu bench`:
//   node bench/peer.mjs MODEL.gguf PROMPT_TOKENS GEN_TOKENS
// Prints one JSON line on stdout; progress and llama.cpp's device/offload log lines go to stderr.
//
// What is measured (same model, same deterministic prompt ids as our bench):
//   first_token_s  getLlama (binding load + Vulkan init) + loadModel (all layers on the
//                  GPU) + createContext + the first eval (1 token -> next token), so it includes
//                  llama.cpp's Vulkan pipeline compilation on this process's first use. lavapipe
//                  keeps compiled shaders in Mesa's disk cache (MESA_SHADER_CACHE_DIR, default
//                  ~/.cache/mesa_shader_cache_db): cold ~140 s, warm ~1 s; run.sh uses a fresh one.
// and then, through two harnesses on the same context (history cleared before each run):
//   streaming      how node-llama-cpp's users drive it: the LlamaContextSequence.evaluate(tokens,
//                  {temperature: 0}) async generator (greedy, sampled natively, EOG tokens
//                  yielded so every run makes GEN_TOKENS tokens). prefill = PROMPT_TOKENS ids,
//                  id = (i*2654435761 + 12345) % vocab, until the first generated token;
//                  decode = the GEN_TOKENS tokens after it (each fed back by the generator).
//   controlled     LlamaContextSequence.controlledEvaluate, one call per step: the prompt in one
//                  call (logits for the last token only), then GEN_TOKENS calls of one token.
// Both do one native llama_decode per step (batchSize >= PROMPT_TOKENS) and sample with
// llama.cpp's sampler at temperature 0 (= greedy argmax), no repeat penalty / grammar / token
// predictor. Each harness runs twice, interleaved (controlled, streaming, controlled,
// streaming); the first run of each can include lazily compiled pipelines (e.g. the batched
// matmul ones that the 1-token first eval does not need), so the second is reported and the
// first is kept under "run1". Native time is measured by wrapping the binding's decodeBatch
// and sampleToken: host_s = wall time minus both, i.e. what node-llama-cpp's JS layer and
// the event loop cost around the native calls.
import process from "node:process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [modelPath, promptArg, genArg] = process.argv.slice(2);
if (!modelPath || !promptArg || !genArg) {
    console.error("usage: node peer.mjs MODEL.gguf PROMPT_TOKENS GEN_TOKENS");
    process.exit(2);
}
const nPrompt = Number.parseInt(promptArg, 10);
const nGen = Number.parseInt(genArg, 10);
if (!(nPrompt > 0) || !(nGen >= 0) || !fs.existsSync(modelPath)) {
    console.error(`bad arguments (need an existing model and PROMPT_TOKENS > 0, GEN_TOKENS >= 0): ${process.argv.slice(2).join(" ")}`);
    process.exit(2);
}

// Must be set before the binding loads. llama.cpp's Vulkan backend skips CPU-type devices
// (lavapipe) unless they are listed explicitly.
process.env.GGML_VK_VISIBLE_DEVICES ??= "0";
// Never download llama.cpp sources or build them (also enforced by build: "never" below).
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
if (!process.env.XDG_RUNTIME_DIR) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "peer-xdg-"));
    fs.chmodSync(d, 0o700);
    process.env.XDG_RUNTIME_DIR = d;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const log = (...a) => console.error("[peer]", ...a);

// llama.cpp log lines we keep to prove where the model runs.
const kept = [];
const keep = /ggml_vulkan|llvmpipe|offload|using device|Vulkan|buffer size|build_info|system_info/i;
function logger(level, message) {
    const m = String(message).trimEnd();
    if (m && keep.test(m)) {
        kept.push(m);
        console.error(`[llama.cpp ${level}] ${m}`);
    }
}

const t0 = now();
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
const llama = await getLlama({
    gpu: "vulkan",              // only the Vulkan binary; fail instead of falling back to the CPU
    build: "never",             // never compile llama.cpp
    skipDownload: true,         // never download llama.cpp sources
    usePrebuiltBinaries: true,  // @node-llama-cpp/linux-x64-vulkan
    progressLogs: false,
    logLevel: LlamaLogLevel.info,
    logger,
});
const tInit = now();
if (llama.gpu !== "vulkan") throw new Error(`expected the Vulkan backend, got ${llama.gpu}`);
const deviceNames = await llama.getGpuDeviceNames();
const vram = await llama.getVramState();
log(`backend ${llama.gpu}, devices ${JSON.stringify(deviceNames)}, build ${llama.buildType}, llama.cpp ${llama.llamaCppRelease?.release}`);
if (!deviceNames.some((n) => /llvmpipe/i.test(n))) log(`WARNING: no llvmpipe device among ${JSON.stringify(deviceNames)}`);

const model = await llama.loadModel({ modelPath, gpuLayers: "max" });
const tLoad = now();
const meta = model.fileInfo.metadata;
const arch = meta.general.architecture;
const nLayer = Number(meta[arch]?.block_count);
const vocab = meta.tokenizer?.ggml?.tokens?.length;
if (!vocab) throw new Error("could not read the vocabulary size from the GGUF metadata");
// llama.cpp counts the output layer as one more offloadable layer: all = block_count + 1
const allOffloaded = model.gpuLayers >= nLayer + 1;
log(`model ${arch}, ${nLayer} layers, vocab ${vocab}, gpuLayers ${model.gpuLayers} (${allOffloaded ? "all" : "NOT all"} offloaded)`);
if (!allOffloaded) throw new Error(`only ${model.gpuLayers} of ${nLayer + 1} layers on the GPU`);

const context = await model.createContext({
    contextSize: nPrompt + nGen + 16,
    batchSize: Math.max(nPrompt, 1),
    sequences: 1,
});
const seq = context.getSequence();
const tCtx = now();

const prompt = Array.from({ length: nPrompt }, (_, i) =>
    Number((BigInt(i) * 2654435761n + 12345n) % BigInt(vocab)));

// Native time per step: the binding's decode and sampling calls (one promise each), timed
// through a proxy in front of the addon context (its methods are read-only properties).
const native = { decode_s: 0, decodes: 0, sample_s: 0, samples: 0 };
const timed = { decodeBatch: "decode", sampleToken: "sample" };
const addon = context._ctx;
const methods = new Map();
context._ctx = new Proxy(addon, {
    get(target, prop) {
        const v = target[prop];
        if (typeof v !== "function") return v;
        if (!methods.has(prop)) {
            const f = v.bind(target);
            const key = timed[prop];
            methods.set(prop, key == null ? f : (...args) => {
                const a = now();
                const done = () => { native[`${key}_s`] += now() - a; native[`${key}s`]++; };
                const r = f(...args);
                if (r instanceof Promise) return r.finally(done);
                done();
                return r;
            });
        }
        return methods.get(prop);
    },
});
const nativeSnapshot = () => ({ ...native });
const nativeDiff = (s1, s0) => Object.fromEntries(Object.keys(s0).map((k) => [k, s1[k] - s0[k]]));

const GEN = { generateNext: { token: true } };  // default options: temperature 0 = greedy
async function evalNext(tokens) {
    const input = tokens.slice(0, -1).concat([[tokens[tokens.length - 1], GEN]]);
    const out = await seq.controlledEvaluate(input);
    const tok = out[tokens.length - 1]?.next?.token;
    if (tok == null) throw new Error("no next token returned");
    return tok;
}

// cold first token (pipelines for the 1-token path compile here)
await evalNext([prompt[0]]);
const tFirst = now();
log(`init ${(tInit - t0).toFixed(2)} s, load ${(tLoad - tInit).toFixed(2)} s, context ${(tCtx - tLoad).toFixed(2)} s, first eval ${(tFirst - tCtx).toFixed(2)} s`);

// One prefill + decode through `harness`; returns wall times and the native share of each.
async function measure(harness, label) {
    await seq.clearHistory();
    const generated = [];
    let a, b, c, n0, n1;
    if (harness === "controlled") {
        n0 = nativeSnapshot();
        a = now();
        let tok = await evalNext(prompt);
        b = now();
        n1 = nativeSnapshot();
        for (let i = 0; i < nGen; i++) {
            generated.push(tok);
            tok = await evalNext([tok]);
        }
        c = now();
    } else {
        const it = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true });
        n0 = nativeSnapshot();
        a = now();
        let r = await it.next();
        b = now();
        n1 = nativeSnapshot();
        for (let i = 0; i < nGen && !r.done; i++) {
            generated.push(r.value);
            r = await it.next();
        }
        c = now();
        if (r.done) throw new Error(`the stream ended after ${generated.length} of ${nGen} tokens`);
        await it.return();
    }
    const pre = nativeDiff(n1, n0);
    const dec = nativeDiff(nativeSnapshot(), n1);
    const r = {
        prefill_s: b - a,
        decode_s: c - b,
        prefill_tokens_per_s: nPrompt / Math.max(b - a, 1e-9),
        decode_tokens_per_s: nGen / Math.max(c - b, 1e-9),
        // native llama_decode / sampling seconds inside each phase, and the rest (JS, event loop)
        prefill_native: { decode_s: pre.decode_s, decodes: pre.decodes, sample_s: pre.sample_s, host_s: (b - a) - pre.decode_s - pre.sample_s },
        decode_native: { decode_s: dec.decode_s, decodes: dec.decodes, sample_s: dec.sample_s, host_s: (c - b) - dec.decode_s - dec.sample_s },
        generated_head: generated.slice(0, 8),
    };
    log(`${label}: prefill ${nPrompt} tokens in ${r.prefill_s.toFixed(2)} s (${r.prefill_tokens_per_s.toFixed(2)} tok/s), decode ${nGen} tokens in ${r.decode_s.toFixed(2)} s (${r.decode_tokens_per_s.toFixed(2)} tok/s); native decode ${dec.decode_s.toFixed(2)} s in ${dec.decodes} calls, sampling ${(dec.sample_s * 1e3).toFixed(1)} ms, host ${(r.decode_native.host_s * 1e3).toFixed(1)} ms`);
    return r;
}

// interleaved, so both harnesses see the same machine load
const runs = { controlled: [], streaming: [] };
for (let k = 1; k <= 2; k++) {
    for (const h of ["controlled", "streaming"]) runs[h].push(await measure(h, `${h} run ${k}`));
}
const summary = (h) => {
    const [r1, r2] = runs[h];
    return {
        prefill_tokens_per_s: r2.prefill_tokens_per_s,
        decode_tokens_per_s: r2.decode_tokens_per_s,
        prefill_s: r2.prefill_s,
        decode_s: r2.decode_s,
        prefill_native: r2.prefill_native,
        decode_native: r2.decode_native,
        run1: { prefill_tokens_per_s: r1.prefill_tokens_per_s, decode_tokens_per_s: r1.decode_tokens_per_s, prefill_s: r1.prefill_s, decode_s: r1.decode_s },
        run1_included_compilation: r1.prefill_s > 1.5 * r2.prefill_s || r1.decode_s > 1.5 * r2.decode_s,
        greedy_tokens_head: r2.generated_head,
    };
};
const streaming = summary("streaming");
const controlled = summary("controlled");
const heads = [...runs.controlled, ...runs.streaming].map((r) => JSON.stringify(r.generated_head));
const sameTokens = heads.every((h) => h === heads[0]);

const adapter = deviceNames.join(", ");
const result = {
    engine: "llama.cpp-vulkan (node-llama-cpp 3.22.1)",
    adapter,
    // the headline rates are the streaming harness's (how the peer's users drive it)
    harness: "streaming",
    prefill_tokens_per_s: streaming.prefill_tokens_per_s,
    decode_tokens_per_s: streaming.decode_tokens_per_s,
    first_token_s: tFirst - t0,
    prompt_tokens: nPrompt,
    gen_tokens: nGen,
    reported_run: 2,
    streaming,
    controlled,
    note: "rates from the 2nd of two in-process runs of each harness (interleaved); first_token_s = getLlama + loadModel + createContext + first 1-token eval, incl. Vulkan pipeline compilation (cold only if Mesa's shader cache is empty: lavapipe caches compiled shaders on disk)",
    mesa_shader_cache_dir: process.env.MESA_SHADER_CACHE_DIR ?? "(Mesa default, ~/.cache/mesa_shader_cache_db)",
    // time spent compiling pipelines lazily: the cold first eval minus a warm 1-token eval, plus
    // how much longer the first runs took than the second (batched-matmul pipelines compile in
    // the first prefill)
    pipeline_compile_s_est: (tFirst - tCtx) - controlled.decode_s / Math.max(nGen, 1)
        + ["controlled", "streaming"].map((h) => Math.max(0, runs[h][0].prefill_s - runs[h][1].prefill_s)
            + Math.max(0, runs[h][0].decode_s - runs[h][1].decode_s)).reduce((x, y) => x + y, 0),
    init_s: tInit - t0,
    load_s: tLoad - tInit,
    context_s: tCtx - tLoad,
    first_eval_s: tFirst - tCtx,
    greedy_tokens_head: streaming.greedy_tokens_head,
    runs_agree: sameTokens,
    backend: llama.gpu,
    llama_cpp_release: llama.llamaCppRelease?.release ?? null,
    build_type: llama.buildType,
    gpu_layers: model.gpuLayers,
    n_layer: nLayer,
    all_layers_offloaded: allOffloaded,
    context_size: context.contextSize,
    batch_size: context.batchSize,
    flash_attention: context.flashAttention,
    vram_total_bytes: vram.total,
    api: "streaming: LlamaContextSequence.evaluate(tokens, {temperature: 0}) generator; controlled: LlamaContextSequence.controlledEvaluate per step; both greedy native sampling",
    env: { GGML_VK_VISIBLE_DEVICES: process.env.GGML_VK_VISIBLE_DEVICES },
    llama_cpp_device_log: kept.filter((m) => /llvmpipe|offload|using device/i.test(m)).slice(0, 12),
};
console.log(JSON.stringify(result));
await context.dispose();
await model.dispose();
await llama.dispose();
