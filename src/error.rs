//! The crate's one error type. `lib.rs` maps each kind onto a Python exception class of
//! `conda_pack.errors`, keeping the OS error as the `__cause__`.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
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
        self.map_err(|source| Error::Io {
            path: path(),
            source,
        })
    }
}
