//! Tensors larger than a binding are split by rows: with the real 128256-token vocabulary
//! and an 8 MiB binding cap (far below the 25–40 MB embedding and output matrices), logits
//! must be bit-identical to the uncapped run.

use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::graph::Logits;
use llama_webgpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::synth::{synth, SynthDims, SynthShape};

#[test]
fn logits_do_not_change_with_an_8_mib_binding_cap() {
    split_run("q4_k_m");
}

/// The same with the Q2_K / Q3_K embedding (the untied `token_embd` takes the
/// file's base type) and their mixes' other matrices.
#[test]
fn low_bit_types_split_the_same() {
    for ftype in ["q3_k_m", "q2_k"] {
        split_run(ftype);
    }
}

fn split_run(ftype: &str) {
    let shape = SynthShape::Custom(SynthDims {
        n_layer: 2,
        n_embd: 256,
        n_ff: 512,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 128256,
        context_length: 8192,
        rope_base: 500000.0,
        tied: false,
    });
    let path = std::env::temp_dir().join(format!("lw-split-{}-{ftype}.gguf", std::process::id()));
    synth(&shape, ftype, 3, &mut std::fs::File::create(&path).unwrap(), |_, _| {}).unwrap();
    let src = FileSource::open(&path).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let tokens = [128000, 9906, 1917, 11, 420, 374, 264, 1296, 128255];
    let run = |cap: Option<u64>| {
        let opts = LoadOptions {
            gpu: GpuOptions { precision: Precision::F32, max_binding_size: cap, ..Default::default() },
            context: Some(32),
            ..Default::default()
        };
        let mut m = LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
        let all = m.forward_blocking(&tokens, 0, Logits::All).unwrap();
        let next = m.forward_blocking(&[42], tokens.len(), Logits::Last).unwrap();
        (m.dispatches_per_token(), all, next)
    };
    let (d_full, all_full, next_full) = run(None);
    let (d_cap, all_cap, next_cap) = run(Some(8 << 20));
    let _ = std::fs::remove_file(&path);
    assert!(d_cap > d_full, "{ftype}: the cap must split the vocabulary matrices ({d_cap} vs {d_full} dispatches)");
    assert!(all_full.iter().all(|v| v.is_finite()));
    assert_eq!(all_full.len(), tokens.len() * 128256);
    assert!(all_full == all_cap, "{ftype}: prefill logits changed under the binding cap");
    assert!(next_full == next_cap, "{ftype}: decode logits changed under the binding cap");
}
