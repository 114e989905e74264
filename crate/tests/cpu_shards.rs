//! The CPU backend's row shards (the browser's threads, `cpu::shards`) through an in-process
//! link: logits bit-identical to one thread for 2 and 3 parts (prefill in chunks and token by
//! token), weights split rather than copied, and a failing shard a typed error that sticks.

use llama_webgpu::cpu::shards::{part, Link, Shard, Split, EVEN, JOB_ATTN, JOB_EMBED};
use llama_webgpu::cpu::{CpuDot, CpuModel, CpuOptions};
use llama_webgpu::gguf::{FileSource, GgmlType, GgufFile};
use llama_webgpu::graph::Logits;
use llama_webgpu::{Error, Result};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"));
    dir.join(format!("tiny-{name}.gguf"))
}

/// Shards in this thread: `start` runs them, `finish` hands their rows over (or fails, from
/// the `fail_at`-th job on).
struct LocalLink {
    parts: usize,
    /// Part 0's weight in the split.
    lead: u32,
    shards: RefCell<Vec<Shard>>,
    max_out: Cell<usize>,
    out: RefCell<Vec<f32>>,
    jobs: Cell<usize>,
    fail_at: Option<usize>,
    /// Bytes each shard was sent, and in how many pieces.
    sent: RefCell<Vec<usize>>,
    pieces: Cell<usize>,
    /// Embedding lookups the shards answered.
    embeds: Cell<usize>,
    /// Attention jobs (by KV heads) the shards answered.
    attentions: Cell<usize>,
}

impl LocalLink {
    fn new(parts: usize, fail_at: Option<usize>) -> Rc<LocalLink> {
        LocalLink::with_lead(parts, EVEN, fail_at)
    }

    fn with_lead(parts: usize, lead: u32, fail_at: Option<usize>) -> Rc<LocalLink> {
        Rc::new(LocalLink {
            parts,
            lead,
            shards: RefCell::new((1..parts).map(|p| Shard::with_lead(p, parts, lead).unwrap()).collect()),
            max_out: Cell::new(0),
            out: RefCell::new(Vec::new()),
            jobs: Cell::new(0),
            fail_at,
            sent: RefCell::new(vec![0; parts]),
            pieces: Cell::new(0),
            embeds: Cell::new(0),
            attentions: Cell::new(0),
        })
    }
}

impl Link for LocalLink {
    fn parts(&self) -> usize {
        self.parts
    }
    fn lead(&self) -> u32 {
        self.lead
    }
    fn load(&self, p: usize, id: u32, ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<()> {
        self.sent.borrow_mut()[p] += bytes.len();
        self.pieces.set(self.pieces.get() + 1);
        self.shards.borrow_mut()[p - 1].add(id, ty.id(), rows, cols, bytes)
    }
    fn ready(&self, _max_in: usize, max_out: usize) -> Result<()> {
        self.max_out.set(max_out);
        Ok(())
    }
    fn start(&self, job: &[u32], x: &[f32]) -> Result<()> {
        if job.first().is_some_and(|n| n & JOB_EMBED != 0) {
            self.embeds.set(self.embeds.get() + 1);
        }
        if job.first().is_some_and(|n| n & JOB_ATTN != 0) {
            self.attentions.set(self.attentions.get() + 1);
        }
        let mut all = Vec::new();
        for s in self.shards.borrow().iter() {
            let o = s.run(job, x)?;
            assert!(o.len() <= self.max_out.get(), "a shard's output exceeds the exchange buffer");
            all.extend(o);
        }
        *self.out.borrow_mut() = all;
        Ok(())
    }
    fn finish(&self, out: &mut [f32]) -> Result<()> {
        self.jobs.set(self.jobs.get() + 1);
        if self.fail_at.is_some_and(|k| self.jobs.get() >= k) {
            return Err(Error::Worker("shard 1: deliberate test failure".into()));
        }
        let o = self.out.take();
        assert_eq!(o.len(), out.len(), "shard rows returned");
        out.copy_from_slice(&o);
        Ok(())
    }
}

fn load(name: &str, link: Option<Rc<LocalLink>>) -> CpuModel {
    load_dot(name, link, None)
}

fn load_dot(name: &str, link: Option<Rc<LocalLink>>, dot: Option<CpuDot>) -> CpuModel {
    let src = FileSource::open(fixture(name)).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let link = link.map(|l| l as Rc<dyn Link>);
    // pieces of ~5 kB: a tensor reaches the shards in several, some straddling two parts
    let opts = CpuOptions {
        context: Some(64),
        prefill_chunk: 10,
        threads: 1,
        link,
        dot,
        chunk_bytes: 5000,
        ..Default::default()
    };
    CpuModel::load_blocking(&src, &file, &opts, |_| {}).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn tokens() -> Vec<u32> {
    let tiny: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("f32").with_file_name("tiny.json")).unwrap()).unwrap();
    tiny["tokens"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn sharded_logits_are_bit_identical_to_one_thread() {
    let toks = tokens();
    // q4_1: tied embeddings (the output layer is token_embd's rows); the others an output.weight
    // both dot paths: the shards are told which one the job takes
    for (name, dot) in [
        ("q4_1", CpuDot::Exact),
        ("q8_0", CpuDot::Exact),
        ("q4_k_m", CpuDot::Exact),
        ("f16", CpuDot::Exact),
        ("q4_1", CpuDot::Int8),
        ("q4_k_m", CpuDot::Int8),
    ] {
        let dot = Some(dot);
        let mut one = load_dot(name, None, dot);
        let want_all = one.forward(&toks, 0, Logits::All).unwrap();
        let mut want_seq = Vec::new();
        for (i, &t) in toks.iter().enumerate() {
            want_seq.extend(one.forward(&[t], i, Logits::Last).unwrap());
        }
        // even splits, and part 0 weighted less (the engine's other work) or more; the tiny
        // model's 2 KV heads go 1 and 1 over 2 parts, none, 1 and 1 over 3 (the engine
        // attends with none), 1, 1 and none at lead 1300, and none and 2 at lead 300
        for (parts, lead) in [(2, EVEN), (3, EVEN), (2, 700), (3, 1300), (2, 300)] {
            let link = LocalLink::with_lead(parts, lead, None);
            let mut m = load_dot(name, Some(link.clone()), dot);
            assert_eq!(m.threads(), parts);
            assert!(m.chunk < toks.len(), "prefill must span several chunks");
            let all = m.forward(&toks, 0, Logits::All).unwrap();
            assert!(
                bits(&all) == bits(&want_all),
                "{name}, {parts} parts, lead {lead}: prefill logits differ from one thread"
            );
            let mut seq = Vec::new();
            for (i, &t) in toks.iter().enumerate() {
                seq.extend(m.forward(&[t], i, Logits::Last).unwrap());
            }
            assert!(
                bits(&seq) == bits(&want_seq),
                "{name}, {parts} parts, lead {lead}: decode logits differ from one thread"
            );
            assert!(link.jobs.get() > 0, "the shards took part");
            assert!(link.embeds.get() > 0, "{name}, {parts} parts: the shards looked up embedding rows");
            // every layer of every pass attends in the shards too (prefill in chunks, then
            // token by token)
            let passes = toks.len().div_ceil(m.chunk) + toks.len();
            assert_eq!(link.attentions.get(), passes * m.cfg.n_layer, "{name}, {parts} parts: attention jobs");
            let kv: Vec<usize> = link.shards.borrow().iter().map(|s| s.kv_bytes()).collect();
            let heads: Vec<usize> = (1..parts).map(|p| Split { parts, lead }.heads(m.cfg.n_head_kv, p).len()).collect();
            for (k, h) in kv.iter().zip(&heads) {
                assert_eq!(*k > 0, *h > 0, "{name}, {parts} parts, lead {lead}: shard KV {kv:?} for heads {heads:?}");
            }
            assert!(link.pieces.get() > 2 * (parts - 1) * m.cfg.n_layer * 7, "weights went in pieces");
        }
    }
}

#[test]
fn shards_hold_their_rows_and_the_engine_the_rest() {
    // q8_0 has its own output.weight, q4_1 ties it to token_embd: both are split like the rest
    for name in ["q8_0", "q4_1"] {
        let src = FileSource::open(fixture(name)).unwrap();
        let file = GgufFile::read(&src).unwrap();
        let one = load(name, None);
        for (parts, lead) in [(2, EVEN), (3, EVEN), (2, 600)] {
            let split = Split { parts, lead };
            let link = LocalLink::with_lead(parts, lead, None);
            let m = load(name, Some(link.clone()));
            // every matrix's rows go to exactly one place: instance p gets part p of each, bytes for bytes
            let share = |p: usize| -> u64 {
                file.tensors
                    .iter()
                    .filter(|t| t.dims.len() == 2)
                    .map(|t| {
                        let rows = t.rows() as usize;
                        t.n_bytes / rows as u64 * split.part(rows, p).len() as u64
                    })
                    .sum()
            };
            let sent = link.sent.borrow().clone();
            for (p, &got) in sent.iter().enumerate().skip(1) {
                assert_eq!(got as u64, share(p), "{name}: bytes sent to shard {p} of {parts}");
                assert_eq!(link.shards.borrow()[p - 1].held_bytes(), got, "{name}: shard {p} holds what it was sent");
            }
            // the engine holds part 0 of every matrix, token_embd and the output layer included
            assert_eq!(m.held_weight_bytes(), share(0), "{name}, {parts} parts: the engine's rows");
            assert!(m.held_weight_bytes() < one.held_weight_bytes() / (parts as u64 - 1));
            assert_eq!(split.part(64, 0), if lead == EVEN { part(64, parts, 0) } else { 0..24 }, "{split:?}");
            assert_eq!(one.held_weight_bytes(), (0..parts).map(share).sum::<u64>());
            let embd = file.tensor("token_embd.weight").unwrap();
            assert!(sent[1] as u64 >= embd.n_bytes / parts as u64 / 2, "{name}: token_embd reached the shards");
        }
    }
}

#[test]
fn a_token_outside_the_vocabulary_is_a_typed_error_with_shards() {
    let link = LocalLink::new(3, None);
    let mut m = load("q4_1", Some(link.clone()));
    let vocab = m.cfg.n_vocab as u32;
    let e = m.forward(&[1, vocab], 0, Logits::Last).unwrap_err();
    assert!(matches!(e, Error::TokenOutOfVocab { id, .. } if id == vocab), "{e}");
    // the engine checks before asking: the shards saw no lookup, and still answer
    assert_eq!(link.embeds.get(), 0);
    assert!(m.forward(&[vocab - 1], 0, Logits::Last).is_ok());
    assert_eq!(link.embeds.get(), 1);
}

#[test]
fn a_failing_shard_is_a_worker_error_and_stays_one() {
    let toks = tokens();
    let link = LocalLink::new(2, Some(3));
    let mut m = load("q4_1", Some(link));
    let e = m.forward(&toks[..1], 0, Logits::Last).unwrap_err();
    assert!(matches!(e, Error::Worker(_)), "{e}");
    assert!(e.to_string().contains("deliberate test failure"), "{e}");
    let again = m.forward(&toks[..1], 0, Logits::Last).unwrap_err();
    assert!(matches!(again, Error::Worker(_)), "{again}");
}

/// The header of the 8B-shaped Q4_K_M `synth` writes (4.9 GB), its tensor data read as zeros:
/// what the planner sees before any weight is fetched.
fn llama3_8b_q4_k_m_header() -> GgufFile {
    use llama_webgpu::synth::{self, SynthShape};
    /// Keeps the first `cap` bytes written, then stops the writer.
    struct Head(Vec<u8>, usize);
    impl std::io::Write for Head {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0.len() >= self.1 {
                return Err(std::io::Error::other("enough"));
            }
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    struct Zeros(Vec<u8>, u64);
    impl llama_webgpu::gguf::ByteSource for Zeros {
        fn len(&self) -> u64 {
            self.1
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            buf.fill(0);
            let h = self.0.len() as u64;
            if offset < h {
                let k = (h - offset).min(buf.len() as u64) as usize;
                buf[..k].copy_from_slice(&self.0[offset as usize..offset as usize + k]);
            }
            Ok(())
        }
    }
    let shape = SynthShape::Llama3_8B;
    let len = synth::file_len(&shape, "q4_k_m").unwrap();
    let mut head = Head(Vec::new(), 1 << 20);
    assert!(synth::synth(&shape, "q4_k_m", 1, &mut head, |_, _| {}).is_err(), "stopped after the header");
    GgufFile::read(&Zeros(head.0, len)).unwrap()
}

#[test]
fn the_planner_splits_the_8b_over_wasm_instances_and_names_the_threads_that_fit() {
    use llama_webgpu::cpu::{check_fits_parts, instance_bytes, WASM32_MEMORY};
    let file = llama3_8b_q4_k_m_header();
    let opts = CpuOptions::default();
    let matrices: u64 = file.tensors.iter().filter(|t| t.dims.len() == 2).map(|t| t.n_bytes).sum();
    assert!(matrices > WASM32_MEMORY, "the 8B's matrices alone exceed one wasm memory: {matrices}");
    // one instance: refused before any download, naming 2 threads
    let one = instance_bytes(&file, &opts, 1).unwrap();
    assert!(one[0].total > WASM32_MEMORY);
    match check_fits_parts(&file, &opts, 1, WASM32_MEMORY) {
        Err(Error::OutOfMemory(m)) => {
            assert!(m.contains("the engine's instance at 1 thread(s)") && m.contains("threads: 2 would fit"), "{m}")
        }
        r => panic!("expected OutOfMemory, got {r:?}"),
    }
    // two: every instance under 4 GiB, the matrices split between them (no full copy anywhere)
    let two = instance_bytes(&file, &opts, 2).unwrap();
    check_fits_parts(&file, &opts, 2, WASM32_MEMORY).unwrap();
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|b| b.total < WASM32_MEMORY), "{two:?}");
    let norms: u64 = file.tensors.iter().filter(|t| t.dims.len() == 1).map(|t| t.n_elements() * 4).sum();
    assert_eq!(two[0].weights + two[1].weights, matrices + norms);
    let embd = file.tensor("token_embd.weight").unwrap().n_bytes;
    assert!(two[1].weights > matrices / 2 - embd / 100, "the shard holds half of every matrix: {two:?}");
    // the KV cache is split by heads (the 8B's 8 KV heads, 4 each): the shard holds half
    let cfg = llama_webgpu::gguf::LlamaConfig::from_gguf(&file).unwrap();
    let context = llama_webgpu::plan::wanted_context(&cfg, opts.context).unwrap();
    let kv = llama_webgpu::kv::kv_bytes(&cfg, context, llama_webgpu::cpu::DEFAULT_KV_TYPE).unwrap();
    assert!(two[1].total > two[1].weights + kv / 2, "the shard plans its KV heads: {two:?}");
    // the engine: one thread's less the shard's rows and KV heads, plus the exchange with it
    // (tens of MB)
    let extra = (two[0].total + two[1].weights + kv / 2).checked_sub(one[0].total);
    assert!(extra.is_some_and(|e| e < 64 << 20), "{one:?} {two:?}");
    eprintln!("8B q4_k_m planned: 1 thread {one:?}; 2 threads {two:?}");
    // a smaller memory: the hint is the smallest count whose every instance fits
    let limit = 2u64 << 30;
    let e = check_fits_parts(&file, &opts, 2, limit).unwrap_err().to_string();
    let n: usize = e.split("threads: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
    let most = |n: usize| instance_bytes(&file, &opts, n).unwrap().iter().map(|b| b.total).max().unwrap();
    assert!(n > 2 && most(n) <= limit && most(n - 1) > limit, "{e}");
    check_fits_parts(&file, &opts, n, limit).unwrap();
    // the engine holds the most (part 0 is the largest, and the KV cache), so it is the one named
    assert!(e.contains("the engine's instance at 2 thread(s)"), "{e}");
    // and nothing fits a memory below the engine's room
    let e = check_fits_parts(&file, &opts, 2, 200 << 20).unwrap_err().to_string();
    assert!(e.contains("no thread count up to 32 fits"), "{e}");
}
