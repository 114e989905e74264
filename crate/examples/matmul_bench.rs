//! One matmul launch in a loop, to compare kernel variants on an adapter:
//!
//!   cargo run --release --example matmul_bench -- [TYPE=q4_1] [ROWS=1536] [COLS=576] [TOKENS=1] [REPS=50] [glu]
//!
//! `glu`: gate and up (two ROWS × COLS weights) with SiLU·mul and the fused RMSNorm, as a
//! layer's FFN launch. The variant is the adapter's default, or what `LLAMA_WEBGPU_MM_TPR`,
//! `LLAMA_WEBGPU_TILED` and `LLAMA_WEBGPU_SUBGROUPS` select. REPS launches go in one pass;
//! prints wall and process CPU time per launch (CPU time: all threads, lavapipe's workers
//! too, which a shared machine disturbs less than wall time) and weight bytes per second.

use llama_webgpu::gguf::{GgmlType, TensorInfo};
use llama_webgpu::gpu::kernels::{self, GpuWeight, MatmulIo, MatmulOpts, NormIn, Step};
use llama_webgpu::gpu::{Gpu, GpuOptions};
use llama_webgpu::quant;

fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<f64> = s.rsplit(')').next().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    f.get(10).zip(f.get(11)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let ty = match a.first().map_or("q4_1", |s| s.as_str()) {
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        "q4_k" => GgmlType::Q4K,
        "q6_k" => GgmlType::Q6K,
        "f16" => GgmlType::F16,
        _ => GgmlType::Q4_1,
    };
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (rows, cols, n, reps) = (num(1, 1536), num(2, 576), num(3, 1), num(4, 50));
    let glu = a.iter().any(|s| s == "glu");
    // the fused RMSNorm: on by default for glu, `norm` / `nonorm` to choose
    let with_norm = a.iter().any(|s| s == "norm") || (glu && !a.iter().any(|s| s == "nonorm"));
    let gpu = Gpu::new_blocking(&GpuOptions::default())?;
    let mut seed = 1u64;
    let mut rnd = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let upload = |w: &[f32]| -> Result<GpuWeight, Box<dyn std::error::Error>> {
        let raw = quant::quantize(ty, w)?;
        let n_bytes = raw.len() as u64;
        let t = TensorInfo { name: "w".into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes };
        Ok(pollster::block_on(GpuWeight::upload(&gpu, &t, &raw, 8 << 20, |_| {}))?)
    };
    let w0 = upload(&rnd(rows * cols))?;
    let w1 = upload(&rnd(rows * cols))?;
    let x = gpu.storage_from("x", bytemuck::cast_slice(&rnd(n * cols)))?;
    let g = gpu.storage_from("g", bytemuck::cast_slice(&rnd(cols)))?;
    let y = gpu.storage("y", (n * rows * 4) as u64)?;
    let step = kernels::step_buffer(&gpu);
    let norm = with_norm.then_some(NormIn { weight: &g, eps: 1e-5 });
    let d = if glu {
        kernels::gate_up_silu(&gpu, &w0, &w1, norm, &x, &y, &step)?.ok_or("gate/up split differently")?
    } else {
        let io = MatmulIo { x: &x, y: &y, y_stride: rows as u32, step: &step };
        kernels::matmul_cat(&gpu, &[&w0], norm, io, MatmulOpts::default())?
    };
    let st = Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 };
    let run = |k: usize| -> Result<(), Box<dyn std::error::Error>> {
        let list: Vec<&kernels::Dispatch> = (0..k).flat_map(|_| d.iter()).collect();
        kernels::submit(&gpu, &step, st, &list);
        gpu.wait()?;
        Ok(())
    };
    run(2)?; // compile + warm
    let (t, c) = (std::time::Instant::now(), cpu_s());
    run(reps)?;
    let (wall, cpu) = (t.elapsed().as_secs_f64() / reps as f64, (cpu_s() - c) / reps as f64);
    let bytes = w0.gpu_bytes() as f64 * if glu { 2.0 } else { 1.0 };
    println!(
        "{:?} {rows}x{cols} n={n}{}{} cpu={} tpr={} sg={} tiled={}: {:.3} ms wall, {:.3} ms CPU per launch, {:.2} GB/s weights (wall), {:.1} tokens/s",
        ty,
        if glu { " glu" } else { "" },
        if with_norm { " norm" } else { "" },
        gpu.cpu_matmul,
        gpu.matmul_tpr,
        gpu.subgroups,
        gpu.tiled_prefill,
        wall * 1e3,
        cpu * 1e3,
        bytes / wall / 1e9,
        n as f64 / wall
    );
    Ok(())
}
