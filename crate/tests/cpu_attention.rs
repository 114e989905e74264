//! The CPU backend's flash attention against its plain f64 reference (two-pass softmax over
//! the decoded cache), at awkward sizes: context lengths that are and are not multiples of
//! the key block, GQA ratios 1, 3, 4 and 8, head_dim 64 and 128, every KV type, one thread
//! and several (decode then splits its keys: flash decoding), every SIMD level.

use llama_webgpu::cpu::attention::{attention, reference, Queries, KEY_BLOCK};
use llama_webgpu::cpu::dot::Simd;
use llama_webgpu::cpu::kv::KvCache;
use llama_webgpu::cpu::pool::Pool;
use llama_webgpu::kv::KvType;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 33) as u32) as f32 / u32::MAX as f32 * 2.0 - 1.0
}

/// A cache of `keys` positions, filled token by token as the engine writes it, and queries
/// for `n` tokens; the scores spread over a few units so the softmax is neither flat nor one-hot.
fn setup(ty: KvType, n_kv: usize, hd: usize, keys: usize, n_head: usize, n: usize, seed: u64) -> (KvCache, Vec<f32>) {
    let mut s = seed;
    let mut c = KvCache::new(ty, n_kv, hd, keys + 8).unwrap();
    for p in 0..keys {
        let k: Vec<f32> = (0..n_kv * hd).map(|_| lcg(&mut s) * 1.5).collect();
        let v: Vec<f32> = (0..n_kv * hd).map(|_| lcg(&mut s)).collect();
        c.write(p, &k, &v).unwrap();
    }
    let q = (0..n * n_head * hd).map(|_| lcg(&mut s) * 2.0).collect();
    (c, q)
}

fn compare(ty: KvType, hd: usize, group: usize, n_kv: usize, pos: usize, n: usize, pools: &[Pool]) {
    let n_head = group * n_kv;
    let (cache, q) = setup(ty, n_kv, hd, pos + n, n_head, n, (hd * 31 + group * 7 + pos * 3 + n) as u64);
    let queries = Queries { q: &q, n_head, pos, n };
    let mut want = vec![0f32; n * n_head * hd];
    reference(&cache, &queries, &mut want).unwrap();
    for pool in pools {
        for simd in Simd::available() {
            let mut got = vec![f32::NAN; n * n_head * hd];
            attention(simd, pool, &cache, &queries, &mut got).unwrap();
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, |m, e| m.max(e));
            // outputs are averages of values in [-1, 1]: f32 rounding of a few hundred terms
            assert!(
                worst <= 2e-5,
                "{ty} hd {hd} group {group} n_kv {n_kv} pos {pos} n {n} threads {} {}: worst |fast − reference| {worst:e}",
                pool.threads(),
                simd.name()
            );
        }
    }
}

#[test]
fn decode_matches_the_reference_at_awkward_lengths() {
    let pools = [Pool::new(1), Pool::new(3)];
    for ty in KvType::ALL {
        for hd in [64, 128] {
            for group in [1, 3, 4, 8] {
                // keys = pos + 1: 1, 32 (a whole block), 33, 97, 300, 1000 (split across tasks)
                for pos in [0, KEY_BLOCK - 1, KEY_BLOCK, 96, 299, 999] {
                    compare(ty, hd, group, 2, pos, 1, &pools);
                }
            }
        }
    }
}

#[test]
fn prefill_matches_the_reference_with_the_causal_mask() {
    let pools = [Pool::new(1), Pool::new(3)];
    for ty in KvType::ALL {
        for hd in [64, 128] {
            for group in [1, 3, 4, 8] {
                // a prompt from empty, a chunk after earlier ones, one token block's edge
                for (pos, n) in [(0, 37), (70, 13), (5, 1 + 12usize.div_ceil(group))] {
                    compare(ty, hd, group, if group == 8 { 1 } else { 3 }, pos, n, &pools);
                }
            }
        }
    }
}

#[test]
fn one_kv_head_and_mha_with_odd_head_dims_in_f32_and_f16() {
    // head_dim 80 and 40 (not a multiple of 32: f32/f16 only, and not of 8 for 40 / 20)
    let pools = [Pool::new(2)];
    for ty in [KvType::F32, KvType::F16] {
        for hd in [80, 40, 20] {
            compare(ty, hd, 1, 4, 200, 1, &pools);
            compare(ty, hd, 3, 1, 40, 9, &pools);
        }
    }
    assert!(KvCache::new(KvType::Q8_0, 1, 80, 16).is_err());
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let (cache, q) = setup(KvType::Q8_0, 2, 64, 10, 6, 1, 1);
    let pool = Pool::new(1);
    let mut out = vec![0f32; 6 * 64];
    // 5 query heads over 2 KV heads, a position past the cache, a short q
    let run = |n_head, q, pos, out: &mut [f32]| {
        attention(Simd::detect(), &pool, &cache, &Queries { q, n_head, pos, n: 1 }, out)
    };
    assert!(run(5, &q, 9, &mut out).is_err());
    assert!(run(6, &q, 10, &mut out).is_err());
    assert!(run(6, &q[..64], 9, &mut out).is_err());
    run(6, &q, 9, &mut out).unwrap();
}
