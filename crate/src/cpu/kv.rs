//! The CPU backend's KV cache: one layer's keys and values stored as their [`KvType`]
//! (f32, f16, or ggml's `Q8_0` / `Q4_0` blocks), quantized per token and head as each token
//! writes them (through [`KvType::encode`], the formats' one encoder).
//!
//! Each KV head keeps its own rows together (`[positions, row_bytes]`), so the attention
//! streams one head's keys and values front to back, once for all the query heads of its
//! group. The cache grows with the positions written (up to its capacity), so host memory
//! follows what a session uses, not what the header plans.

use crate::error::{Error, Result};
use crate::kv::KvType;

/// One layer's K and V, per KV head.
pub struct KvCache {
    pub ty: KvType,
    /// Values per head row.
    pub head_dim: usize,
    /// Bytes per head row in `ty`.
    pub row_bytes: usize,
    /// Capacity in positions.
    pub context: usize,
    /// `k[h]`: head `h`'s key rows, position after position (`positions() · row_bytes` bytes).
    pub k: Vec<Vec<u8>>,
    pub v: Vec<Vec<u8>>,
}

impl KvCache {
    pub fn new(ty: KvType, n_kv: usize, head_dim: usize, context: usize) -> Result<Self> {
        let row_bytes = ty.row_bytes(head_dim)?;
        Ok(KvCache {
            ty,
            head_dim,
            row_bytes,
            context,
            k: (0..n_kv).map(|_| Vec::new()).collect(),
            v: (0..n_kv).map(|_| Vec::new()).collect(),
        })
    }

    pub fn n_kv(&self) -> usize {
        self.k.len()
    }

    /// Positions written (and readable).
    pub fn positions(&self) -> usize {
        self.k.first().map_or(0, |k| k.len() / self.row_bytes.max(1))
    }

    /// Writes `n` tokens' keys and values (`[n, n_kv · head_dim]` each) at positions
    /// `pos..pos + n`; whatever the cache held from `pos` on is dropped (a rewound session
    /// writes over it), and positions before `pos` never written read as zeros.
    pub fn write(&mut self, pos: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (hd, nkv, rb) = (self.head_dim, self.n_kv(), self.row_bytes);
        let width = nkv * hd;
        if width == 0 {
            return Ok(());
        }
        if k.len() != v.len() || !k.len().is_multiple_of(width) {
            return Err(Error::InvalidArgument(format!(
                "KV rows of {} / {} values, not whole {width}",
                k.len(),
                v.len()
            )));
        }
        let n = k.len() / width;
        let end = pos.checked_add(n).ok_or(Error::ContextOverflow { needed: usize::MAX, capacity: self.context })?;
        if end > self.context {
            return Err(Error::ContextOverflow { needed: end, capacity: self.context });
        }
        let bytes = |positions: usize| {
            positions
                .checked_mul(rb)
                .ok_or_else(|| Error::OutOfMemory(format!("a KV cache of {positions} × {rb} bytes")))
        };
        let (keep, need, most) = (bytes(pos)?, bytes(end)?, bytes(self.context)?);
        for (h, (kh, vh)) in self.k.iter_mut().zip(self.v.iter_mut()).enumerate() {
            for (c, src) in [(&mut *kh, k), (&mut *vh, v)] {
                if c.capacity() < need {
                    // double, as a Vec would, but never past the capacity
                    let target = need.max(c.capacity().saturating_mul(2)).min(most);
                    c.try_reserve_exact(target - c.len())
                        .map_err(|_| Error::OutOfMemory(format!("{target} bytes of KV cache per head")))?;
                }
                c.resize(keep, 0);
                for t in 0..n {
                    self.ty.encode(&src[t * width + h * hd..][..hd], c)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_rewinds_and_reads_back_every_type() {
        let (nkv, hd) = (2, 64);
        let row =
            |t: usize| -> Vec<f32> { (0..nkv * hd).map(|i| ((i * 7 + t * 13) % 29) as f32 * 0.1 - 1.4).collect() };
        for ty in KvType::ALL {
            let mut c = KvCache::new(ty, nkv, hd, 5).unwrap();
            let k: Vec<f32> = (0..3).flat_map(row).collect();
            c.write(0, &k, &k).unwrap();
            assert_eq!(c.positions(), 3);
            // rewind to 1 and write 2 more: positions 0..3 again, the last two new
            let k2: Vec<f32> = (7..9).flat_map(row).collect();
            c.write(1, &k2, &k2).unwrap();
            assert_eq!(c.positions(), 3);
            let mut got = vec![0f32; hd];
            let mut want = Vec::new();
            ty.encode(&row(7)[hd..], &mut want).unwrap();
            ty.decode(&c.k[1][c.row_bytes..2 * c.row_bytes], &mut got).unwrap();
            let mut want_f = vec![0f32; hd];
            ty.decode(&want, &mut want_f).unwrap();
            assert_eq!(got, want_f, "{ty}");
            assert!(matches!(c.write(4, &k2, &k2), Err(Error::ContextOverflow { needed: 6, capacity: 5 })));
        }
    }
}
