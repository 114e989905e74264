//! Header parser: a windowed cursor over a [`ByteSource`], so an 8 MB header with 400k strings
//! costs ~130 `read_at` calls, not millions.
//!
//! Hostile headers: every count is checked against the bytes left before anything is
//! allocated for it, and everything the parsed header keeps in memory is charged to a budget
//! ([`MAX_HEADER_BYTES`]) before it is allocated, so no header can make us allocate more than
//! that (a 2^27-element array of u8 costs 128 MiB, its size in the file).

use std::collections::HashMap;

use super::value::Array;
use super::{
    ByteSource, GgmlType, GgufFile, TensorInfo, Value, DEFAULT_ALIGNMENT, MAX_HEADER_BYTES, MAX_METADATA_ENTRIES,
    MAX_TENSORS,
};
use crate::error::{echo, Error, Result};

const WINDOW: usize = 64 * 1024;
/// Real files nest at most 2 levels; the cap keeps hostile nesting from overflowing the stack.
const MAX_DEPTH: u32 = 16;
/// Smallest encoded tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO: u64 = 24;
/// Smallest encoded kv: key length (8) + value type (4) + 1-byte value.
const MIN_KV: u64 = 13;
/// Memory charged per metadata entry and per tensor info on top of their strings (the
/// structs, the name index).
const ENTRY_COST: u64 = 128;

struct Cursor<'a> {
    src: &'a dyn ByteSource,
    len: u64,
    /// Cached bytes `buf_start..buf_start + buf.len()`.
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
    /// Bytes the parsed header may still allocate.
    budget: u64,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a dyn ByteSource) -> Self {
        Self { src, len: src.len(), buf: Vec::new(), buf_start: 0, pos: 0, budget: MAX_HEADER_BYTES }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// The next `n` bytes; refills the window when they are not all cached.
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let needed = n as u64;
        let end = match self.pos.checked_add(needed) {
            Some(end) if end <= self.len => end,
            _ => return Err(Error::Truncated { offset: self.pos, needed, len: self.len }),
        };
        let cached_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || end > cached_end {
            // n <= remaining, so the window is at least n bytes and stays inside the source.
            let want = needed.max(WINDOW as u64).min(self.len - self.pos);
            let want = usize::try_from(want).map_err(|_| self.corrupt("read window too large"))?;
            self.buf.resize(want, 0);
            self.buf_start = self.pos;
            if let Err(e) = self.src.read_at(self.pos, &mut self.buf) {
                self.buf.clear(); // never serve a half-filled window
                return Err(e);
            }
        }
        let start = (self.pos - self.buf_start) as usize;
        self.pos = end;
        self.buf.get(start..start + n).ok_or_else(|| Error::Corrupt("internal: bad read window".into()))
    }

    fn corrupt(&self, what: &str) -> Error {
        Error::Corrupt(format!("{what} at offset {}", self.pos))
    }

    /// Reserves `n` bytes of the header's memory budget; an error once it is spent.
    fn charge(&mut self, n: u64, what: &dyn std::fmt::Display) -> Result<()> {
        match self.budget.checked_sub(n) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(Error::Corrupt(format!(
                "{what} at offset {}: the header needs more than the {} MiB it may use in memory",
                self.pos,
                MAX_HEADER_BYTES >> 20
            ))),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// Rejects a `count` of items of at least `min_size` bytes each that cannot fit in the
    /// bytes left, before anything is allocated for it.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn std::fmt::Display) -> Result<usize> {
        let rem = self.remaining();
        match count.checked_mul(min_size) {
            Some(need) if need <= rem => {
                usize::try_from(count).map_err(|_| Error::Corrupt(format!("{what} {count} does not fit in memory")))
            }
            _ => Err(Error::Corrupt(format!(
                "{what} {count} exceeds what the {rem} bytes left at offset {} can hold \
                 (truncated or corrupt file)",
                self.pos
            ))),
        }
    }

    /// A string's bytes (u64 length + UTF-8), charged to the budget. `ctx` names what is read.
    fn str_bytes(&mut self, ctx: &dyn std::fmt::Display) -> Result<&str> {
        let len = self.u64()?;
        let at = self.pos;
        let n = self.check_count(len, 1, &format_args!("{ctx}: string length"))?;
        self.charge(len, &format_args!("{ctx}: string of {len} bytes"))?;
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s),
            Err(e) => Err(Error::Corrupt(format!("{ctx}: string at offset {at} is not valid UTF-8: {e}"))),
        }
    }

    fn string(&mut self, ctx: &dyn std::fmt::Display) -> Result<String> {
        self.str_bytes(ctx).map(str::to_owned)
    }

    /// A metadata value of type `ty` belonging to `key`.
    fn value(&mut self, ty: u32, key: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => Value::Bool(self.bool(key)?),
            8 => Value::String(self.string(&format_args!("metadata {}", echo(key)))?),
            9 => Value::Array(self.array(key, 0)?),
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            _ => return Err(self.corrupt(&format!("metadata {}: unknown value type {ty}", echo(key)))),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        match self.bytes::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(self.corrupt(&format!("metadata {}: invalid bool byte {b}", echo(key)))),
        }
    }

    /// An array (element type, count, elements), stored compactly by element type.
    fn array(&mut self, key: &str, depth: u32) -> Result<Array> {
        if depth >= MAX_DEPTH {
            return Err(self.corrupt(&format!("metadata {}: arrays nested deeper than {MAX_DEPTH}", echo(key))));
        }
        let elem_ty = self.u32()?;
        let (min, mem) = elem_sizes(elem_ty)
            .ok_or_else(|| self.corrupt(&format!("metadata {}: unknown array element type {elem_ty}", echo(key))))?;
        let count = self.u64()?;
        let n = self.check_count(count, min, &format_args!("metadata {}: array count", echo(key)))?;
        self.charge(count.saturating_mul(mem), &format_args!("metadata {}: array of {count}", echo(key)))?;
        let mut a = Array::empty(elem_ty, n).ok_or_else(|| self.corrupt("internal: array type"))?;
        match &mut a {
            Array::U8(v) => self.pod(n, v, |b: [u8; 1]| b[0])?,
            Array::I8(v) => self.pod(n, v, i8::from_le_bytes)?,
            Array::U16(v) => self.pod(n, v, u16::from_le_bytes)?,
            Array::I16(v) => self.pod(n, v, i16::from_le_bytes)?,
            Array::U32(v) => self.pod(n, v, u32::from_le_bytes)?,
            Array::I32(v) => self.pod(n, v, i32::from_le_bytes)?,
            Array::F32(v) => self.pod(n, v, f32::from_le_bytes)?,
            Array::U64(v) => self.pod(n, v, u64::from_le_bytes)?,
            Array::I64(v) => self.pod(n, v, i64::from_le_bytes)?,
            Array::F64(v) => self.pod(n, v, f64::from_le_bytes)?,
            Array::Bool(v) => {
                for _ in 0..n {
                    let b = self.bool(key)?;
                    v.push(b);
                }
            }
            Array::String(v) => {
                let ctx = format!("metadata {}", echo(key));
                for _ in 0..n {
                    let s = self.str_bytes(&ctx)?;
                    v.push(s);
                }
            }
            Array::Array(v) => {
                for _ in 0..n {
                    let inner = self.array(key, depth + 1)?;
                    v.push(inner);
                }
            }
        }
        Ok(a)
    }

    /// `n` fixed-size little-endian elements, read a window at a time (a memcpy per window on
    /// little-endian targets, so a 2^27-element array takes well under a second even unoptimized).
    fn pod<T: bytemuck::Pod, const N: usize>(
        &mut self,
        n: usize,
        out: &mut Vec<T>,
        from_le: impl Fn([u8; N]) -> T,
    ) -> Result<()> {
        let per = WINDOW / N;
        let mut left = n;
        while left > 0 {
            let k = left.min(per);
            let bytes = self.take(k * N)?;
            if cfg!(target_endian = "little") {
                match bytemuck::try_cast_slice::<u8, T>(bytes) {
                    Ok(aligned) => out.extend_from_slice(aligned),
                    Err(_) => {
                        let start = out.len();
                        out.resize(start + k, T::zeroed());
                        bytemuck::cast_slice_mut::<T, u8>(&mut out[start..]).copy_from_slice(bytes);
                    }
                }
            } else {
                out.extend(bytes.chunks_exact(N).map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    from_le(a)
                }));
            }
            left -= k;
        }
        Ok(())
    }
}

/// Smallest encoding of an element of type `ty` and the memory one costs stored compactly;
/// `None` for unknown types.
fn elem_sizes(ty: u32) -> Option<(u64, u64)> {
    let array = std::mem::size_of::<Array>() as u64;
    Some(match ty {
        0 | 1 | 7 => (1, 1),
        2 | 3 => (2, 2),
        4..=6 => (4, 4),
        8 => (8, std::mem::size_of::<usize>() as u64), // + the text, charged as it is read
        9 => (12, array),
        10..=12 => (8, 8),
        _ => return None,
    })
}

pub(super) fn read(src: &dyn ByteSource) -> Result<GgufFile> {
    let mut r = Cursor::new(src);
    let magic: [u8; 4] = r.bytes()?;
    if &magic != b"GGUF" {
        return Err(Error::BadMagic(magic));
    }
    // v2 and v3 share the layout (v1 had 32-bit counts; v3 only added big-endian files, which
    // show up here as a byte-swapped, unsupported version).
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(Error::UnsupportedVersion(version));
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let n_tensors = r.check_count(n_tensors, MIN_TENSOR_INFO, &"header: tensor count")?;
    let n_kv = r.check_count(n_kv, MIN_KV, &"header: metadata count")?;
    if n_tensors as u64 > MAX_TENSORS {
        return Err(Error::Corrupt(format!(
            "header: {n_tensors} tensors, more than the {MAX_TENSORS} any Llama model uses"
        )));
    }
    if n_kv as u64 > MAX_METADATA_ENTRIES {
        return Err(Error::Corrupt(format!(
            "header: {n_kv} metadata entries, more than the {MAX_METADATA_ENTRIES} supported"
        )));
    }
    r.charge((n_kv + n_tensors) as u64 * ENTRY_COST, &"header: entries")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = r.string(&format_args!("key of metadata entry {i}"))?;
        r.charge(key.len() as u64, &format_args!("key of metadata entry {i}"))?; // the key index
        let ty = r.u32()?;
        let value = r.value(ty, &key)?;
        if keys.insert(key.clone(), i).is_some() {
            return Err(Error::Corrupt(format!("duplicate metadata key {}", echo(&key))));
        }
        metadata.push((key, value));
    }

    let alignment = match keys.get("general.alignment").and_then(|&i| metadata.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(Error::Corrupt(format!("general.alignment {v:?} is not a nonzero power of two"))),
        },
    };

    // (name, dims, type, offset relative to the data start)
    let mut infos = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.string(&format_args!("name of tensor {i}"))?;
        r.charge(name.len() as u64, &format_args!("name of tensor {i}"))?; // the name index
        let n_dims = r.u32()?;
        if n_dims > 4 {
            return Err(Error::Corrupt(format!("tensor {}: {n_dims} dimensions (at most 4)", echo(&name))));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64()?);
        }
        let ty = GgmlType::from_id(r.u32()?, &name)?;
        let rel = r.u64()?;
        infos.push((name, dims, ty, rel));
    }

    let data_offset =
        r.pos.checked_next_multiple_of(alignment).ok_or_else(|| Error::Corrupt("data offset overflows".into()))?;
    let file_len = r.len;
    let mut index = HashMap::with_capacity(infos.len());
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ty, rel) in infos {
        let bad = |why: String| Error::Corrupt(format!("tensor {}: {why}", echo(&name)));
        if index.insert(name.clone(), tensors.len()).is_some() {
            return Err(Error::Corrupt(format!("duplicate tensor name {}", echo(&name))));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("element count of {dims:?} overflows")))?;
        let cols = dims.first().copied().unwrap_or(1);
        if cols % ty.block_size() != 0 {
            return Err(bad(format!(
                "row length {cols} is not a multiple of the {} block size {}",
                ty.name(),
                ty.block_size()
            )));
        }
        let n_bytes =
            ty.bytes_for(n_elements).ok_or_else(|| bad(format!("byte size of {dims:?} {} overflows", ty.name())))?;
        if rel % alignment != 0 {
            return Err(bad(format!("data offset {rel} is not a multiple of the alignment {alignment}")));
        }
        let offset = data_offset.checked_add(rel).ok_or_else(|| bad(format!("data offset {rel} overflows")))?;
        if offset.checked_add(n_bytes).is_none_or(|end| end > file_len) {
            return Err(Error::Truncated { offset, needed: n_bytes, len: file_len });
        }
        tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
    }
    check_no_overlap(&tensors)?;

    Ok(GgufFile { version, metadata, tensors, alignment, data_offset, file_len, tensor_index: index })
}

/// Tensors must not share bytes: then their total size is bounded by the file's, and a small
/// file cannot describe a huge model whose tensors all point at the same data.
fn check_no_overlap(tensors: &[TensorInfo]) -> Result<()> {
    let mut spans: Vec<(u64, u64, usize)> =
        tensors.iter().enumerate().filter(|(_, t)| t.n_bytes > 0).map(|(i, t)| (t.offset, t.n_bytes, i)).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        let ((a_off, a_len, a), (b_off, _, b)) = (w[0], w[1]);
        if a_off + a_len > b_off {
            return Err(Error::Corrupt(format!(
                "tensors '{}' and '{}' overlap (data at offsets {a_off} and {b_off})",
                tensors[a].name, tensors[b].name
            )));
        }
    }
    Ok(())
}
