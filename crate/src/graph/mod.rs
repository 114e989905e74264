//! The Llama 3 forward pass, written once, over an executor.
//!
//! [`forward`] reads top to bottom like the math; an [`Exec`] carries it out. The GPU side
//! (`gpu/model.rs`) implements `Exec` by *recording* kernel launches once at load (replayed per
//! token); the CPU backend (`cpu/`) implements it by computing. The trait is backend-neutral: weights,
//! norms and KV caches are the executor's own types, and activations are named by [`Act`]
//! (each executor owns its buffers), so no GPU type appears here.
//!
//! Per layer (h: the RMS-normalised residual stream, fused into the projection that reads it):
//! ```text
//!   qkv     = [Wq; Wk; Wv] · rmsnorm(x) · attn_norm          (one fused launch)
//!   q, k    = rope(q, k) ; cache[pos..] ← k, v
//!   x      += Wo · attention(q, cache)
//!   ffn     = silu(Wgate h) ⊙ (Wup h),  h = rmsnorm(x) · ffn_norm   (one fused launch)
//!   x      += Wdown · ffn
//! ```
//! then `logits = Wout · rmsnorm(x) · output_norm` (Wout = token_embd when tied), or for
//! embeddings the final-norm hidden states `rmsnorm(x) · output_norm` themselves.

use crate::error::{Error, Result};

pub mod weights;
pub use weights::{read_f32, schema, Layer, Proj, Role, SchemaDims, Spec, Tensors, Weights};

/// What loading is doing: streaming weights to their executor, then preparing it (the GPU
/// builds its pipelines).
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

/// What a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every position's logits, `[n_tokens, vocab]` row-major (scoring, speculative verification).
    All,
    /// The last position's logits only (generation).
    Last,
    /// Every position's final-norm hidden state `rmsnorm(x) · output_norm`, `[n_tokens,
    /// n_embd]` row-major, instead of logits (embeddings: what HF calls `last_hidden_state`).
    Hidden,
}

impl Logits {
    /// Floats per position of the output.
    pub fn width(self, cfg: &crate::gguf::LlamaConfig) -> usize {
        match self {
            Logits::Hidden => cfg.n_embd,
            Logits::All | Logits::Last => cfg.n_vocab,
        }
    }

    /// Whether every position of the pass has an output row (else only the last).
    pub fn every_position(self) -> bool {
        self != Logits::Last
    }
}

/// `out = x / rms(x) · g` per row of `g.len()` (the mean of squares in f64: it is cheap and
/// exact). The CPU's norm everywhere, and the final norm of hidden states on both backends.
pub fn rmsnorm(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]) {
    let dim = g.len();
    for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ms = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / dim as f64;
        let s = (1.0 / (ms + eps as f64).sqrt()) as f32;
        for ((o, v), w) in o.iter_mut().zip(row).zip(g) {
            *o = v * s * w;
        }
    }
}

/// Activations of one pass, `[n_tokens, width]` row-major f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    /// The residual stream, `n_embd` wide.
    X,
    /// Q | K | V projections, `(n_head + 2 n_kv) · head_dim` wide.
    Qkv,
    /// Attention output, `n_head · head_dim`.
    Att,
    /// `silu(gate) ⊙ up`, `n_ff`.
    Ffn,
}

/// The operations of a Llama pass. Token ids, positions and the KV-cache length of the pass
/// are the executor's state (the GPU reads them from a per-pass uniform).
pub trait Exec {
    /// A weight matrix `[rows, cols]` (in GGUF's own encoding, decoded by `quant`).
    type Weight;
    /// An f32 vector (RMSNorm weights).
    type Norm;

    /// `X[t] = token_embd[ids[t]]`.
    fn embed(&mut self, tok_embd: &Self::Weight) -> Result<()>;
    /// `Qkv = [wq; wk; wv] · rmsnorm(X, norm)`.
    fn qkv(&mut self, norm: &Self::Norm, wq: &Self::Weight, wk: &Self::Weight, wv: &Self::Weight) -> Result<()>;
    /// `Q = rope(q of Qkv)`; layer `layer`'s cache at the pass's positions ← rope(k), v (the
    /// CPU ropes q and k in place in `Qkv` and stores k and v in [`Exec::attention`], where
    /// each thread keeps its own heads).
    fn rope_store(&mut self, layer: usize) -> Result<()>;
    /// `Att` = causal GQA attention of `Q` over layer `layer`'s cache.
    fn attention(&mut self, layer: usize) -> Result<()>;
    /// `X += w · input` (the residual add fused).
    fn matmul_add(&mut self, w: &Self::Weight, input: Act) -> Result<()>;
    /// `Ffn = silu(gate · h) ⊙ (up · h)`, `h = rmsnorm(X, norm)`.
    fn ffn_gate_up_silu(&mut self, norm: &Self::Norm, gate: &Self::Weight, up: &Self::Weight) -> Result<()>;
    /// Logits `= w · rmsnorm(X, norm)` (all tokens, or the executor's choice of the last).
    fn output(&mut self, norm: &Self::Norm, w: &Self::Weight) -> Result<()>;
}

/// RoPE's inverse frequencies, `inv_freq[j] = base^(−2j/d) / rope_freqs[j]` (rope_freqs: Llama
/// 3.1's scaling factors), the same for every executor.
pub fn rope_inv_freq(head_dim: usize, base: f32, rope_freqs: Option<&[f32]>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            let f = 1.0 / (base as f64).powf(2.0 * j as f64 / head_dim as f64);
            let s = rope_freqs.and_then(|r| r.get(j)).copied().unwrap_or(1.0) as f64;
            (f / s) as f32
        })
        .collect()
}

/// The inputs of a pass over `tokens` at positions `pos..`, checked the same way on every
/// backend: at least one token, every id in the vocabulary, the last position in the cache.
pub fn check_pass(tokens: &[u32], pos: usize, vocab: usize, context: usize) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::empty_input());
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::TokenOutOfVocab { id, vocab });
    }
    let end = pos.saturating_add(tokens.len());
    if end > context {
        return Err(Error::ContextOverflow { needed: end, capacity: context });
    }
    Ok(())
}

/// One forward pass.
pub fn forward<E: Exec>(e: &mut E, w: &Weights<E::Weight, E::Norm>) -> Result<()> {
    e.embed(&w.tok_embd)?;
    for (i, l) in w.layers.iter().enumerate() {
        e.qkv(&l.attn_norm, &l.wq, &l.wk, &l.wv)?;
        e.rope_store(i)?;
        e.attention(i)?;
        e.matmul_add(&l.wo, Act::Att)?;
        e.ffn_gate_up_silu(&l.ffn_norm, &l.w_gate, &l.w_up)?;
        e.matmul_add(&l.w_down, Act::Ffn)?;
    }
    e.output(&w.output_norm, w.output())
}
