//! The Llama 3 graph on the GPU. Weights stream from a [`ByteSource`] into GPU buffers one
//! bounded chunk at a time; every kernel launch of a forward pass is recorded once at load
//! (bind groups and all) and replayed per pass, so a token costs one submit.
//!
//! Per layer, reading top to bottom like the math:
//! ```text
//!   h  = rmsnorm(x) · attn_norm
//!   q, k, v = Wq h, Wk h, Wv h
//!   q, k = rope(q, k) ; cache[pos..] ← k, v
//!   x += Wo · attention(q, cache)
//!   h  = rmsnorm(x) · ffn_norm
//!   x += Wdown · (silu(Wgate h) ⊙ Wup h)
//! ```
//! then `logits = Wout · rmsnorm(x) · output_norm` (Wout = token_embd when tied).

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgmlType, GgufFile, LlamaConfig, TensorInfo};
use crate::gpu::{Gpu, GpuOptions};
use crate::kernels::{self, reference, AttnShape, Dispatch, GpuWeight, MatmulOpts, Step};
use crate::quant;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub gpu: GpuOptions,
    /// KV cache capacity in tokens; default: the model's, capped at [`DEFAULT_MAX_CONTEXT`].
    pub context: Option<usize>,
    /// Host bytes read per upload step (the most model data held in memory at once).
    pub chunk_bytes: u64,
    /// Tokens per prefill pass.
    pub prefill_chunk: usize,
}

pub const DEFAULT_MAX_CONTEXT: usize = 4096;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { gpu: GpuOptions::default(), context: None, chunk_bytes: 8 << 20, prefill_chunk: 64 }
    }
}

/// What loading is doing: streaming weights to the GPU, then building pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Upload,
    Compile,
}

/// Loading progress: bytes of tensor data uploaded so far.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: Phase,
    pub loaded: u64,
    pub total: u64,
}

struct Layer {
    attn_norm: wgpu::Buffer,
    wq: GpuWeight,
    wk: GpuWeight,
    wv: GpuWeight,
    wo: GpuWeight,
    ffn_norm: wgpu::Buffer,
    w_gate: GpuWeight,
    w_up: GpuWeight,
    w_down: GpuWeight,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
}

impl Layer {
    /// GPU bytes of the matrices of `layers` (each is read once per token).
    fn weight_bytes(layers: &[Layer]) -> u64 {
        layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .map(|w| w.gpu_bytes())
            .sum()
    }
}

/// Activations for one prefill chunk, sized once.
struct Acts {
    step: wgpu::Buffer,
    ids: wgpu::Buffer,
    x: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    att: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    scores: wgpu::Buffer,
    logits_all: wgpu::Buffer,
    logits_last: wgpu::Buffer,
}

pub struct LlamaModel {
    pub cfg: LlamaConfig,
    pub gpu: Gpu,
    /// KV cache capacity.
    pub context: usize,
    /// Tokens per forward pass at most.
    pub chunk: usize,
    /// Bytes of weights on the GPU, and of everything we allocated there.
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub gpu_bytes: u64,
    /// Weight types by tensor count, for `info`.
    pub tensor_types: Vec<(String, usize)>,
    tok_embd: GpuWeight,
    output: Option<GpuWeight>,
    output_norm: wgpu::Buffer,
    inv_freq_buf: wgpu::Buffer,
    layers: Vec<Layer>,
    acts: Acts,
    body: Vec<Dispatch>,
    out_all: Vec<Dispatch>,
    out_last: Vec<Dispatch>,
}

fn tensor<'a>(f: &'a GgufFile, name: &str) -> Result<&'a TensorInfo> {
    f.tensor(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
}

/// A small tensor (norms, rope factors) read whole and converted to f32.
async fn read_f32<S: AsyncByteSource + ?Sized>(src: &S, t: &TensorInfo) -> Result<Vec<f32>> {
    if t.n_bytes > 64 << 20 {
        return Err(Error::BadShape { name: t.name.clone(), got: t.dims.clone(), expected: vec![] });
    }
    let mut raw = vec![0u8; t.n_bytes as usize];
    src.fetch(t.offset, &mut raw).await?;
    match t.ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => quant::dequantize(t.ty, &raw),
        _ => Err(Error::UnsupportedType {
            tensor: t.name.clone(),
            ty: t.ty.id(),
            name: format!("{} (expected F32 for a 1-D tensor)", t.ty.name()),
        }),
    }
}

impl LlamaModel {
    /// Reads the weights of `file` (parsed from `src`) into GPU buffers and records the graph.
    pub async fn load<S: AsyncByteSource + ?Sized>(
        src: &S,
        file: &GgufFile,
        opts: &LoadOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(file)?;
        let gpu = Gpu::new(&opts.gpu).await?;
        let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
        let mut loaded = 0u64;
        let mut types: std::collections::BTreeMap<String, usize> = Default::default();

        let mut weight = async |name: &str| -> Result<GpuWeight> {
            let t = tensor(file, name)?;
            *types.entry(t.ty.name().to_string()).or_default() += 1;
            GpuWeight::upload(&gpu, name, t.ty, t.rows(), t.cols(), src, t.offset, opts.chunk_bytes, |n| {
                loaded += n;
                progress(Progress { phase: Phase::Upload, loaded, total });
            })
            .await
        };
        let tok_embd = weight("token_embd.weight").await?;
        let output = if cfg.tied_embeddings { None } else { Some(weight("output.weight").await?) };
        let mut ws = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            ws.push([
                weight(&n("attn_q")).await?,
                weight(&n("attn_k")).await?,
                weight(&n("attn_v")).await?,
                weight(&n("attn_output")).await?,
                weight(&n("ffn_gate")).await?,
                weight(&n("ffn_up")).await?,
                weight(&n("ffn_down")).await?,
            ]);
        }
        let tensor_types = types.into_iter().collect();
        let norm = async |name: &str| -> Result<wgpu::Buffer> {
            let v = read_f32(src, tensor(file, name)?).await?;
            gpu.storage_from(name, bytemuck::cast_slice(&v))
        };
        let output_norm = norm("output_norm.weight").await?;
        let rope_freqs = match file.tensor("rope_freqs.weight") {
            Some(t) => Some(read_f32(src, t).await?),
            None => None,
        };
        let inv_freq = reference::rope_inv_freq(cfg.head_dim, cfg.rope_base, rope_freqs.as_deref());
        let inv_freq_buf = gpu.storage_from("inv_freq", bytemuck::cast_slice(&inv_freq))?;

        // Context and chunk sizes: what the user asked, bounded by the bindings we have.
        let kv_dim = cfg.n_head_kv * cfg.head_dim;
        let kv_elem = if gpu.use_f16 { 2 } else { 4 };
        let want_ctx = opts.context.unwrap_or_else(|| cfg.context_length.min(DEFAULT_MAX_CONTEXT)).max(1);
        let max_ctx_binding = (gpu.max_binding / (kv_dim * kv_elem) as u64) as usize;
        let max_ctx_scores = (gpu.max_binding / (cfg.n_head * 4) as u64) as usize;
        let context = want_ctx.min(max_ctx_binding).min(max_ctx_scores);
        if context < want_ctx && opts.context.is_some() {
            return Err(Error::LimitsTooSmall(format!(
                "context {want_ctx} needs bindings above the device's {} bytes; at most {context} fits",
                gpu.max_binding
            )));
        }
        let chunk =
            opts.prefill_chunk.max(1).min((gpu.max_binding / (cfg.n_head * context * 4) as u64).max(1) as usize);

        let mut layers = Vec::with_capacity(cfg.n_layer);
        for (i, w) in ws.into_iter().enumerate() {
            let [wq, wk, wv, wo, w_gate, w_up, w_down] = w;
            layers.push(Layer {
                attn_norm: norm(&format!("blk.{i}.attn_norm.weight")).await?,
                ffn_norm: norm(&format!("blk.{i}.ffn_norm.weight")).await?,
                k_cache: gpu.storage("k_cache", (context * kv_dim * kv_elem) as u64)?,
                v_cache: gpu.storage("v_cache", (context * kv_dim * kv_elem) as u64)?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }

        let f = |n: usize| (chunk * n * 4) as u64;
        let q_dim = cfg.n_head * cfg.head_dim;
        let acts = Acts {
            step: kernels::step_buffer(&gpu),
            ids: gpu.storage("ids", (chunk * 4) as u64)?,
            x: gpu.storage("x", f(cfg.n_embd))?,
            h: gpu.storage("h", f(cfg.n_embd))?,
            q: gpu.storage("q", f(q_dim))?,
            k: gpu.storage("k", f(kv_dim))?,
            v: gpu.storage("v", f(kv_dim))?,
            att: gpu.storage("att", f(q_dim))?,
            gate: gpu.storage("gate", f(cfg.n_ff))?,
            up: gpu.storage("up", f(cfg.n_ff))?,
            scores: gpu.storage("scores", f(cfg.n_head * context))?,
            logits_all: gpu.storage("logits", f(cfg.n_vocab))?,
            logits_last: gpu.storage("logits_last", (cfg.n_vocab * 4) as u64)?,
        };

        let weight_bytes =
            tok_embd.gpu_bytes() + output.as_ref().map_or(0, |o| o.gpu_bytes()) + Layer::weight_bytes(&layers);
        let kv_bytes = (2 * cfg.n_layer * context * kv_dim * kv_elem) as u64;
        let act_bytes: u64 = [
            &acts.x,
            &acts.h,
            &acts.q,
            &acts.k,
            &acts.v,
            &acts.att,
            &acts.gate,
            &acts.up,
            &acts.scores,
            &acts.logits_all,
            &acts.logits_last,
        ]
        .iter()
        .map(|b| b.size())
        .sum();

        let mut m = LlamaModel {
            cfg,
            gpu,
            context,
            chunk,
            weight_bytes,
            kv_bytes,
            gpu_bytes: weight_bytes + kv_bytes + act_bytes,
            tensor_types,
            tok_embd,
            output,
            output_norm,
            inv_freq_buf,
            layers,
            acts,
            body: vec![],
            out_all: vec![],
            out_last: vec![],
        };
        progress(Progress { phase: Phase::Compile, loaded: total, total });
        m.record()?;
        m.gpu.check()?;
        Ok(m)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_blocking<S: crate::gguf::ByteSource + ?Sized>(
        src: &S,
        file: &GgufFile,
        opts: &LoadOptions,
        progress: impl FnMut(Progress),
    ) -> Result<Self> {
        pollster::block_on(Self::load(src, file, opts, progress))
    }

    /// Records the dispatches of one forward pass (see the module docs for the math).
    fn record(&mut self) -> Result<()> {
        let (g, c, a) = (&self.gpu, &self.cfg, &self.acts);
        let s = &a.step;
        let shape = AttnShape {
            n_head: c.n_head as u32,
            n_kv: c.n_head_kv as u32,
            head_dim: c.head_dim as u32,
            ctx: self.context as u32,
        };
        let (embd, q_dim, kv_dim) =
            (c.n_embd as u32, (c.n_head * c.head_dim) as u32, (c.n_head_kv * c.head_dim) as u32);
        let set = MatmulOpts::default();
        let acc = MatmulOpts { accumulate: true, last_only: false };

        let mut body = kernels::embed(g, &self.tok_embd, &a.ids, &a.x, s)?;
        for l in &self.layers {
            body.push(kernels::rmsnorm(g, &a.x, &l.attn_norm, &a.h, embd, c.rms_eps, s)?);
            body.extend(kernels::matmul(g, &l.wq, &a.h, &a.q, q_dim, s, set)?);
            body.extend(kernels::matmul(g, &l.wk, &a.h, &a.k, kv_dim, s, set)?);
            body.extend(kernels::matmul(g, &l.wv, &a.h, &a.v, kv_dim, s, set)?);
            body.push(kernels::rope_store(g, shape, &a.q, &a.k, &a.v, &l.k_cache, &l.v_cache, &self.inv_freq_buf, s)?);
            body.push(kernels::attention(g, shape, &a.q, &l.k_cache, &l.v_cache, &a.scores, &a.att, s)?);
            body.extend(kernels::matmul(g, &l.wo, &a.att, &a.x, embd, s, acc)?);
            body.push(kernels::rmsnorm(g, &a.x, &l.ffn_norm, &a.h, embd, c.rms_eps, s)?);
            body.extend(kernels::matmul(g, &l.w_gate, &a.h, &a.gate, c.n_ff as u32, s, set)?);
            body.extend(kernels::matmul(g, &l.w_up, &a.h, &a.up, c.n_ff as u32, s, set)?);
            body.push(kernels::swiglu(g, &a.gate, &a.up, c.n_ff as u32, s)?);
            body.extend(kernels::matmul(g, &l.w_down, &a.gate, &a.x, embd, s, acc)?);
        }
        body.push(kernels::rmsnorm(g, &a.x, &self.output_norm, &a.h, embd, c.rms_eps, s)?);
        let out_w = self.output.as_ref().unwrap_or(&self.tok_embd);
        let vocab = c.n_vocab as u32;
        self.out_all = kernels::matmul(g, out_w, &a.h, &a.logits_all, vocab, s, set)?;
        self.out_last = kernels::matmul(
            g,
            out_w,
            &a.h,
            &a.logits_last,
            vocab,
            s,
            MatmulOpts { accumulate: false, last_only: true },
        )?;
        self.body = body;
        Ok(())
    }

    /// Kernel launches per decoded token.
    pub fn dispatches_per_token(&self) -> usize {
        self.body.len() + self.out_last.len()
    }

    /// Weight bytes read per decoded token (every weight once; embedding: one row).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let row = self.tok_embd.gpu_bytes() / self.tok_embd.rows.max(1);
        let out = self.output.as_ref().unwrap_or(&self.tok_embd).gpu_bytes();
        row + out + Layer::weight_bytes(&self.layers)
    }

    /// Runs `tokens` at positions `pos..`, appending to the KV cache. Returns the logits of
    /// every position (`all`, `[n, vocab]` row-major) or of the last one only.
    pub async fn forward(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        let vocab = self.cfg.n_vocab;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("forward needs at least one token".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfVocab { id, vocab });
        }
        let end = pos.checked_add(tokens.len()).unwrap_or(usize::MAX);
        if end > self.context {
            return Err(Error::ContextOverflow { needed: end, capacity: self.context });
        }
        let mut out = Vec::with_capacity(if all { tokens.len() * vocab } else { vocab });
        let mut p = pos;
        let chunks: Vec<&[u32]> = tokens.chunks(self.chunk).collect();
        for (i, ch) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let step = Step { n_tokens: ch.len() as u32, pos: p as u32, kv_len: (p + ch.len()) as u32, _pad: 0 };
            self.gpu.queue.write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(ch));
            let mut plan: Vec<&Dispatch> = self.body.iter().collect();
            if all {
                plan.extend(&self.out_all);
            } else if last {
                plan.extend(&self.out_last);
            }
            kernels::submit(&self.gpu, &self.acts.step, step, &plan);
            if all {
                out.extend(self.gpu.read_f32(&self.acts.logits_all, 0, ch.len() * vocab).await?);
            } else if last {
                out = self.gpu.read_f32(&self.acts.logits_last, 0, vocab).await?;
            } else {
                self.gpu.wait()?;
            }
            p += ch.len();
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], pos: usize, all: bool) -> Result<Vec<f32>> {
        pollster::block_on(self.forward(tokens, pos, all))
    }
}
