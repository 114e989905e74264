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
            // both of the package's wasm builds use simd128
            #[cfg(target_arch = "wasm32")]
            f16_to_f32_wasm(bits, dst);
            #[cfg(not(target_arch = "wasm32"))]
            bytemuck::cast_slice::<u16, half::f16>(bits).convert_to_f32_slice(dst);
        } else {
            bytemuck::cast_slice::<u16, half::bf16>(bits).convert_to_f32_slice(dst);
        }
    }
}

/// f16 bits to f32 without a branch: the exponent and mantissa move into f32's place and a
/// multiply by 2^112 rebiases them, exact for normal and subnormal halves; Inf and NaN
/// (exponent 31) keep an all-ones exponent. `half` has no hardware conversion in wasm and its
/// portable one branches on every value; the wasm integer kernels convert their f16 block
/// scales with this, and [`f16_to_f32_wasm`] does the same in vector lanes.
#[cfg(any(target_arch = "wasm32", test))]
#[inline]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let (h, em) = (h as u32, (h & 0x7fff) as u32);
    let v = f32::from_bits(em << 13) * f32::from_bits(0x7780_0000);
    let v = if em >= 0x7c00 { f32::from_bits(0x7f80_0000 | (em << 13)) } else { v };
    f32::from_bits(v.to_bits() | ((h & 0x8000) << 16))
}

/// [`f16_bits_to_f32`], 8 at a time in wasm's simd128: the f16 KV cache's decode in attention
/// was ~19% of the browser engine's decode time at a depth of ~160 through `half`
/// (BENCHMARKS.md). `dst.len() == bits.len()`.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
fn f16_to_f32_wasm(bits: &[u16], dst: &mut [f32]) {
    use std::arch::wasm32::*;
    let four = |h: v128| {
        let em = v128_and(h, u32x4_splat(0x7fff));
        let v = f32x4_mul(i32x4_shl(em, 13), f32x4_splat(f32::from_bits(0x7780_0000)));
        let special = v128_or(i32x4_shl(em, 13), u32x4_splat(0x7f80_0000));
        let v = v128_bitselect(special, v, u32x4_gt(em, u32x4_splat(0x7bff)));
        v128_or(v, i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
    };
    let (mut b8, mut d8) = (bits.chunks_exact(8), dst.chunks_exact_mut(8));
    for (b, d) in (&mut b8).zip(&mut d8) {
        // SAFETY: `b` holds 8 u16s and `d` 8 f32s; wasm loads and stores need no alignment
        unsafe {
            let h = v128_load(b.as_ptr() as *const v128);
            v128_store(d.as_mut_ptr() as *mut v128, four(u32x4_extend_low_u16x8(h)));
            v128_store(d.as_mut_ptr().add(4) as *mut v128, four(u32x4_extend_high_u16x8(h)));
        }
    }
    for (b, d) in b8.remainder().iter().zip(d8.into_remainder()) {
        *d = f16_bits_to_f32(*b);
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

#[cfg(test)]
mod half_tests {
    use super::*;

    /// The branch-free conversion gives `half`'s f32 for every f16 bit pattern (NaN for NaN).
    /// It runs here natively, where it is scalar code; the wasm vector version gets the same
    /// check of every pattern from `q8_bench` in wasm32-wasip1 (`bench/q8-wasm.mjs`), since the
    /// library's tests do not build for wasm.
    #[test]
    fn branch_free_f16_is_half_for_every_pattern() {
        for h in 0..=u16::MAX {
            let (got, want) = (f16_bits_to_f32(h), half::f16::from_bits(h).to_f32());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}: {got} vs {want}");
        }
    }
}
