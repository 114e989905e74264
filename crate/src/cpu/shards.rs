//! Row shards: more CPU threads where the executor cannot share memory with them (the browser:
//! stable Rust cannot build wasm threads, see BENCHMARKS.md). Every weight matrix is split into
//! `parts` contiguous row ranges ([`part`]); the engine keeps part 0 and runs the whole graph,
//! each other part lives in a [`Shard`] (its own wasm instance in its own worker). For a matmul,
//! or a group of matmuls reading the same input (Q/K/V, gate/up), the engine hands the input
//! to the shards over a [`Link`], computes its own rows, and takes theirs back.
//!
//! Exact: a shard computes its rows with the same [`super::Ops::matmul`] code as the engine
//! does for its own (and as one thread does for all), and every row's dot product depends on
//! that row and the input only, so the logits are bit-identical for any number of parts.

use super::{CpuWeight, MatIn, MatOut, Ops};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use std::cell::RefCell;
use std::ops::Range;

/// Part boundaries fall on multiples of this many rows.
pub const UNIT: usize = 8;

/// Set in a job's token count: the shards dot in integers ([`super::CpuDot::Int8`]).
pub const JOB_INT8: u32 = 1 << 31;

/// The rows part `i` of `parts` holds of a `rows`-row matrix: contiguous, in whole [`UNIT`]s
/// (the last part ends at `rows`), the first parts taking one unit more when they do not divide.
pub fn part(rows: usize, parts: usize, i: usize) -> Range<usize> {
    let parts = parts.max(1);
    let units = rows.div_ceil(UNIT);
    let (base, extra) = (units / parts, units % parts);
    let start = i * base + i.min(extra);
    let len = base + usize::from(i < extra);
    let clamp = |u: usize| (u * UNIT).min(rows);
    clamp(start)..clamp(start + len)
}

/// The engine's side of the connection to the shards (JS workers over a SharedArrayBuffer in
/// the browser). Shards are numbered `1..parts`; their outputs come back in that order.
///
/// A job is `[n_tokens, id_0, id_1, …]`: the ids of the weights that read the input
/// `[n_tokens, cols]` (`n_tokens` with [`JOB_INT8`] set on the 8-bit integer path). A shard's output is, per weight in order, `[n_tokens, its rows]`
/// row-major.
pub trait Link {
    /// Threads in all, the engine's included.
    fn parts(&self) -> usize;
    /// While loading: part `p`'s rows of weight `id` (`rows` is the whole matrix's count).
    fn load(&self, p: usize, id: u32, ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<()>;
    /// Every weight is sent; inputs will be at most `max_in` and each shard's output at most
    /// `max_out` f32s.
    fn ready(&self, max_in: usize, max_out: usize) -> Result<()>;
    /// Starts `job` on every shard with input `x`; returns at once.
    fn start(&self, job: &[u32], x: &[f32]) -> Result<()>;
    /// Waits for every shard of the started job: shard 1's output, then shard 2's, … in `out`.
    fn finish(&self, out: &mut [f32]) -> Result<()>;
}

/// The engine's shards: the link, and the first error it gave (every later call fails with it:
/// a shard that failed once holds weights no one else has).
pub struct Shards {
    parts: usize,
    link: std::rc::Rc<dyn Link>,
    next_id: u32,
    max_in: usize,
    max_out: usize,
    dead: RefCell<Option<String>>,
}

/// One destination of a grouped matmul: `y[dst][t · stride + off + r] (+)= w[r] · x[t]`.
pub(super) struct Out<'w> {
    pub(super) w: &'w CpuWeight,
    pub(super) dst: usize,
    pub(super) stride: usize,
    pub(super) off: usize,
}

impl Shards {
    pub fn new(link: std::rc::Rc<dyn Link>) -> Shards {
        Shards { parts: link.parts().max(1), link, next_id: 0, max_in: 0, max_out: 0, dead: RefCell::new(None) }
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    fn check(&self) -> Result<()> {
        match &*self.dead.borrow() {
            Some(m) => Err(Error::Worker(m.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, e: Error) -> Error {
        let m = match e {
            Error::Worker(m) => m,
            e => e.to_string(),
        };
        self.dead.borrow_mut().get_or_insert(m.clone());
        Error::Worker(m)
    }

    /// Sends `w`'s parts `1..` to the shards and keeps part 0 (or, `keep_whole`, every row:
    /// the embedding lookup reads any row of `token_embd`).
    pub(super) fn distribute(&mut self, w: &mut CpuWeight, keep_whole: bool) -> Result<()> {
        self.check()?;
        w.id = self.next_id;
        self.next_id += 1;
        for p in 1..self.parts {
            let r = part(w.rows, self.parts, p);
            let bytes = w.data.get(r.start * w.row_bytes..r.end * w.row_bytes).unwrap_or(&[]);
            self.link.load(p, w.id, w.ty, w.rows, w.cols, bytes).map_err(|e| self.fail(e))?;
        }
        if !keep_whole {
            w.data.truncate(part(w.rows, self.parts, 0).end * w.row_bytes);
            w.data.shrink_to_fit();
        }
        Ok(())
    }

    /// Loading is done: `max_tokens` per pass, `widest` the most columns of any weight and
    /// `group_rows` the most rows one job computes (the output layer, or a fused group).
    pub(super) fn ready(&mut self, max_tokens: usize, widest: usize, group_rows: usize) -> Result<()> {
        self.max_in = max_tokens * widest;
        // part 0 is the largest, so it bounds every shard's share of every weight
        self.max_out = max_tokens * (group_rows.div_ceil(self.parts) + 3 * UNIT);
        self.link.ready(self.max_in, self.max_out).map_err(|e| self.fail(e))
    }

    /// Runs every `outs` matmul of `x` (`n` tokens, each output's `w.cols` wide), the rows
    /// split over the parts, into `ys`.
    pub(super) fn matmuls(
        &self,
        ops: &Ops,
        x: &[f32],
        n: usize,
        ys: &mut [&mut [f32]],
        outs: &[Out],
        acc: bool,
    ) -> Result<()> {
        self.check()?;
        let cols = outs.first().map_or(0, |o| o.w.cols);
        let x = x.get(..n * cols).ok_or_else(|| Error::InvalidArgument("matmul input too short".into()))?;
        let mut job = Vec::with_capacity(1 + outs.len());
        job.push(n as u32 | if ops.dot == super::CpuDot::Int8 { JOB_INT8 } else { 0 });
        job.extend(outs.iter().map(|o| o.w.id));
        self.link.start(&job, x).map_err(|e| self.fail(e))?;
        let mut acts = Vec::new();
        for o in outs {
            let r = part(o.w.rows, self.parts, 0);
            let y = ys.get_mut(o.dst).ok_or_else(|| Error::InvalidArgument("matmul destination".into()))?;
            let a = ops.quantized(o.w, x, n, &mut acts);
            ops.matmul(
                o.w,
                r.clone(),
                MatIn { x, q8: a, n },
                MatOut { y, stride: o.stride, off: o.off + r.start, accumulate: acc },
            );
        }
        let remote: usize =
            (1..self.parts).map(|p| outs.iter().map(|o| part(o.w.rows, self.parts, p).len()).sum::<usize>()).sum();
        let mut buf = vec![0f32; n * remote];
        self.link.finish(&mut buf).map_err(|e| self.fail(e))?;
        // scatter: shard by shard, weight by weight, token-major (as the shards wrote them)
        let short = || Error::InvalidArgument("matmul output too short".into());
        let mut at = 0;
        for p in 1..self.parts {
            for o in outs {
                let r = part(o.w.rows, self.parts, p);
                let y = ys.get_mut(o.dst).ok_or_else(short)?;
                for t in 0..n {
                    let src = buf.get(at..at + r.len()).ok_or_else(short)?;
                    at += r.len();
                    let dst = y.get_mut(t * o.stride + o.off + r.start..).and_then(|s| s.get_mut(..r.len()));
                    for (d, v) in dst.ok_or_else(short)?.iter_mut().zip(src) {
                        *d = if acc { *d + v } else { *v };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A shard: part `part` of every weight, and the matmuls on it.
pub struct Shard {
    part: usize,
    parts: usize,
    simd: super::dot::Simd,
    pool: super::pool::Pool,
    weights: Vec<Option<CpuWeight>>,
}

impl Shard {
    pub fn new(part: usize, parts: usize) -> Result<Shard> {
        if part == 0 || part >= parts {
            return Err(Error::InvalidArgument(format!("shard {part} of {parts} (shards are 1..parts)")));
        }
        Ok(Shard {
            part,
            parts,
            simd: super::dot::Simd::detect(),
            pool: super::pool::Pool::new(1),
            weights: Vec::new(),
        })
    }

    /// Takes this shard's rows of weight `id` (`rows` × `cols` in all, of GGUF type `ty`).
    pub fn add(&mut self, id: u32, ty: u32, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<()> {
        let ty = GgmlType::from_id(ty, "shard weight")?;
        let r = part(rows, self.parts, self.part);
        let row_bytes = ty.bytes_for(cols as u64).unwrap_or(0) as usize;
        if !super::dot::supported(ty) || row_bytes == 0 || bytes.len() != r.len() * row_bytes {
            return Err(Error::InvalidArgument(format!(
                "shard weight {id}: {} bytes for rows {r:?} of {cols} {} values",
                bytes.len(),
                ty.name()
            )));
        }
        let i = id as usize;
        if self.weights.len() <= i {
            self.weights.resize_with(i + 1, || None);
        }
        self.weights[i] = Some(CpuWeight { ty, rows, cols, row_bytes, data: bytes, first: r.start, id });
        Ok(())
    }

    /// Runs a job (see [`Link`]) on input `x`: this shard's rows of each weight, `[n, part rows]` each.
    pub fn run(&self, job: &[u32], x: &[f32]) -> Result<Vec<f32>> {
        let bad = |m: String| Error::InvalidArgument(format!("shard job: {m}"));
        let (&n, ids) = job.split_first().ok_or_else(|| bad("empty".into()))?;
        let dot = if n & JOB_INT8 != 0 { super::CpuDot::Int8 } else { super::CpuDot::Exact };
        let n = (n & !JOB_INT8) as usize;
        let ops = Ops { simd: self.simd, dot, pool: &self.pool, shards: None };
        let mut ws = Vec::with_capacity(ids.len());
        for &id in ids {
            let w =
                self.weights.get(id as usize).and_then(Option::as_ref).ok_or_else(|| bad(format!("no weight {id}")))?;
            if x.len() != n * w.cols {
                return Err(bad(format!("{} inputs for {n} tokens of {} columns", x.len(), w.cols)));
            }
            ws.push(w);
        }
        let total: usize = ws.iter().map(|w| n * part(w.rows, self.parts, self.part).len()).sum();
        let mut out = vec![0f32; total];
        let mut at = 0;
        let mut acts = Vec::new();
        for w in ws {
            let r = part(w.rows, self.parts, self.part);
            let len = n * r.len();
            let a = ops.quantized(w, x, n, &mut acts);
            let y = &mut out[at..at + len];
            ops.matmul(w, r.clone(), MatIn { x, q8: a, n }, MatOut { y, stride: r.len(), off: 0, accumulate: false });
            at += len;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order_on_unit_boundaries() {
        for rows in [0, 1, 7, 8, 9, 64, 576, 1536, 49152, 49153, 100_003] {
            for parts in 1..=7 {
                let ps: Vec<_> = (0..parts).map(|i| part(rows, parts, i)).collect();
                assert_eq!(ps[0].start, 0);
                assert_eq!(ps[parts - 1].end, rows, "rows {rows}, parts {parts}: {ps:?}");
                for w in ps.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "rows {rows}, parts {parts}: {ps:?}");
                }
                for p in &ps {
                    assert!(p.start <= p.end);
                    // (parts past the last unit are empty, at the end)
                    assert!(p.start % UNIT == 0 || p.start == rows, "rows {rows}, parts {parts}: {ps:?}");
                    assert!(p.end % UNIT == 0 || p.end == rows, "rows {rows}, parts {parts}: {ps:?}");
                }
                // balanced: whole units differ by at most one (the last part may end in a
                // partial unit), part 0 the largest
                let lens: Vec<_> = ps.iter().map(|p| p.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo < 2 * UNIT, "rows {rows}, parts {parts}: {lens:?}");
                assert_eq!(lens[0], *hi);
            }
        }
    }

    #[test]
    fn shard_rejects_bytes_that_do_not_match_its_rows() {
        let mut s = Shard::new(1, 2).unwrap();
        // 16 rows of 32 Q8_0 values (34 bytes a row): part 1 is rows 8..16
        assert!(s.add(0, GgmlType::Q8_0.id(), 16, 32, vec![0; 8 * 34]).is_ok());
        assert!(s.add(1, GgmlType::Q8_0.id(), 16, 32, vec![0; 7 * 34]).is_err());
        assert!(s.run(&[1, 0], &[0.0; 32]).is_ok());
        assert!(s.run(&[1, 0], &[0.0; 31]).is_err(), "input of the wrong width");
        assert!(s.run(&[1, 5], &[0.0; 32]).is_err(), "unknown weight");
        assert!(Shard::new(0, 2).is_err() && Shard::new(2, 2).is_err());
    }
}
