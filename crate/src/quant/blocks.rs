//! Block layouts of the GGUF types we run (byte offsets of each field, as ggml's
//! `block_*` structs) and their decode, written in ggml's operation order so the values are
//! bit-identical to `dequantize_row_*` (and to the `gguf` Python package).

use crate::gguf::GgmlType;
use half::{bf16, f16};

/// Values per block of the 32-value formats.
pub const QK: usize = 32;
/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// `d f16 | qs[32] i8`.
pub mod q8_0 {
    pub const BYTES: usize = 34;
    pub const D: usize = 0;
    pub const QS: usize = 2;
}
/// `d f16 | qs[16]` (byte j: value j low nibble, j + 16 high nibble); v = d·(q − 8).
pub mod q4_0 {
    pub const BYTES: usize = 18;
    pub const D: usize = 0;
    pub const QS: usize = 2;
}
/// `d f16 | m f16 | qs[16]`; v = d·q + m.
pub mod q4_1 {
    pub const BYTES: usize = 20;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QS: usize = 4;
}
/// `d f16 | qh u32 (fifth bits, bit j = value j) | qs[16]`; v = d·(q − 16).
pub mod q5_0 {
    pub const BYTES: usize = 22;
    pub const D: usize = 0;
    pub const QH: usize = 2;
    pub const QS: usize = 6;
}
/// `d f16 | m f16 | qh u32 | qs[16]`; v = d·q + m.
pub mod q5_1 {
    pub const BYTES: usize = 24;
    pub const D: usize = 0;
    pub const M: usize = 2;
    pub const QH: usize = 4;
    pub const QS: usize = 8;
}
/// `d f16 | dmin f16 | scales[12] (6-bit scale/min pairs) | qs[128]`.
pub mod q4_k {
    pub const BYTES: usize = 144;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QS: usize = 16;
}
/// `d f16 | dmin f16 | scales[12] | qh[32] | qs[128]`.
pub mod q5_k {
    pub const BYTES: usize = 176;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QH: usize = 16;
    pub const QS: usize = 48;
}
/// `scales[16] (low nibble: scale, high: min, per 16 values) | qs[64] | d f16 | dmin f16`.
pub mod q2_k {
    pub const BYTES: usize = 84;
    pub const SCALES: usize = 0;
    pub const QS: usize = 16;
    pub const D: usize = 80;
    pub const DMIN: usize = 82;
}
/// `hmask[32] | qs[64] | scales[12] (16 six-bit scales, packed) | d f16`.
pub mod q3_k {
    pub const BYTES: usize = 110;
    pub const HMASK: usize = 0;
    pub const QS: usize = 32;
    pub const SCALES: usize = 96;
    pub const D: usize = 108;
}
/// `d f16 | qs[16]` (byte j: value j low nibble, j + 16 high); v = d·KVALUES_IQ4NL[q].
pub mod iq4_nl {
    pub const BYTES: usize = 18;
    pub const D: usize = 0;
    pub const QS: usize = 2;
}
/// `d f16 | scales_h u16 | scales_l[4] | qs[128]`: 8 six-bit scales (low 4 bits from
/// `scales_l`, high 2 from `scales_h`), each 32 values as an IQ4_NL block.
pub mod iq4_xs {
    pub const BYTES: usize = 136;
    pub const D: usize = 0;
    pub const SCALES_H: usize = 2;
    pub const SCALES_L: usize = 4;
    pub const QS: usize = 8;
}

/// ggml's `kvalues_iq4nl`: the 16 non-linear levels of IQ4_NL and IQ4_XS.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// `ql[128] | qh[64] | scales[16] i8 | d f16`.
pub mod q6_k {
    pub const BYTES: usize = 210;
    pub const QL: usize = 0;
    pub const QH: usize = 128;
    pub const SCALES: usize = 192;
    pub const D: usize = 208;
}

/// The little-endian f16 at byte `i` of `b`, as f32.
#[inline]
pub fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline]
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Q3_K's 6-bit scale `i` (0..16) from its 12 packed bytes (ggml's `kmask` shuffle in
/// `dequantize_row_q3_K`): low 4 bits from byte `i` (i < 8) or the high nibble of byte
/// `i − 8`, high 2 bits from bits `2(i / 4)` of byte `8 + i % 4`.
#[inline]
pub fn scale_q3_k(i: usize, s: &[u8]) -> u8 {
    let lo = if i < 8 { s[i] & 0xF } else { s[i - 8] >> 4 };
    lo | (((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4)
}

/// IQ4_XS's 6-bit scale of sub-block `ib` (0..8) of block `b`.
#[inline]
pub fn scale_iq4_xs(ib: usize, b: &[u8]) -> u8 {
    let h = u16::from_le_bytes([b[iq4_xs::SCALES_H], b[iq4_xs::SCALES_H + 1]]);
    ((b[iq4_xs::SCALES_L + ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((h >> (2 * ib)) & 3) as u8) << 4)
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min of sub-block `j` (0..8) from the 12
/// packed bytes of a Q4_K/Q5_K block.
#[inline]
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Inverse of [`scale_min_k4`]: 8 six-bit scales and mins into 12 bytes.
pub fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8], s: &mut [u8]) {
    s[..12].fill(0);
    for j in 0..8 {
        let (ls, lm) = (sc[j] & 63, m[j] & 63);
        if j < 4 {
            s[j] |= ls;
            s[j + 4] |= lm;
        } else {
            s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
}

/// A 256-value super-block unpacked to integer levels and ggml's f32 factors: value `l` is
/// `scale[l / 16] · q[l] − min[l / 16]` (Q3_K, Q6_K, IQ4_XS: min = 0, q signed; IQ4_XS's
/// `q` are the `kvalues_iq4nl` levels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KBlock {
    pub q: [i8; QK_K],
    pub scale: [f32; 16],
    pub min: [f32; 16],
}

/// Unpacks a Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS block (`None` for other types).
pub fn kblock(ty: GgmlType, b: &[u8]) -> Option<KBlock> {
    let mut k = KBlock { q: [0; QK_K], scale: [0.0; 16], min: [0.0; 16] };
    match ty {
        GgmlType::Q2K | GgmlType::Q3K => {
            // value 128h + 32j + l: bits 2j of qs[32h + l]; 16 values per scale
            let qs = &b[if ty == GgmlType::Q2K { q2_k::QS } else { q3_k::QS }..][..64];
            if ty == GgmlType::Q2K {
                let (d, dmin) = (f16_at(b, q2_k::D), f16_at(b, q2_k::DMIN));
                for (i, &sc) in b[q2_k::SCALES..][..16].iter().enumerate() {
                    k.scale[i] = d * (sc & 0xF) as f32;
                    k.min[i] = dmin * (sc >> 4) as f32;
                }
            } else {
                let d = f16_at(b, q3_k::D);
                for i in 0..16 {
                    k.scale[i] = d * (scale_q3_k(i, &b[q3_k::SCALES..]) as i32 - 32) as f32;
                }
            }
            for h in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let mut q = ((qs[32 * h + l] >> (2 * j)) & 3) as i8;
                        // Q3_K: the third bit (bit 4h + j of hmask[l]) clear means q − 4
                        if ty == GgmlType::Q3K && b[q3_k::HMASK + l] & (1 << (4 * h + j)) == 0 {
                            q -= 4;
                        }
                        k.q[128 * h + 32 * j + l] = q;
                    }
                }
            }
        }
        GgmlType::IQ4XS => {
            let d = f16_at(b, iq4_xs::D);
            for ib in 0..8 {
                let dl = d * (scale_iq4_xs(ib, b) as i32 - 32) as f32;
                k.scale[2 * ib] = dl;
                k.scale[2 * ib + 1] = dl;
                for (j, &q) in b[iq4_xs::QS + 16 * ib..][..16].iter().enumerate() {
                    k.q[32 * ib + j] = KVALUES_IQ4NL[(q & 0xF) as usize];
                    k.q[32 * ib + j + 16] = KVALUES_IQ4NL[(q >> 4) as usize];
                }
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (d, dmin, sc) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
            let (qs, qh) =
                if ty == GgmlType::Q4K { (&b[q4_k::QS..], None) } else { (&b[q5_k::QS..], Some(&b[q5_k::QH..][..32])) };
            for s in 0..8 {
                let (c, m) = scale_min_k4(s, sc);
                k.scale[2 * s] = d * c as f32;
                k.scale[2 * s + 1] = d * c as f32;
                k.min[2 * s] = dmin * m as f32;
                k.min[2 * s + 1] = dmin * m as f32;
                // sub-blocks 2j and 2j+1 share qs[32j..32j+32]: low and high nibbles;
                // Q5_K takes the fifth bit of sub-block s from bit s of qh[l]
                let chunk = &qs[32 * (s / 2)..][..32];
                for l in 0..32 {
                    let lo = if s % 2 == 0 { chunk[l] & 0xF } else { chunk[l] >> 4 };
                    let hi = qh.map_or(0, |h| if h[l] & (1 << s) != 0 { 16 } else { 0 });
                    k.q[32 * s + l] = (lo + hi) as i8;
                }
            }
        }
        GgmlType::Q6K => {
            let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], f16_at(b, q6_k::D));
            for (i, s) in k.scale.iter_mut().enumerate() {
                *s = d * sc[i] as i8 as f32;
            }
            // value 128h + 32k + l: low 4 bits from ql[64h + l (+32 for odd k)] (low nibble for
            // k < 2, else high), high 2 bits from bits 2k.. of qh[32h + l]
            for h in 0..2 {
                for kk in 0..4 {
                    for l in 0..32 {
                        let lq = ql[64 * h + l + 32 * (kk % 2)];
                        let lo = if kk < 2 { lq & 0xF } else { lq >> 4 };
                        let hi = (qh[32 * h + l] >> (2 * kk)) & 3;
                        k.q[128 * h + 32 * kk + l] = ((lo | hi << 4) as i8) - 32;
                    }
                }
            }
        }
        _ => return None,
    }
    Some(k)
}

/// Decodes one block of `ty` into `y` (its `block_size` values). Callers check the type
/// and lengths ([`super::dequantize_row`]).
pub(crate) fn decode_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::BF16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q8_0 => {
            let d = f16_at(b, q8_0::D);
            for (v, &q) in y.iter_mut().zip(&b[q8_0::QS..][..32]) {
                *v = q as i8 as f32 * d;
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let d = f16_at(b, 0);
            let (m, qh, qs) = match ty {
                GgmlType::Q4_0 => (None, 0, &b[q4_0::QS..][..16]),
                GgmlType::Q4_1 => (Some(f16_at(b, q4_1::M)), 0, &b[q4_1::QS..][..16]),
                GgmlType::Q5_0 => (None, u32_at(b, q5_0::QH), &b[q5_0::QS..][..16]),
                _ => (Some(f16_at(b, q5_1::M)), u32_at(b, q5_1::QH), &b[q5_1::QS..][..16]),
            };
            let five = matches!(ty, GgmlType::Q5_0 | GgmlType::Q5_1);
            for j in 0..16 {
                let (mut x0, mut x1) = ((qs[j] & 0xF) as i32, (qs[j] >> 4) as i32);
                if five {
                    x0 |= (((qh >> j) << 4) & 0x10) as i32;
                    x1 |= ((qh >> (j + 12)) & 0x10) as i32;
                }
                let (y0, y1) = match m {
                    // symmetric formats centre the levels: 8 (4-bit) or 16 (5-bit)
                    None => {
                        let c = if five { 16 } else { 8 };
                        ((x0 - c) as f32 * d, (x1 - c) as f32 * d)
                    }
                    Some(m) => (x0 as f32 * d + m, x1 as f32 * d + m),
                };
                y[j] = y0;
                y[j + 16] = y1;
            }
        }
        GgmlType::IQ4NL => {
            let d = f16_at(b, iq4_nl::D);
            for (j, &q) in b[iq4_nl::QS..][..16].iter().enumerate() {
                y[j] = d * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
                y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
            }
        }
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K | GgmlType::IQ4XS => {
            if let Some(k) = kblock(ty, b) {
                for (l, v) in y.iter_mut().enumerate() {
                    *v = k.scale[l / 16] * k.q[l] as f32 - k.min[l / 16];
                }
            }
        }
        _ => {}
    }
}
