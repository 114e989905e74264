//! Every GPU kernel against its CPU reference (`gpu::kernels::reference`) on random inputs whose
//! sizes are not multiples of the workgroup sizes, in f32 and (where the adapter has
//! shader-f16) f16 mode. Runs on whatever adapter wgpu finds (lavapipe in CI).

use llama_webgpu::gguf::{GgmlType, TensorInfo};
use llama_webgpu::gpu::kernels::{self, reference as cpu, GpuWeight, MatmulIo, MatmulOpts, NormIn, Step};
use llama_webgpu::gpu::{Gpu, GpuOptions, Precision};
use llama_webgpu::quant;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn gpus() -> Vec<Gpu> {
    let mut v = vec![Gpu::new_blocking(&GpuOptions {
        precision: Precision::F32,
        max_binding_size: None,
        ..Default::default()
    })
    .expect("adapter")];
    if let Ok(g) =
        Gpu::new_blocking(&GpuOptions { precision: Precision::F16, max_binding_size: None, ..Default::default() })
    {
        v.push(g);
    }
    v
}

fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn read(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(gpu.read_f32(b, 0, n)).expect("read")
}

fn buf(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    gpu.storage_from("test", bytemuck::cast_slice(data)).unwrap()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    let (i, err) = got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |m, (i, e)| {
        if e > m.1 || e.is_nan() {
            (i, e)
        } else {
            m
        }
    });
    assert!(
        err <= tol * scale && !err.is_nan(),
        "{name}: max error {err} at {i} (got {}, want {}) > {tol} × {scale}",
        got[i],
        want[i]
    );
}

const TYPES: [GgmlType; 9] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::IQ4NL,
];

/// A `rows` × `cols` tensor of `ty` at offset 0.
fn info(name: &str, ty: GgmlType, rows: usize, cols: usize) -> TensorInfo {
    let n_bytes = (rows * cols) as u64 / ty.block_size() * ty.type_size();
    TensorInfo { name: name.into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes }
}

/// Uploads random weights of `ty`; returns them with their dequantized values.
fn weight(gpu: &Gpu, rng: &mut StdRng, ty: GgmlType, rows: usize, cols: usize) -> (GpuWeight, Vec<f32>) {
    let w = rand_vec(rng, rows * cols, 1.0);
    let raw = quant::quantize(ty, &w).unwrap();
    let deq = quant::dequantize(ty, &raw).unwrap();
    let gw = pollster::block_on(GpuWeight::upload(gpu, &info("w", ty, rows, cols), &raw, 4096, |_| {})).unwrap();
    (gw, deq)
}

/// A matmul kernel variant: the GPU-shaped kernels at `tpr` threads per row (tiled prefill or
/// the matvec for several tokens), or the CPU-adapter kernel (matmul_cpu.wgsl); lane
/// broadcasts / reductions through subgroups or not.
#[derive(Debug, Clone, Copy)]
struct Variant {
    cpu: bool,
    tpr: u32,
    tiled: bool,
    sg: bool,
}

/// Every variant this adapter can run: GPU-shaped at 1 (no reduction), 4 and 16 threads per
/// row, and the CPU kernel; those that use subgroups (the 4-lane reduction, the CPU kernel's
/// broadcasts) also without them, where the adapter has them.
fn variants(gpu: &Gpu) -> Vec<Variant> {
    let sg = gpu.subgroups;
    let mut v = vec![
        Variant { cpu: false, tpr: 1, tiled: true, sg },
        Variant { cpu: false, tpr: 4, tiled: false, sg },
        Variant { cpu: false, tpr: 16, tiled: true, sg },
        Variant { cpu: true, tpr: 1, tiled: false, sg },
    ];
    if sg {
        v.push(Variant { cpu: false, tpr: 4, tiled: false, sg: false });
        v.push(Variant { cpu: true, tpr: 1, tiled: false, sg: false });
    }
    v
}

fn set_variant(gpu: &mut Gpu, v: Variant) -> String {
    (gpu.cpu_matmul, gpu.matmul_tpr, gpu.tiled_prefill, gpu.subgroups) = (v.cpu, v.tpr, v.tiled, v.sg);
    format!("f16={} {v:?}", gpu.use_f16)
}

#[test]
fn matmul_all_types_against_cpu() {
    let mut rng = StdRng::seed_from_u64(1);
    for mut gpu in gpus() {
        let step = kernels::step_buffer(&gpu);
        let vs = variants(&gpu);
        for (ty, v) in TYPES.iter().flat_map(|&t| vs.iter().map(move |&v| (t, v))) {
            let name = format!("{ty:?} {}", set_variant(&mut gpu, v));
            // 37 rows (not a multiple of 4 rows/workgroup nor of 64), 13 blocks (not of 16
            // lanes nor of 8), 19 tokens (over one tile, not a multiple of 8, 16 or 32)
            let (rows, cols, n) = (37, 13 * 32, 19);
            let (w, deq) = weight(&gpu, &mut rng, ty, rows, cols);
            let x = rand_vec(&mut rng, n * cols, 1.0);
            let xb = buf(&gpu, &x);
            let want = cpu::matmul(&deq, rows, cols, &x, n);

            let yb = gpu.storage("y", (n * rows * 4) as u64).unwrap();
            let d = kernels::matmul(&gpu, &w, &xb, &yb, rows as u32, &step, MatmulOpts::default()).unwrap();
            kernels::submit(
                &gpu,
                &step,
                Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 },
                &d.iter().collect::<Vec<_>>(),
            );
            assert_close(&format!("matmul {name}"), &read(&gpu, &yb, n * rows), &want, 1e-5);

            // accumulate: y += W x, starting from y = 1
            let yb = buf(&gpu, &vec![1.0; n * rows]);
            let d = kernels::matmul(
                &gpu,
                &w,
                &xb,
                &yb,
                rows as u32,
                &step,
                MatmulOpts { accumulate: true, last_only: false },
            )
            .unwrap();
            kernels::submit(
                &gpu,
                &step,
                Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 },
                &d.iter().collect::<Vec<_>>(),
            );
            let want1: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            assert_close(&format!("matmul acc {name}"), &read(&gpu, &yb, n * rows), &want1, 1e-5);

            // last token only, written to row 0
            let yb = gpu.storage("y", (rows * 4) as u64).unwrap();
            let d = kernels::matmul(
                &gpu,
                &w,
                &xb,
                &yb,
                rows as u32,
                &step,
                MatmulOpts { accumulate: false, last_only: true },
            )
            .unwrap();
            kernels::submit(
                &gpu,
                &step,
                Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 },
                &d.iter().collect::<Vec<_>>(),
            );
            assert_close(&format!("matmul last {name}"), &read(&gpu, &yb, rows), &want[(n - 1) * rows..], 1e-5);
        }
    }
}

#[test]
fn matmul_and_embed_split_across_bindings() {
    // A 1 MiB binding cap splits a 300 × 1024 f32 matrix (1.2 MB) into parts; results must not change.
    let mut rng = StdRng::seed_from_u64(2);
    let mut gpu = Gpu::new_blocking(&GpuOptions {
        precision: Precision::F32,
        max_binding_size: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    let step = kernels::step_buffer(&gpu);
    for (ty, cpu_kernel) in [(GgmlType::F32, false), (GgmlType::Q8_0, false), (GgmlType::F32, true)] {
        gpu.cpu_matmul = cpu_kernel;
        let (rows, cols, n) = (300, 1024, 3);
        let (w, deq) = weight(&gpu, &mut rng, ty, rows, cols);
        assert!(ty != GgmlType::F32 || w.parts.len() >= 2, "expected a split, got {} part(s)", w.parts.len());
        let x = rand_vec(&mut rng, n * cols, 1.0);
        let xb = buf(&gpu, &x);
        let yb = gpu.storage("y", (n * rows * 4) as u64).unwrap();
        let d = kernels::matmul(&gpu, &w, &xb, &yb, rows as u32, &step, MatmulOpts::default()).unwrap();
        kernels::submit(
            &gpu,
            &step,
            Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 },
            &d.iter().collect::<Vec<_>>(),
        );
        assert_close(
            &format!("split matmul {ty:?} cpu={cpu_kernel}"),
            &read(&gpu, &yb, n * rows),
            &cpu::matmul(&deq, rows, cols, &x, n),
            1e-5,
        );

        let ids: Vec<u32> = vec![0, 299, 17, 255, 256, 123];
        let idb = gpu.storage_from("ids", bytemuck::cast_slice(&ids)).unwrap();
        let ob = gpu.storage("out", (ids.len() * cols * 4) as u64).unwrap();
        let d = kernels::embed(&gpu, &w, &idb, &ob, &step).unwrap();
        kernels::submit(
            &gpu,
            &step,
            Step { n_tokens: ids.len() as u32, pos: 0, kv_len: 0, _pad: 0 },
            &d.iter().collect::<Vec<_>>(),
        );
        let want: Vec<f32> = ids.iter().flat_map(|&i| deq[i as usize * cols..][..cols].to_vec()).collect();
        assert_close(&format!("split embed {ty:?}"), &read(&gpu, &ob, ids.len() * cols), &want, 0.0);
    }
}

#[test]
fn embed_all_types_against_cpu() {
    let mut rng = StdRng::seed_from_u64(3);
    for gpu in gpus() {
        let step = kernels::step_buffer(&gpu);
        for ty in TYPES {
            let (rows, cols) = (53, 9 * 32);
            let (w, deq) = weight(&gpu, &mut rng, ty, rows, cols);
            let ids: Vec<u32> = (0..7).map(|_| rng.random_range(0..rows as u32)).collect();
            let idb = gpu.storage_from("ids", bytemuck::cast_slice(&ids)).unwrap();
            let ob = gpu.storage("out", (ids.len() * cols * 4) as u64).unwrap();
            let d = kernels::embed(&gpu, &w, &idb, &ob, &step).unwrap();
            kernels::submit(
                &gpu,
                &step,
                Step { n_tokens: ids.len() as u32, pos: 0, kv_len: 0, _pad: 0 },
                &d.iter().collect::<Vec<_>>(),
            );
            let want: Vec<f32> = ids.iter().flat_map(|&i| deq[i as usize * cols..][..cols].to_vec()).collect();
            assert_close(&format!("embed {ty:?}"), &read(&gpu, &ob, ids.len() * cols), &want, 0.0);
        }
    }
}

#[test]
fn rmsnorm_against_cpu() {
    let mut rng = StdRng::seed_from_u64(4);
    for gpu in gpus() {
        let step = kernels::step_buffer(&gpu);
        let (dim, n) = (333, 5);
        let x = rand_vec(&mut rng, dim * n, 3.0);
        let g = rand_vec(&mut rng, dim, 2.0);
        let (xb, gb, yb) = (buf(&gpu, &x), buf(&gpu, &g), gpu.storage("y", (dim * n * 4) as u64).unwrap());
        let d = kernels::rmsnorm(&gpu, &xb, &gb, &yb, dim as u32, 1e-5, &step).unwrap();
        kernels::submit(&gpu, &step, Step { n_tokens: n as u32, pos: 0, kv_len: 0, _pad: 0 }, &[&d]);
        assert_close("rmsnorm", &read(&gpu, &yb, dim * n), &cpu::rmsnorm(&x, &g, 1e-5), 1e-5);
    }
}

#[test]
fn swiglu_against_cpu() {
    let mut rng = StdRng::seed_from_u64(5);
    for gpu in gpus() {
        let step = kernels::step_buffer(&gpu);
        let (dim, n) = (1000, 3);
        let g = rand_vec(&mut rng, dim * n, 6.0);
        let u = rand_vec(&mut rng, dim * n, 2.0);
        let (gb, ub) = (buf(&gpu, &g), buf(&gpu, &u));
        let d = kernels::swiglu(&gpu, &gb, &ub, dim as u32, &step).unwrap();
        kernels::submit(&gpu, &step, Step { n_tokens: n as u32, pos: 0, kv_len: 0, _pad: 0 }, &[&d]);
        assert_close("swiglu", &read(&gpu, &gb, dim * n), &cpu::swiglu(&g, &u), 1e-5);
    }
}

mod common;

/// K-quant and IQ4 blocks against llama.cpp's `gguf` package (tests/make_kquant_refs.py):
/// our unpacking, the GPU embedding lookup (exact) and matmul (vs CPU on gguf's values).
#[test]
fn kquants_match_gguf_package() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut rng = StdRng::seed_from_u64(8);
    for (name, ty) in [
        ("q4_k", GgmlType::Q4K),
        ("q5_k", GgmlType::Q5K),
        ("q6_k", GgmlType::Q6K),
        ("q2_k", GgmlType::Q2K),
        ("q3_k", GgmlType::Q3K),
        ("iq4_nl", GgmlType::IQ4NL),
        ("iq4_xs", GgmlType::IQ4XS),
    ] {
        let raw = std::fs::read(dir.join(format!("kquant-{name}.bin"))).unwrap();
        let (_, want) = common::read_npy(&dir.join(format!("kquant-{name}.npy")));
        let ours = quant::dequantize(ty, &raw).unwrap();
        assert_eq!(ours, want, "{name}: CPU unpacking differs from gguf.quants.dequantize");
        // 8 rows (not a multiple of 4 rows/workgroup) of 768 = 24 blocks (not a multiple of 16 lanes)
        let (rows, cols, n) = (8usize, 768usize, 5usize);
        for mut gpu in gpus() {
            let step = kernels::step_buffer(&gpu);
            let w =
                pollster::block_on(GpuWeight::upload(&gpu, &info(name, ty, rows, cols), &raw, 1000, |_| {})).unwrap();
            let ids: Vec<u32> = vec![3, 0, 7, 7, 5];
            let idb = gpu.storage_from("ids", bytemuck::cast_slice(&ids)).unwrap();
            let ob = gpu.storage("out", (ids.len() * cols * 4) as u64).unwrap();
            let d = kernels::embed(&gpu, &w, &idb, &ob, &step).unwrap();
            kernels::submit(
                &gpu,
                &step,
                Step { n_tokens: ids.len() as u32, pos: 0, kv_len: 0, _pad: 0 },
                &d.iter().collect::<Vec<_>>(),
            );
            let rows_want: Vec<f32> = ids.iter().flat_map(|&i| want[i as usize * cols..][..cols].to_vec()).collect();
            assert_close(&format!("embed {name}"), &read(&gpu, &ob, ids.len() * cols), &rows_want, 1e-6);

            let x = rand_vec(&mut rng, n * cols, 1.0);
            let xb = buf(&gpu, &x);
            for (tokens, cpu_kernel) in [(n, false), (1, false), (n, true), (1, true)] {
                gpu.cpu_matmul = cpu_kernel;
                let yb = gpu.storage("y", (n * rows * 4) as u64).unwrap();
                let d = kernels::matmul(&gpu, &w, &xb, &yb, rows as u32, &step, MatmulOpts::default()).unwrap();
                kernels::submit(
                    &gpu,
                    &step,
                    Step { n_tokens: tokens as u32, pos: 0, kv_len: tokens as u32, _pad: 0 },
                    &d.iter().collect::<Vec<_>>(),
                );
                let want_y = cpu::matmul(&want, rows, cols, &x[..tokens * cols], tokens);
                assert_close(
                    &format!("matmul {name} n={tokens} f16={} cpu={cpu_kernel}", gpu.use_f16),
                    &read(&gpu, &yb, tokens * rows),
                    &want_y,
                    1e-5,
                );
            }
        }
    }
}

fn run(gpu: &Gpu, step: &wgpu::Buffer, n: usize, d: &[kernels::Dispatch]) {
    kernels::submit(
        gpu,
        step,
        Step { n_tokens: n as u32, pos: 0, kv_len: n as u32, _pad: 0 },
        &d.iter().collect::<Vec<_>>(),
    );
}

/// The fused launches against the CPU: Q|K|V of three different formats (K-quant rows of
/// 512) behind a fused RMSNorm, and gate/up with SiLU·mul; with subgroup reductions where the
/// adapter has them and with the workgroup-memory fallback forced; 37/21/19 rows (not
/// multiples of rows per workgroup), 5 tokens and 1 (decode).
#[test]
fn fused_qkv_and_gate_up_both_reduction_paths() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut gpu = gpus().remove(0);
    let step = kernels::step_buffer(&gpu);
    let cols = 512;
    let x = rand_vec(&mut rng, 5 * cols, 2.0);
    let g = rand_vec(&mut rng, cols, 1.5);
    let h = cpu::rmsnorm(&x, &g, 1e-5);
    let (xb, gb) = (buf(&gpu, &x), buf(&gpu, &g));
    let k_fixture = |name: &str| {
        std::fs::read(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/kquant-{name}.bin")),
        )
        .unwrap()
    };
    // Q4_K and Q6_K weights from the gguf-package fixtures (rows of 512 = 2 super-blocks)
    let kw = |gpu: &Gpu, name: &str, ty: GgmlType, rows: usize| {
        let raw = k_fixture(name)[..rows * 2 * ty.type_size() as usize].to_vec();
        let deq = quant::dequantize(ty, &raw).unwrap();
        (pollster::block_on(GpuWeight::upload(gpu, &info(name, ty, rows, cols), &raw, 999, |_| {})).unwrap(), deq)
    };
    let sg_paths: Vec<bool> = if gpu.subgroups { vec![true, false] } else { vec![false] };
    for sg in sg_paths {
        gpu.subgroups = sg;
        // several tokens: the matvec at tpr 4, the tiled prefill kernel at tpr 8; the CPU kernel
        for (tpr, cpu_kernel) in [(4, false), (8, false), (1, true)] {
            gpu.matmul_tpr = tpr;
            gpu.tiled_prefill = tpr == 8;
            gpu.cpu_matmul = cpu_kernel;
            let (wq, dq) = kw(&gpu, "q4_k", GgmlType::Q4K, 11);
            let (wk, dk) = weight(&gpu, &mut rng, GgmlType::Q5_1, 21, cols);
            let (wv, dv) = kw(&gpu, "q6_k", GgmlType::Q6K, 9);
            let rows = 11 + 21 + 9;
            let all: Vec<f32> = [dq, dk, dv].concat();
            let name = format!("sg={sg} tpr={tpr} tiled={} cpu={cpu_kernel}", gpu.tiled_prefill);
            for n in [5, 1] {
                let yb = gpu.storage("y", (n * rows * 4) as u64).unwrap();
                let norm = Some(NormIn { weight: &gb, eps: 1e-5 });
                let io = MatmulIo { x: &xb, y: &yb, y_stride: rows as u32, step: &step };
                let d = kernels::matmul_cat(&gpu, &[&wq, &wk, &wv], norm, io, MatmulOpts::default()).unwrap();
                assert_eq!(d.len(), 1, "one launch for Q, K and V");
                run(&gpu, &step, n, &d);
                assert_close(
                    &format!("qkv {name} n={n}"),
                    &read(&gpu, &yb, n * rows),
                    &cpu::matmul(&all, rows, cols, &h[..n * cols], n),
                    1e-5,
                );
            }
            let (wg, dg) = weight(&gpu, &mut rng, GgmlType::Q8_0, 37, cols);
            let (wu, du) = weight(&gpu, &mut rng, GgmlType::Q4_0, 37, cols);
            let yb = gpu.storage("y", (5 * 37 * 4) as u64).unwrap();
            let d = kernels::gate_up_silu(&gpu, &wg, &wu, Some(NormIn { weight: &gb, eps: 1e-5 }), &xb, &yb, &step)
                .unwrap()
                .unwrap();
            assert_eq!(d.len(), 1);
            run(&gpu, &step, 5, &d);
            let want = cpu::swiglu(&cpu::matmul(&dg, 37, cols, &h, 5), &cpu::matmul(&du, 37, cols, &h, 5));
            assert_close(&format!("gate_up_silu {name}"), &read(&gpu, &yb, 5 * 37), &want, 1e-5);
        }
    }
}
