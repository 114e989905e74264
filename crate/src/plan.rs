//! Load planning: the KV-cache context and the prefill chunk from the header's shapes and the
//! device's binding limit. Pure, checked arithmetic (no GPU, so the fuzz harness runs it): a
//! hostile header gets a typed error, never a division by zero or an overflow.

use crate::error::{Error, Result};
use crate::gguf::{ByteSource, GgufFile, LlamaConfig};
use crate::kv::KvType;
use crate::tokenizer::Tokenizer;

/// Default KV cache capacity cap when the caller asks for none: Llama 3.0's whole 8K; the
/// 3.1/3.2 models' own 128K is far more memory than a browser tab should take unasked
/// (`--context max` / `contextLength: "max"` asks for it).
pub const DEFAULT_MAX_CONTEXT: usize = 8192;

/// A context length as the CLI's `--context` and the package's `contextLength` take it:
/// tokens, or `max` (the model's own trained context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextArg {
    Tokens(usize),
    Max,
}

impl ContextArg {
    /// The tokens asked for with this model (`max`: its trained context, at least 1).
    pub fn resolve(self, cfg: &LlamaConfig) -> usize {
        match self {
            ContextArg::Tokens(n) => n,
            ContextArg::Max => cfg.context_length.max(1),
        }
    }
}

impl std::str::FromStr for ContextArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "max" => Ok(ContextArg::Max),
            t => t.parse().map(ContextArg::Tokens).map_err(|_| {
                Error::InvalidArgument(format!(
                    "context must be a number of tokens or \"max\", got {}",
                    crate::error::echo(s)
                ))
            }),
        }
    }
}

/// What a model load will allocate, from its shapes and the binding limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// KV cache capacity in tokens (>= 1).
    pub context: usize,
    /// Tokens per forward pass (>= 1).
    pub chunk: usize,
    /// The KV cache's element type.
    pub kv_type: KvType,
    pub q_dim: usize,
    pub kv_dim: usize,
    /// Bytes of one layer's K (or V) cache.
    pub kv_layer_bytes: u64,
    /// Bytes of the whole KV cache (K and V, every layer).
    pub kv_bytes: u64,
    /// Buffers one layer's K (or V) cache is split into, by positions (1 when one binding
    /// holds it), and the positions each holds (the last one: the rest).
    pub kv_parts: usize,
    pub part_positions: usize,
}

/// The KV-cache context a load wants: what the caller asked (at least 1 token), else the
/// model's own, capped at [`DEFAULT_MAX_CONTEXT`]. One rule for both backends.
pub fn wanted_context(cfg: &LlamaConfig, asked: Option<usize>) -> Result<usize> {
    match asked {
        Some(0) => Err(Error::InvalidArgument("context must be at least 1 token (got 0)".into())),
        Some(n) => Ok(n),
        None => Ok(cfg.context_length.clamp(1, DEFAULT_MAX_CONTEXT)),
    }
}

/// Most buffers one layer's K (or V) cache is split into (each attention launch binds one).
pub const MAX_KV_PARTS: u64 = 16;
/// Largest KV part in bytes: the kernels address it with u32 byte offsets.
const MAX_PART_BYTES: u64 = 1 << 31;

fn too_small(what: String) -> Error {
    Error::LimitsTooSmall(what)
}

fn overflow(what: &str) -> Error {
    Error::UnsupportedModel(format!("{what} overflows"))
}

/// Plans context and chunk: what the caller asked (`context`, `prefill_chunk`), bounded so
/// that every buffer bound to a kernel fits `max_binding` bytes.
pub fn plan(
    cfg: &LlamaConfig,
    max_binding: u64,
    kv_type: KvType,
    context: Option<usize>,
    prefill_chunk: usize,
) -> Result<Plan> {
    let u = |x: usize| x as u64;
    let q_dim = cfg.n_head.checked_mul(cfg.head_dim).ok_or_else(|| overflow("head_count × head dimension"))?;
    let kv_dim = cfg.n_head_kv.checked_mul(cfg.head_dim).ok_or_else(|| overflow("head_count_kv × head dimension"))?;

    // One token's row of every activation (f32) must fit a binding.
    let rows = [
        ("embedding", cfg.n_embd),
        ("query", q_dim),
        ("key/value", kv_dim),
        ("feed-forward", cfg.n_ff),
        ("logits", cfg.n_vocab),
    ];
    let mut widest = 1u64;
    for (what, n) in rows {
        let bytes = u(n).checked_mul(4).ok_or_else(|| overflow(what))?;
        if bytes > max_binding {
            return Err(too_small(format!(
                "one token's {what} row ({n} floats) needs {bytes} bytes, above the {max_binding}-byte binding limit"
            )));
        }
        widest = widest.max(bytes);
    }

    // Context: one layer's K (or V) cache is split by positions into up to MAX_KV_PARTS
    // buffers of at most one binding each; a position's rows are padded to whole u32 words.
    // one token's K (or V) row: n_kv head rows; <= kv_dim * 4 <= max_binding (checked above)
    let kv_row = u(kv_type.row_bytes(cfg.head_dim)?) * u(cfg.n_head_kv);
    let pos_bytes = kv_row.next_multiple_of(4).max(4);
    // attention partials (per token and part: n_head rows of head_dim + 2 floats) in a binding
    let partial_row = u(cfg.n_head)
        .checked_mul(u(cfg.head_dim) + 2)
        .and_then(|x| x.checked_mul(4))
        .ok_or_else(|| overflow("head_count × head dimension"))?;
    let max_parts = (max_binding / partial_row.max(1)).clamp(1, MAX_KV_PARTS);
    let part_cap = max_binding.min(MAX_PART_BYTES) / pos_bytes;
    let max_ctx = usize::try_from(part_cap.saturating_mul(max_parts)).unwrap_or(usize::MAX);
    let want = wanted_context(cfg, context)?;
    let ctx = want.min(max_ctx);
    if ctx == 0 {
        return Err(too_small(format!(
            "one token of KV cache ({kv_dim} values, {kv_row} bytes in {kv_type}) exceeds the {max_binding}-byte \
             binding limit"
        )));
    }
    if ctx < want && context.is_some() {
        return Err(too_small(format!(
            "context {want} needs more than {max_parts} KV-cache buffers of the device's {max_binding}-byte \
             bindings; at most {ctx} fits"
        )));
    }
    let kv_parts = u(ctx).div_ceil(part_cap.max(1));
    let part_positions = usize::try_from(u(ctx).div_ceil(kv_parts)).unwrap_or(usize::MAX);

    // Chunk: each activation, and the attention partials over several parts, in a binding.
    let per_token = if kv_parts > 1 { widest.max(partial_row * kv_parts) } else { widest };
    let fit = (max_binding / per_token.max(1)).max(1);
    let chunk = prefill_chunk.max(1).min(usize::try_from(fit).unwrap_or(usize::MAX));

    let kv_layer_bytes = u(ctx).checked_mul(pos_bytes).ok_or_else(|| overflow("KV cache size"))?;
    let kv_bytes = kv_layer_bytes
        .checked_mul(2)
        .and_then(|b| b.checked_mul(u(cfg.n_layer)))
        .ok_or_else(|| overflow("KV cache size"))?;
    let kv_parts = kv_parts as usize; // <= MAX_KV_PARTS
    Ok(Plan { context: ctx, chunk, kv_type, q_dim, kv_dim, kv_layer_bytes, kv_bytes, kv_parts, part_positions })
}

/// What a load decides before it touches the GPU: the header, the tokenizer, the config and
/// the plan for a device whose bindings hold `max_binding` bytes. The fuzz harness
/// (`tests/fuzz.rs`) runs this on mutated files; every failure must be a typed error.
pub fn dry_load(src: &dyn ByteSource, max_binding: u64, use_f16: bool) -> Result<(LlamaConfig, Plan, Tokenizer)> {
    let file = GgufFile::read(src)?;
    // both, so that a mutant with a bad config still exercises the tokenizer (and back)
    let tok = Tokenizer::from_gguf(&file);
    let cfg = LlamaConfig::from_gguf(&file);
    let (tok, cfg) = (tok?, cfg?);
    let kv = if use_f16 { KvType::F16 } else { KvType::F32 };
    let plan = plan(&cfg, max_binding, kv, None, 64)?;
    Ok((cfg, plan, tok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n_head: usize, n_head_kv: usize, head_dim: usize) -> LlamaConfig {
        LlamaConfig {
            architecture: "llama".into(),
            name: None,
            n_layer: 2,
            n_embd: 64,
            n_ff: 128,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab: 320,
            context_length: 2048,
            rms_eps: 1e-5,
            rope_base: 1e4,
            has_rope_freqs: false,
            tied_embeddings: true,
        }
    }

    #[test]
    fn kv_row_above_the_binding_is_limits_error_not_division_by_zero() {
        // The fuzzing finding: 8193 KV heads × 32 × 4 bytes = 1,048,704 > 1 MiB.
        let e = plan(&cfg(8193, 8193, 32), 1 << 20, KvType::F32, None, 64).unwrap_err();
        assert!(matches!(&e, Error::LimitsTooSmall(m) if m.contains("1048576")), "{e}");
        assert!(e.to_string().contains("query row (262176 floats)"), "{e}");
        // One query row just fits: f16 KV rows of 524,032 bytes leave room for 2 tokens.
        let p = plan(&cfg(8, 8, 32 * 1024 - 16), 1 << 20, KvType::F16, None, 64).unwrap();
        assert_eq!((p.context, p.chunk), (2, 1));
    }

    #[test]
    fn usual_shapes_keep_their_context_and_chunk() {
        let p = plan(&cfg(4, 2, 16), 128 << 20, KvType::F32, None, 64).unwrap();
        assert_eq!((p.context, p.chunk, p.kv_dim, p.q_dim), (2048, 64, 32, 64));
        assert_eq!(p.kv_bytes, 2 * 2 * 2048 * 32 * 4);
        let p = plan(&cfg(4, 2, 16), 128 << 20, KvType::F32, Some(usize::MAX), 64);
        assert!(matches!(p, Err(Error::LimitsTooSmall(_))));
    }

    #[test]
    fn context_arg_and_quantized_kv_rows() {
        let c = cfg(4, 2, 64);
        assert_eq!("max".parse::<ContextArg>().unwrap().resolve(&c), 2048);
        assert_eq!(" 300 ".parse::<ContextArg>().unwrap().resolve(&c), 300);
        assert!(matches!("lots".parse::<ContextArg>(), Err(Error::InvalidArgument(m)) if m.contains("\"max\"")));
        let mut long = c.clone();
        long.context_length = 131072;
        assert_eq!(wanted_context(&long, None).unwrap(), DEFAULT_MAX_CONTEXT);
        // a Q8_0 row of 2 heads × 64 values is 2 × 68 bytes: 2 layers × K and V
        let p = plan(&c, 128 << 20, KvType::Q8_0, Some(1000), 64).unwrap();
        assert_eq!((p.kv_layer_bytes, p.kv_bytes), (1000 * 136, 4 * 1000 * 136));
        assert_eq!(p.kv_bytes, crate::kv::kv_bytes(&c, 1000, KvType::Q8_0).unwrap());
        // head_dim 48 is not whole Q4_0 blocks
        assert!(matches!(plan(&cfg(4, 2, 48), 128 << 20, KvType::Q4_0, None, 64), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn kv_cache_split_across_bindings() {
        // f32 rows of 2 heads × 64 = 512 bytes: a 1 MiB binding holds 2048 positions
        let c = cfg(4, 2, 64);
        let p = plan(&c, 1 << 20, KvType::F32, Some(5000), 64).unwrap();
        assert_eq!((p.context, p.kv_parts, p.part_positions, p.chunk), (5000, 3, 1667, 64));
        assert_eq!(p.kv_layer_bytes, 5000 * 512);
        let p = plan(&c, 128 << 20, KvType::F32, Some(5000), 64).unwrap();
        assert_eq!((p.kv_parts, p.part_positions), (1, 5000));
        // at most MAX_KV_PARTS buffers: asked beyond is an error naming what fits
        let e = plan(&c, 1 << 20, KvType::F32, Some(40000), 64).unwrap_err();
        assert!(matches!(&e, Error::LimitsTooSmall(m) if m.contains("at most 32768")), "{e}");
        // q8_0 rows of 3 × 34 bytes are padded to whole words per position
        let p = plan(&cfg(3, 3, 32), 1 << 20, KvType::Q8_0, Some(100), 64).unwrap();
        assert_eq!(p.kv_layer_bytes, 100 * 104);
    }

    #[test]
    fn overflowing_shapes_are_errors() {
        let mut c = cfg(4, 2, 16);
        c.head_dim = usize::MAX / 2;
        assert!(plan(&c, 1 << 30, KvType::F32, None, 64).is_err());
        let mut c = cfg(4, 2, 16);
        c.n_vocab = 1 << 40;
        assert!(matches!(plan(&c, 1 << 30, KvType::F32, None, 64), Err(Error::LimitsTooSmall(_))));
    }
}
