//! Split GGUF against llama.cpp's own splitter: SmolLM2 cut into 3 parts by `llama-gguf-split
//! --split-max-tensors 100` (tests/make_split.sh, at test time) gives the whole file's greedy
//! tokens, opened from the first part (the others found by name), from every part in any
//! order, and through the CLI; a missing, duplicated or mismatched part is a typed error.

use llama_webgpu::cpu::{CpuDot, CpuModel, CpuOptions};
use llama_webgpu::error::Error;
use llama_webgpu::gguf::split;
use llama_webgpu::gguf::{ByteSource, FileSource, GgufFile};
use llama_webgpu::graph::Logits;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The parts (made once per run by tests/make_split.sh with llama.cpp's llama-gguf-split).
fn parts() -> &'static [PathBuf] {
    static PARTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    PARTS.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("tests/make_split.sh"))
            .env("SMOLLM2_GGUF", common::smollm2_gguf())
            .output()
            .expect("bash tests/make_split.sh");
        assert!(out.status.success(), "make_split.sh: {}", String::from_utf8_lossy(&out.stderr));
        let dir = root().join("tests/.cache/split");
        (1..=3).map(|i| dir.join(format!("smollm2-{i:05}-of-00003.gguf"))).collect()
    })
}

const PROMPT: [u32; 7] = [504, 3575, 282, 4649, 314, 7042, 30]; // "The capital of France is Paris."
const STEPS: usize = 8;

fn greedy<S: ByteSource + ?Sized>(src: &S, file: &GgufFile) -> Vec<u32> {
    let opts = CpuOptions { context: Some(64), dot: Some(CpuDot::Exact), ..Default::default() };
    let mut m = CpuModel::load_blocking(src, file, &opts, |_| {}).unwrap();
    let argmax = |v: &[f32]| {
        v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
    };
    let mut out = Vec::new();
    let mut logits = m.forward(&PROMPT, 0, Logits::Last).unwrap();
    for step in 0..STEPS {
        let t = argmax(&logits);
        out.push(t);
        logits = m.forward(&[t], PROMPT.len() + step, Logits::Last).unwrap();
    }
    out
}

fn whole() -> Vec<u32> {
    let src = FileSource::open(common::smollm2_gguf()).unwrap();
    let file = GgufFile::read(&src).unwrap();
    greedy(&src, &file)
}

#[test]
fn three_parts_give_the_whole_files_greedy_tokens() {
    let p = parts();
    // llama.cpp's split: each part a GGUF with split.no / split.count / split.tensors.count
    for (i, path) in p.iter().enumerate() {
        let f = GgufFile::read(&FileSource::open(path).unwrap()).unwrap();
        assert_eq!(split::part_no(&f).unwrap(), i as u64);
        assert_eq!(split::part_count(&f).unwrap(), 3);
    }
    let want = whole();
    let (src, file) = split::open(&p[..1]).unwrap();
    assert_eq!(src.len(), p.iter().map(|x| std::fs::metadata(x).unwrap().len()).sum::<u64>());
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(greedy(&src, &file), want, "from the first part");
    // every part listed, out of order: laid out by split.no all the same
    let (src, file) = split::open(&[p[2].clone(), p[0].clone(), p[1].clone()]).unwrap();
    assert_eq!(greedy(&src, &file), want, "from the parts in the order 3, 1, 2");
}

#[test]
fn the_cli_reads_a_split_model_from_its_first_part() {
    let run = |model: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
            .args(["generate", "--backend", "cpu", "--max-tokens", "8", "--tokens", "504,3575,282,4649", "--model"])
            .arg(model)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let split_out = run(&parts()[0]);
    assert!(!split_out.trim().is_empty());
    assert_eq!(split_out, run(&common::smollm2_gguf()));
}

#[test]
fn missing_duplicated_and_mismatched_parts_are_typed_errors() {
    let p = parts();
    // part 2 not beside the first (make_split.sh: parts 1 and 3 alone in split-missing/)
    match split::open(&[root().join("tests/.cache/split-missing").join(p[0].file_name().unwrap())]) {
        Err(Error::MissingSplitPart { no: 2, count: 3 }) => {}
        r => panic!("missing part: {:?}", r.map(|_| ())),
    }
    // listed without part 3
    match split::open(&p[..2]) {
        Err(Error::MissingSplitPart { no: 3, count: 3 }) => {}
        r => panic!("missing part 3: {:?}", r.map(|_| ())),
    }
    // part 2 twice
    match split::open(&[p[0].clone(), p[1].clone(), p[1].clone()]) {
        Err(Error::DuplicateSplitPart { no: 2, count: 3 }) => {}
        r => panic!("duplicate part: {:?}", r.map(|_| ())),
    }
    // a part of another split (make_split.sh: the tiny fixture in 3 parts, 22 tensors)
    let other = root().join("tests/.cache/split/tiny-00002-of-00003.gguf");
    match split::open(&[p[0].clone(), other, p[2].clone()]) {
        Err(Error::SplitMismatch(m)) => assert!(m.contains("tensors"), "{m}"),
        r => panic!("mismatched part: {:?}", r.map(|_| ())),
    }
    // part 1 under a name that says nothing of the others: it cannot be found alone
    match split::open(&[root().join("tests/.cache/split-missing/renamed.gguf")]) {
        Err(Error::SplitMismatch(m)) => assert!(m.contains("give every part"), "{m}"),
        r => panic!("renamed part: {:?}", r.map(|_| ())),
    }
    // an unsplit file among parts
    match split::open(&[p[0].clone(), common::smollm2_gguf(), p[2].clone()]) {
        Err(Error::SplitMismatch(_)) => {}
        r => panic!("unsplit file among parts: {:?}", r.map(|_| ())),
    }
}
