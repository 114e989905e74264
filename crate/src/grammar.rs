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
