//! Header parser: a windowed cursor over a [`ByteSource`], so an 8 MB header with 400k strings
//! costs ~130 `read_at` calls, not millions.

use std::collections::HashSet;

use super::{ByteSource, GgmlType, GgufFile, TensorInfo, Value, DEFAULT_ALIGNMENT};
use crate::error::{echo, Error, Result};

const WINDOW: usize = 64 * 1024;
/// Real files nest at most 2 levels; the cap keeps hostile nesting from overflowing the stack.
const MAX_DEPTH: u32 = 16;
/// Smallest encoded tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO: u64 = 24;
/// Smallest encoded kv: key length (8) + value type (4) + 1-byte value.
const MIN_KV: u64 = 13;
/// Initial capacity cap: beyond it vectors grow only as elements are actually read, so a
/// count that passes the bytes-left check still cannot allocate ~32 bytes per input byte.
const MAX_PREALLOC: usize = 1 << 16;

struct Cursor<'a> {
    src: &'a dyn ByteSource,
    len: u64,
    /// Cached bytes `buf_start..buf_start + buf.len()`.
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a dyn ByteSource) -> Self {
        Self { src, len: src.len(), buf: Vec::new(), buf_start: 0, pos: 0 }
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

    /// GGUF string: u64 length + UTF-8 bytes. `ctx` names what is being read.
    fn string(&mut self, ctx: &dyn std::fmt::Display) -> Result<String> {
        let len = self.u64()?;
        let at = self.pos;
        let n = self.check_count(len, 1, &format_args!("{ctx}: string length"))?;
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Error::Corrupt(format!("{ctx}: string at offset {at} is not valid UTF-8: {e}"))),
        }
    }

    /// A metadata value of type `ty` belonging to `key`.
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        let k = echo(key);
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match self.bytes::<1>()? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(self.corrupt(&format!("metadata {k}: invalid bool byte {b}"))),
            },
            8 => Value::String(self.string(&format_args!("metadata {k}"))?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.corrupt(&format!("metadata {k}: arrays nested deeper than {MAX_DEPTH}")));
                }
                let elem_ty = self.u32()?;
                let min = min_value_size(elem_ty)
                    .ok_or_else(|| self.corrupt(&format!("metadata {k}: unknown array element type {elem_ty}")))?;
                let count = self.u64()?;
                let n = self.check_count(count, min, &format_args!("metadata {k}: array count"))?;
                let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
                for _ in 0..n {
                    v.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            _ => return Err(self.corrupt(&format!("metadata {k}: unknown value type {ty}"))),
        })
    }
}

/// Smallest encoding of a value of type `ty`; `None` for unknown types.
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
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

    let mut metadata = Vec::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let key = r.string(&format_args!("key of metadata entry {i}"))?;
        let ty = r.u32()?;
        let value = r.value(ty, &key, 0)?;
        if !keys.insert(key.clone()) {
            return Err(Error::Corrupt(format!("duplicate metadata key {}", echo(&key))));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(Error::Corrupt(format!("general.alignment {v:?} is not a nonzero power of two"))),
        },
    };

    // (name, dims, type, offset relative to the data start)
    let mut infos = Vec::with_capacity(n_tensors.min(MAX_PREALLOC));
    for i in 0..n_tensors {
        let name = r.string(&format_args!("name of tensor {i}"))?;
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
    let mut names = HashSet::new();
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ty, rel) in infos {
        let bad = |why: String| Error::Corrupt(format!("tensor {}: {why}", echo(&name)));
        if !names.insert(name.clone()) {
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

    Ok(GgufFile { version, metadata, tensors, alignment, data_offset, file_len })
}
