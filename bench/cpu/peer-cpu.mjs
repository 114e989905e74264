#!/usr/bin/env node
// Native CPU peer: llama.cpp's CPU backend, prebuilt (@node-llama-cpp/linux-x64 3.22.1), through
// node-llama-cpp. Mirrors `llama-webgpu bench --backend cpu`:
//   node bench/cpu/peer-cpu.mjs MODEL.gguf PROMPT_TOKENS GEN_TOKENS THREADS
// Same deterministic prompt ids as our bench (id = (i*2654435761 + 12345) % vocab), one prefill
// batch, then GEN_TOKENS greedy tokens fed back one at a time (native greedy sampling). The
// measurement runs twice in the process; the second run's rates are reported. One JSON line on
// stdout, progress on stderr.
import process from "node:process";
import fs from "node:fs";

const [modelPath, promptArg, genArg, threadsArg] = process.argv.slice(2);
const nPrompt = Number.parseInt(promptArg, 10);
const nGen = Number.parseInt(genArg, 10);
const threads = Number.parseInt(threadsArg ?? "2", 10);
if (!modelPath || !fs.existsSync(modelPath) || !(nPrompt > 0) || !(nGen >= 0) || !(threads > 0)) {
    console.error("usage: node peer-cpu.mjs MODEL.gguf PROMPT_TOKENS GEN_TOKENS THREADS");
    process.exit(2);
}
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";

const now = () => Number(process.hrtime.bigint()) / 1e9;
const log = (...a) => console.error("[peer-cpu]", ...a);

const t0 = now();
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
const llama = await getLlama({
    gpu: false,                // the CPU backend only
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true, // @node-llama-cpp/linux-x64
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const meta = model.fileInfo.metadata;
const vocab = meta.tokenizer?.ggml?.tokens?.length;
if (!vocab) throw new Error("could not read the vocabulary size");
const context = await model.createContext({
    contextSize: nPrompt + nGen + 16,
    batchSize: Math.max(nPrompt, 1),
    sequences: 1,
    threads,
});
const seq = context.getSequence();
const tReady = now();
log(`backend ${llama.gpu || "cpu"}, build ${llama.buildType}, llama.cpp ${llama.llamaCppRelease?.release}, threads ${context.currentThreads ?? threads}`);

const prompt = Array.from({ length: nPrompt }, (_, i) => Number((BigInt(i) * 2654435761n + 12345n) % BigInt(vocab)));
const GEN = { generateNext: { token: true } };
async function evalNext(tokens) {
    const input = tokens.slice(0, -1).concat([[tokens[tokens.length - 1], GEN]]);
    const out = await seq.controlledEvaluate(input);
    const tok = out[tokens.length - 1]?.next?.token;
    if (tok == null) throw new Error("no next token returned");
    return tok;
}
await evalNext([prompt[0]]);
const tFirst = now();

async function measure() {
    await seq.clearHistory();
    const a = now();
    let tok = await evalNext(prompt);
    const b = now();
    const generated = [];
    for (let i = 0; i < nGen; i++) {
        generated.push(tok);
        tok = await evalNext([tok]);
    }
    const c = now();
    return { prefill_tokens_per_s: nPrompt / (b - a), decode_tokens_per_s: nGen / Math.max(c - b, 1e-9), generated };
}
const run1 = await measure();
const run2 = await measure();
log(`run 1: prefill ${run1.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${run1.decode_tokens_per_s.toFixed(1)} tok/s; run 2: prefill ${run2.prefill_tokens_per_s.toFixed(1)}, decode ${run2.decode_tokens_per_s.toFixed(1)}`);
console.log(JSON.stringify({
    engine: "llama.cpp-cpu (node-llama-cpp 3.22.1)",
    threads: context.currentThreads ?? threads,
    prefill_tokens_per_s: run2.prefill_tokens_per_s,
    decode_tokens_per_s: run2.decode_tokens_per_s,
    run1: { prefill_tokens_per_s: run1.prefill_tokens_per_s, decode_tokens_per_s: run1.decode_tokens_per_s },
    first_token_s: tFirst - t0,
    load_s: tReady - t0,
    prompt_tokens: nPrompt,
    gen_tokens: nGen,
    greedy_tokens: run2.generated,
    llama_cpp_release: llama.llamaCppRelease?.release ?? null,
    build_type: llama.buildType,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
