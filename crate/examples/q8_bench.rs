//! One thread's matmul-vector time per kernel: the exact f32 dot and the integer dots (with the
//! activation quantization they need) at every SIMD level this machine has, on the matrix
//! shapes of SmolLM2-135M and Llama 3.2 1B, with random blocks. Reports the fastest of `REPS`
//! runs (the least disturbed by other load on a shared machine), in µs and weight GB/s.
//!
//!     cargo run --release --example q8_bench [-- REPS [TOKENS]]
//!
//! `TOKENS` > 1 times the several-token path (`rows_dots`, speculative verification and prefill).
//! `Q8_BENCH_ONLY=NAME` keeps the shapes whose name contains NAME, `Q8_BENCH_SIMD=LEVEL` the
//! SIMD levels named so (e.g. `Q8_BENCH_ONLY=output Q8_BENCH_SIMD=avx512`).

use llama_webgpu::cpu::dot::{self, Simd};
use llama_webgpu::cpu::q8::{self, Q8Act};
use llama_webgpu::gguf::GgmlType;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let reps = args.first().copied().unwrap_or(30);
    let n = args.get(1).copied().unwrap_or(1).max(1);
    let only = std::env::var("Q8_BENCH_ONLY").unwrap_or_default();
    let shapes = [
        ("smollm2 ffn_up", GgmlType::Q4_1, 1536, 576),
        ("smollm2 ffn_down", GgmlType::Q4_1, 576, 1536),
        ("smollm2 output", GgmlType::Q8_0, 49152, 576),
        ("1b ffn_up", GgmlType::Q4K, 8192, 2048),
        ("1b ffn_down", GgmlType::Q6K, 2048, 8192),
        ("1b ffn_down q5_k", GgmlType::Q5K, 2048, 8192),
        ("1b ffn_up q4_0", GgmlType::Q4_0, 8192, 2048),
        ("1b ffn_up q8_0", GgmlType::Q8_0, 8192, 2048),
        // larger than the caches: weights stream from memory, as in decode
        ("1b output", GgmlType::Q6K, 128256, 2048),
        ("1b ffn_up x16", GgmlType::Q4K, 16 * 8192, 2048),
    ];
    // wasm's relaxed build measures which of its two dots to take; Q8_BENCH_WASM_DOT=i16|i32
    // fixes one
    #[cfg(target_arch = "wasm32")]
    {
        match std::env::var("Q8_BENCH_WASM_DOT").as_deref() {
            Ok("i32") => q8::set_i32_dot(Some(true)),
            Ok("i16") => q8::set_i32_dot(Some(false)),
            _ => {}
        }
        println!("wasm integer dot: {}", if q8::i32_dot() { "i32" } else { "i16" });
    }
    // the kernels timed here first agree with the scalar ones and stay within the bound (a
    // changed kernel is then checked on every run, in wasm too: bench/q8-wasm.mjs)
    for simd in Simd::available() {
        for (ty, vs_scalar, vs_decode) in q8::check_kernels(simd) {
            assert!(vs_scalar <= 1e-6 && vs_decode <= 1.0, "{} {}: {vs_scalar:e} {vs_decode}", simd.name(), ty.name());
        }
    }
    // the f16 rows (the KV cache's) decode as `half` does, every bit pattern: in wasm that is
    // the engine's own simd128 conversion (quant::dequantize_row)
    let raw: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let mut row = vec![0f32; 1 << 16];
    if llama_webgpu::quant::dequantize_row(GgmlType::F16, &raw, &mut row).is_err() {
        panic!("f16 rows do not decode");
    }
    for (h, o) in (0..=u16::MAX).zip(&row) {
        let want = half::f16::from_bits(h).to_f32();
        assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "f16 {h:#06x}: {o} vs {want}");
    }
    let mut seed = 7u64;
    let mut next = move || llama_webgpu::cpu::dot::lcg(&mut seed);
    for (name, ty, rows, cols) in shapes.into_iter().filter(|s| s.0.contains(only.as_str())) {
        let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { continue };
        let Some(kind) = q8::kind(ty) else { continue };
        let w = q8::random_blocks(ty, rb * rows, &mut next);
        let x: Vec<f32> = (0..n * cols).map(|_| next() as f32 / u32::MAX as f32 - 0.5).collect();
        let mut out = vec![0f32; rows * n];
        let mut row = vec![0f32; cols];
        let time = |f: &mut dyn FnMut()| {
            (0..reps)
                .map(|_| {
                    let (t, c) = (Instant::now(), on_cpu());
                    f();
                    match (c, on_cpu()) {
                        (Some(a), Some(b)) => b - a,
                        _ => t.elapsed().as_secs_f64(),
                    }
                })
                .fold(f64::INFINITY, f64::min)
        };
        let level = std::env::var("Q8_BENCH_SIMD").unwrap_or_default();
        for simd in Simd::available().into_iter().filter(|s| s.name().contains(level.as_str())) {
            let skip_exact = std::env::var_os("Q8_BENCH_INT8_ONLY").is_some();
            let exact = time(&mut || {
                if skip_exact {
                    return;
                }
                if n == 1 {
                    dot::rows_dot(simd, ty, &w, rb, &x, &mut out);
                } else {
                    for r in 0..rows {
                        dot::decode_row(ty, &w[r * rb..][..rb], &mut row);
                        dot::dots(simd, &row, &x, cols, &mut out[r * n..][..n]);
                    }
                }
            });
            let int8 = time(&mut || {
                let Some(a) = Q8Act::quantize(kind, &x, n, cols) else { return };
                if n == 1 {
                    q8::rows_dot(simd, ty, &w, rb, a.row(0), &mut out);
                } else {
                    q8::rows_dots(simd, ty, &w, rb, &a, &mut out);
                }
            });
            let gb = |s: f64| (rb * rows) as f64 / s / 1e9;
            println!(
                "{name:18} {:5} {:7} {n} token(s): exact {:9.1} µs {:6.2} GB/s | int8 {:9.1} µs {:6.2} GB/s | int8/exact {:.2}×",
                ty.name(),
                simd.name(),
                exact * 1e6,
                gb(exact),
                int8 * 1e6,
                gb(int8),
                exact / int8
            );
        }
    }
}

/// This thread's time on a CPU in seconds (Linux's schedstat), with `Q8_BENCH_CPU_TIME` set:
/// on a machine shared with other work, the time the kernel ran rather than waited for a core.
fn on_cpu() -> Option<f64> {
    std::env::var_os("Q8_BENCH_CPU_TIME")?;
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}
