//! Byte-level BPE tokenizer (Llama 3, SmolLM2, GPT-2 style) built from GGUF metadata or an HF
//! `tokenizer.json`.
//!
//! Encoding is delegated to the `tokenizers` crate so that ids match Hugging Face exactly; the
//! GGUF path only has to rebuild the pieces HF would have (vocab, merges, added tokens,
//! pre-tokenizer). Decoding is done here from our own id → token table, because HF's decode
//! silently drops unknown ids and loses ids whose token string is duplicated in a GGUF vocab.

use serde::{Deserialize, Serialize};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeBuilder, Vocab};
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, AddedVocabulary, Model, OffsetType, PreTokenizer, SplitDelimiterBehavior};

use crate::error::{clip, echo, Error, Result};
use crate::gguf::{GgufFile, Value};

/// The Llama 3 split regex, verbatim from Meta's `tokenizer.json` (also tiktoken's `cl100k`-like
/// pattern used by `tokenizer.ggml.pre = "llama-bpe"`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Names that end generation when the vocabulary has them (chat turn ends, document end;
/// `<|endoftext|>` is the GPT-2-family document end, e.g. SmolLM2's id 0).
const STOP_TOKENS: [&str; 5] = ["<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<|eom_id|>", "<|endoftext|>"];

/// GGUF `tokenizer.ggml.token_type` values we care about.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

fn tk_err(e: impl std::fmt::Display) -> Error {
    // HF tokenizers' messages repeat tokens (e.g. a merge's) whole.
    Error::Tokenizer(clip(&e.to_string()).to_string())
}

/// Everything the tokenizer needs from GGUF metadata, as plain data. Built from a
/// [`GgufFile`] by [`GgufTokenizerSpec::from_gguf`]; deserializable from JSON so the
/// construction can be tested without a GGUF reader.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GgufTokenizerSpec {
    /// `tokenizer.ggml.model`; only "gpt2" (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer (split regex) the model was trained with.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// "left right" pairs, highest priority first.
    pub merges: Vec<String>,
    /// Per token: 1 normal, 3 control, 4 user-defined, 6 byte; empty = all normal.
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    pub chat_template: Option<String>,
}

impl GgufTokenizerSpec {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let opt_str = |key: &str| -> Result<Option<String>> {
            match f.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| Error::WrongType { key: key.into(), expected: "string" }),
            }
        };
        let opt_id = |key: &str| -> Result<Option<u32>> {
            match f.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| Error::WrongType { key: key.into(), expected: "u32" }),
            }
        };
        let model = f.get_str("tokenizer.ggml.model")?.to_owned();
        // Check the model first so a SentencePiece file gets the helpful error, not a
        // missing-merges one.
        check_model(&model)?;
        let token_types = match f.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.to_i64s())
                .and_then(|a| a.into_iter().map(|x| i32::try_from(x).ok()).collect::<Option<Vec<i32>>>())
                .ok_or_else(|| Error::WrongType {
                    key: "tokenizer.ggml.token_type".into(),
                    expected: "array of integers",
                })?,
        };
        let add_bos = match f.get("tokenizer.ggml.add_bos_token") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(Error::WrongType { key: "tokenizer.ggml.add_bos_token".into(), expected: "bool" }),
        };
        Ok(Self {
            model,
            pre: opt_str("tokenizer.ggml.pre")?,
            tokens: strings(f, "tokenizer.ggml.tokens", MAX_VOCAB, MAX_TOKEN_TEXT)?,
            merges: strings(f, "tokenizer.ggml.merges", MAX_MERGES, MAX_MERGE_TEXT)?,
            token_types,
            bos: opt_id("tokenizer.ggml.bos_token_id")?,
            eos: opt_id("tokenizer.ggml.eos_token_id")?,
            eot: opt_id("tokenizer.ggml.eot_token_id")?,
            add_bos,
            chat_template: opt_str("tokenizer.chat_template")?,
        })
    }
}

/// Bounds on what a tokenizer may be built from, so construction takes bounded time and
/// memory (HF's BPE keeps several copies of every token and merge). Real vocabularies:
/// Llama 3 128,256 tokens (~1 MB of text) and 280,147 merges (~2.5 MB); Gemma 3 262,144 tokens.
pub const MAX_VOCAB: usize = 1 << 19;
pub const MAX_MERGES: usize = 1 << 20;
pub const MAX_TOKEN_TEXT: usize = 16 << 20;
pub const MAX_MERGE_TEXT: usize = 32 << 20;
/// Control and user-defined tokens are matched in raw text by an Aho-Corasick automaton
/// (Llama 3 has 256 of them; 32,768 of them take ~0.7 s to index, unoptimized).
pub const MAX_ADDED_TOKENS: usize = 1 << 15;
pub const MAX_ADDED_TEXT: usize = 4 << 20;

/// A string array of metadata, checked against `max` entries and `max_text` bytes before it
/// is copied.
fn strings(f: &GgufFile, key: &str, max: usize, max_text: usize) -> Result<Vec<String>> {
    let a = f.get_str_array(key)?;
    check_size(key, a.len(), a.text_len(), max, max_text)?;
    Ok(a.iter().map(String::from).collect())
}

fn check_size(what: &str, n: usize, text: usize, max: usize, max_text: usize) -> Result<()> {
    if n > max {
        return Err(Error::Tokenizer(format!("{what}: {n} entries, more than the {max} supported")));
    }
    if text > max_text {
        return Err(Error::Tokenizer(format!(
            "{what}: {text} bytes of text, more than the {} MiB supported",
            max_text >> 20
        )));
    }
    Ok(())
}

fn check_model(model: &str) -> Result<()> {
    match model {
        "gpt2" => Ok(()),
        other => Err(Error::Tokenizer(format!(
            "unsupported tokenizer model {} (only byte-level BPE 'gpt2' is supported)",
            echo(other)
        ))),
    }
}

/// The pre-tokenizer HF uses for a llama.cpp `tokenizer.ggml.pre` name, and whether BPE looks
/// a whole pre-token up in the vocab before merging (`ignore_merges`, tiktoken semantics; set
/// in Meta's Llama 3 tokenizer.json and by llama.cpp for llama-bpe).
fn pre_tokenizer_for(pre: Option<&str>) -> Result<(PreTokenizerWrapper, bool)> {
    // ByteLevel(add_prefix_space, trim_offsets, use_regex)
    Ok(match pre.unwrap_or("default") {
        "llama-bpe" | "llama3" | "llama-v3" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(tk_err)?;
            let seq = Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
            ]);
            (PreTokenizerWrapper::Sequence(seq), true)
        }
        // SmolLM2's tokenizer.json: every digit is its own pre-token, then the GPT-2 regex.
        "smollm" => {
            let seq = Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ]);
            (PreTokenizerWrapper::Sequence(seq), false)
        }
        "default" | "gpt2" | "gpt-2" => (PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)), false),
        other => {
            return Err(Error::Tokenizer(format!(
                "unsupported pre-tokenizer {} (tokenizer.ggml.pre); supported: \
                 llama-bpe, smollm, default, gpt2",
                echo(other)
            )))
        }
    })
}

/// GPT-2's byte → printable-char map, inverted: which byte a char of a byte-level token stands
/// for. Printable Latin-1 bytes map to themselves; the 68 others were shifted to U+0100.. in
/// increasing byte order.
fn byte_of_char(c: char) -> Option<u8> {
    let c = c as u32;
    match c {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(c as u8),
        0x100..=0x120 => Some((c - 0x100) as u8),        // bytes 0x00..=0x20
        0x121..=0x142 => Some((c - 0x121 + 0x7F) as u8), // bytes 0x7F..=0xA0
        0x143 => Some(0xAD),
        _ => None,
    }
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `inner`'s added vocabulary with special-token matching switched off (HF's
    /// `split_special_tokens`), for [`Tokenizer::encode_plain`].
    plain_added: AddedVocabulary,
    /// id → token string; `None` for holes in a tokenizer.json vocab.
    tokens: Vec<Option<String>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

/// `inner`'s added vocabulary with special-token matching switched off.
fn plain_added(inner: &tokenizers::Tokenizer) -> AddedVocabulary {
    let mut plain = inner.get_added_vocabulary().clone();
    plain.set_encode_special_tokens(true);
    plain
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        Self::from_spec(GgufTokenizerSpec::from_gguf(f)?)
    }

    pub fn from_spec(spec: GgufTokenizerSpec) -> Result<Self> {
        check_model(&spec.model)?;
        let (pre_tokenizer, ignore_merges) = pre_tokenizer_for(spec.pre.as_deref())?;
        let n = spec.tokens.len();
        if n == 0 {
            return Err(Error::Tokenizer("empty vocabulary".into()));
        }
        let text = |v: &[String]| v.iter().map(String::len).sum::<usize>();
        check_size("tokenizer.ggml.tokens", n, text(&spec.tokens), MAX_VOCAB, MAX_TOKEN_TEXT)?;
        check_size("tokenizer.ggml.merges", spec.merges.len(), text(&spec.merges), MAX_MERGES, MAX_MERGE_TEXT)?;
        if !spec.token_types.is_empty() && spec.token_types.len() != n {
            return Err(Error::Tokenizer(format!("token_type has {} entries, tokens has {n}", spec.token_types.len())));
        }
        for (name, id) in [("bos", spec.bos), ("eos", spec.eos), ("eot", spec.eot)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(Error::Tokenizer(format!("{name} token id {id} >= vocab size {n}")));
            }
        }

        // Control tokens are special (matched in raw text by `encode`, skipped by
        // `encode_plain`); user-defined ones are ordinary added tokens, always matched.
        let ty = |i: usize| spec.token_types.get(i).copied().unwrap_or(1);
        let added = |want: i32, special: bool| -> Vec<AddedToken> {
            (0..n).filter(|&i| ty(i) == want).map(|i| AddedToken::from(spec.tokens[i].clone(), special)).collect()
        };
        let (control, user) = (added(TOKEN_TYPE_CONTROL, true), added(TOKEN_TYPE_USER_DEFINED, false));
        let added_text = control.iter().chain(&user).map(|t| t.content.len()).sum();
        check_size(
            "control and user-defined tokens",
            control.len() + user.len(),
            added_text,
            MAX_ADDED_TOKENS,
            MAX_ADDED_TEXT,
        )?;

        // Later duplicates win, as in llama.cpp and transformers' GGUF converter.
        let mut vocab = Vocab::with_capacity(n);
        for (i, t) in spec.tokens.iter().enumerate() {
            vocab.insert(t.clone(), i as u32);
        }
        let merges = spec
            .merges
            .iter()
            .map(|m| {
                // Split at the first space after position 0, like llama.cpp: a token never
                // contains a space in byte-level BPE, but be lenient about a leading one.
                let pos = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(i, _)| i);
                match pos {
                    Some(p) => Ok((m[..p].to_owned(), m[p + 1..].to_owned())),
                    None => Err(Error::Tokenizer(format!("malformed merge {} (no space)", echo(m)))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe =
            BpeBuilder::new().vocab_and_merges(vocab, merges).ignore_merges(ignore_merges).build().map_err(tk_err)?;

        let mut inner = tokenizers::Tokenizer::new(ModelWrapper::BPE(bpe));
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        inner.add_special_tokens(&control);
        inner.add_tokens(&user);

        Ok(Self {
            plain_added: plain_added(&inner),
            inner,
            tokens: spec.tokens.into_iter().map(Some).collect(),
            bos: spec.bos,
            eos: spec.eos,
            eot: spec.eot,
            add_bos: spec.add_bos.unwrap_or(false),
            chat_template: spec.chat_template,
        })
    }

    /// An HF `tokenizer.json` with a byte-level BPE model. It carries no BOS/EOS ids, so those
    /// are looked up by the usual names.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(tk_err)?;
        if !matches!(inner.get_model(), ModelWrapper::BPE(_)) {
            return Err(Error::Tokenizer("tokenizer.json: model is not BPE".into()));
        }
        // Our decode assumes byte-level tokens.
        if !matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return Err(Error::Tokenizer("tokenizer.json: decoder is not ByteLevel".into()));
        }
        let vocab = inner.get_vocab(true);
        let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
        // Ids are dense in real files; a stray huge id must not make us allocate gigabytes.
        if size > 2 * vocab.len() + 1024 {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json: id {} for a vocab of {} tokens",
                size - 1,
                vocab.len()
            )));
        }
        let mut tokens = vec![None; size];
        for (t, id) in vocab {
            tokens[id as usize] = Some(t);
        }
        let find = |names: &[&str]| names.iter().find_map(|t| inner.token_to_id(t));
        let bos = find(&["<|begin_of_text|>", "<s>"]);
        let eos = find(&["<|end_of_text|>", "</s>", "<|endoftext|>"]);
        let eot = find(&["<|eot_id|>", "<|im_end|>"]);
        Ok(Self { plain_added: plain_added(&inner), inner, tokens, bos, eos, eot, add_bos: false, chat_template: None })
    }

    /// Like HF `encode(text, add_special_tokens=False)`: special-token text such as
    /// "<|eot_id|>" becomes the special token. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(tk_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Like [`encode`](Self::encode) but special-token text is tokenized as ordinary text, so
    /// user-typed "<|eot_id|>" cannot forge a control token (HF `split_special_tokens=True`).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        // The same steps as HF's encode, with the special-token matcher switched off.
        let mut pts = self.plain_added.extract_and_normalize(self.inner.get_normalizer(), text);
        if let Some(pt) = self.inner.get_pre_tokenizer() {
            pt.pre_tokenize(&mut pts).map_err(tk_err)?;
        }
        let model = self.inner.get_model();
        pts.tokenize(|s| model.tokenize(s.get())).map_err(tk_err)?;
        let enc = pts.into_encoding(None, 0, OffsetType::None).map_err(tk_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids → text, special tokens included. Invalid UTF-8 (a partial character) becomes
    /// U+FFFD, as in HF.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            self.push_token_bytes(id, &mut bytes)?;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bytes token `id` stands for (what it adds to the decoded text).
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.push_token_bytes(id, &mut out)?;
        Ok(out)
    }

    /// Append the bytes token `id` stands for. Mirrors HF's ByteLevel decoder: a token whose
    /// chars are all byte-level chars is mapped back to bytes, any other token (an added
    /// token with, say, a space in it) is taken as its UTF-8 text.
    fn push_token_bytes(&self, id: u32, out: &mut Vec<u8>) -> Result<()> {
        let tok = self
            .tokens
            .get(id as usize)
            .and_then(|t| t.as_deref())
            .ok_or(Error::TokenOutOfVocab { id, vocab: self.tokens.len() })?;
        let start = out.len();
        for c in tok.chars() {
            match byte_of_char(c) {
                Some(b) => out.push(b),
                None => {
                    out.truncate(start);
                    out.extend_from_slice(tok.as_bytes());
                    break;
                }
            }
        }
        Ok(())
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokens.get(id as usize)?.clone()
    }

    /// Number of ids (max id + 1).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// `tokenizer.ggml.add_bos_token` (false when absent or from tokenizer.json).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation: EOS, EOT and the chat turn/document end tokens the vocab has.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Vec::new();
        let named = STOP_TOKENS.iter().filter_map(|t| self.token_to_id(t));
        for id in [self.eos, self.eot].into_iter().flatten().chain(named) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Special (control) tokens by id, for callers that want to hide them.
    pub fn is_special(&self, id: u32) -> bool {
        self.id_to_token(id).is_some_and(|t| self.inner.get_added_vocabulary().is_special_token(&t))
    }
}

/// Incremental decoding for streaming output. Byte-level tokens can end in the middle of a
/// UTF-8 character; those bytes are held back until the character is complete, so the
/// concatenated pushes plus [`flush`](Self::flush) equal [`Tokenizer::decode`] of all ids.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        tok.push_token_bytes(id, &mut self.pending)?;
        let split = self.pending.len() - incomplete_tail_len(&self.pending);
        let out = String::from_utf8_lossy(&self.pending[..split]).into_owned();
        self.pending.drain(..split);
        Ok(out)
    }

    /// Whatever is left (an unfinished character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Length of a trailing byte sequence that is a valid but unfinished UTF-8 character.
/// Invalid bytes before it are not our concern: lossy conversion replaces them exactly as it
/// would in the whole text.
fn incomplete_tail_len(b: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        match std::str::from_utf8(&b[pos..]) {
            Ok(_) => return 0,
            Err(e) => match e.error_len() {
                None => return b.len() - pos - e.valid_up_to(),
                Some(n) => pos += e.valid_up_to() + n,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy byte-level vocab: all 256 byte chars, a few merges, Llama-3-style control tokens.
    fn toy_spec(pre: &str) -> GgufTokenizerSpec {
        let mut tokens: Vec<String> = (0u8..=255).map(|b| byte_char(b).to_string()).collect();
        let mut merges = Vec::new();
        for (a, b) in [("H", "e"), ("He", "l"), ("Hel", "l"), ("Hell", "o"), ("Ġ", "w")] {
            merges.push(format!("{a} {b}"));
            tokens.push(format!("{a}{b}"));
        }
        let mut token_types = vec![1; tokens.len()];
        for t in ["<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"] {
            tokens.push(t.into());
            token_types.push(TOKEN_TYPE_CONTROL);
        }
        GgufTokenizerSpec {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            bos: Some(261),
            eos: Some(263),
            tokens,
            merges,
            token_types,
            ..Default::default()
        }
    }

    fn byte_char(b: u8) -> char {
        (0..0x200u32).filter_map(char::from_u32).find(|&c| byte_of_char(c) == Some(b)).unwrap_or('?')
    }

    #[test]
    fn byte_map_is_a_bijection() {
        let mut seen = [false; 256];
        for c in (0..0x200u32).filter_map(char::from_u32) {
            if let Some(b) = byte_of_char(c) {
                assert!(!seen[b as usize], "byte {b} mapped twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
    }

    #[test]
    fn encode_decode_toy() {
        let tok = Tokenizer::from_spec(toy_spec("llama-bpe")).unwrap();
        let ids = tok.encode("Hello world").unwrap();
        assert_eq!(ids[0], tok.token_to_id("Hello").unwrap());
        assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
    }

    #[test]
    fn plain_vs_special() {
        let tok = Tokenizer::from_spec(toy_spec("llama-bpe")).unwrap();
        let eot = tok.token_to_id("<|eot_id|>").unwrap();
        assert_eq!(tok.encode("Hi<|eot_id|>").unwrap().last(), Some(&eot));
        let plain = tok.encode_plain("Hi<|eot_id|>").unwrap();
        assert!(!plain.contains(&eot));
        assert_eq!(tok.decode(&plain).unwrap(), "Hi<|eot_id|>");
        assert!(tok.is_special(eot));
        assert_eq!(tok.stop_ids(), vec![263, eot]);
    }

    #[test]
    fn out_of_vocab_decode() {
        let tok = Tokenizer::from_spec(toy_spec("smollm")).unwrap();
        let n = tok.vocab_size() as u32;
        match tok.decode(&[1, n]) {
            Err(Error::TokenOutOfVocab { id, vocab }) => {
                assert_eq!((id, vocab), (n, n as usize))
            }
            other => panic!("expected TokenOutOfVocab, got {other:?}"),
        }
        assert!(matches!(tok.stream_decoder().push(&tok, n + 5), Err(Error::TokenOutOfVocab { .. })));
    }

    #[test]
    fn unknown_pre_and_model() {
        let err = Tokenizer::from_spec(toy_spec("qwen2-fancy")).unwrap_err();
        assert!(matches!(&err, Error::Tokenizer(m) if m.contains("qwen2-fancy")), "{err}");
        let mut spec = toy_spec("default");
        spec.model = "llama".into();
        let err = Tokenizer::from_spec(spec).unwrap_err();
        assert!(matches!(&err, Error::Tokenizer(m) if m.contains("'llama'")), "{err}");
    }

    #[test]
    fn bad_spec_is_an_error() {
        let mut spec = toy_spec("default");
        spec.merges.push("nospace".into());
        assert!(Tokenizer::from_spec(spec).is_err());
        let mut spec = toy_spec("default");
        spec.merges.push("x yz".into()); // "xyz" not in vocab
        assert!(Tokenizer::from_spec(spec).is_err());
        let mut spec = toy_spec("default");
        spec.eos = Some(99_999);
        assert!(Tokenizer::from_spec(spec).is_err());
    }

    #[test]
    fn construction_bounds() {
        let mut spec = toy_spec("default");
        let extra = MAX_ADDED_TOKENS + 1;
        spec.tokens.extend((0..extra).map(|i| format!("<|c{i}|>")));
        spec.token_types.extend(std::iter::repeat_n(TOKEN_TYPE_CONTROL, extra));
        let e = Tokenizer::from_spec(spec).unwrap_err();
        assert!(e.to_string().contains("control and user-defined tokens: 32772 entries"), "{e}");
        let mut spec = toy_spec("default");
        spec.merges = vec!["a b".into(); MAX_MERGES + 1];
        let e = Tokenizer::from_spec(spec).unwrap_err();
        assert!(e.to_string().contains("tokenizer.ggml.merges: 1048577 entries"), "{e}");
        let mut spec = toy_spec("default");
        spec.tokens.push("x".repeat(MAX_TOKEN_TEXT));
        spec.token_types.clear();
        let e = Tokenizer::from_spec(spec).unwrap_err();
        assert!(e.to_string().contains("bytes of text, more than the 16 MiB"), "{e}");
    }

    #[test]
    fn stream_holds_partial_chars() {
        let tok = Tokenizer::from_spec(toy_spec("default")).unwrap();
        let text = "a€😀b";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), 1 + 3 + 4 + 1, "toy vocab has no multi-byte merges");
        let mut dec = tok.stream_decoder();
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(dec.push(&tok, id).unwrap());
        }
        pieces.push(dec.flush());
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
        assert_eq!(pieces[3], "€");
        // A broken sequence is replaced exactly as decode() replaces it.
        let bad = [ids[1], ids[0], ids[4], ids[5]];
        let mut dec = tok.stream_decoder();
        let mut s = String::new();
        for &id in &bad {
            s += &dec.push(&tok, id).unwrap();
        }
        s += &dec.flush();
        assert_eq!(s, tok.decode(&bad).unwrap());
    }
}
