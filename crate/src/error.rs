//! One typed error for the whole engine. Every failure that input can cause ends up here with a
//! message that names the problem; nothing input-derived is `unwrap`ped (a panic kills wasm).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(String),

    #[error("not a GGUF file: bad magic {0:?} (expected \"GGUF\")")]
    BadMagic([u8; 4]),

    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),

    #[error("truncated GGUF: needed {needed} bytes at offset {offset}, file has {len}")]
    Truncated { offset: u64, needed: u64, len: u64 },

    #[error("corrupt GGUF: {0}")]
    Corrupt(String),

    #[error("unsupported tensor type {ty} ({name}) for tensor '{tensor}'")]
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

    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),

    #[error("device limits too small: {0}")]
    LimitsTooSmall(String),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

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
