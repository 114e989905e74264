//! Causal GQA attention over the CPU's KV cache ([`KvCache`]), flash style: one family for
//! prefill and decode.
//!
//! - **GQA-shared reads.** A task owns one KV head and a block of query tokens; every key and
//!   value row of that head is read (and decoded) once for all the query heads of its group
//!   and all the tokens of the block.
//! - **Online softmax** over blocks of [`KEY_BLOCK`] keys: a running max `m`, sum `l` and
//!   output `acc` per query vector, rescaled when the max grows; no `heads × context` scores.
//! - **Decode inside the loop.** Each key block's rows are decoded from the cache's type (f32,
//!   f16 via F16C, `Q8_0` / `Q4_0` blocks) into a small f32 tile that stays in L1, then dotted
//!   with the group's queries in register tiles ([`dot::dots`]); the values are accumulated
//!   with vector FMAs and `exp` is a vector polynomial (AVX2).
//! - **Threads** over (KV heads × query-token blocks × key splits): decode has one query token,
//!   so its keys are split across tasks (flash decoding) whose partial `(m, l, acc)` are
//!   combined at the end; prefill has many token blocks and rarely needs a split.
//!
//! [`reference`] is the plain two-pass f64 softmax over the decoded cache that the tests hold
//! the fast path to.

use super::dot::{self, Simd};
use super::kv::KvCache;
use super::pool::Pool;
use crate::error::{Error, Result};
use crate::kv::KvType;

/// Keys per online-softmax step (their decoded K and V tiles stay in L1).
pub const KEY_BLOCK: usize = 32;

/// Fewest keys a decode split gets (fewer would cost more in the combine than they save).
const MIN_SPLIT_KEYS: usize = 128;

/// The shape of one call: `n` query tokens at positions `pos..`, `n_head` query heads.
#[derive(Debug, Clone, Copy)]
struct Shape {
    n_head: usize,
    n_kv: usize,
    group: usize,
    hd: usize,
    pos: usize,
    n: usize,
}

/// The queries of one call: `q` holds `n` tokens' `n_head` query heads (`[n, n_head, head_dim]`)
/// at positions `pos..`.
#[derive(Debug, Clone, Copy)]
pub struct Queries<'a> {
    pub q: &'a [f32],
    pub n_head: usize,
    pub pos: usize,
    pub n: usize,
}

fn shape(cache: &KvCache, queries: &Queries, out: &[f32]) -> Result<Shape> {
    let &Queries { q, n_head, pos, n } = queries;
    let (n_kv, hd) = (cache.n_kv(), cache.head_dim);
    if n_kv == 0 || hd == 0 || n_head == 0 || !n_head.is_multiple_of(n_kv) {
        return Err(Error::InvalidArgument(format!("attention of {n_head} query heads over {n_kv} KV heads")));
    }
    let need = n * n_head * hd;
    if q.len() < need || out.len() < need {
        return Err(Error::InvalidArgument(format!(
            "attention of {n} tokens: q or out holds fewer than {need} values"
        )));
    }
    let have = cache.positions();
    if pos + n > have {
        return Err(Error::InvalidArgument(format!("attention up to position {} over a cache of {have}", pos + n)));
    }
    Ok(Shape { n_head, n_kv, group: n_head / n_kv, hd, pos, n })
}

/// How the work is cut into tasks.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// Query tokens per task.
    tq: usize,
    /// Token blocks.
    blocks: usize,
    /// Key splits per (KV head, token block), and keys per split (whole key blocks).
    splits: usize,
    split_keys: usize,
}

fn split(s: &Shape, threads: usize) -> Split {
    // about 12 query vectors per task: a K row decoded once feeds 4 × 3 register tiles
    let tq = if s.n == 1 { 1 } else { 12usize.div_ceil(s.group).clamp(1, 16).min(s.n) };
    let blocks = s.n.div_ceil(tq);
    let keys = s.pos + s.n;
    let base = s.n_kv * blocks;
    let want = threads * 8;
    let splits =
        if threads > 1 && base < want { want.div_ceil(base).min(keys.div_ceil(MIN_SPLIT_KEYS)).max(1) } else { 1 };
    let split_keys = keys.div_ceil(splits).div_ceil(KEY_BLOCK) * KEY_BLOCK;
    let splits = keys.div_ceil(split_keys.max(1)).max(1);
    Split { tq, blocks, splits, split_keys }
}

/// `out[t, h, :] = softmax(q[t, h] · K[0..=pos+t] / √hd) · V` for the `n` query tokens of
/// `queries` over `cache`, query head `h` reading KV head `h / (n_head / n_kv)`; `out` is
/// `[n, n_head, head_dim]`. Returns the KV-cache bytes it read (every K and V row decoded,
/// counted as it decodes them).
pub fn attention(simd: Simd, pool: &Pool, cache: &KvCache, queries: &Queries, out: &mut [f32]) -> Result<u64> {
    let s = shape(cache, queries, out)?;
    let q = queries.q;
    if s.n == 0 {
        return Ok(0);
    }
    let sp = split(&s, pool.threads());
    let nq = sp.tq * s.group;
    let rec = nq * (s.hd + 2);
    let tasks = s.n_kv * sp.blocks * sp.splits;
    let mut parts = vec![0f32; tasks * rec];
    let read = std::sync::atomic::AtomicU64::new(0);
    pool.chunks(&mut parts, rec, |i, r| {
        let (h, rest) = (i / (sp.blocks * sp.splits), i % (sp.blocks * sp.splits));
        let (b, k) = (rest / sp.splits, rest % sp.splits);
        let t0 = b * sp.tq;
        let t1 = (t0 + sp.tq).min(s.n);
        let k0 = k * sp.split_keys;
        let k1 = ((k + 1) * sp.split_keys).min(s.pos + t1);
        let bytes = partial(simd, cache, &s, q, Task { h, tokens: t0..t1, keys: k0..k1.max(k0) }, r);
        read.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    });
    combine(&s, &sp, &parts, out);
    Ok(read.into_inner())
}

/// Merges the key splits' `(m, l, acc)` of every query vector and writes the outputs.
fn combine(s: &Shape, sp: &Split, parts: &[f32], out: &mut [f32]) {
    let (hd, g) = (s.hd, s.group);
    let nq = sp.tq * g;
    let rec = nq * (hd + 2);
    let mut acc = vec![0f32; hd];
    for h in 0..s.n_kv {
        for b in 0..sp.blocks {
            let t0 = b * sp.tq;
            let base = (h * sp.blocks + b) * sp.splits;
            for tt in 0..(s.n - t0).min(sp.tq) {
                for gi in 0..g {
                    let i = tt * g + gi;
                    let part = |k: usize| &parts[(base + k) * rec + i * (hd + 2)..][..hd + 2];
                    let m = (0..sp.splits).map(|k| part(k)[0]).fold(f32::NEG_INFINITY, f32::max);
                    acc.fill(0.0);
                    let mut l = 0f32;
                    if m > f32::NEG_INFINITY {
                        for k in 0..sp.splits {
                            let p = part(k);
                            if p[0] == f32::NEG_INFINITY {
                                continue;
                            }
                            let c = (p[0] - m).exp();
                            l += c * p[1];
                            for (a, v) in acc.iter_mut().zip(&p[2..]) {
                                *a += c * v;
                            }
                        }
                    }
                    let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
                    let o = &mut out[((t0 + tt) * s.n_head + h * g + gi) * hd..][..hd];
                    for (o, a) in o.iter_mut().zip(&acc) {
                        *o = a * inv;
                    }
                }
            }
        }
    }
}

/// One task's share: KV head `h`, query tokens `tokens`, keys `keys`.
struct Task {
    h: usize,
    tokens: std::ops::Range<usize>,
    keys: std::ops::Range<usize>,
}

/// One task: writes `[m, l, acc[hd]]` per query vector (token-major, then the group's heads)
/// into `rec` (`acc` not yet divided by `l`). Returns the cache bytes it decoded.
fn partial(simd: Simd, cache: &KvCache, s: &Shape, q: &[f32], task: Task, rec: &mut [f32]) -> u64 {
    let Task { h, tokens, keys } = task;
    let (hd, g, rb) = (s.hd, s.group, cache.row_bytes);
    let nq = tokens.len() * g;
    let scale = 1.0 / (hd as f32).sqrt();
    // the queries of the group, scaled: [nq, hd]
    let mut qb = vec![0f32; nq * hd];
    for (tt, t) in tokens.clone().enumerate() {
        let src = &q[(t * s.n_head + h * g) * hd..][..g * hd];
        for (d, v) in qb[tt * g * hd..][..g * hd].iter_mut().zip(src) {
            *d = v * scale;
        }
    }
    let mut m = vec![f32::NEG_INFINITY; nq];
    let mut l = vec![0f32; nq];
    let mut acc = vec![0f32; nq * hd];
    let mut kt = vec![0f32; KEY_BLOCK * hd];
    let mut vt = vec![0f32; KEY_BLOCK * hd];
    let mut sc = vec![0f32; KEY_BLOCK * nq];
    let mut kt_t = vec![0f32; KEY_BLOCK * hd];
    let mut p = [0f32; KEY_BLOCK];
    let (kh, vh) = (&cache.k[h], &cache.v[h]);
    let mut kb = keys.start;
    let mut read = 0;
    while kb < keys.end {
        let bn = KEY_BLOCK.min(keys.end - kb);
        decode_rows(simd, cache.ty, &kh[kb * rb..(kb + bn) * rb], &mut kt[..bn * hd]);
        read += bn * rb;
        // scores: sc[i · KEY_BLOCK + j] (transposed tile) or sc[j · nq + i] (dots) = k_j · q_i
        let transposed = scores(simd, &kt, bn, &qb, hd, &mut kt_t, &mut sc);
        let mut v_ready = false;
        for i in 0..nq {
            // causal: query token t sees keys 0..=pos + t
            let last = s.pos + tokens.start + i / g;
            let jn = (last + 1).saturating_sub(kb).min(bn);
            if jn == 0 {
                continue;
            }
            if transposed {
                p[..jn].copy_from_slice(&sc[i * KEY_BLOCK..][..jn]);
            } else {
                for (j, pj) in p[..jn].iter_mut().enumerate() {
                    *pj = sc[j * nq + i];
                }
            }
            let bm = p[..jn].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mn = m[i].max(bm);
            let c = if m[i] == f32::NEG_INFINITY { 0.0 } else { (m[i] - mn).exp() };
            let sum = exp_sub(simd, &mut p[..jn], mn);
            l[i] = l[i] * c + sum;
            m[i] = mn;
            let a = &mut acc[i * hd..][..hd];
            if c != 1.0 {
                a.iter_mut().for_each(|x| *x *= c);
            }
            if !v_ready {
                decode_rows(simd, cache.ty, &vh[kb * rb..(kb + bn) * rb], &mut vt[..bn * hd]);
                read += bn * rb;
                v_ready = true;
            }
            axpy_rows(simd, a, &p[..jn], &vt[..jn * hd]);
        }
        kb += bn;
    }
    for i in 0..nq {
        let r = &mut rec[i * (hd + 2)..][..hd + 2];
        r[0] = m[i];
        r[1] = l[i];
        r[2..].copy_from_slice(&acc[i * hd..][..hd]);
    }
    read as u64
}

/// The scores of a key block: `kt` holds `bn` decoded rows of `hd`, `qb` the `nq` queries.
/// AVX2 with `hd` a multiple of 8: the tile is transposed (`kt_t`, `[hd, KEY_BLOCK]`) and
/// `sc[i · KEY_BLOCK + j]` comes out with no horizontal sums (returns true); otherwise
/// `sc[j · nq + i]` from [`dot::dots`]' register tiles.
fn scores(simd: Simd, kt: &[f32], bn: usize, qb: &[f32], hd: usize, kt_t: &mut [f32], sc: &mut [f32]) -> bool {
    let nq = qb.len() / hd.max(1);
    #[cfg(target_arch = "x86_64")]
    if matches!(simd, Simd::Avx2 | Simd::Avx512)
        && hd.is_multiple_of(8)
        && kt.len() >= KEY_BLOCK * hd
        && kt_t.len() >= KEY_BLOCK * hd
        && sc.len() >= KEY_BLOCK * nq
    {
        // SAFETY: features detected; kt and kt_t hold KEY_BLOCK rows of hd (a multiple of 8),
        // sc KEY_BLOCK scores per query.
        unsafe {
            avx2::transpose(kt, hd, bn.div_ceil(8) * 8, kt_t);
            avx2::scores_t(kt_t, qb, nq, hd, sc);
        }
        return true;
    }
    let _ = kt_t;
    dot::dots(simd, &kt[..bn * hd], qb, hd, &mut sc[..bn * nq]);
    false
}

/// Decodes whole head rows `raw` of `ty` into `out`.
fn decode_rows(simd: Simd, ty: KvType, raw: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if matches!(simd, Simd::Avx2 | Simd::Avx512) {
        let bs = ty.ggml().type_size() as usize;
        let n = ty.block_len();
        if raw.len() / bs * n == out.len() && raw.len().is_multiple_of(bs) {
            // SAFETY: features detected (Simd); sizes checked: whole blocks filling `out`.
            unsafe { avx2::decode(ty, raw, out) };
            return;
        }
    }
    let _ = simd;
    if ty == KvType::F32 && raw.len() == out.len() * 4 {
        for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    } else if ty.decode(raw, out).is_err() {
        out.fill(0.0);
    }
}

/// `x ← exp(x − m)` (every `x ≤ m`), returning `Σ x`.
fn exp_sub(simd: Simd, x: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if matches!(simd, Simd::Avx2 | Simd::Avx512) {
        // SAFETY: features detected.
        return unsafe { avx2::exp_sub(x, m) };
    }
    let _ = simd;
    let mut s = 0f32;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    s
}

/// `acc += Σ_j p[j] · v[j]` (`v`: `p.len()` rows of `acc.len()` values).
fn axpy_rows(simd: Simd, acc: &mut [f32], p: &[f32], v: &[f32]) {
    let hd = acc.len();
    #[cfg(target_arch = "x86_64")]
    if matches!(simd, Simd::Avx2 | Simd::Avx512) && hd.is_multiple_of(8) && v.len() >= p.len() * hd {
        // SAFETY: features detected; v holds p.len() rows of hd values, hd a multiple of 8.
        unsafe { avx2::axpy_rows(acc, p, v) };
        return;
    }
    let _ = simd;
    for (pj, vj) in p.iter().zip(v.chunks_exact(hd.max(1))) {
        for (a, x) in acc.iter_mut().zip(vj) {
            *a += pj * x;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::kv::KvType;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn half(p: *const u8) -> f32 {
        let bits = unsafe { (p as *const u16).read_unaligned() };
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Whole blocks of `ty` from `raw` into `out` (sizes checked by the caller).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn decode(ty: KvType, raw: &[u8], out: &mut [f32]) {
        let (src, dst) = (raw.as_ptr(), out.as_mut_ptr());
        unsafe {
            match ty {
                KvType::F32 => std::ptr::copy_nonoverlapping(src, dst as *mut u8, out.len() * 4),
                KvType::F16 => {
                    let mut i = 0;
                    while i + 8 <= out.len() {
                        let h = _mm_loadu_si128(src.add(2 * i) as *const __m128i);
                        _mm256_storeu_ps(dst.add(i), _mm256_cvtph_ps(h));
                        i += 8;
                    }
                    while i < out.len() {
                        *dst.add(i) = half(src.add(2 * i));
                        i += 1;
                    }
                }
                KvType::Q8_0 => {
                    for b in 0..out.len() / 32 {
                        let p = src.add(b * 34);
                        let d = _mm256_set1_ps(half(p));
                        for k in 0..4 {
                            let q = _mm_loadl_epi64(p.add(2 + 8 * k) as *const __m128i);
                            let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                            _mm256_storeu_ps(dst.add(b * 32 + 8 * k), _mm256_mul_ps(v, d));
                        }
                    }
                }
                KvType::Q4_0 => {
                    let (mask, eight) = (_mm_set1_epi8(0x0F), _mm256_set1_epi32(8));
                    for b in 0..out.len() / 32 {
                        let p = src.add(b * 18);
                        let d = _mm256_set1_ps(half(p));
                        let qs = _mm_loadu_si128(p.add(2) as *const __m128i);
                        let lo = _mm_and_si128(qs, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
                        for (k, x) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)].into_iter().enumerate() {
                            let i = _mm256_sub_epi32(_mm256_cvtepu8_epi32(x), eight);
                            _mm256_storeu_ps(dst.add(b * 32 + 8 * k), _mm256_mul_ps(_mm256_cvtepi32_ps(i), d));
                        }
                    }
                }
            }
        }
    }

    /// `exp(x)` for 8 lanes, Cephes' `expf` (relative error ~1e-7); lanes below −87 give
    /// ~1e-38 (and −∞ / NaN the same), which the softmax's sums cannot tell from 0.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn exp_sub(x: &mut [f32], m: f32) -> f32 {
        let (mv, p) = (_mm256_set1_ps(m), x.as_mut_ptr());
        let mut sum = _mm256_setzero_ps();
        let mut i = 0;
        unsafe {
            while i + 8 <= x.len() {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                _mm256_storeu_ps(p.add(i), e);
                sum = _mm256_add_ps(sum, e);
                i += 8;
            }
            if i < x.len() {
                // the tail through a padded copy (lanes past the end: exp(−∞ − m) ≈ 0, dropped)
                let mut t = [f32::NEG_INFINITY; 8];
                t[..x.len() - i].copy_from_slice(&x[i..]);
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(t.as_ptr()), mv));
                _mm256_storeu_ps(t.as_mut_ptr(), e);
                for (k, v) in x[i..].iter_mut().enumerate() {
                    *v = t[k];
                }
                let s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
                let mut tot = [0f32; 4];
                _mm_storeu_ps(tot.as_mut_ptr(), s);
                return tot.iter().sum::<f32>() + x[i..].iter().sum::<f32>();
            }
            let s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
            let mut tot = [0f32; 4];
            _mm_storeu_ps(tot.as_mut_ptr(), s);
            tot.iter().sum()
        }
    }

    /// `out[d · KEY_BLOCK + j] = kt[j · hd + d]` for the first `rows` rows (a multiple of 8),
    /// in 8 × 8 blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn transpose(kt: &[f32], hd: usize, rows: usize, out: &mut [f32]) {
        let (src, dst) = (kt.as_ptr(), out.as_mut_ptr());
        const KB: usize = super::KEY_BLOCK;
        unsafe {
            for jb in (0..rows.min(KB)).step_by(8) {
                for db in (0..hd).step_by(8) {
                    let r = [0, 1, 2, 3, 4, 5, 6, 7].map(|k| _mm256_loadu_ps(src.add((jb + k) * hd + db)));
                    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                    let u0 = _mm256_shuffle_ps(t0, t2, 0x44);
                    let u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                    let u2 = _mm256_shuffle_ps(t1, t3, 0x44);
                    let u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                    let u4 = _mm256_shuffle_ps(t4, t6, 0x44);
                    let u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                    let u6 = _mm256_shuffle_ps(t5, t7, 0x44);
                    let u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                    let o = [
                        _mm256_permute2f128_ps(u0, u4, 0x20),
                        _mm256_permute2f128_ps(u1, u5, 0x20),
                        _mm256_permute2f128_ps(u2, u6, 0x20),
                        _mm256_permute2f128_ps(u3, u7, 0x20),
                        _mm256_permute2f128_ps(u0, u4, 0x31),
                        _mm256_permute2f128_ps(u1, u5, 0x31),
                        _mm256_permute2f128_ps(u2, u6, 0x31),
                        _mm256_permute2f128_ps(u3, u7, 0x31),
                    ];
                    for (d, od) in o.iter().enumerate() {
                        _mm256_storeu_ps(dst.add((db + d) * KB + jb), *od);
                    }
                }
            }
        }
    }

    /// `sc[i · KEY_BLOCK + j] = Σ_d q_i[d] kt_t[d · KEY_BLOCK + j]` for all `KEY_BLOCK` keys:
    /// two queries at a time, 8 accumulators, each key vector loaded once for both.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scores_t(kt_t: &[f32], q: &[f32], nq: usize, hd: usize, sc: &mut [f32]) {
        const KB: usize = super::KEY_BLOCK;
        let (k, qp, o) = (kt_t.as_ptr(), q.as_ptr(), sc.as_mut_ptr());
        unsafe {
            let mut i = 0;
            while i + 2 <= nq {
                let mut a = [[_mm256_setzero_ps(); 4]; 2];
                for d in 0..hd {
                    let kv = [0, 1, 2, 3].map(|r| _mm256_loadu_ps(k.add(d * KB + 8 * r)));
                    for (qi, aq) in a.iter_mut().enumerate() {
                        let b = _mm256_set1_ps(*qp.add((i + qi) * hd + d));
                        for r in 0..4 {
                            aq[r] = _mm256_fmadd_ps(b, kv[r], aq[r]);
                        }
                    }
                }
                for (qi, aq) in a.iter().enumerate() {
                    for (r, ar) in aq.iter().enumerate() {
                        _mm256_storeu_ps(o.add((i + qi) * KB + 8 * r), *ar);
                    }
                }
                i += 2;
            }
            if i < nq {
                let mut a = [_mm256_setzero_ps(); 4];
                for d in 0..hd {
                    let b = _mm256_set1_ps(*qp.add(i * hd + d));
                    for (r, ar) in a.iter_mut().enumerate() {
                        *ar = _mm256_fmadd_ps(b, _mm256_loadu_ps(k.add(d * KB + 8 * r)), *ar);
                    }
                }
                for (r, ar) in a.iter().enumerate() {
                    _mm256_storeu_ps(o.add(i * KB + 8 * r), *ar);
                }
            }
        }
    }

    /// `acc += Σ_j p[j] v[j]`, `acc.len()` a multiple of 8, 32 output values per pass in
    /// registers.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_rows(acc: &mut [f32], p: &[f32], v: &[f32]) {
        let hd = acc.len();
        let (a, vp) = (acc.as_mut_ptr(), v.as_ptr());
        let mut d = 0;
        unsafe {
            while d + 32 <= hd {
                let mut r = [0, 1, 2, 3].map(|k| _mm256_loadu_ps(a.add(d + 8 * k)));
                for (j, &pj) in p.iter().enumerate() {
                    let pv = _mm256_set1_ps(pj);
                    let row = vp.add(j * hd + d);
                    for (k, rk) in r.iter_mut().enumerate() {
                        *rk = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(8 * k)), *rk);
                    }
                }
                for (k, rk) in r.iter().enumerate() {
                    _mm256_storeu_ps(a.add(d + 8 * k), *rk);
                }
                d += 32;
            }
            while d < hd {
                let mut r = _mm256_loadu_ps(a.add(d));
                for (j, &pj) in p.iter().enumerate() {
                    r = _mm256_fmadd_ps(_mm256_set1_ps(pj), _mm256_loadu_ps(vp.add(j * hd + d)), r);
                }
                _mm256_storeu_ps(a.add(d), r);
                d += 8;
            }
        }
    }
}

/// The plain reference: for each query token and head, every score in f64, a two-pass
/// softmax, and the weighted sum of the decoded values (the cache's values exactly, through
/// [`KvType::decode`]). Same arguments and layout as [`attention`].
pub fn reference(cache: &KvCache, queries: &Queries, out: &mut [f32]) -> Result<()> {
    let s = shape(cache, queries, out)?;
    let &Queries { q, n_head, pos, n } = queries;
    let (hd, rb) = (s.hd, cache.row_bytes);
    let row = |c: &[u8], p: usize| -> Result<Vec<f32>> {
        let mut r = vec![0f32; hd];
        cache.ty.decode(&c[p * rb..(p + 1) * rb], &mut r)?;
        Ok(r)
    };
    for h in 0..s.n_kv {
        let keys = (0..pos + n).map(|p| row(&cache.k[h], p)).collect::<Result<Vec<_>>>()?;
        let vals = (0..pos + n).map(|p| row(&cache.v[h], p)).collect::<Result<Vec<_>>>()?;
        for t in 0..n {
            for gi in 0..s.group {
                let qh = t * n_head + h * s.group + gi;
                let qv = &q[qh * hd..][..hd];
                let sc: Vec<f64> = keys[..=pos + t]
                    .iter()
                    .map(|k| k.iter().zip(qv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = e.iter().zip(&vals).map(|(w, v)| w * v[d] as f64).sum();
                    out[qh * hd + d] = (o / sum) as f32;
                }
            }
        }
    }
    Ok(())
}
