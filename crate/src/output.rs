//! Output files of the CLI (`quantize`, `synth`, `logits --out`): what a path may be and how
//! it is written, so that no run destroys what it should not.
//!
//! * A new path or a regular file: written to `NAME.PID.partial` beside it and renamed at the
//!   end, so a failed run leaves no half-written file. An existing file is replaced only with
//!   `force` (`--force`), keeping its permissions; without it, the run is refused before any
//!   work, and a file that appears meanwhile is not clobbered either (published by hard link).
//! * A symlink is followed, as by `cp` or a shell redirect: the rules above apply to its
//!   target, the link itself stays.
//! * A character device or a FIFO (`/dev/null`, a pipe to another process) is written
//!   through as a stream, never replaced.
//! * A directory, a block device or a socket is refused.
//!
//! Every error names the path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Symlinks followed before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// A checked output path with its file open; [`Output::write`] fills and publishes it.
/// Dropped unwritten, it removes its temporary file.
pub struct Output {
    /// The path as the user gave it (for messages).
    path: PathBuf,
    /// Taken by [`Output::write`].
    file: Option<File>,
    /// `None` for a device or FIFO, written in place.
    publish: Option<Publish>,
}

/// A temporary file to move to `target` at the end.
struct Publish {
    target: PathBuf,
    tmp: PathBuf,
    /// `target` is an existing file the user let us replace.
    overwrite: bool,
}

/// The file being written; write errors name the output path.
pub struct Sink {
    file: File,
    path: PathBuf,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf).map_err(|e| named(&self.path, e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(|e| named(&self.path, e))
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn refuse(path: &Path, reason: impl Into<String>) -> Error {
    Error::RefusedOutput { path: path.display().to_string(), reason: reason.into() }
}

/// `path` with every symlink along the last component followed (relative links resolve
/// against the link's directory). A dangling link gives the path it points to.
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).map_err(|e| Error::io_at(&p, e))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(refuse(path, format!("more than {MAX_LINKS} levels of symlinks")))
}

#[cfg(unix)]
fn is_stream(t: &fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    t.is_char_device() || t.is_fifo()
}
#[cfg(not(unix))]
fn is_stream(_: &fs::FileType) -> bool {
    false
}

impl Output {
    /// Checks `path` and opens what will be written, before any long work: a refused or
    /// unwritable output fails here.
    pub fn create(path: impl AsRef<Path>, force: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // `metadata` follows every link, /proc's magic ones too (`/dev/stdout` to a pipe).
        let (overwrite, perms) = match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => (false, None),
            Err(e) => return Err(Error::io_at(&path, e)),
            Ok(m) if m.is_file() && !force => {
                return Err(refuse(&path, "the file exists (pass --force to overwrite it)"));
            }
            Ok(m) if m.is_file() => (true, Some(m.permissions())),
            Ok(m) if m.is_dir() => return Err(refuse(&path, "it is a directory")),
            Ok(m) if is_stream(&m.file_type()) => {
                // Written in place; opening a FIFO waits for its reader.
                let file = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io_at(&path, e))?;
                return Ok(Self { path, file: Some(file), publish: None });
            }
            Ok(_) => return Err(refuse(&path, "it is neither a regular file nor a character device or FIFO")),
        };
        // A new or regular file: the temporary one goes beside the link's target, for the rename.
        let target = follow_links(&path)?;
        let name = target.file_name().ok_or_else(|| refuse(&path, "it names no file"))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".{}.partial", std::process::id()));
        let tmp = target.with_file_name(tmp_name);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| Error::io_at(&path, e))?;
        // From here on, dropping `out` removes `tmp`.
        let out = Self { path, file: Some(file), publish: Some(Publish { target, tmp, overwrite }) };
        if let (Some(p), Some(publish)) = (perms, &out.publish) {
            fs::set_permissions(&publish.tmp, p).map_err(|e| Error::io_at(&publish.tmp, e))?;
        }
        Ok(out)
    }

    /// Runs `f` on a buffered writer into the output, then publishes it (moves the temporary
    /// file into place). On any error the temporary file is removed.
    pub fn write(mut self, f: impl FnOnce(&mut BufWriter<Sink>) -> Result<()>) -> Result<()> {
        let file = self.file.take().ok_or_else(|| Error::Io(format!("{}: written twice", self.path.display())))?;
        let mut w = BufWriter::with_capacity(8 << 20, Sink { file, path: self.path.clone() });
        f(&mut w)?;
        w.flush()?;
        drop(w);
        let Some(Publish { target, tmp, overwrite }) = &self.publish else { return Ok(()) };
        if *overwrite {
            return fs::rename(tmp, target).map_err(|e| Error::io_at(&self.path, e));
        }
        // A hard link publishes without replacing a file that appeared meanwhile (the
        // temporary name is removed on drop).
        match fs::hard_link(tmp, target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(refuse(&self.path, "a file appeared there while writing (pass --force to overwrite it)"))
            }
            // A file system without hard links: a plain rename.
            Err(_) => fs::rename(tmp, target).map_err(|e| Error::io_at(&self.path, e)),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Gone after a rename; still there after a hard link or a failure.
        if let Some(p) = &self.publish {
            let _ = fs::remove_file(&p.tmp);
        }
    }
}
