//! Row shards: more CPU threads where the executor cannot share memory with them (the browser:
//! stable Rust cannot build wasm threads, see BENCHMARKS.md). Every weight matrix, token_embd
//! and the output layer included, is split into `parts` contiguous row ranges ([`part`]); the
//! engine keeps part 0 and runs the whole graph, each other part lives in a [`Shard`] (its own
//! wasm instance in its own worker), so no instance holds a whole matrix and a model larger
//! than one wasm memory (4 GiB) loads over enough threads (`super::check_fits` plans each
//! instance's share). For a matmul, or a group of matmuls reading the same input (Q/K/V,
//! gate/up), the engine hands the input to the shards over a [`Link`], computes its own rows,
//! and takes theirs back; for the embedding lookup it asks the holders of the tokens' rows of
//! token_embd for those rows, decoded ([`JOB_EMBED`]).
//!
//! Attention is split too, by KV heads ([`Split::heads`], [`JOB_ATTN`]): each instance keeps
//! the KV cache of its heads only and attends with the query heads of their groups, so the
//! engine no longer attends alone while the shards wait, and the cache is spread over the
//! instances as the weights are. The engine ropes Q and K and hands every part the new rows.
//!
//! Weights are streamed: the engine reads each tensor in pieces and posts every shard its
//! bytes of each piece as it arrives ([`Link::load`] appends), keeping only part 0, so it
//! never holds a whole tensor, even while loading.
//!
//! Exact: a shard computes its rows with the same [`super::Ops::matmul`] code as the engine
//! does for its own (and as one thread does for all), and every row's dot product depends on
//! that row and the input only; an embedding row is decoded by the same `dot::decode_row`
//! wherever it lives. So the logits are bit-identical for any number of parts.

use super::{CpuWeight, MatIn, MatOut, Ops};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use std::cell::RefCell;
use std::ops::Range;

/// Part boundaries fall on multiples of this many rows.
pub const UNIT: usize = 8;

/// Set in a job's token count: the shards dot in integers ([`super::CpuDot::Int8`]).
pub const JOB_INT8: u32 = 1 << 31;

/// Set in a job's token count: an embedding lookup `[n, id]` of weight `id` (token_embd), the
/// input the `n` token ids as f32s (exact below 2^24); each shard answers with the decoded
/// rows it holds, `cols` f32s each, in the tokens' order.
pub const JOB_EMBED: u32 = 1 << 30;

/// Set in a job's token count: a job `[n, gate, up]` of two weights with the same rows answers
/// `silu(gate · x) ⊙ (up · x)` of its rows ([`silu_mul`]), `[n, its rows]`: half the rows to
/// send back, and the shards do their share of the activation.
pub const JOB_SILU: u32 = 1 << 29;

/// Set in a job's token count: attention of the shard's KV heads, the job
/// `[n, layer, pos, ..AttnShape::words]`, the input the `n` tokens' roped Q, K and V rows
/// (`[n, (n_head + 2·n_kv)·head_dim]`, as the QKV matmul writes them). The shard stores its
/// heads' K and V at `pos..pos + n` (what its cache held from `pos` on is dropped, as
/// [`super::kv::KvCache::write`] does) and answers the attention of its query heads,
/// `[n, its query heads · head_dim]`, then the KV bytes it read as two f32s (`lo, hi`, 24 bits
/// each, exact).
pub const JOB_ATTN: u32 = 1 << 28;

/// The flags of a job's first word (`jobTokens` in pkg/shards.js masks them off).
const JOB_FLAGS: u32 = JOB_INT8 | JOB_EMBED | JOB_SILU | JOB_ATTN;

/// The attention's shape and KV cache, as every attention job tells the shards (a shard makes
/// its caches at the first such job; they hold only its heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    pub kv_type: crate::kv::KvType,
    /// The caches' capacity in positions.
    pub context: usize,
}

impl AttnShape {
    const WORDS: usize = 6;

    /// The attention of model `cfg` over a KV cache of `kv_type` holding `context` positions.
    pub fn of(cfg: &crate::gguf::LlamaConfig, kv_type: crate::kv::KvType, context: usize) -> AttnShape {
        AttnShape {
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_kv: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            kv_type,
            context,
        }
    }

    fn words(&self) -> [u32; Self::WORDS] {
        let ty = crate::kv::KvType::ALL.iter().position(|t| *t == self.kv_type).unwrap_or(0);
        [self.n_layer, self.n_head, self.n_kv, self.head_dim, ty, self.context].map(|v| v as u32)
    }

    fn from_words(w: &[u32]) -> Result<AttnShape> {
        let bad = || Error::InvalidArgument(format!("shard job: attention shape {w:?}"));
        let &[n_layer, n_head, n_kv, head_dim, ty, context] = w else { return Err(bad()) };
        let kv_type = *crate::kv::KvType::ALL.get(ty as usize).ok_or_else(bad)?;
        let s = AttnShape {
            n_layer: n_layer as usize,
            n_head: n_head as usize,
            n_kv: n_kv as usize,
            head_dim: head_dim as usize,
            kv_type,
            context: context as usize,
        };
        if s.n_kv == 0 || s.head_dim == 0 || !s.n_head.is_multiple_of(s.n_kv) {
            return Err(bad());
        }
        Ok(s)
    }

    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_kv.max(1)
    }

    /// Values of one token's Q, K and V rows.
    pub fn qkv_width(&self) -> usize {
        (self.n_head + 2 * self.n_kv) * self.head_dim
    }

    /// The columns of the query heads of KV heads `heads`, in a row of Q (or of the attention's
    /// output).
    pub fn q_cols(&self, heads: &Range<usize>) -> Range<usize> {
        let w = self.group() * self.head_dim;
        heads.start * w..heads.end * w
    }
}

/// Stores the K and V rows of KV heads `heads` of the `n` tokens of `qkv` (roped, `[n,
/// shape.qkv_width()]` as the QKV matmul lays them out) at `pos..pos + n` of `cache`, which
/// holds those heads only, and writes the attention of their query heads to `out`
/// (`[n, shape.q_cols(heads).len()]`, exactly); returns the KV bytes read. The engine and every shard
/// attend with this one function, so the bits do not depend on the split.
pub(super) fn attend_heads(
    (simd, pool): (super::dot::Simd, &super::pool::Pool),
    cache: &mut super::kv::KvCache,
    shape: &AttnShape,
    heads: Range<usize>,
    (pos, n): (usize, usize),
    qkv: &[f32],
    out: &mut [f32],
) -> Result<u64> {
    let (hd, width) = (shape.head_dim, shape.qkv_width());
    let (q_dim, kv_dim) = (shape.n_head * hd, shape.n_kv * hd);
    let qkv = qkv.get(..n * width).ok_or_else(|| Error::InvalidArgument("attention input too short".into()))?;
    let (k_at, v_at) = (q_dim + heads.start * hd, q_dim + kv_dim + heads.start * hd);
    let kv_len = heads.len() * hd;
    let cols = shape.q_cols(&heads);
    if out.len() != n * cols.len() {
        return Err(Error::InvalidArgument(format!("attention output of {} for {n} tokens of {cols:?}", out.len())));
    }
    let (mut k, mut v, mut q) = (Vec::new(), Vec::new(), Vec::new());
    gather(qkv, width, k_at..k_at + kv_len, &mut k);
    gather(qkv, width, v_at..v_at + kv_len, &mut v);
    cache.write(pos, &k, &v)?;
    if heads.is_empty() {
        return Ok(0);
    }
    gather(qkv, width, cols, &mut q);
    let queries = super::attention::Queries { q: &q, n_head: heads.len() * shape.group(), pos, n };
    super::attention::attention(simd, pool, cache, &queries, out)
}

/// Copies columns `cols` of each of the `width`-wide rows of `src` into `dst` (rows of
/// `cols.len()`).
pub(super) fn gather(src: &[f32], width: usize, cols: Range<usize>, dst: &mut Vec<f32>) {
    dst.clear();
    for row in src.chunks_exact(width) {
        dst.extend_from_slice(&row[cols.clone()]);
    }
}

/// Writes the rows of `src` (`cols.len()` wide) into columns `cols` of the `width`-wide rows
/// of `dst`.
pub(super) fn scatter(src: &[f32], width: usize, cols: Range<usize>, dst: &mut [f32]) {
    if cols.is_empty() {
        return;
    }
    for (row, s) in dst.chunks_exact_mut(width).zip(src.chunks_exact(cols.len())) {
        row[cols.clone()].copy_from_slice(s);
    }
}

/// The two f32s that carry a byte count (24 bits each, exact) after an attention answer.
fn bytes_words(b: u64) -> [f32; 2] {
    [(b & 0xff_ffff) as f32, ((b >> 24) & 0xff_ffff) as f32]
}

fn words_bytes(w: &[f32]) -> u64 {
    match w {
        &[lo, hi] => lo as u64 | (hi as u64) << 24,
        _ => 0,
    }
}

/// `g ← silu(g) · u`: the feed-forward activation, the same code wherever the rows live (so
/// the bits do not depend on the split).
pub(super) fn silu_mul(g: &mut [f32], u: &[f32]) {
    for (g, u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Most threads (engine and shards) a model is split over (`MAX_PARTS` in pkg/shards.js).
pub const MAX_PARTS: usize = 32;

/// Token ids an embedding job carries as f32s must be exact.
const MAX_EMBED_ROWS: usize = 1 << 24;

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

/// [`Split::lead`] of an even split.
pub const EVEN: u32 = 1000;

/// How a model's rows are split: over `parts` threads, part 0 (the engine's, which also runs
/// everything that is not a matmul) weighted `lead` / [`EVEN`] of each other part's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub parts: usize,
    pub lead: u32,
}

impl Split {
    pub fn even(parts: usize) -> Split {
        Split { parts: parts.max(1), lead: EVEN }
    }

    /// Part `i`'s rows of a `rows`-row matrix ([`part`] when even): contiguous, whole
    /// [`UNIT`]s; part 0 takes its weighted share (rounded), the others split the rest as
    /// [`part`] does.
    pub fn part(&self, rows: usize, i: usize) -> Range<usize> {
        let parts = self.parts.max(1);
        if self.lead == EVEN || parts == 1 {
            return part(rows, parts, i);
        }
        let units = rows.div_ceil(UNIT);
        let lead = self.lead as usize;
        let weights = lead + (parts - 1) * EVEN as usize;
        let first = ((units * lead + weights / 2) / weights).min(units);
        let clamp = |u: usize| (u * UNIT).min(rows);
        if i == 0 {
            return 0..clamp(first);
        }
        let (rest, j) = (units - first, i - 1);
        let (base, extra) = (rest / (parts - 1), rest % (parts - 1));
        let start = first + j * base + j.min(extra);
        clamp(start)..clamp(start + base + usize::from(j < extra))
    }

    /// Part `i`'s KV heads of `n_kv` (with the query heads of their groups): [`Split::part`]
    /// in whole heads, so weighted as the rows are; contiguous, in order. An even split hands
    /// the heads that do not divide to the last parts, not the first: part 0 is the engine,
    /// which also runs everything else (SmolLM2's 3 heads over 2 threads: 1 and 2).
    pub fn heads(&self, n_kv: usize, i: usize) -> Range<usize> {
        let parts = self.parts.max(1);
        if self.lead == EVEN && i < parts {
            let r = part(n_kv * UNIT, parts, parts - 1 - i);
            return n_kv - r.end / UNIT..n_kv - r.start / UNIT;
        }
        let r = self.part(n_kv * UNIT, i);
        r.start / UNIT..r.end / UNIT
    }

    /// The most f32s one token's attention answer takes on any shard (and the byte count's two).
    pub fn attention_out(&self, shape: &AttnShape) -> usize {
        (1..self.parts).map(|p| shape.q_cols(&self.heads(shape.n_kv, p)).len()).max().unwrap_or(0) + 2
    }
}

/// The shards' exchange buffer: f32s of the input and of each shard's output, for `max_tokens`
/// per pass, `widest` the most values of any job's input row (a weight's columns, or the
/// attention's Q, K and V), `group_rows` the most rows of one job, `embd` the embedding width
/// (a lookup may find every token's row in one shard) and `att` [`Split::attention_out`].
pub fn exchange(
    split: Split,
    max_tokens: usize,
    widest: usize,
    group_rows: usize,
    embd: usize,
    att: usize,
) -> (usize, usize) {
    // the largest part of the group's rows, plus what rounding each of its (up to 3) weights
    // to whole units may add
    let most = (0..split.parts).map(|i| split.part(group_rows, i).len()).max().unwrap_or(0);
    let rows = (most + 3 * 2 * UNIT).max(embd).max(att);
    (max_tokens * widest, max_tokens * rows)
}

/// The engine's side of the connection to the shards (JS workers over a SharedArrayBuffer in
/// the browser). Shards are numbered `1..parts`; their outputs come back in that order.
///
/// A job is `[n_tokens, id_0, id_1, …]`: the ids of the weights that read the input
/// `[n_tokens, cols]` (`n_tokens` with [`JOB_INT8`] set on the 8-bit integer path). A shard's
/// output is, per weight in order, `[n_tokens, its rows]` row-major. (An embedding lookup:
/// see [`JOB_EMBED`].)
pub trait Link {
    /// Threads in all, the engine's included.
    fn parts(&self) -> usize;
    /// Part 0's weight in the split ([`Split::lead`]); the shards must have been made with it.
    fn lead(&self) -> u32 {
        EVEN
    }
    /// While loading: the next piece of part `p`'s rows of weight `id` (`rows` is the whole
    /// matrix's count); the pieces of one weight arrive in order and add up to its rows.
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
    split: Split,
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
        let split = Split { parts: link.parts().max(1), lead: link.lead() };
        Shards { parts: split.parts, split, link, next_id: 0, max_in: 0, max_out: 0, dead: RefCell::new(None) }
    }

    pub fn split(&self) -> Split {
        self.split
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

    /// Names `w` for the shards; returns the bytes of it the engine keeps (part 0's rows), the
    /// rest to be sent piece by piece ([`Shards::send`]).
    pub(super) fn register(&mut self, w: &mut CpuWeight) -> Result<usize> {
        self.check()?;
        w.id = self.next_id;
        self.next_id += 1;
        // every shard learns every weight, even one of whose rows it holds none
        for p in 1..self.parts {
            self.link.load(p, w.id, w.ty, w.rows, w.cols, &[]).map_err(|e| self.fail(e))?;
        }
        Ok(self.split.part(w.rows, 0).end * w.row_bytes)
    }

    /// Sends the shards their bytes of `piece`, the bytes of weight `w` from byte `at` on.
    pub(super) fn send(&self, w: &CpuWeight, at: usize, piece: &[u8]) -> Result<()> {
        self.check()?;
        let end = at + piece.len();
        for p in 1..self.parts {
            let r = self.split.part(w.rows, p);
            let (lo, hi) = ((r.start * w.row_bytes).max(at), (r.end * w.row_bytes).min(end));
            if lo < hi {
                self.link.load(p, w.id, w.ty, w.rows, w.cols, &piece[lo - at..hi - at]).map_err(|e| self.fail(e))?;
            }
        }
        Ok(())
    }

    /// Loading is done: `max_tokens` per pass, `widest` the most columns of any weight,
    /// `group_rows` the most rows one job computes (the output layer, or a fused group) and
    /// `embd` the embedding width.
    pub(super) fn ready(
        &mut self,
        max_tokens: usize,
        widest: usize,
        group_rows: usize,
        embd: usize,
        att: usize,
    ) -> Result<()> {
        (self.max_in, self.max_out) = exchange(self.split, max_tokens, widest, group_rows, embd, att);
        self.link.ready(self.max_in, self.max_out).map_err(|e| self.fail(e))
    }

    /// Decodes the rows of `w` (token_embd) of every token of `ids` into `x` (`[n, w.cols]`):
    /// part 0's here, the others by their holders in one job.
    pub(super) fn embed(&self, w: &CpuWeight, ids: &[u32], x: &mut [f32]) -> Result<()> {
        self.check()?;
        let cols = w.cols;
        let holder = |id: u32| (0..self.parts).find(|&p| self.split.part(w.rows, p).contains(&(id as usize)));
        let mut remote = 0;
        for (&id, row) in ids.iter().zip(x.chunks_exact_mut(cols)) {
            match holder(id) {
                None => return Err(Error::TokenOutOfVocab { id, vocab: w.rows }),
                Some(0) => super::dot::decode_row(w.ty, w.row(id as usize).unwrap_or(&[]), row),
                Some(_) => remote += 1,
            }
        }
        if remote == 0 {
            return Ok(());
        }
        if w.rows > MAX_EMBED_ROWS {
            return Err(Error::UnsupportedModel(format!("{} token_embd rows for the CPU shards", w.rows)));
        }
        let xs: Vec<f32> = ids.iter().map(|&id| id as f32).collect();
        self.link.start(&[ids.len() as u32 | JOB_EMBED, w.id], &xs).map_err(|e| self.fail(e))?;
        let mut buf = vec![0f32; remote * cols];
        self.link.finish(&mut buf).map_err(|e| self.fail(e))?;
        // shard by shard, each its tokens in order (as the shards wrote them)
        let mut rows = buf.chunks_exact(cols);
        for p in 1..self.parts {
            for (&id, row) in ids.iter().zip(x.chunks_exact_mut(cols)) {
                if holder(id) == Some(p) {
                    let got = rows.next().ok_or_else(|| Error::InvalidArgument("embedding rows too short".into()))?;
                    row.copy_from_slice(got);
                }
            }
        }
        Ok(())
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
            let r = self.split.part(o.w.rows, 0);
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
            (1..self.parts).map(|p| outs.iter().map(|o| self.split.part(o.w.rows, p).len()).sum::<usize>()).sum();
        let mut buf = vec![0f32; n * remote];
        self.link.finish(&mut buf).map_err(|e| self.fail(e))?;
        // scatter: shard by shard, weight by weight, token-major (as the shards wrote them)
        let short = || Error::InvalidArgument("matmul output too short".into());
        let mut at = 0;
        for p in 1..self.parts {
            for o in outs {
                let r = self.split.part(o.w.rows, p);
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

impl Shards {
    /// Hands the shards attention job `layer` at `pos` for the `n` tokens of `qkv` (roped
    /// Q, K and V rows, [`JOB_ATTN`]); the engine then attends with its own heads and calls
    /// [`Shards::finish_attention`].
    pub(super) fn start_attention(
        &self,
        shape: &AttnShape,
        layer: usize,
        pos: usize,
        n: usize,
        qkv: &[f32],
    ) -> Result<()> {
        self.check()?;
        let x = qkv
            .get(..n * shape.qkv_width())
            .ok_or_else(|| Error::InvalidArgument("attention input too short".into()))?;
        let mut job = vec![n as u32 | JOB_ATTN, layer as u32, pos as u32];
        job.extend(shape.words());
        self.link.start(&job, x).map_err(|e| self.fail(e))
    }

    /// Takes the shards' attention of their query heads into their columns of `att`
    /// (`[n, n_head · head_dim]`); returns the KV bytes they read.
    pub(super) fn finish_attention(&self, shape: &AttnShape, n: usize, att: &mut [f32]) -> Result<u64> {
        let q_dim = shape.n_head * shape.head_dim;
        let cols: Vec<_> = (1..self.parts).map(|p| shape.q_cols(&self.split.heads(shape.n_kv, p))).collect();
        let mut buf = vec![0f32; cols.iter().map(|c| n * c.len() + 2).sum()];
        self.link.finish(&mut buf).map_err(|e| self.fail(e))?;
        let att =
            att.get_mut(..n * q_dim).ok_or_else(|| Error::InvalidArgument("attention output too short".into()))?;
        let (mut rest, mut read) = (&buf[..], 0);
        for c in cols {
            let (rows, tail) = rest.split_at(n * c.len());
            let (bytes, tail) = tail.split_at(2);
            scatter(rows, q_dim, c, att);
            read += words_bytes(bytes);
            rest = tail;
        }
        Ok(read)
    }

    /// `ffn = silu(gate · x) ⊙ (up · x)` for `n` tokens (`[n, gate.rows]`; `up` is scratch of
    /// the same size): each part computes its rows and their activation ([`JOB_SILU`]).
    pub(super) fn gate_up_silu(
        &self,
        ops: &Ops,
        x: &[f32],
        n: usize,
        (gate, up): (&CpuWeight, &CpuWeight),
        ffn: &mut [f32],
        upbuf: &mut [f32],
    ) -> Result<()> {
        self.check()?;
        let (rows, cols) = (gate.rows, gate.cols);
        let short = || Error::InvalidArgument("feed-forward buffers too short".into());
        if (up.rows, up.cols) != (rows, cols) || ffn.len() < n * rows || upbuf.len() < n * rows {
            return Err(short());
        }
        let x = x.get(..n * cols).ok_or_else(short)?;
        let int8 = if ops.dot == super::CpuDot::Int8 { JOB_INT8 } else { 0 };
        self.link.start(&[n as u32 | int8 | JOB_SILU, gate.id, up.id], x).map_err(|e| self.fail(e))?;
        let r = self.split.part(rows, 0);
        let mut acts = Vec::new();
        for (w, y) in [(gate, &mut *ffn), (up, &mut *upbuf)] {
            let a = ops.quantized(w, x, n, &mut acts);
            let out = MatOut { y, stride: rows, off: r.start, accumulate: false };
            ops.matmul(w, r.clone(), MatIn { x, q8: a, n }, out);
        }
        for t in 0..n {
            let at = t * rows + r.start;
            silu_mul(&mut ffn[at..at + r.len()], &upbuf[at..at + r.len()]);
        }
        let remote: usize = (1..self.parts).map(|p| self.split.part(rows, p).len()).sum();
        let mut buf = vec![0f32; n * remote];
        self.link.finish(&mut buf).map_err(|e| self.fail(e))?;
        // shard by shard, token-major (as the shards wrote them)
        let mut at = 0;
        for p in 1..self.parts {
            let r = self.split.part(rows, p);
            for t in 0..n {
                let src = buf.get(at..at + r.len()).ok_or_else(short)?;
                at += r.len();
                ffn[t * rows + r.start..][..r.len()].copy_from_slice(src);
            }
        }
        Ok(())
    }
}

/// A shard: part `part` of every weight, and the matmuls on it.
pub struct Shard {
    part: usize,
    split: Split,
    simd: super::dot::Simd,
    pool: super::pool::Pool,
    weights: Vec<Option<CpuWeight>>,
    /// The KV caches of this shard's heads, one per layer, made at the first attention job.
    kv: RefCell<Option<(AttnShape, Vec<super::kv::KvCache>)>>,
}

impl Shard {
    pub fn new(part: usize, parts: usize) -> Result<Shard> {
        Shard::with_lead(part, parts, EVEN)
    }

    /// Shard `part` of a split whose part 0 is weighted `lead` ([`Split`]).
    pub fn with_lead(part: usize, parts: usize, lead: u32) -> Result<Shard> {
        if part == 0 || part >= parts {
            return Err(Error::InvalidArgument(format!("shard {part} of {parts} (shards are 1..parts)")));
        }
        if lead == 0 || lead > 4 * EVEN {
            return Err(Error::InvalidArgument(format!("part 0's weight {lead} (1..={})", 4 * EVEN)));
        }
        Ok(Shard {
            part,
            split: Split { parts, lead },
            simd: super::dot::Simd::detect(),
            pool: super::pool::Pool::new(1),
            weights: Vec::new(),
            kv: RefCell::new(None),
        })
    }

    /// Takes the next piece of this shard's rows of weight `id` (`rows` × `cols` in all, of
    /// GGUF type `ty`): pieces arrive in order, the first reserves the whole part.
    pub fn add(&mut self, id: u32, ty: u32, rows: usize, cols: usize, bytes: &[u8]) -> Result<()> {
        let ty = GgmlType::from_id(ty, "shard weight")?;
        let r = self.split.part(rows, self.part);
        let row_bytes = ty.bytes_for(cols as u64).unwrap_or(0) as usize;
        let bad = |held: usize| {
            Error::InvalidArgument(format!(
                "shard weight {id}: {} more bytes after {held} for rows {r:?} of {cols} {} values",
                bytes.len(),
                ty.name()
            ))
        };
        if !super::dot::supported(ty) || row_bytes == 0 {
            return Err(bad(0));
        }
        let want = r.len() * row_bytes;
        let i = id as usize;
        if self.weights.len() <= i {
            self.weights.resize_with(i + 1, || None);
        }
        let w = match &mut self.weights[i] {
            Some(w) if (w.ty, w.rows, w.cols) == (ty, rows, cols) => w,
            Some(w) => return Err(bad(w.data.len())),
            slot @ None => {
                let mut data = Vec::new();
                data.try_reserve_exact(want)
                    .map_err(|_| Error::OutOfMemory(format!("{want} bytes for shard weight {id}")))?;
                slot.insert(CpuWeight { ty, rows, cols, row_bytes, data, first: r.start, id })
            }
        };
        if w.data.len() + bytes.len() > want {
            return Err(bad(w.data.len()));
        }
        w.data.extend_from_slice(bytes);
        Ok(())
    }

    /// KV-cache bytes this shard holds (its heads', every layer).
    pub fn kv_bytes(&self) -> usize {
        self.kv
            .borrow()
            .as_ref()
            .map_or(0, |(_, caches)| caches.iter().map(|c| c.k.iter().chain(&c.v).map(Vec::len).sum::<usize>()).sum())
    }

    /// Weight bytes this shard holds.
    pub fn held_bytes(&self) -> usize {
        self.weights.iter().flatten().map(|w| w.data.len()).sum()
    }

    /// Runs a job (see [`Link`]) on input `x`: this shard's rows of each weight, `[n, part rows]` each.
    pub fn run(&self, job: &[u32], x: &[f32]) -> Result<Vec<f32>> {
        let bad = |m: String| Error::InvalidArgument(format!("shard job: {m}"));
        let (&n, ids) = job.split_first().ok_or_else(|| bad("empty".into()))?;
        let dot = if n & JOB_INT8 != 0 { super::CpuDot::Int8 } else { super::CpuDot::Exact };
        let (embed, silu, n) = (n & JOB_EMBED != 0, n & JOB_SILU != 0, (n & !JOB_FLAGS) as usize);
        if job[0] & JOB_ATTN != 0 {
            return self.attention(n, ids, x);
        }
        let ops = Ops { simd: self.simd, dot, pool: &self.pool, shards: None };
        let mut ws = Vec::with_capacity(ids.len());
        for &id in ids {
            let w =
                self.weights.get(id as usize).and_then(Option::as_ref).ok_or_else(|| bad(format!("no weight {id}")))?;
            let r = self.split.part(w.rows, self.part);
            if w.data.len() != r.len() * w.row_bytes {
                return Err(bad(format!("weight {id} has {} of its {} bytes", w.data.len(), r.len() * w.row_bytes)));
            }
            if embed {
                return self.embed(w, x.get(..n).ok_or_else(|| bad(format!("{} ids for {n} tokens", x.len())))?);
            }
            if x.len() != n * w.cols {
                return Err(bad(format!("{} inputs for {n} tokens of {} columns", x.len(), w.cols)));
            }
            ws.push(w);
        }
        if silu {
            return self.silu(&ops, &ws, x, n);
        }
        let total: usize = ws.iter().map(|w| n * self.split.part(w.rows, self.part).len()).sum();
        let mut out = vec![0f32; total];
        let mut at = 0;
        let mut acts = Vec::new();
        for w in ws {
            let r = self.split.part(w.rows, self.part);
            let len = n * r.len();
            let a = ops.quantized(w, x, n, &mut acts);
            let y = &mut out[at..at + len];
            ops.matmul(w, r.clone(), MatIn { x, q8: a, n }, MatOut { y, stride: r.len(), off: 0, accumulate: false });
            at += len;
        }
        Ok(out)
    }

    /// A [`JOB_ATTN`] job (`words` = `[layer, pos, ..AttnShape]`): stores this shard's heads'
    /// K and V and answers its query heads' attention, then the KV bytes read.
    fn attention(&self, n: usize, words: &[u32], x: &[f32]) -> Result<Vec<f32>> {
        let bad = |m: String| Error::InvalidArgument(format!("shard job: attention {m}"));
        let (&[layer, pos], shape) = words.split_first_chunk::<2>().ok_or_else(|| bad("without a layer".into()))?;
        let (layer, pos, shape) = (layer as usize, pos as usize, AttnShape::from_words(shape)?);
        let (hd, width) = (shape.head_dim, shape.qkv_width());
        if layer >= shape.n_layer || x.len() != n * width {
            return Err(bad(format!("of layer {layer} with {} inputs for {n} tokens of {width}", x.len())));
        }
        let heads = self.split.heads(shape.n_kv, self.part);
        let mut kv = self.kv.borrow_mut();
        if kv.as_ref().is_none_or(|(s, _)| *s != shape) {
            let caches = (0..shape.n_layer)
                .map(|_| super::kv::KvCache::new(shape.kv_type, heads.len(), hd, shape.context))
                .collect::<Result<Vec<_>>>()?;
            *kv = Some((shape, caches));
        }
        let Some((_, caches)) = kv.as_mut() else { return Err(bad("caches".into())) };
        let len = n * shape.q_cols(&heads).len();
        let mut out = vec![0f32; len + 2];
        let at = &mut out[..len];
        let read = attend_heads((self.simd, &self.pool), &mut caches[layer], &shape, heads, (pos, n), x, at)?;
        out[len..].copy_from_slice(&bytes_words(read));
        Ok(out)
    }

    /// A [`JOB_SILU`] job: `silu(gate · x) ⊙ (up · x)` of this shard's rows, `[n, rows]`.
    fn silu(&self, ops: &Ops, ws: &[&CpuWeight], x: &[f32], n: usize) -> Result<Vec<f32>> {
        let &[gate, up] = ws else {
            return Err(Error::InvalidArgument(format!("shard job: silu of {} weights", ws.len())));
        };
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(Error::InvalidArgument("shard job: silu of weights of other shapes".into()));
        }
        let r = self.split.part(gate.rows, self.part);
        let (mut g, mut u) = (vec![0f32; n * r.len()], vec![0f32; n * r.len()]);
        let mut acts = Vec::new();
        for (w, y) in [(gate, &mut g), (up, &mut u)] {
            let a = ops.quantized(w, x, n, &mut acts);
            let out = MatOut { y, stride: r.len(), off: 0, accumulate: false };
            ops.matmul(w, r.clone(), MatIn { x, q8: a, n }, out);
        }
        silu_mul(&mut g, &u);
        Ok(g)
    }

    /// The decoded rows of `w` this shard holds for the token ids `ids` (as f32s), in order.
    fn embed(&self, w: &CpuWeight, ids: &[f32]) -> Result<Vec<f32>> {
        let r = self.split.part(w.rows, self.part);
        let mut out = Vec::new();
        for &id in ids {
            if !(id >= 0.0 && id.fract() == 0.0 && (id as usize) < w.rows) {
                return Err(Error::InvalidArgument(format!("shard job: token id {id} of {} rows", w.rows)));
            }
            if let Some(row) = r.contains(&(id as usize)).then(|| w.row(id as usize)).flatten() {
                let at = out.len();
                out.resize(at + w.cols, 0.0);
                super::dot::decode_row(w.ty, row, &mut out[at..]);
            }
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
    fn a_weighted_split_covers_the_rows_in_order_with_part_0_near_its_share() {
        for rows in [0, 1, 7, 8, 9, 64, 576, 1536, 2048, 8192, 49153, 128_256] {
            for parts in 1..=5 {
                assert_eq!(
                    (0..parts).map(|i| Split::even(parts).part(rows, i)).collect::<Vec<_>>(),
                    (0..parts).map(|i| part(rows, parts, i)).collect::<Vec<_>>(),
                    "even is part()"
                );
                for lead in [1, 500, 800, 950, 1200, 4000] {
                    let s = Split { parts, lead };
                    let ps: Vec<_> = (0..parts).map(|i| s.part(rows, i)).collect();
                    assert_eq!(ps[0].start, 0);
                    assert_eq!(ps[parts - 1].end, rows, "rows {rows}, {s:?}: {ps:?}");
                    for w in ps.windows(2) {
                        assert_eq!(w[0].end, w[1].start, "rows {rows}, {s:?}: {ps:?}");
                    }
                    for p in &ps {
                        assert!(p.start % UNIT == 0 || p.start == rows, "rows {rows}, {s:?}: {ps:?}");
                    }
                    if parts > 1 {
                        // part 0 within a unit of its weighted share of the units
                        let units = rows.div_ceil(UNIT) as f64;
                        let want = units * lead as f64 / (lead as f64 + (parts - 1) as f64 * EVEN as f64);
                        let got = ps[0].len().div_ceil(UNIT) as f64;
                        assert!((got - want).abs() <= 1.0, "rows {rows}, {s:?}: {ps:?}");
                        // the others within a unit of one another (the last may end short)
                        let lens: Vec<_> = ps[1..].iter().map(|p| p.len()).collect();
                        let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                        assert!(hi - lo < 2 * UNIT, "rows {rows}, {s:?}: {lens:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn kv_heads_are_split_in_order_the_engine_taking_no_more_than_an_even_share() {
        for n_kv in 1..=9 {
            for parts in 1..=5 {
                for lead in [EVEN, 300, 1300] {
                    let s = Split { parts, lead };
                    let hs: Vec<_> = (0..parts).map(|i| s.heads(n_kv, i)).collect();
                    assert_eq!((hs[0].start, hs[parts - 1].end), (0, n_kv), "{n_kv} heads, {s:?}: {hs:?}");
                    for w in hs.windows(2) {
                        assert_eq!(w[0].end, w[1].start, "{n_kv} heads, {s:?}: {hs:?}");
                    }
                    if lead == EVEN {
                        // within one of each other, the remainder on the last parts
                        let lens: Vec<_> = hs.iter().map(|h| h.len()).collect();
                        assert!(
                            lens.windows(2).all(|w| w[0] <= w[1] && w[1] - w[0] <= 1),
                            "{n_kv} heads, {s:?}: {lens:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(Split::even(2).heads(3, 0), 0..1, "SmolLM2: the engine 1 of 3 heads");
        assert_eq!(Split::even(2).heads(8, 1), 4..8, "Llama 3.2 1B: 4 and 4");
    }

    #[test]
    fn shard_rejects_bytes_that_do_not_match_its_rows() {
        let mut s = Shard::new(1, 2).unwrap();
        // 16 rows of 32 Q8_0 values (34 bytes a row): part 1 is rows 8..16, in pieces
        assert!(s.add(0, GgmlType::Q8_0.id(), 16, 32, &[0; 3 * 34 + 5]).is_ok());
        assert!(s.run(&[1, 0], &[0.0; 32]).is_err(), "a weight not all there");
        assert!(s.add(0, GgmlType::Q8_0.id(), 16, 32, &[0; 5 * 34 - 5]).is_ok());
        assert!(s.add(0, GgmlType::Q8_0.id(), 16, 32, &[0; 1]).is_err(), "more than its rows");
        assert!(s.add(0, GgmlType::Q4_0.id(), 16, 32, &[]).is_err(), "another type under the same id");
        assert!(s.add(1, GgmlType::Q8_0.id(), 16, 32, &[0; 7 * 34]).is_ok());
        assert!(s.run(&[1, 1], &[0.0; 32]).is_err(), "7 of its 8 rows");
        assert!(s.run(&[1, 0], &[0.0; 32]).is_ok());
        assert!(s.run(&[1, 0], &[0.0; 31]).is_err(), "input of the wrong width");
        assert!(s.run(&[1, 5], &[0.0; 32]).is_err(), "unknown weight");
        assert!(Shard::new(0, 2).is_err() && Shard::new(2, 2).is_err());
        assert_eq!(s.held_bytes(), 8 * 34 + 7 * 34);
    }

    #[test]
    fn shard_embeds_the_rows_it_holds() {
        // 16 rows of 32 F32 values, row r all r: part 1 of 2 is rows 8..16
        let mut s = Shard::new(1, 2).unwrap();
        let bytes: Vec<u8> = (8..16u32).flat_map(|r| (0..32).flat_map(move |_| (r as f32).to_le_bytes())).collect();
        s.add(0, GgmlType::F32.id(), 16, 32, &bytes).unwrap();
        let out = s.run(&[3 | JOB_EMBED, 0], &[9.0, 2.0, 15.0]).unwrap();
        assert_eq!(out.len(), 2 * 32, "rows 9 and 15, not row 2 (part 0's)");
        assert!(out[..32].iter().all(|&v| v == 9.0) && out[32..].iter().all(|&v| v == 15.0));
        for bad in [16.0, -1.0, 2.5, f32::NAN] {
            assert!(s.run(&[1 | JOB_EMBED, 0], &[bad]).is_err(), "id {bad}");
        }
    }
}
