//! Speculative decoding (crate/src/speculative.rs): greedy output token for token the same as
//! plain decoding with a draft model and with prompt lookup, on both backends, under a JSON
//! schema, across a sliding-window slide and on the real SmolLM2 (F16 target, Q4_1 draft);
//! the sampled next-token distribution the plain sampler's (two-sample chi-square over many
//! seeds); a draft of another vocabulary is a typed error.

use llama_webgpu::backend::{self, Backend, Model};
use llama_webgpu::cpu::CpuOptions;
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::grammar::{Grammar, GrammarCompiler};
use llama_webgpu::model::LoadOptions;
use llama_webgpu::sampler::SamplerConfig;
use llama_webgpu::session::{ContextPolicy, GenerateOptions, Generation, Session, Steering, StopReason};
use llama_webgpu::speculative::{SpecStats, Speculator};
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::Error;
use serde_json::json;
use std::path::{Path, PathBuf};

mod common;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn load_path(path: &Path, backend: Backend, context: usize) -> (Model, Tokenizer) {
    let src = FileSource::open(path).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let choice = backend::choose(backend, None);
    let opts = LoadOptions { context: Some(context), ..Default::default() };
    let cpu = CpuOptions { threads: 2, ..Default::default() };
    let m = pollster::block_on(Model::load(&src, &file, &choice, &opts, &cpu, |_| {}))
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    (m, Tokenizer::from_gguf(&file).unwrap())
}

fn load(name: &str, backend: Backend, context: usize) -> (Model, Tokenizer) {
    load_path(&fixtures().join(name), backend, context)
}

fn prompt_tokens() -> Vec<u32> {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("tiny.json")).unwrap()).unwrap();
    j["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn run(
    m: &mut Model,
    tok: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    schema: Option<&serde_json::Value>,
    spec: Option<&mut Speculator>,
) -> (Generation, String) {
    let constraint =
        schema.map(|s| GrammarCompiler::new(tok).unwrap().compile(&Grammar::JsonSchema(s.clone())).unwrap());
    let mut streamed = String::new();
    let g = pollster::block_on(Session::new().generate_speculative(
        m,
        tok,
        prompt,
        opts,
        Steering { constraint, spec },
        |_, p| {
            streamed.push_str(p);
            true
        },
    ))
    .unwrap();
    (g, streamed)
}

/// Plain, draft-model and lookup runs of each case on `backend`; returns the summed counters
/// of the draft and lookup runs.
fn identity_on(backend: Backend) -> (SpecStats, SpecStats) {
    let (mut target, tok) = load("tiny-f32.gguf", backend, 32);
    let toks = prompt_tokens();
    // a prompt that repeats itself, so lookup has n-grams to continue
    let mut repeating = toks[..12].to_vec();
    repeating.extend_from_slice(&toks[1..12]);
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 8}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["name", "n"], "additionalProperties": false});
    let greedy = GenerateOptions { max_tokens: 20, ..Default::default() };
    let long = GenerateOptions { max_tokens: 60, ..greedy.clone() };
    let sliding =
        GenerateOptions { max_tokens: 40, context_policy: ContextPolicy::SlidingWindow { keep: 3 }, ..greedy.clone() };
    let penalized = GenerateOptions {
        sampler: SamplerConfig { repetition_penalty: 1.3, ..Default::default() },
        stop: vec!["e".into()],
        ..greedy.clone()
    };
    let cases: Vec<(&str, &[u32], &GenerateOptions, Option<&serde_json::Value>)> = vec![
        ("plain", &toks[..9], &greedy, None),
        ("repeating", &repeating, &greedy, None),
        ("json schema", &toks[..9], &long, Some(&schema)),
        ("sliding window", &toks[..9], &sliding, None),
        ("penalty and stop string", &repeating, &penalized, None),
    ];
    let (draft_model, draft_tok) = load("tiny-q8_0.gguf", backend, 32);
    let mut draft = Speculator::draft(draft_model, &draft_tok, &target, &tok, 4).unwrap();
    let (mut sd, mut sl) = (SpecStats::default(), SpecStats::default());
    for (name, prompt, opts, schema) in cases {
        let (plain, plain_text) = run(&mut target, &tok, prompt, opts, schema, None);
        assert!(plain.speculative.is_none());
        if name == "sliding window" {
            assert!(prompt.len() + plain.tokens.len() > 32, "{name}: the run must slide the window");
        }
        let mut lookup = Speculator::lookup(4);
        for (which, spec, sum) in [("draft", &mut draft, &mut sd), ("lookup", &mut lookup, &mut sl)] {
            let (g, text) = run(&mut target, &tok, prompt, opts, schema, Some(spec));
            assert_eq!(g.tokens, plain.tokens, "{backend} {name} {which}: tokens");
            assert_eq!(g.text, plain.text, "{backend} {name} {which}: text");
            assert_eq!(text, plain_text, "{backend} {name} {which}: streamed text");
            assert_eq!(g.stop_reason, plain.stop_reason, "{backend} {name} {which}: stop reason");
            let s = g.speculative.expect("counters");
            assert!(s.accepted <= s.drafted);
            sum.drafted += s.drafted;
            sum.accepted += s.accepted;
            sum.target_forwards += s.target_forwards;
        }
        if let (Some(schema), StopReason::Eos) = (schema, plain.stop_reason) {
            let v: serde_json::Value = serde_json::from_str(&plain.text).expect("schema output is JSON");
            assert!(v["name"].is_string() && v["n"].is_u64(), "{v} against {schema}");
        }
    }
    (sd, sl)
}

#[test]
fn greedy_output_is_identical_on_the_cpu_backend() {
    let (d, l) = identity_on(Backend::Cpu);
    // the drafters did draft, and the q8_0 draft of the same weights was mostly right
    assert!(d.accepted > d.drafted / 2, "draft model: {d:?}");
    assert!(l.drafted > 0 && l.accepted > 0, "lookup: {l:?}");
}

#[test]
fn greedy_output_is_identical_on_the_gpu_backend() {
    let (d, l) = identity_on(Backend::Gpu);
    assert!(d.accepted > d.drafted / 2, "draft model: {d:?}");
    assert!(l.drafted > 0 && l.accepted > 0, "lookup: {l:?}");
}

/// Chi-square critical value at p = 0.001 (Wilson–Hilferty).
fn chi2_critical(df: usize) -> f64 {
    let (k, z) = (df as f64, 3.090_232);
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// Two-sample chi-square of equal-size count vectors, categories pooled until each has an
/// expected count of at least 5; `(statistic, degrees of freedom)`.
fn chi2_two_sample(a: &[usize], b: &[usize]) -> (f64, usize) {
    let mut cats: Vec<(usize, usize)> = a.iter().zip(b).map(|(&x, &y)| (x, y)).filter(|c| c.0 + c.1 > 0).collect();
    cats.sort_by_key(|c| c.0 + c.1);
    let mut pooled: Vec<(usize, usize)> = Vec::new();
    let mut acc = (0, 0);
    for c in cats {
        acc = (acc.0 + c.0, acc.1 + c.1);
        if acc.0 + acc.1 >= 10 {
            pooled.push(acc);
            acc = (0, 0);
        }
    }
    if let Some(last) = pooled.last_mut() {
        *last = (last.0 + acc.0, last.1 + acc.1);
    }
    let chi2 = pooled.iter().map(|&(x, y)| (x as f64 - y as f64).powi(2) / (x + y) as f64).sum();
    (chi2, pooled.len().saturating_sub(1))
}

/// The tokens after the prompt at temperature 1 over many seeds: the speculative sampler's
/// (draft model and lookup) must be distributed as the plain sampler's, at the first
/// verified position and the one after. Breaking the rule (always accepting the draft, or
/// resampling from p instead of the residual) fails this with chi-square in the hundreds.
#[test]
fn sampled_distribution_matches_the_plain_sampler() {
    let (mut target, tok) = load("tiny-f32.gguf", Backend::Cpu, 64);
    let (draft_model, draft_tok) = load("tiny-q8_0.gguf", Backend::Cpu, 64);
    let mut draft = Speculator::draft(draft_model, &draft_tok, &target, &tok, 3).unwrap();
    let toks = prompt_tokens();
    let mut prompt = toks[..10].to_vec();
    prompt.extend_from_slice(&toks[..10]);
    let vocab = 320;
    let seeds = 1200;
    let mut lookup = Speculator::lookup(3);
    let mut counts = vec![vec![vec![0usize; vocab]; 2]; 3];
    let mut stats = [SpecStats::default(); 3];
    for (which, spec) in [None, Some(&mut draft), Some(&mut lookup)].into_iter().enumerate() {
        let mut spec = spec;
        let mut s = Session::new();
        for seed in 0..seeds {
            let opts = GenerateOptions {
                max_tokens: 3,
                sampler: SamplerConfig { temperature: 1.0, seed, ..Default::default() },
                ..Default::default()
            };
            let g = pollster::block_on(s.generate_speculative(
                &mut target,
                &tok,
                &prompt,
                &opts,
                Steering { constraint: None, spec: spec.as_deref_mut() },
                |_, _| true,
            ))
            .unwrap();
            for (pos, c) in counts[which].iter_mut().enumerate().take(2) {
                if let Some(&t) = g.tokens.get(pos + 1) {
                    c[t as usize] += 1;
                }
            }
            if let Some(st) = g.speculative {
                stats[which].drafted += st.drafted;
                stats[which].accepted += st.accepted;
            }
        }
    }
    for (which, name) in [(1, "draft model"), (2, "lookup")] {
        // the drafts were there to accept or reject (lookup drafts only where the prompt's
        // n-grams recur after a random token: rarely on this random model)
        assert!(stats[which].drafted > 0, "{name}: {:?}", stats[which]);
        if which == 1 {
            assert!(stats[which].drafted > seeds as usize / 4, "{name}: {:?}", stats[which]);
            assert!(
                stats[which].accepted > 0 && stats[which].accepted < stats[which].drafted,
                "{name}: {:?}",
                stats[which]
            );
        }
        // the first verified position (token 1 is the same draw in both: the same seed's first
        // uniform); later positions end early at different EOS tokens, so their counts differ
        {
            let pos = 0;
            let (a, b) = (&counts[0][pos], &counts[which][pos]);
            assert_eq!(a.iter().sum::<usize>(), b.iter().sum::<usize>(), "{name}: same number of tokens");
            let (chi2, df) = chi2_two_sample(a, b);
            assert!(df >= 5, "{name}: too few categories ({df}) for a meaningful test");
            let crit = chi2_critical(df);
            eprintln!("{name} token {}: chi2 {chi2:.1}, df {df}, critical {crit:.1}", pos + 2);
            assert!(chi2 < crit, "{name} token {}: chi2 {chi2:.1} >= {crit:.1} (df {df})", pos + 2);
        }
    }
}

#[test]
fn a_draft_of_another_vocabulary_is_a_typed_error() {
    let (target, tok) = load("tiny-f32.gguf", Backend::Cpu, 32);
    let (draft, draft_tok) = load_path(&common::smollm2_gguf(), Backend::Cpu, 32);
    match Speculator::draft(draft, &draft_tok, &target, &tok, 4) {
        Err(e @ Error::DraftVocabMismatch(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("vocabulary") && msg.contains("49152") && msg.contains("320"), "{msg}");
        }
        Err(e) => panic!("expected DraftVocabMismatch, got {e}"),
        Ok(_) => panic!("a 49152-token draft for a 320-token target was accepted"),
    }
    // same size, different tokens: the fixture's tokenizer.json with two tokens renamed
    let json = std::fs::read_to_string(fixtures().join("tiny-tokenizer.json")).unwrap();
    let same = Tokenizer::from_json(json.as_bytes()).unwrap();
    llama_webgpu::speculative::check_vocab(320, &same, 320, &tok).expect("the same vocabulary passes");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let vocab = v["model"]["vocab"].as_object_mut().unwrap();
    let (a, b) = (vocab["H"].clone(), vocab["e"].clone());
    vocab.insert("H".into(), b);
    vocab.insert("e".into(), a);
    let swapped = Tokenizer::from_json(v.to_string().as_bytes()).unwrap();
    match llama_webgpu::speculative::check_vocab(320, &swapped, 320, &tok) {
        Err(Error::DraftVocabMismatch(m)) => assert!(m.contains("token 39"), "{m}"),
        other => panic!("expected DraftVocabMismatch for swapped tokens, got {other:?}"),
    }
}

/// The real SmolLM2-135M-Instruct: its F16 conversion (our `quantize --type f16` of the
/// Q4_1 file) as the target, the Q4_1 file as the draft; and lookup on a copy prompt.
#[test]
fn smollm2_f16_target_with_q4_1_draft_is_identical() {
    let q4 = common::smollm2_gguf();
    let f16 = std::env::temp_dir().join(format!("lw-spec-smollm2-f16-{}.gguf", std::process::id()));
    {
        let src = FileSource::open(&q4).unwrap();
        let file = GgufFile::read(&src).unwrap();
        let out = llama_webgpu::output::Output::create(f16.to_str().unwrap(), true).unwrap();
        let ftype = "f16".parse::<llama_webgpu::quantize::FileType>().unwrap();
        out.write(|w| llama_webgpu::quantize::quantize_file(&src, &file, ftype, w, |_, _| {})).unwrap();
    }
    let (mut target, tok) = load_path(&f16, Backend::Cpu, 512);
    let _ = std::fs::remove_file(&f16);
    let (draft_model, draft_tok) = load_path(&q4, Backend::Cpu, 512);
    let mut draft = Speculator::draft(draft_model, &draft_tok, &target, &tok, 5).unwrap();
    let chat = |text: &str| {
        let format = llama_webgpu::chat::ChatFormat::for_tokenizer(&tok);
        let msgs = [llama_webgpu::chat::Message::new("user", text)];
        let o = llama_webgpu::chat::ChatOptions { add_generation_prompt: true, ..Default::default() };
        format.encode(&tok, &msgs, &o).unwrap()
    };
    let free = chat("Write a short story about a robot who learns to paint.");
    let copy = chat(
        "Repeat this text exactly: The quick brown fox jumps over the lazy dog. \
         A journey of a thousand miles begins with a single step. \
         All that glitters is not gold.",
    );
    let opts = GenerateOptions { max_tokens: 48, ..Default::default() };
    for (name, prompt) in [("free", &free), ("copy", &copy)] {
        let (plain, _) = run(&mut target, &tok, prompt, &opts, None, None);
        let (d, _) = run(&mut target, &tok, prompt, &opts, None, Some(&mut draft));
        assert_eq!(d.tokens, plain.tokens, "{name}: draft model");
        let mut lookup = Speculator::lookup(6);
        let (l, _) = run(&mut target, &tok, prompt, &opts, None, Some(&mut lookup));
        assert_eq!(l.tokens, plain.tokens, "{name}: lookup");
        let (ds, ls) = (d.speculative.unwrap(), l.speculative.unwrap());
        eprintln!("{name}: draft {ds:?}, lookup {ls:?}, {:?}", plain.text);
        assert!(ds.accepted * 2 > ds.drafted, "{name}: the Q4_1 draft agrees with its F16 target mostly: {ds:?}");
        assert!(ds.target_forwards < plain.tokens.len(), "{name}: fewer target passes than tokens: {ds:?}");
        if name == "copy" {
            assert!(ls.accepted > 10, "copy: lookup accepts the repeated text: {ls:?}");
        }
    }
}
