//! The CPU executor: [`graph::forward`] (the Llama pass, written once) carried out on the CPU,
//! for machines whose only WebGPU adapter is a software one (SwiftShader, lavapipe) or that
//! have none. [`CpuExec`] implements [`graph::Exec`] by computing each op as the graph calls it;
//! the GPU's `Recorder` implements the same trait by recording kernel launches.
//!
//! Weights stay in their GGUF blocks in memory; every matrix-vector product reads them
//! straight from the blocks with SIMD ([`dot`]) and f32 accumulation, the values those of
//! [`crate::quant`]'s decode (each block's scale factored out of its sum); rows are split over
//! threads ([`pool`]). Prefill decodes 4 weight rows at a time (with `quant::dequantize_row`)
//! and dots them with every token of the chunk in register tiles ([`dot::dots`]); a few tokens
//! (speculative verification) read each row's blocks once for all of them instead
//! ([`dot::rows_dots`]), with results identical to decoding's.
//! Where threads cannot share memory (the browser), rows are split over [`shards`] instead.

pub mod attention;
pub mod dot;
pub mod kv;
pub mod pool;
pub mod q8;
pub mod shards;

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgmlType, GgufFile, LlamaConfig, TensorInfo};
use crate::graph::Logits;
use crate::graph::{self, rmsnorm, Act, Exec, Phase, Progress};
use crate::kv::KvType;
use dot::Simd;
use kv::KvCache;
use pool::Pool;
use q8::Q8Act;
use shards::{Out, Shards};
use std::ops::Range;

/// How the CPU backend multiplies quantized weights with activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuDot {
    /// f32 activations times every weight's exact f32 decode ([`dot`]).
    Exact,
    /// Activations quantized to 8 bits once per matmul, integer dot products ([`q8`], as
    /// ggml's CPU backend); F32/F16/BF16 weights stay exact.
    Int8,
}

impl crate::named::Named for CpuDot {
    const WHAT: &'static str = "CPU dot";
    const NAMES: &'static [(Self, &'static [&'static str])] = &[(CpuDot::Exact, &["exact"]), (CpuDot::Int8, &["int8"])];
}
crate::named::named!(CpuDot);

/// The CPU backend's dot products when none is asked for: exact, because 8-bit activations
/// move the logits further than the default may (the fixtures' logits by 9–23% of their std
/// where the rule is 1%, and SmolLM2's greedy text from its 6th token, where transformers'
/// margin is 0.22 and int8's error 0.32); `int8` is llama.cpp's arithmetic, and faster.
pub const DEFAULT_CPU_DOT: CpuDot = CpuDot::Exact;

/// Options of the CPU backend.
#[derive(Clone)]
pub struct CpuOptions {
    /// KV cache capacity in tokens; default: the model's, capped at [`crate::plan::DEFAULT_MAX_CONTEXT`].
    pub context: Option<usize>,
    /// Worker threads; 0 = all cores (always 1 in wasm, where `link` adds shards instead).
    pub threads: usize,
    /// Tokens per prefill pass (bounds the activations).
    pub prefill_chunk: usize,
    /// Host bytes read per fetch while loading.
    pub chunk_bytes: u64,
    /// Row shards in other workers (the browser's threads), for one model.
    pub link: Option<std::rc::Rc<dyn shards::Link>>,
    /// The KV cache's element type; default: [`DEFAULT_KV_TYPE`].
    pub kv_type: Option<KvType>,
    /// Exact f32 or 8-bit integer dot products; default: [`DEFAULT_CPU_DOT`].
    pub dot: Option<CpuDot>,
}

/// The CPU backend's KV type when none is asked for: f16, by measurement (BENCHMARKS.md, wave 3
/// evening): half of f32's bytes, decode at depth 4096 1.16× f32's and at depth 0 within noise,
/// and the same 24 greedy SmolLM2 tokens as f32 (bench/KV.md).
pub const DEFAULT_KV_TYPE: KvType = KvType::F16;

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            context: None,
            threads: 0,
            prefill_chunk: 64,
            chunk_bytes: 8 << 20,
            link: None,
            kv_type: None,
            dot: None,
        }
    }
}

impl std::fmt::Debug for CpuOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuOptions")
            .field("context", &self.context)
            .field("threads", &self.threads)
            .field("prefill_chunk", &self.prefill_chunk)
            .field("chunk_bytes", &self.chunk_bytes)
            .field("link", &self.link.is_some())
            .field("kv_type", &self.kv_type)
            .field("dot", &self.dot)
            .finish()
    }
}

/// A weight matrix as its GGUF blocks, `rows` rows of `cols` values, of which `data` holds
/// rows `first..` (all of them, unless the rest live in [`shards`]).
pub struct CpuWeight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
    first: usize,
    /// The shards' name for it.
    id: u32,
}

impl CpuWeight {
    fn row(&self, r: usize) -> Option<&[u8]> {
        let r = r.checked_sub(self.first)?;
        self.data.get(r * self.row_bytes..(r + 1) * self.row_bytes)
    }
}

type Weights = graph::Weights<CpuWeight, Vec<f32>>;

pub struct CpuModel {
    pub cfg: LlamaConfig,
    /// The context, sizes and types it holds.
    pub held: crate::backend::Footprint,
    /// Tokens per forward pass at most.
    pub chunk: usize,
    pub simd: Simd,
    pub dot: CpuDot,
    pool: Pool,
    shards: Option<Shards>,
    w: Weights,
    inv_freq: Vec<f32>,
    caches: Vec<KvCache>,
    /// KV-cache bytes the attention read in the last chunk of the last forward pass.
    kv_read_last: u64,
}

/// The most memory a wasm32 instance can have (4 GiB of address space).
pub const WASM32_MEMORY: u64 = 4 << 30;

/// Bytes the CPU backend holds for `file` with a KV cache of `context` tokens of `kv_type`:
/// every tensor's blocks, the cache, and activations for one prefill chunk (the attention
/// keeps no per-context scores).
pub fn memory_bytes(cfg: &LlamaConfig, file: &GgufFile, context: usize, chunk: usize, kv_type: KvType) -> Result<u64> {
    let weights: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
    let kv = crate::kv::kv_bytes(cfg, context, kv_type)?;
    Ok(weights.saturating_add(kv).saturating_add(activation_bytes(cfg, chunk)))
}

/// A pass's activations for `chunk` tokens, in bytes.
fn activation_bytes(cfg: &LlamaConfig, chunk: usize) -> u64 {
    let kv_dim = (cfg.n_head_kv * cfg.head_dim) as u64;
    let q_dim = (cfg.n_head * cfg.head_dim) as u64;
    let per_token = 3 * cfg.n_embd as u64 + 2 * q_dim + 2 * kv_dim + 3 * cfg.n_ff as u64 + cfg.n_vocab as u64;
    (chunk as u64).saturating_mul(per_token).saturating_mul(4)
}

/// The widest input of any shard job (a matmul's, or the attention's Q, K and V) and the most
/// rows one job computes (a fused group, or the output layer): what sizes the shards'
/// exchange ([`shards::exchange`]).
fn exchange_dims(cfg: &LlamaConfig) -> (usize, usize) {
    let (q_dim, kv_dim) = (cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim);
    // (the attention job's input: a token's Q, K and V rows)
    let widest = cfg.n_embd.max(q_dim).max(cfg.n_ff).max(q_dim + 2 * kv_dim);
    let group = (q_dim + 2 * kv_dim).max(2 * cfg.n_ff).max(cfg.n_vocab).max(cfg.n_embd);
    (widest, group)
}

/// Memory a wasm instance needs beyond its planned buffers: the engine's code, tokenizer and
/// heap; a shard's code, heap and the piece of weights being added.
const ENGINE_ROOM: u64 = 256 << 20;
const SHARD_ROOM: u64 = 64 << 20;

/// One instance's planned bytes ([`instance_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceBytes {
    /// Its rows of the weight matrices (the engine: and the norms, as f32).
    pub weights: u64,
    /// Everything: weights, its KV heads' cache, activations and exchange buffers, room.
    pub total: u64,
}

/// What each instance holds with the model split over `parts` threads (1: the engine alone):
/// the engine (index 0) part 0 of every matrix, the norms, the KV cache, a pass's activations
/// and the shards' outputs; shard `p` part `p` of every matrix and its input and output
/// buffers. Each with [`ENGINE_ROOM`] or [`SHARD_ROOM`] for code and heap. From the header only.
pub fn instance_bytes(file: &GgufFile, opts: &CpuOptions, parts: usize) -> Result<Vec<InstanceBytes>> {
    let cfg = LlamaConfig::from_gguf(file)?;
    let parts = parts.max(1);
    let context = crate::plan::wanted_context(&cfg, opts.context)?;
    let kv_type = opts.kv_type.unwrap_or(DEFAULT_KV_TYPE);
    let kv = crate::kv::kv_bytes(&cfg, context, kv_type)?;
    let chunk = opts.prefill_chunk.max(1);
    let t = graph::Tensors::of(file, &cfg)?;
    let w = &t.weights;
    let matrices = std::iter::once(w.tok_embd)
        .chain(w.layers.iter().flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]))
        .chain(w.output);
    let split = shards::Split { parts, lead: opts.link.as_ref().map_or(shards::EVEN, |l| l.lead()) };
    let mut weights = vec![0u64; parts];
    for m in matrices {
        let rows = m.rows().max(1);
        for (p, b) in weights.iter_mut().enumerate() {
            *b += m.n_bytes / rows * split.part(rows as usize, p).len() as u64;
        }
    }
    let vectors = w.layers.iter().flat_map(|l| [l.attn_norm, l.ffn_norm]).chain([w.output_norm]).chain(t.rope_freqs);
    weights[0] += vectors.map(|v| v.n_elements() * 4).sum::<u64>();
    let (widest, group) = exchange_dims(&cfg);
    let att = split.attention_out(&shards::AttnShape::of(&cfg, kv_type, context));
    let (max_in, max_out) = shards::exchange(split, chunk, widest, group, cfg.n_embd, att);
    // the KV cache is split by heads, as the attention is (the engine's share with one thread)
    let kv_of = |p: usize| {
        if parts > 1 {
            kv / cfg.n_head_kv.max(1) as u64 * split.heads(cfg.n_head_kv, p).len() as u64
        } else {
            kv
        }
    };
    let (max_in, max_out) = (4 * max_in as u64, 4 * max_out as u64);
    Ok(weights
        .into_iter()
        .enumerate()
        .map(|(p, weights)| {
            let total = if p == 0 {
                // with shards: their outputs, and the piece of a tensor being passed on
                let exchange = if parts > 1 { (parts as u64 - 1) * max_out + opts.chunk_bytes } else { 0 };
                weights + kv_of(0) + activation_bytes(&cfg, chunk) + exchange + ENGINE_ROOM
            } else {
                // the input, its 8-bit copy and the output, as the shard holds them
                weights + kv_of(p) + 2 * max_in + 2 * max_out + SHARD_ROOM
            };
            InstanceBytes { weights, total }
        })
        .collect())
}

/// The machine's physical memory (Linux: `MemTotal`), the native bound of [`check_fits`]
/// (the KV cache grows with use, so this refuses only what could never fit).
fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// `Err(OutOfMemory)` when the CPU backend cannot hold `file` in `limit` bytes of memory
/// (wasm32: [`WASM32_MEMORY`] for each instance, the engine and every shard of
/// `opts.link`); checked from the header, before any weight is fetched.
pub fn check_fits(file: &GgufFile, opts: &CpuOptions, limit: u64) -> Result<()> {
    let parts = opts.link.as_ref().map_or(1, |l| l.parts().max(1));
    // natively threads share one memory; in wasm32 each is an instance of its own
    let split = cfg!(target_arch = "wasm32") || opts.link.is_some();
    check_instances(file, opts, parts, limit, split)
}

/// [`check_fits`] for `parts` instances of `limit` bytes each, naming the thread count that
/// would fit when `parts` does not.
pub fn check_fits_parts(file: &GgufFile, opts: &CpuOptions, parts: usize, limit: u64) -> Result<()> {
    check_instances(file, opts, parts, limit, true)
}

fn check_instances(file: &GgufFile, opts: &CpuOptions, parts: usize, limit: u64, split: bool) -> Result<()> {
    let need = instance_bytes(file, opts, parts)?;
    let Some((p, over)) = need.iter().enumerate().find(|(_, b)| b.total > limit) else { return Ok(()) };
    let cfg = LlamaConfig::from_gguf(file)?;
    let context = crate::plan::wanted_context(&cfg, opts.context)?;
    let kv_type = opts.kv_type.unwrap_or(DEFAULT_KV_TYPE);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let most = |n: usize| instance_bytes(file, opts, n).map(|v| v.iter().map(|b| b.total).max().unwrap_or(0));
    let hint = if !split {
        String::new()
    } else {
        let mut fits = None;
        for n in parts + 1..=shards::MAX_PARTS {
            let m = most(n)?;
            if m <= limit {
                fits = Some((n, m));
                break;
            }
        }
        match fits {
            Some((n, m)) => format!("threads: {n} would fit (each instance {:.2} GiB at most); otherwise ", gib(m)),
            None => format!("no thread count up to {} fits; ", shards::MAX_PARTS),
        }
    };
    let (who, what) = match p {
        0 => {
            let kv = crate::kv::kv_bytes(&cfg, context, kv_type)?;
            let cache = format!("a {context}-token {kv_type} KV cache of {kv} bytes");
            let split = shards::Split { parts, lead: opts.link.as_ref().map_or(shards::EVEN, |l| l.lead()) };
            let heads = split.heads(cfg.n_head_kv, 0).len();
            (
                "the engine",
                if parts > 1 { format!("{heads} of the {} KV heads of {cache}", cfg.n_head_kv) } else { cache },
            )
        }
        p => ("shard", format!("part {p} of every matrix and of the KV cache")),
    };
    let who = if p == 0 { who.to_string() } else { format!("{who} {p}") };
    Err(Error::OutOfMemory(format!(
        "the CPU backend needs {:.2} GiB in {who}'s instance at {parts} thread(s) ({:.2} GiB of weights + {what}), \
         more than the {:.2} GiB {} can hold; {hint}use a smaller context, a smaller KV type, WebGPU or a smaller model",
        gib(over.total),
        gib(over.weights),
        gib(limit),
        if cfg!(target_arch = "wasm32") { "wasm32 memory" } else { "this machine's memory" }
    )))
}

impl CpuModel {
    /// Reads the weights of `file` (parsed from `src`) into memory as they are.
    pub async fn load<S: AsyncByteSource + ?Sized>(
        src: &S,
        file: &GgufFile,
        opts: &CpuOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(file)?;
        let kv_type = opts.kv_type.unwrap_or(DEFAULT_KV_TYPE);
        // a head dimension the type cannot hold in whole blocks is an error before any fetch
        kv_type.row_bytes(cfg.head_dim)?;
        if cfg!(target_arch = "wasm32") {
            check_fits(file, opts, WASM32_MEMORY)?;
        } else if let Some(ram) = host_memory() {
            check_fits(file, opts, ram)?;
        }
        let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
        let mut loaded = 0u64;
        let mut types: std::collections::BTreeMap<String, usize> = Default::default();
        let step = opts.chunk_bytes.max(4 << 10) as usize;

        // `t`'s first `keep` bytes; the rest goes piece by piece to `send(at, piece)` (the
        // shards), so no more than `keep` + one piece of it is held at a time
        let mut read = async |t: &TensorInfo, keep: usize, send: &mut dyn FnMut(usize, &[u8]) -> Result<()>| {
            let n = usize::try_from(t.n_bytes)
                .map_err(|_| Error::OutOfMemory(format!("tensor '{}' is too large", t.name)))?;
            let keep = keep.min(n);
            let mut data = Vec::new();
            data.try_reserve_exact(keep)
                .map_err(|_| Error::OutOfMemory(format!("{keep} bytes for tensor '{}'", t.name)))?;
            // pieces of whole blocks, so each is checked on its own
            let block = t.ty.type_size().max(1) as usize;
            let step = step.div_ceil(block) * block;
            let mut piece = vec![0u8; if keep < n { step.min(n) } else { 0 }];
            data.resize(keep, 0);
            let mut at = 0;
            while at < n {
                let len = step.min(n - at);
                let buf = if at + len <= keep { &mut data[at..at + len] } else { &mut piece[..len] };
                src.fetch(t.offset + at as u64, buf).await?;
                // NaN/Inf scales (or F32/F16/BF16 values) name the tensor here, as on the GPU path
                crate::numerics::check_weights(&t.name, t.ty, buf, (at / block) as u64)?;
                if at + len > keep {
                    let mine = keep.saturating_sub(at);
                    data[at.min(keep)..].copy_from_slice(&piece[..mine]);
                    send(at + mine, &piece[mine..len])?;
                }
                at += len;
                loaded += len as u64;
                progress(Progress { phase: Phase::Upload, loaded, total });
            }
            Ok::<_, Error>(data)
        };
        let mut shards = opts.link.clone().map(Shards::new);
        let tensors = graph::Tensors::of(file, &cfg)?;
        let weight = async |t: &TensorInfo| -> Result<CpuWeight> {
            let name = t.name.as_str();
            if !dot::supported(t.ty) {
                return Err(Error::UnsupportedType { tensor: name.into(), ty: t.ty.id(), name: t.ty.name().into() });
            }
            let (rows, cols) = (t.rows() as usize, t.cols() as usize);
            let row_bytes = t.ty.bytes_for(cols as u64).ok_or_else(|| Error::BadShape {
                name: name.into(),
                got: t.dims.clone(),
                expected: vec![],
            })? as usize;
            *types.entry(t.ty.name().to_string()).or_default() += 1;
            let mut w = CpuWeight { ty: t.ty, rows, cols, row_bytes, data: Vec::new(), first: 0, id: 0 };
            // with shards, every matrix (token_embd too) is split: the engine keeps part 0
            let data = match shards.as_mut() {
                Some(s) => {
                    let keep = s.register(&mut w)?;
                    read(t, keep, &mut |at, piece| s.send(&w, at, piece)).await?
                }
                None => read(t, usize::MAX, &mut |_, _| Ok(())).await?,
            };
            w.data = data;
            Ok(w)
        };
        let norm = async |t: &TensorInfo| graph::read_f32(src, t).await;
        let w = tensors.load(weight, norm).await?;
        let want_ctx = crate::plan::wanted_context(&cfg, opts.context)?;
        // with shards, the engine keeps the cache of its KV heads only (part 0's)
        let own_kv = shards.as_ref().map_or(cfg.n_head_kv, |s| s.split().heads(cfg.n_head_kv, 0).len());
        let caches = (0..cfg.n_layer)
            .map(|_| KvCache::new(kv_type, own_kv, cfg.head_dim, want_ctx))
            .collect::<Result<Vec<_>>>()?;
        let rope_freqs = match tensors.rope_freqs {
            Some(t) => Some(graph::read_f32(src, t).await?),
            None => None,
        };
        let inv_freq = graph::rope_inv_freq(cfg.head_dim, cfg.rope_base, rope_freqs.as_deref());
        let weight_bytes = file.tensors.iter().map(|t| t.n_bytes).sum();
        let chunk = opts.prefill_chunk.max(1);
        if let Some(s) = shards.as_mut() {
            let (widest, group) = exchange_dims(&cfg);
            let att = s.split().attention_out(&shards::AttnShape::of(&cfg, kv_type, want_ctx));
            s.ready(chunk, widest, group, cfg.n_embd, att)?;
        }
        progress(Progress { phase: Phase::Compile, loaded: total, total });
        Ok(CpuModel {
            held: crate::backend::Footprint {
                kv_bytes: crate::kv::kv_bytes(&cfg, want_ctx, kv_type)?,
                kv_type,
                context: want_ctx,
                weight_bytes,
                tensor_types: types.into_iter().collect(),
            },
            chunk,
            cfg,
            simd: Simd::detect(),
            dot: opts.dot.unwrap_or(DEFAULT_CPU_DOT),
            pool: Pool::new(if shards.is_some() { 1 } else { opts.threads }),
            shards,
            w,
            inv_freq,
            caches,
            kv_read_last: 0,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_blocking<S: crate::gguf::ByteSource + ?Sized>(
        src: &S,
        file: &GgufFile,
        opts: &CpuOptions,
        progress: impl FnMut(Progress),
    ) -> Result<Self> {
        pollster::block_on(Self::load(src, file, opts, progress))
    }

    /// What the model reports (see [`crate::backend::ModelStats`]).
    pub fn stats(&self) -> crate::backend::ModelStats<'_> {
        #[allow(unused_mut)]
        let mut device = format!("CPU, {} thread(s), {}, {} dot", self.threads(), self.simd.name(), self.dot);
        // wasm's measured choice of integer dot (q8::i32_dot)
        #[cfg(target_arch = "wasm32")]
        if self.dot == CpuDot::Int8 {
            device.push_str(if q8::i32_dot() { " (i32 lanes)" } else { " (i16 lanes)" });
        }
        self.held.stats(&self.cfg, self.weight_bytes_per_token(), 0, device)
    }

    /// Threads computing rows: the pool's, or the engine and its shards.
    pub fn threads(&self) -> usize {
        self.shards.as_ref().map_or(self.pool.threads(), Shards::parts)
    }

    /// Weight bytes this instance holds (less than the file's with shards).
    pub fn held_weight_bytes(&self) -> u64 {
        let w = |w: &CpuWeight| w.data.len() as u64;
        let layers: u64 =
            self.w.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]).map(w).sum();
        w(&self.w.tok_embd) + self.w.output.as_ref().map_or(0, w) + layers
    }

    /// Weight bytes read per decoded token (every matrix once; embedding: one row).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let w = |w: &CpuWeight| (w.rows * w.row_bytes) as u64;
        let layers: u64 =
            self.w.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]).map(w).sum();
        self.w.tok_embd.row_bytes as u64 + w(self.w.output()) + layers
    }

    /// KV-cache bytes the attention read in the last forward pass's last chunk (one decoded
    /// token: what it read, every layer), counted as the attention decodes the rows.
    pub fn kv_bytes_read_last(&self) -> u64 {
        self.kv_read_last
    }

    /// Runs `tokens` at positions `pos..`, appending to the KV cache. Returns the logits of
    /// every position (`Logits::All`, `[n, vocab]` row-major) or of the last one only, or
    /// every position's final-norm hidden state (`Logits::Hidden`, `[n, n_embd]`).
    pub fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        let (width, all) = (logits.width(&self.cfg), logits.every_position());
        graph::check_pass(tokens, pos, self.cfg.n_vocab, self.held.context)?;
        let end = pos + tokens.len();
        let mut out = Vec::with_capacity(if all { tokens.len() * width } else { width });
        let mut p = pos;
        let n_chunks = tokens.len().div_ceil(self.chunk);
        for (i, ids) in tokens.chunks(self.chunk).enumerate() {
            let last = i + 1 == n_chunks;
            let mut e = CpuExec::new(&self.cfg, self.simd, &self.pool, &mut self.caches, &self.inv_freq, ids, p);
            e.dot = self.dot;
            e.shards = self.shards.as_ref();
            e.hidden = logits == Logits::Hidden;
            // outputs: every position, the last chunk's last one, or none (earlier chunks)
            e.logits_rows = if all {
                Some(ids.len())
            } else if last {
                Some(1)
            } else {
                None
            };
            graph::forward(&mut e, &self.w)?;
            self.kv_read_last = e.kv_read;
            out.extend(e.logits);
            p += ids.len();
        }
        crate::numerics::check_logits(&out, if all { pos } else { end - 1 }, width)?;
        Ok(out)
    }
}

/// Rotates adjacent pairs of each head of `x` [n, heads, head_dim] (as
/// `gpu::kernels::reference::rope`) with the per-position `(cos, sin)` table `rot` [n, head_dim / 2].
fn rope(x: &mut [f32], heads: usize, head_dim: usize, rot: &[(f64, f64)]) {
    let half = head_dim / 2;
    for (tok, rot) in x.chunks_mut(heads * head_dim).zip(rot.chunks(half.max(1))) {
        for head in tok.chunks_mut(head_dim) {
            for (j, &(c, s)) in rot.iter().enumerate() {
                let (x0, x1) = (head[2 * j] as f64, head[2 * j + 1] as f64);
                head[2 * j] = (x0 * c - x1 * s) as f32;
                head[2 * j + 1] = (x0 * s + x1 * c) as f32;
            }
        }
    }
}

/// One pass over `ids` at positions `pos..`: the activations ([`Act`]) and the op bodies.
pub struct CpuExec<'a> {
    cfg: &'a LlamaConfig,
    simd: Simd,
    dot: CpuDot,
    pool: &'a Pool,
    shards: Option<&'a Shards>,
    caches: &'a mut [KvCache],
    ids: &'a [u32],
    pos: usize,
    /// `(cos, sin)` of every position's rope angles `[n, head_dim / 2]` (all heads, all layers).
    rot: Vec<(f64, f64)>,
    x: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    ffn: Vec<f32>,
    /// The normalized stream `h` and the up projection (scratch).
    h: Vec<f32>,
    up: Vec<f32>,
    /// Logits of the last `logits_rows` tokens (`None`: no output this pass).
    logits_rows: Option<usize>,
    /// Output the final-norm hidden states instead of logits.
    hidden: bool,
    logits: Vec<f32>,
    /// KV-cache bytes the attention read this pass.
    kv_read: u64,
}

impl<'a> CpuExec<'a> {
    fn new(
        cfg: &'a LlamaConfig,
        simd: Simd,
        pool: &'a Pool,
        caches: &'a mut [KvCache],
        inv_freq: &[f32],
        ids: &'a [u32],
        pos: usize,
    ) -> Self {
        let n = ids.len();
        let hd = cfg.head_dim;
        let (q_dim, kv_dim) = (cfg.n_head * hd, cfg.n_head_kv * hd);
        let rot = (0..n)
            .flat_map(|t| inv_freq.iter().map(move |&f| ((pos + t) as f64 * f as f64).sin_cos()))
            .map(|(s, c)| (c, s))
            .collect();
        CpuExec {
            cfg,
            simd,
            dot: DEFAULT_CPU_DOT,
            pool,
            shards: None,
            caches,
            ids,
            pos,
            rot,
            x: vec![0.0; n * cfg.n_embd],
            qkv: vec![0.0; n * (q_dim + 2 * kv_dim)],
            att: vec![0.0; n * q_dim],
            ffn: vec![0.0; n * cfg.n_ff],
            h: vec![0.0; n * cfg.n_embd],
            up: vec![0.0; n * cfg.n_ff],
            logits_rows: None,
            hidden: false,
            logits: Vec::new(),
            kv_read: 0,
        }
    }

    fn ops(&self) -> Ops<'a> {
        Ops { simd: self.simd, dot: self.dot, pool: self.pool, shards: self.shards }
    }
}

impl Exec for CpuExec<'_> {
    type Weight = CpuWeight;
    type Norm = Vec<f32>;

    fn embed(&mut self, tok_embd: &CpuWeight) -> Result<()> {
        if let Some(s) = self.shards {
            return s.embed(tok_embd, self.ids, &mut self.x);
        }
        let e = self.cfg.n_embd;
        for (&id, x) in self.ids.iter().zip(self.x.chunks_exact_mut(e)) {
            let row = tok_embd.row(id as usize).ok_or(Error::TokenOutOfVocab { id, vocab: tok_embd.rows })?;
            dot::decode_row(tok_embd.ty, row, x);
        }
        Ok(())
    }

    fn qkv(&mut self, norm: &Vec<f32>, wq: &CpuWeight, wk: &CpuWeight, wv: &CpuWeight) -> Result<()> {
        rmsnorm(&self.x, norm, self.cfg.rms_eps, &mut self.h);
        let n = self.ids.len();
        let stride = wq.rows + wk.rows + wv.rows;
        let outs = [
            Out { w: wq, dst: 0, stride, off: 0 },
            Out { w: wk, dst: 0, stride, off: wq.rows },
            Out { w: wv, dst: 0, stride, off: wq.rows + wk.rows },
        ];
        self.ops().group(&self.h, n, &mut [&mut self.qkv], &outs, false)
    }

    /// Ropes Q and K in place in the QKV rows; the K and V rows are stored by
    /// [`Exec::attention`], which with shards stores only the engine's heads.
    fn rope_store(&mut self, _layer: usize) -> Result<()> {
        let (c, n) = (self.cfg, self.ids.len());
        let hd = c.head_dim;
        let width = (c.n_head + 2 * c.n_head_kv) * hd;
        // Q and K are adjacent in a row and every head turns by its token's angles
        let roped = (c.n_head + c.n_head_kv) * hd;
        for (row, rot) in self.qkv.chunks_exact_mut(width).take(n).zip(self.rot.chunks((hd / 2).max(1))) {
            rope(&mut row[..roped], c.n_head + c.n_head_kv, hd, rot);
        }
        Ok(())
    }

    fn attention(&mut self, layer: usize) -> Result<()> {
        let (pos, n, c) = (self.pos, self.ids.len(), self.cfg);
        let cache = self.caches.get_mut(layer).ok_or_else(|| Error::InvalidArgument(format!("no layer {layer}")))?;
        let shape = shards::AttnShape::of(c, cache.ty, cache.context);
        let ops = (self.simd, self.pool);
        let Some(s) = self.shards else {
            let att = self
                .att
                .get_mut(..n * c.n_head * c.head_dim)
                .ok_or_else(|| Error::InvalidArgument("attention output too short".into()))?;
            self.kv_read += shards::attend_heads(ops, cache, &shape, 0..c.n_head_kv, (pos, n), &self.qkv, att)?;
            return Ok(());
        };
        // by KV heads: the shards attend with theirs while the engine does its own
        s.start_attention(&shape, layer, pos, n, &self.qkv)?;
        let h = s.split().heads(c.n_head_kv, 0);
        let cols = shape.q_cols(&h);
        let mut out = vec![0f32; n * cols.len()];
        let own = shards::attend_heads(ops, cache, &shape, h, (pos, n), &self.qkv, &mut out);
        shards::scatter(&out, c.n_head * c.head_dim, cols, &mut self.att);
        // the started job is taken back even when the engine's share failed
        let theirs = s.finish_attention(&shape, n, &mut self.att);
        self.kv_read += own? + theirs?;
        Ok(())
    }

    fn matmul_add(&mut self, w: &CpuWeight, input: Act) -> Result<()> {
        let input = match input {
            Act::Att => &self.att,
            Act::Ffn => &self.ffn,
            Act::Qkv => &self.qkv,
            Act::X => return Err(Error::InvalidArgument("X += W·X is not an op of the graph".into())),
        };
        let out = Out { w, dst: 0, stride: w.rows, off: 0 };
        self.ops().group(input, self.ids.len(), &mut [&mut self.x], &[out], true)
    }

    fn ffn_gate_up_silu(&mut self, norm: &Vec<f32>, gate: &CpuWeight, up: &CpuWeight) -> Result<()> {
        rmsnorm(&self.x, norm, self.cfg.rms_eps, &mut self.h);
        let n = self.ids.len();
        if let Some(s) = self.shards {
            return s.gate_up_silu(&self.ops(), &self.h, n, (gate, up), &mut self.ffn, &mut self.up);
        }
        let outs = [Out { w: gate, dst: 0, stride: gate.rows, off: 0 }, Out { w: up, dst: 1, stride: up.rows, off: 0 }];
        self.ops().group(&self.h, n, &mut [&mut self.ffn, &mut self.up], &outs, false)?;
        shards::silu_mul(&mut self.ffn, &self.up);
        Ok(())
    }

    fn output(&mut self, norm: &Vec<f32>, w: &CpuWeight) -> Result<()> {
        let Some(rows) = self.logits_rows else { return Ok(()) };
        let (e, n) = (self.cfg.n_embd, self.ids.len());
        let rows = rows.min(n);
        let x = &self.x[(n - rows) * e..];
        let mut h = vec![0f32; rows * e];
        rmsnorm(x, norm, self.cfg.rms_eps, &mut h);
        if self.hidden {
            self.logits = h;
            return Ok(());
        }
        self.logits = vec![0f32; rows * w.rows];
        let out = Out { w, dst: 0, stride: w.rows, off: 0 };
        self.ops().group(&h, rows, &mut [&mut self.logits], &[out], false)
    }
}

/// The op bodies that carry the work, on the pool's threads (and the shards').
struct Ops<'a> {
    simd: Simd,
    dot: CpuDot,
    pool: &'a Pool,
    shards: Option<&'a Shards>,
}

/// A matmul's input: `n` tokens of `x` (`[n, cols]`), and on the integer path the same as
/// 8-bit blocks (`q8`).
#[derive(Clone, Copy)]
struct MatIn<'a> {
    x: &'a [f32],
    q8: Option<&'a Q8Act>,
    n: usize,
}

/// Where a matmul writes: `y[t · stride + off + j]`, added to when `accumulate`.
struct MatOut<'y> {
    y: &'y mut [f32],
    stride: usize,
    off: usize,
    accumulate: bool,
}

impl Ops<'_> {
    /// Matmuls of one input `x` (`n` tokens) into `ys`, split with the shards if there are any.
    fn group(&self, x: &[f32], n: usize, ys: &mut [&mut [f32]], outs: &[Out], acc: bool) -> Result<()> {
        if let Some(s) = self.shards {
            return s.matmuls(self, x, n, ys, outs, acc);
        }
        // the input is quantized once for every matmul of the group that reads it
        let mut acts = Vec::new();
        for o in outs {
            let y = ys.get_mut(o.dst).ok_or_else(|| Error::InvalidArgument("matmul destination".into()))?;
            let a = self.quantized(o.w, x, n, &mut acts);
            self.matmul(
                o.w,
                0..o.w.rows,
                MatIn { x, q8: a, n },
                MatOut { y, stride: o.stride, off: o.off, accumulate: acc },
            );
        }
        Ok(())
    }

    /// `x` (`n` tokens of `w.cols`) as the 8-bit blocks `w` is dotted with, from `acts` or
    /// quantized into it; `None` on the exact path (or for a float weight type).
    fn quantized<'c>(&self, w: &CpuWeight, x: &[f32], n: usize, acts: &'c mut Vec<Q8Act>) -> Option<&'c Q8Act> {
        if self.dot != CpuDot::Int8 {
            return None;
        }
        let k = q8::kind(w.ty)?;
        let i = match acts.iter().position(|a| a.kind == k && a.cols == w.cols && a.n == n) {
            Some(i) => i,
            None => {
                acts.push(Q8Act::quantize(k, x, n, w.cols)?);
                acts.len() - 1
            }
        };
        acts.get(i)
    }

    /// `y[t · stride + off + j] (+)= Σ_k w[r, k] x[t, k]`, `r = rows.start + j`, for the `rows`
    /// of `w` (held by it) and `n` tokens; with `q8` (`x` quantized), in integers.
    fn matmul(&self, w: &CpuWeight, rows: Range<usize>, input: MatIn, out: MatOut) {
        let (MatIn { x, q8, n }, MatOut { y, stride, off, accumulate }) = (input, out);
        let (cols, rb) = (w.cols, w.row_bytes);
        // rows outside what `w` holds read as empty (rows_dot gives 0), never out of bounds
        let data = rows.start.checked_sub(w.first).and_then(|r| w.data.get(r * rb..)).unwrap_or(&[]);
        let (r_first, rows) = (rows.start, rows.len());
        let simd = self.simd;
        if n == 1 {
            let y = &mut y[off..];
            let chunk = self.pool.split(rows, 8);
            let run = |dst: &mut [f32]| {
                self.pool.chunks(dst, chunk, |i, o| {
                    let r0 = i * chunk;
                    let wr = data.get(r0 * rb..).unwrap_or(&[]);
                    match q8 {
                        Some(a) => q8::rows_dot(simd, w.ty, wr, rb, a.row(0), o),
                        None => dot::rows_dot(simd, w.ty, wr, rb, &x[..cols], o),
                    }
                })
            };
            if accumulate {
                let mut tmp = vec![0f32; rows];
                run(&mut tmp);
                for (y, t) in y.iter_mut().zip(&tmp) {
                    *y += t;
                }
            } else {
                run(&mut y[..rows]);
            }
            return;
        }
        // Several tokens: decode 4 rows at a time (they stay in L1), dot them with every
        // token in register tiles. Output [rows, n] (one row's results together), transposed
        // into y at the end. The buffer is the thread's, kept between matmuls (up to 4 MiB: a
        // prefill chunk's widest, not every token's logits): a fresh one had its pages zeroed
        // by the kernel every time (~5% of a prefill).
        thread_local! {
            static YT: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut yt = YT.take();
        yt.clear();
        yt.resize(rows * n, 0.0);
        let chunk = self.pool.split(rows, 4) * n;
        if let Some(a) = q8 {
            // integers: each row once, dotted with every token's blocks
            self.pool.chunks(&mut yt, chunk, |i, o| {
                let wr = data.get(i * chunk / n * rb..).unwrap_or(&[]);
                q8::rows_dots(simd, w.ty, wr, rb, a, o);
            });
        } else if n <= dot::SMALL_BATCH && dot::fused_small_batch(simd, w.ty) {
            // a few tokens (speculative verification): each row read once for all of them,
            // the results those of single-token decoding
            let x = &x[..n * cols];
            let chunk = self.pool.split(rows, 8) * n;
            self.pool.chunks(&mut yt, chunk, |i, o| {
                let wr = data.get(i * chunk / n * rb..).unwrap_or(&[]);
                dot::rows_dots(simd, w.ty, wr, rb, x, cols, o);
            });
        } else {
            let x = &x[..n * cols];
            self.pool.chunks(&mut yt, chunk, |i, o| {
                let mut wr = vec![0f32; 4 * cols];
                let r0 = r_first + i * chunk / n;
                for (j, og) in o.chunks_mut(4 * n).enumerate() {
                    let k = og.len() / n;
                    for (q, wq) in wr.chunks_exact_mut(cols).take(k).enumerate() {
                        match w.row(r0 + 4 * j + q) {
                            Some(row) => dot::decode_row(w.ty, row, wq),
                            None => wq.fill(0.0),
                        }
                    }
                    dot::dots(simd, &wr[..k * cols], x, cols, og);
                }
            });
        }
        // in blocks of 64 rows, whose results stay in L1 while every token takes them
        for r0 in (0..rows).step_by(64) {
            let rs = 64.min(rows - r0);
            for t in 0..n {
                let yr = &mut y[t * stride + off + r0..][..rs];
                for (r, yv) in yr.iter_mut().enumerate() {
                    let v = yt[(r0 + r) * n + t];
                    *yv = if accumulate { *yv + v } else { v };
                }
            }
        }
        if yt.capacity() <= 1 << 20 {
            YT.set(yt);
        }
    }
}
