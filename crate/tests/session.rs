//! Sessions on the tiny fixture: the step-wise generator, stop strings held back while they
//! may still match, and the two context policies (error, sliding window with a kept prefix).

use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::session::{ContextPolicy, GenerateOptions, Session, StopReason};
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::Error;
use std::path::PathBuf;

fn load(context: usize) -> (LlamaModel, Tokenizer, Vec<u32>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let src = FileSource::open(dir.join("tiny-q8_0.gguf")).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let opts = LoadOptions { context: Some(context), ..Default::default() };
    let model = LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("tiny.json")).unwrap()).unwrap();
    let tokens = j["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    (model, tok, tokens)
}

fn run(
    m: &mut LlamaModel,
    tok: &Tokenizer,
    s: &mut Session,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> (llama_webgpu::session::Generation, Vec<String>) {
    let mut pieces = Vec::new();
    let g = pollster::block_on(s.generate(m, tok, prompt, opts, |_, p| {
        pieces.push(p.to_string());
        true
    }))
    .unwrap();
    (g, pieces)
}

#[test]
fn stop_strings_are_held_back_and_cut() {
    let (mut m, tok, toks) = load(128);
    let opts = GenerateOptions { max_tokens: 30, ..Default::default() };
    let (free, pieces) = run(&mut m, &tok, &mut Session::new(), &toks[..9], &opts);
    assert_eq!(pieces.concat(), free.text, "streamed pieces add up to the text");
    // a stop string taken from the middle of the free-running output
    let chars: Vec<char> = free.text.chars().collect();
    assert!(chars.len() > 12, "need some output to cut: {:?}", free.text);
    let stop: String = chars[6..9].iter().collect();
    let cut = free.text.find(&stop).unwrap();
    let opts = GenerateOptions { stop: vec![stop.clone()], ..opts };
    let (g, pieces) = run(&mut m, &tok, &mut Session::new(), &toks[..9], &opts);
    assert_eq!(g.stop_reason, StopReason::Stop);
    assert_eq!(g.text, free.text[..cut]);
    assert_eq!(pieces.concat(), g.text, "nothing of the stop string was streamed");
    assert!(pieces.iter().all(|p| !p.contains(&stop)));
}

#[test]
fn error_policy_stops_at_a_full_context_and_rejects_long_prompts() {
    let (mut m, tok, toks) = load(16);
    let opts = GenerateOptions { max_tokens: 40, ..Default::default() };
    let mut s = Session::new();
    match pollster::block_on(s.generate(&mut m, &tok, &toks[..20], &opts, |_, _| true)) {
        Err(Error::ContextOverflow { needed: 20, capacity: 16 }) => {}
        other => panic!("expected ContextOverflow, got {:?}", other.map(|g| g.tokens)),
    }
    // the model stays usable after the error
    let (g, _) = run(&mut m, &tok, &mut s, &toks[..9], &opts);
    if g.stop_reason != StopReason::Eos {
        assert_eq!(g.stop_reason, StopReason::Context);
        assert_eq!(g.tokens.len(), 16 - 9 + 1, "the last token's logits come from the full cache");
    }
}

#[test]
fn sliding_window_keeps_the_prefix_and_continues_like_a_fresh_prompt() {
    let (mut m, tok, toks) = load(16);
    let keep = 3;
    let opts =
        GenerateOptions { max_tokens: 24, context_policy: ContextPolicy::SlidingWindow { keep }, ..Default::default() };
    let prompt = &toks[..9];
    let mut s = Session::new();
    let (g, _) = run(&mut m, &tok, &mut s, prompt, &opts);
    assert!(
        g.tokens.len() > 16 - 9 + 1,
        "generation went past the context ({} tokens, {:?})",
        g.tokens.len(),
        g.stop_reason
    );
    assert!(s.cached().len() <= 16);
    assert_eq!(&s.cached()[..keep], &prompt[..keep], "the kept prefix stays at the front");

    // First slide: 7 tokens fill the cache (9 + 7 = 16); the 8th is sampled from full
    // logits, then the window = prompt[..3] + the last (16 - 3) / 2 = 6 tokens of history.
    let mut history = prompt.to_vec();
    history.extend_from_slice(&g.tokens[..8]);
    let mut window = history[..keep].to_vec();
    window.extend_from_slice(&history[history.len() - 6..]);
    let one = GenerateOptions { max_tokens: 1, ..Default::default() };
    let (fresh, _) = run(&mut m, &tok, &mut Session::new(), &window, &one);
    assert_eq!(fresh.tokens[0], g.tokens[8], "token after the slide = greedy continuation of the window");

    // a prompt longer than the context is cut to fit instead of failing
    let (g2, _) = run(&mut m, &tok, &mut Session::new(), &toks[..20], &opts);
    assert!(!g2.tokens.is_empty() || g2.stop_reason == StopReason::Eos);
}

#[test]
fn follow_up_prefills_only_new_tokens() {
    let (mut m, tok, toks) = load(64);
    let opts = GenerateOptions { max_tokens: 4, ..Default::default() };
    let mut s = Session::new();
    let (g1, _) = run(&mut m, &tok, &mut s, &toks[..9], &opts);
    let mut turn2 = toks[..9].to_vec();
    turn2.extend_from_slice(&g1.tokens);
    turn2.extend_from_slice(&toks[9..14]);
    let mut start = pollster::block_on(s.start(&mut m, &tok, &turn2, &opts)).unwrap();
    // cache held prompt + all generated tokens but the last (never run through the model)
    let cached = 9 + g1.tokens.len() - usize::from(g1.stop_reason != StopReason::Eos);
    assert_eq!(start.reused(), cached.min(turn2.len() - 1));
    while pollster::block_on(start.next(&mut s, &mut m, &tok)).unwrap().is_some() {}
    assert!(start.finish().prefilled <= 5 + 1);
}
