//! Batches of an input file prepared on worker threads and handed on in input order.
//!
//! One thread decodes the file, `workers` threads [`prepare`] its batches, and the caller's
//! thread takes them back in the order they were read. At most [`IN_FLIGHT`] batches per
//! worker are between reading and the caller at any time, so memory is bounded by the
//! batch size, not the file.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use super::process::{prepare, Prepared};
use super::*;

/// Batches in flight per worker.
const IN_FLIGHT: usize = 2;

/// Reads `file` and hands each batch, prepared, to `sink`, in file order. With one worker
/// everything runs on the caller's thread.
pub(super) fn for_each_prepared(
    file: &InputFile,
    workers: usize,
    max_ts_ms: i64,
    ids: &IdHasher,
    sink: &mut dyn FnMut(Prepared) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    if workers <= 1 {
        let mut offset = 0u64;
        return read_batches(file, &mut |batch| {
            let n = batch.num_rows() as u64;
            let prepared = prepare(file, batch, offset, max_ts_ms, ids)?;
            offset += n;
            sink(prepared)
        });
    }
    let in_flight = workers * IN_FLIGHT;
    // Tokens bound the batches between the reader and the sink.
    let (token_tx, token_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = token_tx.send(());
    }
    let (work_tx, work_rx) = sync_channel::<(u64, u64, RecordBatch)>(in_flight);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = sync_channel::<(u64, Result<Prepared, LedgerError>)>(in_flight);
    let work_rx = &work_rx;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let (mut seq, mut offset) = (0u64, 0u64);
            read_batches(file, &mut |batch| {
                let n = batch.num_rows() as u64;
                // A closed channel means the sink stopped: nothing more is wanted.
                if token_rx.recv().is_err() || work_tx.send((seq, offset, batch)).is_err() {
                    return Err(LedgerError::storage(&file.path, "ingestion stopped"));
                }
                seq += 1;
                offset += n;
                Ok(())
            })
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                while let Some((seq, offset, batch)) = next_job(work_rx) {
                    let prepared = prepare(file, batch, offset, max_ts_ms, ids);
                    if done_tx.send((seq, prepared)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut pending: BTreeMap<u64, Result<Prepared, LedgerError>> = BTreeMap::new();
        let mut next = 0u64;
        let mut failure: Option<LedgerError> = None;
        'receive: for (seq, prepared) in done_rx.iter() {
            pending.insert(seq, prepared);
            while let Some(prepared) = pending.remove(&next) {
                next += 1;
                if let Err(e) = prepared.and_then(&mut *sink) {
                    failure = Some(e);
                    break 'receive;
                }
                let _ = token_tx.send(());
            }
        }
        // Closing the channels stops the reader and the workers.
        drop(done_rx);
        drop(token_tx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(LedgerError::storage(&file.path, "the reader failed")));
        match failure {
            Some(e) => Err(e),
            None => read,
        }
    })
}

fn next_job(work: &Mutex<Receiver<(u64, u64, RecordBatch)>>) -> Option<(u64, u64, RecordBatch)> {
    work.lock().ok()?.recv().ok()
}
