//! Constrained decoding: a JSON schema, regex or context-free grammar (Lark, or llama.cpp's
//! GBNF) turned into a per-token mask over the vocabulary, through `llguidance`.
//!
//! The token trie is built from our own tokenizer's bytes (special tokens under toktrie's
//! 0xFF marker), so a mask is exact for the ids this model samples: a token whose bytes cross
//! a grammar boundary (`"}` + `,`) is allowed exactly when all of its bytes are. Building the
//! trie and the parser factory costs ~0.1–0.5 s on a 128k vocabulary, so [`GrammarCompiler`]
//! is made once per model; each request then compiles its grammar into a [`Constraint`].

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::earley::SlicedBiasComputer;
use llguidance::toktrie::{InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::error::{Error, Result};
use crate::gbnf::gbnf_to_lark;
use crate::tokenizer::Tokenizer;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON schema (draft 2020-12 subset that llguidance supports).
    JsonSchema(serde_json::Value),
    /// Any JSON object (OpenAI's `response_format: {type: "json_object"}`).
    JsonObject,
    /// A regular expression (Rust `regex` syntax) for the whole output.
    Regex(String),
    /// llguidance's Lark syntax.
    Lark(String),
    /// llama.cpp's GBNF, converted to Lark.
    Gbnf(String),
}

impl Grammar {
    /// A grammar file by its extension: `.gbnf` → GBNF, `.json` → JSON schema, else Lark.
    pub fn from_file_text(name: &str, text: &str) -> Result<Self> {
        if name.ends_with(".gbnf") {
            Ok(Self::Gbnf(text.to_owned()))
        } else if name.ends_with(".json") {
            Ok(Self::JsonSchema(parse_schema(text)?))
        } else {
            Ok(Self::Lark(text.to_owned()))
        }
    }

    fn to_llguidance(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Self::JsonSchema(s) => {
                if !(s.is_object() || s.is_boolean()) {
                    return Err(Error::InvalidArgument("JSON schema must be an object or a boolean".into()));
                }
                TopLevelGrammar::from_json_schema(compact_json(s.clone()))
            }
            Self::JsonObject => TopLevelGrammar::from_json_schema(compact_json(serde_json::json!({"type": "object"}))),
            Self::Regex(r) => TopLevelGrammar::from_regex(r),
            Self::Lark(l) => TopLevelGrammar::from_lark(l.clone()),
            Self::Gbnf(g) => TopLevelGrammar::from_lark(gbnf_to_lark(g)?),
        })
    }
}

/// JSON text → schema, with the parse error named.
pub fn parse_schema(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("JSON schema is not valid JSON: {e}")))
}

/// JSON without free whitespace (`{"a": 1, "b": [2, 3]}` spacing): a sampled model otherwise
/// may spend its whole token budget on newlines the grammar allows.
fn compact_json(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// Our vocabulary as llguidance sees it: the trie of token bytes.
struct Env {
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Greedy longest match on the trie: llguidance only tokenizes bytes it would force,
        // and forcing is off (InferenceCapabilities::ff_tokens = false).
        self.trie.greedy_tokenize(s)
    }
}

/// The per-model half: the token trie and llguidance's parser factory.
pub struct GrammarCompiler {
    factory: ParserFactory,
    /// Ids that end generation; allowed wherever the grammar allows its end.
    stop_ids: Vec<u32>,
    eos: u32,
    vocab: usize,
}

impl GrammarCompiler {
    pub fn new(tok: &Tokenizer) -> Result<Self> {
        let vocab = tok.vocab_size();
        let stop_ids = tok.stop_ids();
        let eos = tok
            .eos_id()
            .or(stop_ids.first().copied())
            .ok_or_else(|| Error::UnsupportedModel("constrained decoding needs an end-of-sequence token".into()))?;
        let mut words = Vec::with_capacity(vocab);
        for id in 0..vocab as u32 {
            let w = if tok.is_special(id) {
                let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                w.extend(tok.id_to_token(id).unwrap_or_default().into_bytes());
                w
            } else {
                // Holes in a tokenizer.json vocab get no bytes: they are never allowed.
                tok.token_bytes(id).unwrap_or_default()
            };
            words.push(w);
        }
        let info = TokRxInfo::new(vocab as u32, eos);
        let env: TokEnv = Arc::new(Env { trie: TokTrie::from(&info, &words) });
        let caps =
            InferenceCapabilities { ff_tokens: false, backtrack: false, conditional_ff_tokens: false, fork: false };
        let mut factory = ParserFactory::new(&env, caps, &SlicedBiasComputer::general_slices())
            .map_err(|e| Error::InvalidArgument(format!("grammar engine: {e}")))?;
        factory.set_stderr_log_level(0);
        factory.quiet();
        Ok(Self { factory, stop_ids, eos, vocab })
    }

    /// Compiles `grammar` into a fresh constraint; an invalid schema/grammar is
    /// `InvalidArgument` with llguidance's message.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint> {
        let g = grammar.to_llguidance()?;
        let parser = self.factory.create_parser(g).map_err(|e| {
            let what = match grammar {
                Grammar::JsonSchema(_) | Grammar::JsonObject => "JSON schema",
                Grammar::Regex(_) => "regex",
                Grammar::Lark(_) => "Lark grammar",
                Grammar::Gbnf(_) => "GBNF grammar",
            };
            Error::InvalidArgument(format!("invalid {what}: {e}"))
        })?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            stop_ids: self.stop_ids.clone(),
            eos: self.eos,
            vocab: self.vocab,
        })
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
    stop_ids: Vec<u32>,
    eos: u32,
    vocab: usize,
}

fn llg_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("grammar: {e}"))
}

impl Constraint {
    /// True once the grammar can take no further token (generation ends here).
    pub fn is_complete(&mut self) -> bool {
        self.matcher.is_stopped()
    }

    /// Sets every logit the grammar forbids to -inf. Ids beyond the tokenizer's vocabulary
    /// (padding rows of the output matrix) are forbidden; the stop ids are allowed exactly
    /// where the grammar may end.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask().map_err(llg_err)?;
        // The grammar knows one end token (`eos`); every stop id may end where it may.
        let can_end = mask.is_allowed(self.eos);
        let kept: Vec<(usize, f32)> =
            self.stop_ids.iter().filter_map(|&s| logits.get(s as usize).map(|&x| (s as usize, x))).collect();
        for (id, x) in logits.iter_mut().enumerate() {
            if id >= self.vocab || !mask.is_allowed(id as u32) {
                *x = f32::NEG_INFINITY;
            }
        }
        if can_end {
            for (s, x) in kept {
                logits[s] = x;
            }
        }
        Ok(())
    }

    /// Advances the grammar by the sampled token (a stop id ends it).
    pub fn consume(&mut self, id: u32) -> Result<()> {
        let id = if self.stop_ids.contains(&id) { self.eos } else { id };
        self.matcher.consume_token(id).map_err(llg_err)
    }

    /// Whether the text so far is a complete match (an EOS now would be accepted).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// Timings of [`bench_masks`], in milliseconds / microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaskBench {
    /// Compiling the grammar into a fresh constraint (median over the restarts).
    pub compile_ms: f64,
    pub masks: usize,
    pub mask_us_median: f64,
    pub mask_us_p99: f64,
    pub mask_us_max: f64,
}

/// Measures per-token mask cost: walks `grammar` with pseudo-random logits (argmax of the
/// allowed tokens), recompiling whenever it completes, until `steps` masks were computed.
/// Only [`Constraint::mask_logits`] (llguidance's mask + applying it) and compiles are timed.
pub fn bench_masks(compiler: &GrammarCompiler, grammar: &Grammar, steps: usize, vocab: usize) -> Result<MaskBench> {
    use web_time::Instant;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let (mut compiles, mut masks) = (Vec::new(), Vec::new());
    let mut logits = vec![0f32; vocab];
    while masks.len() < steps {
        let t = Instant::now();
        let mut c = compiler.compile(grammar)?;
        compiles.push(t.elapsed().as_secs_f64() * 1e3);
        for _ in 0..1000 {
            if masks.len() >= steps || c.is_complete() {
                break;
            }
            logits.iter_mut().for_each(|x| *x = rand());
            let t = Instant::now();
            c.mask_logits(&mut logits)?;
            masks.push(t.elapsed().as_secs_f64() * 1e6);
            let mut best = None;
            for (i, &x) in logits.iter().enumerate() {
                if x > f32::NEG_INFINITY && best.is_none_or(|(_, b)| x > b) {
                    best = Some((i as u32, x));
                }
            }
            let Some((id, _)) = best else { break };
            c.consume(id)?;
            if c.stop_ids.contains(&id) {
                break;
            }
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    Ok(MaskBench {
        compile_ms: pct(&mut compiles, 0.5),
        masks: masks.len(),
        mask_us_median: pct(&mut masks, 0.5),
        mask_us_p99: pct(&mut masks, 0.99),
        mask_us_max: masks.last().copied().unwrap_or(0.0),
    })
}
