//! The KV cache's element type, one for both backends: f32, f16, or ggml's `Q8_0` / `Q4_0`
//! blocks of 32 values (their layouts, encode and decode live in [`crate::quant`], the one
//! home of each format). Keys and values are quantized as each token writes them, per head
//! row (`head_dim` values, whole blocks), and decoded inside the attention; the names are
//! llama.cpp's `-ctk/-ctv` ones.

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, LlamaConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    pub const ALL: [KvType; 4] = [KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q4_0];

    /// The GGUF type whose blocks hold the values.
    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F32 => GgmlType::F32,
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// Values per block (1, or 32 for the quantized types).
    pub fn block_len(self) -> usize {
        self.ggml().block_size() as usize
    }

    /// Bytes per value, on average (2, or 34/32 for Q8_0).
    pub fn bytes_per_value(self) -> f64 {
        self.ggml().type_size() as f64 / self.ggml().block_size() as f64
    }

    /// Bytes of one head's row of `head_dim` values: an error naming both when the row is not
    /// whole blocks (the quantized types need `head_dim` to be a multiple of 32).
    pub fn row_bytes(self, head_dim: usize) -> Result<usize> {
        self.ggml().bytes_for(head_dim as u64).and_then(|b| usize::try_from(b).ok()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "KV type {self} stores blocks of {} values; this model's head dimension {head_dim} is not a multiple",
                self.block_len()
            ))
        })
    }

    /// Appends the encoding of `x` (one or more head rows) to `out`, as ggml's
    /// `quantize_row_*_ref` (f16: round to nearest even, as F16C).
    pub fn encode(self, x: &[f32], out: &mut Vec<u8>) -> Result<()> {
        crate::quant::encode::quantize_simple_into(self.ggml(), x, out)
    }

    /// Decodes whole rows `raw` into `out` (exactly their values).
    pub fn decode(self, raw: &[u8], out: &mut [f32]) -> Result<()> {
        crate::quant::dequantize_row(self.ggml(), raw, out)
    }
}

/// Bytes of K and V over `positions` tokens of every layer: the cache of a `positions`-token
/// context, and also what one decoded token at depth `positions` reads when every KV row is
/// read once per KV head (`layers × positions × 2 × n_kv × head_dim × bytes per value`).
pub fn kv_bytes(cfg: &LlamaConfig, positions: usize, ty: KvType) -> Result<u64> {
    let row = ty.row_bytes(cfg.head_dim)? as u64;
    [cfg.n_layer as u64, positions as u64, 2, cfg.n_head_kv as u64]
        .into_iter()
        .try_fold(row, u64::checked_mul)
        .ok_or_else(|| Error::UnsupportedModel(format!("a {positions}-token {ty} KV cache overflows")))
}

/// The names `--kv-type`, `kvType` and llama.cpp's `-ctk` use.
impl crate::named::Named for KvType {
    const WHAT: &'static str = "KV type";
    const NAMES: &'static [(Self, &'static [&'static str])] =
        &[(KvType::F32, &["f32"]), (KvType::F16, &["f16"]), (KvType::Q8_0, &["q8_0"]), (KvType::Q4_0, &["q4_0"])];
}
crate::named::named!(KvType);

impl serde::Serialize for KvType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for t in KvType::ALL {
            assert_eq!(t.name().parse::<KvType>().unwrap(), t);
            assert_eq!(t.to_string().to_uppercase().parse::<KvType>().unwrap(), t);
        }
        let e = "q4_k".parse::<KvType>().unwrap_err();
        assert!(e.to_string().contains("f32, f16, q8_0 or q4_0"), "{e}");
    }

    #[test]
    fn rows_are_ggml_blocks() {
        assert_eq!(KvType::F32.row_bytes(64).unwrap(), 256);
        assert_eq!(KvType::F16.row_bytes(64).unwrap(), 128);
        assert_eq!(KvType::Q8_0.row_bytes(64).unwrap(), 68);
        assert_eq!(KvType::Q4_0.row_bytes(128).unwrap(), 72);
        let e = KvType::Q8_0.row_bytes(80).unwrap_err();
        assert!(e.to_string().contains("80"), "{e}");
        assert_eq!(KvType::F16.row_bytes(80).unwrap(), 160);
    }

    #[test]
    fn encode_then_decode_is_the_formats_round_trip() {
        let x: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.031).collect();
        for t in KvType::ALL {
            let mut raw = vec![0xAA]; // encode appends
            t.encode(&x, &mut raw).unwrap();
            assert_eq!(raw.len(), 1 + 2 * t.row_bytes(64).unwrap());
            let mut y = vec![0f32; 128];
            t.decode(&raw[1..], &mut y).unwrap();
            // the same bytes as the weight formats' encoder (one home per format)
            assert_eq!(raw[1..], crate::quant::quantize(t.ggml(), &x).unwrap()[..]);
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let tol = match t {
                KvType::F32 => 0.0,
                KvType::F16 => amax / 1024.0,
                KvType::Q8_0 => amax / 127.0 / 2.0 * 1.01,
                KvType::Q4_0 => amax / 8.0 * 1.01,
            };
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= tol, "{t}: {a} → {b}");
            }
        }
        assert!(KvType::Q4_0.encode(&x[..48], &mut Vec::new()).is_err());
    }
}
