//! The attention side of a layer: RoPE with the KV-cache write (quantizing as it writes), and
//! flash attention over the cache (attention.wgsl) with its split-K combine
//! (attention_combine.wgsl). The cache may be split by positions across several buffer pairs
//! ([`KvPart`]) when one binding cannot hold a layer's K or V.

use super::{check_x, make, pipeline, AttnShape, Dispatch, KvRead, P, STEP};
use crate::error::{Error, Result};
use crate::gpu::{BufSlice, Gpu, Slot};
use crate::kv::KvType;

const ROPE: &str = include_str!("../../../../shaders/rope.wgsl");
const KV_STORE_FLOAT: &str = include_str!("../../../../shaders/kv_store_float.wgsl");
const KV_QUANT: &str = include_str!("../../../../shaders/kv_quant.wgsl");
const KV_READ: &str = include_str!("../../../../shaders/kv.wgsl");
const ATTENTION: &str = include_str!("../../../../shaders/attention.wgsl");
const ATTENTION_CPU: &str = include_str!("../../../../shaders/attention_cpu.wgsl");
const ATTENTION_COMMON: &str = include_str!("../../../../shaders/attention_common.wgsl");
const COMBINE: &str = include_str!("../../../../shaders/attention_combine.wgsl");

const ROPE_WG: u32 = 256;
/// Lanes of a flash-attention workgroup, and of the combine.
const FA_WG: u32 = 64;
const COMBINE_WG: u32 = 64;
/// Query rows (heads × tokens) a prefill workgroup aims for.
const FA_ROWS: u32 = 16;

/// How one layer's K (or V) cache is laid out: per position, the `n_kv` head rows of
/// `head_dim` values in the type's encoding (ggml blocks for q8_0 / q4_0), the position's
/// bytes padded to whole u32 words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub ty: KvType,
    pub n_kv: u32,
    pub head_dim: u32,
    /// Bytes of one head row.
    pub row_bytes: u32,
    /// Bytes per cached position (all KV heads), a multiple of 4.
    pub pos_bytes: u32,
}

impl KvLayout {
    pub fn new(ty: KvType, n_kv: u32, head_dim: u32) -> Result<Self> {
        let row = ty.row_bytes(head_dim as usize)? as u64;
        let pos = (row * n_kv as u64).next_multiple_of(4);
        let (row_bytes, pos_bytes) = match (u32::try_from(row), u32::try_from(pos)) {
            (Ok(r), Ok(p)) => (r, p),
            _ => return Err(Error::UnsupportedModel(format!("a {ty} KV row of {n_kv} × {head_dim} overflows"))),
        };
        Ok(KvLayout { ty, n_kv, head_dim, row_bytes, pos_bytes })
    }

    /// Host bytes of positions `x` ([n, n_kv, head_dim] values) as the GPU holds them.
    pub fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        let dim = (self.n_kv * self.head_dim) as usize;
        let mut out = Vec::with_capacity(x.len() / dim.max(1) * self.pos_bytes as usize);
        for pos in x.chunks(dim.max(1)) {
            let start = out.len();
            self.ty.encode(pos, &mut out)?;
            out.resize(start + self.pos_bytes as usize, 0);
        }
        Ok(out)
    }

    /// The values of `n` positions of encoded bytes `raw` (the inverse of [`Self::encode`]).
    pub fn decode(&self, raw: &[u8], n: usize) -> Result<Vec<f32>> {
        let dim = (self.n_kv * self.head_dim) as usize;
        let used = self.row_bytes as usize * self.n_kv as usize;
        let mut out = vec![0f32; n * dim];
        for (i, o) in out.chunks_mut(dim.max(1)).enumerate() {
            let at = i * self.pos_bytes as usize;
            let bytes = raw.get(at..at + used).ok_or_else(|| Error::Corrupt("KV bytes too short".into()))?;
            self.ty.decode(bytes, o)?;
        }
        Ok(out)
    }
}

/// Positions `pos0 .. pos0 + len` of one layer's cache: a K and a V buffer.
#[derive(Clone, Copy)]
pub struct KvPart<'a> {
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub pos0: u32,
    pub len: u32,
}

/// One layer's KV cache: how it is encoded, and the buffer pairs that hold its positions.
#[derive(Clone, Copy)]
pub struct LayerKv<'a> {
    pub layout: KvLayout,
    pub parts: &'a [KvPart<'a>],
}

/// The buffers of a RoPE + cache-write launch besides the cache: the fused projection `qkv`
/// in, rotated queries `q` out, the `inv_freq` table and the pass's `step`.
#[derive(Clone, Copy)]
pub struct RopeIo<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub q: &'a wgpu::Buffer,
    pub inv_freq: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
}

/// The buffers of an attention launch besides the cache: queries `q` in, `o` out, the
/// partial-results `scratch` and the pass's `step`.
#[derive(Clone, Copy)]
pub struct AttentionIo<'a> {
    pub q: &'a wgpu::Buffer,
    pub scratch: &'a wgpu::Buffer,
    pub o: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
}

/// Mirrors `Params` in rope.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub n_head: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    pub pos0: u32,
    pub part_len: u32,
    pub pos_bytes: u32,
    pub row_bytes: u32,
    pub write_q: u32,
}

/// Mirrors `Params` in attention.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlashParams {
    pub n_head: u32,
    pub n_kv: u32,
    pub pos0: u32,
    pub part_len: u32,
    pub pos_bytes: u32,
    pub row_bytes: u32,
    pub splits: u32,
    pub slice0: u32,
    pub direct: u32,
    pub rows_stride: u32,
    pub ml0: u32,
    pub scale: f32,
}

/// Mirrors `Params` in attention_combine.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CombineParams {
    pub n_head: u32,
    pub slices: u32,
    pub rows_stride: u32,
    pub ml0: u32,
}

fn check_shape(s: AttnShape, kv: KvLayout) -> Result<()> {
    if s.n_kv == 0
        || !s.n_head.is_multiple_of(s.n_kv)
        || !s.head_dim.is_multiple_of(4)
        || s.head_dim > 256
        || kv.n_kv != s.n_kv
        || kv.head_dim != s.head_dim
    {
        return Err(Error::UnsupportedModel(format!(
            "attention shape {s:?} (head_dim a multiple of 4, at most 256) with KV layout {kv:?}"
        )));
    }
    Ok(())
}

/// RoPE on q and k of the fused projection `qkv` (rows q | k | v): rotated q → `q`, rotated
/// k and v written to the cache (encoded as its type) at the pass's positions; one launch per
/// cache part (the first also writes q). `inv_freq[j]` = base^(−2j/d) / rope_freqs[j].
pub fn rope_store(gpu: &Gpu, s: AttnShape, cache: LayerKv<'_>, io: RopeIo<'_>) -> Result<Vec<Dispatch>> {
    let (kv, parts) = (cache.layout, cache.parts);
    let RopeIo { qkv, q, inv_freq, step } = io;
    check_shape(s, kv)?;
    // a quantized cache's blocks share words with their neighbours: kv_quant.wgsl writes atomically
    let quant = matches!(kv.ty, KvType::Q8_0 | KvType::Q4_0);
    let cache = if quant { "array<atomic<u32>>" } else { "array<u32>" };
    let slots = [
        Slot::read("qkv", "array<f32>"),
        Slot::read_write("q", "array<f32>"),
        Slot::read_write("kc", cache),
        Slot::read_write("vc", cache),
        Slot::read("inv_freq", "array<f32>"),
        P,
        STEP,
    ];
    let store_fn = format!(
        "fn kv_store(i: u32, krow: u32, lp: u32, pos: u32) {{ kv_store_{}(i, krow, lp, pos); }}\n",
        kv.ty.name()
    );
    let store = if quant { KV_QUANT } else { KV_STORE_FLOAT };
    let key = format!("rope_store {}", kv.ty);
    let pipeline = pipeline(gpu, &key, &[("WG", format!("{ROPE_WG}u"))], &slots, &[ROPE, store, &store_fn])?;
    let pairs = s.n_head * s.head_dim / 2;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let p = RopeParams {
                n_head: s.n_head,
                n_kv: s.n_kv,
                head_dim: s.head_dim,
                pos0: part.pos0,
                part_len: part.len,
                pos_bytes: kv.pos_bytes,
                row_bytes: kv.row_bytes,
                write_q: (i == 0) as u32,
            };
            let pb = gpu.uniform("rope", &p);
            make(
                gpu,
                format!("rope_store [{}..]", part.pos0),
                pipeline.clone(),
                &[qkv.into(), q.into(), part.k.into(), part.v.into(), inv_freq.into(), (&pb).into(), step.into()],
                pairs.div_ceil(ROPE_WG),
                1,
            )
        })
        .collect()
}

/// The flash kernel's shape for `tq` tokens per workgroup.
#[derive(Debug, Clone, Copy)]
struct FlashShape {
    bk: u32,
    g: u32,
    tq: u32,
}

impl FlashShape {
    fn rows(&self) -> u32 {
        self.g * self.tq
    }
    fn workgroup_bytes(&self, hd: u32) -> u64 {
        let (bk, r) = (self.bk as u64, self.rows() as u64);
        4 * (bk * (hd as u64 + 1) + r * hd as u64 + r * bk + 3 * r + FA_WG as u64)
    }
}

/// Keys per block (32, or 16 for head_dim above 128 or when workgroup memory is short:
/// browsers guarantee 16 KiB) and tokens per workgroup (fewer until it fits).
fn flash_shape(gpu: &Gpu, s: AttnShape, single: bool) -> Result<FlashShape> {
    let g = s.n_head / s.n_kv;
    let budget = gpu.limits.max_compute_workgroup_storage_size as u64;
    let bks: &[u32] = if s.head_dim <= 128 { &[32, 16] } else { &[16] };
    for &bk in bks {
        let mut tq = if single { 1 } else { (FA_ROWS / g).max(1) };
        loop {
            let f = FlashShape { bk, g, tq };
            if f.workgroup_bytes(s.head_dim) <= budget {
                return Ok(f);
            }
            if tq == 1 {
                break;
            }
            tq /= 2;
        }
    }
    let f = FlashShape { bk: 16, g, tq: 1 };
    Err(Error::LimitsTooSmall(format!(
        "attention over {g} query heads per KV head of {} values needs {} bytes of workgroup memory, the device \
         has {budget}",
        s.head_dim,
        f.workgroup_bytes(s.head_dim)
    )))
}

/// The bindings of both flash kernels (attention.wgsl, attention_cpu.wgsl): the cache is read
/// as raw words, decoded by kv.wgsl.
const FLASH_SLOTS: [Slot; 6] = [
    Slot::read("q", "array<f32>"),
    Slot::read("kc", "array<u32>"),
    Slot::read("vc", "array<u32>"),
    Slot::read_write("o", "array<f32>"),
    P,
    STEP,
];

fn flash_pipeline(
    gpu: &Gpu,
    s: AttnShape,
    kv: KvLayout,
    f: FlashShape,
) -> Result<std::sync::Arc<wgpu::ComputePipeline>> {
    let hd = s.head_dim;
    let sg = gpu.subgroups;
    let (uv, put) = if kv.ty == KvType::Q4_0 { (8, "kv_put_q4_0") } else { (4, "kv_put_4") };
    let r = f.rows();
    let consts = vec![
        ("WG", format!("{FA_WG}u")),
        ("BK", format!("{}u", f.bk)),
        ("HD", format!("{hd}u")),
        ("HDP", format!("{}u", hd + 1)),
        ("G", format!("{}u", f.g)),
        ("TQ", format!("{}u", f.tq)),
        ("R", format!("{r}u")),
        ("RI", format!("{}u", r.div_ceil(FA_WG / f.bk))),
        ("NACC", format!("{}u", (r * hd).div_ceil(FA_WG))),
        ("UPR", format!("{}u", hd / uv)),
        ("UV", format!("{uv}u")),
        ("SG", sg.to_string()),
    ];
    let pre = format!(
        "fn sg_xor(v: f32, o: u32) -> f32 {{ return {}; }}\n\
         fn kv_unit(v: bool, base: u32, u: u32) -> array<f32, UV> {{ return kv_unit_{}(v, base, u); }}\n\
         fn kv_put(row: u32, u: u32, x: array<f32, UV>) {{ {put}(row, u, x); }}\n\
         @compute @workgroup_size(WG)\n\
         fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32{}) {{ flash(wg, li, {}); }}\n",
        if sg { "subgroupShuffleXor(v, o)" } else { "v" },
        kv.ty.name(),
        if sg { ", @builtin(subgroup_size) sn: u32" } else { "" },
        if sg { "sn" } else { "1u" },
    );
    let key = format!("flash hd{hd} g{} tq{} bk{} {} sg{sg}", f.g, f.tq, f.bk, kv.ty);
    pipeline(gpu, &key, &consts, &FLASH_SLOTS, &[ATTENTION_COMMON, ATTENTION, KV_READ, &pre])
}

/// The CPU-adapter kernel (attention_cpu.wgsl): CPU adapters with subgroups of one fixed size,
/// which is its workgroup. Measured on lavapipe, SmolLM2 decode at depth 2048: the GPU-shaped
/// kernel's barriers and per-lane gathers from workgroup memory cost far more there.
fn cpu_variant(gpu: &Gpu) -> Option<u32> {
    let n = gpu.subgroup_min_size;
    (gpu.cpu_matmul && gpu.subgroups && n == gpu.subgroup_max_size && (4..=64).contains(&n)).then_some(n)
}

/// attention_cpu.wgsl's kernel for `g` query heads per KV head and `nc` value chunks per lane:
/// its `#g `, `#j ` and `#gj ` lines repeated per head and chunk, so that each per-head,
/// per-chunk value is a named variable (lavapipe keeps private arrays in memory).
fn flash_cpu_source(template: &str, g: u32, nc: u32) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let (gs, js, rest) = if let Some(r) = body.strip_prefix("#gj ") {
            (g, nc, r)
        } else if let Some(r) = body.strip_prefix("#g ") {
            (g, 1, r)
        } else if let Some(r) = body.strip_prefix("#j ") {
            (1, nc, r)
        } else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        for gi in 0..gs {
            for ji in 0..js {
                let l = rest.replace("{g}", &gi.to_string()).replace("{j}", &ji.to_string());
                out.push_str(indent);
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

fn flash_cpu_pipeline(gpu: &Gpu, s: AttnShape, kv: KvLayout, wg: u32) -> Result<std::sync::Arc<wgpu::ComputePipeline>> {
    let hd = s.head_dim;
    let g = s.n_head / s.n_kv;
    let consts = vec![
        ("WG", format!("{wg}u")),
        ("HD", format!("{hd}u")),
        ("HD4", format!("{}u", hd / 4)),
        ("G", format!("{g}u")),
    ];
    let pre =
        format!("fn kv4(v: bool, base: u32, c: u32) -> vec4<f32> {{ return kv4_{}(v, base, c); }}\n", kv.ty.name());
    let key = format!("flash_cpu hd{hd} g{g} wg{wg} {}", kv.ty);
    let src = flash_cpu_source(ATTENTION_CPU, g, (hd / 4).div_ceil(wg));
    pipeline(gpu, &key, &consts, &FLASH_SLOTS, &[ATTENTION_COMMON, &src, KV_READ, &pre])
}

/// Key splits of each cache part (`parts`: positions per part) in a decode pass: enough
/// workgroups to fill the device (fewer on CPU adapters, whose threads are few), at most one
/// per key block, and partials that fit a binding.
pub fn decode_splits(gpu: &Gpu, s: AttnShape, parts: &[u32]) -> Vec<u32> {
    let target: u64 = if gpu.cpu_matmul { 8 } else { 256 };
    let total = parts.iter().map(|&l| l as u64).sum::<u64>().max(1);
    let row = (s.head_dim as u64 + 2) * s.n_head as u64 * 4;
    let fit = (gpu.max_binding / row.max(1)).max(1);
    let want = (target / s.n_kv.max(1) as u64).clamp(1, fit / parts.len().max(1) as u64).max(1);
    parts
        .iter()
        .map(|&len| (want * len as u64).div_ceil(total).clamp(1, len.div_ceil(32).max(1) as u64) as u32)
        .collect()
}

/// Floats of the partial-results scratch the attention of a cache in `parts` (positions per
/// part) needs for passes of up to `chunk` tokens (0 when no launch writes partials).
pub fn attention_scratch_floats(gpu: &Gpu, s: AttnShape, parts: &[u32], chunk: u32) -> u64 {
    let splits: u64 = decode_splits(gpu, s, parts).iter().map(|&x| x as u64).sum();
    let row = (s.head_dim + 2) as u64 * s.n_head as u64;
    let decode = if splits > 1 { splits * row } else { 0 };
    let prefill = if parts.len() > 1 { parts.len() as u64 * chunk as u64 * row } else { 0 };
    decode.max(prefill)
}

/// Causal GQA flash attention of the pass's queries `q` [n, n_head, head_dim] over the cache
/// → `o` (same shape). `scratch` holds partial results (at least
/// [`attention_scratch_floats`] floats) for passes of up to `chunk` tokens.
pub fn attention(
    gpu: &Gpu,
    s: AttnShape,
    cache: LayerKv<'_>,
    io: AttentionIo<'_>,
    chunk: u32,
) -> Result<Vec<Dispatch>> {
    let (kv, parts) = (cache.layout, cache.parts);
    let AttentionIo { q, scratch, o, step } = io;
    check_shape(s, kv)?;
    if parts.is_empty() {
        return Err(Error::InvalidArgument("attention over no KV cache".into()));
    }
    let (pm, p1, tile) = match cpu_variant(gpu) {
        Some(wg) => {
            let p = flash_cpu_pipeline(gpu, s, kv, wg)?;
            (p.clone(), p, 1)
        }
        None => {
            let (fm, f1) = (flash_shape(gpu, s, false)?, flash_shape(gpu, s, true)?);
            (flash_pipeline(gpu, s, kv, fm)?, flash_pipeline(gpu, s, kv, f1)?, fm.tq)
        }
    };
    let lens: Vec<u32> = parts.iter().map(|p| p.len).collect();
    let splits = decode_splits(gpu, s, &lens);
    let total_splits: u32 = splits.iter().sum();
    let multi_parts = parts.len() > 1;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let hd = s.head_dim as u64;
    // partial rows: decode, one per head; prefill over several parts, one per (token, head)
    let (rows1, rows_m) = (s.n_head, chunk * s.n_head);
    let ml0 = |slices: u32, rows: u32| -> Result<u32> {
        u32::try_from(slices as u64 * rows as u64 * hd)
            .map_err(|_| Error::LimitsTooSmall("attention partials exceed 2^32 floats".into()))
    };
    let base = |p: &KvPart<'_>| FlashParams {
        n_head: s.n_head,
        n_kv: s.n_kv,
        pos0: p.pos0,
        part_len: p.len,
        pos_bytes: kv.pos_bytes,
        row_bytes: kv.row_bytes,
        splits: 1,
        scale,
        ..Default::default()
    };
    let bind = |pipe: &wgpu::ComputePipeline, p: &KvPart<'_>, out: &wgpu::Buffer, pb: &wgpu::Buffer| {
        let b: [BufSlice<'_>; 6] = [q.into(), p.k.into(), p.v.into(), out.into(), pb.into(), step.into()];
        gpu.bind_group(pipe, &b)
    };
    let mut out = Vec::new();
    let mut slice0 = 0;
    for (i, part) in parts.iter().enumerate() {
        // several tokens: direct output over a single part, else slice i of the partials
        let pmulti = if multi_parts {
            FlashParams {
                direct: 0,
                slice0: i as u32,
                rows_stride: rows_m,
                ml0: ml0(parts.len() as u32, rows_m)?,
                ..base(part)
            }
        } else {
            FlashParams { direct: 1, ..base(part) }
        };
        // one token: the part's keys in `splits[i]` workgroups per KV head
        let direct1 = total_splits == 1;
        let psingle = FlashParams {
            splits: splits[i],
            direct: direct1 as u32,
            slice0,
            rows_stride: rows1,
            ml0: ml0(total_splits, rows1)?,
            ..base(part)
        };
        slice0 += splits[i];
        let (bm, b1) = (gpu.uniform("flash", &pmulti), gpu.uniform("flash", &psingle));
        let target = |direct: bool| if direct { o } else { scratch };
        let label = format!("attention [{}..]", part.pos0);
        let x1 = check_x(&label, s.n_kv * splits[i], gpu)?;
        out.push(Dispatch {
            label,
            bind_group: bind(&pm, part, target(!multi_parts), &bm),
            pipeline: pm.clone(),
            x: s.n_kv,
            tile,
            single: Some((p1.clone(), bind(&p1, part, target(direct1), &b1), x1)),
            kv_read: Some(KvRead {
                pos0: part.pos0 as u64,
                len: part.len as u64,
                bytes_per_pos: kv.row_bytes as u64 * s.n_kv as u64 * 2,
            }),
        });
    }
    // the combine: decode when split, prefill when over several parts
    let combine_needed = (total_splits > 1, multi_parts);
    if combine_needed.0 || combine_needed.1 {
        const SLOTS: [Slot; 4] = [Slot::read("part", "array<f32>"), Slot::read_write("o", "array<f32>"), P, STEP];
        let consts = [("WG", format!("{COMBINE_WG}u")), ("HD", format!("{}u", s.head_dim))];
        let pipe = pipeline(gpu, &format!("attention_combine hd{}", s.head_dim), &consts, &SLOTS, &[COMBINE])?;
        let cm = CombineParams {
            n_head: s.n_head,
            slices: parts.len() as u32,
            rows_stride: rows_m,
            ml0: ml0(parts.len() as u32, rows_m)?,
        };
        let c1 = CombineParams {
            n_head: s.n_head,
            slices: total_splits,
            rows_stride: rows1,
            ml0: ml0(total_splits, rows1)?,
        };
        let (bm, b1) = (gpu.uniform("combine", &cm), gpu.uniform("combine", &c1));
        let bg = |pb: &wgpu::Buffer| gpu.bind_group(&pipe, &[scratch.into(), o.into(), pb.into(), step.into()]);
        out.push(Dispatch {
            label: "attention combine".into(),
            bind_group: bg(&bm),
            pipeline: pipe.clone(),
            // several tokens: only over several parts (a single part wrote `o` directly)
            x: if multi_parts { s.n_head } else { 0 },
            tile: 1,
            single: Some((pipe.clone(), bg(&b1), if combine_needed.0 { s.n_head } else { 0 })),
            kv_read: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::flash_cpu_source;

    #[test]
    fn cpu_template_lines_repeat_per_head_and_chunk() {
        let t = "a\n  #g x{g};\n #j y{j};\n#gj z{g}_{j};\nb {g}";
        let want = "a\n  x0;\n  x1;\n  x2;\n y0;\n y1;\nz0_0;\nz0_1;\nz1_0;\nz1_1;\nz2_0;\nz2_1;\nb {g}\n";
        assert_eq!(flash_cpu_source(t, 3, 2), want);
        // the shipped template expands to no marker lines and no placeholders
        let src = flash_cpu_source(super::ATTENTION_CPU, 4, 2);
        let code = src.lines().filter(|l| !l.trim_start().starts_with("//"));
        assert!(code.clone().all(|l| !l.trim_start().starts_with('#') && !l.contains("{g}") && !l.contains("{j}")));
        assert!(src.contains("acc3_1") && !src.contains("acc4_0") && !src.contains("acc0_2"));
    }
}
