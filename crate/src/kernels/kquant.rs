//! K-quant super-blocks (256 values) as ggml lays them out, unpacked into 32-value
//! sub-blocks: integer quants plus the f32 scale/min that ggml's dequantizer computes
//! (`d · sc`, `dmin · m`). The GPU layout and the CPU reference are both built from this,
//! so the GPU sees exactly ggml's values: `v = scale · q − min`.

use half::f16;

/// One 32-value sub-block. Q6_K has a scale per 16 values: `scale[0]` for values 0..16,
/// `scale[1]` for 16..32 (equal for Q4_K/Q5_K). `min` is 0 for Q6_K.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubBlock {
    pub q: [i8; 32],
    pub scale: [f32; 2],
    pub min: f32,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min of sub-block `j` from the 12 packed bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q4_K block: d f16, dmin f16, scales[12], qs[128] (144 bytes).
pub fn q4_k(b: &[u8]) -> [SubBlock; 8] {
    let (d, dmin, sc, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
    std::array::from_fn(|s| {
        let (c, m) = scale_min_k4(s, sc);
        // sub-blocks 2j and 2j+1 share qs[32j..32j+32]: low and high nibbles
        let chunk = &qs[32 * (s / 2)..][..32];
        let q = std::array::from_fn(|l| if s % 2 == 0 { chunk[l] & 0xF } else { chunk[l] >> 4 } as i8);
        let scale = d * c as f32;
        SubBlock { q, scale: [scale; 2], min: dmin * m as f32 }
    })
}

/// Q5_K block: d, dmin, scales[12], qh[32], qs[128] (176 bytes).
pub fn q5_k(b: &[u8]) -> [SubBlock; 8] {
    let (d, dmin, sc, qh, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..48], &b[48..176]);
    std::array::from_fn(|s| {
        let (c, m) = scale_min_k4(s, sc);
        let chunk = &qs[32 * (s / 2)..][..32];
        // sub-block s takes its fifth bit from bit s of qh[l]
        let q = std::array::from_fn(|l| {
            let lo = if s % 2 == 0 { chunk[l] & 0xF } else { chunk[l] >> 4 };
            (lo + if qh[l] & (1 << s) != 0 { 16 } else { 0 }) as i8
        });
        let scale = d * c as f32;
        SubBlock { q, scale: [scale; 2], min: dmin * m as f32 }
    })
}

/// Q6_K block: ql[128], qh[64], scales[16] (i8), d f16 (210 bytes).
pub fn q6_k(b: &[u8]) -> [SubBlock; 8] {
    let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], f16_at(b, 208));
    std::array::from_fn(|s| {
        // values 128h + 32k + l (k = 0..3, l = 0..31) come from ql[64h + l (+32 for odd k)]
        // (low or high nibble) and bits 2k..2k+1 of qh[32h + l]
        let (h, k) = (s / 4, s % 4);
        let q = std::array::from_fn(|l| {
            let lq = ql[64 * h + l + 32 * (k % 2)];
            let lo = if k < 2 { lq & 0xF } else { lq >> 4 };
            let hi = (qh[32 * h + l] >> (2 * k)) & 3;
            ((lo | hi << 4) as i8) - 32
        });
        // 16-value scale groups: index 8h + 2k + (l / 16)
        let scale = [d * sc[8 * h + 2 * k] as i8 as f32, d * sc[8 * h + 2 * k + 1] as i8 as f32];
        SubBlock { q, scale, min: 0.0 }
    })
}

/// Sub-blocks of one super-block of `ty` (Q4_K, Q5_K or Q6_K).
pub fn sub_blocks(ty: crate::gguf::GgmlType, block: &[u8]) -> Option<[SubBlock; 8]> {
    use crate::gguf::GgmlType::*;
    match ty {
        Q4K => Some(q4_k(block)),
        Q5K => Some(q5_k(block)),
        Q6K => Some(q6_k(block)),
        _ => None,
    }
}

/// The 32 values of a sub-block, computed with ggml's operation order.
pub fn values(sb: &SubBlock) -> [f32; 32] {
    std::array::from_fn(|l| sb.scale[l / 16] * sb.q[l] as f32 - sb.min)
}
