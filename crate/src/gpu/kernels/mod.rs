//! WGSL kernels: how they are specialised, how weights are laid out for them, and the
//! `Dispatch` objects the model records once and replays every token.
//!
//! Every kernel has a CPU reference in [`reference`] and a test against it on sizes that are
//! not multiples of the workgroup size (`crate/tests/kernels.rs`).

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgmlType, TensorInfo};
use crate::gpu::{decls, BufSlice, Gpu, Slot};
use std::sync::Arc;

pub mod attention;
pub mod reference;

pub use attention::{
    attention, attention_scratch_floats, decode_splits, rope_store, AttentionIo, KvLayout, KvPart, LayerKv, RopeIo,
};

const COMMON: &str = include_str!("../../../../shaders/common.wgsl");
const QUANT: &str = include_str!("../../../../shaders/quant.wgsl");
const QUANT_COMMON: &str = include_str!("../../../../shaders/quant_common.wgsl");
const MATMUL: &str = include_str!("../../../../shaders/matmul.wgsl");
const MATMUL_COMMON: &str = include_str!("../../../../shaders/matmul_common.wgsl");
const MATMUL_TILED: &str = include_str!("../../../../shaders/matmul_tiled.wgsl");
const MATMUL_CPU: &str = include_str!("../../../../shaders/matmul_cpu.wgsl");
const NORM: &str = include_str!("../../../../shaders/norm.wgsl");
const ELEMENTWISE: &str = include_str!("../../../../shaders/elementwise.wgsl");
const EMBED: &str = include_str!("../../../../shaders/embed.wgsl");

/// Browsers guarantee 256 invocations per workgroup; we never ask for more.
pub const MAX_WG: u32 = 256;

/// Values shared by all kernels of one forward pass (mirrors `Step` in common.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub n_tokens: u32,
    pub pos: u32,
    pub kv_len: u32,
    pub _pad: u32,
}

/// Builds a kernel's source: `enable f16` when the KV cache is f16, constants, the `kv_t`
/// alias, the shared `Step` struct, the declarations of `slots`, then the kernel files.
fn source(gpu: &Gpu, consts: &[(&str, String)], slots: &[Slot], files: &[&str]) -> String {
    let mut s = String::new();
    // browsers require `enable subgroups;`, native naga rejects it
    if cfg!(target_arch = "wasm32") && gpu.subgroups {
        s.push_str("enable subgroups;\n");
    }
    if gpu.use_f16 {
        s.push_str("enable f16;\nalias kv_t = f16;\n");
    } else {
        s.push_str("alias kv_t = f32;\n");
    }
    for (k, v) in consts {
        s.push_str(&format!("const {k} = {v};\n"));
    }
    s.push_str(COMMON);
    s.push_str(&decls(slots));
    for f in files {
        s.push_str(f);
    }
    s
}

/// One recorded kernel launch: pipeline + bind group, replayed every pass. The grid is
/// `x` × ceil(n_tokens / tile) (tile 0: a single row of workgroups).
pub struct Dispatch {
    pub label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    x: u32,
    tile: u32,
    /// A variant specialised for single-token passes (decode): pipeline, bind group, grid x.
    single: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup, u32)>,
    /// What an attention launch reads of the KV cache.
    kv_read: Option<KvRead>,
}

/// The KV-cache rows an attention launch reads: every position it covers that a pass has
/// written, once per KV head (K and V), whatever the query heads of the group.
#[derive(Debug, Clone, Copy)]
pub struct KvRead {
    pub pos0: u64,
    pub len: u64,
    /// K and V bytes of one position, all KV heads.
    pub bytes_per_pos: u64,
}

impl Dispatch {
    /// KV-cache bytes this launch reads in a single-token pass over `kv_len` cached positions.
    pub fn kv_bytes_read(&self, kv_len: u64) -> u64 {
        self.kv_read.map_or(0, |r| kv_len.saturating_sub(r.pos0).min(r.len) * r.bytes_per_pos)
    }
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        let (p, bg, x, y) = match &self.single {
            Some((p, bg, x)) if n_tokens == 1 => (p, bg, *x, 1),
            _ => (
                &self.pipeline,
                &self.bind_group,
                self.x,
                if self.tile == 0 { 1 } else { n_tokens.div_ceil(self.tile) },
            ),
        };
        if x == 0 || y == 0 {
            return;
        }
        pass.set_pipeline(p);
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// Writes `step`, records `dispatches` in one compute pass and submits.
pub fn submit(gpu: &Gpu, step_buf: &wgpu::Buffer, step: Step, dispatches: &[&Dispatch]) {
    gpu.queue.write_buffer(step_buf, 0, bytemuck::bytes_of(&step));
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.encode(&mut pass, step.n_tokens);
        }
    }
    gpu.queue.submit([enc.finish()]);
}

/// A uniform `Step` buffer.
pub fn step_buffer(gpu: &Gpu) -> wgpu::Buffer {
    gpu.uniform("step", &Step::default())
}

/// A kernel's pipeline (compiled once per `key`): its source and its layout both from `slots`.
fn pipeline(
    gpu: &Gpu,
    key: &str,
    consts: &[(&str, String)],
    slots: &[Slot],
    files: &[&str],
) -> Result<Arc<wgpu::ComputePipeline>> {
    gpu.pipeline(key, &source(gpu, consts, slots, files), slots)
}

/// The uniform slots every kernel ends with: its `Params` and the pass's `Step`.
const P: Slot = Slot::uniform("p", "Params");
const STEP: Slot = Slot::uniform("step", "Step");

fn check_x(label: &str, x: u32, gpu: &Gpu) -> Result<u32> {
    if x > gpu.limits.max_compute_workgroups_per_dimension {
        return Err(Error::LimitsTooSmall(format!(
            "{label}: {x} workgroups exceed max_compute_workgroups_per_dimension {}",
            gpu.limits.max_compute_workgroups_per_dimension
        )));
    }
    Ok(x)
}

fn make(
    gpu: &Gpu,
    label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    buffers: &[BufSlice<'_>],
    x: u32,
    tile: u32,
) -> Result<Dispatch> {
    let x = check_x(&label, x, gpu)?;
    let bind_group = gpu.bind_group(&pipeline, buffers);
    Ok(Dispatch { label, pipeline, bind_group, x, tile, single: None, kv_read: None })
}

// ---------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------

pub use crate::quant::GpuFormat;

/// How the GPU holds `ty` (its format descriptor's GPU row); `None`: no GPU kernel.
pub fn gpu_format(ty: GgmlType) -> Option<GpuFormat> {
    crate::quant::format(ty).gpu
}

fn unsupported(ty: GgmlType, tensor: &str) -> Error {
    Error::UnsupportedType {
        tensor: tensor.to_string(),
        ty: ty.id(),
        name: format!("{} (no GPU kernel yet)", ty.name()),
    }
}

/// Byte layout of one weight part: [quant bytes | pad to 256 | f16 halves].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLayout {
    pub rows: u64,
    /// 32-value blocks per row (what the kernels iterate over).
    pub k_blocks: u64,
    pub row_qs_bytes: u64,
    /// f16 halves per row, padded to an even count so rows stay u32-aligned.
    pub row_sc_h: u64,
    pub sc_offset: u64,
    pub total: u64,
}

impl PartLayout {
    pub fn new(fmt: GpuFormat, rows: u64, cols: u64) -> Self {
        let units = cols / fmt.block as u64;
        let row_qs_bytes = units * fmt.qs_v4 as u64 * 16;
        let row_sc_h = (units * fmt.sc_h as u64).next_multiple_of(2);
        let sc_offset = (rows * row_qs_bytes).next_multiple_of(256);
        let total = sc_offset + (rows * row_sc_h * 2).max(4);
        PartLayout { rows, k_blocks: cols / 32, row_qs_bytes, row_sc_h, sc_offset, total }
    }
}

/// Splits GGUF rows (`raw`, whole rows of `cols` elements of `ty`) into the quant and scale
/// arrays of the GPU layout: each block's bytes are copied as they are, only regrouped.
pub fn repack(ty: GgmlType, cols: u64, raw: &[u8], qs: &mut Vec<u8>, sc: &mut Vec<u8>) -> Result<()> {
    let fmt = gpu_format(ty).ok_or_else(|| unsupported(ty, "?"))?;
    let row_bytes = (cols / ty.block_size() * ty.type_size()) as usize;
    if row_bytes == 0 || !raw.len().is_multiple_of(row_bytes) || !cols.is_multiple_of(fmt.block as u64) {
        return Err(Error::Corrupt(format!(
            "{} data of {} bytes is not whole rows of {row_bytes}",
            ty.name(),
            raw.len()
        )));
    }
    let units = (cols / fmt.block as u64) as usize;
    let row_sc_h = (units * fmt.sc_h as usize).next_multiple_of(2);
    let (unit_bytes, sc_bytes) = (row_bytes / units, fmt.sc_h as usize * 2);
    for row in raw.chunks_exact(row_bytes) {
        for unit in row.chunks_exact(unit_bytes) {
            let (head, rest) = unit.split_at(if fmt.sc_tail { unit_bytes - sc_bytes } else { sc_bytes });
            let (q, s) = if fmt.sc_tail { (head, rest) } else { (rest, head) };
            qs.extend_from_slice(q);
            sc.extend_from_slice(s);
        }
        // pad this row's halves to an even count
        sc.resize(sc.len() + (row_sc_h - units * fmt.sc_h as usize) * 2, 0);
    }
    Ok(())
}

/// A contiguous range of rows of a weight matrix in one GPU buffer.
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub row0: u64,
    pub layout: PartLayout,
}

/// A weight matrix on the GPU, split by rows so no binding exceeds the device limit.
pub struct GpuWeight {
    pub name: String,
    pub ty: GgmlType,
    pub rows: u64,
    pub cols: u64,
    pub fmt: GpuFormat,
    pub parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Rows per part so that a part (quants and scales, one binding) fits `max_binding`.
    pub fn rows_per_part(fmt: GpuFormat, cols: u64, max_binding: u64) -> u64 {
        let l = PartLayout::new(fmt, 1, cols);
        let per_row = (l.row_qs_bytes + l.row_sc_h * 2).max(1);
        (max_binding.saturating_sub(512) / per_row).max(1)
    }

    /// Streams tensor `t` (rows × cols of its type, at its offset in `src`) to the GPU in
    /// chunks of about `chunk_bytes`, repacking on the way. Host memory: one chunk.
    pub async fn upload<S: AsyncByteSource + ?Sized>(
        gpu: &Gpu,
        t: &TensorInfo,
        src: &S,
        chunk_bytes: u64,
        mut on_bytes: impl FnMut(u64),
    ) -> Result<GpuWeight> {
        let (name, ty, rows, cols, offset) = (t.name.as_str(), t.ty, t.rows(), t.cols(), t.offset);
        let fmt = gpu_format(ty).ok_or_else(|| unsupported(ty, name))?;
        if !cols.is_multiple_of(32) || !cols.is_multiple_of(fmt.block as u64) || !cols.is_multiple_of(ty.block_size()) {
            return Err(Error::UnsupportedModel(format!("tensor '{name}': row length {cols} is not a multiple of 32")));
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let per_part = Self::rows_per_part(fmt, cols, gpu.max_binding);
        let rows_per_chunk = (chunk_bytes / row_bytes).max(1);
        let mut parts = Vec::new();
        let (mut raw, mut qs, mut sc) = (Vec::new(), Vec::new(), Vec::new());
        let mut row0 = 0;
        while row0 < rows {
            let n = per_part.min(rows - row0);
            let layout = PartLayout::new(fmt, n, cols);
            let buffer = gpu.storage(&format!("{name}[{row0}..]"), layout.total)?;
            let mut r = 0;
            while r < n {
                let m = rows_per_chunk.min(n - r);
                raw.resize((m * row_bytes) as usize, 0);
                src.fetch(offset + (row0 + r) * row_bytes, &mut raw).await?;
                crate::numerics::check_weights(name, ty, &raw, (row0 + r) * (cols / ty.block_size()))?;
                qs.clear();
                sc.clear();
                repack(ty, cols, &raw, &mut qs, &mut sc)?;
                gpu.write(&buffer, r * layout.row_qs_bytes, &qs);
                if !sc.is_empty() {
                    gpu.write(&buffer, layout.sc_offset + r * layout.row_sc_h * 2, &sc);
                }
                on_bytes(m * row_bytes);
                r += m;
                // hand the staged chunk to the GPU now: otherwise wgpu keeps every staging
                // copy until the next submit, i.e. the whole model twice
                gpu.flush_writes()?;
            }
            parts.push(WeightPart { buffer, row0, layout });
            row0 += n;
        }
        gpu.check()?;
        Ok(GpuWeight { name: name.to_string(), ty, rows, cols, fmt, parts })
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.layout.total).sum()
    }
}

// ---------------------------------------------------------------------------------------
// Kernel constructors
// ---------------------------------------------------------------------------------------

/// Threads per workgroup and tokens per tile of the matmul kernel; rows and tokens per tile
/// of the tiled prefill kernel.
const MM_WG: u32 = 64;
const MM_TT: u32 = 8;
const MM_TILE: u32 = 32;
/// Tokens per workgroup of the CPU-adapter kernel (matmul_cpu.wgsl) in prefill: each decoded
/// block serves 16 (measured on lavapipe, gate|up of SmolLM2 for 64 tokens: 8 → 24 ms,
/// 16 → 22 ms, 32 → 19 ms, with larger shaders to compile).
const MM_CPU_TT: u32 = 16;

/// quant.wgsl's sections, in file order: (name, the sections it calls, text). Each starts at a
/// marker line `//@ NAME: DEPS` and runs to the next; the text before the first is its header.
fn quant_sections() -> impl Iterator<Item = (&'static str, Vec<&'static str>, &'static str)> {
    QUANT.split("\n//@ ").skip(1).map(|sec| {
        let (head, text) = sec.split_once('\n').unwrap_or((sec, ""));
        let (name, deps) = head.split_once(':').unwrap_or((head, ""));
        (name.trim(), deps.split_whitespace().collect(), text)
    })
}

/// The weight decoders of `fmt` for binding `w{s}` (quant.wgsl's sections instantiated with
/// `_S` → `_{s}`), and `fn load{s}`: only the sections that format's decoder needs.
fn loader_src(fmt: GpuFormat, s: usize, sc_v4: &str) -> String {
    let mut out = format!(
        "fn wq_{s}(i: u32) -> vec4<u32> {{ return w{s}[i]; }}\n\
         fn ws_{s}(i: u32) -> u32 {{ return w{s}[{sc_v4} + (i >> 2u)][i & 3u]; }}\n"
    );
    // the decoder and, transitively, the sections its marker names
    let mut wanted = vec![fmt.load_fn];
    let mut i = 0;
    while i < wanted.len() {
        for (name, deps, _) in quant_sections() {
            if name == wanted[i] {
                wanted.extend(deps.into_iter().filter(|d| !wanted.contains(d)).collect::<Vec<_>>());
            }
        }
        i += 1;
    }
    for (name, _, text) in quant_sections() {
        if wanted.contains(&name) {
            out.push_str(&text.replace("_S(", &format!("_{s}(")));
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "fn load{s}(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {{ return {}_{s}(qrow, srow, b); }}\n",
        fmt.load_fn
    ));
    out
}

/// Options of a matmul dispatch.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatmulOpts {
    /// y += W x instead of y = W x (fuses the residual add).
    pub accumulate: bool,
    /// Only the last token of the pass, written to row 0 of `y` (generation logits).
    pub last_only: bool,
}

/// A fused RMSNorm before a matmul: `h = x / rms(x) · weight`.
#[derive(Clone, Copy)]
pub struct NormIn<'a> {
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

/// One weight part of a matmul launch (mirrors `Seg` in matmul_common.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SegParams {
    pub rows: u32,
    pub row_qs_v4: u32,
    pub row_sc_h: u32,
    pub wg0: u32,
    pub y_off: u32,
    pub _pad: [u32; 3],
}

/// Mirrors `Params` in matmul_common.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub k_blocks: u32,
    pub x_stride_v4: u32,
    pub y_stride: u32,
    pub flags: u32,
    pub eps: f32,
    pub _pad: [u32; 3],
    pub sc_v4: [u32; 4],
    pub seg: [SegParams; 3],
}

impl MatmulParams {
    pub const ACCUMULATE: u32 = 1;
    pub const LAST_ONLY: u32 = 2;
}

/// Reduction of a row's lanes: subgroup shuffles where the adapter has them (natively; the
/// browser once wgpu maps `subgroups`) and lanes fit one subgroup, else workgroup memory.
fn use_subgroups(gpu: &Gpu, tpr: u32) -> bool {
    gpu.subgroups && tpr > 1 && tpr <= gpu.subgroup_min_size
}

/// Helpers of matmul_cpu.wgsl. With `bcast` (subgroups of 8 or more lanes) every run of 8
/// consecutive vec4 of x or g is one load per lane, broadcast from each lane: on a CPU
/// adapter a uniform load costs more than a lane broadcast. Otherwise plain uniform loads.
fn cpu_helpers(bcast: bool) -> String {
    if !bcast {
        return "fn x8(xb: u32, lane: u32) -> array<vec4<f32>, 8> {\n\
                    var o: array<vec4<f32>, 8>;\n\
                    for (var i = 0u; i < 8u; i++) { o[i] = x[xb + i]; }\n\
                    return o;\n\
                }\n\
                fn norm8(gb: u32, lane: u32) -> array<vec4<f32>, 8> {\n\
                    var o: array<vec4<f32>, 8>;\n\
                    for (var i = 0u; i < 8u; i++) { o[i] = gw(gb + i); }\n\
                    return o;\n\
                }\n\
                fn sum_sq(xb: u32, n4: u32, lane: u32) -> f32 {\n\
                    var ss = 0.0;\n\
                    for (var i = 0u; i < n4; i++) { let v = x[xb + i]; ss += dot(v, v); }\n\
                    return ss;\n\
                }\n"
        .into();
    }
    let mut s = String::new();
    for (name, load) in [("x8(xb", "x[xb + (lane & 7u)]"), ("norm8(gb", "gw(gb + (lane & 7u))")] {
        s.push_str(&format!(
            "fn {name}: u32, lane: u32) -> array<vec4<f32>, 8> {{\n    let v = {load};\n    var o: array<vec4<f32>, 8>;\n"
        ));
        for i in 0..8 {
            s.push_str(&format!("    o[{i}] = subgroupBroadcast(v, {i}u);\n"));
        }
        s.push_str("    return o;\n}\n");
    }
    s.push_str(
        "\
         // Σ x[xb + i]² over n4 vec4: lanes take every 8th (the subgroup covers all), then add up\n\
         fn sum_sq(xb: u32, n4: u32, lane: u32) -> f32 {\n\
             var ss = 0.0;\n\
             for (var i = lane & 7u; i < n4; i += 8u) { let v = x[xb + i]; ss += dot(v, v); }\n\
             return subgroupAdd(ss);\n\
         }\n",
    );
    s
}

/// The matmul's bindings: `nw` weights, x, the norm weight g (with a fused norm), y, p, step.
fn matmul_slots(nw: usize, norm: bool) -> Vec<Slot> {
    let mut s: Vec<Slot> = ["w0", "w1", "w2"][..nw].iter().map(|w| Slot::read(w, "array<vec4<u32>>")).collect();
    s.push(Slot::read("x", "array<vec4<f32>>"));
    if norm {
        s.push(Slot::read("g", "array<vec4<f32>>"));
    }
    s.extend([Slot::read_write("y", "array<f32>"), P, STEP]);
    s
}

/// The activations of a matmul launch: `x` rows of the weights' row length in, `y` rows of
/// `y_stride` floats out, and the pass's `step`.
#[derive(Clone, Copy)]
pub struct MatmulIo<'a> {
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub y_stride: u32,
    pub step: &'a wgpu::Buffer,
}

/// A matmul launch over `segs` (weight parts with the first output column of each), GLU
/// when `glu` (segs = [gate part, up part]).
fn matmul_launch(
    gpu: &Gpu,
    segs: &[(&GpuWeight, &WeightPart, u32)],
    glu: bool,
    norm: Option<NormIn<'_>>,
    io: MatmulIo<'_>,
    opts: MatmulOpts,
) -> Result<Dispatch> {
    let MatmulIo { x, y, y_stride, step } = io;
    let cpu = gpu.cpu_matmul;
    let tpr = if cpu { 1 } else { gpu.matmul_tpr };
    let rpw = MM_WG / tpr;
    let cols = segs.first().map_or(0, |s| s.0.cols);
    if segs.is_empty() || segs.len() > 3 || segs.iter().any(|s| s.0.cols != cols) {
        return Err(Error::UnsupportedModel("matmul: 1 to 3 weights of one row length".into()));
    }
    let sg = use_subgroups(gpu, tpr);
    let slots = matmul_slots(segs.len(), norm.is_some());
    // tiled: the prefill kernel (32 × 32 tiles); else the matvec with `tt` tokens per tile
    let pipe = |tt: u32, tiled: bool| -> Result<Arc<wgpu::ComputePipeline>> {
        let consts = vec![
            ("WG", format!("{MM_WG}u")),
            ("TPR", format!("{tpr}u")),
            ("TT", format!("{}u", if tiled { MM_TILE } else { tt })),
            ("NSEG", format!("{}u", segs.len())),
            ("GLU", glu.to_string()),
            ("NACC", format!("{}u", if glu { 2 } else { 1 })),
            ("NORM", norm.is_some().to_string()),
            ("SG", sg.to_string()),
        ];
        let mut pre = String::new();
        pre.push_str(if norm.is_some() {
            "fn gw(i: u32) -> vec4<f32> { return g[i]; }\n"
        } else {
            "fn gw(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }\n"
        });
        pre.push_str(if sg && !tiled {
            "fn sg_xor(v: f32, o: u32) -> f32 { return subgroupShuffleXor(v, o); }\n"
        } else {
            "fn sg_xor(v: f32, o: u32) -> f32 { return v; }\n"
        });
        if cpu {
            pre.push_str(&cpu_helpers(gpu.subgroups && gpu.subgroup_min_size >= 8));
        }
        for (i, s) in segs.iter().enumerate() {
            pre.push_str(&loader_src(s.0.fmt, i, &format!("p.sc_v4[{i}]")));
        }
        for i in segs.len()..3 {
            pre.push_str(&format!(
                "fn load{i}(qrow: u32, srow: u32, b: u32) -> array<vec4<f32>, 8> {{ return load0(qrow, srow, b); }}\n"
            ));
        }
        let fmts: Vec<&str> = segs.iter().map(|s| s.0.fmt.load_fn).collect();
        let key = format!(
            "matmul {} tt{tt} tiled{tiled} cpu{cpu} tpr{tpr} glu{glu} norm{} sg{sg}",
            fmts.join(","),
            norm.is_some()
        );
        let main = if tiled {
            MATMUL_TILED
        } else if cpu {
            MATMUL_CPU
        } else {
            MATMUL
        };
        pipeline(gpu, &key, &consts, &slots, &[QUANT_COMMON, MATMUL_COMMON, main, &pre])
    };
    // Params for a grid of `rows_per_wg` rows per workgroup.
    let params = |rows_per_wg: u32| -> (wgpu::Buffer, u32) {
        let mut p = MatmulParams {
            k_blocks: (cols / 32) as u32,
            x_stride_v4: (cols / 4) as u32,
            y_stride,
            flags: if opts.accumulate { MatmulParams::ACCUMULATE } else { 0 }
                | if opts.last_only { MatmulParams::LAST_ONLY } else { 0 },
            eps: norm.map_or(0.0, |n| n.eps),
            ..Default::default()
        };
        let mut wg = 0u32;
        for (i, (_, part, y_off)) in segs.iter().enumerate() {
            let l = part.layout;
            p.sc_v4[i] = (l.sc_offset / 16) as u32;
            p.seg[i] = SegParams {
                rows: l.rows as u32,
                row_qs_v4: (l.row_qs_bytes / 16) as u32,
                row_sc_h: l.row_sc_h as u32,
                wg0: if glu { 0 } else { wg },
                y_off: *y_off,
                _pad: [0; 3],
            };
            if !glu || i == 0 {
                wg += (l.rows as u32).div_ceil(rows_per_wg);
            }
        }
        (gpu.uniform("matmul", &p), wg)
    };
    let bind = |pipeline: &wgpu::ComputePipeline, pbuf: &wgpu::Buffer| {
        let mut b: Vec<BufSlice<'_>> = segs.iter().map(|s| (&s.1.buffer).into()).collect();
        b.push(x.into());
        if let Some(n) = norm {
            b.push(n.weight.into());
        }
        b.extend::<[BufSlice<'_>; 3]>([y.into(), pbuf.into(), step.into()]);
        gpu.bind_group(pipeline, &b)
    };
    let names: Vec<String> = segs.iter().map(|s| format!("{}[{}..]", s.0.name, s.1.row0)).collect();
    let label = format!("matmul{} {}", if glu { " glu" } else { "" }, names.join(" + "));

    // decode variant: matvec, one token
    let single = pipe(1, false)?;
    let (p1, x1) = params(rpw);
    let bg1 = bind(&single, &p1);
    // passes of several tokens: the tiled kernel, or (last token only / switched off) the matvec
    let tiled = gpu.tiled_prefill && !cpu && !opts.last_only;
    let (multi, (pm, xm), tile) = if tiled {
        (pipe(MM_TILE, true)?, params(MM_TILE), MM_TILE)
    } else if cpu {
        // the CPU kernel loops over all TT tokens: the last token alone takes TT = 1
        let tt = if opts.last_only { 1 } else { MM_CPU_TT };
        (pipe(tt, false)?, params(rpw), if opts.last_only { 0 } else { tt })
    } else {
        (pipe(MM_TT, false)?, params(rpw), if opts.last_only { 0 } else { MM_TT })
    };
    let bgm = bind(&multi, &pm);
    check_x(&label, xm.max(x1), gpu)?;
    let x = xm;
    Ok(Dispatch { label, pipeline: multi, bind_group: bgm, x, tile, single: Some((single, bg1, x1)), kv_read: None })
}

/// `y[t, :] (+)= W · h[t, :]` for every token of the pass, with `h = x` or the fused
/// RMSNorm of x. The rows of all `ws` (e.g. Q, K, V) are concatenated in y's columns; parts
/// go up to three per launch (one launch when no weight is split).
pub fn matmul_cat(
    gpu: &Gpu,
    ws: &[&GpuWeight],
    norm: Option<NormIn<'_>>,
    io: MatmulIo<'_>,
    opts: MatmulOpts,
) -> Result<Vec<Dispatch>> {
    let mut segs = Vec::new();
    let mut off = 0u32;
    for w in ws {
        for p in &w.parts {
            segs.push((*w, p, off + p.row0 as u32));
        }
        off += w.rows as u32;
    }
    segs.chunks(3).map(|c| matmul_launch(gpu, c, false, norm, io, opts)).collect()
}

/// `y[t, :] (+)= W · x[t, :]`; one launch per (up to three) weight parts.
pub fn matmul(
    gpu: &Gpu,
    w: &GpuWeight,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    y_stride: u32,
    step: &wgpu::Buffer,
    opts: MatmulOpts,
) -> Result<Vec<Dispatch>> {
    matmul_cat(gpu, &[w], None, MatmulIo { x, y, y_stride, step }, opts)
}

/// `y[t, :] = silu(Wgate h) ⊙ (Wup h)`, h the fused RMSNorm of x (or x): one launch per part
/// pair. Returns `None` when gate and up are split differently (then use matmul + swiglu).
pub fn gate_up_silu(
    gpu: &Gpu,
    gate: &GpuWeight,
    up: &GpuWeight,
    norm: Option<NormIn<'_>>,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Option<Vec<Dispatch>>> {
    let same = gate.rows == up.rows
        && gate.cols == up.cols
        && gate.parts.len() == up.parts.len()
        && gate.parts.iter().zip(&up.parts).all(|(a, b)| a.row0 == b.row0 && a.layout.rows == b.layout.rows);
    if !same {
        return Ok(None);
    }
    let n = gate.rows as u32;
    gate.parts
        .iter()
        .zip(&up.parts)
        .map(|(g, u)| {
            let segs = [(gate, g, g.row0 as u32), (up, u, u.row0 as u32)];
            matmul_launch(gpu, &segs, true, norm, MatmulIo { x, y, y_stride: n, step }, MatmulOpts::default())
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

const ELEM_WG: u32 = 256;
const NORM_WG: u32 = 256;
const _: () = assert!(MM_WG <= MAX_WG && ELEM_WG <= MAX_WG && NORM_WG <= MAX_WG);

fn wg_const(n: u32) -> Vec<(&'static str, String)> {
    vec![("WG", format!("{n}u"))]
}

/// Mirrors `Params` in norm.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub dim: u32,
    pub eps: f32,
}

/// RMSNorm of each token's row of `dim` floats: `y = x / rms(x) * g`.
pub fn rmsnorm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    g: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dim: u32,
    eps: f32,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    const SLOTS: [Slot; 5] =
        [Slot::read("x", "array<f32>"), Slot::read("g", "array<f32>"), Slot::read_write("y", "array<f32>"), P, STEP];
    let pipeline = pipeline(gpu, "rmsnorm", &wg_const(NORM_WG), &SLOTS, &[NORM])?;
    let params = gpu.uniform("rmsnorm", &NormParams { dim, eps });
    make(gpu, "rmsnorm".into(), pipeline, &[x.into(), g.into(), y.into(), (&params).into(), step.into()], 1, 1)
}

/// Shapes for the attention-side kernels.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    /// KV cache capacity in positions.
    pub ctx: u32,
}

/// Mirrors `Params` in elementwise.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SwigluParams {
    pub n: u32,
}

/// `g = silu(g) · u` over rows of `n` floats.
pub fn swiglu(gpu: &Gpu, g: &wgpu::Buffer, u: &wgpu::Buffer, n: u32, step: &wgpu::Buffer) -> Result<Dispatch> {
    const SLOTS: [Slot; 4] = [Slot::read_write("g", "array<f32>"), Slot::read("u", "array<f32>"), P, STEP];
    let pipeline = pipeline(gpu, "swiglu", &wg_const(ELEM_WG), &SLOTS, &[ELEMENTWISE])?;
    let params = gpu.uniform("swiglu", &SwigluParams { n });
    make(gpu, "swiglu".into(), pipeline, &[g.into(), u.into(), (&params).into(), step.into()], n.div_ceil(ELEM_WG), 1)
}

/// Mirrors `Params` in embed.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbedParams {
    pub row0: u32,
    pub rows: u32,
    pub k_blocks: u32,
    pub row_qs_v4: u32,
    pub row_sc_h: u32,
    pub sc_v4: u32,
    pub _pad: [u32; 2],
}

/// Embedding rows for the token ids in `ids` → `out` [n, cols] f32; one dispatch per part.
pub fn embed(
    gpu: &Gpu,
    w: &GpuWeight,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    const SLOTS: [Slot; 5] = [
        Slot::read("w0", "array<vec4<u32>>"),
        Slot::read("ids", "array<u32>"),
        Slot::read_write("out", "array<vec4<f32>>"),
        P,
        STEP,
    ];
    let key = format!("embed_{}", w.fmt.load_fn);
    let loader = loader_src(w.fmt, 0, "p.sc_v4");
    let pipeline = pipeline(gpu, &key, &wg_const(ELEM_WG), &SLOTS, &[QUANT_COMMON, EMBED, &loader])?;
    w.parts
        .iter()
        .map(|part| {
            let l = part.layout;
            let params = EmbedParams {
                row0: part.row0 as u32,
                rows: l.rows as u32,
                k_blocks: l.k_blocks as u32,
                row_qs_v4: (l.row_qs_bytes / 16) as u32,
                row_sc_h: l.row_sc_h as u32,
                sc_v4: (l.sc_offset / 16) as u32,
                _pad: [0; 2],
            };
            let params = gpu.uniform("embed", &params);
            make(
                gpu,
                format!("embed {}[{}..]", w.name, part.row0),
                pipeline.clone(),
                &[(&part.buffer).into(), ids.into(), out.into(), (&params).into(), step.into()],
                (l.k_blocks as u32).div_ceil(ELEM_WG),
                1,
            )
        })
        .collect()
}
