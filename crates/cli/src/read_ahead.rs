//! A wide CSV read and parsed on its own thread, in batches of records, while
//! the caller scores and writes the batch before (`detect`'s two stages: on
//! its 1 M-row fleet, reading is about as much work as scoring and writing).

use std::io::BufRead;
use std::panic::resume_unwind;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use fieldpulse_models::wide_csv::{
    RejectCounts, TimeFormat, WideCsvError, WideCsvReader, WideRecord,
};

/// Records per batch: one channel hand-off per batch is nothing against the
/// rows' parsing; the batches in flight keep both threads busy.
pub const BATCH_ROWS: usize = 1024;

/// Batches parsed ahead of the one the caller holds.
const IN_FLIGHT: usize = 4;

/// What the reading thread knows once the input is read.
#[derive(Debug, Clone, Copy)]
pub struct ReadTotals {
    /// Rejected rows and missing values.
    pub counts: RejectCounts,
    /// The time format detected from the first time value (`None` without rows).
    pub time_format: Option<TimeFormat>,
}

type Batch = Result<Vec<WideRecord>, WideCsvError>;

/// Batches of records, in input order, from a reading thread. Dropping it
/// stops the thread at its next batch (a caller that fails part-way).
pub struct ReadAhead<'scope> {
    batches: Receiver<Batch>,
    spent: Sender<Vec<WideRecord>>,
    thread: ScopedJoinHandle<'scope, ReadTotals>,
}

impl<'scope> ReadAhead<'scope> {
    /// Starts reading `reader`'s records on a thread of `scope`.
    pub fn spawn<'env, R: BufRead + Send + 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        reader: WideCsvReader<R>,
    ) -> Self {
        let (tx, batches) = sync_channel(IN_FLIGHT);
        let (spent, spent_rx) = channel();
        let thread = scope.spawn(move || read_batches(reader, &tx, &spent_rx));
        Self {
            batches,
            spent,
            thread,
        }
    }

    /// The next batch (never empty); `None` at the end of the input. An I/O
    /// error comes after every batch read before it.
    pub fn next_batch(&mut self) -> Option<Batch> {
        self.batches.recv().ok()
    }

    /// Hands a batch back, so its records' buffers are reused.
    pub fn recycle(&self, batch: Vec<WideRecord>) {
        // The thread may have finished: then the batch is simply dropped.
        let _ = self.spent.send(batch);
    }

    /// Waits for the thread (the input read to its end or to an error) and
    /// returns its totals.
    pub fn finish(self) -> ReadTotals {
        drop(self.batches);
        self.thread
            .join()
            .unwrap_or_else(|panic| resume_unwind(panic))
    }
}

/// The reading thread: fills batches (reused ones first) until the input
/// ends, an I/O error (sent after the rows before it) or the caller hangs up.
fn read_batches<R: BufRead>(
    mut reader: WideCsvReader<R>,
    tx: &SyncSender<Batch>,
    spent: &Receiver<Vec<WideRecord>>,
) -> ReadTotals {
    loop {
        let mut batch = spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_ROWS));
        let (mut n, mut failed, mut ended) = (0, None, false);
        while n < BATCH_ROWS {
            if n == batch.len() {
                batch.push(WideRecord::default());
            }
            match reader.next_record(&mut batch[n]) {
                Ok(true) => n += 1,
                Ok(false) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        batch.truncate(n);
        let hung_up = n > 0 && tx.send(Ok(batch)).is_err();
        if let Some(e) = failed {
            let _ = tx.send(Err(e));
            break;
        }
        if ended || hung_up {
            break;
        }
    }
    ReadTotals {
        counts: reader.counts(),
        time_format: reader.layout().time_format,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use fieldpulse_models::wide_csv::WideCsvOptions;

    use super::*;

    fn csv(rows: usize) -> String {
        let mut text = String::from("ts,x\n");
        for i in 0..rows {
            text.push_str(&format!("{},{}\n", 1_767_225_600 + i, i % 13));
        }
        text
    }

    #[test]
    fn every_record_arrives_in_order_across_batches() {
        let rows = 2 * BATCH_ROWS + 17;
        let text = csv(rows);
        let reader =
            WideCsvReader::new(text.as_bytes(), &WideCsvOptions::default()).expect("layout");
        let (seen, totals) = std::thread::scope(|s| {
            let mut ahead = ReadAhead::spawn(s, reader);
            let mut seen = Vec::new();
            while let Some(batch) = ahead.next_batch() {
                let batch = batch.expect("no I/O error");
                assert!(!batch.is_empty());
                seen.extend(batch.iter().map(|r| (r.line_no, r.values[0])));
                ahead.recycle(batch);
            }
            (seen, ahead.finish())
        });
        assert_eq!(seen.len(), rows);
        for (i, (line, x)) in seen.iter().enumerate() {
            assert_eq!((*line, *x), (i as u64 + 2, (i % 13) as f64));
        }
        assert_eq!(totals.counts.rejected_rows(), 0);
        assert_eq!(totals.time_format, Some(TimeFormat::EpochSeconds));
    }

    /// Fails after `ok` bytes, like a disk error part-way through a file.
    struct FailAfter {
        data: Vec<u8>,
        at: usize,
        ok: usize,
    }

    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= self.ok {
                return Err(std::io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.ok - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn an_io_error_comes_after_the_rows_read_before_it() {
        let text = csv(3 * BATCH_ROWS);
        let ok = text.len() / 2;
        let input = BufReader::with_capacity(
            256,
            FailAfter {
                data: text.into_bytes(),
                at: 0,
                ok,
            },
        );
        let reader = WideCsvReader::new(input, &WideCsvOptions::default()).expect("layout");
        let (rows, err) = std::thread::scope(|s| {
            let mut ahead = ReadAhead::spawn(s, reader);
            let mut rows = 0;
            let mut err = None;
            while let Some(batch) = ahead.next_batch() {
                match batch {
                    Ok(b) => rows += b.len(),
                    Err(WideCsvError::Io(e)) => err = Some(e.to_string()),
                    Err(e) => panic!("not an I/O error: {e}"),
                }
            }
            ahead.finish();
            (rows, err)
        });
        assert!(rows > BATCH_ROWS && rows < 2 * BATCH_ROWS, "{rows} rows");
        assert!(err.expect("the error arrives").contains("disk gone"));
    }

    #[test]
    fn a_caller_that_stops_early_stops_the_thread() {
        let text = csv(20 * BATCH_ROWS);
        let reader =
            WideCsvReader::new(text.as_bytes(), &WideCsvOptions::default()).expect("layout");
        std::thread::scope(|s| {
            let mut ahead = ReadAhead::spawn(s, reader);
            let first = ahead.next_batch().expect("a batch").expect("no error");
            assert_eq!(first.len(), BATCH_ROWS);
            // Dropped with batches still to come: the scope's join must return.
            drop(ahead);
        });
    }
}
