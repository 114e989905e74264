//! GGUF reader (v2, v3): header, metadata, tensor infos, data offsets.
//!
//! Reads through a [`ByteSource`] ("read N bytes at offset"), so the header can come from a
//! file, an HTTP range request or a `Blob` slice; tensor data is never read here. Every count
//! and length in the header is checked against the bytes that remain before anything is
//! allocated, so a hostile header cannot make us allocate 2^60 entries.

use crate::error::{Error, Result};

/// Random-access bytes: a local file, an in-memory buffer, later HTTP ranges.
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`; `Error::Truncated` if short.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// A local file (native only).
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        todo!()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        todo!()
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        todo!()
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// ggml tensor types (numbering from ggml.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
}

impl GgmlType {
    /// `Error::UnsupportedType` for ids we do not know (IQ* etc.).
    pub fn from_id(id: u32, tensor: &str) -> Result<Self> {
        todo!()
    }
    pub fn id(self) -> u32 {
        todo!()
    }
    pub fn name(self) -> &'static str {
        todo!()
    }
    /// Elements per block (1 for F32/F16/BF16, 32 for Q4_0.., 256 for K-quants).
    pub fn block_size(self) -> u64 {
        todo!()
    }
    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        todo!()
    }
}

/// A metadata value. Arrays may nest.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Any integer type that fits in u64 (negative → None).
    pub fn as_u64(&self) -> Option<u64> {
        todo!()
    }
    /// Any integer that fits i64.
    pub fn as_i64(&self) -> Option<i64> {
        todo!()
    }
    /// F32/F64 (and integers) as f64.
    pub fn as_f64(&self) -> Option<f64> {
        todo!()
    }
    pub fn as_str(&self) -> Option<&str> {
        todo!()
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        todo!()
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first: a weight used as `y = W x` has `dims = [in, out]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Size of the data in bytes (from dims and type).
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Length of a row (dims[0]).
    pub fn cols(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Number of rows (product of dims[1..]).
    pub fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.cols() / self.ty.block_size() * self.ty.type_size()
    }
}

#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset where tensor data begins.
    pub data_offset: u64,
    pub file_len: u64,
}

impl GgufFile {
    /// Parse the header. Reads only the header bytes; checks that every tensor lies inside
    /// the file (`Error::Truncated` otherwise) and that tensor sizes match their types.
    pub fn read(src: &dyn ByteSource) -> Result<Self> {
        todo!()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        todo!()
    }
    /// `Error::MissingKey` / `Error::WrongType`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        todo!()
    }
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        todo!()
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        todo!()
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        todo!()
    }
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        todo!()
    }
    /// Array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        todo!()
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        todo!()
    }
}

/// Llama hyperparameters from the `{arch}.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture` (we accept "llama").
    pub architecture: String,
    pub name: Option<String>,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// `rope_freqs.weight` present (Llama 3.1/3.2 scaling factors).
    pub has_rope_freqs: bool,
    /// No `output.weight`: the output layer is `token_embd`.
    pub tied_embeddings: bool,
}

impl LlamaConfig {
    /// Reads `general.architecture`, `{arch}.block_count`, `.embedding_length`,
    /// `.feed_forward_length`, `.attention.head_count`, `.attention.head_count_kv` (default =
    /// head_count), `.rope.dimension_count` (default embd/heads), `.context_length`,
    /// `.attention.layer_norm_rms_epsilon`, `.rope.freq_base` (default 10000); vocab from
    /// `token_embd.weight` dims[1]. Validates divisibility and required tensors' shapes.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        todo!()
    }
}
