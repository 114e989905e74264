//! WGSL kernels: how they are specialised, how weights are laid out for them, and the
//! `Dispatch` objects the model records once and replays every token.
//!
//! Every kernel has a CPU reference in [`reference`] and a test against it on sizes that are
//! not multiples of the workgroup size (see the tests at the bottom and `tests/kernels.rs`).

use crate::error::{Error, Result};
use crate::gguf::{AsyncByteSource, GgmlType};
use crate::gpu::{Binding, BufSlice, Gpu};
use crate::quant;
use std::sync::Arc;

pub mod reference;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const QUANT: &str = include_str!("../../shaders/quant.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const NORM: &str = include_str!("../../shaders/norm.wgsl");
const ROPE: &str = include_str!("../../shaders/rope.wgsl");
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
const EMBED: &str = include_str!("../../shaders/embed.wgsl");

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
/// alias, the shared `Step` struct, then the kernel files.
pub fn source(gpu: &Gpu, consts: &[(&str, String)], files: &[&str]) -> String {
    let mut s = String::new();
    if gpu.use_f16 {
        s.push_str("enable f16;\nalias kv_t = f16;\n");
    } else {
        s.push_str("alias kv_t = f32;\n");
    }
    for (k, v) in consts {
        s.push_str(&format!("const {k} = {v};\n"));
    }
    s.push_str(COMMON);
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
    /// A variant specialised for single-token passes (decode), with its bind group.
    single: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        let y = if self.tile == 0 { 1 } else { n_tokens.div_ceil(self.tile) };
        if self.x == 0 || y == 0 {
            return;
        }
        let (p, bg) = match &self.single {
            Some((p, bg)) if n_tokens == 1 => (p, bg),
            _ => (&self.pipeline, &self.bind_group),
        };
        pass.set_pipeline(p);
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(self.x, y, 1);
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
    gpu.uniform("step", &[0; 4])
}

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
    Ok(Dispatch { label, pipeline, bind_group, x, tile, single: None })
}

// ---------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------

/// How a weight type is stored on the GPU: per 32-element block, `qs_v4` × 16 bytes of
/// quant bits and `sc_h` f16 scales (kept apart so every load is aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuFormat {
    pub qs_v4: u32,
    pub sc_h: u32,
    pub load_fn: &'static str,
}

pub fn gpu_format(ty: GgmlType) -> Option<GpuFormat> {
    let f = |qs_v4, sc_h, load_fn| Some(GpuFormat { qs_v4, sc_h, load_fn });
    match ty {
        GgmlType::F32 => f(8, 0, "load_block_f32"),
        GgmlType::F16 => f(4, 0, "load_block_f16"),
        GgmlType::BF16 => f(4, 0, "load_block_bf16"),
        GgmlType::Q8_0 => f(2, 1, "load_block_q8_0"),
        GgmlType::Q4_0 => f(1, 1, "load_block_q4_0"),
        GgmlType::Q4_1 => f(1, 2, "load_block_q4_1"),
        // K-quants are unpacked into 32-value sub-blocks with f32 scale/min (see quant::blocks::kblock)
        GgmlType::Q4K => f(1, 4, "load_block_q4_k"),
        GgmlType::Q5K => f(1, 6, "load_block_q5_k"),
        GgmlType::Q6K => f(2, 4, "load_block_q6_k"),
        _ => None,
    }
}

fn unsupported(ty: GgmlType, tensor: &str) -> Error {
    Error::UnsupportedType {
        tensor: tensor.to_string(),
        ty: ty.id(),
        name: format!("{} (no GPU kernel yet)", ty.name()),
    }
}

/// Byte layout of one repacked weight part: [quant bits | pad to 256 | f16 scales].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLayout {
    pub rows: u64,
    pub k_blocks: u64,
    pub row_qs_bytes: u64,
    /// f16 scales per row, padded to an even count so rows stay u32-aligned.
    pub row_sc_h: u64,
    pub sc_offset: u64,
    pub total: u64,
}

impl PartLayout {
    pub fn new(fmt: GpuFormat, rows: u64, cols: u64) -> Self {
        let k_blocks = cols / 32;
        let row_qs_bytes = k_blocks * fmt.qs_v4 as u64 * 16;
        let row_sc_h = (k_blocks * fmt.sc_h as u64).next_multiple_of(2);
        let sc_offset = (rows * row_qs_bytes).next_multiple_of(256);
        let total = sc_offset + (rows * row_sc_h * 2).max(4);
        PartLayout { rows, k_blocks, row_qs_bytes, row_sc_h, sc_offset, total }
    }
}

/// Splits GGUF rows (`raw`, whole rows of `cols` elements of `ty`) into quant bits and f16
/// scales in the GPU layout. Scales and quants are copied bit for bit: no precision change.
pub fn repack(ty: GgmlType, cols: u64, raw: &[u8], qs: &mut Vec<u8>, sc: &mut Vec<u8>) -> Result<()> {
    let fmt = gpu_format(ty).ok_or_else(|| unsupported(ty, "?"))?;
    let row_bytes = (cols / ty.block_size() * ty.type_size()) as usize;
    if row_bytes == 0 || raw.len() % row_bytes != 0 {
        return Err(Error::Corrupt(format!(
            "{} data of {} bytes is not whole rows of {row_bytes}",
            ty.name(),
            raw.len()
        )));
    }
    let k_blocks = (cols / 32) as usize;
    let row_sc_h = (k_blocks * fmt.sc_h as usize).next_multiple_of(2);
    for row in raw.chunks_exact(row_bytes) {
        match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => qs.extend_from_slice(row),
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
                for block in row.chunks_exact(ty.type_size() as usize) {
                    if let Some(k) = quant::blocks::kblock(ty, block) {
                        for s in 0..8 {
                            repack_sub_block(ty, &k, s, qs, sc);
                        }
                    }
                }
            }
            _ => {
                let (bs, sb) = (ty.type_size() as usize, fmt.sc_h as usize * 2);
                for block in row.chunks_exact(bs) {
                    sc.extend_from_slice(&block[..sb]);
                    qs.extend_from_slice(&block[sb..]);
                }
                // pad this row's scales to an even count of f16
                sc.resize(sc.len() + (row_sc_h - k_blocks * fmt.sc_h as usize) * 2, 0);
            }
        }
    }
    Ok(())
}

/// One K-quant sub-block in the GPU layout (the formats load_block_q*_k in quant.wgsl read).
fn repack_sub_block(ty: GgmlType, k: &quant::blocks::KBlock, s: usize, qs: &mut Vec<u8>, sc: &mut Vec<u8>) {
    let q: [u8; 32] = std::array::from_fn(|l| k.q[32 * s + l] as u8);
    match ty {
        GgmlType::Q6K => {
            qs.extend_from_slice(&q); // signed bytes, like Q8_0
            sc.extend(k.scale[2 * s].to_le_bytes());
            sc.extend(k.scale[2 * s + 1].to_le_bytes());
        }
        _ => {
            // low nibbles in Q4_0's order: byte i holds values i and i + 16
            qs.extend((0..16).map(|i| (q[i] & 15) | (q[i + 16] & 15) << 4));
            sc.extend(k.scale[2 * s].to_le_bytes());
            sc.extend(k.min[s].to_le_bytes());
            if ty == GgmlType::Q5K {
                let qh = (0..32).fold(0u32, |h, i| h | ((q[i] as u32 >> 4) & 1) << i);
                sc.extend(qh.to_le_bytes());
            }
        }
    }
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
    /// Rows per part so that each binding (quants, scales) fits `max_binding`.
    pub fn rows_per_part(fmt: GpuFormat, cols: u64, max_binding: u64) -> u64 {
        let l = PartLayout::new(fmt, 1, cols);
        let per_row = l.row_qs_bytes.max(l.row_sc_h * 2).max(1);
        (max_binding.saturating_sub(256) / per_row).max(1)
    }

    /// Streams rows `[rows × cols]` of type `ty` from `src` at `offset` to the GPU in
    /// chunks of about `chunk_bytes`, repacking on the way. Host memory: one chunk.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload<S: AsyncByteSource + ?Sized>(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        rows: u64,
        cols: u64,
        src: &S,
        offset: u64,
        chunk_bytes: u64,
        mut on_bytes: impl FnMut(u64),
    ) -> Result<GpuWeight> {
        let fmt = gpu_format(ty).ok_or_else(|| unsupported(ty, name))?;
        if cols % 32 != 0 || cols % ty.block_size() != 0 {
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

    fn qs_slice(p: &WeightPart) -> BufSlice<'_> {
        BufSlice { buffer: &p.buffer, offset: 0, size: Some((p.layout.rows * p.layout.row_qs_bytes).max(16)) }
    }
    fn sc_slice(p: &WeightPart) -> BufSlice<'_> {
        BufSlice { buffer: &p.buffer, offset: p.layout.sc_offset, size: Some(p.layout.total - p.layout.sc_offset) }
    }
}

// ---------------------------------------------------------------------------------------
// Kernel constructors
// ---------------------------------------------------------------------------------------

/// Threads per row, rows per workgroup and tokens per tile of the matmul kernel.
const MM_WG: u32 = 64;
const MM_TT: u32 = 8;

fn weight_consts(fmt: GpuFormat) -> Vec<(&'static str, String)> {
    vec![("QS_V4", format!("{}u", fmt.qs_v4)), ("SC_H", format!("{}u", fmt.sc_h))]
}

fn load_block_alias(fmt: GpuFormat) -> String {
    format!("fn load_block(qi: u32, si: u32) -> array<vec4<f32>, 8> {{ return {}(qi, si); }}\n", fmt.load_fn)
}

/// Options of a matmul dispatch.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatmulOpts {
    /// y += W x instead of y = W x (fuses the residual add).
    pub accumulate: bool,
    /// Only the last token of the pass, written to row 0 of `y` (generation logits).
    pub last_only: bool,
}

/// `y[t, :] (+)= W · x[t, :]` for every token of the pass; one dispatch per weight part.
/// `x` rows are `w.cols` floats, `y` rows `y_stride` floats.
pub fn matmul(
    gpu: &Gpu,
    w: &GpuWeight,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    y_stride: u32,
    step: &wgpu::Buffer,
    opts: MatmulOpts,
) -> Result<Vec<Dispatch>> {
    let mut out = Vec::new();
    let tpr = gpu.matmul_tpr;
    let rpw = MM_WG / tpr;
    let pipe = |tt: u32| -> Result<Arc<wgpu::ComputePipeline>> {
        let mut consts = weight_consts(w.fmt);
        consts.extend([("WG", format!("{MM_WG}u")), ("TPR", format!("{tpr}u")), ("TT", format!("{tt}u"))]);
        let src = source(gpu, &consts, &[QUANT, MATMUL, &load_block_alias(w.fmt)]);
        gpu.pipeline(&format!("matmul_{}_{tt}_{tpr}", w.fmt.load_fn), &src, &MATMUL_BINDINGS)
    };
    // decode gets a one-token variant: no per-token accumulator array to index
    let (multi, single) = (pipe(MM_TT)?, pipe(1)?);
    for part in &w.parts {
        let l = part.layout;
        let flags = opts.accumulate as u32 | (opts.last_only as u32) << 1;
        let params = gpu.uniform(
            "matmul",
            &[
                l.rows as u32,
                l.k_blocks as u32,
                (l.row_qs_bytes / 16) as u32,
                l.row_sc_h as u32,
                (w.cols / 4) as u32,
                y_stride,
                part.row0 as u32,
                flags,
            ],
        );
        let buffers =
            [GpuWeight::qs_slice(part), GpuWeight::sc_slice(part), x.into(), y.into(), (&params).into(), step.into()];
        let label = format!("matmul {}[{}..]", w.name, part.row0);
        let mut d = make(
            gpu,
            label,
            multi.clone(),
            &buffers,
            (l.rows as u32).div_ceil(rpw),
            if opts.last_only { 0 } else { MM_TT },
        )?;
        let bg = gpu.bind_group(&single, &buffers);
        d.single = Some((single.clone(), bg));
        out.push(d);
    }
    Ok(out)
}

const MATMUL_BINDINGS: [Binding; 6] =
    [Binding::Read, Binding::Read, Binding::Read, Binding::ReadWrite, Binding::Uniform, Binding::Uniform];

const ELEM_WG: u32 = 256;
const NORM_WG: u32 = 256;
const ATTN_WG: u32 = 64;
const _: () = assert!(MM_WG <= MAX_WG && ELEM_WG <= MAX_WG && NORM_WG <= MAX_WG && ATTN_WG <= MAX_WG);

fn wg_const(n: u32) -> Vec<(&'static str, String)> {
    vec![("WG", format!("{n}u"))]
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
    let src = source(gpu, &wg_const(NORM_WG), &[NORM]);
    let pipeline = gpu.pipeline(
        "rmsnorm",
        &src,
        &[Binding::Read, Binding::Read, Binding::ReadWrite, Binding::Uniform, Binding::Uniform],
    )?;
    let params = gpu.uniform("rmsnorm", &[dim, eps.to_bits()]);
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

/// RoPE on q (in place) and k, then k and v appended to the cache at the pass's positions.
/// `inv_freq[j]` = base^(−2j/d) / rope_freqs[j].
#[allow(clippy::too_many_arguments)]
pub fn rope_store(
    gpu: &Gpu,
    s: AttnShape,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    kc: &wgpu::Buffer,
    vc: &wgpu::Buffer,
    inv_freq: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    if s.n_kv == 0 || s.n_head % s.n_kv != 0 || s.head_dim % 2 != 0 {
        return Err(Error::UnsupportedModel(format!("bad attention shape {s:?}")));
    }
    let src = source(gpu, &wg_const(ELEM_WG), &[ROPE]);
    use Binding::*;
    let pipeline =
        gpu.pipeline("rope_store", &src, &[ReadWrite, Read, Read, ReadWrite, ReadWrite, Read, Uniform, Uniform])?;
    let params = gpu.uniform("rope", &[s.n_head, s.n_kv, s.head_dim]);
    let pairs = s.n_head * s.head_dim / 2;
    make(
        gpu,
        "rope_store".into(),
        pipeline,
        &[q.into(), k.into(), v.into(), kc.into(), vc.into(), inv_freq.into(), (&params).into(), step.into()],
        pairs.div_ceil(ELEM_WG),
        1,
    )
}

/// Causal GQA attention of the pass's queries over the cache → `o` [n, n_head·head_dim].
/// `scores` is scratch of at least n_tokens · n_head · ctx floats.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    gpu: &Gpu,
    s: AttnShape,
    q: &wgpu::Buffer,
    kc: &wgpu::Buffer,
    vc: &wgpu::Buffer,
    scores: &wgpu::Buffer,
    o: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    if s.head_dim > 256 {
        return Err(Error::UnsupportedModel(format!("head_dim {} > 256", s.head_dim)));
    }
    let src = source(gpu, &wg_const(ATTN_WG), &[ATTENTION]);
    use Binding::*;
    let pipeline = gpu.pipeline("attention", &src, &[Read, Read, Read, ReadWrite, ReadWrite, Uniform, Uniform])?;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let params = gpu.uniform("attention", &[s.n_head, s.n_kv, s.head_dim, s.ctx, scale.to_bits()]);
    make(
        gpu,
        "attention".into(),
        pipeline,
        &[q.into(), kc.into(), vc.into(), scores.into(), o.into(), (&params).into(), step.into()],
        s.n_head,
        1,
    )
}

/// `g = silu(g) · u` over rows of `n` floats.
pub fn swiglu(gpu: &Gpu, g: &wgpu::Buffer, u: &wgpu::Buffer, n: u32, step: &wgpu::Buffer) -> Result<Dispatch> {
    let src = source(gpu, &wg_const(ELEM_WG), &[ELEMENTWISE]);
    let pipeline =
        gpu.pipeline("swiglu", &src, &[Binding::ReadWrite, Binding::Read, Binding::Uniform, Binding::Uniform])?;
    let params = gpu.uniform("swiglu", &[n]);
    make(gpu, "swiglu".into(), pipeline, &[g.into(), u.into(), (&params).into(), step.into()], n.div_ceil(ELEM_WG), 1)
}

/// Embedding rows for the token ids in `ids` → `out` [n, cols] f32; one dispatch per part.
pub fn embed(
    gpu: &Gpu,
    w: &GpuWeight,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let mut consts = weight_consts(w.fmt);
    consts.extend(wg_const(ELEM_WG));
    let src = source(gpu, &consts, &[QUANT, EMBED, &load_block_alias(w.fmt)]);
    use Binding::*;
    let pipeline =
        gpu.pipeline(&format!("embed_{}", w.fmt.load_fn), &src, &[Read, Read, Read, ReadWrite, Uniform, Uniform])?;
    w.parts
        .iter()
        .map(|part| {
            let l = part.layout;
            let params = gpu.uniform(
                "embed",
                &[part.row0 as u32, l.rows as u32, l.k_blocks as u32, (l.row_qs_bytes / 16) as u32, l.row_sc_h as u32],
            );
            make(
                gpu,
                format!("embed {}[{}..]", w.name, part.row0),
                pipeline.clone(),
                &[
                    GpuWeight::qs_slice(part),
                    GpuWeight::sc_slice(part),
                    ids.into(),
                    out.into(),
                    (&params).into(),
                    step.into(),
                ],
                (l.k_blocks as u32).div_ceil(ELEM_WG),
                1,
            )
        })
        .collect()
}
