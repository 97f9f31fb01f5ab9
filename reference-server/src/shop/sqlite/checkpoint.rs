//! WAL checkpoints off the event loop. By default SQLite checkpoints inside
//! the commit that pushes the WAL past 1000 pages, on the committing
//! worker's event loop, and a checkpoint ends in `fsync`: on a busy disk
//! that stalled workers for hundreds of milliseconds (two workers' p99 for
//! add-item + checkout was 300-600 ms, and 4 ms with the `fsync` turned off). So each store's
//! connection turns automatic checkpoints off, and a thread with its own
//! connection runs a PASSIVE checkpoint (never waits for readers or
//! writers) four times a second. Under a steady stream of writes a PASSIVE
//! checkpoint never catches up with the last frames, so the WAL is never
//! restarted and grows without end (400 MB in 8 s of a write benchmark);
//! when it holds more than [`RESTART_FRAMES`], a RESTART checkpoint follows,
//! which holds new writers back only while it copies the few frames written
//! since the PASSIVE one, and lets the next writer start the WAL over.
//! Several workers' threads may try at once; SQLite lets one run and the
//! others skip.
//!
//! Not for: durability; `synchronous=NORMAL` decides that (see `mod.rs`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{ErrorCode, OpenFlags};

use super::open_conn;

/// How often the WAL is checkpointed.
pub const EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages, 4 KiB each) above which the WAL is restarted.
pub const RESTART_FRAMES: i64 = 2_000;

/// The checkpoint thread of one store; it stops within [`EVERY`] of this
/// being dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    pub fn start(path: &Path, busy: Duration) -> anyhow::Result<Self> {
        let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE, busy)
            .with_context(|| format!("opening {} for WAL checkpoints", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("shop-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EVERY);
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let frames = match checkpoint(&conn, "PASSIVE") {
                        Ok(frames) => frames,
                        Err(e) => {
                            eprintln!("[shop] WAL checkpoint of {shown} failed: {e}");
                            continue;
                        }
                    };
                    if frames > RESTART_FRAMES {
                        if let Err(e) = checkpoint(&conn, "RESTART") {
                            eprintln!("[shop] WAL restart of {shown} failed: {e}");
                        }
                    }
                }
            })
            .context("starting the WAL checkpoint thread")?;
        Ok(Self { stop })
    }
}

/// Run one checkpoint; the WAL's size in frames afterwards (0 if another
/// checkpoint was running, which is not an error).
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    // Returns (busy, frames in the WAL, frames checkpointed).
    match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(1)) {
        Ok(frames) => Ok(frames),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => Ok(0),
        Err(e) => Err(e),
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
