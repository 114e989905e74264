//! `llama-webgpu` command line: the same engine as the browser package, natively on wgpu.

use llama_webgpu::backend::{self, Backend, Choice, Model};
use llama_webgpu::chat::{ChatFormat, ChatOptions, Message};
use llama_webgpu::cpu::CpuOptions;
use llama_webgpu::error::echo;
use llama_webgpu::gguf::{FileSource, GgufFile, LlamaConfig, Value};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::grammar::{self, Grammar, GrammarCompiler};
use llama_webgpu::kv::KvType;
use llama_webgpu::model::LoadOptions;
use llama_webgpu::output::Output;
use llama_webgpu::plan::ContextArg;
use llama_webgpu::sampler::SamplerConfig;
use llama_webgpu::session::{ContextPolicy, GenerateOptions, Session};
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::{Error, Result};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts the heap our process allocates through Rust (wgpu, tokenizer, our buffers), so
/// `info`/`bench` can report it apart from the driver's copy of GPU buffers (which lavapipe
/// keeps in host memory too, through its own allocator).
struct CountingAlloc;
static HEAP: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = HEAP.fetch_add(n, Relaxed) + n;
    HEAP_PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        HEAP.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            HEAP.fetch_sub(l.size(), Relaxed);
            grew(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Peak resident memory of the whole process (Linux), driver included.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

const USAGE: &str = "usage:
  llama-webgpu logits   --model M.gguf --tokens 1,2,3 --out out.npy [--force]
  llama-webgpu generate --model M.gguf (--prompt TEXT | --prompt-file PATH | --tokens 1,2,3)
                        [--chat] [--system TEXT]
                        [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P]
                        [--repeat-penalty R] [--seed S] [--stop STR] [--json]
                        [--json-schema S.json | --grammar G.lark|G.gbnf | --regex RX]
                        [--sliding-window KEEP] (full context: keep KEEP first tokens + recent ones)
  llama-webgpu tokenize (--model M.gguf | --tokenizer tokenizer.json) (--text TEXT | --text-file PATH)
  llama-webgpu info     --model M.gguf
  llama-webgpu bench    --model M.gguf [--prompt-tokens 512] [--gen-tokens 128] [--bandwidth GBPS] [--json]
  llama-webgpu quantize --type q4_k_m|q5_k_m|q6_k|q8_0|q4_0|q4_1|q5_0|q5_1|f16 IN.gguf OUT.gguf [--force]
  llama-webgpu synth    --shape llama3-8b|llama3.2-1b|llama3.2-3b --type q4_k_m --out FILE [--seed S] [--tokenizer tokenizer.json] [--force]
common options: --precision auto|f32|f16 (default auto), --max-binding-size BYTES,
                --context N|max (KV cache tokens; default the model's, at most 8192; max: the model's),
                --kv-type f32|f16|q8_0|q4_0 (KV cache type; default the backend's),
                --backend auto|gpu|cpu (default auto: the CPU when the only adapter is a CPU one),
                --threads N (CPU backend; default all cores)
a PATH of - reads stdin; an existing output file is replaced only with --force
(a symlink is followed, a device or FIFO written through, a directory refused)
generate is greedy unless --temperature > 0.";

/// `--key value` pairs and bare `--flag`s.
struct Args {
    cmd: String,
    kv: HashMap<String, String>,
    flags: Vec<String>,
    /// Positional arguments (only `quantize IN OUT` takes them).
    pos: Vec<String>,
}

const FLAGS: &[&str] = &["--chat", "--json", "--help", "--force"];

impl Args {
    fn parse() -> Result<Args> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().unwrap_or_default();
        let (mut kv, mut flags, mut pos) = (HashMap::new(), Vec::new(), Vec::new());
        while let Some(a) = it.next() {
            if FLAGS.contains(&a.as_str()) {
                flags.push(a);
            } else if a.starts_with("--") {
                let v = it.next().ok_or_else(|| Error::InvalidArgument(format!("{a} needs a value")))?;
                kv.insert(a, v);
            } else {
                pos.push(a);
            }
        }
        Ok(Args { cmd, kv, flags, pos })
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.kv.get(k).map(String::as_str)
    }
    fn req(&self, k: &str) -> Result<&str> {
        self.get(k).ok_or_else(|| Error::InvalidArgument(format!("missing {k}")))
    }
    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>> {
        self.get(k)
            .map(|v| v.parse::<T>().map_err(|_| Error::InvalidArgument(format!("{k}: cannot parse {}", echo(v)))))
            .transpose()
    }
    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    /// The text of `flag` or the contents of `file_flag` (a path, `-` for stdin): the file
    /// form carries text beyond the OS's argument length limit.
    fn text(&self, flag: &str, file_flag: &str) -> Result<Option<String>> {
        match (self.get(flag), self.get(file_flag)) {
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
    /// An output path checked before any long work (see `llama_webgpu::output`).
    fn output(&self, path: &str) -> Result<Output> {
        Output::create(path, self.flag("--force"))
    }
    fn gpu_options(&self) -> Result<GpuOptions> {
        Ok(GpuOptions {
            precision: self.get("--precision").unwrap_or("auto").parse::<Precision>()?,
            max_binding_size: self.num("--max-binding-size")?,
            cpu_adapter: false,
        })
    }
    /// `file`: the model (`--context max` is its trained context).
    fn load_options(&self, file: &GgufFile) -> Result<LoadOptions> {
        let context = match self.get("--context") {
            Some(c) => Some(c.parse::<ContextArg>()?.resolve(&LlamaConfig::from_gguf(file)?)),
            None => None,
        };
        let kv_type = self.get("--kv-type").map(str::parse::<KvType>).transpose()?;
        Ok(LoadOptions { gpu: self.gpu_options()?, context, kv_type, ..Default::default() })
    }
    fn tokens(&self) -> Result<Option<Vec<u32>>> {
        self.get("--tokens")
            .map(|s| {
                s.split(',')
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| {
                        t.trim()
                            .parse::<u32>()
                            .map_err(|_| Error::InvalidArgument(format!("--tokens: {} is not a token id", echo(t))))
                    })
                    .collect()
            })
            .transpose()
    }
}

fn open(path: &str) -> Result<(FileSource, GgufFile)> {
    let src = FileSource::open(path)?;
    let file = GgufFile::read(&src).map_err(|e| read_error(path, e))?;
    Ok((src, file))
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

fn load(args: &Args) -> Result<(Model, GgufFile, Choice)> {
    let path = args.req("--model")?;
    let (src, file) = open(path)?;
    let asked: Backend = args.get("--backend").unwrap_or("auto").parse()?;
    let probe = if asked == Backend::Auto { pollster::block_on(backend::probe_adapter()) } else { None };
    let choice = backend::choose(asked, probe.as_ref());
    let cpu = CpuOptions { threads: args.num("--threads")?.unwrap_or(0), ..Default::default() };
    let model = pollster::block_on(Model::load(&src, &file, &choice, &args.load_options(&file)?, &cpu, |_| {}))
        .map_err(|e| read_error(path, e))?;
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

fn cmd_logits(args: &Args) -> Result<()> {
    let tokens = args.tokens()?.ok_or_else(|| Error::InvalidArgument("missing --tokens".into()))?;
    let out = args.output(args.req("--out")?)?;
    let (mut model, _, _) = load(args)?;
    let logits = model.forward_blocking(&tokens, 0, true)?;
    write_npy(out, &[tokens.len(), model.cfg().n_vocab], &logits)
}

fn add_bos(file: &GgufFile) -> bool {
    matches!(file.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)))
}

fn cmd_generate(args: &Args) -> Result<()> {
    let text = args.text("--prompt", "--prompt-file")?;
    let (mut model, file, _) = load(args)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let prompt = match (args.tokens()?, text.as_deref()) {
        (Some(t), None) => t,
        (None, Some(text)) if args.flag("--chat") => {
            let format = ChatFormat::for_tokenizer(&tok);
            let mut msgs = Vec::new();
            if let Some(sys) = args.get("--system") {
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
        max_tokens: args.num("--max-tokens")?.unwrap_or(128),
        sampler: SamplerConfig {
            temperature: args.num("--temperature")?.unwrap_or(0.0),
            top_k: args.num("--top-k")?.unwrap_or(0),
            top_p: args.num("--top-p")?.unwrap_or(1.0),
            min_p: args.num("--min-p")?.unwrap_or(0.0),
            repetition_penalty: args.num("--repeat-penalty")?.unwrap_or(1.0),
            seed: args.num("--seed")?.unwrap_or(0),
            ..SamplerConfig::default()
        },
        stop: args.get("--stop").map(|s| vec![s.to_string()]).unwrap_or_default(),
        context_policy: match args.num("--sliding-window")? {
            Some(keep) => ContextPolicy::SlidingWindow { keep },
            None => ContextPolicy::Error,
        },
        logprobs: None,
    };
    let grammar = match (args.get("--json-schema"), args.get("--grammar"), args.get("--regex")) {
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
    let g =
        pollster::block_on(session.generate_constrained(&mut model, &tok, &prompt, &opts, constraint, |_, piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
            true
        }))?;
    println!();
    if args.flag("--json") {
        let j = serde_json::json!({
            "prompt_tokens": g.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "prefill_tokens_per_s": g.prefill_tokens_per_s,
            "decode_tokens_per_s": g.decode_tokens_per_s,
            "stop_reason": g.stop_reason,
            "dispatches_per_token": model.dispatches_per_token(),
        });
        println!("{j}");
    }
    Ok(())
}

fn cmd_tokenize(args: &Args) -> Result<()> {
    let tok = match (args.get("--model"), args.get("--tokenizer")) {
        (Some(m), None) => Tokenizer::from_gguf(&open(m)?.1)?,
        (None, Some(t)) => tokenizer_json(t)?,
        _ => return Err(Error::InvalidArgument("give exactly one of --model or --tokenizer".into())),
    };
    let text = args.text("--text", "--text-file")?;
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

fn cmd_info(args: &Args) -> Result<()> {
    let (model, file, choice) = load(args)?;
    let c = model.cfg();
    println!("file:           {} (GGUF v{}, {} tensors)", args.req("--model")?, file.version, file.tensors.len());
    println!("architecture:   {}  name: {}", c.architecture, c.name.as_deref().unwrap_or("-"));
    println!(
        "shape:          {} layers, embd {}, ffn {}, heads {} / kv {} (head_dim {}), vocab {}",
        c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab
    );
    println!(
        "rope:           base {}, rope_freqs {}, tied embeddings {}, rms eps {}, trained context {}",
        c.rope_base, c.has_rope_freqs, c.tied_embeddings, c.rms_eps, c.context_length
    );
    let types: Vec<String> = model.tensor_types().iter().map(|(t, n)| format!("{t}×{n}")).collect();
    println!("weight types:   {}", types.join(", "));
    println!("backend:        {} ({}) on {}", choice.backend, choice.reason, model.device());
    let m = match &model {
        Model::Gpu(m) => m,
        Model::Cpu(m) => {
            println!(
                "memory:         weights {:.1} MiB, KV cache {:.1} MiB ({} tokens, {}), prefill chunk {} tokens",
                mib(m.weight_bytes),
                mib(m.kv_bytes),
                m.context,
                m.kv_type,
                m.chunk
            );
            println!("host memory:    peak Rust heap {:.1} MiB", mib(HEAP_PEAK.load(Relaxed) as u64));
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
    println!(
        "memory:         weights {:.1} MiB, KV cache {:.1} MiB ({} tokens, {}), total GPU {:.1} MiB",
        mib(m.weight_bytes),
        mib(m.kv_bytes),
        m.context,
        m.kv_type,
        mib(m.gpu_bytes)
    );
    println!("dispatches:     {} per decoded token, prefill chunk {} tokens", m.dispatches_per_token(), m.chunk);
    println!(
        "host memory:    peak Rust heap {:.1} MiB; peak process RSS {:.1} MiB (includes a CPU driver's copy of GPU buffers)",
        mib(HEAP_PEAK.load(Relaxed) as u64),
        mib(peak_rss().unwrap_or(0))
    );
    Ok(())
}

/// Prefill and decode speed, bytes read per token, and the bandwidth roofline.
fn cmd_bench(args: &Args) -> Result<()> {
    let t_load = web_time::Instant::now();
    let (mut model, _, choice) = load(args)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let n_prompt: usize = args.num("--prompt-tokens")?.unwrap_or(512);
    let n_gen: usize = args.num("--gen-tokens")?.unwrap_or(128);
    let r = pollster::block_on(llama_webgpu::bench::run(&mut model, n_prompt, n_gen))?;
    let (first_token_s, decode_tps, bytes) = (r.first_token_s, r.decode_tokens_per_s, r.weight_bytes_per_token);
    let bandwidth: Option<f64> = args.num("--bandwidth")?;
    let roofline = bandwidth.map(|gbps| gbps * 1e9 / bytes as f64);
    let mut j = serde_json::to_value(&r).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let extra = serde_json::json!({
        "model": args.req("--model")?,
        "backend_choice": choice,
        "load_s": load_s,
        "host_heap_peak_bytes": HEAP_PEAK.load(Relaxed),
        "process_peak_rss_bytes": peak_rss(),
        "roofline_tokens_per_s": roofline,
        "fraction_of_roofline": roofline.map(|r| decode_tps / r),
    });
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    if args.flag("--json") {
        println!("{j}");
    } else {
        println!("adapter {} ({}), {}", j["adapter"], j["backend"], j["precision"]);
        println!("load {load_s:.2} s, first token (pipeline compile) {first_token_s:.2} s");
        println!("prefill {n_prompt} tokens: {:.2} tokens/s", j["prefill_tokens_per_s"].as_f64().unwrap_or(0.0));
        println!(
            "decode {n_gen} tokens: {decode_tps:.2} tokens/s, {:.1} MB weights read per token ({:.2} GB/s), {} dispatches per token",
            bytes as f64 / 1e6,
            bytes as f64 * decode_tps / 1e9,
            model.dispatches_per_token()
        );
        if let Some(r) = roofline {
            println!("bandwidth roofline {r:.1} tokens/s: decode at {:.1}% of it", 100.0 * decode_tps / r);
        }
        println!(
            "GPU memory {:.1} MiB; host: peak Rust heap {:.1} MiB, peak process RSS {:.1} MiB",
            mib(r.gpu_memory_bytes),
            mib(HEAP_PEAK.load(Relaxed) as u64),
            mib(peak_rss().unwrap_or(0))
        );
    }
    Ok(())
}

fn cmd_quantize(args: &Args) -> Result<()> {
    let ftype: llama_webgpu::quantize::FileType = args.req("--type")?.parse()?;
    let [input, output] = args.pos.as_slice() else {
        return Err(Error::InvalidArgument("quantize needs IN.gguf OUT.gguf".into()));
    };
    let (src, file) = open(input)?;
    let out = args.output(output)?;
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

fn cmd_synth(args: &Args) -> Result<()> {
    let shape: llama_webgpu::synth::SynthShape = args.req("--shape")?.parse()?;
    let ftype = args.get("--type").unwrap_or("q4_k_m");
    let seed = args.num("--seed")?.unwrap_or(0);
    let extra = match args.get("--tokenizer") {
        Some(t) => {
            let bytes = read_input("--tokenizer", t)?;
            llama_webgpu::synth::tokenizer_metadata(&bytes, llama_webgpu::synth::dims(&shape).n_vocab)?
        }
        None => vec![],
    };
    let mut last = 0u64;
    args.output(args.req("--out")?)?.write(|w| {
        llama_webgpu::synth::synth_with_metadata(&shape, ftype, seed, extra, w, |done, total| {
            if done >= last + (1 << 30) || done == total {
                last = done;
                eprintln!("synth: {:.2} / {:.2} GB", done as f64 / 1e9, total as f64 / 1e9);
            }
        })
        .map(|_| ())
    })
}

fn main() {
    let result = Args::parse().and_then(|args| {
        if args.flag("--help") {
            println!("{USAGE}");
            return Ok(());
        }
        if !args.pos.is_empty() && args.cmd != "quantize" {
            return Err(Error::InvalidArgument(format!("unexpected argument {}", echo(&args.pos[0]))));
        }
        match args.cmd.as_str() {
            "logits" => cmd_logits(&args),
            "generate" => cmd_generate(&args),
            "tokenize" => cmd_tokenize(&args),
            "info" => cmd_info(&args),
            "bench" => cmd_bench(&args),
            "quantize" => cmd_quantize(&args),
            "synth" => cmd_synth(&args),

            "" | "help" | "--help" => {
                println!("{USAGE}");
                Ok(())
            }
            other => Err(Error::InvalidArgument(format!("unknown command {}\n{USAGE}", echo(other)))),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
