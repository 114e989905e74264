//! One home per GGUF block format: its byte layout ([`blocks`]), the CPU decode (the
//! reference every GPU kernel and the CPU backend are tested against; it matches the `gguf`
//! Python package bit for bit), the encoder ([`encode`]), and llama.cpp's file types with
//! their tensor-type rules ([`ftype`]), used by `quantize`, `synth` and `info`.
//!
//! The decode API is plain on purpose (the CPU backend reuses it):
//! `quant::dequantize_row(ty, raw_bytes, out)` fills `out` with the values of whole blocks.

pub mod blocks;
pub mod encode;
pub mod format;
pub mod ftype;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

pub use blocks::{f16_at, scale_min_k4, QK, QK_K};
pub use encode::quantize;
pub use format::{format, Format, GpuFormat, FORMATS};
pub use ftype::{fit, tensor_type, use_more_bits, wanted_type, FileType, Role};

/// Whether [`dequantize_row`] and [`quantize`] know `ty`.
pub fn supported(ty: GgmlType) -> bool {
    format(ty).decode
}

fn unsupported(ty: GgmlType) -> Error {
    Error::UnsupportedType { tensor: "?".into(), ty: ty.id(), name: ty.name().into() }
}

/// Decodes `raw` (whole blocks of `ty`) into `out`, which must hold exactly their values,
/// with ggml's operation order (`dequantize_row_*`).
pub fn dequantize_row(ty: GgmlType, raw: &[u8], out: &mut [f32]) -> Result<()> {
    if !supported(ty) {
        return Err(unsupported(ty));
    }
    let (bs, n) = (ty.type_size() as usize, ty.block_size() as usize);
    if !raw.len().is_multiple_of(bs) || raw.len() / bs * n != out.len() {
        return Err(Error::Corrupt(format!(
            "{} data of {} bytes is not whole blocks of {} values",
            ty.name(),
            raw.len(),
            out.len()
        )));
    }
    match ty {
        // whole rows at once: half's slice conversion uses F16C/NEON where the CPU has them,
        // which the batched CPU matmul (prefill, speculative verification) decodes through
        GgmlType::F16 | GgmlType::BF16 => decode_half_row(ty, raw, out),
        _ => {
            for (b, y) in raw.chunks_exact(bs).zip(out.chunks_exact_mut(n)) {
                blocks::decode_block(ty, b, y);
            }
        }
    }
    Ok(())
}

/// F16 or BF16 `raw` (2 bytes a value, little-endian) into `out`, 256 values at a time
/// through an aligned buffer (GGUF data need not be 2-byte aligned in memory).
fn decode_half_row(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    const CHUNK: usize = 256;
    let mut bits = [0u16; CHUNK];
    for (src, dst) in raw.chunks(2 * CHUNK).zip(out.chunks_mut(CHUNK)) {
        let bits = &mut bits[..dst.len()];
        for (b, c) in bits.iter_mut().zip(src.chunks_exact(2)) {
            *b = u16::from_le_bytes([c[0], c[1]]);
        }
        if ty == GgmlType::F16 {
            bytemuck::cast_slice::<u16, half::f16>(bits).convert_to_f32_slice(dst);
        } else {
            bytemuck::cast_slice::<u16, half::bf16>(bits).convert_to_f32_slice(dst);
        }
    }
}

/// [`dequantize_row`] into a new vector.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Result<Vec<f32>> {
    let bs = ty.type_size() as usize;
    if !supported(ty) {
        return Err(unsupported(ty));
    }
    if !raw.len().is_multiple_of(bs) {
        return Err(Error::Corrupt(format!("{} data of {} bytes is not whole blocks", ty.name(), raw.len())));
    }
    let mut out = vec![0f32; raw.len() / bs * ty.block_size() as usize];
    dequantize_row(ty, raw, &mut out)?;
    Ok(out)
}
