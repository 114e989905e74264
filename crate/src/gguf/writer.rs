//! Streaming GGUF v3 writer: the layout is fixed up front, then the header and each tensor's
//! bytes are written in order, so a quantizer never holds more than one tensor in memory.

use std::io::{Read, Write};

use super::{Array, GgmlType, Value, DEFAULT_ALIGNMENT};
use crate::error::{echo, Error, Result};

struct Planned {
    name: String,
    /// Offset relative to the data start.
    rel: u64,
    n_bytes: u64,
}

pub struct GgufWriter {
    /// Serialized header, without the padding up to the data start.
    header: Vec<u8>,
    tensors: Vec<Planned>,
    data_offset: u64,
    file_len: u64,
    /// Index of the next tensor to write; `None` until the header is written.
    next: Option<usize>,
    /// Bytes of the current tensor written so far (chunked writes).
    partial: u64,
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

impl GgufWriter {
    /// Plans the file. Adds `general.alignment` when `alignment` is not the default 32; an
    /// existing `general.alignment` key must agree with `alignment`.
    pub fn new(
        mut metadata: Vec<(String, Value)>,
        tensors: Vec<(String, Vec<u64>, GgmlType)>,
        alignment: u64,
    ) -> Result<Self> {
        if !alignment.is_power_of_two() {
            return Err(invalid(format!("alignment {alignment} is not a nonzero power of two")));
        }
        match metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) if v.as_u64() != Some(alignment) => {
                return Err(invalid(format!("general.alignment {v:?} disagrees with alignment {alignment}")))
            }
            Some(_) => {}
            None if alignment != DEFAULT_ALIGNMENT => {
                let a = u32::try_from(alignment).map_err(|_| invalid(format!("alignment {alignment} too large")))?;
                metadata.push(("general.alignment".into(), Value::U32(a)));
            }
            None => {}
        }

        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in &metadata {
            put_str(&mut h, key);
            h.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut h, value);
        }

        let mut planned = Vec::with_capacity(tensors.len());
        let mut rel = 0u64;
        for (name, dims, ty) in tensors {
            if dims.len() > 4 {
                return Err(invalid(format!("tensor {}: {} dimensions (at most 4)", echo(&name), dims.len())));
            }
            let n_bytes = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|_| dims.first().copied().unwrap_or(1) % ty.block_size() == 0)
                .and_then(|n| ty.bytes_for(n))
                .ok_or_else(|| invalid(format!("tensor {}: shape {dims:?} does not fit {}", echo(&name), ty.name())))?;
            put_str(&mut h, &name);
            h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in &dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&ty.id().to_le_bytes());
            h.extend_from_slice(&rel.to_le_bytes());
            // Each tensor is padded to the alignment, like llama.cpp's writer.
            let next = rel.checked_add(n_bytes).and_then(|e| e.checked_next_multiple_of(alignment));
            planned.push(Planned { name, rel, n_bytes });
            rel = next.ok_or_else(|| invalid("tensor data size overflows".into()))?;
        }

        let overflow = || invalid("file size overflows".into());
        let data_offset = (h.len() as u64).checked_next_multiple_of(alignment).ok_or_else(overflow)?;
        let file_len = data_offset.checked_add(rel).ok_or_else(overflow)?;
        Ok(Self { header: h, tensors: planned, data_offset, file_len, next: None, partial: 0 })
    }

    /// Absolute offset of the first tensor's data.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total size of the finished file.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Header plus padding up to the data start.
    pub fn write_header(&mut self, w: &mut impl Write) -> Result<()> {
        if self.next.is_some() {
            return Err(invalid("GGUF header written twice".into()));
        }
        w.write_all(&self.header)?;
        write_zeros(w, self.data_offset - self.header.len() as u64)?;
        self.next = Some(0);
        Ok(())
    }

    /// The next tensor's data (in the order given to `new`), whole, followed by its padding.
    pub fn write_tensor_data(&mut self, w: &mut impl Write, bytes: &[u8]) -> Result<()> {
        let t = self.current()?;
        if self.partial != 0 || bytes.len() as u64 != t.n_bytes {
            return Err(invalid(format!(
                "tensor {}: got {} bytes, expected {}",
                echo(&t.name),
                bytes.len(),
                t.n_bytes - self.partial
            )));
        }
        self.write_tensor_chunk(w, bytes)
    }

    /// Part of the next tensor's data; once all of it is written, the padding follows and
    /// the writer moves to the next tensor. Lets big tensors stream in bounded pieces.
    pub fn write_tensor_chunk(&mut self, w: &mut impl Write, bytes: &[u8]) -> Result<()> {
        let t = self.current()?;
        let (i, rel, n_bytes) = (self.next.unwrap_or(0), t.rel, t.n_bytes);
        let done = self.partial + bytes.len() as u64;
        if done > n_bytes {
            return Err(invalid(format!("tensor {}: {done} bytes written, expected {n_bytes}", echo(&t.name))));
        }
        w.write_all(bytes)?;
        self.partial = done;
        if done == n_bytes {
            let end = self.tensors.get(i + 1).map_or(self.file_len - self.data_offset, |n| n.rel);
            write_zeros(w, end - rel - n_bytes)?;
            self.next = Some(i + 1);
            self.partial = 0;
        }
        Ok(())
    }

    /// The tensor whose data comes next.
    fn current(&self) -> Result<&Planned> {
        let i = self.next.ok_or_else(|| invalid("tensor data written before the header".into()))?;
        self.tensors
            .get(i)
            .ok_or_else(|| invalid(format!("more tensor data than the {} planned tensors", self.tensors.len())))
    }

    /// Checks that every planned tensor was written.
    pub fn finish(&self) -> Result<()> {
        match self.next {
            Some(i) if i == self.tensors.len() => Ok(()),
            Some(i) => Err(invalid(format!("only {i} of {} tensors written", self.tensors.len()))),
            None => Err(invalid("GGUF header not written".into())),
        }
    }
}

fn write_zeros(w: &mut impl Write, n: u64) -> Result<()> {
    std::io::copy(&mut std::io::repeat(0).take(n), w)?;
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

/// Payload of `v` (without its type id).
fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_str(h, s),
        Value::Array(a) => put_array(h, a),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
    }
}

/// Element type, count and elements of `a`.
fn put_array(h: &mut Vec<u8>, a: &Array) {
    h.extend_from_slice(&a.elem_type_id().to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn all<T: Copy, const N: usize>(h: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> [u8; N]) {
        for &x in v {
            h.extend_from_slice(&f(x));
        }
    }
    match a {
        Array::U8(v) => h.extend_from_slice(v),
        Array::I8(v) => all(h, v, i8::to_le_bytes),
        Array::U16(v) => all(h, v, u16::to_le_bytes),
        Array::I16(v) => all(h, v, i16::to_le_bytes),
        Array::U32(v) => all(h, v, u32::to_le_bytes),
        Array::I32(v) => all(h, v, i32::to_le_bytes),
        Array::F32(v) => all(h, v, f32::to_le_bytes),
        Array::Bool(v) => all(h, v, |b| [u8::from(b)]),
        Array::String(v) => v.iter().for_each(|s| put_str(h, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(h, inner)),
        Array::U64(v) => all(h, v, u64::to_le_bytes),
        Array::I64(v) => all(h, v, i64::to_le_bytes),
        Array::F64(v) => all(h, v, f64::to_le_bytes),
    }
}
