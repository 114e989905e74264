//! `llama-webgpu quantize`: streams a GGUF file tensor by tensor into another file type
//! (memory: one tensor's output plus a bounded input chunk), each tensor's type chosen like
//! llama.cpp's `llama_tensor_get_type` (see [`tensor_types`]). The formats themselves (decode,
//! encoders, the file-type table) live in [`crate::quant`].

use crate::error::{Error, Result};
use crate::gguf::{ByteSource, GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use crate::graph::weights::{OUTPUT, TOKEN_EMBD};
pub use crate::quant::FileType;
use crate::quant::{self, Role};

/// ggml's number of dimensions (trailing 1s do not count).
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// Whether llama.cpp would quantize this tensor: a `*weight` of ≥ 2 dimensions that is not a
/// norm (nor a few small special tensors).
pub fn is_quantizable(t: &TensorInfo) -> bool {
    t.name.ends_with("weight")
        && n_dims(&t.dims) >= 2
        && !t.name.contains("_norm.weight")
        && !["ffn_gate_inp.weight", "pos_embd", "token_types"].iter().any(|s| t.name.contains(s))
}

/// Target type of every tensor of `file` (in file order): [`wanted_types`] after llama.cpp's
/// fallback for rows its blocks do not divide ([`quant::fit`]).
pub fn tensor_types(file: &GgufFile, ftype: FileType) -> Vec<GgmlType> {
    // A type read from the file already fits its rows (the reader checks), so `fit` only
    // changes the types chosen here.
    wanted_types(file, ftype).into_iter().zip(&file.tensors).map(|(ty, t)| quant::fit(ty, t.cols())).collect()
}

/// The types llama.cpp's rules want, before the fallback: tensors that are not quantizable
/// (1-D: norms, `rope_freqs`) keep their type and bytes; 2-D weights get
/// [`quant::wanted_type`] of their role (the i-th of n `attn_v` / `ffn_down` in file order).
/// Where this differs from [`tensor_types`], the fallback applied (what `quantize` reports).
pub fn wanted_types(file: &GgufFile, ftype: FileType) -> Vec<GgmlType> {
    let has_output = file.tensor(OUTPUT).is_some();
    let count = |s: &str| file.tensors.iter().filter(|t| t.name.contains(s)).count();
    let (n_attn_v, n_ffn_down) = (count("attn_v.weight"), count("ffn_down"));
    let (mut i_attn_v, mut i_ffn_down) = (0, 0);
    // query heads per KV head (llama.cpp's n_gqa), which some mixes' attn_v rules read
    let gqa = crate::gguf::LlamaConfig::from_gguf(file).map_or(1, |c| (c.n_head / c.n_head_kv.max(1)) as u64);
    file.tensors
        .iter()
        .map(|t| {
            if !is_quantizable(t) {
                return t.ty;
            }
            let name = t.name.as_str();
            let role = if name == OUTPUT || (!has_output && name == TOKEN_EMBD) {
                Role::Output
            } else if name.contains("attn_v.weight") {
                i_attn_v += 1;
                Role::AttnV { i: i_attn_v - 1, n: n_attn_v, gqa }
            } else if name.contains("ffn_down") {
                i_ffn_down += 1;
                Role::FfnDown { i: i_ffn_down - 1, n: n_ffn_down }
            } else if name.contains("attn_output.weight") {
                Role::AttnOutput
            } else if name.contains("attn_qkv.weight") {
                Role::AttnQkv
            } else {
                Role::Other
            };
            quant::wanted_type(ftype, role, t.cols())
        })
        .collect()
}

/// Input bytes converted per step (a whole number of rows, at least one row).
const CHUNK_BYTES: u64 = 16 << 20;

/// Quantizes the GGUF `file` (read from `src`) to `ftype`, writing a GGUF v3 file to `out`.
///
/// Metadata is copied in order, with `general.file_type` set to `ftype.id()` and
/// `general.quantization_version` = 2 (both u32; added if missing). Tensor types come from
/// [`tensor_types`]; a tensor already of its target type is copied byte for byte, any other
/// is dequantized (any type [`quant::dequantize`] reads: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) and requantized, streaming: one tensor's output plus ≤16 MiB
/// of input at a time. `progress(done, total)` reports tensor-data bytes of the input.
pub fn quantize_file(
    src: &dyn ByteSource,
    file: &GgufFile,
    ftype: FileType,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    let types = tensor_types(file, ftype);
    let mut metadata = file.metadata.clone();
    set_u32(&mut metadata, "general.file_type", ftype.id());
    set_u32(&mut metadata, "general.quantization_version", 2);
    let plan = file.tensors.iter().zip(&types).map(|(t, &ty)| (t.name.clone(), t.dims.clone(), ty)).collect();
    let mut w = GgufWriter::new(metadata, plan, file.alignment)?;
    w.write_header(out)?;

    let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
    let mut done = 0u64;
    progress(0, total);
    for (t, &ty) in file.tensors.iter().zip(&types) {
        let data = convert_tensor(src, t, ty, |n| progress(done + n, total))?;
        w.write_tensor_data(out, &data)?;
        done += t.n_bytes;
        progress(done, total);
    }
    w.finish()
}

fn set_u32(metadata: &mut Vec<(String, Value)>, key: &str, v: u32) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, old)) => *old = Value::U32(v),
        None => metadata.push((key.to_owned(), Value::U32(v))),
    }
}

fn usize_of(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} too large")))
}

/// The bytes of tensor `t` converted to `ty`; `progress(n)` with input bytes done.
fn convert_tensor(
    src: &dyn ByteSource,
    t: &TensorInfo,
    ty: GgmlType,
    mut progress: impl FnMut(u64),
) -> Result<Vec<u8>> {
    if ty == t.ty {
        let mut buf = vec![0u8; usize_of(t.n_bytes, "tensor size")?];
        src.read_at(t.offset, &mut buf)?;
        return Ok(buf);
    }
    let (rows, cols) = (t.rows(), t.cols());
    let out_bytes = ty.bytes_for(t.n_elements()).filter(|_| cols % ty.block_size() == 0).ok_or_else(|| {
        Error::InvalidArgument(format!("tensor '{}': {cols} columns do not fit {}", t.name, ty.name()))
    })?;
    let row_bytes = t.row_bytes();
    let mut out = Vec::with_capacity(usize_of(out_bytes, "tensor size")?);
    if rows == 0 || row_bytes == 0 {
        return Ok(out);
    }
    let rows_per_chunk = (CHUNK_BYTES / row_bytes).clamp(1, rows);
    let mut buf = Vec::new();
    let mut r = 0u64;
    while r < rows {
        let n = rows_per_chunk.min(rows - r);
        buf.resize(usize_of(n * row_bytes, "chunk size")?, 0);
        src.read_at(t.offset + r * row_bytes, &mut buf)?;
        let x = quant::dequantize(t.ty, &buf).map_err(|e| match e {
            Error::UnsupportedType { ty, name, .. } => Error::UnsupportedType { tensor: t.name.clone(), ty, name },
            e => e,
        })?;
        out.extend(quantize_rows(ty, &x, usize_of(cols, "row length")?)?);
        r += n;
        progress(r * row_bytes);
    }
    Ok(out)
}

/// [`quant::quantize`] over whole rows of `cols` values, split across threads when available.
fn quantize_rows(ty: GgmlType, x: &[f32], cols: usize) -> Result<Vec<u8>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
        let rows = x.len() / cols.max(1);
        if threads > 1 && rows > 1 && x.len() >= 1 << 16 {
            let per = rows.div_ceil(threads) * cols;
            let parts: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
                let hs: Vec<_> = x.chunks(per).map(|c| s.spawn(move || quant::quantize(ty, c))).collect();
                hs.into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| Err(Error::InvalidArgument("quantizer thread panicked".into())))
                    })
                    .collect()
            });
            let mut out = Vec::new();
            for p in parts {
                out.extend(p?);
            }
            return Ok(out);
        }
    }
    let _ = cols;
    quant::quantize(ty, x)
}
