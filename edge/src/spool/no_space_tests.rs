//! A full filesystem under the spool: `append` and `sync` roll back to the last sync instead of
//! poisoning the spool, leave no trace on disk, and the spool goes on as if the failed appends
//! never happened. See: issue #12 item 7.

use std::{path::Path, sync::Arc};

use super::{
    fs::{DirEntry, FileLayer, StdFileLayer},
    full_fs::FullFs,
    FullPolicy, Spool, SpoolConfig,
};

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
    fs.set_full(true);
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
    fs.set_full(false);
    for i in 200..203 {
        spool.append(&payload(i), 1).unwrap();
    }
    fs.set_full(true);
    let err = spool.sync().unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert_eq!(spool.stats(), stats);
    assert_eq!(segment_files(dir.path()), files);

    // A roll succeeded before the disk filled up: its segment goes, the sealed one is
    // truncated and becomes the active segment again.
    fs.set_full(false);
    for i in 400..420 {
        spool.append(&payload(i), 1).unwrap();
    }
    assert!(segment_files(dir.path()).len() > files.len(), "rolled");
    fs.set_full(true);
    let err = spool.sync().unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert_eq!(spool.stats(), stats);
    assert_eq!(segment_files(dir.path()), files);

    // Space again: the spool goes on (across a roll) as if nothing had happened.
    fs.set_full(false);
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
    fs.set_eio(true);
    let err = spool.sync().unwrap_err();
    assert!(!err.is_no_space(), "{err}");
    fs.set_eio(false);
    assert!(matches!(
        spool.append(b"y", 1),
        Err(super::SpoolError::Poisoned { .. })
    ));
}
