//! Per-kernel time of a decode step or of a prefill, on the GPU backend: every launch is
//! submitted alone and waited for, and launches are grouped by kernel (layer numbers dropped).
//!
//!   cargo run --release --example kernel_profile -- MODEL.gguf [decode|prefill] [PROMPT=256] [REPS=3]
//!
//! decode: one token at position PROMPT (after a PROMPT-token prefill); prefill: PROMPT tokens
//! in chunk-sized passes from position 0. The median of REPS runs is printed per kernel, with
//! the process CPU time (all threads: lavapipe's workers too), which shared machines disturb
//! less than wall time.

use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::gpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::graph::Logits;
use std::collections::BTreeMap;

/// User + system CPU seconds of this process (all threads), from /proc/self/stat.
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // fields after the command: state is not numeric, so utime/stime are at 11/12 here
    f.get(10).zip(f.get(11)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn class(label: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in label.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            out.push(c);
            digits = false;
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: kernel_profile MODEL.gguf [decode|prefill] [PROMPT] [REPS]")?;
    let mode = args.get(1).map_or("decode", |s| s.as_str());
    let prompt: usize = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let src = FileSource::open(path)?;
    let file = GgufFile::read(&src)?;
    let opts = LoadOptions { context: Some(prompt + 8), ..Default::default() };
    let mut m = LlamaModel::load_blocking(&src, &file, &opts, |_| {})?;
    let vocab = m.cfg.n_vocab as u64;
    let ids: Vec<u32> = (0..prompt as u64).map(|i| ((i * 2654435761 + 12345) % vocab) as u32).collect();
    m.forward_blocking(&ids, 0, Logits::Last)?; // compiles and fills the cache
    println!("adapter {} ({}), {mode}, prompt {prompt}, {reps} reps", m.gpu.adapter.name, m.gpu.adapter.device_type);

    let mut runs: Vec<BTreeMap<String, (usize, f64)>> = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..reps {
        let mut by: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        let c0 = cpu_s();
        // as `bench` runs them: logits of the last position only
        let passes: Vec<(usize, &[u32])> = match mode {
            "prefill" => ids.chunks(m.chunk).enumerate().map(|(i, c)| (i * m.chunk, c)).collect(),
            _ => vec![(prompt, &ids[..1])],
        };
        let last = passes.len() - 1;
        for (i, (pos, toks)) in passes.into_iter().enumerate() {
            for (label, t) in m.profile_blocking(toks, pos, i == last)? {
                let e = by.entry(class(&label)).or_default();
                e.0 += 1;
                e.1 += t;
            }
        }
        cpu.push(cpu_s() - c0);
        runs.push(by);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows: Vec<(String, usize, f64)> =
        runs[0].iter().map(|(k, &(n, _))| (k.clone(), n, median(runs.iter().map(|r| r[k].1).collect()))).collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = rows.iter().map(|r| r.2).sum();
    println!("{:>9} {:>6} {:>5}  kernel", "ms", "share", "count");
    for (k, n, t) in &rows {
        println!("{:9.2} {:5.1}% {:5}  {k}", t * 1e3, 100.0 * t / total, n);
    }
    println!("{:9.2} total wall (median per kernel); process CPU per rep: {:.2} s", total * 1e3, median(cpu));
    Ok(())
}
