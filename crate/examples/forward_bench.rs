//! Forward passes of N tokens on the CPU backend in a loop (speculative verification's shape):
//!
//!   cargo run --release --example forward_bench -- MODEL.gguf [THREADS=1] [REPS=20] [N...=1 2 4 7]
//!
//! `CPU_DOT=int8` in the environment runs the integer dots (a draft model's setting).
//!
//! Prints wall and process CPU time per pass (CPU time is what a shared machine disturbs
//! least), with every token's logits computed (`Logits::All`) at position 64.

use llama_webgpu::backend::{self, Backend, Model};
use llama_webgpu::cpu::CpuOptions;
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::graph::Logits;
use llama_webgpu::model::LoadOptions;
use std::time::Instant;

fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<f64> = s.rsplit(')').next().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    f.get(10).zip(f.get(11)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let path = a.first().ok_or("usage: forward_bench MODEL.gguf [THREADS] [REPS] [N...]")?;
    let threads = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let ns: Vec<usize> = a.iter().skip(3).filter_map(|s| s.parse().ok()).collect();
    let ns = if ns.is_empty() { vec![1, 2, 4, 7] } else { ns };
    let src = FileSource::open(std::path::Path::new(path))?;
    let file = GgufFile::read(&src)?;
    let choice = backend::choose(Backend::Cpu, None);
    let opts = LoadOptions { context: Some(256), ..Default::default() };
    let dot = match std::env::var("CPU_DOT").as_deref() {
        Ok("int8") => Some(llama_webgpu::cpu::CpuDot::Int8),
        _ => None,
    };
    let cpu = CpuOptions { threads, dot, ..Default::default() };
    let mut m = pollster::block_on(Model::load(&src, &file, &choice, &opts, &cpu, |_| {}))?;
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i).collect();
    m.forward_blocking(&prompt, 0, Logits::Last)?;
    for &n in &ns {
        let toks: Vec<u32> = (0..n as u32).map(|i| 500 + i).collect();
        m.forward_blocking(&toks, 64, Logits::All)?;
        let (t, c) = (Instant::now(), cpu_s());
        for _ in 0..reps {
            m.forward_blocking(&toks, 64, Logits::All)?;
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64() / reps as f64, (cpu_s() - c) / reps as f64);
        println!("{n} tokens: wall {:.1} ms, cpu {:.1} ms", wall * 1e3, cpu * 1e3);
    }
    Ok(())
}
