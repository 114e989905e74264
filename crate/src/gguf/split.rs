//! Split GGUF (llama.cpp's `gguf-split`): a model in `N` files named `…-00001-of-0000N.gguf`,
//! each a GGUF of its own with `split.no` (0-based), `split.count` and, in all of them,
//! `split.tensors.count` (the tensors of the whole model). The first part holds the model's
//! metadata; a tensor lies whole inside one part.
//!
//! We read a split model as one file: the parts laid end to end ([`SplitLayout`]), the
//! tensors of every part at their offset in that sequence ([`merge`]). So every loader keeps
//! taking one byte source and one header; the browser concatenates the parts the same way.

use super::{ByteSource, GgufFile, Value};
use crate::error::{Error, Result};

pub const KEY_NO: &str = "split.no";
pub const KEY_COUNT: &str = "split.count";
pub const KEY_TENSORS: &str = "split.tensors.count";

/// What a part says about the split: `(no, count, tensors)`, or `None` for an unsplit file.
fn split_keys(f: &GgufFile) -> Result<Option<(u64, u64, u64)>> {
    let Some(count) = f.get(KEY_COUNT) else { return Ok(None) };
    let int = |key: &str, v: Option<&Value>| -> Result<u64> {
        let v = v.ok_or_else(|| Error::MissingKey(key.into()))?;
        v.as_u64().ok_or_else(|| Error::WrongType { key: key.into(), expected: "an unsigned integer" })
    };
    let count = int(KEY_COUNT, Some(count))?;
    Ok(Some((int(KEY_NO, f.get(KEY_NO))?, count, int(KEY_TENSORS, f.get(KEY_TENSORS))?)))
}

/// A part's place in its split model (`split.no`, 0-based); 0 for an unsplit file.
pub fn part_no(f: &GgufFile) -> Result<u64> {
    Ok(split_keys(f)?.map_or(0, |(no, _, _)| no))
}

/// Parts expected for the file whose header is `first`: 1 for an unsplit file.
pub fn part_count(first: &GgufFile) -> Result<u64> {
    Ok(split_keys(first)?.map_or(1, |(_, count, _)| count))
}

/// The names of all parts, from the name of one (`x-00002-of-00003.gguf` → `x-00001-of-00003.gguf`,
/// …), or `None` when `name` is not a part's name.
pub fn part_names(name: &str) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".gguf")?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) {
        return None;
    }
    let n: u32 = count.parse().ok()?;
    if n == 0 {
        return None;
    }
    Some((1..=n).map(|i| format!("{prefix}-{i:05}-of-{n:05}.gguf")).collect())
}

/// Checks the parts' headers against each other and merges them into one header over the
/// parts laid end to end (in `split.no` order, whatever order they came in): the first
/// part's metadata, every part's tensors at `offset + the lengths of the parts before`.
/// A single unsplit file comes back as it is.
pub fn merge(mut parts: Vec<GgufFile>) -> Result<GgufFile> {
    let keys = parts.iter().map(split_keys).collect::<Result<Vec<_>>>()?;
    let Some(&Some((_, count, n_tensors))) = keys.first() else {
        return match (parts.len(), keys.first()) {
            (1, Some(None)) => Ok(parts.remove(0)),
            (0, _) => Err(Error::InvalidArgument("no model file given".into())),
            _ => Err(Error::SplitMismatch("a file without split.count given as one of several parts".into())),
        };
    };
    let mut order: Vec<Option<usize>> = vec![None; count as usize];
    for (i, k) in keys.iter().enumerate() {
        let Some((no, c, t)) = *k else {
            return Err(Error::SplitMismatch(format!("part {} of the list has no split.count", i + 1)));
        };
        if c != count || t != n_tensors {
            return Err(Error::SplitMismatch(format!(
                "part {} says it is one of {c} with {t} tensors, another one of {count} with {n_tensors}",
                no + 1
            )));
        }
        let slot = order
            .get_mut(no as usize)
            .ok_or_else(|| Error::SplitMismatch(format!("split.no {no} is not below split.count {count}")))?;
        if slot.is_some() {
            return Err(Error::DuplicateSplitPart { no: no + 1, count });
        }
        *slot = Some(i);
    }
    if let Some(missing) = order.iter().position(Option::is_none) {
        return Err(Error::MissingSplitPart { no: missing as u64 + 1, count });
    }
    let mut by_no: Vec<Option<GgufFile>> = parts.into_iter().map(Some).collect();
    let mut base = 0u64;
    let mut merged: Option<GgufFile> = None;
    for i in order.into_iter().flatten() {
        let Some(part) = by_no.get_mut(i).and_then(Option::take) else { continue };
        let shifted = part.tensors.into_iter().map(|mut t| {
            t.offset += base;
            t
        });
        match &mut merged {
            None => merged = Some(GgufFile { tensors: shifted.collect(), file_len: part.file_len, ..part }),
            Some(m) => {
                m.tensors.extend(shifted);
                m.file_len = base + part.file_len;
            }
        }
        base += part.file_len;
    }
    let mut m = merged.ok_or_else(|| Error::InvalidArgument("no model file given".into()))?;
    if m.tensors.len() as u64 != n_tensors {
        return Err(Error::SplitMismatch(format!(
            "the parts hold {} tensors, split.tensors.count says {n_tensors}",
            m.tensors.len()
        )));
    }
    m.tensor_index.clear();
    for (i, t) in m.tensors.iter().enumerate() {
        if m.tensor_index.insert(t.name.clone(), i).is_some() {
            return Err(Error::SplitMismatch(format!("tensor {} is in two parts", crate::error::echo(&t.name))));
        }
    }
    Ok(m)
}

/// Byte sources laid end to end: what a merged split header's offsets point into.
pub struct SplitLayout<S> {
    parts: Vec<(u64, S)>,
    len: u64,
}

impl<S: ByteSource> SplitLayout<S> {
    /// The parts in `split.no` order (as [`merge`] sorted them).
    pub fn new(parts: Vec<S>) -> Self {
        let mut base = 0;
        let parts = parts
            .into_iter()
            .map(|p| {
                let b = base;
                base += p.len();
                (b, p)
            })
            .collect();
        SplitLayout { parts, len: base }
    }
}

impl<S: ByteSource> ByteSource for SplitLayout<S> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        super::check_range(offset, buf.len(), self.len)?;
        let (mut at, mut done) = (offset, 0usize);
        while done < buf.len() {
            // the last part that starts at or before `at`
            let i = self.parts.partition_point(|(b, _)| *b <= at).saturating_sub(1);
            let (b, p) =
                self.parts.get(i).ok_or(Error::Truncated { offset, needed: buf.len() as u64, len: self.len })?;
            let n = ((b + p.len() - at) as usize).min(buf.len() - done);
            if n == 0 {
                return Err(Error::Truncated { offset, needed: buf.len() as u64, len: self.len });
            }
            p.read_at(at - b, &mut buf[done..done + n])?;
            done += n;
            at += n as u64;
        }
        Ok(())
    }
}

/// Opens a model natively: one file, the first (or any) part of a split model (the others
/// found by name beside it), or every part listed.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(paths: &[std::path::PathBuf]) -> Result<(SplitLayout<super::FileSource>, GgufFile)> {
    use super::FileSource;
    let read = |p: &std::path::Path| -> Result<(FileSource, GgufFile)> {
        let src = FileSource::open(p)?;
        let f = GgufFile::read(&src).map_err(|e| match e {
            Error::Io(m) => Error::Io(format!("{}: {m}", p.display())),
            e => e,
        })?;
        Ok((src, f))
    };
    let mut paths = paths.to_vec();
    if let [one] = paths.as_slice() {
        let (src, f) = read(one)?;
        let count = part_count(&f)?;
        if count == 1 {
            let f = merge(vec![f])?;
            return Ok((SplitLayout::new(vec![src]), f));
        }
        let name = one.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let names = part_names(name).filter(|n| n.len() as u64 == count).ok_or_else(|| {
            Error::SplitMismatch(format!(
                "{} is part of a model in {count} files but not named like one (NAME-00001-of-{count:05}.gguf), \
                 so the other parts cannot be found: give every part",
                one.display()
            ))
        })?;
        let dir = one.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        paths = names.iter().map(|n| dir.join(n)).collect();
        for (i, p) in paths.iter().enumerate() {
            if !p.exists() {
                return Err(Error::MissingSplitPart { no: i as u64 + 1, count });
            }
        }
    }
    let opened = paths.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
    let (srcs, files): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
    // sources in split.no order, as merge lays them out
    let nos: Vec<u64> = files.iter().map(part_no).collect::<Result<_>>()?;
    let merged = merge(files)?;
    let mut srcs: Vec<(u64, FileSource)> = nos.into_iter().zip(srcs).collect();
    srcs.sort_by_key(|(no, _)| *no);
    Ok((SplitLayout::new(srcs.into_iter().map(|(_, s)| s).collect()), merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_parts() {
        let n = part_names("m-00002-of-00003.gguf").unwrap();
        assert_eq!(n, ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]);
        assert_eq!(part_names("a-b-00001-of-00001.gguf").unwrap(), ["a-b-00001-of-00001.gguf"]);
        assert!(part_names("m.gguf").is_none());
        assert!(part_names("m-1-of-3.gguf").is_none());
        assert!(part_names("m-00001-of-00000.gguf").is_none());
    }

    #[test]
    fn layout_reads_across_parts() {
        let l = SplitLayout::new(vec![vec![1u8, 2, 3], vec![], vec![4, 5]]);
        let mut b = [0u8; 5];
        l.read_at(0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5]);
        let mut b = [0u8; 2];
        l.read_at(2, &mut b).unwrap();
        assert_eq!(b, [3, 4]);
        assert!(l.read_at(4, &mut b).is_err());
    }
}
