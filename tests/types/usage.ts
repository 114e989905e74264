// Compile-only check of pkg/index.d.ts: the documented usage type-checks, and misuse does not
// (the @ts-expect-error lines must each be errors, or tsc fails).
import {
  loadModel, wasmMemoryBytes, listCachedModels, deleteCachedModel, clearModelCache,
  LlamaWebGPUError, HttpError, WebGPUUnavailableError, SplitModelError, ModelNotFoundError, GatedModelError,
  type Model, type ChatCompletion, type ChatCompletionChunk, type LoadProgress, type EmbeddingResponse,
} from "llama-webgpu";

export async function demo(file: File): Promise<string> {
  const phases: LoadProgress["phase"][] = [];
  const model: Model = await loadModel(file, { onProgress: (p) => phases.push(p.phase), cache: true, useWorker: true, precision: "auto", contextLength: 2048, contextPolicy: "sliding" });
  const byUrl = await loadModel(new URL("https://example.com/m.gguf"), { signal: new AbortController().signal });
  const info = model.info;
  const f16: boolean = info.features.shaderF16;
  const ids: number[] = await model.tokenize("Hello");
  const text: string = await model.detokenize(ids);
  for await (const c of model.generate(text, { maxTokens: 8, temperature: 0, stop: ["\n"] })) {
    const t: number | null = c.token;
    void t;
  }
  const whole: ChatCompletion = await model.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
  const stream = await model.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true }, { signal: new AbortController().signal });
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    void c.choices[0].delta.content;
  }
  const logits: Float32Array = await model.logits(ids);
  const emb: EmbeddingResponse = await model.embeddings.create({ input: ["a", "b"], pooling: "mean", normalize: true });
  const vec = emb.data[0].embedding;
  void vec;
  void emb.usage.prompt_tokens;
  // split models and Hugging Face references
  const split = await loadModel(["https://example.com/m-00001-of-00002.gguf", file], { hubUrl: "https://hf-mirror.example" });
  const parts: string[] | null = split.info.parts;
  void parts;
  await loadModel("hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
  await loadModel({ hfRepo: "bartowski/Llama-3.2-1B-Instruct-GGUF", quant: "Q4_K_M", revision: "main" });
  try {
    await loadModel({ hfRepo: "o/r", file: "m.gguf" });
  } catch (e) {
    if (e instanceof ModelNotFoundError || e instanceof GatedModelError) void e.status;
    if (e instanceof SplitModelError) void e.code;
  }
  // @ts-expect-error a Hugging Face reference names a file or a quant
  await loadModel({ hfRepo: "o/r" });
  // @ts-expect-error pooling is mean, last or cls
  await model.embeddings.create({ input: "x", pooling: "max" });
  const mem: number = wasmMemoryBytes();
  const cached = await listCachedModels();
  await deleteCachedModel(cached[0]?.url ?? "");
  await clearModelCache();
  const stats = model.lastStats?.decodeTokensPerSecond;
  const bench = await model.bench({ promptTokens: 16, genTokens: 8 });
  try {
    await model.dispose();
  } catch (e) {
    if (e instanceof HttpError) void e.status;
    if (e instanceof WebGPUUnavailableError || e instanceof LlamaWebGPUError) void e.code;
  }
  await byUrl.dispose();
  // @ts-expect-error precision is "auto" | "f32" | "f16"
  await loadModel("m.gguf", { precision: "f64" });
  // @ts-expect-error sources are URLs, Blobs or Files
  await loadModel(42);
  // @ts-expect-error roles are system, user, assistant and tool
  await model.chat.completions.create({ messages: [{ role: "robot", content: "Hi" }] });
  return `${whole.choices[0].message.content}${f16}${logits.length}${mem}${stats}${bench.decode_tokens_per_s}`;
}
