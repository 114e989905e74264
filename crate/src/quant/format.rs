//! One descriptor per GGUF tensor type: everything the engine knows about a format in one
//! row. Byte sizes, the scale fields checked at load, the GPU layout and its WGSL decode, and
//! which CPU paths exist are read from here, so every "is it supported?" question and every
//! byte computation has one answer. Adding a format = a row here plus its kernels (decode in
//! [`super::blocks`], the dot in `cpu::dot`, the WGSL `load_block_*`).

use crate::gguf::GgmlType;

/// How a weight type is stored on the GPU: GGUF's own block bytes, regrouped (never
/// expanded) so every load is aligned. Per GGUF block (`block` values): `qs_v4` × 16 bytes in
/// the quant array and `sc_h` f16 halves in the scale array (`sc_tail`: the halves are the
/// block's last bytes, as Q6_K's `d`; otherwise its first: d, m, Q5's qh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuFormat {
    pub block: u32,
    pub qs_v4: u32,
    pub sc_h: u32,
    pub sc_tail: bool,
    /// The WGSL function (in `matmul_common.wgsl`) that decodes one block.
    pub load_fn: &'static str,
}

/// One GGUF tensor type.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub ty: GgmlType,
    /// ggml's type number and name.
    pub id: u32,
    pub name: &'static str,
    /// Values per block, and bytes per block.
    pub block: u64,
    pub bytes: u64,
    /// The f16 scale fields of a block (byte offset, what), checked for NaN/Inf at load; empty
    /// for float types (every value is checked) and Q8_K (an f32 scale).
    pub scales: &'static [(usize, &'static str)],
    /// The CPU decode (`quant::dequantize_row`) and encoder exist.
    pub decode: bool,
    /// The CPU backend has a dot product straight from the blocks.
    pub cpu_dot: bool,
    /// How the GPU holds it; `None`: no GPU kernel.
    pub gpu: Option<GpuFormat>,
}

const fn gpu(block: u32, qs_v4: u32, sc_h: u32, sc_tail: bool, load_fn: &'static str) -> Option<GpuFormat> {
    Some(GpuFormat { block, qs_v4, sc_h, sc_tail, load_fn })
}

#[allow(clippy::too_many_arguments)] // a const table row, read in columns
const fn row(
    ty: GgmlType,
    id: u32,
    name: &'static str,
    block: u64,
    bytes: u64,
    scales: &'static [(usize, &'static str)],
    runs: bool,
    gpu: Option<GpuFormat>,
) -> Format {
    Format { ty, id, name, block, bytes, scales, decode: runs, cpu_dot: runs, gpu }
}

const D: &[(usize, &str)] = &[(0, "scale")];
const DM: &[(usize, &str)] = &[(0, "scale"), (2, "min")];
const K_DM: &[(usize, &str)] = &[(0, "super-block scale"), (2, "super-block min")];

/// Every type we can name. `runs`: decoded, encoded and dotted on the CPU.
pub const FORMATS: [Format; 17] = {
    use GgmlType::*;
    [
        // float types in 32-value units on the GPU
        row(F32, 0, "F32", 1, 4, &[], true, gpu(32, 8, 0, false, "load_block_f32")),
        row(F16, 1, "F16", 1, 2, &[], true, gpu(32, 4, 0, false, "load_block_f16")),
        row(Q4_0, 2, "Q4_0", 32, 18, D, true, gpu(32, 1, 1, false, "load_block_q4_0")),
        row(Q4_1, 3, "Q4_1", 32, 20, DM, true, gpu(32, 1, 2, false, "load_block_q4_1")),
        row(Q5_0, 6, "Q5_0", 32, 22, D, true, gpu(32, 1, 3, false, "load_block_q5_0")),
        row(Q5_1, 7, "Q5_1", 32, 24, DM, true, gpu(32, 1, 4, false, "load_block_q5_1")),
        row(Q8_0, 8, "Q8_0", 32, 34, D, true, gpu(32, 2, 1, false, "load_block_q8_0")),
        row(Q8_1, 9, "Q8_1", 32, 36, DM, false, None),
        // Q2_K: scales|qs (5 vec4) + d dmin at the tail; Q3_K: hmask|qs (6 vec4) + scales[12] d
        // as 7 tail halves
        row(
            Q2K,
            10,
            "Q2_K",
            256,
            84,
            &[(80, "super-block scale"), (82, "super-block min")],
            true,
            gpu(256, 5, 2, true, "load_block_q2_k"),
        ),
        row(Q3K, 11, "Q3_K", 256, 110, &[(108, "super-block scale")], true, gpu(256, 6, 7, true, "load_block_q3_k")),
        // K-quants: whole 144 / 176-byte super-blocks; Q6_K's 210 = 208 + d
        row(Q4K, 12, "Q4_K", 256, 144, K_DM, true, gpu(256, 9, 0, false, "load_block_q4_k")),
        row(Q5K, 13, "Q5_K", 256, 176, K_DM, true, gpu(256, 11, 0, false, "load_block_q5_k")),
        row(Q6K, 14, "Q6_K", 256, 210, &[(208, "super-block scale")], true, gpu(256, 13, 1, true, "load_block_q6_k")),
        row(Q8K, 15, "Q8_K", 256, 292, &[], false, None),
        // non-linear 4-bit levels (kvalues_iq4nl): IQ4_NL as Q4_0; IQ4_XS d, scales_h,
        // scales_l[4] as 4 head halves, qs[128] as 8 vec4
        row(IQ4NL, 20, "IQ4_NL", 32, 18, D, true, gpu(32, 1, 1, false, "load_block_iq4_nl")),
        row(IQ4XS, 23, "IQ4_XS", 256, 136, D, true, gpu(256, 8, 4, false, "load_block_iq4_xs")),
        row(BF16, 30, "BF16", 1, 2, &[], true, gpu(32, 4, 0, false, "load_block_bf16")),
    ]
};

/// The descriptor of `ty`.
pub fn format(ty: GgmlType) -> &'static Format {
    // FORMATS holds every variant (checked by the test below), so the fallback never runs
    FORMATS.iter().find(|f| f.ty == ty).unwrap_or(&FORMATS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_type_and_consistent_sizes() {
        for ty in GgmlType::ALL {
            assert_eq!(FORMATS.iter().filter(|f| f.ty == ty).count(), 1, "{ty:?}");
            let f = format(ty);
            assert_eq!(f.ty, ty);
            // the GPU holds a block's bytes as they are: quants in 16-byte words plus f16 halves
            if let Some(g) = f.gpu {
                let per = f.block.max(g.block as u64) / f.block;
                assert_eq!((g.qs_v4 * 16 + g.sc_h * 2) as u64, f.bytes * per, "{}", f.name);
            }
            for &(at, _) in f.scales {
                assert!(at + 2 <= f.bytes as usize, "{}", f.name);
            }
        }
    }
}
