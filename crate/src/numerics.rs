//! Non-finite numbers. A NaN or Inf in the weights spreads through every later layer, and
//! sampling from NaN logits yields garbage with no error. So logits read back from the GPU
//! are checked (cheap next to the forward pass), and weight blocks are checked on their raw
//! GGUF bytes at upload: the f16/f32 scales of quantized blocks, every value of float tensors.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// `Error::NonFiniteLogits` for the first NaN/Inf in `logits` (rows of `vocab`, the first at
/// position `first_pos`).
pub fn check_logits(logits: &[f32], first_pos: usize, vocab: usize) -> Result<()> {
    if logits.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let i = logits.iter().position(|v| !v.is_finite()).unwrap_or(0);
    let v = logits.get(i).copied().unwrap_or(f32::NAN);
    let vocab = vocab.max(1);
    Err(Error::NonFiniteLogits { position: first_pos + i / vocab, index: i % vocab, what: describe(v) })
}

fn describe(v: f32) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// `Error::NonFiniteWeight` for the first NaN/Inf block scale (quantized types) or value
/// (F32/F16/BF16) in `raw`, whole blocks of `ty` from tensor `tensor`; `first_block` is the
/// index of `raw`'s first block in the tensor, for the message.
pub fn check_weights(tensor: &str, ty: GgmlType, raw: &[u8], first_block: u64) -> Result<()> {
    let bad = |block: usize, field: &'static str, what: &'static str| Error::NonFiniteWeight {
        tensor: tensor.to_string(),
        block: first_block + block as u64,
        field,
        what,
    };
    // f16 and bf16: the value is NaN/Inf when its exponent bits are all ones.
    let h = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let f16_bad = |x: u16| x & 0x7C00 == 0x7C00;
    let f16_what = |x: u16| if x & 0x03FF != 0 { "NaN" } else { "infinite" };
    match ty {
        GgmlType::F32 => {
            let vals = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            match vals.enumerate().find(|(_, v)| !v.is_finite()) {
                Some((i, v)) => Err(bad(i, "value", if v.is_nan() { "NaN" } else { "infinite" })),
                None => Ok(()),
            }
        }
        GgmlType::F16 => match (0..raw.len() / 2).find(|&i| f16_bad(h(raw, 2 * i))) {
            Some(i) => Err(bad(i, "value", f16_what(h(raw, 2 * i)))),
            None => Ok(()),
        },
        GgmlType::BF16 => match (0..raw.len() / 2).find(|&i| h(raw, 2 * i) & 0x7F80 == 0x7F80) {
            Some(i) => Err(bad(i, "value", if h(raw, 2 * i) & 0x007F != 0 { "NaN" } else { "infinite" })),
            None => Ok(()),
        },
        GgmlType::Q8K => {
            for (i, b) in raw.chunks_exact(ty.type_size() as usize).enumerate() {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if !d.is_finite() {
                    return Err(bad(i, "super-block scale", if d.is_nan() { "NaN" } else { "infinite" }));
                }
            }
            Ok(())
        }
        _ => {
            let fields = crate::quant::format(ty).scales;
            for (i, b) in raw.chunks_exact(ty.type_size() as usize).enumerate() {
                for &(at, field) in fields {
                    let x = h(b, at);
                    if f16_bad(x) {
                        return Err(bad(i, field, f16_what(x)));
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant as reference;

    #[test]
    fn logits_name_the_position() {
        let mut l = vec![0.5f32; 3 * 10];
        check_logits(&l, 7, 10).unwrap();
        l[2 * 10 + 4] = f32::NAN;
        let e = check_logits(&l, 7, 10).unwrap_err();
        assert!(matches!(e, Error::NonFiniteLogits { position: 9, index: 4, what: "NaN" }), "{e}");
        assert!(e.to_string().contains("position 9") && e.to_string().contains("corrupt"), "{e}");
        l[4] = f32::NEG_INFINITY;
        assert!(matches!(check_logits(&l, 0, 10), Err(Error::NonFiniteLogits { position: 0, what: "-Inf", .. })));
    }

    /// A NaN scale written into block `k` of data quantized by our reference quantizer (which
    /// follows ggml) is found there, for every type with a GPU kernel; finite data passes.
    #[test]
    fn weights_name_tensor_and_block() {
        let x: Vec<f32> = (0..1024).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let mut raw = reference::quantize(ty, &x).unwrap();
            check_weights("w", ty, &raw, 0).unwrap();
            let bs = ty.type_size() as usize;
            let k = 5;
            match ty {
                GgmlType::F32 => raw[k * 4..k * 4 + 4].copy_from_slice(&f32::NAN.to_le_bytes()),
                GgmlType::F16 => raw[k * 2..k * 2 + 2].copy_from_slice(&0x7E00u16.to_le_bytes()),
                GgmlType::BF16 => raw[k * 2..k * 2 + 2].copy_from_slice(&0x7F80u16.to_le_bytes()),
                _ => raw[k * bs..k * bs + 2].copy_from_slice(&0x7C00u16.to_le_bytes()),
            }
            // the reference dequantizer agrees that the block is no longer finite
            assert!(reference::dequantize(ty, &raw).unwrap().iter().any(|v| !v.is_finite()), "{ty:?}");
            let e = check_weights("blk.3.ffn_up.weight", ty, &raw, 100).unwrap_err();
            assert!(matches!(&e, Error::NonFiniteWeight { block: 105, .. }), "{ty:?}: {e}");
            assert!(e.to_string().contains("'blk.3.ffn_up.weight'"), "{e}");
        }
    }

    #[test]
    fn k_quant_super_block_scales() {
        for (ty, at) in [
            (GgmlType::Q4K, 0),
            (GgmlType::Q5K, 0),
            (GgmlType::Q6K, 208),
            (GgmlType::Q2K, 80),
            (GgmlType::Q3K, 108),
            (GgmlType::IQ4XS, 0),
        ] {
            let mut raw = vec![0u8; 3 * ty.type_size() as usize];
            check_weights("w", ty, &raw, 0).unwrap();
            let o = ty.type_size() as usize + at;
            raw[o..o + 2].copy_from_slice(&0xFC00u16.to_le_bytes()); // -Inf
            assert!(reference::dequantize(ty, &raw).unwrap().iter().any(|v| !v.is_finite()), "{ty:?}");
            let e = check_weights("w", ty, &raw, 0).unwrap_err();
            assert!(matches!(e, Error::NonFiniteWeight { block: 1, what: "infinite", .. }), "{ty:?}: {e}");
        }
    }
}
