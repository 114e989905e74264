//! Browser bindings (wasm-bindgen). The JS package (`pkg/`) owns fetching, caching and
//! workers; this side owns everything numeric. Weights arrive through a JS function
//! `read(offset, length) → Promise<Uint8Array>`, one bounded chunk at a time, so wasm memory
//! never holds the model. Errors cross as `{code, message}` objects that `pkg/errors.js`
//! turns into typed `Error` subclasses. Nothing here may panic on input: a panic kills the
//! whole wasm instance.

use crate::backend::{self, Backend, Choice, Forward, Model};
use crate::chat::{ChatFormat, ChatOptions, ChatTemplate, Message};
use crate::cpu::shards::{Link, Shard};
use crate::cpu::CpuOptions;
use crate::error::{Error, Result};
use crate::gguf::{needs_more, split, AsyncByteSource, GgufFile, PrefixSource, Value};
use crate::gpu::model::LoadOptions;
use crate::gpu::{GpuOptions, Precision};
use crate::grammar::{Grammar, GrammarCompiler};
use crate::graph::Logits;
use crate::graph::Phase;
use crate::sampler::SamplerConfig;
use crate::session::{ContextPolicy, GenerateOptions, Generator, Session, StopReason};
use crate::speculative::Speculator;
use crate::tokenizer::Tokenizer;
use js_sys::{Function, Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

/// Counts the heap and bounds a chat template's render: over its budget the allocation fails
/// and the instance traps, which the package reports as a crash and replaces, instead of the
/// template filling 4 GiB first.
#[global_allocator]
static ALLOC: crate::heap::Heap = crate::heap::Heap;

/// The typed-error code `pkg/errors.js` maps to a class.
fn code(e: &Error) -> &'static str {
    match e {
        Error::BadMagic(_) | Error::UnsupportedVersion(_) | Error::Truncated { .. } | Error::Corrupt(_) => {
            "invalid_model"
        }
        Error::MissingKey(_) | Error::WrongType { .. } | Error::MissingTensor(_) | Error::BadShape { .. } => {
            "invalid_model"
        }
        Error::UnsupportedType { .. } | Error::UnsupportedModel(_) => "unsupported_model",
        Error::MissingSplitPart { .. } | Error::DuplicateSplitPart { .. } | Error::SplitMismatch(_) => "split_model",
        Error::Tokenizer(_) | Error::Template { .. } | Error::DraftVocabMismatch(_) => "invalid_model",
        Error::TokenOutOfVocab { .. } | Error::InvalidArgument(_) => "invalid_argument",
        Error::ContextOverflow { .. } => "context_overflow",
        Error::NoAdapter(_) => "no_webgpu",
        Error::DeviceLost(_) => "device_lost",
        Error::OutOfMemory(_) => "out_of_memory",
        Error::LimitsTooSmall(_) => "limits",
        Error::Device(_) => "gpu",
        Error::Io(_) | Error::RefusedOutput { .. } => "io",
        Error::NonFiniteLogits { .. } | Error::NonFiniteWeight { .. } => "numerical",
        Error::Worker(_) => "engine_crashed",
    }
}

fn to_js(e: Error) -> JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&o, &"code".into(), &code(&e).into());
    let _ = js_sys::Reflect::set(&o, &"message".into(), &e.to_string().into());
    o.into()
}

fn js_message(v: &JsValue) -> String {
    js_sys::Reflect::get(v, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| v.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
}

fn ser<T: Serialize>(v: &T) -> std::result::Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| to_js(Error::InvalidArgument(e.to_string())))
}

fn de<T: for<'a> Deserialize<'a> + Default>(v: JsValue) -> std::result::Result<T, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| to_js(Error::InvalidArgument(e.to_string())))
}

/// Bytes from a JS `read(offset, length)` function. A split model's parts come from JS laid
/// end to end in the order they were given; `map` lays them out again in `split.no` order (as
/// [`split::merge`] counts its offsets): `(offset here, offset in JS, length)` per part, in
/// order. Empty: the JS offsets as they are.
struct JsSource {
    size: u64,
    read: Function,
    map: Vec<(u64, u64, u64)>,
}

impl JsSource {
    async fn js_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let p = self
            .read
            .call2(&JsValue::NULL, &(offset as f64).into(), &(buf.len() as f64).into())
            .map_err(|e| Error::Io(js_message(&e)))?;
        let v = JsFuture::from(Promise::resolve(&p)).await.map_err(|e| Error::Io(js_message(&e)))?;
        let arr = Uint8Array::new(&v);
        if arr.length() as usize != buf.len() {
            return Err(Error::Truncated { offset, needed: buf.len() as u64, len: offset + arr.length() as u64 });
        }
        arr.copy_to(buf);
        Ok(())
    }

    async fn bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.map.is_empty() {
            return self.js_bytes(offset, buf).await;
        }
        crate::gguf::check_range(offset, buf.len(), self.size)?;
        let (mut at, mut done) = (offset, 0usize);
        while done < buf.len() {
            // the last part that starts at or before `at` (a tensor lies inside one part, so
            // reads seldom cross)
            let i = self.map.partition_point(|(b, _, _)| *b <= at).saturating_sub(1);
            let &(b, js, len) =
                self.map.get(i).ok_or(Error::Truncated { offset, needed: buf.len() as u64, len: self.size })?;
            let n = ((b + len).saturating_sub(at) as usize).min(buf.len() - done);
            if n == 0 {
                return Err(Error::Truncated { offset, needed: buf.len() as u64, len: self.size });
            }
            self.js_bytes(js + (at - b), &mut buf[done..done + n]).await?;
            done += n;
            at += n as u64;
        }
        Ok(())
    }
}

impl AsyncByteSource for JsSource {
    fn size(&self) -> u64 {
        self.size
    }
    async fn fetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.bytes(offset, buf).await
    }
}

/// Parses the header from a growing prefix: 4 MiB covers small models, Llama 3's 128K-token
/// vocabulary needs ~8 MiB.
async fn read_header(src: &JsSource) -> Result<GgufFile> {
    let mut prefix = Vec::new();
    let mut want = (4u64 << 20).min(src.size);
    loop {
        // read only what the prefix does not have yet
        let have = prefix.len();
        prefix.resize(want as usize, 0);
        src.bytes(have as u64, &mut prefix[have..]).await?;
        match GgufFile::read(&PrefixSource { prefix: &prefix, total: src.size }) {
            Err(e) if needs_more(&e, want, src.size) => want = (want * 4).min(src.size),
            r => return r,
        }
    }
}

/// The model's byte source and header: one file, or the parts of a split model (`sizes`, as JS
/// lays them end to end), each header read at its place, checked against the others and
/// merged (typed errors for a missing, duplicated or mismatched part).
async fn open_parts(size: u64, read: Function, sizes: &[u64]) -> Result<(JsSource, GgufFile)> {
    if sizes.len() <= 1 {
        let src = JsSource { size, read, map: Vec::new() };
        let file = read_header(&src).await?;
        let count = split::part_count(&file)?;
        if count > 1 {
            return Err(Error::SplitMismatch(format!(
                "this file is part {} of a model in {count} files: give every part (or the first, named NAME-00001-of-{count:05}.gguf)",
                split::part_no(&file)? + 1
            )));
        }
        return Ok((src, file));
    }
    if sizes.iter().sum::<u64>() != size {
        return Err(Error::InvalidArgument(format!("the parts' sizes {sizes:?} do not add up to {size}")));
    }
    let mut headers = Vec::with_capacity(sizes.len());
    let mut js = 0;
    for &len in sizes {
        let part = JsSource { size: len, read: read.clone(), map: vec![(0, js, len)] };
        headers.push((read_header(&part).await?, js, len));
        js += len;
    }
    // merge lays the parts out in split.no order: so does the map
    let mut order =
        headers.iter().map(|(f, js, len)| Ok((split::part_no(f)?, *js, *len))).collect::<Result<Vec<_>>>()?;
    let file = split::merge(headers.into_iter().map(|(f, _, _)| f).collect())?;
    order.sort_by_key(|(no, _, _)| *no);
    let mut map = Vec::with_capacity(order.len());
    let mut at = 0;
    for (_, js, len) in order {
        map.push((at, js, len));
        at += len;
    }
    Ok((JsSource { size, read, map }, file))
}

/// The names of every part of a split model from one part's name (`x-00001-of-00003.gguf`), or
/// null for a name that is not a part's.
#[wasm_bindgen(js_name = splitPartNames)]
pub fn split_part_names(name: &str) -> Option<Vec<String>> {
    split::part_names(name)
}

#[wasm_bindgen]
extern "C" {
    /// `pkg/shards.js`'s `ShardPool`: the engine's end of the CPU shard workers (see
    /// [`crate::cpu::shards`]). Its methods throw `Error`s, which become [`Error::Worker`].
    pub type JsShardPool;
    #[wasm_bindgen(method, getter)]
    fn parts(this: &JsShardPool) -> u32;
    #[wasm_bindgen(method, getter)]
    fn lead(this: &JsShardPool) -> u32;
    #[wasm_bindgen(method, catch, js_name = load)]
    fn load_part(
        this: &JsShardPool,
        part: u32,
        id: u32,
        ty: u32,
        rows: u32,
        cols: u32,
        bytes: &[u8],
    ) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn ready(this: &JsShardPool, max_in: u32, max_out: u32) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn start(this: &JsShardPool, job: &[u32], x: &[f32]) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn finish(this: &JsShardPool, out: &mut [f32]) -> Result<(), JsValue>;
}

struct JsLink(JsShardPool);

fn worker_error(e: JsValue) -> Error {
    Error::Worker(js_message(&e))
}

fn u32_of(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::OutOfMemory(format!("{n} values for a shard worker")))
}

impl Link for JsLink {
    fn parts(&self) -> usize {
        self.0.parts() as usize
    }
    fn lead(&self) -> u32 {
        self.0.lead()
    }
    fn load(&self, p: usize, id: u32, ty: crate::gguf::GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<()> {
        self.0.load_part(u32_of(p)?, id, ty.id(), u32_of(rows)?, u32_of(cols)?, bytes).map_err(worker_error)
    }
    fn ready(&self, max_in: usize, max_out: usize) -> Result<()> {
        self.0.ready(u32_of(max_in)?, u32_of(max_out)?).map_err(worker_error)
    }
    fn start(&self, job: &[u32], x: &[f32]) -> Result<()> {
        self.0.start(job, x).map_err(worker_error)
    }
    fn finish(&self, out: &mut [f32]) -> Result<()> {
        self.0.finish(out).map_err(worker_error)
    }
}

/// One CPU row shard: this instance's part of every weight matrix (`pkg/shard.js` runs it
/// in a worker of its own, beside the engine's).
#[wasm_bindgen]
pub struct ShardEngine(Shard);

#[wasm_bindgen]
impl ShardEngine {
    /// Shard `part` (1..parts) of `parts`, part 0 weighted `lead` (`cpu::shards::Split`).
    #[wasm_bindgen(constructor)]
    pub fn new(part: usize, parts: usize, lead: u32) -> std::result::Result<ShardEngine, JsValue> {
        Shard::with_lead(part, parts, lead).map(ShardEngine).map_err(to_js)
    }

    /// The next piece of this shard's rows of weight `id` (GGUF type id `ty`, `rows` × `cols`
    /// in all); the pieces come in order.
    pub fn add(
        &mut self,
        id: u32,
        ty: u32,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> std::result::Result<(), JsValue> {
        self.0.add(id, ty, rows, cols, bytes).map_err(to_js)
    }

    /// Weight bytes this shard holds.
    #[wasm_bindgen(js_name = heldBytes)]
    pub fn held_bytes(&self) -> f64 {
        self.0.held_bytes() as f64
    }

    /// A job `[n_tokens, weight ids…]` on input `x` → this shard's rows of each product.
    pub fn run(&self, job: &[u32], x: &[f32]) -> std::result::Result<Vec<f32>, JsValue> {
        self.0.run(job, x).map_err(to_js)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsLoadOptions {
    /// Tokens, or "max" (the model's trained context).
    context_length: Option<JsContext>,
    /// "f32", "f16", "q8_0" or "q4_0" (default: the backend's).
    kv_type: Option<String>,
    /// The CPU backend's dot products: "exact" or "int8" (default: exact).
    cpu_dot: Option<String>,
    precision: Option<String>,
    chunk_bytes: Option<u64>,
    max_binding_size: Option<u64>,
    cpu_adapter: bool,
    /// "auto" (default) or "gpu": the GPU kernel family even on a fallback adapter.
    kernels: Option<String>,
    /// "auto" (default), "webgpu" or "cpu".
    backend: Option<String>,
    /// What JS saw of WebGPU, for `auto`: an adapter at all, and its name.
    webgpu_adapter: Option<String>,
    /// A split model: the byte length of each part, as JS lays them end to end (any order).
    part_sizes: Option<Vec<u64>>,
}

/// `contextLength`: a number, or a string `ContextArg` parses ("max").
#[derive(Deserialize)]
#[serde(untagged)]
enum JsContext {
    Tokens(usize),
    Named(String),
}

impl JsContext {
    fn resolve(&self, file: &GgufFile) -> Result<usize> {
        let arg = match self {
            JsContext::Tokens(n) => crate::plan::ContextArg::Tokens(*n),
            JsContext::Named(s) => s.parse()?,
        };
        Ok(arg.resolve(&crate::gguf::LlamaConfig::from_gguf(file)?))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct JsEmbedOptions {
    /// Default: the model's (`Info::pooling`).
    pooling: Option<crate::embed::Pooling>,
    normalize: bool,
}

/// One input of `embed`: a text (tokenized with BOS where the model wants one) or token ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsGenerateOptions {
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Vec<String>>,
    /// "error" (default) or "sliding".
    context_policy: Option<String>,
    /// Tokens kept at the front by the sliding window (the system prompt).
    keep: Option<usize>,
    /// The output must be an instance of this JSON schema.
    json_schema: Option<serde_json::Value>,
    /// The output must be a JSON object (OpenAI `json_object`).
    json_object: bool,
    /// A grammar: a Lark string, or `{lark}` / `{gbnf}` / `{regex}`.
    grammar: Option<serde_json::Value>,
    /// Per token: the sampled token's log-probability and this many alternatives.
    logprobs: Option<usize>,
    /// "lookup", "draft" (the attached draft model) or false / null (plain decoding).
    speculative: Option<serde_json::Value>,
}

/// Which drafter a generation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecMode {
    Off,
    Lookup,
    Draft,
}

impl JsGenerateOptions {
    fn spec_mode(&self, has_draft: bool) -> Result<SpecMode> {
        match &self.speculative {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => Ok(SpecMode::Off),
            Some(serde_json::Value::String(s)) if s == "lookup" => Ok(SpecMode::Lookup),
            Some(serde_json::Value::String(s)) if s == "draft" && has_draft => Ok(SpecMode::Draft),
            Some(serde_json::Value::String(s)) if s == "draft" => Err(Error::InvalidArgument(
                "speculative: \"draft\" needs a draft model (loadModel(url, { draft }))".into(),
            )),
            Some(v) => {
                Err(Error::InvalidArgument(format!("speculative must be \"lookup\", \"draft\" or false, got {v}")))
            }
        }
    }
}

impl JsGenerateOptions {
    fn grammar(&self) -> Result<Option<Grammar>> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        let g = match (&self.json_schema, self.json_object, &self.grammar) {
            (None, false, None) => None,
            (Some(s), false, None) => Some(Grammar::JsonSchema(s.clone())),
            (None, true, None) => Some(Grammar::JsonObject),
            (None, false, Some(serde_json::Value::String(l))) => Some(Grammar::Lark(l.clone())),
            (None, false, Some(serde_json::Value::Object(o))) => {
                let text = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                match (text("lark"), text("gbnf"), text("regex")) {
                    (Some(l), None, None) => Some(Grammar::Lark(l)),
                    (None, Some(g), None) => Some(Grammar::Gbnf(g)),
                    (None, None, Some(r)) => Some(Grammar::Regex(r)),
                    _ => return bad("grammar: give exactly one of {lark}, {gbnf}, {regex} as a string"),
                }
            }
            (None, false, Some(_)) => return bad("grammar must be a Lark string or {lark|gbnf|regex: string}"),
            _ => return bad("give at most one of jsonSchema, jsonObject (response_format), grammar"),
        };
        Ok(g)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Features {
    shader_f16: bool,
    subgroups: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    architecture: String,
    name: String,
    parameters: u64,
    quantization: String,
    context_length: usize,
    train_context_length: usize,
    vocab_size: usize,
    /// Width of an embedding (the hidden size).
    embedding_length: usize,
    /// How `embed` pools by default (the GGUF's `pooling_type`, else mean).
    pooling: crate::embed::Pooling,
    adapter: String,
    features: Features,
    /// Whether the f16 path runs (the adapter has shader-f16 and precision allows it).
    f16: bool,
    /// The WebGPU kernel family that runs: "gpu" (matmul.wgsl, tiled prefill) or "cpu"
    /// (matmul_cpu.wgsl, a fallback adapter's); null on the CPU backend.
    kernels: Option<&'static str>,
    /// "llama3", "chatml", "jinja" (another format) or null (plain completion).
    chat_template: Option<&'static str>,
    /// Whether prompts are rendered from the GGUF's own Jinja template.
    jinja_template: bool,
    /// Whether the chat template renders `tools` itself.
    template_tools: bool,
    gpu_bytes: u64,
    weight_bytes: u64,
    kv_bytes: u64,
    /// The KV cache's element type ("f32", "f16", "q8_0", "q4_0").
    kv_type: crate::kv::KvType,
    layers: usize,
    /// "webgpu" or "cpu", and why.
    backend: &'static str,
    backend_reason: String,
    /// CPU backend threads (0 on WebGPU).
    threads: usize,
    /// Weight bytes the engine's wasm instance holds: on the CPU backend with shards, its rows
    /// of every matrix only (0 on WebGPU).
    held_weight_bytes: u64,
}

/// `general.file_type` as llama.cpp names it, else the most common tensor type.
fn quantization(file: &GgufFile, model: &Model) -> String {
    let ft = file.get("general.file_type").and_then(Value::as_u64);
    if let Some(n) = ft.and_then(crate::quant::ftype::file_type_name) {
        return n.to_string();
    }
    model.stats().tensor_types.iter().max_by_key(|(_, n)| *n).map(|(t, _)| t.clone()).unwrap_or_default()
}

struct Inner {
    model: Model,
    tok: Tokenizer,
    format: ChatFormat,
    /// Built on the first constrained request (trie of the vocabulary, ~0.1–0.5 s), then kept.
    grammar: Option<GrammarCompiler>,
    session: Session,
    gen: Option<Generator>,
    info: JsValue,
    pooling: crate::embed::Pooling,
    /// Prompt lookup (always available) and the attached draft model, if any.
    lookup: Speculator,
    draft: Option<Speculator>,
    spec: SpecMode,
}

impl Inner {
    /// Drops the generation in progress and the cached conversation: the next prompt (or a
    /// call that writes the KV cache itself) starts from position 0.
    fn forget(&mut self) {
        self.gen = None;
        self.session.reset();
    }
}

/// A loaded model. Methods must not overlap (the JS side queues calls); an overlapping call
/// gets an `invalid_argument` error instead of a panic: `inner`'s borrow is the lock, an async
/// call holds it across its awaits and every borrow is a `try_borrow*` ([`busy`] when taken).
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<RefCell<Inner>>,
}

fn busy() -> JsValue {
    to_js(Error::InvalidArgument("the engine is busy with another call".into()))
}

/// Loads a GGUF of `size` bytes read through `read(offset, length) → Promise<Uint8Array>`;
/// `progress(phase, loaded, total)` sees "upload" (bytes) then "compile". `shards`: a
/// `ShardPool` (the CPU backend's other threads) or null.
#[wasm_bindgen(js_name = loadEngine)]
pub fn load_engine(size: f64, read: Function, options: JsValue, progress: Function, shards: JsValue) -> Promise {
    future_to_promise(async move {
        let o: JsLoadOptions = de(options)?;
        let precision = match o.precision.as_deref() {
            None | Some("auto") => Precision::Auto,
            Some("f32") => Precision::F32,
            Some("f16") => Precision::F16,
            Some(p) => {
                return Err(to_js(Error::InvalidArgument(format!("precision '{p}' (expected auto, f32 or f16)"))))
            }
        };
        let mut opts = LoadOptions {
            gpu: GpuOptions {
                precision,
                max_binding_size: o.max_binding_size,
                cpu_adapter: o.cpu_adapter,
                kernels: o.kernels.as_deref().unwrap_or("auto").parse().map_err(to_js)?,
            },
            kv_type: o.kv_type.as_deref().map(str::parse).transpose().map_err(to_js)?,
            ..Default::default()
        };
        if let Some(c) = o.chunk_bytes {
            opts.chunk_bytes = c.clamp(64 << 10, 64 << 20);
        }
        let asked: Backend = o.backend.as_deref().unwrap_or("auto").parse().map_err(to_js)?;
        // JS looked at navigator.gpu: no adapter, or a fallback one (cpuAdapter)
        let probe =
            o.webgpu_adapter.map(|name| backend::AdapterProbe { name, device_type: None, fallback: o.cpu_adapter });
        let choice: Choice = backend::choose(asked, probe.as_ref());
        let (src, file) =
            open_parts(size as u64, read, o.part_sizes.as_deref().unwrap_or_default()).await.map_err(to_js)?;
        opts.context = o.context_length.as_ref().map(|c| c.resolve(&file)).transpose().map_err(to_js)?;
        let link = (!shards.is_null() && !shards.is_undefined())
            .then(|| std::rc::Rc::new(JsLink(shards.unchecked_into())) as std::rc::Rc<dyn Link>);
        let dot = o.cpu_dot.as_deref().map(str::parse).transpose().map_err(to_js)?;
        let cpu = CpuOptions { context: opts.context, kv_type: opts.kv_type, link, dot, ..Default::default() };
        if choice.backend == Backend::Cpu {
            // before any weight is fetched
            crate::cpu::check_fits(&file, &cpu, crate::cpu::WASM32_MEMORY).map_err(to_js)?;
        }
        let tok = Tokenizer::from_gguf(&file).map_err(to_js)?;
        let pooling = crate::embed::Pooling::of_gguf(&file).map_err(to_js)?;
        let model = Model::load(&src, &file, &choice, &opts, &cpu, |p| {
            let phase = match p.phase {
                Phase::Upload => "upload",
                Phase::Compile => "compile",
            };
            let _ = progress.call3(&JsValue::NULL, &phase.into(), &(p.loaded as f64).into(), &(p.total as f64).into());
        })
        .await
        .map_err(to_js)?;
        let format = ChatFormat::for_tokenizer(&tok);
        let (adapter, shader_f16, subgroups, f16, gpu_bytes, threads) = match &model {
            Model::Gpu(m) => (
                m.gpu.adapter.name.clone(),
                m.gpu.adapter_features.contains(wgpu::Features::SHADER_F16),
                m.gpu.adapter_features.contains(wgpu::Features::SUBGROUP),
                m.gpu.use_f16,
                m.gpu_bytes,
                0,
            ),
            Model::Cpu(m) => (model.stats().device, false, false, false, 0, m.threads()),
        };
        let held_weight_bytes = match &model {
            Model::Cpu(m) => m.held_weight_bytes(),
            Model::Gpu(_) => 0,
        };
        let kernels = match &model {
            Model::Gpu(m) if m.gpu.cpu_matmul => Some("cpu"),
            Model::Gpu(_) => Some("gpu"),
            Model::Cpu(_) => None,
        };
        let str_key = |k: &str| file.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let info = Info {
            architecture: str_key("general.architecture"),
            name: str_key("general.name"),
            parameters: file.tensors.iter().map(|t| t.n_elements()).sum(),
            quantization: quantization(&file, &model),
            context_length: model.context(),
            train_context_length: model.cfg().context_length,
            vocab_size: model.cfg().n_vocab,
            embedding_length: model.cfg().n_embd,
            pooling,
            adapter,
            features: Features { shader_f16, subgroups },
            f16,
            kernels,
            // The family ("llama3", "chatml") when the template is one, else "jinja" for any
            // other GGUF template; null for plain completion.
            chat_template: match (&format, ChatTemplate::detect(tok.chat_template(), &tok)) {
                (_, ChatTemplate::Llama3) => Some("llama3"),
                (_, ChatTemplate::ChatMl) => Some("chatml"),
                (ChatFormat::Jinja(_), ChatTemplate::None) => Some("jinja"),
                (ChatFormat::Builtin(_), ChatTemplate::None) => None,
            },
            jinja_template: matches!(format, ChatFormat::Jinja(_)),
            template_tools: format.renders_tools(),
            gpu_bytes,
            weight_bytes: model.stats().weight_bytes,
            kv_bytes: model.stats().kv_bytes,
            kv_type: model.stats().kv_type,
            layers: model.cfg().n_layer,
            backend: if choice.backend == Backend::Cpu { "cpu" } else { "webgpu" },
            backend_reason: choice.reason.clone(),
            threads,
            held_weight_bytes,
        };
        let info = ser(&info)?;
        let inner = Inner {
            model,
            tok,
            format,
            grammar: None,
            session: Session::new(),
            gen: None,
            info,
            pooling,
            lookup: Speculator::lookup(DRAFT_TOKENS),
            draft: None,
            spec: SpecMode::Off,
        };
        Ok(Engine { inner: Rc::new(RefCell::new(inner)) }.into())
    })
}

/// The CPU backend's block-dot kernels (simd128 here) against the formats' reference decode:
/// `{ simd, worst: { TYPE: max |error| / Σ|w·x| } }` (a self-test for the browser tests).
#[wasm_bindgen(js_name = checkCpuKernels)]
pub fn check_cpu_kernels() -> Result<JsValue, JsValue> {
    let simd = crate::cpu::dot::Simd::detect();
    let worst: std::collections::BTreeMap<String, f64> =
        crate::cpu::dot::check_kernels(simd).into_iter().map(|(t, e)| (t.name().to_string(), e)).collect();
    #[derive(Serialize)]
    struct Out {
        simd: &'static str,
        worst: std::collections::BTreeMap<String, f64>,
    }
    ser(&Out { simd: simd.name(), worst })
}

/// The CPU backend's integer dot kernels (simd128, or relaxed SIMD in a build with it) against
/// the scalar integer kernels and the formats' reference decode: `{ simd, relaxed, dots, chosen,
/// worst: { TYPE: [vs scalar / Σ|ŵ·x̂|, vs decode / bound] } }` (`cpu::q8::check_kernels`). The
/// relaxed build has two dots (`cpu::q8::i32_dot`): both are checked (`dots`), the worst of the
/// two reported, and `chosen` is the one this CPU measures faster.
#[wasm_bindgen(js_name = checkCpuInt8Kernels)]
pub fn check_cpu_int8_kernels() -> Result<JsValue, JsValue> {
    use crate::cpu::q8;
    let simd = crate::cpu::dot::Simd::detect();
    let dots = [false, true];
    let name = |i32: bool| if i32 { "i32" } else { "i16" };
    let mut worst = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for i32 in dots {
        q8::set_i32_dot(Some(i32));
        for (t, a, b) in q8::check_kernels(simd) {
            let e = worst.entry(t.name().to_string()).or_insert((0.0, 0.0));
            // NaN (a broken kernel) must not hide behind max
            *e = (
                if a.is_nan() { f64::INFINITY } else { e.0.max(a) },
                if b.is_nan() { f64::INFINITY } else { e.1.max(b) },
            );
        }
    }
    q8::set_i32_dot(None);
    #[derive(Serialize)]
    struct Out {
        simd: &'static str,
        relaxed: bool,
        dots: Vec<&'static str>,
        chosen: &'static str,
        worst: std::collections::BTreeMap<String, (f64, f64)>,
    }
    let dots = dots.iter().map(|&d| name(d)).collect();
    ser(&Out {
        simd: simd.name(),
        relaxed: cfg!(target_feature = "relaxed-simd"),
        dots,
        chosen: name(q8::i32_dot()),
        worst,
    })
}

/// Bytes of this wasm instance's linear memory (it only grows).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// Most tokens drafted per verification pass (adapted down while drafts are rejected).
const DRAFT_TOKENS: usize = 6;

// `inner`'s borrow is held across awaits on purpose (see Engine)
#[allow(clippy::await_holding_refcell_ref)]
#[wasm_bindgen]
impl Engine {
    /// Makes `draft` (another engine, consumed) this one's draft model for
    /// `speculative: "draft"`; its vocabulary must be this model's.
    #[wasm_bindgen(js_name = attachDraft)]
    pub fn attach_draft(&self, draft: Engine) -> std::result::Result<(), JsValue> {
        let mut i = self.inner.try_borrow_mut().map_err(|_| busy())?;
        let d = Rc::try_unwrap(draft.inner).map_err(|_| busy())?.into_inner();
        let spec = Speculator::draft(d.model, &d.tok, &i.model, &i.tok, DRAFT_TOKENS).map_err(to_js)?;
        i.draft = Some(spec);
        Ok(())
    }

    pub fn info(&self) -> std::result::Result<JsValue, JsValue> {
        Ok(self.inner.try_borrow().map_err(|_| busy())?.info.clone())
    }

    /// Text → ids; `add_special` adds BOS where the model wants one.
    pub fn tokenize(&self, text: &str, add_special: bool) -> std::result::Result<Vec<u32>, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        let mut ids = Vec::new();
        if add_special && i.tok.add_bos() {
            ids.extend(i.tok.bos_id());
        }
        ids.extend(i.tok.encode(text).map_err(to_js)?);
        Ok(ids)
    }

    pub fn detokenize(&self, ids: Vec<u32>) -> std::result::Result<String, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        i.tok.decode(&ids).map_err(to_js)
    }

    /// Chat messages `[{role, content, tool_calls?, tool_call_id?}]` (and OpenAI `tools`, or
    /// null) → `{tokens, keep}` with the generation prompt appended; `keep` = tokens of the
    /// leading system turn (the sliding window's sink).
    #[wasm_bindgen(js_name = chatTokens)]
    pub fn chat_tokens(&self, messages: JsValue, tools: JsValue) -> std::result::Result<JsValue, JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        let msgs: Vec<Message> = serde_wasm_bindgen::from_value(messages)
            .map_err(|e| to_js(Error::InvalidArgument(format!("messages: {e}"))))?;
        let tools: Option<serde_json::Value> = de(tools)?;
        let opts = ChatOptions { add_generation_prompt: true, tools: tools.clone(), ..Default::default() };
        let tokens = i.format.encode(&i.tok, &msgs, &opts).map_err(to_js)?;
        let keep = match msgs.first() {
            Some(m) if m.role == "system" => {
                let sys = ChatOptions { add_generation_prompt: false, tools, ..Default::default() };
                // Templates that reject a lone system turn just get no sink.
                let head = i.format.encode(&i.tok, &msgs[..1], &sys).unwrap_or_default();
                head.iter().zip(&tokens).take_while(|(a, b)| a == b).count()
            }
            _ => usize::from(tokens.first().is_some_and(|&t| Some(t) == i.tok.bos_id())),
        };
        #[derive(Serialize)]
        struct Out {
            tokens: Vec<u32>,
            keep: usize,
        }
        let keep = keep.min(tokens.len());
        ser(&Out { tokens, keep })
    }

    /// Logits of every position of `ids` (from an empty cache), `[n * vocab]`: one prefill
    /// pass, or (`stepwise`) one token per pass through the KV cache, as decoding runs.
    pub fn logits(&self, ids: Vec<u32>, stepwise: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *guard;
            i.forget();
            let out = if stepwise {
                let mut out = Vec::new();
                for (p, id) in ids.iter().enumerate() {
                    out.extend(i.model.forward(std::slice::from_ref(id), p, Logits::All).await.map_err(to_js)?);
                }
                out
            } else {
                i.model.forward(&ids, 0, Logits::All).await.map_err(to_js)?
            };
            Ok(js_sys::Float32Array::from(out.as_slice()).into())
        })
    }

    /// Prefills `prompt` (reusing the cached common prefix) → `{promptTokens, cachedTokens}`.
    pub fn start(&self, prompt: Vec<u32>, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let o: JsGenerateOptions = de(options)?;
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *guard;
            let d = SamplerConfig::default();
            let opts = GenerateOptions {
                max_tokens: o.max_tokens.unwrap_or(256),
                sampler: SamplerConfig {
                    temperature: o.temperature.unwrap_or(d.temperature),
                    top_k: o.top_k.unwrap_or(d.top_k),
                    top_p: o.top_p.unwrap_or(d.top_p),
                    min_p: o.min_p.unwrap_or(d.min_p),
                    repetition_penalty: o.repetition_penalty.unwrap_or(d.repetition_penalty),
                    seed: o.seed.unwrap_or(d.seed),
                    ..d
                },
                stop: o.stop.clone().unwrap_or_default(),
                context_policy: match o.context_policy.as_deref() {
                    None | Some("error") => ContextPolicy::Error,
                    Some("sliding") => ContextPolicy::SlidingWindow { keep: o.keep.unwrap_or(1) },
                    Some(p) => {
                        return Err(to_js(Error::InvalidArgument(format!(
                            "contextPolicy '{p}' (expected error or sliding)"
                        ))))
                    }
                },
                logprobs: o.logprobs.map(|k| k.min(20)),
            };
            i.gen = None;
            i.spec = o.spec_mode(i.draft.is_some()).map_err(to_js)?;
            let constraint = match o.grammar().map_err(to_js)? {
                None => None,
                Some(g) => {
                    if i.grammar.is_none() {
                        i.grammar = Some(GrammarCompiler::new(&i.tok).map_err(to_js)?);
                    }
                    let compiler = i.grammar.as_ref().ok_or_else(|| to_js(Error::InvalidArgument("grammar".into())))?;
                    Some(compiler.compile(&g).map_err(to_js)?)
                }
            };
            let mut g = i.session.start(&mut i.model, &i.tok, &prompt, &opts).await.map_err(|e| {
                // a failed prefill leaves the cache in an unknown state: start over next time
                i.session.reset();
                to_js(e)
            })?;
            if let Some(c) = constraint {
                g.constrain(c);
            }
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Started {
                prompt_tokens: usize,
                cached_tokens: usize,
            }
            let out = Started { prompt_tokens: prompt.len(), cached_tokens: g.reused() };
            i.gen = Some(g);
            ser(&out)
        })
    }

    /// The next piece `{token, text}` (token null for text flushed at the end), or null when done.
    pub fn next(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *guard;
            let Some(g) = i.gen.as_mut() else { return Ok(JsValue::NULL) };
            let spec = match i.spec {
                SpecMode::Off => None,
                SpecMode::Lookup => Some(&mut i.lookup),
                SpecMode::Draft => i.draft.as_mut(),
            };
            match g.next_with(&mut i.session, &mut i.model, &i.tok, spec).await {
                Ok(Some(p)) => {
                    /// OpenAI's `{token, logprob, bytes}`.
                    #[derive(Serialize)]
                    struct Lp {
                        token: String,
                        logprob: f32,
                        bytes: Vec<u8>,
                    }
                    #[derive(Serialize)]
                    #[serde(rename_all = "camelCase")]
                    struct Piece {
                        token: Option<u32>,
                        text: String,
                        #[serde(skip_serializing_if = "Option::is_none")]
                        logprob: Option<Lp>,
                        #[serde(skip_serializing_if = "Vec::is_empty")]
                        top_logprobs: Vec<Lp>,
                    }
                    let lp = |id: u32, logprob: f32| {
                        let bytes = i.tok.token_bytes(id).unwrap_or_default();
                        // -inf is not JSON; OpenAI reports -9999 for "impossible"
                        let logprob = if logprob.is_finite() { logprob } else { -9999.0 };
                        Lp { token: String::from_utf8_lossy(&bytes).into_owned(), logprob, bytes }
                    };
                    let logprob = p.token.zip(p.logprob).map(|(t, l)| lp(t, l));
                    let top_logprobs = p.top_logprobs.iter().map(|&(t, l)| lp(t, l)).collect();
                    ser(&Piece { token: p.token, text: p.text, logprob, top_logprobs })
                }
                Ok(None) => Ok(JsValue::NULL),
                Err(e) => {
                    i.session.reset();
                    Err(to_js(e))
                }
            }
        })
    }

    /// Stop after the current token (the next `next()` flushes and ends).
    pub fn cancel(&self) -> std::result::Result<(), JsValue> {
        let mut i = self.inner.try_borrow_mut().map_err(|_| busy())?;
        if let Some(g) = i.gen.as_mut() {
            g.cancel();
        }
        Ok(())
    }

    /// Ends the generation → `{promptTokens, cachedTokens, prefilledTokens, generatedTokens, ...}`.
    pub fn finish(&self) -> std::result::Result<JsValue, JsValue> {
        let mut i = self.inner.try_borrow_mut().map_err(|_| busy())?;
        let Some(g) = i.gen.take() else { return Ok(JsValue::NULL) };
        let cached = g.reused();
        let r = g.finish();
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Stats {
            prompt_tokens: usize,
            cached_tokens: usize,
            prefilled_tokens: usize,
            generated_tokens: usize,
            prefill_tokens_per_second: f64,
            decode_tokens_per_second: f64,
            stop_reason: StopReason,
            tokens: Vec<u32>,
            /// `{drafted, accepted, targetForwards, acceptance}` of a speculative generation.
            #[serde(skip_serializing_if = "Option::is_none")]
            speculative: Option<Spec>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Spec {
            drafted: usize,
            accepted: usize,
            target_forwards: usize,
            acceptance: f64,
        }
        let speculative = r.speculative.map(|s| Spec {
            drafted: s.drafted,
            accepted: s.accepted,
            target_forwards: s.target_forwards,
            acceptance: s.acceptance(),
        });
        ser(&Stats {
            prompt_tokens: r.prompt_tokens.len(),
            cached_tokens: cached,
            prefilled_tokens: r.prefilled,
            generated_tokens: r.tokens.len(),
            prefill_tokens_per_second: r.prefill_tokens_per_s,
            decode_tokens_per_second: r.decode_tokens_per_s,
            stop_reason: r.stop_reason,
            tokens: r.tokens,
            speculative,
        })
    }

    /// Speed benchmark (see [`crate::bench`]); overwrites the conversation's cache.
    pub fn bench(&self, prompt_tokens: usize, gen_tokens: usize) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *guard;
            i.forget();
            let r = crate::bench::run(&mut i.model, prompt_tokens, gen_tokens, None).await.map_err(to_js)?;
            ser(&r)
        })
    }

    /// Constrained-decoding cost on this model's vocabulary: `{compileMs, masks, maskUsMedian,
    /// maskUsP99, maskUsMax, compilerMs}` for a JSON schema (see [`crate::grammar::bench_masks`]).
    #[wasm_bindgen(js_name = benchGrammar)]
    pub fn bench_grammar(&self, schema: JsValue, steps: usize) -> std::result::Result<JsValue, JsValue> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| busy())?;
        let i = &mut *guard;
        let schema: serde_json::Value = de(schema)?;
        let t = web_time::Instant::now();
        if i.grammar.is_none() {
            i.grammar = Some(GrammarCompiler::new(&i.tok).map_err(to_js)?);
        }
        let compiler_ms = t.elapsed().as_secs_f64() * 1e3;
        let compiler = i.grammar.as_ref().ok_or_else(|| to_js(Error::InvalidArgument("grammar".into())))?;
        let r = crate::grammar::bench_masks(
            compiler,
            &Grammar::JsonSchema(schema),
            steps.clamp(1, 10_000),
            i.tok.vocab_size(),
        )
        .map_err(to_js)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            compiler_ms: f64,
            compile_ms: f64,
            masks: usize,
            mask_us_median: f64,
            mask_us_p99: f64,
            mask_us_max: f64,
        }
        ser(&Out {
            compiler_ms,
            compile_ms: r.compile_ms,
            masks: r.masks,
            mask_us_median: r.mask_us_median,
            mask_us_p99: r.mask_us_p99,
            mask_us_max: r.mask_us_max,
        })
    }

    /// Embeddings of `inputs` (texts or token-id arrays), each run alone from position 0 (the
    /// cached conversation is forgotten) → `{embeddings: number[][], tokens: number[]}`.
    pub fn embed(&self, inputs: JsValue, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let inputs: Vec<EmbedInput> = de(inputs)?;
            let o: JsEmbedOptions = de(options)?;
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let i = &mut *guard;
            i.forget();
            let pooling = o.pooling.unwrap_or(i.pooling);
            #[derive(Serialize)]
            struct Out {
                embeddings: Vec<Vec<f32>>,
                tokens: Vec<usize>,
            }
            let mut out = Out { embeddings: Vec::new(), tokens: Vec::new() };
            for input in inputs {
                let ids = match input {
                    EmbedInput::Tokens(ids) => ids,
                    EmbedInput::Text(text) => {
                        let mut ids: Vec<u32> = i.tok.bos_id().filter(|_| i.tok.add_bos()).into_iter().collect();
                        ids.extend(i.tok.encode(&text).map_err(to_js)?);
                        ids
                    }
                };
                let v = crate::embed::embed(&mut i.model, &ids, pooling, o.normalize).await.map_err(to_js)?;
                out.embeddings.push(v);
                out.tokens.push(ids.len());
            }
            ser(&out)
        })
    }

    /// Forget the KV cache (a new conversation).
    pub fn reset(&self) -> std::result::Result<(), JsValue> {
        self.inner.try_borrow_mut().map_err(|_| busy())?.forget();
        Ok(())
    }

    /// Test hook: destroys the GPU device, as a driver reset would.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> std::result::Result<(), JsValue> {
        let i = self.inner.try_borrow().map_err(|_| busy())?;
        match &i.model {
            Model::Gpu(m) => m.gpu.device.destroy(),
            Model::Cpu(_) => return Err(to_js(Error::InvalidArgument("the CPU backend has no device to lose".into()))),
        }
        Ok(())
    }
}
