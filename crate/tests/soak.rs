//! Soak: a long greedy generation on the real SmolLM2 through the sliding window. No NaN
//! (the engine checks every logits read-back), host memory flat, and the tokens after each
//! slide equal a fresh run on the window.
//!
//! Both backends. The default suite runs a short one each (context 64, 3 slides, ~1 min on
//! lavapipe); `SOAK=1` runs the full one: 8,192 tokens with a 1,024-token context, ~16
//! slides (~20+ min on lavapipe, less on the CPU backend; in release:
//! `SOAK=1 cargo test --release --test soak -- --nocapture`, `SOAK_BACKEND=cpu` for one).
//! Stop tokens are renamed in the test's tokenizer so that greedy decoding never ends early.

use llama_webgpu::backend::Forward;
use llama_webgpu::cpu::{CpuModel, CpuOptions};
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::session::{ContextPolicy, GenerateOptions, Session};
use llama_webgpu::tokenizer::{GgufTokenizerSpec, Tokenizer};

mod common;

/// Resident memory of this process (Linux), driver included.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// The model's tokenizer with no stop ids: EOS/EOT unset, the named stop tokens renamed.
fn no_stop_tokenizer(file: &GgufFile) -> Tokenizer {
    let mut spec = GgufTokenizerSpec::from_gguf(file).unwrap();
    spec.eos = None;
    spec.eot = None;
    for t in spec.tokens.iter_mut() {
        if t.starts_with("<|") && t.ends_with("|>") {
            t.insert_str(2, "nostop-");
        }
    }
    let tok = Tokenizer::from_spec(spec).unwrap();
    assert!(tok.stop_ids().is_empty());
    tok
}

struct Slide {
    /// The tokens in the cache right after the slide (ends with the token just generated).
    window: Vec<u32>,
    /// Tokens generated from the window onwards (until the next slide, at most 8).
    after: Vec<u32>,
}

/// Which backend a soak runs on.
#[derive(Clone, Copy, Debug)]
enum On {
    Gpu,
    Cpu,
}

/// RSS is the whole process's: one soak at a time, so that another test's model load is not
/// counted as this one's growth (the tests of a binary run in parallel threads).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn soak(on: On, n_tokens: usize, context: usize, keep: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let src = FileSource::open(common::smollm2_gguf()).unwrap();
    let file = GgufFile::read(&src).unwrap();
    match on {
        On::Gpu => {
            let opts = LoadOptions {
                gpu: GpuOptions { precision: Precision::F32, ..Default::default() },
                context: Some(context),
                ..Default::default()
            };
            let mut model = LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
            soak_on(&mut model, &file, n_tokens, context, keep)
        }
        On::Cpu => {
            let opts = CpuOptions { context: Some(context), ..Default::default() };
            let mut model = CpuModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
            soak_on(&mut model, &file, n_tokens, context, keep)
        }
    }
}

fn soak_on<M: Forward>(model: &mut M, file: &GgufFile, n_tokens: usize, context: usize, keep: usize) {
    let tok = no_stop_tokenizer(file);
    let prompt = tok.encode("Once upon a time, in a village by the sea, there lived").unwrap();
    let gopts = GenerateOptions {
        max_tokens: n_tokens,
        context_policy: ContextPolicy::SlidingWindow { keep },
        ..Default::default()
    };
    let mut session = Session::new();
    let mut g = pollster::block_on(session.start(model, &tok, &prompt, &gopts)).unwrap();
    let mut slides: Vec<Slide> = Vec::new();
    let mut mem: Vec<u64> = Vec::new();
    let mut last_len = session.cached().len();
    let t0 = std::time::Instant::now();
    while let Some(piece) = pollster::block_on(g.next(&mut session, model, &tok))
        .unwrap_or_else(|e| panic!("after {} tokens: {e}", g.tokens.len()))
    {
        let Some(t) = piece.token else { continue };
        if let Some(s) = slides.last_mut() {
            if s.after.len() < 8 {
                s.after.push(t);
            }
        }
        let len = session.cached().len();
        if len < last_len {
            slides.push(Slide { window: session.cached().to_vec(), after: Vec::new() });
        }
        last_len = len;
        if !slides.is_empty() && g.tokens.len().is_multiple_of(32) {
            mem.push(rss());
        }
        if g.tokens.len().is_multiple_of(512) {
            eprintln!(
                "soak: {} tokens, {} slides, {:.0} s, RSS {:.1} MiB",
                g.tokens.len(),
                slides.len(),
                t0.elapsed().as_secs_f64(),
                rss() as f64 / 1048576.0
            );
        }
    }
    let r = g.finish();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(r.tokens.len(), n_tokens, "greedy generation ended early: {:?}", r.stop_reason);
    assert!(slides.len() >= 3, "{} slides in {} tokens of a {context}-token context", slides.len(), n_tokens);

    // host memory after the first slide: flat within ±5% of its median
    let mut sorted = mem.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2] as f64;
    let (lo, hi) = (sorted[0] as f64, sorted[sorted.len() - 1] as f64);
    eprintln!(
        "soak: {n_tokens} tokens, context {context}, {} slides in {secs:.0} s; RSS {:.1}..{:.1} MiB (median {:.1})",
        slides.len(),
        lo / 1048576.0,
        hi / 1048576.0,
        median / 1048576.0
    );
    assert!(lo >= 0.95 * median && hi <= 1.05 * median, "RSS not flat: {lo}..{hi} around {median}");

    // after each slide (the first three and the last): the same greedy tokens as a fresh
    // session on the window
    let n = slides.len();
    let history: Vec<u32> = prompt.iter().chain(&r.tokens).copied().collect();
    for (i, s) in slides.iter().enumerate().filter(|(i, s)| !s.after.is_empty() && (*i < 3 || *i + 1 == n)) {
        assert_eq!(&s.window[..keep], &history[..keep], "slide {i}: the kept prefix stays in front");
        let one = GenerateOptions { max_tokens: s.after.len(), ..Default::default() };
        let fresh = pollster::block_on(Session::new().generate(model, &tok, &s.window, &one, |_, _| true)).unwrap();
        assert_eq!(fresh.tokens, s.after, "slide {i}: tokens after the slide differ from a fresh run on the window");
    }
}

#[test]
fn sliding_window_soak_short() {
    // slides after ~51, 81 and 111 tokens
    soak(On::Gpu, 130, 64, 4);
}

#[test]
fn sliding_window_soak_short_cpu() {
    soak(On::Cpu, 130, 64, 4);
}

#[test]
fn sliding_window_soak_8192_tokens() {
    if std::env::var_os("SOAK").is_none() {
        eprintln!("skipped: set SOAK=1 for the 8,192-token soak (~20+ min on lavapipe)");
        return;
    }
    // SOAK_TOKENS / SOAK_CONTEXT size a shorter run on a busy machine
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    // SOAK_BACKEND=gpu|cpu runs one backend only (default: both)
    let which = std::env::var("SOAK_BACKEND").unwrap_or_default();
    for on in [On::Gpu, On::Cpu] {
        if which.is_empty() || which.eq_ignore_ascii_case(&format!("{on:?}")) {
            eprintln!("soak on {on:?}");
            soak(on, env("SOAK_TOKENS", 8192), env("SOAK_CONTEXT", 1024), 32);
        }
    }
}
