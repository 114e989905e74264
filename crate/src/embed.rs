//! Embeddings: a sequence's final-norm hidden states ([`Logits::Hidden`]) pooled into one
//! vector, as llama.cpp's `--embedding` and transformers' `last_hidden_state` pooled.
//!
//! Each input runs alone from position 0, so inputs of a batch never see each other: a pass
//! over `n` tokens writes cache positions `0..n` and attends to those only, whatever an
//! earlier input left beyond them.

use crate::backend::Forward;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::graph::Logits;

/// How the hidden states of a sequence become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over every position (the default, and llama.cpp's `mean`).
    Mean,
    /// The last position's (causal embedding models: its state has seen the whole input).
    Last,
    /// The first position's (llama.cpp's `cls`).
    Cls,
}

impl crate::named::Named for Pooling {
    const WHAT: &'static str = "pooling";
    const NAMES: &'static [(Self, &'static [&'static str])] =
        &[(Self::Mean, &["mean"]), (Self::Last, &["last"]), (Self::Cls, &["cls"])];
}
crate::named::named!(Pooling);

impl Pooling {
    /// The GGUF's `<arch>.pooling_type` (llama.cpp's enum: 0 none, 1 mean, 2 cls, 3 last,
    /// 4 rank), mean when absent or none (per-token output has no single vector to give).
    pub fn of_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.get_str("general.architecture")?;
        let key = format!("{arch}.pooling_type");
        let Some(v) = file.get(&key) else { return Ok(Self::Mean) };
        match v.as_u64() {
            Some(0 | 1) => Ok(Self::Mean),
            Some(2) => Ok(Self::Cls),
            Some(3) => Ok(Self::Last),
            Some(4) => Err(Error::UnsupportedModel(format!("'{key}' is 4 (rank): a reranker, not an embedding model"))),
            Some(n) => Err(Error::Corrupt(format!("'{key}' is {n}, not a pooling type (0 to 4)"))),
            None => Err(Error::WrongType { key, expected: "an unsigned integer" }),
        }
    }

    /// Pools `hidden` (`[n, dim]` row-major, `n ≥ 1`) into one vector of `dim`.
    pub fn pool(self, hidden: &[f32], dim: usize) -> Result<Vec<f32>> {
        let n = hidden.len().checked_div(dim).unwrap_or(0);
        if n == 0 || n * dim != hidden.len() {
            return Err(Error::empty_input());
        }
        Ok(match self {
            Pooling::Cls => hidden[..dim].to_vec(),
            Pooling::Last => hidden[(n - 1) * dim..].to_vec(),
            Pooling::Mean => {
                // summed in f64: n may be thousands of positions
                let mut sum = vec![0f64; dim];
                for row in hidden.chunks_exact(dim) {
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += *v as f64;
                    }
                }
                sum.iter().map(|s| (s / n as f64) as f32).collect()
            }
        })
    }
}

/// Scales `v` to unit L2 length (a zero vector stays zero), so a dot product is the cosine.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (*x as f64 / norm) as f32;
        }
    }
}

/// The embedding of `tokens`: one pass from position 0 (overwriting the model's KV cache, so a
/// session's cached prompt must be forgotten), pooled, and unit-length when `unit`.
pub async fn embed<M: Forward>(model: &mut M, tokens: &[u32], pooling: Pooling, unit: bool) -> Result<Vec<f32>> {
    let dim = model.config().n_embd;
    let hidden = model.forward(tokens, 0, Logits::Hidden).await?;
    let mut v = pooling.pool(&hidden, dim)?;
    if unit {
        normalize(&mut v);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_rows() {
        let h = [1.0, 2.0, 3.0, 4.0, 5.0, 9.0];
        assert_eq!(Pooling::Mean.pool(&h, 2).unwrap(), vec![3.0, 5.0]);
        assert_eq!(Pooling::Last.pool(&h, 2).unwrap(), vec![5.0, 9.0]);
        assert_eq!(Pooling::Cls.pool(&h, 2).unwrap(), vec![1.0, 2.0]);
        assert!(Pooling::Mean.pool(&[], 2).is_err());
        assert!(Pooling::Mean.pool(&h, 4).is_err());
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        assert!("max".parse::<Pooling>().is_err());
    }
}
