//! Read-only memory maps of block files and head chunk files: the one place in the crate that uses
//! `unsafe`.
//!
//! Block readers decode lazily straight out of the mapped bytes, so the resident memory of an
//! opened block is what the kernel pages in, not a copy (issue 3, point 2). Everything above this
//! module sees a plain `&[u8]`.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

/// The bytes of a file: mapped read-only, or owned (tests, fuzzing, empty files).
pub struct Mapped {
    inner: Inner,
}

enum Inner {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Mapped {
    /// Maps the whole file at `path` read-only.
    pub fn open(path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            // A zero-length mapping is an error on some platforms; nothing to map anyway.
            return Ok(Mapped::from_vec(Vec::new()));
        }
        // SAFETY: the mapping is read-only and private to this process. Memory-mapped files are
        // only sound while nobody truncates or rewrites them; block files are immutable once their
        // directory has been renamed into place (writers build them under `*.tmp-for-creation`
        // and never reopen them for writing), and deletion only unlinks the name, which leaves an
        // existing mapping valid. A file changed behind our back by another program is outside
        // what this database supports, as it is for Prometheus.
        // Head chunk files (`chunks_head/`, see `crate::head::chunks_disk`) are the one kind of
        // file mapped while it is still written: they are only ever appended to, so the bytes
        // within this mapping's length never change; a mapped file is never truncated (a torn
        // tail is cut off on open before the file is mapped again) and deleting it only unlinks.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped {
            inner: Inner::Map(map),
        })
    }

    /// Wraps bytes already in memory (used by tests and fuzz bodies).
    pub fn from_vec(data: Vec<u8>) -> Mapped {
        Mapped {
            inner: Inner::Owned(data),
        }
    }
}

impl std::fmt::Debug for Mapped {
    /// The length only: a block's files can be gigabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Map(_) => "mapped",
            Inner::Owned(_) => "owned",
        };
        write!(f, "Mapped({kind}, {} bytes)", self.len())
    }
}

impl Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Map(m) => m,
            Inner::Owned(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_file_contents_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(&*Mapped::open(&p).unwrap(), b"hello");
        let e = dir.path().join("e");
        std::fs::write(&e, b"").unwrap();
        assert!(Mapped::open(&e).unwrap().is_empty());
        assert!(Mapped::open(&dir.path().join("missing")).is_err());
        assert_eq!(
            format!("{:?}", Mapped::open(&p).unwrap()),
            "Mapped(mapped, 5 bytes)"
        );
    }
}
