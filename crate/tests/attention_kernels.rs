//! The attention-side GPU kernels against their CPU references (`gpu::kernels::reference`):
//! flash attention (prefill and the split-K decode with its combine) over every KV type, at
//! GQA ratios 1, 3, 4 and 8, head_dim 64 and 128, contexts that are not multiples of the key
//! block, with subgroup reductions and with the workgroup-memory fallback, over one cache
//! buffer and split across several; and RoPE with the KV write (quantized as written).
//! Runs on whatever adapter wgpu finds (lavapipe in CI): tiny shapes.

use llama_webgpu::gpu::kernels::{
    self, reference as cpu, AttentionIo, AttnShape, KvLayout, KvPart, LayerKv, RopeIo, Step,
};
use llama_webgpu::gpu::{Gpu, GpuOptions, Precision};
use llama_webgpu::kv::KvType;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn gpu() -> Gpu {
    Gpu::new_blocking(&GpuOptions { precision: Precision::F32, ..Default::default() }).expect("adapter")
}

fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn buf(gpu: &Gpu, data: &[u8]) -> wgpu::Buffer {
    gpu.storage_from("test", data).unwrap()
}

fn read(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(gpu.read_f32(b, 0, n)).expect("read")
}

fn max_err(got: &[f32], want: &[f32]) -> (usize, f32) {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |m, (i, e)| {
        if e > m.1 || e.is_nan() {
            (i, e)
        } else {
            m
        }
    })
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    let (i, err) = max_err(got, want);
    assert!(
        err <= tol * scale && !err.is_nan(),
        "{name}: max error {err} at {i} (got {}, want {}) > {tol} × {scale}",
        got[i],
        want[i]
    );
}

/// The cache of `ctx` positions split into parts of `per_part` positions: (pos0, len).
fn part_ranges(ctx: usize, per_part: usize) -> Vec<(usize, usize)> {
    (0..ctx.div_ceil(per_part)).map(|j| (j * per_part, per_part.min(ctx - j * per_part))).collect()
}

fn step(n: usize, pos0: usize) -> Step {
    Step { n_tokens: n as u32, pos: pos0 as u32, kv_len: (pos0 + n) as u32, _pad: 0 }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    n_head: usize,
    n_kv: usize,
    hd: usize,
    ctx: usize,
    per_part: usize,
    ty: KvType,
}

/// Runs every pass of `passes` ((pos0, n) over a cache already holding random K/V) through
/// the flash kernel and compares with the reference on the cache's decoded values.
fn check_flash(gpu: &Gpu, rng: &mut StdRng, c: Case, passes: &[(usize, usize)], what: &str) {
    let s = AttnShape { n_head: c.n_head as u32, n_kv: c.n_kv as u32, head_dim: c.hd as u32, ctx: c.ctx as u32 };
    let kv = KvLayout::new(c.ty, c.n_kv as u32, c.hd as u32).unwrap();
    let dim = c.n_kv * c.hd;
    let k = rand_vec(rng, c.ctx * dim, 1.0);
    let v = rand_vec(rng, c.ctx * dim, 1.0);
    let (kraw, vraw) = (kv.encode(&k).unwrap(), kv.encode(&v).unwrap());
    // the reference sees the values the cache holds
    let (kd, vd) = (kv.decode(&kraw, c.ctx).unwrap(), kv.decode(&vraw, c.ctx).unwrap());
    let pb = kv.pos_bytes as usize;
    let ranges = part_ranges(c.ctx, c.per_part);
    let bufs: Vec<(wgpu::Buffer, wgpu::Buffer)> = ranges
        .iter()
        .map(|&(p0, n)| (buf(gpu, &kraw[p0 * pb..(p0 + n) * pb]), buf(gpu, &vraw[p0 * pb..(p0 + n) * pb])))
        .collect();
    let parts: Vec<KvPart<'_>> =
        ranges.iter().zip(&bufs).map(|(&(p0, n), (k, v))| KvPart { k, v, pos0: p0 as u32, len: n as u32 }).collect();
    let chunk = passes.iter().map(|p| p.1).max().unwrap_or(1);
    let lens: Vec<u32> = ranges.iter().map(|r| r.1 as u32).collect();
    let scratch_floats = kernels::attention_scratch_floats(gpu, s, &lens, chunk as u32);
    let scratch = gpu.storage("partials", 4 * scratch_floats).unwrap();
    let stepb = kernels::step_buffer(gpu);
    let q_len = chunk * c.n_head * c.hd;
    let ob = gpu.storage("o", (q_len * 4) as u64).unwrap();
    let qb = gpu.storage("q", (q_len * 4) as u64).unwrap();
    let io = AttentionIo { q: &qb, scratch: &scratch, o: &ob, step: &stepb };
    let d = kernels::attention(gpu, s, LayerKv { layout: kv, parts: &parts }, io, chunk as u32).unwrap();
    for &(pos0, n) in passes {
        let q = rand_vec(rng, n * c.n_head * c.hd, 1.0);
        gpu.write(&qb, 0, bytemuck::cast_slice(&q));
        kernels::submit(gpu, &stepb, step(n, pos0), &d.iter().collect::<Vec<_>>());
        let keys = (pos0 + n) * dim;
        let want = cpu::attention(&q, &kd[..keys], &vd[..keys], c.n_head, c.n_kv, c.hd, pos0);
        let got = read(gpu, &ob, q.len());
        assert_close(&format!("{what} {c:?} pass pos0={pos0} n={n}"), &got, &want, 1e-4);
    }
}

/// Decode passes at awkward depths (split-K and its combine), and prefill passes.
const PASSES: [(usize, usize); 5] = [(0, 7), (40, 13), (76, 1), (5, 1), (33, 1)];

/// Both reduction paths where the adapter has subgroups; the GPU and the CPU-adapter split
/// counts (decode splits differ).
fn variants(gpu: &Gpu) -> Vec<(bool, bool)> {
    let mut v = vec![(false, false), (false, true)];
    if gpu.subgroups {
        v.extend([(true, false), (true, true)]);
    }
    v
}

#[test]
fn flash_attention_every_kv_type_and_gqa_ratio() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut gpu = gpu();
    let sg = gpu.subgroups;
    for (sgv, cpu_adapter) in variants(&gpu) {
        (gpu.subgroups, gpu.cpu_matmul) = (sgv && sg, cpu_adapter);
        let what = format!("sg={sgv} cpu={cpu_adapter}");
        // GQA 4 at head_dim 64 and 3 at 128, every type; 77 keys: not whole blocks of 32
        for ty in KvType::ALL {
            for (n_head, n_kv, hd) in [(8, 2, 64), (3, 1, 128)] {
                let c = Case { n_head, n_kv, hd, ctx: 77, per_part: 77, ty };
                check_flash(&gpu, &mut rng, c, &PASSES, &what);
            }
        }
        // GQA 1 and 8
        for (n_head, n_kv, hd, ty) in [(2, 2, 64, KvType::F16), (8, 1, 128, KvType::Q4_0)] {
            let c = Case { n_head, n_kv, hd, ctx: 77, per_part: 77, ty };
            check_flash(&gpu, &mut rng, c, &PASSES, &what);
        }
    }
}

#[test]
fn flash_attention_over_split_kv_buffers() {
    let mut rng = StdRng::seed_from_u64(22);
    let mut gpu = gpu();
    let sg = gpu.subgroups;
    for (sgv, cpu_adapter) in variants(&gpu) {
        (gpu.subgroups, gpu.cpu_matmul) = (sgv && sg, cpu_adapter);
        let what = format!("split sg={sgv} cpu={cpu_adapter}");
        // parts of 30, 30 and 17 positions: passes inside one part and across two
        for ty in [KvType::F32, KvType::Q8_0] {
            let c = Case { n_head: 6, n_kv: 2, hd: 64, ctx: 77, per_part: 30, ty };
            check_flash(&gpu, &mut rng, c, &[(0, 7), (25, 13), (76, 1), (29, 1), (30, 1), (61, 1)], &what);
        }
        // 16 KiB of workgroup memory (what browsers guarantee): head_dim 128 in blocks of 16 keys
        if !(sgv && cpu_adapter) {
            let limit = gpu.limits.max_compute_workgroup_storage_size;
            gpu.limits.max_compute_workgroup_storage_size = 16384;
            let c = Case { n_head: 6, n_kv: 2, hd: 128, ctx: 77, per_part: 77, ty: KvType::F16 };
            check_flash(&gpu, &mut rng, c, &PASSES, &format!("16 KiB {what}"));
            gpu.limits.max_compute_workgroup_storage_size = limit;
        }
        // a short cache: one decode split (the output written directly, no combine)
        let c = Case { n_head: 4, n_kv: 1, hd: 64, ctx: 20, per_part: 20, ty: KvType::F16 };
        check_flash(&gpu, &mut rng, c, &[(0, 20), (19, 1), (3, 1)], &what);
    }
}

/// Per 32-value block: the most a cached value may differ from the exact one.
fn block_tol(ty: KvType, amax: f32) -> f32 {
    match ty {
        KvType::F32 => amax * 2e-6 + 1e-6,
        KvType::F16 => amax / 1024.0 + 1e-6,
        // half a level, and d's rounding to f16 (up to 2^-11 relative) times 127 levels
        KvType::Q8_0 => amax / 127.0 * (0.5 + 127.0 / 2048.0) + 1e-5,
        KvType::Q4_0 => amax / 8.0 * 1.05 + 1e-5,
    }
}

#[test]
fn rope_and_kv_write_every_type_and_split() {
    let mut rng = StdRng::seed_from_u64(23);
    let gpu = gpu();
    let stepb = kernels::step_buffer(&gpu);
    let (nh, nkv, hd, ctx, n, pos0) = (6usize, 3usize, 64usize, 40usize, 5usize, 23usize);
    let s = AttnShape { n_head: nh as u32, n_kv: nkv as u32, head_dim: hd as u32, ctx: ctx as u32 };
    for ty in KvType::ALL {
        // one buffer, and parts of 25 + 15 positions (the pass writes into both)
        for per_part in [ctx, 25] {
            let kv = KvLayout::new(ty, nkv as u32, hd as u32).unwrap();
            let q = rand_vec(&mut rng, n * nh * hd, 2.0);
            let k = rand_vec(&mut rng, n * nkv * hd, 2.0);
            let v = rand_vec(&mut rng, n * nkv * hd, 2.0);
            let (qd, kd) = (nh * hd, nkv * hd);
            let qkv: Vec<f32> =
                (0..n).flat_map(|t| [&q[t * qd..][..qd], &k[t * kd..][..kd], &v[t * kd..][..kd]].concat()).collect();
            let factors: Vec<f32> = (0..hd / 2).map(|j| 1.0 + j as f32 * 0.5).collect();
            let inv = llama_webgpu::graph::rope_inv_freq(hd, 500000.0, Some(&factors));
            let (qkvb, ib) = (buf(&gpu, bytemuck::cast_slice(&qkv)), buf(&gpu, bytemuck::cast_slice(&inv)));
            let qb = gpu.storage("q", (q.len() * 4) as u64).unwrap();
            let pb = kv.pos_bytes as usize;
            let ranges = part_ranges(ctx, per_part);
            // caches start as garbage: the write must replace every bit of its positions
            let bufs: Vec<(wgpu::Buffer, wgpu::Buffer)> =
                ranges.iter().map(|&(_, m)| (buf(&gpu, &vec![0xA5; m * pb]), buf(&gpu, &vec![0x5A; m * pb]))).collect();
            let parts: Vec<KvPart<'_>> = ranges
                .iter()
                .zip(&bufs)
                .map(|(&(p0, m), (k, v))| KvPart { k, v, pos0: p0 as u32, len: m as u32 })
                .collect();
            let io = RopeIo { qkv: &qkvb, q: &qb, inv_freq: &ib, step: &stepb };
            let d = kernels::rope_store(&gpu, s, LayerKv { layout: kv, parts: &parts }, io).unwrap();
            kernels::submit(&gpu, &stepb, step(n, pos0), &d.iter().collect::<Vec<_>>());
            let (mut wq, mut wk) = (q.clone(), k.clone());
            cpu::rope(&mut wq, nh, hd, pos0, &inv);
            cpu::rope(&mut wk, nkv, hd, pos0, &inv);
            assert_close(&format!("rope q {ty}"), &read(&gpu, &qb, q.len()), &wq, 2e-5);
            // the whole cache back, in position order
            let mut kraw = Vec::new();
            let mut vraw = Vec::new();
            for (kb, vb) in &bufs {
                kraw.extend(pollster::block_on(gpu.read(kb, 0, kb.size())).unwrap());
                vraw.extend(pollster::block_on(gpu.read(vb, 0, vb.size())).unwrap());
            }
            for (name, raw, want, fill) in [("k", &kraw, &wk, 0xA5u8), ("v", &vraw, &v, 0x5A)] {
                let got = kv.decode(&raw[pos0 * pb..], n).unwrap();
                for (b, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
                    let amax = w.iter().fold(0f32, |a, x| a.max(x.abs()));
                    let (i, err) = max_err(g, w);
                    assert!(
                        err <= block_tol(ty, amax),
                        "{name} {ty} parts of {per_part}: block {b} value {i}: {} vs {} (amax {amax})",
                        g[i],
                        w[i]
                    );
                }
                assert!(
                    raw[..pos0 * pb].iter().all(|&x| x == fill),
                    "{name} {ty}: positions before the pass untouched"
                );
                assert!(raw[(pos0 + n) * pb..].iter().all(|&x| x == fill), "{name} {ty}: positions after untouched");
            }
        }
    }
}
