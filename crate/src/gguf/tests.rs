use super::*;

type Kv = Vec<(String, Value)>;
type Tensors = Vec<(String, Vec<u64>, GgmlType)>;

/// A complete GGUF file from the writer, tensor data filled with a per-tensor byte.
fn build(metadata: Kv, tensors: Tensors, alignment: u64) -> Vec<u8> {
    let sizes: Vec<u64> = tensors.iter().map(|(_, d, t)| t.bytes_for(d.iter().product()).unwrap()).collect();
    let mut w = GgufWriter::new(metadata, tensors, alignment).unwrap();
    let mut out = Vec::new();
    w.write_header(&mut out).unwrap();
    assert_eq!(out.len() as u64, w.data_offset());
    for (i, n) in sizes.iter().enumerate() {
        w.write_tensor_data(&mut out, &vec![i as u8 + 1; *n as usize]).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(out.len() as u64, w.file_len());
    out
}

fn kv(k: &str, v: Value) -> (String, Value) {
    (k.to_owned(), v)
}

fn s(x: &str) -> Value {
    Value::String(x.to_owned())
}

fn all_types_metadata() -> Kv {
    vec![
        kv("u8", Value::U8(200)),
        kv("i8", Value::I8(-100)),
        kv("u16", Value::U16(60000)),
        kv("i16", Value::I16(-30000)),
        kv("u32", Value::U32(4_000_000_000)),
        kv("i32", Value::I32(-2_000_000_000)),
        kv("f32", Value::F32(1.5e-5)),
        kv("bool_t", Value::Bool(true)),
        kv("bool_f", Value::Bool(false)),
        kv("string", s("héllo ✓")),
        kv("empty_string", s("")),
        kv("u64", Value::U64(u64::MAX)),
        kv("i64", Value::I64(i64::MIN)),
        kv("f64", Value::F64(-2.25)),
        kv("array_i32", Value::Array(Array::I32(vec![1, -2, 3]))),
        kv("array_str", Value::Array(Array::strings(["a", "", "Ġthe"]))),
        kv("array_empty", Value::Array(Array::U8(vec![]))),
        kv("array_bool", Value::Array(Array::Bool(vec![true, false]))),
        kv("array_f32", Value::Array(Array::F32(vec![0.5, -1.0]))),
        kv("array_u64", Value::Array(Array::U64(vec![u64::MAX]))),
        kv(
            "array_nested",
            Value::Array(Array::Array(vec![Array::strings(["x", "yz"]), Array::U8(vec![]), Array::strings(["w"])])),
        ),
        kv("array_nested_mixed_inner", Value::Array(Array::Array(vec![Array::U8(vec![1]), Array::F64(vec![2.0])]))),
    ]
}

fn some_tensors() -> Tensors {
    vec![
        ("a".into(), vec![3], GgmlType::F32),
        ("b".into(), vec![64, 2], GgmlType::Q4_0),
        ("c".into(), vec![256, 1, 1, 2], GgmlType::Q6K),
        ("d".into(), vec![5], GgmlType::BF16),
    ]
}

#[test]
fn roundtrip_all_value_types_v2_and_v3() {
    let meta = all_types_metadata();
    let mut file = build(meta.clone(), some_tensors(), 32);
    for version in [3u32, 2] {
        file[4..8].copy_from_slice(&version.to_le_bytes()); // v2 and v3 share the layout
        let f = GgufFile::read(&file).unwrap();
        assert_eq!(f.version, version);
        assert_eq!(f.metadata, meta);
        assert_eq!(f.alignment, 32);
        assert_eq!(f.file_len, file.len() as u64);
        assert_eq!(f.tensors.len(), 4);
    }
}

#[test]
fn roundtrip_tensor_layout_and_data() {
    for alignment in [32u64, 1, 64, 4096] {
        let file = build(vec![kv("general.name", s("t"))], some_tensors(), alignment);
        let f = GgufFile::read(&file).unwrap();
        assert_eq!(f.alignment, alignment);
        assert_eq!(f.data_offset % alignment, 0);
        // The writer adds general.alignment only when it is not the default.
        assert_eq!(f.get("general.alignment").is_some(), alignment != 32);
        let expect = [
            (vec![3], 12u64, GgmlType::F32),
            (vec![64, 2], 72, GgmlType::Q4_0),
            (vec![256, 1, 1, 2], 420, GgmlType::Q6K),
            (vec![5], 10, GgmlType::BF16),
        ];
        for (i, (t, (dims, n, ty))) in f.tensors.iter().zip(expect).enumerate() {
            assert_eq!((&t.dims, t.n_bytes, t.ty), (&dims, n, ty), "tensor {}", t.name);
            assert_eq!(t.offset % alignment, 0);
            let data = &file[t.offset as usize..(t.offset + t.n_bytes) as usize];
            assert!(data.iter().all(|&b| b == i as u8 + 1), "tensor {} data", t.name);
        }
        let b = f.tensor("b").unwrap();
        assert_eq!((b.cols(), b.rows(), b.row_bytes(), b.n_elements()), (64, 2, 36, 128));
        assert!(f.tensor("nope").is_none());
    }
}

#[test]
fn ggml_type_table() {
    for t in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(t.id(), "x").unwrap(), t);
    }
    assert_eq!(GgmlType::Q4K.name(), "Q4_K");
    assert_eq!(GgmlType::Q4_0.name(), "Q4_0");
    assert_eq!((GgmlType::Q8_0.id(), GgmlType::Q8_0.block_size(), GgmlType::Q8_0.type_size()), (8, 32, 34));
    assert_eq!((GgmlType::BF16.id(), GgmlType::Q8K.type_size()), (30, 292));
    assert!(GgmlType::from_id(4, "x").is_err());
}

#[test]
fn file_source_reads_header() {
    let file = build(all_types_metadata(), some_tensors(), 32);
    let path = std::env::temp_dir().join(format!("llama-webgpu-gguf-test-{}.gguf", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let src = FileSource::open(&path).unwrap();
    let f = GgufFile::read(&src);
    let mut buf = [0u8; 4];
    let past_end = src.read_at(file.len() as u64 - 2, &mut buf);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(f.unwrap().metadata, all_types_metadata());
    assert!(matches!(past_end, Err(Error::Truncated { .. })));
    assert!(matches!(FileSource::open("/nonexistent/x.gguf"), Err(Error::Io(m)) if m.contains("/nonexistent/x.gguf")));
}

#[test]
fn big_header_is_parsed_with_few_reads() {
    use std::cell::Cell;
    struct Counting(Vec<u8>, Cell<usize>);
    impl ByteSource for Counting {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.1.set(self.1.get() + 1);
            self.0.read_at(offset, buf)
        }
    }
    let tokens = Array::strings((0..50_000).map(|i| format!("tok{i}")));
    let file = build(vec![kv("tokenizer.ggml.tokens", Value::Array(tokens))], vec![], 32);
    let src = Counting(file, Cell::new(0));
    let f = GgufFile::read(&src).unwrap();
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().get(49_999), Some("tok49999"));
    assert!(src.1.get() <= src.0.len() / 60_000 + 2, "{} reads", src.1.get());
}

// ---- bad input --------------------------------------------------------------------------

/// Raw header start: magic, version, counts.
fn raw(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v
}

fn raw_str(v: &mut Vec<u8>, x: &str) {
    v.extend_from_slice(&(x.len() as u64).to_le_bytes());
    v.extend_from_slice(x.as_bytes());
}

fn raw_tensor(v: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, rel: u64) {
    raw_str(v, name);
    v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&rel.to_le_bytes());
}

/// Pads to the 32-byte data start and appends `n` data bytes.
fn with_data(mut v: Vec<u8>, n: usize) -> Vec<u8> {
    v.resize(v.len().next_multiple_of(32) + n, 0);
    v
}

fn err(bytes: &[u8]) -> Error {
    match GgufFile::read(&bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn corrupt_msg(bytes: &[u8]) -> String {
    match err(bytes) {
        Error::Corrupt(m) => m,
        e => panic!("expected Corrupt, got {e:?}"),
    }
}

#[test]
fn bad_magic() {
    let mut f = build(vec![], vec![], 32);
    f[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&f), Error::BadMagic(m) if &m == b"GGML"));
    assert!(err(&f).to_string().contains("bad magic"));
}

#[test]
fn unsupported_version() {
    for v in [1u32, 4, 0x0300_0000] {
        let f = with_data(raw(v, 0, 0), 0);
        assert!(matches!(err(&f), Error::UnsupportedVersion(x) if x == v));
    }
}

#[test]
fn truncated_everywhere_without_panic() {
    let file = build(all_types_metadata(), some_tensors(), 32);
    let f = GgufFile::read(&file).unwrap();
    let last = f.tensors.last().unwrap();
    // Every proper prefix that cuts into the header or into any tensor's data must fail.
    for cut in 0..file.len() {
        let r = GgufFile::read(&&file[..cut]);
        if (cut as u64) < last.offset + last.n_bytes {
            assert!(matches!(r, Err(Error::Truncated { .. } | Error::Corrupt(_))), "cut at {cut}: {r:?}");
        }
    }
    // Specific cut points, with the variant each one must give.
    let t = |cut: usize| err(&file[..cut]);
    // In the fixed header: reading n_kv needs 8 bytes at offset 16.
    assert!(matches!(t(20), Error::Truncated { offset: 16, needed: 8, len: 20 }));
    // Just after the fixed header: 4 tensor infos cannot fit in the 2 bytes left.
    assert!(matches!(t(26), Error::Corrupt(m) if m.contains("tensor count 4 exceeds")));
    // In the data of the first and last tensor: Truncated at that tensor's offset.
    for ti in [&f.tensors[0], last] {
        let cut = (ti.offset + ti.n_bytes - 1) as usize;
        match t(cut) {
            Error::Truncated { offset, needed, len } => {
                assert_eq!((offset, needed, len), (ti.offset, ti.n_bytes, cut as u64))
            }
            e => panic!("cut in data of {}: {e:?}", ti.name),
        }
    }
    // In the tensor infos. With alignment 1 the infos end exactly at the data start; the
    // last field is the last tensor's 8-byte offset, and the infos of some_tensors() take
    // 164 bytes, the first field being the first name's 8-byte length.
    // (Long metadata first, so the up-front tensor-count check still passes.)
    let file = build(vec![kv("pad", s(&"x".repeat(200)))], some_tensors(), 1);
    let h = GgufFile::read(&file).unwrap().data_offset as usize;
    let t = |cut: usize| err(&file[..cut]);
    assert!(matches!(t(h - 4), Error::Truncated { offset, needed: 8, .. } if offset as usize == h - 8));
    assert!(matches!(t(h - 164 + 3), Error::Truncated { offset, needed: 8, .. } if offset as usize == h - 164));
}

#[test]
fn truncated_in_metadata_string_names_key() {
    let file = build(vec![kv("general.name", s("a fairly long model name"))], vec![], 32);
    let cut = 24 + 8 + "general.name".len() + 4 + 8 + 5;
    let m = corrupt_msg(&file[..cut]);
    assert!(m.contains("general.name") && m.contains("string length 24"), "{m}");
}

#[test]
fn huge_tensor_count() {
    let m = corrupt_msg(&with_data(raw(3, 1 << 60, 0), 64));
    assert!(m.contains("tensor count 1152921504606846976"), "{m}");
}

#[test]
fn huge_kv_count() {
    let m = corrupt_msg(&with_data(raw(3, 0, u64::MAX), 64));
    assert!(m.contains("metadata count"), "{m}");
}

#[test]
fn huge_string_length() {
    let mut v = raw(3, 0, 1);
    v.extend_from_slice(&(1u64 << 40).to_le_bytes());
    v.extend_from_slice(b"abc");
    let m = corrupt_msg(&with_data(v, 64));
    assert!(m.contains("key of metadata entry 0: string length 1099511627776"), "{m}");
}

#[test]
fn huge_array_count() {
    let mut v = raw(3, 0, 1);
    raw_str(&mut v, "tokenizer.ggml.tokens");
    v.extend_from_slice(&9u32.to_le_bytes()); // array
    v.extend_from_slice(&8u32.to_le_bytes()); // of strings
    v.extend_from_slice(&(1u64 << 50).to_le_bytes());
    let m = corrupt_msg(&with_data(v, 64));
    assert!(m.contains("'tokenizer.ggml.tokens': array count 1125899906842624"), "{m}");
}

#[test]
fn deep_array_nesting() {
    let mut v = raw(3, 0, 1);
    raw_str(&mut v, "deep");
    v.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10_000 {
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
    }
    let m = corrupt_msg(&v);
    assert!(m.contains("'deep': arrays nested deeper"), "{m}");
}

#[test]
fn bad_metadata_values() {
    let one = |ty: u32, payload: &[u8]| {
        let mut v = raw(3, 0, 1);
        raw_str(&mut v, "k");
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(payload);
        corrupt_msg(&with_data(v, 32))
    };
    assert!(one(13, &[0; 8]).contains("'k': unknown value type 13"));
    assert!(one(7, &[2]).contains("'k': invalid bool byte 2"));
    assert!(one(8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]).contains("'k': string at offset 45 is not valid UTF-8"));
    assert!(one(9, &[77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).contains("unknown array element type 77"));
}

#[test]
fn duplicate_key_and_tensor() {
    let mut v = raw(3, 0, 2);
    for _ in 0..2 {
        raw_str(&mut v, "k");
        v.extend_from_slice(&0u32.to_le_bytes());
        v.push(1);
    }
    assert!(corrupt_msg(&with_data(v, 0)).contains("duplicate metadata key 'k'"));

    let mut v = raw(3, 2, 0);
    raw_tensor(&mut v, "t", &[8], 0, 0);
    raw_tensor(&mut v, "t", &[8], 0, 32);
    assert!(corrupt_msg(&with_data(v, 64)).contains("duplicate tensor name 't'"));
}

#[test]
fn unknown_tensor_type() {
    for (id, name) in [(16u32, "IQ2_XXS"), (99, "unknown"), (4, "Q4_2")] {
        let mut v = raw(3, 1, 0);
        raw_tensor(&mut v, "blk.0.attn_q.weight", &[256], id, 0);
        let e = err(&with_data(v, 1024));
        match &e {
            Error::UnsupportedType { tensor, ty, name: n } => {
                assert_eq!((tensor.as_str(), *ty, n.as_str()), ("blk.0.attn_q.weight", id, name))
            }
            e => panic!("{e:?}"),
        }
        assert!(e.to_string().contains(name));
    }
}

#[test]
fn too_many_dims() {
    let mut v = raw(3, 1, 0);
    raw_tensor(&mut v, "t", &[1, 1, 1, 1, 1], 0, 0);
    assert!(corrupt_msg(&with_data(v, 64)).contains("tensor 't': 5 dimensions"));
}

#[test]
fn tensor_offset_not_aligned() {
    let mut v = raw(3, 1, 0);
    raw_tensor(&mut v, "t", &[4], 0, 4);
    let m = corrupt_msg(&with_data(v, 64));
    assert!(m.contains("tensor 't': data offset 4 is not a multiple of the alignment 32"), "{m}");
}

#[test]
fn tensor_not_whole_blocks() {
    let mut v = raw(3, 1, 0);
    raw_tensor(&mut v, "q", &[48, 2], 2, 0);
    let m = corrupt_msg(&with_data(v, 1024));
    assert!(m.contains("tensor 'q': row length 48 is not a multiple of the Q4_0 block size 32"), "{m}");
}

#[test]
fn tensor_size_overflow() {
    let mut v = raw(3, 1, 0);
    raw_tensor(&mut v, "big", &[1 << 32, 1 << 32], 0, 0);
    assert!(corrupt_msg(&with_data(v, 64)).contains("tensor 'big': element count"));
    let mut v = raw(3, 1, 0);
    raw_tensor(&mut v, "big", &[1 << 62], 0, 0);
    assert!(corrupt_msg(&with_data(v, 64)).contains("tensor 'big': byte size"));
}

#[test]
fn tensor_beyond_end_of_file() {
    let mut v = raw(3, 2, 0);
    raw_tensor(&mut v, "a", &[8], 0, 0);
    raw_tensor(&mut v, "b", &[8], 0, 32);
    let v = with_data(v, 32 + 31); // "b" needs 32 bytes at data + 32
    let data = (v.len() - 63) as u64;
    match err(&v) {
        Error::Truncated { offset, needed, len } => {
            assert_eq!((offset, needed, len), (data + 32, 32, data + 63))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_alignment() {
    for (a, shown) in [(Value::U32(0), "U32(0)"), (Value::U32(48), "U32(48)"), (s("32"), "String")] {
        let mut v = raw(3, 0, 1);
        raw_str(&mut v, "general.alignment");
        v.extend_from_slice(&a.type_id().to_le_bytes());
        match &a {
            Value::U32(x) => v.extend_from_slice(&x.to_le_bytes()),
            _ => raw_str(&mut v, "32"),
        }
        let m = corrupt_msg(&with_data(v, 0));
        assert!(m.contains("general.alignment") && m.contains(shown), "{m}");
    }
}

#[test]
fn writer_rejects_bad_input() {
    let inv = |r: Result<GgufWriter>| matches!(r, Err(Error::InvalidArgument(_)));
    assert!(inv(GgufWriter::new(vec![], vec![], 0)));
    assert!(inv(GgufWriter::new(vec![], vec![], 24)));
    assert!(inv(GgufWriter::new(vec![kv("general.alignment", Value::U32(64))], vec![], 32)));
    assert!(inv(GgufWriter::new(vec![], vec![("t".into(), vec![33], GgmlType::Q8_0)], 32)));
    let mut w = GgufWriter::new(vec![], vec![("t".into(), vec![4], GgmlType::F32)], 32).unwrap();
    let mut out = Vec::new();
    assert!(matches!(w.write_tensor_data(&mut out, &[0; 16]), Err(Error::InvalidArgument(_))));
    w.write_header(&mut out).unwrap();
    assert!(matches!(w.finish(), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.write_tensor_data(&mut out, &[0; 15]), Err(Error::InvalidArgument(_))));
    w.write_tensor_data(&mut out, &[0; 16]).unwrap();
    assert!(matches!(w.write_tensor_data(&mut out, &[0; 16]), Err(Error::InvalidArgument(_))));
    w.finish().unwrap();
}

#[test]
fn writer_streams_tensors_in_chunks() {
    let plan = vec![("a".into(), vec![5], GgmlType::F32), ("b".into(), vec![3], GgmlType::F32)];
    let data: Vec<u8> = (0..32).collect();
    let (mut whole, mut chunked) = (Vec::new(), Vec::new());
    let mut w = GgufWriter::new(vec![], plan.clone(), 32).unwrap();
    w.write_header(&mut whole).unwrap();
    w.write_tensor_data(&mut whole, &data[..20]).unwrap();
    w.write_tensor_data(&mut whole, &data[20..]).unwrap();
    w.finish().unwrap();
    let mut w = GgufWriter::new(vec![], plan, 32).unwrap();
    w.write_header(&mut chunked).unwrap();
    for piece in [&data[..7], &data[7..8], &data[8..20], &data[20..32]] {
        w.write_tensor_chunk(&mut chunked, piece).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(whole, chunked);
    assert_eq!(chunked.len() as u64, w.file_len());
    // a chunk running past its tensor, or a whole write after a partial one, is refused
    let mut w = GgufWriter::new(vec![], vec![("a".into(), vec![4], GgmlType::F32)], 32).unwrap();
    let mut out = Vec::new();
    w.write_header(&mut out).unwrap();
    w.write_tensor_chunk(&mut out, &[0; 8]).unwrap();
    assert!(matches!(w.write_tensor_chunk(&mut out, &[0; 9]), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.write_tensor_data(&mut out, &[0; 16]), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.finish(), Err(Error::InvalidArgument(_))));
}

// ---- metadata accessors -------------------------------------------------------------------

#[test]
fn accessors() {
    let f = GgufFile::read(&build(all_types_metadata(), vec![], 32)).unwrap();
    assert_eq!(f.get_u32("u8").unwrap(), 200);
    assert_eq!(f.get_u32("u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("u64").unwrap(), u64::MAX);
    assert!(matches!(f.get_u32("u64"), Err(Error::WrongType { key, .. }) if key == "u64"));
    assert!(matches!(f.get_u32("i8"), Err(Error::WrongType { .. })));
    assert!(matches!(f.get_u32("string"), Err(Error::WrongType { .. })));
    assert_eq!(f.get_f32("f32").unwrap(), 1.5e-5);
    assert_eq!(f.get_f32("f64").unwrap(), -2.25);
    assert_eq!(f.get_f32("i16").unwrap(), -30000.0);
    assert!(matches!(f.get_f32("bool_t"), Err(Error::WrongType { .. })));
    assert_eq!(f.get_str("string").unwrap(), "héllo ✓");
    assert_eq!(f.get_str_array("array_str").unwrap().iter().collect::<Vec<_>>(), ["a", "", "Ġthe"]);
    assert!(f.get_str_array("array_empty").unwrap().is_empty());
    assert!(matches!(f.get_str_array("array_i32"), Err(Error::WrongType { expected: "array of strings", .. })));
    assert_eq!(f.get_array("array_nested").unwrap().len(), 3);
    assert!(matches!(f.get_u32("nope"), Err(Error::MissingKey(k)) if k == "nope"));
    assert_eq!(Value::I64(-1).as_u64(), None);
    assert_eq!(Value::U64(u64::MAX).as_i64(), None);
    assert_eq!(Value::I8(-3).as_i64(), Some(-3));
}

// ---- LlamaConfig --------------------------------------------------------------------------

const EMBD: u64 = 8;
const FF: u64 = 16;
const VOCAB: u64 = 10;
const LAYERS: u64 = 2;

fn llama_meta() -> Kv {
    vec![
        kv("general.architecture", s("llama")),
        kv("general.name", s("tiny")),
        kv("llama.block_count", Value::U32(LAYERS as u32)),
        kv("llama.embedding_length", Value::U32(EMBD as u32)),
        kv("llama.feed_forward_length", Value::U64(FF)),
        kv("llama.attention.head_count", Value::U32(2)),
        kv("llama.attention.head_count_kv", Value::U32(1)),
        kv("llama.context_length", Value::U32(8192)),
        kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        kv("llama.rope.freq_base", Value::F32(500000.0)),
    ]
}

/// head_dim 4, 2 query heads, 1 kv head.
fn llama_tensors(output: bool, rope_freqs: bool) -> Tensors {
    let f = |n: &str, d: &[u64]| (n.to_owned(), d.to_vec(), GgmlType::F32);
    let mut t = vec![f("token_embd.weight", &[EMBD, VOCAB])];
    for i in 0..LAYERS {
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        t.push(f(&b("attn_norm"), &[EMBD]));
        t.push(f(&b("attn_q"), &[EMBD, 8]));
        t.push(f(&b("attn_k"), &[EMBD, 4]));
        t.push(f(&b("attn_v"), &[EMBD, 4]));
        t.push(f(&b("attn_output"), &[8, EMBD]));
        t.push(f(&b("ffn_norm"), &[EMBD]));
        t.push(f(&b("ffn_gate"), &[EMBD, FF]));
        t.push(f(&b("ffn_up"), &[EMBD, FF]));
        t.push(f(&b("ffn_down"), &[FF, EMBD]));
    }
    t.push(f("output_norm.weight", &[EMBD]));
    if output {
        t.push(f("output.weight", &[EMBD, VOCAB]));
    }
    if rope_freqs {
        t.push(f("rope_freqs.weight", &[2]));
    }
    t
}

fn config(meta: Kv, tensors: Tensors) -> Result<LlamaConfig> {
    LlamaConfig::from_gguf(&GgufFile::read(&build(meta, tensors, 32))?)
}

#[test]
fn llama_config_ok() {
    let c = config(llama_meta(), llama_tensors(true, true)).unwrap();
    assert_eq!(
        c,
        LlamaConfig {
            architecture: "llama".into(),
            name: Some("tiny".into()),
            n_layer: 2,
            n_embd: 8,
            n_ff: 16,
            n_head: 2,
            n_head_kv: 1,
            head_dim: 4,
            n_vocab: 10,
            context_length: 8192,
            rms_eps: 1e-6,
            rope_base: 500000.0,
            has_rope_freqs: true,
            tied_embeddings: false,
        }
    );
}

#[test]
fn llama_config_defaults_and_tied() {
    let meta: Kv = llama_meta()
        .into_iter()
        .filter(|(k, _)| {
            !k.contains("context_length")
                && !k.contains("epsilon")
                && !k.contains("freq_base")
                && !k.contains("head_count_kv")
        })
        .collect();
    let mut tensors = llama_tensors(false, false);
    // Without head_count_kv, k/v have as many heads as q.
    for t in tensors.iter_mut().filter(|t| t.0.contains("attn_k") || t.0.contains("attn_v")) {
        t.1 = vec![EMBD, 8];
    }
    let c = config(meta, tensors).unwrap();
    assert_eq!((c.context_length, c.rms_eps, c.rope_base), (2048, 1e-5, 10000.0));
    assert_eq!((c.n_head_kv, c.tied_embeddings, c.has_rope_freqs), (2, true, false));
}

#[test]
fn llama_missing_key() {
    let meta = llama_meta().into_iter().filter(|(k, _)| k != "llama.block_count").collect();
    let e = config(meta, llama_tensors(true, false)).unwrap_err();
    assert!(matches!(&e, Error::MissingKey(k) if k == "llama.block_count"), "{e:?}");
    assert!(e.to_string().contains("llama.block_count"));
}

#[test]
fn llama_wrong_key_type() {
    let mut meta = llama_meta();
    meta[3].1 = s("8"); // embedding_length
    let e = config(meta, llama_tensors(true, false)).unwrap_err();
    assert!(matches!(&e, Error::WrongType { key, .. } if key == "llama.embedding_length"), "{e:?}");
}

#[test]
fn llama_bad_shape() {
    let mut tensors = llama_tensors(true, false);
    let i = tensors.iter().position(|t| t.0 == "blk.1.ffn_down.weight").unwrap();
    tensors[i].1 = vec![EMBD, FF];
    match config(llama_meta(), tensors).unwrap_err() {
        Error::BadShape { name, got, expected } => {
            assert_eq!((name.as_str(), got, expected), ("blk.1.ffn_down.weight", vec![EMBD, FF], vec![FF, EMBD]))
        }
        e => panic!("{e:?}"),
    }
    let mut tensors = llama_tensors(true, true);
    tensors.last_mut().unwrap().1 = vec![4];
    assert!(matches!(config(llama_meta(), tensors), Err(Error::BadShape { name, .. }) if name == "rope_freqs.weight"));
}

#[test]
fn llama_missing_tensor() {
    let tensors = llama_tensors(true, false).into_iter().filter(|t| t.0 != "blk.0.attn_v.weight").collect();
    assert!(matches!(config(llama_meta(), tensors), Err(Error::MissingTensor(n)) if n == "blk.0.attn_v.weight"));
}

#[test]
fn llama_bad_heads() {
    let mut meta = llama_meta();
    meta[5].1 = Value::U32(3); // head_count 3 does not divide embd 8
    assert!(matches!(config(meta, llama_tensors(true, false)), Err(Error::Corrupt(m)) if m.contains("divisible")));
    let mut meta = llama_meta();
    meta[6].1 = Value::U32(0);
    assert!(
        matches!(config(meta, llama_tensors(true, false)), Err(Error::Corrupt(m)) if m.contains("head_count_kv' is 0"))
    );
}

#[test]
fn unsupported_architecture() {
    let mut meta = llama_meta();
    meta[0].1 = s("gemma2");
    let e = config(meta, llama_tensors(true, false)).unwrap_err();
    assert!(matches!(&e, Error::UnsupportedModel(m) if m.contains("'gemma2'")), "{e:?}");
}

// ---- hostile shapes (the fuzzing campaign's findings) ---------------------------------------

#[test]
fn overlapping_tensors_are_corrupt() {
    let mut v = raw(3, 2, 0);
    raw_tensor(&mut v, "a", &[16], 0, 0);
    raw_tensor(&mut v, "b", &[16], 0, 64);
    assert!(GgufFile::read(&with_data(v, 128)).is_ok());
    let mut w = raw(3, 2, 0);
    raw_tensor(&mut w, "a", &[16], 0, 0);
    raw_tensor(&mut w, "b", &[8], 0, 0);
    let m = corrupt_msg(&with_data(w, 128));
    assert!(m.contains("'a' and 'b' overlap") || m.contains("'b' and 'a' overlap"), "{m}");
}

#[test]
fn tensor_count_is_bounded_by_what_a_llama_uses() {
    let n = MAX_TENSORS + 1;
    let mut v = raw(3, n, 0);
    for i in 0..n {
        raw_tensor(&mut v, &format!("t{i}"), &[0], 0, 0);
    }
    let m = corrupt_msg(&with_data(v, 0));
    assert!(m.contains("65537 tensors, more than the 65536"), "{m}");
}

#[test]
fn arrays_are_compact_and_the_header_budget_holds() {
    // 1 MiB of u8: ~1 MiB in memory
    let big = Value::Array(Array::U8(vec![7; 1 << 20]));
    let f = GgufFile::read(&build(vec![kv("big", big.clone())], vec![], 32)).unwrap();
    assert_eq!(f.get("big"), Some(&big));
    // a count the file could hold but the budget cannot: refused before allocating
    let n = MAX_HEADER_BYTES / 8 + 1;
    let mut v = raw(3, 0, 1);
    raw_str(&mut v, "wide");
    v.extend_from_slice(&9u32.to_le_bytes());
    v.extend_from_slice(&10u32.to_le_bytes()); // u64 elements
    v.extend_from_slice(&n.to_le_bytes());
    struct Zeros(Vec<u8>, u64);
    impl ByteSource for Zeros {
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
    let len = v.len() as u64 + n * 8;
    let e = GgufFile::read(&Zeros(v, len)).unwrap_err();
    assert!(e.to_string().contains("metadata 'wide': array of") && e.to_string().contains("160 MiB"), "{e}");
}

#[test]
fn llama_layer_count_is_bounded() {
    let mut meta = llama_meta();
    for (k, v) in meta.iter_mut() {
        if k == "llama.block_count" {
            *v = Value::U32(MAX_LAYERS as u32 + 1);
        }
    }
    let e = config(meta, llama_tensors(true, false)).unwrap_err();
    assert!(matches!(&e, Error::UnsupportedModel(m) if m.contains("1025 layers")), "{e}");
}

#[cfg(unix)]
#[test]
fn file_source_refuses_fifos_and_directories() {
    let dir = std::env::temp_dir();
    assert!(matches!(FileSource::open(&dir), Err(Error::Io(m)) if m.contains("a directory")));
    let fifo = dir.join(format!("llama-webgpu-fifo-{}", std::process::id()));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success());
    if made.unwrap_or(false) {
        let r = FileSource::open(&fifo);
        let _ = std::fs::remove_file(&fifo);
        assert!(matches!(r, Err(Error::Io(m)) if m.contains("FIFO")));
    }
}

#[test]
fn tensor_lookup_uses_the_index() {
    let f = GgufFile::read(&build(vec![], some_tensors(), 32)).unwrap();
    assert_eq!(f.tensor_index.len(), 4);
    assert_eq!(f.tensor("c").map(|t| t.dims.clone()), Some(vec![256, 1, 1, 2]));
    // a hand-made file without an index still finds its tensors
    let g = GgufFile { tensors: f.tensors.clone(), ..Default::default() };
    assert_eq!(g.tensor("d").map(|t| t.n_bytes), Some(10));
    assert!(g.tensor("nope").is_none());
}
