//! One typed error for the whole engine. Every failure that input can cause ends up here with a
//! message that names the problem; nothing input-derived is `unwrap`ped (a panic kills wasm).

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(String),

    /// An output path we will not write (a directory, a block device, an existing file
    /// without `--force`).
    #[error("will not write {path}: {reason}")]
    RefusedOutput { path: String, reason: String },

    #[error("not a GGUF file: bad magic {0:?} (expected \"GGUF\")")]
    BadMagic([u8; 4]),

    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),

    #[error("truncated GGUF: needed {needed} bytes at offset {offset}, file has {len}")]
    Truncated { offset: u64, needed: u64, len: u64 },

    #[error("corrupt GGUF: {0}")]
    Corrupt(String),

    #[error("unsupported tensor type {ty} ({name}) for tensor {}", echo(.tensor))]
    UnsupportedType { tensor: String, ty: u32, name: String },

    #[error("missing metadata key '{0}'")]
    MissingKey(String),

    #[error("metadata key '{key}' has the wrong type: expected {expected}")]
    WrongType { key: String, expected: &'static str },

    #[error("missing tensor '{0}'")]
    MissingTensor(String),

    #[error("tensor '{name}' has shape {got:?}, expected {expected:?}")]
    BadShape { name: String, got: Vec<u64>, expected: Vec<u64> },

    #[error("unsupported model: {0}")]
    UnsupportedModel(String),

    /// A split GGUF (`-0000K-of-0000N.gguf`) without one of its parts.
    #[error("split model: part {no} of {count} is missing")]
    MissingSplitPart { no: u64, count: u64 },

    /// The same part of a split GGUF given twice.
    #[error("split model: part {no} of {count} is given twice")]
    DuplicateSplitPart { no: u64, count: u64 },

    /// Parts of a split GGUF that do not belong together (different counts, tensors, files).
    #[error("split model: the parts do not match: {0}")]
    SplitMismatch(String),

    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    #[error("token id {id} out of vocabulary (size {vocab})")]
    TokenOutOfVocab { id: u32, vocab: usize },

    #[error("context overflow: {needed} tokens needed, context holds {capacity}")]
    ContextOverflow { needed: usize, capacity: usize },

    #[error("no suitable GPU adapter: {0}")]
    NoAdapter(String),

    #[error("GPU device error: {0}")]
    Device(String),

    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    #[error("out of memory: {0}")]
    OutOfMemory(String),

    #[error("device limits too small: {0}")]
    LimitsTooSmall(String),

    /// The model's chat template ran past a bound (fuel, output size, memory) while rendering.
    #[error("chat template '{name}' {reason}")]
    Template { name: &'static str, reason: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A speculative-decoding draft model whose vocabulary is not the target's.
    #[error("the draft model's vocabulary does not match the target's: {0}")]
    DraftVocabMismatch(String),

    /// A worker holding part of the model (a CPU row shard) failed or stopped answering.
    #[error("a CPU backend worker failed: {0}; load the model again")]
    Worker(String),

    /// Logits came back NaN or infinite: sampling from them would be garbage.
    #[error(
        "numerical error: the logits at position {position} contain {what} (first at vocabulary index {index}); \
         the model's weights are probably corrupt"
    )]
    NonFiniteLogits { position: usize, index: usize, what: &'static str },

    /// A weight tensor holds a NaN or infinite value or block scale.
    #[error(
        "numerical error: tensor '{tensor}' has a {what} {field} in block {block}; the file's weights are corrupt"
    )]
    NonFiniteWeight { tensor: String, block: u64, field: &'static str, what: &'static str },
}

impl Error {
    /// NaN/Inf in weights or logits (`NumericalError` in the JS package).
    pub fn is_numerical(&self) -> bool {
        matches!(self, Error::NonFiniteLogits { .. } | Error::NonFiniteWeight { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// An I/O error that names the file it happened on.
    pub fn io_at(path: impl AsRef<std::path::Path>, e: std::io::Error) -> Self {
        Error::Io(format!("{}: {e}", path.as_ref().display()))
    }

    /// The one wording for "nothing to run" (an empty prompt or token list), wherever it is
    /// caught.
    pub fn empty_input() -> Self {
        Error::InvalidArgument("empty input: at least one token is needed".into())
    }
}

/// Most characters of input an error message repeats.
pub const ECHO_CHARS: usize = 100;

/// Input repeated in an error message: at most [`ECHO_CHARS`] characters, control characters
/// escaped (one line), and its full length said when cut, so a 1 MB string in a file makes a
/// short error line.
pub struct Echo<'a> {
    text: &'a str,
    quoted: bool,
    max: usize,
}

/// `'text'`, or `'first 100 characters…' (N bytes, …)`.
pub fn echo(text: &str) -> Echo<'_> {
    Echo { text, quoted: true, max: ECHO_CHARS }
}

/// A whole message from another library that may repeat input: unquoted, cut at three times
/// [`ECHO_CHARS`] (its own words are longer than a name).
pub fn clip(text: &str) -> Echo<'_> {
    Echo { text, quoted: false, max: 3 * ECHO_CHARS }
}

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let cut = self.text.char_indices().nth(self.max).map(|(i, _)| i);
        let q = if self.quoted { "'" } else { "" };
        f.write_str(q)?;
        for c in self.text[..cut.unwrap_or(self.text.len())].chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        match cut {
            Some(_) => write!(f, "…{q} ({} bytes, first {} characters shown)", self.text.len(), self.max),
            None => f.write_str(q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_short_and_says_the_length() {
        assert_eq!(echo("llama").to_string(), "'llama'");
        assert_eq!(clip("a\nb").to_string(), "a\\nb");
        assert!(clip(&"y".repeat(1000)).to_string().ends_with("y… (1000 bytes, first 300 characters shown)"));
        let long = "é".repeat(1 << 20);
        let e = echo(&long).to_string();
        assert!(e.len() < 400, "{}", e.len());
        assert!(e.starts_with(&format!("'{}…'", "é".repeat(ECHO_CHARS))), "{e}");
        assert!(e.ends_with("(2097152 bytes, first 100 characters shown)"), "{e}");
        let exact = "x".repeat(ECHO_CHARS);
        assert_eq!(echo(&exact).to_string(), format!("'{exact}'"));
    }
}
