//! The spool gauges an operator watches between commits, refreshed every [`WATCH_INTERVAL`]:
//! free space on the spool's filesystem (`statvfs`) and the receive time of the oldest record
//! the cloud has not acknowledged (read from its envelope: one record, however long the
//! backlog).

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::envelope;
use crate::metrics::MetricsHandle;
use crate::spool::Spool;

/// How often the gauges are refreshed.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Refreshes the gauges until `stop` is cancelled.
pub async fn run(spool: Arc<Mutex<Spool>>, metrics: MetricsHandle, stop: CancellationToken) {
    loop {
        let task_spool = Arc::clone(&spool);
        let task_metrics = metrics.clone();
        // The spool lock may be held across a group fsync: wait on a blocking thread.
        let res = tokio::task::spawn_blocking(move || refresh(&task_spool, &task_metrics)).await;
        if let Err(err) = res {
            debug!(error = %err, "Spool watch refresh failed.");
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
}

fn refresh(spool: &Mutex<Spool>, metrics: &MetricsHandle) {
    let (dir, oldest) = {
        let spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
        (spool.dir().to_path_buf(), spool.oldest_unacked())
    };
    match oldest {
        Ok(oldest) => {
            let recv_ms = oldest
                .and_then(|record| envelope::parse_header(&record.payload).ok())
                // A record always has a receive time; 1 keeps "waiting" distinct from "none".
                .map_or(0, |header| header.recv_ms.max(1));
            metrics
                .inner()
                .oldest_unforwarded_ms
                .store(recv_ms, Ordering::Relaxed);
        }
        // Unreadable for now (IO error): keep the last value.
        Err(err) => debug!(error = %err, "Cannot read the oldest spooled record."),
    }
    refresh_free_bytes(&dir, metrics);
}

/// Stores the free bytes of the filesystem holding `dir` (unknown when `statvfs` fails).
pub fn refresh_free_bytes(dir: &Path, metrics: &MetricsHandle) {
    let free = fs_free_bytes(dir)
        .map_err(|err| debug!(dir = %dir.display(), error = %err, "statvfs failed."))
        .ok();
    metrics.inner().set_fs_free_bytes(free);
}

/// Bytes available to an unprivileged writer on the filesystem holding `path` (or its nearest
/// existing ancestor, for a spool directory not created yet).
///
/// # Errors
/// The `statvfs` error.
pub fn fs_free_bytes(path: &Path) -> io::Result<u64> {
    let mut probe = path;
    while !probe.exists() {
        match probe.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
            _ => {
                probe = Path::new(".");
                break;
            }
        }
    }
    statvfs_available(probe)
}

#[cfg(unix)]
fn statvfs_available(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; `statvfs` initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let stat = unsafe { stat.assume_init() };
    #[allow(
        clippy::unnecessary_cast,
        reason = "field widths differ between platforms"
    )]
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn statvfs_available(_path: &Path) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_are_measured_on_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let free = fs_free_bytes(&dir.path().join("not/yet/created")).unwrap();
        assert!(free > 0, "a test machine has some free space");
        assert!(fs_free_bytes(Path::new("/nonexistent-root-dir/x")).is_ok());
    }
}
