//! A full (or failing) disk for tests: the real file layer, switchable at run time to answer
//! like a filesystem without space (`ENOSPC`) or a failing disk (`EIO`). The spool's no-space
//! tests and the agent's disk-full test use it; the product never does.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::fs::{AppendFile, DirEntry, DirLock, FileLayer, ReadAt, StdFileLayer};

/// The real file layer over which "full" makes creating a file fail with `ENOSPC` and an append
/// to a segment write half its bytes and then fail (a partial write, as the kernel does); the
/// ledger's small appends still succeed (they land in the file's allocated tail block), and
/// removing and truncating files works and frees space. "eio" makes segment appends fail with
/// `EIO` instead. Clones share the switches.
#[derive(Debug, Clone, Default)]
pub struct FullFs {
    full: Arc<AtomicBool>,
    eio: Arc<AtomicBool>,
}

impl FullFs {
    /// Switches "the filesystem is full" on or off.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Switches "the disk fails" (`EIO` on segment appends) on or off.
    pub fn set_eio(&self, eio: bool) {
        self.eio.store(eio, Ordering::SeqCst);
    }

    fn refuse_if_full(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn wrap(&self, path: &Path, inner: Box<dyn AppendFile>) -> Box<dyn AppendFile> {
        Box::new(FullFile {
            inner,
            fs: self.clone(),
            segment: path.extension().is_some_and(|ext| ext == "seg"),
        })
    }
}

#[derive(Debug)]
struct FullFile {
    inner: Box<dyn AppendFile>,
    fs: FullFs,
    segment: bool,
}

impl AppendFile for FullFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.segment && self.fs.eio.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if self.segment && self.fs.full.load(Ordering::SeqCst) {
            // What fits is written, then the write fails.
            self.inner.write_all(&data[..data.len() / 2])?;
            return self.fs.refuse_if_full();
        }
        self.inner.write_all(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl FileLayer for FullFs {
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        StdFileLayer.lock_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFileLayer.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdFileLayer.list_dir(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFileLayer.read(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadAt>> {
        StdFileLayer.open_read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.refuse_if_full()?;
        Ok(self.wrap(path, StdFileLayer.create_new(path)?))
    }
    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.refuse_if_full()?;
        Ok(self.wrap(path, StdFileLayer.create_truncate(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(self.wrap(path, StdFileLayer.open_append(path)?))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        StdFileLayer.truncate(path, len)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileLayer.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileLayer.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFileLayer.sync_dir(dir)
    }
}
