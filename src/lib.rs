//! `conda_pack._core`: the Python face of the byte-moving core. The only file that touches
//! pyo3: argument conversion, releasing the GIL around long work, the progress and Ctrl-C
//! bridge, and mapping errors onto `conda_pack.errors`.

pub mod archive;
pub mod buffers;
pub mod content;
pub mod error;
pub mod host;
pub mod index;
pub mod le;
pub mod memory;
pub mod meta;
pub mod ordered;
pub mod pack;
pub mod prefix;
pub mod scan;
#[cfg(unix)]
pub mod unpack;

use crate::archive::{Compression, DirArchive, TarArchive, ZipArchive};
use crate::content::{ContentSpec, Outcome, Report, Restore};
use crate::error::{Cancel, Error};
use crate::pack::{Content, PackEntry, PackOptions, Packer, Progress, Source};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

// The exception classes of `conda_pack.errors`, imported once when first raised.
mod py_errors {
    pyo3::import_exception!(conda_pack.errors, PackIOError);
    pyo3::import_exception!(conda_pack.errors, PrefixError);
    pyo3::import_exception!(conda_pack.errors, ArchiveFormatError);
    pyo3::import_exception!(conda_pack.errors, MetadataError);
    pyo3::import_exception!(conda_pack.errors, UnpackError);
}

/// The one conversion of the core's errors into Python's: each kind to its class of
/// `conda_pack.errors`, an I/O failure with the `OSError` as its `__cause__`.
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Io { path, source } => {
            let cause = PyOSError::new_err((
                source.raw_os_error().unwrap_or(0),
                source.to_string(),
                path.display().to_string(),
            ));
            let err = py_errors::PackIOError::new_err(message);
            err.set_cause(py, Some(cause));
            err
        }
        Error::Relocation { .. } => py_errors::PrefixError::new_err(message),
        Error::Format(m) => py_errors::ArchiveFormatError::new_err(m),
        Error::Archive(m) => py_errors::UnpackError::new_err(m),
        Error::Json { .. } => py_errors::MetadataError::new_err(message),
        Error::Cancelled => PyKeyboardInterrupt::new_err("interrupted"),
        Error::Invalid(m) => PyValueError::new_err(m),
    }
}

/// Integers whose bytes may be copied out as they lie in memory.
trait Native: Copy {}
impl Native for u32 {}
impl Native for u64 {}
impl Native for i32 {}

/// `v`'s elements as native-endian bytes, `v` freed once copied.
fn native_bytes<T: Native>(py: Python<'_>, v: Vec<T>) -> Bound<'_, PyBytes> {
    // SAFETY: `Native` types are plain integers: no padding, every byte initialised.
    let bytes = unsafe {
        std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(&v[..]))
    };
    PyBytes::new(py, bytes)
}

/// `v` as native u32s (`"I"`) when every value fits, else as u64s (`"Q"`).
fn narrowed(py: Python<'_>, v: Vec<u64>) -> (&'static str, Bound<'_, PyBytes>) {
    if v.iter().all(|&x| x <= u32::MAX as u64) {
        let v: Vec<u32> = v.into_iter().map(|x| x as u32).collect();
        ("I", native_bytes(py, v))
    } else {
        ("Q", native_bytes(py, v))
    }
}

type IndexResult<'py> = (Bound<'py, PyList>, Bound<'py, PyDict>, bool, Option<String>);

/// Walk a prefix and match it against conda's records, in one call:
/// `(packages, columns, windows, python_version)`. Packages are dicts of record fields
/// plus `placeholders` ("conda-meta", "paths.json" or "unknown"); `columns` is a dict of
/// [`index::Columns`]' fields, numbers as native-endian bytes.
#[pyfunction]
fn index_env<'py>(
    py: Python<'py>,
    prefix: PathBuf,
    skip_top: Vec<OsString>,
) -> PyResult<IndexResult<'py>> {
    let (packages_found, (cols, shared), windows, python_version) = py
        .detach(|| {
            index::index(&prefix, &skip_top).map(|mut idx| {
                let cols = index::Columns::new(idx.entries, &idx.packages);
                for p in &mut idx.packages {
                    p.record.paths = None;
                }
                (
                    idx.packages,
                    (cols, idx.shared_inodes),
                    idx.windows,
                    idx.python_version,
                )
            })
        })
        .map_err(|e| to_py(py, e))?;
    let packages = PyList::empty(py);
    for p in &packages_found {
        let r = &p.record;
        let d = PyDict::new(py);
        d.set_item("filename", &r.filename)?;
        d.set_item("name", &r.name)?;
        d.set_item("version", &r.version)?;
        d.set_item("build", &r.build)?;
        d.set_item("url", &r.url)?;
        d.set_item("subdir", &r.subdir)?;
        d.set_item("noarch", &r.noarch)?;
        d.set_item("link_source", &r.link_source)?;
        d.set_item("placeholders", p.placeholders.name())?;
        packages.append(d)?;
    }
    // Each column is copied into Python and its Rust copy freed at once, and offsets and
    // sizes go as u32s where they fit: the columns live as long as packing does, so their
    // bytes per file are most of what grows with an environment.
    let d = PyDict::new(py);
    let index::Columns {
        paths,
        ends,
        package,
        kind,
        size,
        flags,
        path_type,
        path_types,
        with_placeholder: ph,
    } = cols;
    let (ends_type, ends) = narrowed(py, ends);
    d.set_item("ends_type", ends_type)?;
    d.set_item("ends", ends)?;
    let (size_type, size) = narrowed(py, size);
    d.set_item("size_type", size_type)?;
    d.set_item("size", size)?;
    d.set_item("paths", PyBytes::new(py, &paths))?;
    drop(paths);
    d.set_item("package", native_bytes(py, package))?;
    d.set_item("kind", PyBytes::new(py, &kind))?;
    d.set_item("flags", PyBytes::new(py, &flags))?;
    d.set_item("path_type", PyBytes::new(py, &path_type))?;
    d.set_item("path_types", path_types)?;
    d.set_item("shared_inodes", native_bytes(py, shared))?;
    let p = PyDict::new(py);
    p.set_item("entry", native_bytes(py, ph.entry))?;
    p.set_item("placeholder", native_bytes(py, ph.placeholder))?;
    p.set_item("mode", native_bytes(py, ph.mode))?;
    p.set_item("strings", ph.strings)?;
    p.set_item("hashes", PyBytes::new(py, &ph.hashes))?;
    d.set_item("placeholders", p)?;
    drop(packages_found);
    // The index's tens of megabytes are free now; give them back before packing starts.
    memory::release_freed();
    Ok((packages, d, windows, python_version))
}

fn mode_arg(mode: &str) -> PyResult<prefix::Mode> {
    prefix::Mode::parse(mode)
        .ok_or_else(|| PyValueError::new_err(format!("unknown file mode {mode:?}")))
}

/// Replace `old` with `new` in `data` by conda's rules for `mode` ("text" or "binary").
#[pyfunction]
fn replace_prefix<'py>(
    py: Python<'py>,
    data: &[u8],
    mode: &str,
    old: &[u8],
    new: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let mode = mode_arg(mode)?;
    match prefix::replace_all(data, mode, old, new) {
        Ok((out, _)) => Ok(PyBytes::new(py, &out)),
        Err(e) => Err(py_errors::PrefixError::new_err(e.to_string())),
    }
}

/// The shebang line(s) for interpreter `prefix/exe` with `options`.
#[pyfunction]
fn format_shebang<'py>(
    py: Python<'py>,
    prefix: &[u8],
    exe: &[u8],
    options: &[u8],
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &prefix::format_shebang(prefix, exe, options))
}

/// `(interpreter, options)` of `data`'s shebang line, or None.
#[pyfunction]
fn parse_shebang<'py>(
    py: Python<'py>,
    data: &[u8],
) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    prefix::parse_shebang(data).map(|s| (PyBytes::new(py, s.exe), PyBytes::new(py, s.options)))
}

/// A File's sha256: none when absent or not 64 long (as in old records), an error when
/// 64 long but not hex.
fn hex32(s: Option<String>) -> PyResult<Option<[u8; 32]>> {
    match s {
        Some(s) if s.len() == 64 => meta::parse_sha256(&s)
            .map(Some)
            .ok_or_else(|| PyValueError::new_err(format!("bad sha256 {s:?}"))),
        _ => Ok(None),
    }
}

/// `(mode, env_prefix, placeholder, size, sha256, sha256_in_prefix, cache_path, verify_only)`
type RestoreArg = (
    String,
    Vec<u8>,
    Vec<u8>,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<PathBuf>,
    bool,
);
/// `(restore, probe_prefix, dest_prefix, shebang)`
type SpecArg = (Option<RestoreArg>, Option<Vec<u8>>, Option<Vec<u8>>, bool);

fn spec_arg(spec: SpecArg) -> PyResult<ContentSpec> {
    let (restore, probe, dest, shebang) = spec;
    let restore = match restore {
        None => None,
        Some((mode, env_prefix, placeholder, size, sha, sha_in, cache, verify_only)) => {
            Some(Restore {
                mode: mode_arg(&mode)?,
                env_prefix,
                placeholder,
                size,
                sha256: hex32(sha)?,
                sha256_in_prefix: hex32(sha_in)?,
                cache,
                verify_only,
            })
        }
    };
    Ok(ContentSpec {
        restore,
        probe,
        dest,
        shebang,
    })
}

/// One plan entry: `(target, source, content, mode, mtime, size)`. `source` is a path (an
/// environment file, archived as found), None (the file at `target` in the environment),
/// or bytes (generated content); `content` is None
/// (copy), an int (copy, reporting a size other than this one), `"conda-meta"`, or a spec
/// tuple (see `SpecArg`).
fn entry_arg(item: &Bound<'_, PyAny>) -> PyResult<PackEntry> {
    let t = item.cast::<PyTuple>()?;
    // Bytes straight from the file table's paths column, or a str.
    let target_obj = t.get_item(0)?;
    let target: Vec<u8> = match target_obj.cast::<PyBytes>() {
        Ok(b) => b.as_bytes().to_vec(),
        Err(_) => target_obj
            .extract::<PathBuf>()?
            .into_os_string()
            .into_encoded_bytes(),
    };
    let source_obj = t.get_item(1)?;
    let content_obj = t.get_item(2)?;
    let source = if let Ok(b) = source_obj.cast::<PyBytes>() {
        Source::Bytes(b.as_bytes().to_vec())
    } else {
        let path: Option<PathBuf> = if source_obj.is_none() {
            None
        } else {
            Some(source_obj.extract()?)
        };
        let content = if content_obj.is_none() {
            Content::Copy
        } else if let Ok(expected) = content_obj.extract::<u64>() {
            Content::CopyChecked(expected)
        } else if let Ok(s) = content_obj.extract::<String>() {
            match s.as_str() {
                CONTENT_CONDA_META => Content::CondaMeta,
                other => return Err(PyValueError::new_err(format!("unknown content {other:?}"))),
            }
        } else {
            Content::Process(Box::new(spec_arg(content_obj.extract()?)?))
        };
        Source::Path { path, content }
    };
    Ok(PackEntry {
        target,
        source,
        mode: t.get_item(3)?.extract()?,
        mtime: t.get_item(4)?.extract()?,
        size: t.get_item(5)?.extract::<Option<u64>>()?.unwrap_or(0),
    })
}

/// `(outcome, problem, modified, binary, contains, shebang, offsets)`; see `Report`.
type ReportTuple = (
    Option<&'static str>,
    Option<String>,
    Option<bool>,
    bool,
    bool,
    Option<(OsString, OsString, bool)>,
    Vec<u64>,
);

fn report_tuple(r: Report) -> ReportTuple {
    let outcome = r.outcome.map(Outcome::name);
    let bytes_path = |b: Vec<u8>| host::escaped(&b);
    let shebang = r
        .shebang
        .map(|s| (bytes_path(s.exe), bytes_path(s.options), s.rewritten));
    (
        outcome, r.problem, r.modified, r.binary, r.contains, shebang, r.offsets,
    )
}

/// An archive being written. `write` may be called several times (the generated files
/// come last); `finish` completes it. The caller owns the output path: it writes to a
/// temporary name and renames on success, removing it on failure.
#[pyclass(module = "conda_pack._core")]
struct ArchiveWriter {
    packer: Mutex<Packer>,
    /// Set on Ctrl-C (or a failing progress callback): every thread working on the
    /// archive stops within a block.
    cancel: Cancel,
}

/// Tell the caller's progress callback, if any, the files and bytes done so far.
fn report_progress(
    py: Python<'_>,
    progress: &Option<Py<PyAny>>,
    files: &AtomicU64,
    bytes: &AtomicU64,
) -> PyResult<()> {
    match progress {
        Some(cb) => cb
            .call1(
                py,
                (files.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
            )
            .map(|_| ()),
        None => Ok(()),
    }
}

/// Run `work` on a thread of its own with the GIL released, and meanwhile, about ten
/// times a second and until it returns, check for Ctrl-C and call `poll`. A pending signal
/// or a failing `poll` cancels the archive; its error is returned with the work's result
/// (which is then usually `Error::Cancelled`).
fn interruptible<T: Send>(
    py: Python<'_>,
    cancel: &Cancel,
    mut poll: impl FnMut(Python<'_>) -> PyResult<()> + Send,
    work: impl FnOnce() -> error::Result<T> + Send,
) -> (Option<PyErr>, error::Result<T>) {
    let mut interrupt: Option<PyErr> = None;
    let result = py.detach(|| {
        std::thread::scope(|s| {
            // Woken as soon as the work returns: a chunk of a big plan may take only
            // milliseconds, so sleeping out a full poll interval would add up.
            let (done, finished) = crossbeam_channel::bounded::<()>(1);
            let worker = s.spawn(move || {
                let r = work();
                drop(done);
                r
            });
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(100))
            {
                Python::attach(|py| {
                    if interrupt.is_some() {
                        return;
                    }
                    if let Err(e) = py.check_signals().and_then(|()| poll(py)) {
                        cancel.cancel();
                        interrupt = Some(e);
                    }
                });
            }
            worker
                .join()
                .unwrap_or(Err(Error::Invalid("packing thread panicked".into())))
        })
    });
    (interrupt, result)
}

fn compression(format: &str, level: i32) -> PyResult<Option<Compression>> {
    let lvl = level.max(0) as u32;
    Ok(Some(match format {
        "tar" => Compression::None,
        "tar.gz" => Compression::Gzip(lvl.min(9)),
        "tar.bz2" => Compression::Bzip2(lvl.clamp(1, 9)),
        "tar.xz" => Compression::Xz(lvl.min(9)),
        "tar.zst" => Compression::Zstd(level),
        "zip" | "dir" | "dir-linked" => return Ok(None),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown archive format {other:?}"
            )))
        }
    }))
}

#[pymethods]
impl ArchiveWriter {
    /// `format`: tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip, dir (copies), or dir-linked
    /// (a staging tree that may hard-link unchanged files). `mtime` is given to the
    /// directories a directory writer creates.
    #[new]
    /// `shared_inodes` (native u64s, from `index_env`) limits hard-link detection to those
    /// inodes; None checks every file with several links.
    #[pyo3(signature = (path, format, level, threads, arcroot, prefix, zip_symlinks=false, zip64=true, mtime=0, shared_inodes=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        format: &str,
        level: i32,
        threads: usize,
        arcroot: PathBuf,
        prefix: PathBuf,
        zip_symlinks: bool,
        zip64: bool,
        mtime: i64,
        shared_inodes: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let threads = threads.max(1);
        let comp = compression(format, level)?;
        let cancel = Cancel::default();
        let io = |e: std::io::Error| {
            to_py(
                py,
                Error::Io {
                    path: path.clone(),
                    source: e,
                },
            )
        };
        let archive: Box<dyn archive::Archive> = match (format, comp) {
            ("zip", _) => {
                let file = archive::create_output(&path).map_err(io)?;
                let lvl = level.clamp(0, 9) as u32;
                Box::new(ZipArchive::new(
                    file,
                    &path,
                    lvl,
                    zip_symlinks,
                    zip64,
                    threads,
                    &cancel,
                ))
            }
            ("dir", _) | ("dir-linked", _) => Box::new(
                DirArchive::new(&path, format == "dir-linked", mtime).map_err(|e| to_py(py, e))?,
            ),
            (_, Some(c)) => {
                let file = archive::create_output(&path).map_err(io)?;
                let enc = archive::Encoder::new(file, c, threads, &cancel).map_err(io)?;
                Box::new(TarArchive::new(enc, &path))
            }
            _ => unreachable!("compression() covers every format"),
        };
        let shared_inodes = shared_inodes.map(|b| {
            b.chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                .collect()
        });
        let opts = PackOptions {
            arcroot: host::bytes(arcroot.as_os_str()).to_vec(),
            prefix,
            threads,
            shared_inodes,
        };
        let packer = Packer::new(archive, opts).map_err(|e| to_py(py, e))?;
        Ok(ArchiveWriter {
            packer: Mutex::new(packer),
            cancel,
        })
    }

    /// Write entries in order, calling `progress(files_done, bytes_done)` about ten times
    /// a second. Returns `[(index, report)]` for entries with a content spec.
    #[pyo3(signature = (entries, progress=None))]
    fn write(
        &self,
        py: Python<'_>,
        entries: &Bound<'_, PyList>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(usize, ReportTuple)>> {
        let entries: Vec<PackEntry> = entries
            .iter()
            .map(|e| entry_arg(&e))
            .collect::<PyResult<_>>()?;
        let counters = Progress::new(&self.cancel);
        let mut guard = self
            .packer
            .lock()
            .map_err(|_| PyValueError::new_err("writer poisoned"))?;
        let packer: &mut Packer = &mut guard;
        let report =
            |py: Python<'_>| report_progress(py, &progress, &counters.files, &counters.bytes);
        let (interrupt, result) = interruptible(py, &self.cancel, report, || {
            packer.write(&entries, &counters)
        });
        if let Some(e) = interrupt {
            return Err(e);
        }
        report(py)?;
        let reports = result.map_err(|e| to_py(py, e))?;
        Ok(reports
            .into_iter()
            .map(|(i, r)| (i, report_tuple(r)))
            .collect())
    }

    /// The entries written from now on are the generated files, which an unpacker reads
    /// first (see `archive::blockindex`).
    fn mark_tail(&self) -> PyResult<()> {
        let mut guard = self
            .packer
            .lock()
            .map_err(|_| PyValueError::new_err("writer poisoned"))?;
        guard
            .mark_tail()
            .map_err(|e| Python::attach(|py| to_py(py, e)))
    }

    /// Complete the archive (trailers, central directory, flush).
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self
            .packer
            .lock()
            .map_err(|_| PyValueError::new_err("writer poisoned"))?;
        let packer: &mut Packer = &mut guard;
        // Finishing is where xz and zstd at high levels spend most of their time.
        let (interrupt, result) = interruptible(py, &self.cancel, |_| Ok(()), || packer.finish());
        if let Some(e) = interrupt {
            return Err(e);
        }
        result.map_err(|e| to_py(py, e))
    }
}

/// A job from Python: `(member path, placeholders, mode or None, shebang or None)`.
#[cfg(unix)]
type JobArg = (
    Vec<u8>,
    Vec<Vec<u8>>,
    Option<String>,
    Option<(Vec<u8>, Vec<u8>)>,
);

#[cfg(unix)]
fn jobs_arg(jobs: Vec<JobArg>) -> PyResult<Vec<(Vec<u8>, std::sync::Arc<unpack::Job>)>> {
    jobs.into_iter()
        .map(|(path, olds, mode, shebang)| {
            let mode = mode.as_deref().map(mode_arg).transpose()?;
            Ok((
                path,
                std::sync::Arc::new(unpack::Job {
                    olds,
                    mode,
                    shebang,
                }),
            ))
        })
        .collect()
}

/// conda-unpack's rewrite of one file's bytes for prefix `new` (None: unchanged).
#[cfg(unix)]
#[pyfunction]
#[pyo3(signature = (data, olds, mode, shebang, new))]
fn relocate_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    olds: Vec<Vec<u8>>,
    mode: Option<String>,
    shebang: Option<(Vec<u8>, Vec<u8>)>,
    new: &[u8],
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let mode = mode.as_deref().map(mode_arg).transpose()?;
    let job = unpack::Job {
        olds,
        mode,
        shebang,
    };
    match unpack::relocate::relocate(data, &job, new) {
        Ok(out) => Ok(out.map(|o| PyBytes::new(py, &o))),
        Err(e) => Err(py_errors::PrefixError::new_err(e.to_string())),
    }
}

/// Relocate files already unpacked under `root`, as conda-unpack would; returns how many
/// changed.
#[cfg(unix)]
#[pyfunction]
fn relocate_tree(
    py: Python<'_>,
    root: PathBuf,
    jobs: Vec<JobArg>,
    target: Vec<u8>,
    threads: usize,
) -> PyResult<u64> {
    let jobs = jobs_arg(jobs)?;
    let cancel = Cancel::default();
    let (interrupt, result) = interruptible(
        py,
        &cancel,
        |_| Ok(()),
        || unpack::relocate_tree(&root, &jobs, &target, threads, &cancel),
    );
    if let Some(e) = interrupt {
        return Err(e);
    }
    result.map_err(|e| to_py(py, e))
}

/// An archive to unpack (`conda-pack unpack`).
#[cfg(unix)]
#[pyclass(module = "conda_pack._core")]
struct Unpacker {
    archive: unpack::Archive,
}

#[cfg(unix)]
#[pymethods]
impl Unpacker {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let archive =
            unpack::Archive::open(&path).map_err(|e| to_py(py, Error::Io { path, source: e }))?;
        Ok(Unpacker { archive })
    }

    /// The format, from the file's bytes: tar, tar.gz, tar.bz2, tar.xz, tar.zst or zip.
    #[getter]
    fn format(&self) -> &'static str {
        self.archive.format.name()
    }

    #[getter]
    fn size(&self) -> u64 {
        self.archive.len
    }

    /// Whether the archive says where its blocks or frames start (our gzip block index,
    /// a zstd seek table): it is decompressed on every core.
    #[getter]
    fn indexed(&self) -> bool {
        self.archive.indexed()
    }

    /// The conda-unpack scripts of the archive, `[(member path, content)]`, read before
    /// the rest where the archive allows it; None where they come only at its end.
    #[allow(clippy::type_complexity)]
    fn read_ahead<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>>> {
        let cancel = Cancel::default();
        let (interrupt, result) = interruptible(
            py,
            &cancel,
            |_| Ok(()),
            || {
                self.archive
                    .read_ahead(&cancel)
                    .map_err(|e| Error::io(self.archive.path.clone(), e))
            },
        );
        if let Some(e) = interrupt {
            return Err(e);
        }
        let found = result.map_err(|e| to_py(py, e))?;
        Ok(found.map(|v| {
            v.into_iter()
                .map(|(p, c)| (PyBytes::new(py, &p), PyBytes::new(py, &c)))
                .collect()
        }))
    }

    /// Unpack into the existing empty directory `root`, relocating the files `jobs` name
    /// for prefix `target` on the way; `progress(files, archive_bytes)` is called about
    /// ten times a second. Returns `(files, relocated, scripts met)`.
    #[pyo3(signature = (root, jobs, target, threads, progress=None))]
    #[allow(clippy::type_complexity)]
    fn extract<'py>(
        &self,
        py: Python<'py>,
        root: PathBuf,
        jobs: Vec<JobArg>,
        target: Vec<u8>,
        threads: usize,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(u64, u64, Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>)> {
        let jobs = jobs_arg(jobs)?.into_iter().collect();
        let plan = unpack::Plan {
            root,
            jobs,
            target,
            threads: threads.max(1),
        };
        let counters = std::sync::Arc::new(unpack::Counters::default());
        let cancel = Cancel::default();
        let report =
            |py: Python<'_>| report_progress(py, &progress, &counters.files, &counters.bytes);
        let (interrupt, result) = interruptible(py, &cancel, report, || {
            unpack::unpack(&self.archive, plan, &cancel, &counters)
        });
        if let Some(e) = interrupt {
            return Err(e);
        }
        let out = result.map_err(|e| to_py(py, e))?;
        report(py)?;
        let scripts = out
            .scripts
            .into_iter()
            .map(|(p, c)| (PyBytes::new(py, &p), PyBytes::new(py, &c)))
            .collect();
        Ok((out.files, out.relocated, scripts))
    }
}

/// The `content` of a plan entry that is a package's `conda-meta/*.json` record.
const CONTENT_CONDA_META: &str = "conda-meta";

/// The values both languages use, one definition each (see `_core.pyi`): `index_env`'s
/// flag bits and kind letters, package placeholder sources, report outcomes, content tags.
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use crate::index::Placeholders;
    use crate::scan::Kind;
    m.add("SHEBANG_LIMIT", prefix::SHEBANG_LIMIT)?;
    m.add("FLAG_SIZE_RECORDED", index::SIZE_RECORDED)?;
    m.add("FLAG_BYTECODE_OF_RECORDED", index::BYTECODE_OF_RECORDED)?;
    m.add("FLAG_PLACEHOLDER", index::PLACEHOLDER)?;
    m.add("FLAG_SHA256", index::SHA256)?;
    m.add("FLAG_SHA256_IN_PREFIX", index::SHA256_IN_PREFIX)?;
    m.add("KIND_FILE", Kind::File.code())?;
    m.add("KIND_SYMLINK", Kind::Symlink.code())?;
    m.add("KIND_EMPTY_DIR", Kind::EmptyDir.code())?;
    m.add("KIND_OTHER", Kind::Other.code())?;
    m.add("KIND_MISSING", index::MISSING)?;
    m.add("PLACEHOLDERS_CONDA_META", Placeholders::CondaMeta.name())?;
    m.add("PLACEHOLDERS_PATHS_JSON", Placeholders::PathsJson.name())?;
    m.add("PLACEHOLDERS_UNKNOWN", Placeholders::Unknown.name())?;
    m.add("OUTCOME_RESTORED", Outcome::Restored.name())?;
    m.add("OUTCOME_VERIFIED", Outcome::Verified.name())?;
    m.add("OUTCOME_CACHED", Outcome::Cached.name())?;
    m.add("OUTCOME_AS_IS", Outcome::AsIs.name())?;
    m.add("CONTENT_CONDA_META", CONTENT_CONDA_META)?;
    Ok(())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    memory::map_large_buffers();
    m.add_function(wrap_pyfunction!(index_env, m)?)?;
    m.add_function(wrap_pyfunction!(replace_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(format_shebang, m)?)?;
    m.add_function(wrap_pyfunction!(parse_shebang, m)?)?;
    m.add_class::<ArchiveWriter>()?;
    #[cfg(unix)]
    {
        m.add_class::<Unpacker>()?;
        m.add_function(wrap_pyfunction!(relocate_tree, m)?)?;
        m.add_function(wrap_pyfunction!(relocate_bytes, m)?)?;
    }
    add_constants(m)
}
