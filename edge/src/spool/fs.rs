//! The file layer under the spool: a small trait with exactly the operations the
//! spool performs, and [`StdFileLayer`], the real implementation over `std::fs`.
//!
//! The trait exists so that a test implementation can model what survives a power
//! cut (bytes written but not yet fsynced, directory entries not yet made durable by
//! a directory fsync). Every method names one syscall-sized step so that such a
//! model can fail or crash between any two of them.

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::Path,
};

/// One entry of a directory listing: the file name and its length in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name without the directory.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
}

/// File name of the lock that keeps a second process out of a spool directory.
pub const LOCK_FILE: &str = "spool.lock";

/// An exclusive lock on a spool directory, released when dropped (or when the
/// process dies, so a killed agent never leaves a stale lock behind).
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

impl DirLock {
    /// A lock that holds nothing, for file layers without other processes.
    pub fn unlocked() -> Self {
        Self { _file: None }
    }
}

/// File operations the spool needs; implemented by [`StdFileLayer`] and by test layers.
pub trait FileLayer: Send + Sync + fmt::Debug {
    /// Takes the exclusive lock of `dir` without waiting; `WouldBlock` if another
    /// open spool holds it.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Lists the regular files in `dir` (not recursive).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for positioned reads.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadAt>>;
    /// Creates a new file (failing if it exists) and opens it for appending.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Creates or truncates a file and opens it for appending.
    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Shortens a file to `len` bytes and makes that durable (fsync).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file (durable only after [`FileLayer::sync_dir`]).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` over `to` (durable only after [`FileLayer::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs a directory so that creations, removals and renames in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file opened for appending.
pub trait AppendFile: Send + fmt::Debug {
    /// Appends all of `data` (not durable until [`AppendFile::sync_data`]).
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file opened for positioned reads.
pub trait ReadAt: Send + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length of the file in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// The real file layer over `std::fs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileLayer;

#[derive(Debug)]
struct StdAppendFile(File);

#[derive(Debug)]
struct StdReadFile(File);

impl FileLayer for StdFileLayer {
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        // An advisory lock (flock on Unix): released by the kernel when the process
        // exits, however it exits.
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: Some(file) }),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(err)) => Err(err),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            // Names that are not UTF-8 cannot be ours; list them lossily as foreign files.
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(DirEntry {
                name,
                len: meta.len(),
            });
        }
        Ok(entries)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadAt>> {
        Ok(Box::new(StdReadFile(File::open(path)?)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(StdAppendFile(file)))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdAppendFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(StdAppendFile(file)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On Unix a directory is fsynced through a read-only handle on it. Other
        // platforms cannot open directories; there the rename/create is as durable
        // as the OS makes it.
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
}

impl AppendFile for StdAppendFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl ReadAt for StdReadFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = &self.0;
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(buf)
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}
