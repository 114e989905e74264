//! In-project fuzzing on stable Rust: structure-aware mutants of the committed fixtures (and
//! the crafted shapes a fuzzing campaign found) go through everything a load does before it
//! touches the GPU — header parsing, `LlamaConfig`, load planning, tokenizer construction
//! ([`plan::dry_load`]) — under a counting allocator. Each mutant must give a typed error or
//! succeed, without a panic, within a time bound, allocating at most 64 MiB plus its size.
//!
//! `cargo test --test fuzz` runs a fixed-seed campaign of 20,000 mutants;
//! `FUZZ_ITERS=N FUZZ_SEED=S cargo test --release --test fuzz -- --nocapture` runs longer
//! ones. A failing mutant is written to `target/fuzz-failures/` (its header; the rest of the
//! file reads as zeros) and named in the panic message.

use llama_webgpu::gguf::{Array, ByteSource, GgmlType, GgufFile, GgufWriter, LlamaConfig, Value};
use llama_webgpu::kv::KvType;
use llama_webgpu::plan::{dry_load, plan};
use llama_webgpu::tokenizer::{GgufTokenizerSpec, Tokenizer};
use llama_webgpu::{Error, Result};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---- counting allocator (per thread, so parallel tests do not disturb each other) ---------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + n as isize;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}
fn shrank(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - n as isize));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        shrank(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            shrank(l.size());
            grew(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it had allocated at once.
fn measured<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, (PEAK.with(Cell::get) - base).max(0) as u64)
}

// ---- mutants ------------------------------------------------------------------------------

/// A file whose first bytes are `head` and whose remaining bytes (up to `len`) read as zeros:
/// tensor data, or the body of a huge crafted array, without holding it in memory.
struct Mutant {
    head: Vec<u8>,
    len: u64,
}

impl ByteSource for Mutant {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(Error::Truncated { offset, needed: buf.len() as u64, len: self.len });
        }
        buf.fill(0);
        let h = self.head.len() as u64;
        if offset < h {
            let n = (h - offset).min(buf.len() as u64) as usize;
            buf[..n].copy_from_slice(&self.head[offset as usize..offset as usize + n]);
        }
        Ok(())
    }
}

/// splitmix64: small, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    /// Values at the edges that break arithmetic: 0, 1, powers of two ±1, the type limits.
    fn interesting(&mut self) -> u64 {
        const V: [u64; 20] = [
            0,
            1,
            2,
            3,
            31,
            32,
            33,
            64,
            255,
            256,
            4096,
            8193,
            65535,
            65536,
            1 << 20,
            (1 << 31) - 1,
            1 << 31,
            u32::MAX as u64,
            1 << 40,
            u64::MAX,
        ];
        match self.below(4) {
            0 => self.next(),
            1 => self.next() % 100_000,
            _ => V[self.below(V.len())],
        }
    }
}

/// A fixture as structure: metadata, tensor plan, and its file length.
#[derive(Clone)]
struct Seed {
    name: String,
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType)>,
    alignment: u64,
}

fn fixtures() -> Vec<Seed> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "fixtures missing in {}", dir.display());
    names
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let f = GgufFile::read(&bytes).unwrap();
            dry_load(&bytes, 128 << 20, false).unwrap_or_else(|e| panic!("{}: fixture must load: {e}", p.display()));
            let metadata = f.metadata.into_iter().filter(|(k, _)| k != "general.alignment").collect();
            Seed {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                metadata,
                tensors: f.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.ty)).collect(),
                alignment: f.alignment,
            }
        })
        .collect()
}

/// Header bytes and file length of a seed, or `None` when the writer refuses the plan.
fn serialize(s: &Seed) -> Option<(Vec<u8>, u64)> {
    let mut w = GgufWriter::new(s.metadata.clone(), s.tensors.clone(), s.alignment).ok()?;
    let mut head = Vec::new();
    w.write_header(&mut head).ok()?;
    Some((head, w.file_len()))
}

const KEYS: [&str; 12] = [
    "llama.block_count",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.rope.dimension_count",
    "llama.context_length",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "llama.rope.freq_base",
    "general.alignment",
];

/// One structure-aware change: hyperparameters, value types, arrays, tensor shapes and types.
fn mutate_structure(s: &mut Seed, r: &mut Rng) {
    let m = &mut s.metadata;
    match r.below(14) {
        0 | 1 => {
            // a hyperparameter or token id at an edge value, as one of several integer types
            let key = KEYS[r.below(KEYS.len())];
            let v = r.interesting();
            let value = match r.below(4) {
                0 => Value::U64(v),
                1 => Value::I32(v as i32),
                2 => Value::F32(v as f32),
                _ => Value::U32(v as u32),
            };
            match m.iter_mut().find(|(k, _)| k == key) {
                Some((_, old)) => *old = value,
                None => m.push((key.into(), value)),
            }
        }
        2 if !m.is_empty() => {
            let i = r.below(m.len());
            m.remove(i);
        }
        3 if !m.is_empty() => {
            // a value replaced by one of another type
            let i = r.below(m.len());
            m[i].1 = match r.below(5) {
                0 => Value::String("x".repeat(r.below(100))),
                1 => Value::Bool(r.chance(2)),
                2 => Value::Array(Array::U8(vec![1; r.below(64)])),
                3 => Value::F64(f64::NAN),
                _ => Value::I64(-(r.interesting() as i64).abs()),
            };
        }
        4 => {
            // tokenizer arrays: shortened, lengthened, garbled
            let key = ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"][r.below(3)];
            if let Some((_, Value::Array(a))) = m.iter_mut().find(|(k, _)| k == key) {
                *a = match a.clone() {
                    Array::String(v) => {
                        let mut items: Vec<String> = v.iter().map(String::from).collect();
                        match r.below(4) {
                            0 => items.truncate(r.below(items.len() + 1)),
                            1 => items.extend((0..r.below(5000)).map(|i| format!("t{i}"))),
                            2 => {
                                let n = items.len();
                                for _ in 0..r.below(20) {
                                    items[r.below(n.max(1)).min(n.saturating_sub(1))] =
                                        ["", " ", "a b c", "Ġ", "<|eot_id|>"][r.below(5)].into();
                                }
                            }
                            _ => items.reverse(),
                        }
                        Array::strings(items)
                    }
                    Array::I32(mut v) => {
                        for x in v.iter_mut() {
                            if r.chance(3) {
                                *x = [1, 3, 4, 6, -1, 99][r.below(6)];
                            }
                        }
                        if r.chance(3) {
                            v.truncate(r.below(v.len() + 1));
                        }
                        Array::I32(v)
                    }
                    other => other,
                };
            }
        }
        5 | 6 if !s.tensors.is_empty() => {
            // a dimension at an edge value
            let i = r.below(s.tensors.len());
            let t = &mut s.tensors[i];
            if !t.1.is_empty() {
                let d = r.below(t.1.len());
                t.1[d] = r.interesting() % (1 << 24);
            }
        }
        7 if !s.tensors.is_empty() => {
            let i = r.below(s.tensors.len());
            s.tensors[i].2 = GgmlType::ALL[r.below(GgmlType::ALL.len())];
        }
        8 if !s.tensors.is_empty() => {
            let i = r.below(s.tensors.len());
            s.tensors.remove(i);
        }
        9 if !s.tensors.is_empty() => {
            // a duplicate name, or many extra (unknown) tensors
            let i = r.below(s.tensors.len());
            let t = s.tensors[i].clone();
            if r.chance(2) {
                s.tensors.push(t);
            } else {
                s.tensors.extend((0..r.below(2000)).map(|k| (format!("extra.{k}"), vec![32], GgmlType::F32)));
            }
        }
        10 => {
            // more layers than there are tensors for
            let v = [3u32, 100, 1024, 1025, 8000, u32::MAX][r.below(6)];
            if let Some((_, old)) = m.iter_mut().find(|(k, _)| k == "llama.block_count") {
                *old = Value::U32(v);
            }
        }
        11 => {
            s.alignment = 1 << r.below(13);
        }
        12 => {
            // nested and huge-count arrays
            let a = match r.below(3) {
                0 => Array::Array((0..r.below(50)).map(|_| Array::U16(vec![7; r.below(50)])).collect()),
                1 => Array::U8(vec![0; r.below(1 << 16)]),
                _ => Array::strings((0..r.below(1000)).map(|i| i.to_string())),
            };
            m.push((format!("fuzz.{}", r.below(4)), Value::Array(a)));
        }
        _ => {
            if !m.is_empty() {
                let i = r.below(m.len());
                let dup = m[i].clone();
                m.push(dup);
            }
        }
    }
}

/// One byte-level change to a serialized header: bit flips, edge values over any u32/u64,
/// truncation, insertion and deletion.
fn mutate_bytes(head: &mut Vec<u8>, len: &mut u64, r: &mut Rng) {
    if head.is_empty() {
        return;
    }
    let at = r.below(head.len());
    match r.below(6) {
        0 => head[at] ^= 1 << r.below(8),
        1 => {
            let v = r.interesting().to_le_bytes();
            let n = [4, 8][r.below(2)].min(head.len() - at);
            head[at..at + n].copy_from_slice(&v[..n]);
        }
        2 => {
            // cut the file (header and data) short
            head.truncate(at);
            *len = at as u64 + if r.chance(2) { 0 } else { r.below(1 << 20) as u64 };
        }
        3 => {
            let n = r.below(16);
            let junk: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            head.splice(at..at, junk);
        }
        4 => {
            let n = r.below(16).min(head.len() - at);
            head.drain(at..at + n);
        }
        _ => head[at] = r.next() as u8,
    }
    *len = (*len).max(head.len() as u64);
}

/// What one mutant did, for the campaign's summary.
enum Outcome {
    Loaded,
    Failed(String),
}

/// Tokenizer specs already built (same spec, same outcome): most mutants leave the
/// tokenizer metadata alone, and building one costs ~10 ms.
type Seen = HashMap<u64, std::result::Result<(), String>>;

/// The dry load of one mutant, piece by piece as [`dry_load`] does it, with two device
/// binding limits (1 MiB, as small browsers; 128 MiB, as lavapipe).
fn run_pieces(src: &Mutant, seen: &mut Seen) -> std::result::Result<(), Error> {
    let file = GgufFile::read(src)?;
    let tok = GgufTokenizerSpec::from_gguf(&file).and_then(|spec| {
        let mut h = DefaultHasher::new();
        serde_json::to_vec(&spec).unwrap_or_default().hash(&mut h);
        match seen.get(&h.finish()) {
            Some(Ok(())) => Ok(()),
            Some(Err(m)) => Err(Error::Tokenizer(m.clone())),
            None => {
                let r = Tokenizer::from_spec(spec).map(|_| ());
                seen.insert(h.finish(), r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                r
            }
        }
    });
    let cfg = LlamaConfig::from_gguf(&file);
    let (_, cfg) = (tok?, cfg?);
    for kv in KvType::ALL {
        plan(&cfg, 1 << 20, kv, None, 64)?;
        plan(&cfg, 128 << 20, kv, None, 64)?;
    }
    Ok(())
}

/// Runs one mutant and checks the bounds. `Err` describes a finding.
fn check(
    src: &Mutant,
    what: &str,
    time_limit: Duration,
    seen: &mut Seen,
) -> std::result::Result<(Duration, u64, Outcome), String> {
    let limit = (64 << 20) + src.len;
    let t0 = Instant::now();
    let (outcome, peak) = measured(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_pieces(src, seen))));
    let dt = t0.elapsed();
    let result = outcome.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("{what}: panicked: {}", msg.unwrap_or_default())
    })?;
    let outcome = match result {
        Ok(()) => Outcome::Loaded,
        // an in-memory source cannot fail to read; everything else is a typed error
        Err(e) if matches!(e, Error::Io(_)) || e.to_string().is_empty() => {
            return Err(format!("{what}: untyped error {e:?}"))
        }
        Err(e) => Outcome::Failed(format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or("").to_string()),
    };
    if peak > limit {
        return Err(format!("{what}: allocated {peak} bytes at once, limit {limit}"));
    }
    if dt > time_limit {
        return Err(format!("{what}: took {dt:?}, limit {time_limit:?}"));
    }
    Ok((dt, peak, outcome))
}

fn save_failure(src: &Mutant, tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(format!("{tag}.gguf-head"));
    let _ = std::fs::write(&p, &src.head);
    p
}

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Mutant `i` of a campaign: its own random stream, so threads can share the work and a
/// finding is reproducible from (seed, i) alone.
fn mutant(seeds: &[Seed], bases: &[(Vec<u8>, u64)], seed: u64, i: u64) -> (Mutant, usize) {
    let mut r = Rng(seed ^ i.wrapping_mul(0xA076_1D64_78BD_642F));
    let k = r.below(seeds.len());
    // half structure-aware (1-3 changes, then re-serialized), half byte-level on top
    let (mut head, mut len) = if r.chance(2) {
        let mut s = seeds[k].clone();
        for _ in 0..1 + r.below(3) {
            mutate_structure(&mut s, &mut r);
        }
        serialize(&s).unwrap_or_else(|| bases[k].clone())
    } else {
        bases[k].clone()
    };
    if r.chance(2) {
        for _ in 0..1 + r.below(4) {
            mutate_bytes(&mut head, &mut len, &mut r);
        }
    }
    (Mutant { head, len }, k)
}

#[test]
fn mutants_of_the_fixtures_give_typed_errors_in_bounded_time_and_memory() {
    let iters = env_u64("FUZZ_ITERS", 20_000);
    let seed = env_u64("FUZZ_SEED", 12);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u64;
    let seeds = fixtures();
    let bases: Vec<(Vec<u8>, u64)> = seeds.iter().map(|s| serialize(s).unwrap()).collect();
    let t_all = Instant::now();
    let results: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seeds, bases) = (&seeds, &bases);
                sc.spawn(move || {
                    let mut seen = Seen::new();
                    let (mut ok, mut max_peak, mut max_time) = (0u64, 0u64, Duration::ZERO);
                    let mut kinds = BTreeMap::<String, u64>::new();
                    for i in (t..iters).step_by(threads as usize) {
                        let (src, k) = mutant(seeds, bases, seed, i);
                        let what = format!("mutant {i} (FUZZ_SEED={seed}) of {}", seeds[k].name);
                        match check(&src, &what, Duration::from_secs(5), &mut seen) {
                            Ok((dt, peak, outcome)) => {
                                max_peak = max_peak.max(peak);
                                max_time = max_time.max(dt);
                                match outcome {
                                    Outcome::Loaded => ok += 1,
                                    Outcome::Failed(kind) => *kinds.entry(kind).or_default() += 1,
                                }
                            }
                            Err(finding) => {
                                let p = save_failure(&src, &format!("seed{seed}-mutant{i}"));
                                return Err(format!(
                                    "{finding} (header saved to {}, file length {})",
                                    p.display(),
                                    src.len
                                ));
                            }
                        }
                    }
                    Ok((ok, max_peak, max_time, kinds, seen.len()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = t_all.elapsed();
    let (mut ok, mut max_peak, mut max_time, mut specs) = (0u64, 0u64, Duration::ZERO, 0usize);
    let mut kinds = BTreeMap::<String, u64>::new();
    for r in results {
        let (o, p, t, k, n) = r.unwrap_or_else(|finding| panic!("{finding}"));
        ok += o;
        max_peak = max_peak.max(p);
        max_time = max_time.max(t);
        specs += n;
        for (kind, n) in k {
            *kinds.entry(kind).or_default() += n;
        }
    }
    let errors: u64 = kinds.values().sum();
    eprintln!(
        "fuzz: {iters} mutants (FUZZ_SEED={seed}, {threads} threads) in {:.1} s: {ok} load, {errors} typed errors \
         {kinds:?}; {specs} distinct tokenizers built; max allocation {:.2} MiB, slowest {:.1} ms",
        total.as_secs_f64(),
        max_peak as f64 / 1048576.0,
        max_time.as_secs_f64() * 1e3
    );
    // a campaign where nothing loads, or nothing fails, is not exploring
    assert!(ok > iters / 50 && errors > iters / 4, "{ok} ok, {errors} errors");
}

// ---- crafted shapes from the fuzzing campaign ---------------------------------------------

fn raw_header(n_tensors: u64, kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, ty, payload) in kvs {
        v.extend_from_slice(&(k.len() as u64).to_le_bytes());
        v.extend_from_slice(k.as_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(payload);
    }
    v
}

fn crafted(what: &str, src: Mutant) -> Error {
    if let Err(finding) = check(&src, what, Duration::from_secs(5), &mut Seen::new()) {
        panic!("{finding}");
    }
    match dry_load(&src, 1 << 20, false) {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => e,
    }
}

#[test]
fn crafted_huge_u8_array_is_stored_compactly_and_budgeted() {
    // 2^27 u8 elements: 128 MiB in the file, 128 MiB in memory (was 32x that).
    let mut payload = 0u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&(1u64 << 27).to_le_bytes());
    let head = raw_header(0, &[("big", 9, payload)]);
    let len = head.len() as u64 + (1 << 27) + 64;
    let e = crafted("2^27 u8 array", Mutant { head, len });
    assert!(matches!(&e, Error::MissingKey(k) if k == "tokenizer.ggml.model"), "{e}");
    // 2^28: over the header budget, refused before anything is allocated for it
    let mut payload = 0u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&(1u64 << 28).to_le_bytes());
    let head = raw_header(0, &[("big", 9, payload)]);
    let len = head.len() as u64 + (1 << 28) + 64;
    let (e, peak) = measured(|| GgufFile::read(&Mutant { head, len }).unwrap_err());
    assert!(e.to_string().contains("160 MiB"), "{e}");
    assert!(peak < 1 << 20, "{peak} bytes allocated before the budget check");
}

#[test]
fn crafted_huge_token_list_is_bounded() {
    // 2^20 one-byte tokens: parsed (9 MiB), refused by the tokenizer before it copies them.
    let n = 1u64 << 20;
    let mut payload = 8u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&n.to_le_bytes());
    for i in 0..n {
        payload.extend_from_slice(&1u64.to_le_bytes());
        payload.push(b'a' + (i % 26) as u8);
    }
    let mut model = 8u32.to_le_bytes()[..0].to_vec();
    model.extend_from_slice(&4u64.to_le_bytes());
    model.extend_from_slice(b"gpt2");
    let head = raw_header(0, &[("tokenizer.ggml.model", 8, model), ("tokenizer.ggml.tokens", 9, payload)]);
    let len = head.len() as u64;
    let e = crafted("2^20 tokens", Mutant { head, len });
    assert!(matches!(&e, Error::Tokenizer(m) if m.contains("1048576 entries")), "{e}");
}

// ---- chat templates: the model file's code, run on every chat ------------------------------

/// Fragments spliced into real templates: loops, huge ranges, recursion, output of whole
/// structures, filters on large values. The crafted templates that once pinned a tab are
/// among the seeds (the doubling ones are in `robustness.rs`, where the CLI's heap bound,
/// which this test binary does not install, stops them).
const TEMPLATE_FRAGMENTS: [&str; 12] = [
    "{% for i in range(100000) %}",
    "{% endfor %}",
    "{{ messages }}",
    "{{ messages|tojson }}",
    "{% for m in messages %}{{ m.content * 1000 }}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{{ range(1000000)|list|length }}",
    "{% if messages[0]['role'] == 'system' %}",
    "{% endif %}",
    "{{ raise_exception('no') }}",
    "{% set ns = namespace(n=0) %}{% for i in range(1000000) %}{% set ns.n = ns.n + 1 %}{% endfor %}",
    "{{ (messages|tojson) * 100 }}",
];

#[test]
fn mutants_of_real_chat_templates_render_or_fail_in_bounded_time_and_memory() {
    use llama_webgpu::chat::{ChatOptions, JinjaChat, Message};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/chat_templates");
    let mut seeds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(seeds.len() >= 5, "the real templates are the seeds");
    seeds.push("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}".into());
    seeds.push("{% for i in range(100000) %}{% for j in range(100000) %}{{ messages }}{% endfor %}{% endfor %}".into());
    let messages: Vec<Message> = ["system", "user", "assistant", "user"]
        .iter()
        .map(|r| serde_json::from_value(serde_json::json!({"role": r, "content": format!("a {r} message")})).unwrap())
        .collect();
    let opts = ChatOptions { add_generation_prompt: true, ..Default::default() };
    let iters = env_u64("FUZZ_TEMPLATE_ITERS", 300);
    let mut r = Rng(env_u64("FUZZ_SEED", 12));
    let (mut ok, mut bounded, mut other, mut slowest, mut max_peak) = (0, 0, 0, Duration::ZERO, 0u64);
    for i in 0..iters {
        let mut t = seeds[r.below(seeds.len())].clone().into_bytes();
        for _ in 0..1 + r.below(4) {
            let at = r.below(t.len() + 1);
            match r.below(3) {
                0 => {
                    let f = TEMPLATE_FRAGMENTS[r.below(TEMPLATE_FRAGMENTS.len())];
                    t.splice(at..at, f.bytes());
                }
                1 => {
                    let end = (at + r.below(200)).min(t.len());
                    let piece = t[at..end].to_vec();
                    t.splice(at..at, piece);
                }
                _ => {
                    let end = (at + r.below(20)).min(t.len());
                    t.drain(at..end);
                }
            }
        }
        let source = String::from_utf8_lossy(&t).into_owned();
        let t0 = Instant::now();
        let (res, peak) = measured(|| JinjaChat::new(&source, "<s>", "</s>").and_then(|c| c.render(&messages, &opts)));
        let dt = t0.elapsed();
        let what = format!("template mutant {i}: {}", &source[..source.len().min(300)]);
        assert!(dt < Duration::from_secs(5), "{what}: {dt:?}");
        assert!(peak < 256 << 20, "{what}: {} MiB", peak >> 20);
        match res {
            Ok(_) => ok += 1,
            Err(Error::Template { .. }) => bounded += 1,
            Err(Error::InvalidArgument(_)) => other += 1,
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
        slowest = slowest.max(dt);
        max_peak = max_peak.max(peak);
    }
    eprintln!(
        "template fuzz: {iters} mutants: {ok} render, {bounded} stopped by a bound, {other} other errors; \
         slowest {:.0} ms, max allocation {:.1} MiB",
        slowest.as_secs_f64() * 1e3,
        max_peak as f64 / 1048576.0
    );
    assert!(ok > 0 && bounded > 0 && other > 0, "the campaign explores all three outcomes");
}
