//! The speed benchmark shared by the CLI (`llama-webgpu bench`) and the browser bench page:
//! a cold first token (pipeline compilation), then prefill and greedy decode rates, with the
//! weight bytes each decoded token reads (the bandwidth roofline's denominator).

use crate::backend::{Forward, Model};
use crate::error::{Error, Result};
use web_time::Instant;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub adapter: String,
    pub backend: String,
    pub precision: &'static str,
    /// CPU backend threads (0 on the GPU).
    pub threads: usize,
    pub first_token_s: f64,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub weight_bytes_per_token: u64,
    pub decode_bytes_per_s: f64,
    pub dispatches_per_token: usize,
    pub gpu_memory_bytes: u64,
}

/// Runs `n_prompt` prompt tokens then `n_gen` greedy tokens (EOS ignored: the content does
/// not change the cost) from an empty cache.
pub async fn run(model: &mut Model, n_prompt: usize, n_gen: usize) -> Result<BenchResult> {
    let context = model.context();
    if n_prompt == 0 || n_prompt + n_gen > context {
        return Err(Error::InvalidArgument(format!("need 0 < prompt + gen tokens <= context {context}")));
    }
    let vocab = model.cfg().n_vocab as u64;
    // deterministic pseudo-random prompt
    let prompt: Vec<u32> = (0..n_prompt as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
    let t0 = Instant::now();
    model.forward(&prompt[..1], 0, false).await?;
    let first_token_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut logits = model.forward(&prompt, 0, false).await?;
    let prefill_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for i in 0..n_gen {
        let next =
            logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                as u32;
        logits = model.forward(&[next], n_prompt + i, false).await?;
    }
    let decode_s = t2.elapsed().as_secs_f64();
    let decode = n_gen as f64 / decode_s.max(1e-9);
    let bytes = model.weight_bytes_per_token();
    let (adapter, backend, precision, gpu_memory_bytes) = match &*model {
        Model::Gpu(m) => (
            m.gpu.adapter.name.clone(),
            m.gpu.adapter.backend.clone(),
            if m.gpu.use_f16 { "f16" } else { "f32" },
            m.gpu_bytes,
        ),
        Model::Cpu(m) => (format!("CPU ({} threads, {})", m.threads(), m.simd.name()), "cpu".into(), "f32", 0),
    };
    Ok(BenchResult {
        adapter,
        backend,
        precision,
        threads: match &*model {
            Model::Cpu(m) => m.threads(),
            Model::Gpu(_) => 0,
        },
        first_token_s,
        prompt_tokens: n_prompt,
        gen_tokens: n_gen,
        prefill_tokens_per_s: n_prompt as f64 / prefill_s.max(1e-9),
        decode_tokens_per_s: decode,
        weight_bytes_per_token: bytes,
        decode_bytes_per_s: bytes as f64 * decode,
        dispatches_per_token: model.dispatches_per_token(),
        gpu_memory_bytes,
    })
}
