//! GGUF reader (v2, v3): header, metadata, tensor infos, data offsets.
//!
//! Reads through a [`ByteSource`] ("read N bytes at offset"), so the header can come from a
//! file, an HTTP range request or a `Blob` slice; tensor data is never read here. Every count
//! and length in the header is checked against the bytes that remain before anything is
//! allocated, so a hostile header cannot make us allocate 2^60 entries.

mod reader;
#[cfg(test)]
mod tests;
mod value;
mod writer;

pub mod split;
pub use value::{Array, Strings, Value};
pub use writer::GgufWriter;

use crate::error::{echo, Error, Result};

/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most tensors a header may list. A Llama uses 9 per layer plus 3 (1,138 for the 126-layer
/// 405B), so this is far above any real model and keeps hostile headers cheap.
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata entries a header may have (real files have ~30).
pub const MAX_METADATA_ENTRIES: u64 = 1 << 16;
/// Host memory the parsed header (metadata, tensor infos) may take. Llama 3's 128K-token
/// vocabulary and 280K merges take ~8 MiB; a 2^27-element u8 array (128 MiB) still fits,
/// twice that does not. It also bounds the header prefix the browser reads (< 256 MiB).
pub const MAX_HEADER_BYTES: u64 = 160 << 20;
/// Most layers we accept: Llama 3.1 405B has 126.
pub const MAX_LAYERS: u64 = 1024;

/// Random-access bytes: a local file, an in-memory buffer, later HTTP ranges.
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`; `Error::Truncated` if short.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Random-access bytes that may arrive later: HTTP ranges, `Blob` slices, OPFS chunks in a
/// browser (JS promises). Weight uploads read through this; every [`ByteSource`] is one.
#[allow(async_fn_in_trait)] // used with concrete types only; wasm futures are not Send anyway
pub trait AsyncByteSource {
    fn size(&self) -> u64;
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`.
    async fn fetch(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

impl<T: ByteSource + ?Sized> AsyncByteSource for T {
    fn size(&self) -> u64 {
        self.len()
    }
    async fn fetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_at(offset, buf)
    }
}

/// The first bytes of a larger file, for parsing a header before the rest has arrived.
/// Reads past the prefix fail with [`Error::Truncated`] whose range still lies inside the
/// full file; [`needs_more`] tells that apart from a file that is really too short.
pub struct PrefixSource<'a> {
    pub prefix: &'a [u8],
    pub total: u64,
}

impl ByteSource for PrefixSource<'_> {
    fn len(&self) -> u64 {
        self.total
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.total)?;
        check_range(offset, buf.len(), self.prefix.len() as u64)?;
        let o = offset as usize;
        buf.copy_from_slice(&self.prefix[o..o + buf.len()]);
        Ok(())
    }
}

/// True when `err`, from parsing a [`PrefixSource`] of `prefix_len` bytes out of `total`,
/// only means the prefix was too short (read more and parse again).
pub fn needs_more(err: &Error, prefix_len: u64, total: u64) -> bool {
    matches!(err, Error::Truncated { offset, needed, .. }
        if prefix_len < total && offset.saturating_add(*needed) <= total && offset.saturating_add(*needed) > prefix_len)
}

/// `Truncated` unless `offset..offset + n` lies inside `len`.
pub(crate) fn check_range(offset: u64, n: usize, len: u64) -> Result<()> {
    let needed = n as u64;
    match offset.checked_add(needed) {
        Some(end) if end <= len => Ok(()),
        _ => Err(Error::Truncated { offset, needed, len }),
    }
}

/// A local file (native only).
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    /// Opens a regular file. A FIFO, socket, device or directory is an `Error::Io` before it
    /// is opened (opening a FIFO for reading blocks until someone writes to it).
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let (file, len) = open_regular_file(path.as_ref(), "a model")?;
        Ok(Self { file, len })
    }
}

/// Opens `path` for reading if it is a regular file, and says what it is otherwise (a FIFO
/// would block the open until a writer comes; a directory opens on Linux and fails later).
/// `what` names the input in the error: "a model must be a regular file".
#[cfg(not(target_arch = "wasm32"))]
pub fn open_regular_file(path: &std::path::Path, what: &str) -> Result<(std::fs::File, u64)> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let not_regular = |m: &std::fs::Metadata| {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "a directory"
        } else if is_fifo(&ft) {
            "a FIFO (named pipe)"
        } else {
            "not a regular file"
        };
        Error::Io(format!("{}: {kind}; {what} must be a regular file", path.display()))
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(&meta)); // replaced between the check and the open
    }
    Ok((file, meta.len()))
}

#[cfg(all(unix, not(target_arch = "wasm32")))]
fn is_fifo(ft: &std::fs::FileType) -> bool {
    std::os::unix::fs::FileTypeExt::is_fifo(ft)
}
#[cfg(all(not(unix), not(target_arch = "wasm32")))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset)?;
        }
        #[cfg(not(unix))]
        {
            // `&File` is Read + Seek; not safe against concurrent readers of the same handle.
            use std::io::{Read, Seek, SeekFrom};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf)?;
        }
        Ok(())
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), ByteSource::len(self))?;
        // In range after the check above, and offset fits usize because len does.
        let start = offset as usize;
        let src = self.get(start..start + buf.len()).ok_or(Error::Truncated {
            offset,
            needed: buf.len() as u64,
            len: ByteSource::len(self),
        })?;
        buf.copy_from_slice(src);
        Ok(())
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

/// So that a `&[u8]` (unsized target) can be passed as `&dyn ByteSource` via `&slice`.
impl<T: ByteSource + ?Sized> ByteSource for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
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
    IQ4NL,
    IQ4XS,
    BF16,
}

impl GgmlType {
    pub const ALL: [GgmlType; 17] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
        Self::IQ4NL,
        Self::IQ4XS,
        Self::BF16,
    ];

    /// `Error::UnsupportedType` for ids we do not know (IQ* etc.).
    pub fn from_id(id: u32, tensor: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id).ok_or_else(|| Error::UnsupportedType {
            tensor: tensor.to_owned(),
            ty: id,
            name: unsupported_name(id).to_owned(),
        })
    }
    pub fn id(self) -> u32 {
        self.info().0
    }
    pub fn name(self) -> &'static str {
        self.info().1
    }
    /// Elements per block (1 for F32/F16/BF16, 32 for Q4_0.., 256 for K-quants).
    pub fn block_size(self) -> u64 {
        self.info().2
    }
    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.info().3
    }

    /// (id, name, block size, type size), from the type's descriptor.
    fn info(self) -> (u32, &'static str, u64, u64) {
        let f = crate::quant::format(self);
        (f.id, f.name, f.block, f.bytes)
    }

    /// Bytes of `n_elements` elements; `None` if not a whole number of blocks or on overflow.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

/// ggml names of the type ids we do not support, for error messages.
fn unsupported_name(id: u32) -> &'static str {
    match id {
        4 => "Q4_2",
        5 => "Q4_3",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        21 => "IQ3_S",
        22 => "IQ2_S",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => "unknown",
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

#[derive(Debug, Clone, Default)]
pub struct GgufFile {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset where tensor data begins.
    pub data_offset: u64,
    pub file_len: u64,
    /// Tensor name → index in `tensors` (built by the reader; lookups fall back to a scan when
    /// it is empty or stale), so finding a Llama's tensors is not quadratic in their count.
    pub tensor_index: std::collections::HashMap<String, usize>,
}

impl GgufFile {
    /// Parse the header. Reads only the header bytes; checks that every tensor lies inside
    /// the file (`Error::Truncated` otherwise) and that tensor sizes match their types.
    pub fn read(src: &dyn ByteSource) -> Result<Self> {
        reader::read(src)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn typed<'a, T>(&'a self, key: &str, expected: &'static str, f: impl FnOnce(&'a Value) -> Option<T>) -> Result<T> {
        let v = self.get(key).ok_or_else(|| Error::MissingKey(key.to_owned()))?;
        f(v).ok_or_else(|| Error::WrongType { key: key.to_owned(), expected })
    }
    /// `Error::MissingKey` / `Error::WrongType`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "unsigned integer", Value::as_u64)
    }
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, "integer in u32 range", |v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "number", |v| v.as_f64().map(|x| x as f32))
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "string", Value::as_str)
    }
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.typed(key, "array", Value::as_array)
    }
    /// Array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<&Strings> {
        self.typed(key, "array of strings", |v| v.as_array()?.as_strings())
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        match self.tensor_index.get(name).and_then(|&i| self.tensors.get(i)) {
            Some(t) if t.name == name => Some(t),
            _ => self.tensors.iter().find(|t| t.name == name),
        }
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

/// `Ok(None)` for a missing key, errors otherwise propagate.
fn optional<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::MissingKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

use crate::graph::weights::{OUTPUT, ROPE_FREQS, TOKEN_EMBD};

impl LlamaConfig {
    /// Reads `general.architecture`, `{arch}.block_count`, `.embedding_length`,
    /// `.feed_forward_length`, `.attention.head_count`, `.attention.head_count_kv` (default =
    /// head_count), `.rope.dimension_count` (default embd/heads), `.context_length`,
    /// `.attention.layer_norm_rms_epsilon`, `.rope.freq_base` (default 10000); vocab from
    /// `token_embd.weight` dims[1]. Validates divisibility and required tensors' shapes.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = f.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::UnsupportedModel(format!("architecture {} (only 'llama' is supported)", echo(arch))));
        }
        let key = |k: &str| format!("{arch}.{k}");
        // Required nonzero count.
        let count = |k: &str| -> Result<u64> {
            let k = key(k);
            match f.get_u32(&k)? {
                0 => Err(Error::Corrupt(format!("'{k}' is 0"))),
                v => Ok(v.into()),
            }
        };
        let n_layer = count("block_count")?;
        if n_layer > MAX_LAYERS {
            return Err(Error::UnsupportedModel(format!(
                "{n_layer} layers (block_count); at most {MAX_LAYERS} are supported"
            )));
        }
        let n_embd = count("embedding_length")?;
        let n_ff = count("feed_forward_length")?;
        let n_head = count("attention.head_count")?;
        let n_head_kv = match optional(count("attention.head_count_kv"))? {
            Some(v) => v,
            None => n_head,
        };
        let head_dim = match optional(count("rope.dimension_count"))? {
            Some(v) => v,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(Error::Corrupt(format!(
                    "embedding_length {n_embd} is not divisible by head_count {n_head}"
                )))
            }
        };
        if n_head % n_head_kv != 0 {
            return Err(Error::Corrupt(format!("head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")));
        }
        if head_dim % 2 != 0 {
            return Err(Error::Corrupt(format!("head dimension {head_dim} is odd (RoPE needs pairs)")));
        }
        let context_length = optional(f.get_u32(&key("context_length")))?.unwrap_or(2048);
        let rms_eps = optional(f.get_f32(&key("attention.layer_norm_rms_epsilon")))?.unwrap_or(1e-5);
        let rope_base = optional(f.get_f32(&key("rope.freq_base")))?.unwrap_or(10000.0);

        // All values are u32, so these products fit u64.
        let q_dim = n_head * head_dim;
        let kv_dim = n_head_kv * head_dim;

        let embd = f.tensor(TOKEN_EMBD).ok_or_else(|| Error::MissingTensor(TOKEN_EMBD.into()))?;
        let n_vocab = match embd.dims.as_slice() {
            [e, v] if *e == n_embd && *v > 0 => *v,
            d => {
                return Err(Error::BadShape {
                    name: embd.name.clone(),
                    got: d.to_vec(),
                    expected: vec![n_embd, d.get(1).copied().unwrap_or(0)],
                })
            }
        };
        let tied_embeddings = f.tensor(OUTPUT).is_none();
        let has_rope_freqs = f.tensor(ROPE_FREQS).is_some();
        let dims = crate::graph::SchemaDims {
            n_layer: usize::try_from(n_layer)
                .map_err(|_| Error::UnsupportedModel(format!("block_count {n_layer} too large")))?,
            n_embd,
            n_ff,
            q_dim,
            kv_dim,
            head_dim,
            n_vocab,
            tied: tied_embeddings,
            rope_freqs: has_rope_freqs,
        };
        crate::graph::weights::check(f, &dims)?;

        let us = |v: u64, what: &str| {
            usize::try_from(v).map_err(|_| Error::UnsupportedModel(format!("{what} {v} too large")))
        };
        Ok(Self {
            architecture: arch.to_owned(),
            name: f.get("general.name").and_then(Value::as_str).map(str::to_owned),
            n_layer: us(n_layer, "block_count")?,
            n_embd: us(n_embd, "embedding_length")?,
            n_ff: us(n_ff, "feed_forward_length")?,
            n_head: us(n_head, "head_count")?,
            n_head_kv: us(n_head_kv, "head_count_kv")?,
            head_dim: us(head_dim, "head dimension")?,
            n_vocab: us(n_vocab, "vocabulary size")?,
            context_length: us(context_length.into(), "context_length")?,
            rms_eps,
            rope_base,
            has_rope_freqs,
            tied_embeddings,
        })
    }
}
