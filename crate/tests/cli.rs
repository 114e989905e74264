//! The command line as users and docs call it.

use std::path::PathBuf;
use std::process::Command;

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tiny_json() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fx("tiny.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn logits_writes_npy_matching_reference() {
    let j = tiny_json();
    let toks: Vec<String> = ids(&j["tokens"]).iter().map(|t| t.to_string()).collect();
    let out = std::env::temp_dir().join(format!("lw-logits-{}.npy", std::process::id()));
    let model = fx("tiny-q8_0.gguf");
    let (ok, _, err) = cli(&[
        "logits",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &toks.join(","),
        "--out",
        out.to_str().unwrap(),
        "--precision",
        "f32",
    ]);
    assert!(ok, "{err}");
    let ours = std::fs::read(&out).unwrap();
    let reference = std::fs::read(fx("tiny-q8_0.logits.npy")).unwrap();
    let hdr = |b: &[u8]| 10 + u16::from_le_bytes([b[8], b[9]]) as usize;
    let h = String::from_utf8_lossy(&ours[..hdr(&ours)]).into_owned();
    assert!(h.contains("'shape': (24, 320)"), "{h}");
    let a: Vec<f32> = bytemuck::pod_collect_to_vec(&ours[hdr(&ours)..]);
    let b: Vec<f32> = bytemuck::pod_collect_to_vec(&reference[hdr(&reference)..]);
    let sd = j["types"]["q8_0"]["logit_std"].as_f64().unwrap() as f32;
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(err <= 0.01 * sd, "max error {err} vs std {sd}");
    let _ = std::fs::remove_file(out);
}

#[test]
fn generate_json_reports_greedy_tokens_and_speed() {
    let j = tiny_json();
    let prompt: Vec<String> = ids(&j["greedy_prompt"]).iter().map(|t| t.to_string()).collect();
    let model = fx("tiny-f32.gguf");
    let (ok, out, err) = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &prompt.join(","),
        "--max-tokens",
        "6",
        "--json",
    ]);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let got = ids(&last["tokens"]);
    let want = ids(&j["types"]["f32"]["greedy"]);
    assert!(!got.is_empty() && got[..] == want[..got.len()], "{got:?} vs transformers {want:?}");
    assert_eq!(ids(&last["prompt_tokens"]), ids(&j["greedy_prompt"]));
    assert!(
        last["decode_tokens_per_s"].as_f64().unwrap() >= 0.0 && last["prefill_tokens_per_s"].as_f64().unwrap() > 0.0
    );
    assert!(last["text"].is_string());
}

#[test]
fn tokenize_from_gguf_equals_tokenizer_json() {
    let text = "Hello world, this is a test of 12345 tokens!";
    let (ok1, a, e1) = cli(&["tokenize", "--model", fx("tiny-f32.gguf").to_str().unwrap(), "--text", text]);
    let (ok2, b, e2) = cli(&["tokenize", "--tokenizer", fx("tiny-tokenizer.json").to_str().unwrap(), "--text", text]);
    assert!(ok1 && ok2, "{e1} {e2}");
    let ids: Vec<u32> = serde_json::from_str(a.trim()).unwrap();
    assert!(ids.len() > 5);
    assert_eq!(a, b);
}

#[test]
fn info_reports_shapes_adapter_and_limits() {
    let (ok, out, err) = cli(&["info", "--backend", "gpu", "--model", fx("tiny-q4_1.gguf").to_str().unwrap()]);
    assert!(ok, "{err}");
    for want in [
        "architecture:   llama",
        "2 layers, embd 128, ffn 384, heads 4 / kv 2 (head_dim 32), vocab 320",
        "tied embeddings true",
        "Q4_1",
        "adapter:",
        "max_storage_buffer_binding_size",
        "dispatches:",
    ] {
        assert!(out.contains(want), "missing '{want}' in\n{out}");
    }
}

#[test]
fn bad_inputs_exit_with_a_named_error() {
    let tmp = std::env::temp_dir().join(format!("lw-trunc-{}.gguf", std::process::id()));
    let full = std::fs::read(fx("tiny-q8_0.gguf")).unwrap();
    std::fs::write(&tmp, &full[..full.len() / 2]).unwrap();
    let model = fx("tiny-q8_0.gguf");
    let m = model.to_str().unwrap();
    for (args, want) in [
        (vec!["info", "--model", "/nonexistent.gguf"], "i/o error"),
        (vec!["info", "--model", tmp.to_str().unwrap()], "truncated"),
        (vec!["logits", "--model", m, "--tokens", "1,320", "--out", "/tmp/x.npy"], "out of vocabulary"),
        (vec!["logits", "--model", m, "--tokens", "1,x", "--out", "/tmp/x.npy"], "not a token id"),
        (vec!["generate", "--model", m, "--tokens", "1", "--precision", "f64"], "precision must be"),
        (vec!["generate", "--model", m, "--tokens", "1", "--temperature", "-1"], "temperature"),
        (vec!["frobnicate"], "unknown command"),
    ] {
        let (ok, _, err) = cli(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.starts_with("error:") && err.to_lowercase().contains(want),
            "{args:?}: expected '{want}' in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    let _ = std::fs::remove_file(tmp);
}

#[test]
fn quantize_reproduces_the_gguf_package_files() {
    // tiny-q8_0 / tiny-q4_0 were quantized by llama.cpp's `gguf` package from the float
    // weights in tiny-f32: our quantizer must produce the same bytes for every tensor it
    // gives the same type (output.weight differs by design: llama.cpp's rule makes it
    // Q6_K, falling back to Q8_0 for 128-wide rows), and q8_0 the reference logits.
    use llama_webgpu::gguf::{ByteSource, FileSource, GgufFile};
    let j = tiny_json();
    let toks: Vec<String> = ids(&j["tokens"]).iter().map(|t| t.to_string()).collect();
    for ty in ["q8_0", "q4_0"] {
        let q = std::env::temp_dir().join(format!("lw-quant-{ty}-{}.gguf", std::process::id()));
        let (ok, _, err) = cli(&["quantize", "--type", ty, fx("tiny-f32.gguf").to_str().unwrap(), q.to_str().unwrap()]);
        assert!(ok, "{err}");
        let (ours, theirs) = (FileSource::open(&q).unwrap(), FileSource::open(fx(&format!("tiny-{ty}.gguf"))).unwrap());
        let (fo, ft) = (GgufFile::read(&ours).unwrap(), GgufFile::read(&theirs).unwrap());
        let mut same = 0;
        for t in &ft.tensors {
            let o = fo.tensor(&t.name).unwrap();
            if o.ty != t.ty {
                assert_eq!(t.name, "output.weight", "{ty}: unexpected type change");
                continue;
            }
            let (mut a, mut b) = (vec![0u8; o.n_bytes as usize], vec![0u8; t.n_bytes as usize]);
            ours.read_at(o.offset, &mut a).unwrap();
            theirs.read_at(t.offset, &mut b).unwrap();
            assert!(a == b, "{ty}: tensor {} differs from the gguf package's", t.name);
            same += 1;
        }
        assert!(same >= ft.tensors.len() - 1);
        if ty == "q8_0" {
            let out = q.with_extension("npy");
            let (ok, _, err) = cli(&[
                "logits",
                "--model",
                q.to_str().unwrap(),
                "--tokens",
                &toks.join(","),
                "--out",
                out.to_str().unwrap(),
                "--precision",
                "f32",
            ]);
            assert!(ok, "{err}");
            let a: Vec<f32> = bytemuck::pod_collect_to_vec(&std::fs::read(&out).unwrap()[128..]);
            let b: Vec<f32> = bytemuck::pod_collect_to_vec(&std::fs::read(fx("tiny-q8_0.logits.npy")).unwrap()[128..]);
            let sd = j["types"][ty]["logit_std"].as_f64().unwrap() as f32;
            let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(a.len() == b.len() && err <= 0.01 * sd, "{ty}: max error {err} vs std {sd}");
            let _ = std::fs::remove_file(out);
        }
        let _ = std::fs::remove_file(q);
    }
}
