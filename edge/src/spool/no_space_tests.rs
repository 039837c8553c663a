//! A full filesystem under the spool: `append` and `sync` roll back to the last sync instead of
//! poisoning the spool, leave no trace on disk, and the spool goes on as if the failed appends
//! never happened. See: issue #12 item 7.

use std::{
    io,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::{
    fs::{AppendFile, DirEntry, DirLock, FileLayer, ReadAt, StdFileLayer},
    FullPolicy, Spool, SpoolConfig,
};

/// The real file layer, switchable to "full": creating a file fails with `ENOSPC`, and an
/// append to a segment writes half its bytes and then fails (a partial write, as the kernel
/// does). Ledger appends, removals and truncations still work. `eio` makes segment appends fail
/// with `EIO` instead (a failing disk).
#[derive(Debug, Clone, Default)]
struct FullFs(Arc<AtomicBool>, Arc<AtomicBool>);

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

#[derive(Debug)]
struct FullFile {
    inner: Box<dyn AppendFile>,
    full: Arc<AtomicBool>,
    eio: Arc<AtomicBool>,
    segment: bool,
}

impl AppendFile for FullFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.segment && self.eio.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if self.segment && self.full.load(Ordering::SeqCst) {
            self.inner.write_all(&data[..data.len() / 2])?;
            return Err(enospc());
        }
        self.inner.write_all(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl FullFs {
    fn wrap(&self, path: &Path, inner: Box<dyn AppendFile>) -> Box<dyn AppendFile> {
        Box::new(FullFile {
            inner,
            full: Arc::clone(&self.0),
            eio: Arc::clone(&self.1),
            segment: path.extension().is_some_and(|ext| ext == "seg"),
        })
    }

    fn refuse_if_full(&self) -> io::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        Ok(())
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

fn payload(i: u32) -> Vec<u8> {
    let mut bytes = vec![(i % 251) as u8; 1000];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    bytes
}

/// (name, length) of every segment file.
fn segment_files(dir: &Path) -> Vec<DirEntry> {
    let mut files: Vec<DirEntry> = StdFileLayer
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.name.ends_with(".seg"))
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

#[test]
fn a_full_filesystem_rolls_the_spool_back_to_its_last_sync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FullFs::default();
    let cfg = SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes: 16 * 1024,
        policy: FullPolicy::Backpressure,
    };
    let (mut spool, _) = Spool::open_with(Arc::new(fs.clone()), dir.path(), cfg).unwrap();
    let mut expected = Vec::new();
    for i in 0..10 {
        spool.append(&payload(i), 1).unwrap();
        expected.push(payload(i));
    }
    spool.sync().unwrap();
    let stats = spool.stats();
    let files = segment_files(dir.path());

    // Full while appending across a segment boundary: the roll cannot create its file.
    fs.0.store(true, Ordering::SeqCst);
    let mut failed = None;
    for i in 100..140 {
        if let Err(err) = spool.append(&payload(i), 1) {
            failed = Some(err);
            break;
        }
    }
    let err = failed.expect("a 16 KiB segment cannot take 40 KB");
    assert!(err.is_no_space(), "{err}");
    assert_eq!(spool.stats(), stats, "memory is back at the last sync");
    assert_eq!(segment_files(dir.path()), files, "and so are the files");

    // Full at the sync: the buffered frames are half written, then refused.
    fs.0.store(false, Ordering::SeqCst);
    for i in 200..203 {
        spool.append(&payload(i), 1).unwrap();
    }
    fs.0.store(true, Ordering::SeqCst);
    let err = spool.sync().unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert_eq!(spool.stats(), stats);
    assert_eq!(segment_files(dir.path()), files);

    // A roll succeeded before the disk filled up: its segment goes, the sealed one is
    // truncated and becomes the active segment again.
    fs.0.store(false, Ordering::SeqCst);
    for i in 400..420 {
        spool.append(&payload(i), 1).unwrap();
    }
    assert!(segment_files(dir.path()).len() > files.len(), "rolled");
    fs.0.store(true, Ordering::SeqCst);
    let err = spool.sync().unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert_eq!(spool.stats(), stats);
    assert_eq!(segment_files(dir.path()), files);

    // Space again: the spool goes on (across a roll) as if nothing had happened.
    fs.0.store(false, Ordering::SeqCst);
    for i in 300..330 {
        spool.append(&payload(i), 1).unwrap();
        expected.push(payload(i));
    }
    spool.sync().unwrap();
    assert_eq!(spool.stats().uncut_records, 40);
    let got: Vec<Vec<u8>> = spool
        .read_uncut()
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got, expected);
    drop(spool);

    let (spool, report) = Spool::open(dir.path(), cfg).unwrap();
    assert!(report.is_clean(), "no torn tail or stray record: {report}");
    assert_eq!(report.records, 40);
    let got: Vec<Vec<u8>> = spool
        .read_uncut()
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(got, expected, "only the synced records, each once");
}

#[test]
fn other_write_errors_still_poison_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FullFs::default();
    let (mut spool, _) =
        Spool::open_with(Arc::new(fs.clone()), dir.path(), SpoolConfig::default()).unwrap();
    spool.append(b"x", 1).unwrap();
    fs.1.store(true, Ordering::SeqCst);
    let err = spool.sync().unwrap_err();
    assert!(!err.is_no_space(), "{err}");
    fs.1.store(false, Ordering::SeqCst);
    assert!(matches!(
        spool.append(b"y", 1),
        Err(super::SpoolError::Poisoned { .. })
    ));
}
