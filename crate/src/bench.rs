//! The speed benchmark shared by the CLI (`llama-webgpu bench`) and the browser bench page:
//! a cold first token (pipeline compilation), then prefill and greedy decode rates, with the
//! weight bytes each decoded token reads (the bandwidth roofline's denominator).

use crate::backend::{Forward, Model};
use crate::error::{Error, Result};
use crate::graph::Logits;
use crate::session::{GenerateOptions, Session, Steering};
use crate::speculative::{SpecStats, Speculator};
use crate::tokenizer::Tokenizer;
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
    /// Keys in the cache when decoding started (`--depth`; the prompt's length without it).
    pub depth: usize,
    pub kv_type: crate::kv::KvType,
    /// KV-cache bytes the attention read for the last decoded token (at depth
    /// `depth + gen_tokens − 1`), counted from what it read (the CPU), or from the rows the
    /// attention launches bind (the GPU: one read per query head with today's kernel).
    pub kv_bytes_per_token: u64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub weight_bytes_per_token: u64,
    pub decode_bytes_per_s: f64,
    pub dispatches_per_token: usize,
    pub gpu_memory_bytes: u64,
    /// Device-to-device copy rate (bytes read + written per second) of a buffer the size of
    /// the largest weight part: the bandwidth a decode could at best use.
    pub copy_bytes_per_s: f64,
    /// `copy_bytes_per_s / 2 / weight_bytes_per_token`: the bandwidth roofline of decode
    /// (a copy moves each byte twice, a matmul reads it once).
    pub copy_roofline_tokens_per_s: f64,
}

/// Times `reps` copies of a `bytes`-sized buffer into another on the GPU.
pub async fn copy_bandwidth(gpu: &crate::gpu::Gpu, bytes: u64, reps: u32) -> Result<f64> {
    let bytes = bytes.clamp(1 << 20, gpu.limits.max_buffer_size.min(1 << 30)) & !3;
    let a = gpu.storage("copy a", bytes)?;
    let b = gpu.storage("copy b", bytes)?;
    let copy = |n: u32| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..n {
            enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        }
        gpu.queue.submit([enc.finish()]);
    };
    copy(1); // warm-up
    gpu.read(&b, 0, 4).await?;
    let t = Instant::now();
    copy(reps);
    gpu.read(&b, 0, 4).await?;
    Ok(2.0 * bytes as f64 * reps as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

/// The same for host memory (the CPU backend's weights): `reps` copies of `bytes`.
pub fn host_copy_bandwidth(bytes: usize, reps: u32) -> f64 {
    let a = vec![1u8; bytes];
    let mut b = vec![0u8; bytes];
    b.copy_from_slice(&a); // warm-up (page faults)
    let t = Instant::now();
    for _ in 0..reps {
        b.copy_from_slice(std::hint::black_box(&a));
    }
    std::hint::black_box(&b);
    2.0 * bytes as f64 * reps as f64 / t.elapsed().as_secs_f64().max(1e-9)
}

/// Runs `n_prompt` prompt tokens then `n_gen` greedy tokens (EOS ignored: the content does
/// not change the cost) from an empty cache, after a cold 1-token pass (`first_token_s`) and
/// an untimed 2-token one. With `depth`, the decode starts with `depth` keys in the cache
/// instead of the prompt's: the positions past the prompt are filled untimed first (`0`:
/// decode from an empty cache, as `llama-bench`'s `tg`).
pub async fn run(model: &mut Model, n_prompt: usize, n_gen: usize, depth: Option<usize>) -> Result<BenchResult> {
    let context = model.context();
    let start = depth.unwrap_or(n_prompt);
    if n_prompt == 0 || n_prompt.max(start).saturating_add(n_gen) > context {
        return Err(Error::InvalidArgument(format!(
            "need 0 < prompt tokens, and prompt (or depth) + gen tokens <= context {context}"
        )));
    }
    let vocab = model.cfg().n_vocab as u64;
    // deterministic pseudo-random prompt
    let prompt: Vec<u32> = (0..n_prompt as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
    let t0 = Instant::now();
    model.forward(&prompt[..1], 0, Logits::Last).await?;
    let first_token_s = t0.elapsed().as_secs_f64();
    // a 2-token pass, untimed: drivers that compile pipelines at first use (lavapipe) build
    // the several-token kernels here, not inside the timed prefill
    if n_prompt > 1 {
        model.forward(&prompt[..2], 0, Logits::Last).await?;
    }
    let t1 = Instant::now();
    let mut logits = model.forward(&prompt, 0, Logits::Last).await?;
    let prefill_s = t1.elapsed().as_secs_f64();
    // the keys past the prompt, untimed (the same pseudo-random tokens)
    if start > n_prompt {
        let fill: Vec<u32> =
            (n_prompt as u64..start as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
        for (i, c) in fill.chunks(4096).enumerate() {
            logits = model.forward(c, n_prompt + i * 4096, Logits::Last).await?;
        }
    }
    let t2 = Instant::now();
    for i in 0..n_gen {
        let next =
            logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                as u32;
        logits = model.forward(&[next], start + i, Logits::Last).await?;
    }
    let decode_s = t2.elapsed().as_secs_f64();
    let decode = n_gen as f64 / decode_s.max(1e-9);
    let bytes = model.stats().weight_bytes_per_token;
    let kv_type = model.stats().kv_type;
    // KV bytes the attention read for the last decoded token, counted from what it read
    // (CPU) or from what the recorded launches bind and read (GPU)
    let kv_bytes_per_token = match &*model {
        Model::Cpu(m) => m.kv_bytes_read_last(),
        Model::Gpu(m) => m.kv_bytes_per_token(start + n_gen),
    };
    let (adapter, backend, precision, gpu_memory_bytes) = match &*model {
        Model::Gpu(m) => (
            m.gpu.adapter.name.clone(),
            m.gpu.adapter.backend.clone(),
            if m.gpu.use_f16 { "f16" } else { "f32" },
            m.gpu_bytes,
        ),
        Model::Cpu(m) => {
            (format!("CPU ({} threads, {}, {} dot)", m.threads(), m.simd.name(), m.dot), "cpu".into(), "f32", 0)
        }
    };
    let copy = match &*model {
        Model::Gpu(m) => copy_bandwidth(&m.gpu, (bytes / 8).max(64 << 20), 4).await?,
        Model::Cpu(_) => host_copy_bandwidth(64 << 20, 4),
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
        depth: start,
        kv_type,
        kv_bytes_per_token,
        prefill_tokens_per_s: n_prompt as f64 / prefill_s.max(1e-9),
        decode_tokens_per_s: decode,
        weight_bytes_per_token: bytes,
        decode_bytes_per_s: bytes as f64 * decode,
        dispatches_per_token: model.stats().dispatches_per_token,
        gpu_memory_bytes,
        copy_bytes_per_s: copy,
        copy_roofline_tokens_per_s: copy / 2.0 / bytes.max(1) as f64,
    })
}

/// Plain and speculative greedy decoding of the same pseudo-random prompt, side by side.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpecBench {
    /// Tokens each run generated (the same tokens: checked).
    pub tokens: usize,
    pub plain_tokens_per_s: f64,
    pub speculative_tokens_per_s: f64,
    #[serde(flatten)]
    pub stats: SpecStats,
    pub acceptance: f64,
}

/// `n_gen` greedy tokens after the bench's prompt, plain then with `spec`; an error if the
/// two outputs differ (greedy speculation must not change a token).
pub async fn speculative(
    model: &mut Model,
    tok: &Tokenizer,
    spec: Option<&mut Speculator>,
    n_prompt: usize,
    n_gen: usize,
) -> Result<SpecBench> {
    let vocab = model.cfg().n_vocab as u64;
    let prompt: Vec<u32> = (0..n_prompt as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
    let opts = GenerateOptions { max_tokens: n_gen, ..Default::default() };
    let plain = Session::new().generate(model, tok, &prompt, &opts, |_, _| true).await?;
    let fast = Session::new()
        .generate_speculative(model, tok, &prompt, &opts, Steering { constraint: None, spec }, |_, _| true)
        .await?;
    if fast.tokens != plain.tokens {
        return Err(Error::InvalidArgument(format!(
            "speculative greedy output differs from plain: {:?} vs {:?}",
            fast.tokens, plain.tokens
        )));
    }
    let stats = fast.speculative.unwrap_or_default();
    Ok(SpecBench {
        tokens: plain.tokens.len(),
        plain_tokens_per_s: plain.decode_tokens_per_s,
        speculative_tokens_per_s: fast.decode_tokens_per_s,
        acceptance: stats.acceptance(),
        stats,
    })
}
