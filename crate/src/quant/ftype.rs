//! llama.cpp's file types (`general.file_type`, `LLAMA_FTYPE_MOSTLY_*`) and its rules for
//! the type of each tensor (`llama_tensor_get_type`), in one table used by `quantize`,
//! `synth` and `info` / the wasm bindings.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// A file type we can write: `quantize` and `synth` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4KM,
    Q5KM,
    Q6K,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    IQ4NL,
    IQ4XS,
}

/// (file type, `general.file_type`, name, type of ordinary 2-D weights).
const TABLE: [(FileType, u32, &str, GgmlType); 15] = [
    (FileType::F16, 1, "f16", GgmlType::F16),
    (FileType::Q4_0, 2, "q4_0", GgmlType::Q4_0),
    (FileType::Q4_1, 3, "q4_1", GgmlType::Q4_1),
    (FileType::Q8_0, 7, "q8_0", GgmlType::Q8_0),
    (FileType::Q5_0, 8, "q5_0", GgmlType::Q5_0),
    (FileType::Q5_1, 9, "q5_1", GgmlType::Q5_1),
    (FileType::Q4KM, 15, "q4_k_m", GgmlType::Q4K),
    (FileType::Q5KM, 17, "q5_k_m", GgmlType::Q5K),
    (FileType::Q6K, 18, "q6_k", GgmlType::Q6K),
    (FileType::Q2K, 10, "q2_k", GgmlType::Q2K),
    (FileType::Q3KS, 11, "q3_k_s", GgmlType::Q3K),
    (FileType::Q3KM, 12, "q3_k_m", GgmlType::Q3K),
    (FileType::Q3KL, 13, "q3_k_l", GgmlType::Q3K),
    (FileType::IQ4NL, 25, "iq4_nl", GgmlType::IQ4NL),
    (FileType::IQ4XS, 30, "iq4_xs", GgmlType::IQ4XS),
];

/// Every `general.file_type` llama.cpp defines that a Llama file may carry, for display.
const NAMES: [(u32, &str); 22] = [
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (25, "IQ4_NL"),
    (30, "IQ4_XS"),
    (32, "BF16"),
];

/// llama.cpp's upper-case name of a `general.file_type` value ("Q4_K_M"), if known.
pub fn file_type_name(id: u64) -> Option<&'static str> {
    NAMES.iter().find(|(i, _)| *i as u64 == id).map(|(_, n)| *n)
}

impl FileType {
    pub const ALL: [FileType; 15] = [
        Self::Q4KM,
        Self::Q5KM,
        Self::Q6K,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::F16,
        Self::Q2K,
        Self::Q3KS,
        Self::Q3KM,
        Self::Q3KL,
        Self::IQ4NL,
        Self::IQ4XS,
    ];

    fn row(self) -> (FileType, u32, &'static str, GgmlType) {
        TABLE.into_iter().find(|r| r.0 == self).unwrap_or(TABLE[0])
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// Lower-case name as accepted by `from_str` ("q4_k_m", …).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// The type of ordinary 2-D weights.
    pub fn base_type(self) -> GgmlType {
        self.row().3
    }

    /// Whether tensors are quantized at all (llama.cpp applies its per-tensor rules only then).
    pub fn is_quantized(self) -> bool {
        self != Self::F16
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = Error;
    /// Names (case-insensitive: "q4_k_m", "Q4_K_M") or the `general.file_type` number ("15").
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.name() == t || t.parse::<u32>().ok() == Some(f.id())).ok_or_else(|| {
            let names: Vec<String> = Self::ALL.iter().map(|f| format!("{} ({})", f.name(), f.id())).collect();
            Error::InvalidArgument(format!(
                "unknown quantization type '{s}' (expected one of {} by name or general.file_type number)",
                names.join(", ")
            ))
        })
    }
}

/// What a 2-D weight is, for the type rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The output layer (`output.weight`, or `token_embd.weight` when tied).
    Output,
    /// The i-th of n `attn_v` tensors, in a model of `gqa` query heads per KV head.
    AttnV { i: usize, n: usize, gqa: u64 },
    /// An `attn_output` tensor.
    AttnOutput,
    /// The i-th of n `ffn_down` tensors.
    FfnDown { i: usize, n: usize },
    /// A fused `attn_qkv`.
    AttnQkv,
    /// Everything else (incl. an untied `token_embd`).
    Other,
}

/// llama.cpp's `use_more_bits`: the layers the `_M` mixes give Q6_K `attn_v` / `ffn_down`.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

/// The type of a 2-D weight with rows of `cols` values, as llama.cpp's
/// `llama_tensor_get_type` picks it for these file types: [`wanted_type`], then [`fit`].
pub fn tensor_type(ftype: FileType, role: Role, cols: u64) -> GgmlType {
    fit(wanted_type(ftype, role, cols), cols)
}

/// The type llama.cpp's rules pick before the row-length fallback (for Llama: no experts,
/// not 70B-shaped):
/// * F16 files keep every matrix F16 (llama.cpp applies no rules to unquantized types);
/// * the output layer → Q6_K, except Q8_0 for `q8_0` files and when its rows are not a
///   multiple of the base type's block;
/// * `q4_k_m` / `q5_k_m`: `attn_v` and `ffn_down` → Q6_K when `use_more_bits(i, n)`; fused
///   `attn_qkv` → Q5_K / Q6_K;
/// * `q2_k`: `attn_v` → Q4_K (GQA ≥ 4) or Q3_K, `ffn_down` and `attn_output` → Q3_K;
/// * `q3_k_m`: `attn_v` → Q5_K for the first two, then Q4_K; `ffn_down` → Q5_K in the first
///   sixteenth of the layers, then Q4_K; `attn_output`, `attn_qkv` → Q4_K;
/// * `q3_k_l`: `attn_v`, `ffn_down`, `attn_output` → Q5_K, `attn_qkv` → Q4_K;
/// * `iq4_nl` / `iq4_xs`: `attn_v` → Q5_K with GQA ≥ 4, `ffn_down` → Q5_K in the first
///   eighth of the layers (without an importance matrix);
/// * everything else → the base type.
pub fn wanted_type(ftype: FileType, role: Role, cols: u64) -> GgmlType {
    use FileType as F;
    use GgmlType::*;
    let base = ftype.base_type();
    if !ftype.is_quantized() {
        return base;
    }
    let mixed = matches!(ftype, F::Q4KM | F::Q5KM);
    let iq4 = matches!(ftype, F::IQ4NL | F::IQ4XS);
    match role {
        Role::Output if !cols.is_multiple_of(base.block_size()) || base == Q8_0 => Q8_0,
        Role::Output => Q6K,
        Role::AttnV { i, n, gqa } => match ftype {
            F::Q2K if gqa >= 4 => Q4K,
            F::Q2K => Q3K,
            F::Q3KM if i < 2 => Q5K,
            F::Q3KM => Q4K,
            F::Q3KL => Q5K,
            _ if iq4 && gqa >= 4 => Q5K,
            _ if mixed && use_more_bits(i, n) => Q6K,
            _ => base,
        },
        Role::FfnDown { i, n } => match ftype {
            F::Q2K => Q3K,
            F::Q3KM if i < n / 16 => Q5K,
            F::Q3KM => Q4K,
            F::Q3KL => Q5K,
            _ if iq4 && i < n / 8 => Q5K,
            _ if mixed && use_more_bits(i, n) => Q6K,
            _ => base,
        },
        Role::AttnOutput => match ftype {
            F::Q2K => Q3K,
            F::Q3KM => Q4K,
            F::Q3KL => Q5K,
            _ => base,
        },
        Role::AttnQkv => match ftype {
            F::Q3KM | F::Q3KL => Q4K,
            F::Q4KM => Q5K,
            F::Q5KM => Q6K,
            _ => base,
        },
        Role::Other => base,
    }
}

/// llama.cpp's fallback for a type whose block does not divide the row length
/// (`tensor_type_fallback`): Q2_K / Q3_K → Q4_0, IQ4_XS → IQ4_NL, the other K-quants → Q8_0
/// when rows are a multiple of 32; otherwise F16.
pub fn fit(ty: GgmlType, cols: u64) -> GgmlType {
    if cols.is_multiple_of(ty.block_size()) {
        ty
    } else if cols.is_multiple_of(32) && ty.block_size() == 256 {
        match ty {
            GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
            GgmlType::IQ4XS => GgmlType::IQ4NL,
            _ => GgmlType::Q8_0,
        }
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp() {
        let hi: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(hi, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        assert_eq!((0..2).map(|i| use_more_bits(i, 2)).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn table_is_consistent() {
        for f in FileType::ALL {
            assert_eq!(f.name().parse::<FileType>().unwrap(), f);
            assert_eq!(file_type_name(f.id() as u64).map(str::to_ascii_lowercase).as_deref(), Some(f.name()));
        }
    }
}
