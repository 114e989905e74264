//! `llama-webgpu` command line: the same engine as the browser package, natively on wgpu.

use clap::{Parser, Subcommand};
use llama_webgpu::backend::{self, Backend, Choice, Forward, Model};
use llama_webgpu::chat::{ChatFormat, ChatOptions, Message};
use llama_webgpu::cpu::{CpuDot, CpuOptions};
use llama_webgpu::error::echo;
use llama_webgpu::gguf::split::{self, SplitLayout};
use llama_webgpu::gguf::{FileSource, GgufFile, LlamaConfig, Value};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::grammar::{self, Grammar, GrammarCompiler};
use llama_webgpu::graph::Logits;
use llama_webgpu::heap;
use llama_webgpu::kv::KvType;
use llama_webgpu::model::LoadOptions;
use llama_webgpu::output::Output;
use llama_webgpu::plan::ContextArg;
use llama_webgpu::sampler::SamplerConfig;
use llama_webgpu::session::{ContextPolicy, GenerateOptions, Session, Steering};
use llama_webgpu::speculative::Speculator;
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::{Error, Result};
use std::io::{Read, Write};

/// Counts the heap our process allocates through Rust (wgpu, tokenizer, our buffers), so
/// `info`/`bench` can report it apart from the driver's copy of GPU buffers (which lavapipe
/// keeps in host memory too, through its own allocator), and bounds a chat template's render.
#[global_allocator]
static ALLOC: heap::Heap = heap::Heap;

/// Peak resident memory of the whole process (Linux), driver included.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The weights and KV cache a model holds, for `info`.
fn held(h: &llama_webgpu::backend::Footprint) -> String {
    format!(
        "weights {:.1} MiB, KV cache {:.1} MiB ({} bytes: {} tokens, {})",
        mib(h.weight_bytes),
        mib(h.kv_bytes),
        h.kv_bytes,
        h.context,
        h.kv_type
    )
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// The command line: one clap struct per command, so an unknown or misplaced flag is an error
/// that names it (and suggests the nearest one) instead of a value stored and ignored.
#[derive(Parser)]
#[command(
    name = "llama-webgpu",
    version,
    about = "Llama 3 inference from GGUF files on WebGPU (wgpu) or the CPU",
    arg_required_else_help = true,
    after_help = "A PATH of - reads stdin. An existing output file is replaced only with --force (a symlink \
                  is followed, a device or FIFO written through, a directory refused)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Logits of a token sequence, as a float32 .npy of shape [tokens, vocab]
    Logits(LogitsArgs),
    /// Generate text (greedy unless --temperature > 0)
    Generate(Box<GenerateArgs>),
    /// Token ids of a text, as a JSON array
    Tokenize(TokenizeArgs),
    /// The embedding of a text: the final-norm hidden states, pooled
    Embed(EmbedArgs),
    /// The model's shape, weight types, backend, adapter limits and memory
    Info(InfoArgs),
    /// Prefill and decode speed, bytes read per token, and the bandwidth roofline
    Bench(BenchArgs),
    /// Quantize a GGUF to another type (llama.cpp's per-tensor rules)
    Quantize(QuantizeArgs),
    /// Write a synthetic Llama GGUF of a real model's shape (random weights)
    Synth(SynthArgs),
}

/// What loading a model takes: every command that runs one flattens this (last, as the help's
/// last heading), so an engine option is one field here.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Engine options")]
struct EngineArgs {
    /// The model (GGUF)
    #[arg(long, value_name = "M.gguf")]
    model: String,
    /// auto: the CPU backend where the only adapter is a CPU one (lavapipe, SwiftShader)
    #[arg(long, value_name = "auto|gpu|cpu", default_value = "auto")]
    backend: Backend,
    /// CPU backend threads, at most the cores available [default: all of them]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    /// Precision of the KV cache and f16-capable kernels
    #[arg(long, value_name = "auto|f32|f16", default_value = "auto")]
    precision: Precision,
    /// Largest GPU storage binding to use [default: the adapter's limit]
    #[arg(long, value_name = "BYTES")]
    max_binding_size: Option<u64>,
    /// KV cache length in tokens, or max (the model's trained context) [default: the model's, at most 8192]
    #[arg(long, value_name = "N|max")]
    context: Option<ContextArg>,
    /// KV cache element type [default: the backend's]
    #[arg(long, value_name = "f32|f16|q8_0|q4_0")]
    kv_type: Option<KvType>,
    /// CPU backend dot products: exact (f32 activations, exact weight decode) or int8
    /// (activations quantized to 8 bits per matmul, integer dots, as llama.cpp) [default: exact]
    #[arg(long, value_name = "exact|int8")]
    cpu_dot: Option<CpuDot>,
}

/// Speculative decoding: a drafter proposes tokens, the model verifies them in one pass.
#[derive(clap::Args)]
#[command(next_help_heading = "Speculative decoding")]
struct SpecArgs {
    /// Draft with this smaller model (its vocabulary must be the model's)
    #[arg(long, value_name = "D.gguf", conflicts_with = "lookup")]
    draft: Option<String>,
    /// Draft by prompt lookup: continuations of n-grams seen in the prompt or the output
    #[arg(long)]
    lookup: bool,
    /// Most tokens drafted per verification pass, 1 to 15 (adapted down while drafts are rejected)
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=llama_webgpu::speculative::MAX_DRAFTS as u64))]
    draft_tokens: u64,
    /// The draft model's backend [default: the model's]
    #[arg(long, value_name = "auto|gpu|cpu", requires = "draft")]
    draft_backend: Option<Backend>,
    /// The draft model's CPU dot products (only its acceptance depends on them) [default: the model's]
    #[arg(long, value_name = "exact|int8", requires = "draft")]
    draft_cpu_dot: Option<CpuDot>,
}

impl SpecArgs {
    /// The speculator these flags ask for (`None`: plain decoding), its draft model loaded
    /// with the target's engine options.
    fn build(
        &self,
        engine: &EngineArgs,
        target: &Model,
        choice: &Choice,
        tok: &Tokenizer,
    ) -> Result<Option<Speculator>> {
        let k = self.draft_tokens as usize;
        if self.lookup {
            return Ok(Some(Speculator::lookup(k)));
        }
        let Some(path) = &self.draft else { return Ok(None) };
        let args = EngineArgs {
            model: path.clone(),
            backend: self.draft_backend.unwrap_or(choice.backend),
            // the same cache length as the target: drafts follow its whole context
            context: Some(ContextArg::Tokens(target.context())),
            cpu_dot: self.draft_cpu_dot.or(engine.cpu_dot),
            ..engine.clone()
        };
        let (draft, file, _) = load(&args)?;
        Speculator::draft(draft, &Tokenizer::from_gguf(&file)?, target, tok, k).map(Some)
    }
}

/// `--threads`: 0 (every core) up to the available parallelism. More threads than cores only
/// spin against each other, and tens of thousands abort the process while it spawns them.
fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    let most = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n > most {
        return Err(format!("at most {most}, the threads this machine runs at once (0: all of them)"));
    }
    Ok(n)
}

/// `--tokens 1,2,3`.
#[derive(Clone)]
struct TokenList(Vec<u32>);

impl std::str::FromStr for TokenList {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                t.trim().parse::<u32>().map_err(|_| Error::InvalidArgument(format!("{} is not a token id", echo(t))))
            })
            .collect::<Result<_>>()
            .map(TokenList)
    }
}

#[derive(clap::Args)]
struct LogitsArgs {
    /// Token ids, comma-separated
    #[arg(long, value_name = "1,2,3")]
    tokens: TokenList,
    /// The .npy file to write
    #[arg(long, value_name = "PATH")]
    out: String,
    /// Replace an existing output file
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct GenerateArgs {
    /// The prompt text
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    prompt: Option<String>,
    /// The prompt from a file (- for stdin), for text beyond the OS's argument limit
    #[arg(long, value_name = "PATH")]
    prompt_file: Option<String>,
    /// The prompt as token ids, comma-separated
    #[arg(long, value_name = "1,2,3")]
    tokens: Option<TokenList>,
    /// Render the prompt as a user turn with the model's chat template
    #[arg(long)]
    chat: bool,
    /// A system turn before the prompt
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate
    #[arg(long, value_name = "N", default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    temperature: f32,
    /// Keep the K most likely tokens (0: all)
    #[arg(long, value_name = "K", default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens less likely than P times the most likely one
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    min_p: f32,
    /// Penalty on tokens already in the recent context (1: none)
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Sampling seed
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Stop when the text contains STR (may be given more than once)
    #[arg(long, value_name = "STR", allow_hyphen_values = true)]
    stop: Vec<String>,
    /// Print the tokens, text, speeds and stop reason as one JSON line at the end
    #[arg(long)]
    json: bool,
    /// Constrain the output to a JSON schema
    #[arg(long, value_name = "S.json")]
    json_schema: Option<String>,
    /// Constrain the output to a grammar (Lark, or GBNF for .gbnf files)
    #[arg(long, value_name = "G.lark|G.gbnf")]
    grammar: Option<String>,
    /// Constrain the output to a regular expression
    #[arg(long, value_name = "RX", allow_hyphen_values = true)]
    regex: Option<String>,
    /// On a full context keep the KEEP first tokens and the most recent ones (default: an error)
    #[arg(long, value_name = "KEEP")]
    sliding_window: Option<usize>,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct TokenizeArgs {
    /// A GGUF whose tokenizer to use
    #[arg(long, value_name = "M.gguf")]
    model: Option<String>,
    /// An HF tokenizer.json to use instead
    #[arg(long, value_name = "tokenizer.json")]
    tokenizer: Option<String>,
    /// The text to tokenize
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    text: Option<String>,
    /// The text from a file (- for stdin)
    #[arg(long, value_name = "PATH")]
    text_file: Option<String>,
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// The text to embed (BOS added where the model wants one)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    text: Option<String>,
    /// The input as token ids, comma-separated, as they are
    #[arg(long, value_name = "1,2,3")]
    tokens: Option<TokenList>,
    /// How positions become one vector [default: the GGUF's pooling_type, else mean]
    #[arg(long, value_name = "mean|last|cls")]
    pooling: Option<llama_webgpu::embed::Pooling>,
    /// Scale the vector to unit length (else the pooled hidden state as it is)
    #[arg(long)]
    normalize: bool,
    /// Print `{"embedding": [...], "tokens": N}` as the last line instead of one value a line
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Prompt tokens to prefill
    #[arg(long, value_name = "N", default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to decode
    #[arg(long, value_name = "N", default_value_t = 128)]
    gen_tokens: usize,
    /// Decode with N keys in the cache (filled untimed past the prompt) [default: the prompt's]
    #[arg(long, value_name = "N")]
    depth: Option<usize>,
    /// The device's memory bandwidth, for the roofline
    #[arg(long, value_name = "GBPS")]
    bandwidth: Option<f64>,
    /// One JSON line instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct QuantizeArgs {
    /// q4_k_m, q5_k_m, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, iq4_nl,
    /// iq4_xs, f16 (or a general.file_type number)
    #[arg(long = "type", value_name = "TYPE")]
    ftype: llama_webgpu::quantize::FileType,
    /// The GGUF to read
    #[arg(value_name = "IN.gguf")]
    input: String,
    /// The GGUF to write
    #[arg(value_name = "OUT.gguf")]
    output: String,
    /// Replace an existing output file
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// llama3-8b, llama3.2-1b or llama3.2-3b
    #[arg(long, value_name = "SHAPE")]
    shape: llama_webgpu::synth::SynthShape,
    /// Weight type (llama.cpp's rules per tensor)
    #[arg(long = "type", value_name = "TYPE", default_value = "q4_k_m")]
    ftype: String,
    /// The GGUF to write
    #[arg(long, value_name = "PATH")]
    out: String,
    /// Seed of the random weights
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Carry this tokenizer.json's vocabulary, merges and special tokens
    #[arg(long, value_name = "tokenizer.json")]
    tokenizer: Option<String>,
    /// Replace an existing output file
    #[arg(long)]
    force: bool,
}

/// The text of `flag` or the contents of `file_flag` (a path, `-` for stdin): the file form
/// carries text beyond the OS's argument length limit.
fn text_arg(text: Option<&str>, file: Option<&str>, flag: &str, file_flag: &str) -> Result<Option<String>> {
    match (text, file) {
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!("give {flag} or {file_flag}, not both"))),
        (Some(t), None) => Ok(Some(t.to_owned())),
        (None, Some(path)) => {
            let mut bytes = Vec::new();
            let name = if path == "-" { "stdin" } else { path };
            let read = if path == "-" {
                std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
            } else {
                std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map(|_| ())
            };
            read.map_err(|e| Error::io_at(name, e))?;
            String::from_utf8(bytes).map(Some).map_err(|e| {
                let at = e.utf8_error().valid_up_to();
                Error::InvalidArgument(format!("{file_flag} {name}: not UTF-8 text (invalid byte at offset {at})"))
            })
        }
        (None, None) => Ok(None),
    }
}

fn open(path: &str) -> Result<(FileSource, GgufFile)> {
    let src = FileSource::open(path)?;
    let file = GgufFile::read(&src).map_err(|e| read_error(path, e))?;
    Ok((src, file))
}

/// A model to run: one file, or any part of a split GGUF (the others found beside it by name).
fn open_model(path: &str) -> Result<(SplitLayout<FileSource>, GgufFile)> {
    split::open(&[std::path::PathBuf::from(path)]).map_err(|e| read_error(path, e))
}

/// An input file given by `flag` (a tokenizer.json, schema or grammar): a regular file (a
/// FIFO would block; a model-sized file is a mistake), read whole.
fn read_input(flag: &str, path: &str) -> Result<Vec<u8>> {
    const MOST: u64 = 256 << 20;
    let (mut f, len) = llama_webgpu::gguf::open_regular_file(std::path::Path::new(path), flag)?;
    if len > MOST {
        return Err(Error::InvalidArgument(format!(
            "{flag} {path}: {len} bytes, more than the {} MiB such a file may be",
            MOST >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).map_err(|e| Error::io_at(path, e))?;
    Ok(bytes)
}

/// `read_input` as UTF-8 text.
fn read_input_text(flag: &str, path: &str) -> Result<String> {
    String::from_utf8(read_input(flag, path)?).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::InvalidArgument(format!("{flag} {path}: not UTF-8 text (invalid byte at offset {at})"))
    })
}

/// A read of `path` that failed below the GGUF parser (EIO, …): say which file.
fn read_error(path: &str, e: Error) -> Error {
    match e {
        Error::Io(m) => Error::Io(format!("{path}: {m}")),
        e => e,
    }
}

fn load(args: &EngineArgs) -> Result<(Model, GgufFile, Choice)> {
    let path = &args.model;
    let (src, file) = open_model(path)?;
    let probe = if args.backend == Backend::Auto { pollster::block_on(backend::probe_adapter()) } else { None };
    let choice = backend::choose(args.backend, probe.as_ref());
    let cpu = CpuOptions { threads: args.threads.unwrap_or(0), dot: args.cpu_dot, ..Default::default() };
    let gpu = GpuOptions { precision: args.precision, max_binding_size: args.max_binding_size, ..Default::default() };
    let context = match args.context {
        Some(c) => Some(c.resolve(&LlamaConfig::from_gguf(&file)?)),
        None => None,
    };
    let opts = LoadOptions { gpu, context, kv_type: args.kv_type, ..Default::default() };
    let model =
        pollster::block_on(Model::load(&src, &file, &choice, &opts, &cpu, |_| {})).map_err(|e| read_error(path, e))?;
    Ok((model, file, choice))
}

/// Float32 `.npy` (format 1.0) of shape `shape`.
fn write_npy(output: Output, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 { format!("{},", dims[0]) } else { dims.join(", ") };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape_s}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytemuck::cast_slice(data));
    output.write(|w| Ok(w.write_all(&out)?))
}

fn cmd_logits(args: &LogitsArgs) -> Result<()> {
    let tokens = &args.tokens.0;
    let out = Output::create(&args.out, args.force)?;
    let (mut model, _, _) = load(&args.engine)?;
    let logits = model.forward_blocking(tokens, 0, Logits::All)?;
    write_npy(out, &[tokens.len(), model.cfg().n_vocab], &logits)
}

fn add_bos(file: &GgufFile) -> bool {
    matches!(file.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)))
}

fn cmd_generate(args: &GenerateArgs) -> Result<()> {
    let text = text_arg(args.prompt.as_deref(), args.prompt_file.as_deref(), "--prompt", "--prompt-file")?;
    let (mut model, file, choice) = load(&args.engine)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let mut spec = args.spec.build(&args.engine, &model, &choice, &tok)?;
    let prompt = match (&args.tokens, text.as_deref()) {
        (Some(t), None) => t.0.clone(),
        (None, Some(text)) if args.chat => {
            let format = ChatFormat::for_tokenizer(&tok);
            let mut msgs = Vec::new();
            if let Some(sys) = &args.system {
                msgs.push(Message::new("system", sys));
            }
            msgs.push(Message::new("user", text));
            format.encode(&tok, &msgs, &ChatOptions { add_generation_prompt: true, ..Default::default() })?
        }
        (None, Some(text)) => {
            let mut ids = Vec::new();
            if let (true, Some(bos)) = (add_bos(&file), tok.bos_id()) {
                ids.push(bos);
            }
            ids.extend(tok.encode(text)?);
            ids
        }
        _ => return Err(Error::InvalidArgument("give exactly one of --prompt, --prompt-file or --tokens".into())),
    };
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repeat_penalty,
            seed: args.seed,
            ..SamplerConfig::default()
        },
        stop: args.stop.clone(),
        context_policy: match args.sliding_window {
            Some(keep) => ContextPolicy::SlidingWindow { keep },
            None => ContextPolicy::Error,
        },
        logprobs: None,
    };
    let grammar = match (&args.json_schema, &args.grammar, &args.regex) {
        (None, None, None) => None,
        (Some(f), None, None) => {
            Some(Grammar::JsonSchema(grammar::parse_schema(&read_input_text("--json-schema", f)?)?))
        }
        (None, Some(f), None) => Some(Grammar::from_file_text(f, &read_input_text("--grammar", f)?)?),
        (None, None, Some(rx)) => Some(Grammar::Regex(rx.to_string())),
        _ => return Err(Error::InvalidArgument("give at most one of --json-schema, --grammar, --regex".into())),
    };
    let constraint = match &grammar {
        Some(g) => Some(GrammarCompiler::new(&tok)?.compile(g)?),
        None => None,
    };
    let mut stdout = std::io::stdout();
    let mut session = Session::new();
    let g = pollster::block_on(session.generate_speculative(
        &mut model,
        &tok,
        &prompt,
        &opts,
        Steering { constraint, spec: spec.as_mut() },
        |_, piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
            true
        },
    ))?;
    println!();
    if args.json {
        let j = serde_json::json!({
            "prompt_tokens": g.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "prefill_tokens_per_s": g.prefill_tokens_per_s,
            "decode_tokens_per_s": g.decode_tokens_per_s,
            "stop_reason": g.stop_reason,
            "dispatches_per_token": model.stats().dispatches_per_token,
            "speculative": g.speculative,
        });
        println!("{j}");
    }
    Ok(())
}

fn cmd_embed(args: &EmbedArgs) -> Result<()> {
    use llama_webgpu::embed::{self, Pooling};
    let (mut model, file, _) = load(&args.engine)?;
    let tokens = match (&args.tokens, &args.text) {
        (Some(t), None) => t.0.clone(),
        (None, Some(text)) => {
            let tok = Tokenizer::from_gguf(&file)?;
            let mut ids = Vec::new();
            if let (true, Some(bos)) = (add_bos(&file), tok.bos_id()) {
                ids.push(bos);
            }
            ids.extend(tok.encode(text)?);
            ids
        }
        _ => return Err(Error::InvalidArgument("give exactly one of --text or --tokens".into())),
    };
    let pooling = match args.pooling {
        Some(p) => p,
        None => Pooling::of_gguf(&file)?,
    };
    let v = pollster::block_on(embed::embed(&mut model, &tokens, pooling, args.normalize))?;
    if args.json {
        let j = serde_json::json!({ "embedding": v, "tokens": tokens.len() });
        println!("{j}");
    } else {
        let mut out = String::with_capacity(v.len() * 12);
        for x in &v {
            out += &format!("{x}\n");
        }
        print!("{out}");
    }
    Ok(())
}

fn cmd_tokenize(args: &TokenizeArgs) -> Result<()> {
    let tok = match (&args.model, &args.tokenizer) {
        (Some(m), None) => Tokenizer::from_gguf(&open(m)?.1)?,
        (None, Some(t)) => tokenizer_json(t)?,
        _ => return Err(Error::InvalidArgument("give exactly one of --model or --tokenizer".into())),
    };
    let text = text_arg(args.text.as_deref(), args.text_file.as_deref(), "--text", "--text-file")?;
    let ids = tok.encode(&text.ok_or_else(|| Error::InvalidArgument("missing --text or --text-file".into()))?)?;
    println!("{}", serde_json::to_string(&ids).map_err(|e| Error::InvalidArgument(e.to_string()))?);
    Ok(())
}

/// `--tokenizer PATH`: an HF tokenizer.json (a GGUF given here gets pointed to `--model`).
fn tokenizer_json(path: &str) -> Result<Tokenizer> {
    let bytes = read_input("--tokenizer", path)?;
    if bytes.starts_with(b"GGUF") {
        return Err(Error::InvalidArgument(format!(
            "--tokenizer {path} is a GGUF file, but --tokenizer expects a tokenizer.json; \
             pass a GGUF as --model {path}"
        )));
    }
    Tokenizer::from_json(&bytes).map_err(|e| match e {
        Error::Tokenizer(m) => Error::Tokenizer(format!("{path}: not a usable tokenizer.json: {m}")),
        e => e,
    })
}

fn cmd_info(args: &InfoArgs) -> Result<()> {
    let (model, file, choice) = load(&args.engine)?;
    let c = model.cfg();
    println!("file:           {} (GGUF v{}, {} tensors)", args.engine.model, file.version, file.tensors.len());
    println!("architecture:   {}  name: {}", c.architecture, c.name.as_deref().unwrap_or("-"));
    println!(
        "shape:          {} layers, embd {}, ffn {}, heads {} / kv {} (head_dim {}), vocab {}",
        c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab
    );
    println!(
        "rope:           base {}, rope_freqs {}, tied embeddings {}, rms eps {}, trained context {}",
        c.rope_base, c.has_rope_freqs, c.tied_embeddings, c.rms_eps, c.context_length
    );
    let types: Vec<String> = model.stats().tensor_types.iter().map(|(t, n)| format!("{t}×{n}")).collect();
    println!("weight types:   {}", types.join(", "));
    println!("backend:        {} ({}) on {}", choice.backend, choice.reason, model.stats().device);
    let m = match &model {
        Model::Gpu(m) => m,
        Model::Cpu(m) => {
            println!("memory:         {}, prefill chunk {} tokens", held(&m.held), m.chunk);
            println!("host memory:    peak Rust heap {:.1} MiB", mib(heap::peak() as u64));
            return Ok(());
        }
    };
    let g = &m.gpu;
    println!(
        "adapter:        {} ({}, {}, {})",
        g.adapter.name, g.adapter.backend, g.adapter.device_type, g.adapter.driver
    );
    println!(
        "features:       shader-f16 {} (using f16: {})",
        g.features.contains(wgpu::Features::SHADER_F16) || g.use_f16,
        g.use_f16
    );
    println!(
        "limits:         max_storage_buffer_binding_size {}, max_buffer_size {}, invocations/workgroup {}, storage buffers/stage {}",
        g.limits.max_storage_buffer_binding_size, g.limits.max_buffer_size, g.limits.max_compute_invocations_per_workgroup, g.limits.max_storage_buffers_per_shader_stage
    );
    println!("binding cap:    {} bytes", g.max_binding);
    println!("memory:         {}, total GPU {:.1} MiB", held(&m.held), mib(m.gpu_bytes));
    println!("dispatches:     {} per decoded token, prefill chunk {} tokens", m.dispatches_per_token(), m.chunk);
    println!(
        "host memory:    peak Rust heap {:.1} MiB; peak process RSS {:.1} MiB (includes a CPU driver's copy of GPU buffers)",
        mib(heap::peak() as u64),
        mib(peak_rss().unwrap_or(0))
    );
    Ok(())
}

/// Prefill and decode speed, bytes read per token, and the bandwidth roofline.
fn cmd_bench(args: &BenchArgs) -> Result<()> {
    let t_load = web_time::Instant::now();
    let (mut model, file, choice) = load(&args.engine)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let (n_prompt, n_gen) = (args.prompt_tokens, args.gen_tokens);
    let r = pollster::block_on(llama_webgpu::bench::run(&mut model, n_prompt, n_gen, args.depth))?;
    let speculative = if args.spec.lookup || args.spec.draft.is_some() {
        let tok = Tokenizer::from_gguf(&file)?;
        let mut spec = args.spec.build(&args.engine, &model, &choice, &tok)?;
        Some(pollster::block_on(llama_webgpu::bench::speculative(&mut model, &tok, spec.as_mut(), n_prompt, n_gen))?)
    } else {
        None
    };
    let (first_token_s, decode_tps, bytes) = (r.first_token_s, r.decode_tokens_per_s, r.weight_bytes_per_token);
    let roofline = args.bandwidth.map(|gbps| gbps * 1e9 / bytes as f64);
    let mut j = serde_json::to_value(&r).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let extra = serde_json::json!({
        "model": args.engine.model,
        "backend_choice": choice,
        "load_s": load_s,
        "host_heap_peak_bytes": heap::peak(),
        "process_peak_rss_bytes": peak_rss(),
        "roofline_tokens_per_s": roofline,
        "fraction_of_roofline": roofline.map(|r| decode_tps / r),
        "speculative": speculative,
    });
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    if args.json {
        println!("{j}");
    } else {
        println!("adapter {} ({}), {}", j["adapter"], j["backend"], j["precision"]);
        println!("load {load_s:.2} s, first token (pipeline compile) {first_token_s:.2} s");
        println!("prefill {n_prompt} tokens: {:.2} tokens/s", j["prefill_tokens_per_s"].as_f64().unwrap_or(0.0));
        println!(
            "decode {n_gen} tokens at depth {}: {decode_tps:.2} tokens/s, {:.1} MB weights + {:.1} MB {} KV cache read per token ({:.2} GB/s), {} dispatches per token",
            r.depth,
            bytes as f64 / 1e6,
            r.kv_bytes_per_token as f64 / 1e6,
            r.kv_type,
            (bytes + r.kv_bytes_per_token) as f64 * decode_tps / 1e9,
            model.stats().dispatches_per_token
        );
        if let Some(r) = roofline {
            println!("bandwidth roofline {r:.1} tokens/s: decode at {:.1}% of it", 100.0 * decode_tps / r);
        }
        if let Some(s) = &speculative {
            println!(
                "speculative: plain {:.2} tokens/s, speculative {:.2} tokens/s ({:.2}×), {} drafted, {} accepted, {} target passes for {} tokens",
                s.plain_tokens_per_s,
                s.speculative_tokens_per_s,
                s.speculative_tokens_per_s / s.plain_tokens_per_s.max(1e-9),
                s.stats.drafted,
                s.stats.accepted,
                s.stats.target_forwards,
                s.tokens
            );
        }
        println!(
            "GPU memory {:.1} MiB; host: peak Rust heap {:.1} MiB, peak process RSS {:.1} MiB",
            mib(r.gpu_memory_bytes),
            mib(heap::peak() as u64),
            mib(peak_rss().unwrap_or(0))
        );
    }
    Ok(())
}

fn cmd_quantize(args: &QuantizeArgs) -> Result<()> {
    let (ftype, output) = (args.ftype, &args.output);
    let (src, file) = open(&args.input)?;
    let out = Output::create(output, args.force)?;
    out.write(|w| llama_webgpu::quantize::quantize_file(&src, &file, ftype, w, |_, _| {}))?;
    // On stderr: the output may be stdout.
    eprint!("{}", quantize_summary(&file, ftype, output));
    Ok(())
}

/// The types `quantize` wrote, and where llama.cpp's fallback replaced the type asked for
/// (rows whose length the type's blocks do not divide, e.g. K-quants on rows not a multiple
/// of 256).
fn quantize_summary(file: &GgufFile, ftype: llama_webgpu::quantize::FileType, output: &str) -> String {
    use llama_webgpu::quantize::{tensor_types, wanted_types};
    use std::collections::{BTreeMap, BTreeSet};
    let (wanted, written) = (wanted_types(file, ftype), tensor_types(file, ftype));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    // (wanted, written) names → (tensors, their row lengths, the wanted block size)
    let mut fallbacks: BTreeMap<(&str, &str), (usize, BTreeSet<u64>, u64)> = BTreeMap::new();
    for ((t, w), g) in file.tensors.iter().zip(&wanted).zip(&written) {
        *counts.entry(g.name()).or_default() += 1;
        if w != g {
            let e = fallbacks.entry((w.name(), g.name())).or_insert((0, BTreeSet::new(), w.block_size()));
            e.0 += 1;
            e.1.insert(t.cols());
        }
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{t}×{n}")).collect();
    let mut s = format!("quantize: wrote {output} ({ftype}, {} tensors): {}\n", written.len(), types.join(", "));
    for ((w, g), (n, cols, block)) in &fallbacks {
        let cols: Vec<String> = cols.iter().map(u64::to_string).collect();
        let tensors = if *n == 1 { "tensor" } else { "tensors" };
        s += &format!(
            "quantize: note: {n} {tensors} written as {g}, not {w}: rows of {} values are not multiples of \
             {block} (llama.cpp's fallback)\n",
            cols.join(" and ")
        );
    }
    s
}

fn cmd_synth(args: &SynthArgs) -> Result<()> {
    let (shape, ftype, seed) = (&args.shape, &args.ftype, args.seed);
    let extra = match &args.tokenizer {
        Some(t) => {
            let bytes = read_input("--tokenizer", t)?;
            llama_webgpu::synth::tokenizer_metadata(&bytes, llama_webgpu::synth::dims(shape).n_vocab)?
        }
        None => vec![],
    };
    let mut last = 0u64;
    Output::create(&args.out, args.force)?.write(|w| {
        llama_webgpu::synth::synth_with_metadata(shape, ftype, seed, extra, w, |done, total| {
            if done >= last + (1 << 30) || done == total {
                last = done;
                eprintln!("synth: {:.2} / {:.2} GB", done as f64 / 1e9, total as f64 / 1e9);
            }
        })
        .map(|_| ())
    })
}

fn main() {
    heap::set_over_budget_hook(|what, budget| {
        fail(&Error::Template { name: what, reason: format!("needed more than {} MiB of memory", budget >> 20) })
    });
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_exit(e));
    let result = match &cli.command {
        Command::Logits(a) => cmd_logits(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Tokenize(a) => cmd_tokenize(a),
        Command::Embed(a) => cmd_embed(a),
        Command::Info(a) => cmd_info(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Synth(a) => cmd_synth(a),
    };
    if let Err(e) = result {
        fail(&e);
    }
}

/// `error: …` on stderr and exit status 1, for every failure.
fn fail(e: &Error) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}

/// Help and version on stdout (status 0); a usage error as clap words it (the flag, the
/// nearest valid one, the usage line), with our exit status 1.
fn usage_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            use std::io::IsTerminal;
            let text = e.render();
            if std::io::stdout().is_terminal() {
                print!("{}", text.ansi());
            } else {
                print!("{text}");
            }
            std::process::exit(0)
        }
        ErrorKind::InvalidSubcommand => {
            let text = e.render().to_string();
            eprint!(
                "{}",
                text.replacen("unrecognized subcommand", "unknown command", 1).replace("subcommand", "command")
            );
            std::process::exit(1)
        }
        _ => {
            let _ = e.print();
            std::process::exit(1)
        }
    }
}
