//! The Llama tensor schema: every GGUF tensor name and shape, written once. The reader checks
//! a file against it ([`crate::gguf::LlamaConfig::from_gguf`]), `synth` writes files from it,
//! and both executors load through [`Tensors::load`], supplying only how one matrix or one
//! norm becomes resident.

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgmlType, GgufFile, LlamaConfig, TensorInfo};

/// The tensors whose presence shapes the model (the rest are named in [`each_spec`] alone).
pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT: &str = "output.weight";
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// One transformer block's weights.
pub struct Layer<W, N> {
    pub attn_norm: N,
    pub wq: W,
    pub wk: W,
    pub wv: W,
    pub wo: W,
    pub ffn_norm: N,
    pub w_gate: W,
    pub w_up: W,
    pub w_down: W,
}

/// All weights of a Llama model. `output: None` = tied to `tok_embd`.
pub struct Weights<W, N> {
    pub tok_embd: W,
    pub layers: Vec<Layer<W, N>>,
    pub output_norm: N,
    pub output: Option<W>,
}

impl<W, N> Weights<W, N> {
    /// The output layer's matrix.
    pub fn output(&self) -> &W {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }

    /// Every matrix, the output layer last when it is not tied.
    pub fn matrices(&self) -> impl Iterator<Item = &W> {
        let layers = self.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        std::iter::once(&self.tok_embd).chain(layers).chain(self.output.as_ref())
    }
}

/// What a tensor is for (quantizers pick types by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `token_embd`: the embedding lookup, and the output layer when tied.
    Embedding,
    /// `output`, when not tied.
    Output,
    /// RMSNorm weights, `[n_embd]`.
    Norm,
    /// Llama 3.1's RoPE scaling factors, `[head_dim / 2]`.
    RopeFreqs,
    /// A layer's projection.
    Attn(Proj),
    Ffn(Proj),
}

/// Which projection of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// One tensor of the schema: GGUF name, dims innermost first (`[in, out]` for `y = W x`), the
/// layer it belongs to and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub dims: Vec<u64>,
    pub layer: Option<usize>,
    pub role: Role,
}

/// The dimensions the schema needs.
#[derive(Debug, Clone, Copy)]
pub struct SchemaDims {
    pub n_layer: usize,
    pub n_embd: u64,
    pub n_ff: u64,
    pub q_dim: u64,
    pub kv_dim: u64,
    pub head_dim: u64,
    pub n_vocab: u64,
    pub tied: bool,
    pub rope_freqs: bool,
}

impl SchemaDims {
    pub fn of(cfg: &LlamaConfig) -> Self {
        let u = |x: usize| x as u64;
        SchemaDims {
            n_layer: cfg.n_layer,
            n_embd: u(cfg.n_embd),
            n_ff: u(cfg.n_ff),
            q_dim: u(cfg.n_head * cfg.head_dim),
            kv_dim: u(cfg.n_head_kv * cfg.head_dim),
            head_dim: u(cfg.head_dim),
            n_vocab: u(cfg.n_vocab),
            tied: cfg.tied_embeddings,
            rope_freqs: cfg.has_rope_freqs,
        }
    }
}

/// The tensors of a Llama model, in the order llama.cpp's converter writes them.
pub fn schema(d: &SchemaDims) -> Vec<Spec> {
    let mut v = Vec::new();
    let _ = each_spec(d, |s| {
        v.push(s);
        Ok(())
    });
    v
}

/// Calls `f` on each tensor of the schema in order, stopping at its first error (lazily: a
/// corrupt `block_count` of 4 billion fails at the first missing tensor, not in an allocation).
pub fn each_spec(d: &SchemaDims, mut f: impl FnMut(Spec) -> Result<()>) -> Result<()> {
    let (embd, ff) = (d.n_embd, d.n_ff);
    let mut spec = |name: String, dims: Vec<u64>, layer, role| f(Spec { name, dims, layer, role });
    spec(TOKEN_EMBD.into(), vec![embd, d.n_vocab], None, Role::Embedding)?;
    if d.rope_freqs {
        spec(ROPE_FREQS.into(), vec![d.head_dim / 2], None, Role::RopeFreqs)?;
    }
    for i in 0..d.n_layer {
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        let l = Some(i);
        spec(b("attn_norm"), vec![embd], l, Role::Norm)?;
        spec(b("attn_q"), vec![embd, d.q_dim], l, Role::Attn(Proj::Q))?;
        spec(b("attn_k"), vec![embd, d.kv_dim], l, Role::Attn(Proj::K))?;
        spec(b("attn_v"), vec![embd, d.kv_dim], l, Role::Attn(Proj::V))?;
        spec(b("attn_output"), vec![d.q_dim, embd], l, Role::Attn(Proj::O))?;
        spec(b("ffn_norm"), vec![embd], l, Role::Norm)?;
        spec(b("ffn_gate"), vec![embd, ff], l, Role::Ffn(Proj::Gate))?;
        spec(b("ffn_up"), vec![embd, ff], l, Role::Ffn(Proj::Up))?;
        spec(b("ffn_down"), vec![ff, embd], l, Role::Ffn(Proj::Down))?;
    }
    spec("output_norm.weight".into(), vec![embd], None, Role::Norm)?;
    if !d.tied {
        spec(OUTPUT.into(), vec![embd, d.n_vocab], None, Role::Output)?;
    }
    Ok(())
}

/// Checks that `file` holds every tensor of the schema with its shape.
pub fn check(file: &GgufFile, d: &SchemaDims) -> Result<()> {
    each_spec(d, |s| {
        let t = file.tensor(&s.name).ok_or_else(|| Error::MissingTensor(s.name.clone()))?;
        if t.dims != s.dims {
            return Err(Error::BadShape { name: s.name, got: t.dims.clone(), expected: s.dims });
        }
        Ok(())
    })
}

/// A file's tensors in the schema's structure (shapes checked by `LlamaConfig::from_gguf`).
pub struct Tensors<'f> {
    pub weights: Weights<&'f TensorInfo, &'f TensorInfo>,
    pub rope_freqs: Option<&'f TensorInfo>,
}

impl<'f> Tensors<'f> {
    pub fn of(file: &'f GgufFile, cfg: &LlamaConfig) -> Result<Self> {
        let d = SchemaDims::of(cfg);
        check(file, &d)?;
        let t = |name: String| file.tensor(&name).ok_or(Error::MissingTensor(name));
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let b = |s: &str| t(format!("blk.{i}.{s}.weight"));
                Ok(Layer {
                    attn_norm: b("attn_norm")?,
                    wq: b("attn_q")?,
                    wk: b("attn_k")?,
                    wv: b("attn_v")?,
                    wo: b("attn_output")?,
                    ffn_norm: b("ffn_norm")?,
                    w_gate: b("ffn_gate")?,
                    w_up: b("ffn_up")?,
                    w_down: b("ffn_down")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensors {
            weights: Weights {
                tok_embd: t(TOKEN_EMBD.into())?,
                layers,
                output_norm: t("output_norm.weight".into())?,
                output: if cfg.tied_embeddings { None } else { Some(t(OUTPUT.into())?) },
            },
            rope_freqs: if cfg.has_rope_freqs { Some(t(ROPE_FREQS.into())?) } else { None },
        })
    }

    /// Makes every weight resident through the executor's `matrix` and `norm`, in file order
    /// per layer (norm, attention, norm, FFN), so a streamed file is read front to back.
    pub async fn load<W, N>(
        &self,
        mut matrix: impl AsyncFnMut(&'f TensorInfo) -> Result<W>,
        mut norm: impl AsyncFnMut(&'f TensorInfo) -> Result<N>,
    ) -> Result<Weights<W, N>> {
        let w = &self.weights;
        let tok_embd = matrix(w.tok_embd).await?;
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            layers.push(Layer {
                attn_norm: norm(l.attn_norm).await?,
                wq: matrix(l.wq).await?,
                wk: matrix(l.wk).await?,
                wv: matrix(l.wv).await?,
                wo: matrix(l.wo).await?,
                ffn_norm: norm(l.ffn_norm).await?,
                w_gate: matrix(l.w_gate).await?,
                w_up: matrix(l.w_up).await?,
                w_down: matrix(l.w_down).await?,
            });
        }
        let output_norm = norm(w.output_norm).await?;
        let output = match w.output {
            Some(t) => Some(matrix(t).await?),
            None => None,
        };
        Ok(Weights { tok_embd, layers, output_norm, output })
    }
}

/// Most bytes a 1-D tensor (a norm, RoPE factors) may have: it is read whole.
pub const MAX_VECTOR_BYTES: u64 = 64 << 20;

/// A 1-D tensor (norm weights, RoPE factors) read whole and converted to f32; F32, F16 or BF16.
pub async fn read_f32<S: AsyncByteSource + ?Sized>(src: &S, t: &TensorInfo) -> Result<Vec<f32>> {
    if !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return Err(Error::UnsupportedType {
            tensor: t.name.clone(),
            ty: t.ty.id(),
            name: format!("{} (expected F32, F16 or BF16 for a 1-D tensor)", t.ty.name()),
        });
    }
    if t.n_bytes > MAX_VECTOR_BYTES {
        return Err(Error::BadShape { name: t.name.clone(), got: t.dims.clone(), expected: vec![] });
    }
    let mut raw = vec![0u8; t.n_bytes as usize];
    src.fetch(t.offset, &mut raw).await?;
    crate::quant::dequantize(t.ty, &raw)
}
