//! The crate's one error type. `lib.rs` maps each kind onto a Python exception class of
//! `conda_pack.errors`, keeping the OS error as the `__cause__`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}{}", path.display(), held_hint(source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file's prefix cannot be rewritten as asked (e.g. no room for a longer prefix).
    #[error("{}: {message}", path.display())]
    Relocation { path: PathBuf, message: String },
    /// The archive format cannot hold what was asked (e.g. ZIP64 needed but disabled).
    #[error("{0}")]
    Format(String),
    /// An archive being unpacked is damaged, or holds what would leave the destination.
    #[error("{0}")]
    Archive(String),
    /// Metadata that should be JSON is not.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The caller asked us to stop (Ctrl-C, or another worker failed first).
    #[error("interrupted")]
    Cancelled,
    /// A bad argument from the Python side: a bug in the caller, not a user mistake.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a file another program holds (Windows enforces that; see
/// [`crate::host::held_elsewhere`]).
fn held_hint(e: &io::Error) -> &'static str {
    if crate::host::held_elsewhere(e) {
        " (another program has it open without sharing it, or has locked it: close that \
         program and pack again, or leave the file out with --exclude)"
    } else {
        ""
    }
}

impl Error {
    /// An I/O failure at `path`; a stream stopped by [`Cancel`] is [`Error::Cancelled`].
    pub fn io(path: PathBuf, source: io::Error) -> Error {
        if is_cancelled_io(&source) {
            Error::Cancelled
        } else {
            Error::Io { path, source }
        }
    }
}

/// The stop flag of one archive, shared by everything working on it: the packer's
/// readers and writer and the compressors' own threads, which look at it between blocks.
/// Once set (Ctrl-C, or a failure elsewhere) the archive is abandoned, never finished.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// [`Cancel::check`] inside byte streams, whose errors are `io::Error`s.
    pub fn check_io(&self) -> io::Result<()> {
        if self.is_cancelled() {
            Err(cancelled_io())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
impl Cancel {
    /// Cancel from another thread `ms` from now; joined, it tells when.
    pub fn after(&self, ms: u64) -> std::thread::JoinHandle<std::time::Instant> {
        let cancel = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            cancel.cancel();
            std::time::Instant::now()
        })
    }
}

/// How long a cancelled piece of work took to stop: `stop` runs it and says, tried again
/// (three times at most) while it takes `bound` or more. The scheduler of a loaded machine
/// (tests run beside each other, CI beside other jobs) can hold a thread that long now and
/// then; work that does not look at the flag takes many times longer on every try.
#[cfg(test)]
pub fn quickest_stop(
    bound: std::time::Duration,
    mut stop: impl FnMut() -> std::time::Duration,
) -> std::time::Duration {
    let mut took = stop();
    for _ in 1..3 {
        if took < bound {
            break;
        }
        took = took.min(stop());
    }
    took
}

#[derive(Debug)]
struct CancelledIo;

impl std::fmt::Display for CancelledIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for CancelledIo {}

/// The error a byte stream stops with once its archive is cancelled. Not
/// `ErrorKind::Interrupted`: `write_all` would retry that.
pub fn cancelled_io() -> io::Error {
    io::Error::other(CancelledIo)
}

pub fn is_cancelled_io(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CancelledIo>())
}

/// Attach a path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
    /// [`IoContext::at`] with the path made only on error: for calls made once per file,
    /// where building the path every time would cost an allocation per file.
    fn at_with(self, path: impl FnOnce() -> PathBuf) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.at_with(|| path.to_path_buf())
    }

    fn at_with(self, path: impl FnOnce() -> PathBuf) -> Result<T> {
        self.map_err(|source| Error::io(path(), source))
    }
}
