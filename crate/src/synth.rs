//! Synthetic Llama 3 GGUF files for benchmarks and tests: the real shapes, tensor names and
//! llama.cpp's quantization type mix, filled with random but well-scaled blocks.
//!
//! Blocks are generated directly in their quantized form (no float quantization), so an 8B
//! Q4_K_M file (~4.9 GB) streams out at disk speed with a few MB of memory. Scales are chosen
//! so that every weight matrix has values of standard deviation ≈ `1/sqrt(n_in)` with zero mean:
//! a row's dot product with a unit-RMS vector is O(1), so activations stay O(1) layer after
//! layer and the logits are finite. Norm weights are ≈ 1. Tokenizer metadata is written only
//! when given ([`tokenizer_metadata`] from a `tokenizer.json`; benchmarks feed token ids).
//!
//! Names, shapes and order are the schema's ([`crate::graph::schema`], with Llama 3.1's
//! `rope_freqs`); types follow llama.cpp's mix for the tensor's role.

use std::io::Write;
use std::str::FromStr;

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::{Array, GgmlType, GgufWriter, Value, DEFAULT_ALIGNMENT};
use crate::graph::weights::{self, schema, Proj, SchemaDims};
use crate::quant::blocks::{iq4_xs, pack_scale_min_k4};
use crate::quant::{tensor_type, FileType, Role};
use crate::sampler::{splitmix64, xoshiro256_advance};

/// Hyperparameters of a synthetic model. `head_dim = n_embd / n_head`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthDims {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    pub rope_base: f32,
    /// No `output.weight`: the output layer is `token_embd`.
    pub tied: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SynthShape {
    Llama3_8B,
    Llama3_2_1B,
    Llama3_2_3B,
    Custom(SynthDims),
}

impl SynthShape {
    /// The names `FromStr` accepts.
    pub const NAMES: [&'static str; 3] = ["llama3-8b", "llama3.2-1b", "llama3.2-3b"];

    /// `general.name` of the file.
    pub fn display_name(&self) -> String {
        match self {
            SynthShape::Llama3_8B => "synthetic Llama 3 8B".into(),
            SynthShape::Llama3_2_1B => "synthetic Llama 3.2 1B".into(),
            SynthShape::Llama3_2_3B => "synthetic Llama 3.2 3B".into(),
            SynthShape::Custom(d) => format!(
                "synthetic Llama custom {}L {}d {}ff {}/{}h v{}",
                d.n_layer, d.n_embd, d.n_ff, d.n_head, d.n_head_kv, d.n_vocab
            ),
        }
    }
}

impl FromStr for SynthShape {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "llama3-8b" => Ok(SynthShape::Llama3_8B),
            "llama3.2-1b" => Ok(SynthShape::Llama3_2_1B),
            "llama3.2-3b" => Ok(SynthShape::Llama3_2_3B),
            _ => Err(Error::InvalidArgument(format!(
                "unknown synthetic model '{s}' (expected one of {})",
                SynthShape::NAMES.join(", ")
            ))),
        }
    }
}

/// Dimensions of `shape`.
pub fn dims(shape: &SynthShape) -> SynthDims {
    let base = SynthDims {
        n_layer: 32,
        n_embd: 4096,
        n_ff: 14336,
        n_head: 32,
        n_head_kv: 8,
        n_vocab: 128256,
        context_length: 8192,
        rope_base: 500000.0,
        tied: false,
    };
    match shape {
        SynthShape::Llama3_8B => base,
        SynthShape::Llama3_2_1B => {
            SynthDims { n_layer: 16, n_embd: 2048, n_ff: 8192, context_length: 131072, tied: true, ..base }
        }
        SynthShape::Llama3_2_3B => {
            SynthDims { n_layer: 28, n_embd: 3072, n_ff: 8192, n_head: 24, context_length: 131072, tied: true, ..base }
        }
        SynthShape::Custom(d) => *d,
    }
}

/// The `ftype` names `synth` accepts.
pub const FTYPES: [&str; 8] = ["q4_k_m", "q8_0", "q4_0", "f16", "q6_k", "q3_k_m", "q2_k", "iq4_xs"];

/// The file type of `name`, if synth can generate its blocks.
fn parse_ftype(name: &str) -> Result<FileType> {
    let ft: FileType = name.parse()?;
    if !FTYPES.contains(&ft.name()) {
        return Err(Error::InvalidArgument(format!(
            "synth cannot generate '{name}' (expected one of {})",
            FTYPES.join(", ")
        )));
    }
    Ok(ft)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// 1-D F32: norm weights.
    Norm,
    RopeFreqs,
    /// A matrix; `output` is true for the output layer (or token_embd when tied).
    Matrix,
}

struct Planned {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    kind: Kind,
}

fn check_dims(d: &SynthDims) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(format!("synthetic model: {m}")));
    if [d.n_layer, d.n_embd, d.n_ff, d.n_head, d.n_head_kv, d.n_vocab, d.context_length].contains(&0) {
        return bad(format!("zero dimension in {d:?}"));
    }
    if !d.n_embd.is_multiple_of(d.n_head) || !(d.n_embd / d.n_head).is_multiple_of(2) {
        return bad(format!("n_embd {} must be n_head {} × an even head_dim", d.n_embd, d.n_head));
    }
    if !d.n_head.is_multiple_of(d.n_head_kv) {
        return bad(format!("n_head {} is not a multiple of n_head_kv {}", d.n_head, d.n_head_kv));
    }
    for n in [d.n_embd, d.n_ff] {
        if n % 32 != 0 {
            return bad(format!("row length {n} is not a multiple of 32"));
        }
    }
    if u32::try_from(d.n_layer.max(d.n_embd).max(d.n_ff).max(d.n_vocab).max(d.context_length)).is_err() {
        return bad("dimension exceeds u32".into());
    }
    Ok(())
}

fn plan(d: &SynthDims, ftype: FileType) -> Vec<Planned> {
    let embd = d.n_embd as u64;
    let head_dim = embd / d.n_head as u64;
    let dims = SchemaDims {
        n_layer: d.n_layer,
        n_embd: embd,
        n_ff: d.n_ff as u64,
        q_dim: embd, // n_head · head_dim
        kv_dim: d.n_head_kv as u64 * head_dim,
        head_dim,
        n_vocab: d.n_vocab as u64,
        tied: d.tied,
        rope_freqs: true,
    };
    let n = d.n_layer;
    schema(&dims)
        .into_iter()
        .map(|s| {
            let (kind, role) = match s.role {
                weights::Role::Norm => (Kind::Norm, None),
                weights::Role::RopeFreqs => (Kind::RopeFreqs, None),
                weights::Role::Embedding if d.tied => (Kind::Matrix, Some(Role::Output)),
                weights::Role::Output => (Kind::Matrix, Some(Role::Output)),
                weights::Role::Attn(Proj::V) => {
                    let gqa = (d.n_head / d.n_head_kv.max(1)) as u64;
                    (Kind::Matrix, Some(Role::AttnV { i: s.layer.unwrap_or(0), n, gqa }))
                }
                weights::Role::Attn(Proj::O) => (Kind::Matrix, Some(Role::AttnOutput)),
                weights::Role::Ffn(Proj::Down) => (Kind::Matrix, Some(Role::FfnDown { i: s.layer.unwrap_or(0), n })),
                _ => (Kind::Matrix, Some(Role::Other)),
            };
            let ty = role.map_or(GgmlType::F32, |r| tensor_type(ftype, r, s.dims[0]));
            Planned { name: s.name, dims: s.dims, ty, kind }
        })
        .collect()
}

fn metadata(shape: &SynthShape, d: &SynthDims, ftype: FileType) -> Vec<(String, Value)> {
    let u = |x: usize| Value::U32(x as u32);
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(shape.display_name())),
        ("llama.block_count".into(), u(d.n_layer)),
        ("llama.context_length".into(), u(d.context_length)),
        ("llama.embedding_length".into(), u(d.n_embd)),
        ("llama.feed_forward_length".into(), u(d.n_ff)),
        ("llama.attention.head_count".into(), u(d.n_head)),
        ("llama.attention.head_count_kv".into(), u(d.n_head_kv)),
        ("llama.rope.freq_base".into(), Value::F32(d.rope_base)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-5)),
        ("llama.rope.dimension_count".into(), u(d.n_embd / d.n_head)),
        ("llama.vocab_size".into(), u(d.n_vocab)),
        ("general.file_type".into(), Value::U32(ftype.id())),
    ];
    if ftype.is_quantized() {
        m.push(("general.quantization_version".into(), Value::U32(2)));
    }
    m
}

/// Llama 3.1 rope scaling factors as llama.cpp's converter computes them (float32 torch math)
/// for factor 8, low_freq_factor 1, high_freq_factor 4, original context 8192.
pub fn llama3_rope_factors(head_dim: usize, base: f32) -> Vec<f32> {
    let (factor, low, high, old_ctx) = (8f32, 1f32, 4f32, 8192f32);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..head_dim / 2)
        .map(|j| {
            let freq = 1.0 / base.powf((2 * j) as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// xoshiro256++ seeded through splitmix64: fast, seedable, no dependencies (wasm-friendly).
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut s = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng(std::array::from_fn(|_| splitmix64(&mut s)))
    }
    #[inline]
    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        xoshiro256_advance(s);
        r
    }
    /// Uniform in [0, 1).
    #[inline]
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    /// Random bytes (a multiple of 8 long, or a tail).
    #[inline]
    fn fill(&mut self, b: &mut [u8]) {
        let mut chunks = b.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let r = self.next().to_le_bytes();
            rest.copy_from_slice(&r[..rest.len()]);
        }
    }
    /// A per-block scale jitter in [0.75, 1.25) (mean 1, RMS ≈ 1.01).
    #[inline]
    fn jitter(&mut self) -> f32 {
        0.75 + 0.5 * self.unit()
    }
}

// RMS of the integer factors of each format with uniform random bits, used to set `d` so the
// values have RMS `std`:
/// q − 7.5 for q uniform in 0..16 (Q4_K with min = 7.5·scale).
const RMS_Q4: f32 = 4.609_772; // sqrt(255/12)
/// q − 8 (Q4_0): sqrt(255/12 + 0.25).
const RMS_Q4_0: f32 = 4.636_809;
/// q − 32 for q uniform in 0..64 (Q6_K): sqrt(4095/12 + 0.25).
const RMS_Q6: f32 = 18.479_72;
/// i8 uniform (Q8_0): sqrt(65535/12 + 0.25).
const RMS_Q8: f32 = 73.901_02;
/// 6-bit sub-block scale uniform in 32..64: sqrt(1023/12 + 47.5²).
const RMS_SC: f32 = 48.389_05;
/// q − 15.5 for q uniform in 0..32 (Q5_K with min = 15.5·scale): sqrt(1023/12).
const RMS_Q5: f32 = 9.233_093;
/// q uniform in −4..4 (Q3_K): sqrt(63/12 + 0.25).
const RMS_Q3: f32 = 2.345_208;
/// 6-bit signed scale uniform in −32..32 (Q3_K, IQ4_XS): sqrt(4095/12 + 0.25).
const RMS_SC6: f32 = 18.479_72;
/// 6-bit scale 32 ± m, m uniform in 16..32 (IQ4_XS): sqrt(Σ m² / 16).
const RMS_SC6_WIDE: f32 = 23.947_86;
/// q − 1.5 for q uniform in 0..4 (Q2_K with min = 1.5·scale): sqrt(15/12).
const RMS_Q2: f32 = 1.118_034;
/// 4-bit scale uniform in 8..16 (Q2_K): sqrt(1100 / 8).
const RMS_SC4: f32 = 11.726_04;
/// kvalues_iq4nl[q] for q uniform in 0..16: sqrt(72768 / 16).
const RMS_IQ4: f32 = 67.438_86;

fn put_f16(b: &mut [u8], x: f32) -> f16 {
    let h = f16::from_f32(x);
    b.copy_from_slice(&h.to_le_bytes());
    h
}

/// Fills `out` (whole blocks of `ty`) with random blocks whose values have zero mean and RMS
/// ≈ `std`.
fn fill_blocks(ty: GgmlType, rng: &mut Rng, std: f32, out: &mut [u8]) {
    let bs = ty.type_size() as usize;
    debug_assert_eq!(out.len() % bs, 0);
    match ty {
        GgmlType::Q4K => {
            let d0 = std / (RMS_Q4 * RMS_SC);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[16..]);
                let d = put_f16(&mut b[0..2], d0 * rng.jitter());
                // min = 7.5 · scale per sub-block (m = sc, dmin = 7.5 d): zero-mean values
                put_f16(&mut b[2..4], 7.5 * d.to_f32());
                let r = rng.next();
                let sc: [u8; 8] = std::array::from_fn(|j| 32 + ((r >> (5 * j)) & 31) as u8);
                pack_scale_min_k4(&sc, &sc, &mut b[4..16]);
            }
        }
        GgmlType::Q5K => {
            let d0 = std / (RMS_Q5 * RMS_SC);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[16..]);
                let d = put_f16(&mut b[0..2], d0 * rng.jitter());
                put_f16(&mut b[2..4], 15.5 * d.to_f32());
                let r = rng.next();
                let sc: [u8; 8] = std::array::from_fn(|j| 32 + ((r >> (5 * j)) & 31) as u8);
                pack_scale_min_k4(&sc, &sc, &mut b[4..16]);
            }
        }
        GgmlType::Q3K => {
            // random hmask, quants and 6-bit scales (signed around 32: zero-mean values)
            let d0 = std / (RMS_Q3 * RMS_SC6);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[0..108]);
                put_f16(&mut b[108..110], d0 * rng.jitter());
            }
        }
        GgmlType::Q2K => {
            // min = 1.5·scale per 16 values (m = sc, dmin = 1.5 d): zero-mean values
            let d0 = std / (RMS_Q2 * RMS_SC4);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[16..80]);
                let (r0, r1) = (rng.next(), rng.next());
                for (j, s) in b[0..16].iter_mut().enumerate() {
                    let sc = 8 + ((if j < 8 { r0 >> (4 * j) } else { r1 >> (4 * (j - 8)) }) & 7) as u8;
                    *s = sc | (sc << 4);
                }
                let d = put_f16(&mut b[80..82], d0 * rng.jitter());
                put_f16(&mut b[82..84], 1.5 * d.to_f32());
            }
        }
        GgmlType::IQ4XS => {
            // random levels; 6-bit scales 32 ± (16..32) with a random sign: zero-mean values,
            // and a narrow spread of magnitudes (as Q2_K's and Q4_K's scales), so that a few
            // rows' RMS stays near the target
            let d0 = std / (RMS_IQ4 * RMS_SC6_WIDE);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[iq4_xs::QS..]);
                let r = rng.next();
                let (mut lo, mut hi) = ([0u8; 4], 0u16);
                for ib in 0..8 {
                    let m = 16 + ((r >> (5 * ib)) & 15) as i32;
                    let sc = (32 + if (r >> (5 * ib + 4)) & 1 == 0 { m } else { -m }) as u8;
                    lo[ib / 2] |= (sc & 0xF) << (4 * (ib % 2));
                    hi |= u16::from(sc >> 4) << (2 * ib);
                }
                b[iq4_xs::SCALES_L..iq4_xs::SCALES_L + 4].copy_from_slice(&lo);
                b[iq4_xs::SCALES_H..iq4_xs::SCALES_H + 2].copy_from_slice(&hi.to_le_bytes());
                put_f16(&mut b[iq4_xs::D..iq4_xs::D + 2], d0 * rng.jitter());
            }
        }
        GgmlType::IQ4NL => {
            // IQ4_XS's fallback for rows not a multiple of 256: the levels' mean (−5.9) is
            // cancelled by a random sign, as Q4_0's
            let d0 = std / RMS_IQ4;
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[2..]);
                let j = rng.jitter();
                let sign = if rng.next() & 1 == 0 { 1.0 } else { -1.0 };
                put_f16(&mut b[0..2], sign * d0 * j);
            }
        }
        GgmlType::Q6K => {
            let d0 = std / (RMS_Q6 * RMS_SC);
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[0..192]);
                // 16 i8 scales, magnitude 32..63, random sign
                let (r0, r1) = (rng.next(), rng.next());
                for (j, s) in b[192..208].iter_mut().enumerate() {
                    let bits = if j < 8 { r0 >> (8 * j) } else { r1 >> (8 * (j - 8)) } as u8;
                    let mag = 32 + (bits & 31) as i8;
                    *s = (if bits & 0x80 != 0 { -mag } else { mag }) as u8;
                }
                put_f16(&mut b[208..210], d0 * rng.jitter());
            }
        }
        GgmlType::Q8_0 => {
            let d0 = std / RMS_Q8;
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[2..]);
                put_f16(&mut b[0..2], d0 * rng.jitter());
            }
        }
        GgmlType::Q4_0 => {
            let d0 = std / RMS_Q4_0;
            for b in out.chunks_exact_mut(bs) {
                rng.fill(&mut b[2..]);
                // random sign cancels the −0.5 mean of q − 8
                let j = rng.jitter();
                let sign = if rng.next() & 1 == 0 { 1.0 } else { -1.0 };
                put_f16(&mut b[0..2], sign * d0 * j);
            }
        }
        GgmlType::F16 => {
            let a = std * 3f32.sqrt();
            for b in out.chunks_exact_mut(2) {
                put_f16(b, a * (2.0 * rng.unit() - 1.0));
            }
        }
        GgmlType::F32 => {
            let a = std * 3f32.sqrt();
            for b in out.chunks_exact_mut(4) {
                b.copy_from_slice(&(a * (2.0 * rng.unit() - 1.0)).to_le_bytes());
            }
        }
        _ => unreachable!("synth never plans {}", ty.name()),
    }
}

/// Counts the bytes written.
struct Counting<'a, W: Write> {
    w: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Bytes generated per write (whole blocks).
const CHUNK: usize = 4 << 20;

fn layout(shape: &SynthShape, ftype: &str) -> Result<(GgufWriter, Vec<Planned>)> {
    layout_with(shape, ftype, vec![])
}

fn layout_with(shape: &SynthShape, ftype: &str, extra: Vec<(String, Value)>) -> Result<(GgufWriter, Vec<Planned>)> {
    let ftype = parse_ftype(ftype)?;
    let d = dims(shape);
    check_dims(&d)?;
    let planned = plan(&d, ftype);
    let infos = planned.iter().map(|p| (p.name.clone(), p.dims.clone(), p.ty)).collect();
    let mut md = metadata(shape, &d, ftype);
    md.extend(extra);
    let w = GgufWriter::new(md, infos, DEFAULT_ALIGNMENT)?;
    Ok((w, planned))
}

/// Size in bytes of the file `synth` writes for `shape` and `ftype`, without generating it.
pub fn file_len(shape: &SynthShape, ftype: &str) -> Result<u64> {
    Ok(layout(shape, ftype)?.0.file_len())
}

/// (name, dims innermost first, type) of every tensor of the file, in file order.
pub fn tensor_plan(shape: &SynthShape, ftype: &str) -> Result<Vec<(String, Vec<u64>, GgmlType)>> {
    Ok(layout(shape, ftype)?.1.into_iter().map(|p| (p.name, p.dims, p.ty)).collect())
}

/// GGUF tokenizer metadata (`tokenizer.ggml.*`, BPE "gpt2" model, `llama-bpe` pre-tokenizer)
/// from a Hugging Face `tokenizer.json` of a byte-level BPE (the Llama 3 one): vocabulary,
/// merges, token types (added special tokens are control tokens) and BOS/EOS/EOT ids.
/// `n_vocab` must equal the tokenizer's size.
pub fn tokenizer_metadata(json: &[u8], n_vocab: usize) -> Result<Vec<(String, Value)>> {
    let bad = |m: &str| Error::InvalidArgument(format!("tokenizer.json: {m}"));
    let j: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    let model = &j["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(bad("not a BPE model"));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![1i32; n_vocab];
    let mut put = |id: u64, s: &str| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| bad(&format!("token id {id} ≥ n_vocab {n_vocab}")))?;
        *slot = Some(s.to_string());
        Ok(())
    };
    for (s, id) in model["vocab"].as_object().ok_or_else(|| bad("no model.vocab"))? {
        put(id.as_u64().ok_or_else(|| bad("bad vocab id"))?, s)?;
    }
    let mut special = std::collections::HashMap::new();
    for a in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(s)) = (a["id"].as_u64(), a["content"].as_str()) else { continue };
        put(id, s)?;
        if a["special"].as_bool() == Some(true) {
            if let Some(t) = types.get_mut(id as usize) {
                *t = 3;
            }
            special.insert(s.to_string(), id);
        }
    }
    let tokens = Array::strings(tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))));
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or_else(|| bad("no model.merges"))?
        .iter()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .collect();
    let mut md = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String("llama-bpe".into())),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges".to_string(), Value::Array(Array::strings(merges))),
    ];
    for (key, name) in [
        ("tokenizer.ggml.bos_token_id", "<|begin_of_text|>"),
        ("tokenizer.ggml.eos_token_id", "<|end_of_text|>"),
        ("tokenizer.ggml.eot_token_id", "<|eot_id|>"),
    ] {
        if let Some(&id) = special.get(name) {
            md.push((key.to_string(), Value::U32(id as u32)));
        }
    }
    Ok(md)
}

/// [`synth`] with extra metadata (e.g. [`tokenizer_metadata`]) appended to the header.
pub fn synth_with_metadata(
    shape: &SynthShape,
    ftype: &str,
    seed: u64,
    extra: Vec<(String, Value)>,
    out: &mut impl Write,
    progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let (writer, planned) = layout_with(shape, ftype, extra)?;
    stream(shape, writer, planned, seed, out, progress)
}

/// Streams a synthetic GGUF v3 Llama 3 model of `shape` and `ftype` ("q4_k_m", "q8_0",
/// "q4_0", "f16", "q6_k") to `out`. The same `seed` gives the same bytes. `progress(written,
/// total)` is called after every chunk. Returns the bytes written (= [`file_len`]).
///
/// Memory stays at a few MB whatever the model size. `out` is written in chunks of up to
/// 4 MB, so a `File` needs no `BufWriter`.
pub fn synth(
    shape: &SynthShape,
    ftype: &str,
    seed: u64,
    out: &mut impl Write,
    progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let (writer, planned) = layout(shape, ftype)?;
    stream(shape, writer, planned, seed, out, progress)
}

fn stream(
    shape: &SynthShape,
    mut writer: GgufWriter,
    planned: Vec<Planned>,
    seed: u64,
    out: &mut impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let total = writer.file_len();
    let d = dims(shape);
    let mut w = Counting { w: out, n: 0 };
    writer.write_header(&mut w)?;
    progress(w.n, total);

    // each tensor streams in pieces of at most CHUNK bytes; the writer pads between tensors
    let mut buf = Vec::with_capacity(CHUNK);
    for (index, p) in planned.iter().enumerate() {
        let mut rng = Rng::new(seed, index as u64 + 1);
        let n_bytes = p.ty.bytes_for(p.dims.iter().product()).ok_or_else(|| {
            Error::InvalidArgument(format!("tensor {index}: shape {:?} does not fit {}", p.dims, p.ty.name()))
        })?;
        match p.kind {
            Kind::Norm => {
                buf.clear();
                // ≈ 1 (0.9 .. 1.1)
                for _ in 0..p.dims[0] {
                    buf.extend((1.0 + 0.2 * (rng.unit() - 0.5)).to_le_bytes());
                }
                writer.write_tensor_chunk(&mut w, &buf)?;
            }
            Kind::RopeFreqs => {
                buf.clear();
                for f in llama3_rope_factors(d.n_embd / d.n_head, d.rope_base) {
                    buf.extend(f.to_le_bytes());
                }
                writer.write_tensor_chunk(&mut w, &buf)?;
            }
            Kind::Matrix => {
                let std = 1.0 / (p.dims[0] as f32).sqrt();
                let bs = p.ty.type_size() as usize;
                let per_chunk = (CHUNK / bs).max(1) * bs;
                let mut left = n_bytes as usize;
                while left > 0 {
                    let n = left.min(per_chunk);
                    buf.resize(n, 0);
                    fill_blocks(p.ty, &mut rng, std, &mut buf);
                    writer.write_tensor_chunk(&mut w, &buf)?;
                    left -= n;
                    progress(w.n, total);
                }
            }
        }
    }
    writer.finish()?;
    w.flush()?;
    progress(w.n, total);
    if w.n != total {
        return Err(Error::InvalidArgument(format!("internal: wrote {} bytes, planned {total}", w.n)));
    }
    Ok(w.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips() {
        let mut rng = Rng::new(7, 0);
        for _ in 0..100 {
            let sc: [u8; 8] = std::array::from_fn(|_| (rng.next() & 63) as u8);
            let m: [u8; 8] = std::array::from_fn(|_| (rng.next() & 63) as u8);
            let mut b = [0u8; 144];
            put_f16(&mut b[0..2], 1.0);
            put_f16(&mut b[2..4], 1.0);
            pack_scale_min_k4(&sc, &m, &mut b[4..16]);
            let k = crate::quant::blocks::kblock(GgmlType::Q4K, &b).unwrap();
            for j in 0..8 {
                assert_eq!(k.scale[2 * j], sc[j] as f32);
                assert_eq!(k.min[2 * j], m[j] as f32);
            }
        }
    }

    #[test]
    fn rope_factors_llama3() {
        let f = llama3_rope_factors(128, 500000.0);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        // torch float32 values of llama.cpp's converter (convert_hf_to_gguf.py)
        let want: [(usize, u32); 6] = [
            (29, 1067093717),
            (30, 1069995594),
            (31, 1073852189),
            (32, 1076654894),
            (33, 1080806094),
            (34, 1084767238),
        ];
        for (i, bits) in want {
            assert!(
                (f[i].to_bits() as i64 - bits as i64).abs() <= 2,
                "factor {i}: {} vs {}",
                f[i],
                f32::from_bits(bits)
            );
        }
        assert!(f[..29].iter().all(|&x| x == 1.0) && f[35..].iter().all(|&x| x == 8.0));
        let f = llama3_rope_factors(64, 500000.0);
        assert_eq!(
            (f[14], f[15].to_bits(), f[16].to_bits(), f[17].to_bits(), f[18]),
            (1.0, 1069995594, 1076654894, 1084767238, 8.0)
        );
    }
}
