//! The Llama 3 model on the GPU. Weights stream from a [`ByteSource`] into GPU buffers one
//! bounded chunk at a time, in GGUF's own block encoding; the forward pass is
//! [`graph::forward`] (the math, written once), which [`Recorder`] turns into kernel launches
//! recorded once at load (bind groups and all) and replayed per pass, so a token costs one
//! submit and 6 launches per layer (+2).

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgufFile, LlamaConfig, TensorInfo};
use crate::gpu::kernels::{
    self, AttentionIo, AttnShape, Dispatch, GpuWeight, KvLayout, KvPart, LayerKv, MatmulIo, MatmulOpts, NormIn, RopeIo,
    Step,
};
use crate::gpu::{Gpu, GpuOptions};
use crate::graph::Logits;
use crate::graph::{self, Act, Exec};
pub use crate::graph::{Phase, Progress};
use crate::kv::KvType;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub gpu: GpuOptions,
    /// KV cache capacity in tokens; default: the model's, capped at [`DEFAULT_MAX_CONTEXT`].
    pub context: Option<usize>,
    /// Host bytes read per upload step (the most model data held in memory at once).
    pub chunk_bytes: u64,
    /// Tokens per prefill pass.
    pub prefill_chunk: usize,
    /// The KV cache's element type; default: the backend's (here f16 with shader-f16, else f32).
    pub kv_type: Option<KvType>,
}

pub use crate::plan::DEFAULT_MAX_CONTEXT;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            gpu: GpuOptions::default(),
            context: None,
            chunk_bytes: 8 << 20,
            prefill_chunk: 64,
            kv_type: None,
        }
    }
}

type Weights = graph::Weights<GpuWeight, wgpu::Buffer>;

/// GPU bytes of the matrices of `w`'s layers (each is read once per token).
fn layer_weight_bytes(w: &Weights) -> u64 {
    w.layers
        .iter()
        .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
        .map(|w| w.gpu_bytes())
        .sum()
}

/// One layer's KV cache: K and V buffers per part of `part_positions` positions.
struct KvCache {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
}

/// Activations for one prefill chunk, sized once.
struct Acts {
    step: wgpu::Buffer,
    ids: wgpu::Buffer,
    x: wgpu::Buffer,
    qkv: wgpu::Buffer,
    q: wgpu::Buffer,
    att: wgpu::Buffer,
    ffn: wgpu::Buffer,
    /// `up` when gate and up cannot share a launch (split differently across bindings).
    scratch: wgpu::Buffer,
    /// Attention partial results (split keys, several cache parts).
    partials: wgpu::Buffer,
    logits_all: wgpu::Buffer,
    logits_last: wgpu::Buffer,
}

impl Acts {
    fn buf(&self, a: Act) -> &wgpu::Buffer {
        match a {
            Act::X => &self.x,
            Act::Qkv => &self.qkv,
            Act::Att => &self.att,
            Act::Ffn => &self.ffn,
        }
    }
}

pub struct LlamaModel {
    pub cfg: LlamaConfig,
    pub gpu: Gpu,
    /// The context, sizes (weight bytes: on the GPU) and types it holds.
    pub held: crate::backend::Footprint,
    /// Tokens per forward pass at most.
    pub chunk: usize,
    pub kv_layout: KvLayout,
    /// Cache buffers per layer's K (or V), and the positions each holds.
    pub kv_parts: usize,
    pub part_positions: usize,
    /// Bytes of everything we allocated on the GPU.
    pub gpu_bytes: u64,
    w: Weights,
    /// `output_norm.weight` on the host: the final norm of hidden states (embeddings) is
    /// applied there, to the residual stream read back.
    output_norm: Vec<f32>,
    caches: Vec<KvCache>,
    inv_freq_buf: wgpu::Buffer,
    acts: Acts,
    body: Vec<Dispatch>,
    out_all: Vec<Dispatch>,
    out_last: Vec<Dispatch>,
}

fn attn_shape(cfg: &LlamaConfig, context: usize) -> AttnShape {
    AttnShape {
        n_head: cfg.n_head as u32,
        n_kv: cfg.n_head_kv as u32,
        head_dim: cfg.head_dim as u32,
        ctx: context as u32,
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
        crate::plan::wanted_context(&cfg, opts.context)?; // before the device is created
        let gpu = Gpu::new(&opts.gpu).await?;
        // default: f16 where the kernels compute in f16, else f32 (any type works anywhere:
        // f16 is stored as packed halves, q8_0 / q4_0 as ggml blocks)
        let kv_type = opts.kv_type.unwrap_or(if gpu.use_f16 { KvType::F16 } else { KvType::F32 });
        let kv_layout = KvLayout::new(kv_type, cfg.n_head_kv as u32, cfg.head_dim as u32)?;
        let plan = crate::plan::plan(&cfg, gpu.max_binding, kv_type, opts.context, opts.prefill_chunk)?;
        let (context, chunk, kv_dim) = (plan.context, plan.chunk, plan.kv_dim);
        let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
        let mut loaded = 0u64;
        let mut types: std::collections::BTreeMap<String, usize> = Default::default();

        let tensors = graph::Tensors::of(file, &cfg)?;
        let weight = async |t: &TensorInfo| -> Result<GpuWeight> {
            *types.entry(t.ty.name().to_string()).or_default() += 1;
            GpuWeight::upload(&gpu, t, src, opts.chunk_bytes, |n| {
                loaded += n;
                progress(Progress { phase: Phase::Upload, loaded, total });
            })
            .await
        };
        let norm = async |t: &TensorInfo| -> Result<wgpu::Buffer> {
            let v = graph::read_f32(src, t).await?;
            gpu.storage_from(&t.name, bytemuck::cast_slice(&v))
        };
        let w = tensors.load(weight, norm).await?;
        let output_norm = graph::read_f32(src, tensors.weights.output_norm).await?;
        let tensor_types = types.into_iter().collect();
        let rope_freqs = match tensors.rope_freqs {
            Some(t) => Some(graph::read_f32(src, t).await?),
            None => None,
        };
        let inv_freq = graph::rope_inv_freq(cfg.head_dim, cfg.rope_base, rope_freqs.as_deref());
        let inv_freq_buf = gpu.storage_from("inv_freq", bytemuck::cast_slice(&inv_freq))?;
        let caches = (0..cfg.n_layer)
            .map(|i| {
                let mut c = KvCache { k: vec![], v: vec![] };
                for j in 0..plan.kv_parts {
                    let n = plan.part_positions.min(context - j * plan.part_positions) as u64;
                    c.k.push(gpu.storage(&format!("k_cache {i}.{j}"), n * kv_layout.pos_bytes as u64)?);
                    c.v.push(gpu.storage(&format!("v_cache {i}.{j}"), n * kv_layout.pos_bytes as u64)?);
                }
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;

        let shape = attn_shape(&cfg, context);
        let part_lens: Vec<u32> =
            (0..plan.kv_parts).map(|j| plan.part_positions.min(context - j * plan.part_positions) as u32).collect();
        let f = |n: usize| (chunk * n * 4) as u64;
        let q_dim = cfg.n_head * cfg.head_dim;
        let acts = Acts {
            step: kernels::step_buffer(&gpu),
            ids: gpu.storage("ids", (chunk * 4) as u64)?,
            x: gpu.storage("x", f(cfg.n_embd))?,
            qkv: gpu.storage("qkv", f(q_dim + 2 * kv_dim))?,
            q: gpu.storage("q", f(q_dim))?,
            att: gpu.storage("att", f(q_dim))?,
            ffn: gpu.storage("ffn", f(cfg.n_ff))?,
            scratch: gpu.storage("scratch", f(cfg.n_ff.max(cfg.n_embd)))?,
            partials: gpu.storage(
                "attention partials",
                4 * kernels::attention_scratch_floats(&gpu, shape, &part_lens, chunk as u32),
            )?,
            logits_all: gpu.storage("logits", f(cfg.n_vocab))?,
            logits_last: gpu.storage("logits_last", (cfg.n_vocab * 4) as u64)?,
        };

        let weight_bytes =
            w.tok_embd.gpu_bytes() + w.output.as_ref().map_or(0, |o| o.gpu_bytes()) + layer_weight_bytes(&w);
        let kv_bytes = plan.kv_bytes;
        let act_bytes: u64 = [
            &acts.x,
            &acts.qkv,
            &acts.q,
            &acts.att,
            &acts.ffn,
            &acts.scratch,
            &acts.partials,
            &acts.logits_all,
            &acts.logits_last,
        ]
        .iter()
        .map(|b| b.size())
        .sum();

        let mut m = LlamaModel {
            cfg,
            gpu,
            held: crate::backend::Footprint { context, weight_bytes, kv_bytes, kv_type, tensor_types },
            chunk,
            kv_layout,
            kv_parts: plan.kv_parts,
            part_positions: plan.part_positions,
            gpu_bytes: weight_bytes + kv_bytes + act_bytes,
            w,
            output_norm,
            caches,
            inv_freq_buf,
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

    /// Records the launches of one forward pass ([`graph::forward`]).
    fn record(&mut self) -> Result<()> {
        let mut r = Recorder {
            gpu: &self.gpu,
            cfg: &self.cfg,
            a: &self.acts,
            caches: &self.caches,
            inv_freq: &self.inv_freq_buf,
            shape: attn_shape(&self.cfg, self.held.context),
            kv: self.kv_layout,
            part_positions: self.part_positions as u32,
            chunk: self.chunk as u32,
            body: vec![],
            out_all: vec![],
            out_last: vec![],
        };
        graph::forward(&mut r, &self.w)?;
        (self.body, self.out_all, self.out_last) = (r.body, r.out_all, r.out_last);
        Ok(())
    }

    /// What the model reports (see [`crate::backend::ModelStats`]).
    pub fn stats(&self) -> crate::backend::ModelStats<'_> {
        let device = format!("{} ({})", self.gpu.adapter.name, self.gpu.adapter.backend);
        self.held.stats(&self.cfg, self.weight_bytes_per_token(), self.dispatches_per_token(), device)
    }

    /// Kernel launches per decoded token.
    pub fn dispatches_per_token(&self) -> usize {
        self.body.len() + self.out_last.len()
    }

    /// KV-cache bytes one decoded token reads at `depth` cached positions, counted from what
    /// the attention launches bind and read (each stages its positions' K and V rows once per
    /// KV head).
    pub fn kv_bytes_per_token(&self, depth: usize) -> u64 {
        self.body.iter().map(|d| d.kv_bytes_read(depth as u64)).sum()
    }

    /// Weight bytes read per decoded token (every weight once; embedding: one row).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let row = self.w.tok_embd.gpu_bytes() / self.w.tok_embd.rows.max(1);
        row + self.w.output().gpu_bytes() + layer_weight_bytes(&self.w)
    }

    /// Runs `tokens` at positions `pos..`, appending to the KV cache. Returns the logits of
    /// every position (`Logits::All`, `[n, vocab]` row-major) or of the last one only, or
    /// every position's final-norm hidden state (`Logits::Hidden`, `[n, n_embd]`).
    pub async fn forward(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        let (width, all) = (logits.width(&self.cfg), logits.every_position());
        graph::check_pass(tokens, pos, self.cfg.n_vocab, self.held.context)?;
        let end = pos + tokens.len();
        let mut out = Vec::with_capacity(if all { tokens.len() * width } else { width });
        let mut p = pos;
        let chunks: Vec<&[u32]> = tokens.chunks(self.chunk).collect();
        for (i, ch) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let step = Step { n_tokens: ch.len() as u32, pos: p as u32, kv_len: (p + ch.len()) as u32, _pad: 0 };
            self.gpu.queue.write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(ch));
            let mut plan: Vec<&Dispatch> = self.body.iter().collect();
            match logits {
                Logits::All => plan.extend(&self.out_all),
                Logits::Last if last => plan.extend(&self.out_last),
                Logits::Last | Logits::Hidden => {}
            }
            kernels::submit(&self.gpu, &self.acts.step, step, &plan);
            match logits {
                Logits::All => out.extend(self.gpu.read_f32(&self.acts.logits_all, 0, ch.len() * width).await?),
                Logits::Last if last => out = self.gpu.read_f32(&self.acts.logits_last, 0, width).await?,
                Logits::Last => self.gpu.wait()?,
                Logits::Hidden => {
                    // the residual stream after the last layer, normed here (a few KB per token)
                    let x = self.gpu.read_f32(&self.acts.x, 0, ch.len() * width).await?;
                    let mut h = vec![0f32; x.len()];
                    graph::rmsnorm(&x, &self.output_norm, self.cfg.rms_eps, &mut h);
                    out.extend(h);
                }
            }
            p += ch.len();
        }
        crate::numerics::check_logits(&out, if all { pos } else { end - 1 }, width)?;
        Ok(out)
    }

    /// Wall time of each launch of one pass over `tokens` (at most one chunk) at `pos`, with
    /// the last token's logits when `logits`: every launch submitted alone and waited for (so
    /// each includes a submit), for profiling.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_blocking(&mut self, tokens: &[u32], pos: usize, logits: bool) -> Result<Vec<(String, f64)>> {
        if tokens.is_empty() || tokens.len() > self.chunk || pos + tokens.len() > self.held.context {
            return Err(Error::InvalidArgument(format!("profile: 1..={} tokens within the context", self.chunk)));
        }
        let n = tokens.len() as u32;
        let step = Step { n_tokens: n, pos: pos as u32, kv_len: pos as u32 + n, _pad: 0 };
        self.gpu.queue.write_buffer(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        let out = if logits { &self.out_last[..] } else { &[] };
        let mut times = Vec::new();
        for d in self.body.iter().chain(out) {
            let t = web_time::Instant::now();
            kernels::submit(&self.gpu, &self.acts.step, step, &[d]);
            self.gpu.wait()?;
            times.push((d.label.clone(), t.elapsed().as_secs_f64()));
        }
        Ok(times)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], pos: usize, logits: Logits) -> Result<Vec<f32>> {
        pollster::block_on(self.forward(tokens, pos, logits))
    }
}

/// Records a pass's kernel launches: the GPU [`Exec`].
struct Recorder<'a> {
    gpu: &'a Gpu,
    cfg: &'a LlamaConfig,
    a: &'a Acts,
    caches: &'a [KvCache],
    inv_freq: &'a wgpu::Buffer,
    shape: AttnShape,
    kv: KvLayout,
    part_positions: u32,
    chunk: u32,
    body: Vec<Dispatch>,
    out_all: Vec<Dispatch>,
    out_last: Vec<Dispatch>,
}

impl Recorder<'_> {
    fn norm<'b>(&self, weight: &'b wgpu::Buffer) -> Option<NormIn<'b>> {
        Some(NormIn { weight, eps: self.cfg.rms_eps })
    }
    fn cache(&self, layer: usize) -> Result<Vec<KvPart<'_>>> {
        let c = self.caches.get(layer).ok_or_else(|| Error::InvalidArgument(format!("no layer {layer}")))?;
        let pp = self.part_positions;
        Ok(c.k
            .iter()
            .zip(&c.v)
            .enumerate()
            .map(|(j, (k, v))| KvPart { k, v, pos0: j as u32 * pp, len: pp.min(self.shape.ctx - j as u32 * pp) })
            .collect())
    }
}

impl Exec for Recorder<'_> {
    type Weight = GpuWeight;
    type Norm = wgpu::Buffer;

    fn embed(&mut self, tok_embd: &GpuWeight) -> Result<()> {
        let (g, a) = (self.gpu, self.a);
        self.body.extend(kernels::embed(g, tok_embd, &a.ids, &a.x, &a.step)?);
        Ok(())
    }

    fn qkv(&mut self, norm: &wgpu::Buffer, wq: &GpuWeight, wk: &GpuWeight, wv: &GpuWeight) -> Result<()> {
        let (g, a) = (self.gpu, self.a);
        let width = (wq.rows + wk.rows + wv.rows) as u32;
        let io = MatmulIo { x: &a.x, y: &a.qkv, y_stride: width, step: &a.step };
        let d = kernels::matmul_cat(g, &[wq, wk, wv], self.norm(norm), io, MatmulOpts::default())?;
        self.body.extend(d);
        Ok(())
    }

    fn rope_store(&mut self, layer: usize) -> Result<()> {
        let (g, a, c) = (self.gpu, self.a, self.cache(layer)?);
        let cache = LayerKv { layout: self.kv, parts: &c };
        let io = RopeIo { qkv: &a.qkv, q: &a.q, inv_freq: self.inv_freq, step: &a.step };
        let d = kernels::rope_store(g, self.shape, cache, io)?;
        self.body.extend(d);
        Ok(())
    }

    fn attention(&mut self, layer: usize) -> Result<()> {
        let (g, a, c) = (self.gpu, self.a, self.cache(layer)?);
        let cache = LayerKv { layout: self.kv, parts: &c };
        let io = AttentionIo { q: &a.q, scratch: &a.partials, o: &a.att, step: &a.step };
        let d = kernels::attention(g, self.shape, cache, io, self.chunk)?;
        self.body.extend(d);
        Ok(())
    }

    fn matmul_add(&mut self, w: &GpuWeight, input: Act) -> Result<()> {
        let (g, a) = (self.gpu, self.a);
        let acc = MatmulOpts { accumulate: true, last_only: false };
        self.body.extend(kernels::matmul(g, w, a.buf(input), &a.x, self.cfg.n_embd as u32, &a.step, acc)?);
        Ok(())
    }

    fn ffn_gate_up_silu(&mut self, norm: &wgpu::Buffer, gate: &GpuWeight, up: &GpuWeight) -> Result<()> {
        let (g, a) = (self.gpu, self.a);
        let n_ff = self.cfg.n_ff as u32;
        if let Some(d) = kernels::gate_up_silu(g, gate, up, self.norm(norm), &a.x, &a.ffn, &a.step)? {
            self.body.extend(d);
            return Ok(());
        }
        // gate and up split differently across bindings: three launches
        let set = MatmulOpts::default();
        let (gate_io, up_io) = (
            MatmulIo { x: &a.x, y: &a.ffn, y_stride: n_ff, step: &a.step },
            MatmulIo { x: &a.x, y: &a.scratch, y_stride: n_ff, step: &a.step },
        );
        self.body.extend(kernels::matmul_cat(g, &[gate], self.norm(norm), gate_io, set)?);
        self.body.extend(kernels::matmul_cat(g, &[up], self.norm(norm), up_io, set)?);
        self.body.push(kernels::swiglu(g, &a.ffn, &a.scratch, n_ff, &a.step)?);
        Ok(())
    }

    fn output(&mut self, norm: &wgpu::Buffer, w: &GpuWeight) -> Result<()> {
        let (g, a) = (self.gpu, self.a);
        let vocab = self.cfg.n_vocab as u32;
        let last = MatmulOpts { accumulate: false, last_only: true };
        let io = |y| MatmulIo { x: &a.x, y, y_stride: vocab, step: &a.step };
        self.out_all = kernels::matmul_cat(g, &[w], self.norm(norm), io(&a.logits_all), MatmulOpts::default())?;
        self.out_last = kernels::matmul_cat(g, &[w], self.norm(norm), io(&a.logits_last), last)?;
        Ok(())
    }
}
