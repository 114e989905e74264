//! `--backend` on the command line: `info` says which backend runs and why, `auto` takes the
//! CPU where the only adapter is a CPU one (lavapipe here), `bench --backend cpu` reports
//! its threads, and a bad value is a named error.

use std::path::PathBuf;
use std::process::Command;

fn fx(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name).to_string_lossy().into_owned()
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_reports_the_backend_and_why() {
    let m = fx("tiny-q4_k_m.gguf");
    let (ok, out, err) = cli(&["info", "--backend", "cpu", "--threads", "2", "--model", &m]);
    assert!(ok, "{err}");
    assert!(out.contains("backend:        cpu (asked for the CPU backend) on CPU, 2 thread(s), "), "{out}");
    let (ok, out, err) = cli(&["info", "--model", &m]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("backend:")).unwrap_or_else(|| panic!("no backend line in\n{out}"));
    // auto: the CPU when wgpu's adapter is a CPU device (lavapipe) or there is none
    assert!(
        line.contains("cpu (auto: adapter") && line.contains("is a CPU device")
            || line.contains("cpu (auto: no WebGPU adapter)")
            || line.contains("gpu (auto: adapter"),
        "{line}"
    );
}

#[test]
fn bench_on_the_cpu_reports_its_threads() {
    let (ok, out, err) = cli(&[
        "bench",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--model",
        &fx("tiny-q4_0.gguf"),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(j["backend"], "cpu");
    assert_eq!(j["threads"], 1);
    assert_eq!(j["backend_choice"]["backend"], "cpu");
    assert!(j["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_bad_backend_is_a_named_error() {
    let (ok, _, err) = cli(&["info", "--backend", "tpu", "--model", &fx("tiny-q4_0.gguf")]);
    assert!(!ok);
    assert!(err.starts_with("error:") && err.contains("backend must be auto, gpu (webgpu) or cpu"), "{err}");
}

#[test]
fn cpu_dot_picks_the_exact_or_the_int8_path_and_names_a_bad_value() {
    let m = fx("tiny-q4_k_m.gguf");
    for (arg, want) in [(None, "exact dot"), (Some("exact"), "exact dot"), (Some("int8"), "int8 dot")] {
        let mut args = vec!["info", "--backend", "cpu", "--threads", "1", "--model", &m];
        args.extend(arg.iter().flat_map(|a| ["--cpu-dot", *a]));
        let (ok, out, err) = cli(&args);
        assert!(ok, "{err}");
        let line = out.lines().find(|l| l.starts_with("backend:")).unwrap_or_default();
        assert!(line.ends_with(want), "--cpu-dot {arg:?}: {line}");
    }
    let (ok, _, err) = cli(&["info", "--backend", "cpu", "--cpu-dot", "int4", "--model", &m]);
    assert!(!ok);
    assert!(err.contains("int4") && err.contains("CPU dot must be exact or int8"), "{err}");
}

/// The tiny fixtures' shape: 2 layers, 2 KV heads of head_dim 32 (one 32-value block per row).
const LAYERS: u64 = 2;
const KV_HEADS: u64 = 2;

#[test]
fn bench_depth_reports_the_kv_type_and_the_bytes_one_token_reads() {
    // one head row: f32 128 bytes, f16 64, q8_0 34 (one block: f16 scale + 32 × i8), q4_0 18
    for (kv, row) in [("f32", 128u64), ("f16", 64), ("q8_0", 34), ("q4_0", 18)] {
        let (ok, out, err) = cli(&[
            "bench",
            "--backend",
            "cpu",
            "--threads",
            "2",
            "--model",
            &fx("tiny-q4_0.gguf"),
            "--kv-type",
            kv,
            "--prompt-tokens",
            "8",
            "--depth",
            "40",
            "--gen-tokens",
            "4",
            "--json",
        ]);
        assert!(ok, "{err}");
        let j: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
        assert_eq!(j["kv_type"], kv);
        assert_eq!(j["depth"], 40);
        // the last decoded token (position 43) reads 44 keys and values once per KV head
        assert_eq!(j["kv_bytes_per_token"], LAYERS * 44 * 2 * KV_HEADS * row, "{kv}");
    }
    // decode from an empty cache, and a depth past the context is an error
    let (ok, out, err) = cli(&[
        "bench",
        "--backend",
        "cpu",
        "--model",
        &fx("tiny-q4_0.gguf"),
        "--prompt-tokens",
        "8",
        "--depth",
        "0",
        "--gen-tokens",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    // the CPU backend's default KV type is f16 (64-byte head rows)
    assert_eq!(j["kv_type"], "f16");
    assert_eq!(j["kv_bytes_per_token"], LAYERS * 2 * 2 * KV_HEADS * 64);
    let (ok, _, err) = cli(&[
        "bench",
        "--backend",
        "cpu",
        "--model",
        &fx("tiny-q4_0.gguf"),
        "--context",
        "64",
        "--depth",
        "62",
        "--gen-tokens",
        "4",
    ]);
    assert!(!ok && err.contains("context 64"), "{err}");
}

#[test]
fn a_128k_context_with_a_q4_0_cache_loads_decodes_and_reports_its_bytes() {
    // the cache grows with use: a 131072-token context costs what the tokens written cost
    let m = fx("tiny-q4_0.gguf");
    let args = ["--backend", "cpu", "--model", &m, "--context", "131072", "--kv-type", "q4_0"];
    let (ok, out, err) = cli(&[&["info"], &args[..]].concat());
    assert!(ok, "{err}");
    // 2 layers × 131072 positions × K and V × 2 heads × 18 bytes
    let bytes = LAYERS * 131072 * 2 * KV_HEADS * 18;
    assert!(out.contains(&format!("({bytes} bytes: 131072 tokens, q4_0)")), "{out}");
    let (ok, _, err) = cli(&[&["generate", "--tokens", "1,2,3", "--max-tokens", "2"], &args[..]].concat());
    assert!(ok, "{err}");
}
