//! What happens to one file's bytes on the way into an archive.
//!
//! Python decides per file *what* is wanted (a [`ContentSpec`]); this module finds out what
//! is possible by reading the file: whether the build placeholder can be restored and the
//! result matches the package's recorded hash, whether an unmanaged file is text and
//! holds the prefix, what its shebang is. The outcome is a [`Prepared`] body with an exact
//! size (tar headers need it up front) plus a [`Report`] Python uses for conda-unpack's
//! records and for warnings.
//!
//! Small files are held in memory while this happens; larger ones are re-read for each
//! pass instead, so memory stays bounded by buffers, not by file sizes.

use crate::buffers;
use crate::error::{Cancel, Error, IoContext, Result};
use crate::prefix::{self, Mode, ReplaceError};
use memchr::memmem;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Chunk size for streaming large files through the passes.
const CHUNK: usize = 1 << 20;
/// How much of a file's start is kept to parse a shebang from.
const HEAD: usize = 4096;

/// Bring back the build placeholder in an installed file.
#[derive(Clone, Debug)]
pub struct Restore {
    pub mode: Mode,
    pub env_prefix: Vec<u8>,
    pub placeholder: Vec<u8>,
    /// The package file's size and sha256 as recorded in conda-meta; the restored bytes
    /// must match whichever is known.
    pub size: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    /// sha256 of the file as installed: tells a file changed after install (pip, an
    /// editor) from one installed at another prefix.
    pub sha256_in_prefix: Option<[u8; 32]>,
    /// The pristine copy in the package cache, used when restoring fails on an unmodified
    /// file.
    pub cache: Option<PathBuf>,
    /// Restore only to verify, then archive the installed bytes (text files): conda-unpack
    /// then has nothing to do for them at the same path, and only grows them at a longer
    /// one, where from the placeholder it would shrink every one (a truncate costs ~0.1 ms
    /// on ext4, more than the rest of the file's relocation).
    pub verify_only: bool,
}

/// What Python wants done with one file's bytes.
#[derive(Clone, Debug, Default)]
pub struct ContentSpec {
    pub restore: Option<Restore>,
    /// Mode unknown (unmanaged, or no placeholder recorded): detect text/binary and look
    /// for this prefix.
    pub probe: Option<Vec<u8>>,
    /// Rewrite the prefix to this path now (`--dest-prefix`).
    pub dest: Option<Vec<u8>>,
    /// The file may carry a shebang worth rewriting (it lives in the scripts directory).
    pub shebang: bool,
}

/// Where the archived bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The installed file with the placeholder restored and verified.
    Restored,
    /// The installed file unchanged, after restoring the placeholder verified it.
    Verified,
    /// The package cache's copy (restoring failed; the file is unmodified).
    Cached,
    /// The installed file unchanged (restoring failed and no usable cache copy).
    AsIs,
}

impl Outcome {
    /// How reports name it to Python (exported there as `OUTCOME_*`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Restored => "restored",
            Outcome::Verified => "verified",
            Outcome::Cached => "cached",
            Outcome::AsIs => "as-is",
        }
    }
}

/// A shebang pointing into the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShebangInfo {
    /// Interpreter path relative to the prefix, e.g. `bin/python3.11`.
    pub exe: Vec<u8>,
    /// What followed the interpreter on the line.
    pub options: Vec<u8>,
    /// Whether the archived line is now `#!/usr/bin/env NAME`.
    pub rewritten: bool,
}

/// What reading the file found out.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub outcome: Option<Outcome>,
    /// Why restoring failed.
    pub problem: Option<String>,
    /// The installed file differs from what was installed (`sha256_in_prefix`).
    pub modified: Option<bool>,
    pub binary: bool,
    /// The archived bytes still hold a prefix that conda-unpack must replace.
    pub contains: bool,
    pub shebang: Option<ShebangInfo>,
    /// For binary files: where each C string holding that prefix starts, so conda-unpack
    /// can patch them without reading the whole file.
    pub offsets: Vec<u64>,
}

/// One step applied to a file's bytes.
#[derive(Clone, Debug)]
pub enum Step {
    Replace {
        mode: Mode,
        old: Vec<u8>,
        new: Vec<u8>,
    },
    /// Rewrite a first-line interpreter inside `prefix` to `#!/usr/bin/env NAME`.
    ShebangToEnv { prefix: Vec<u8> },
    /// Rewrite a first-line interpreter inside `prefix` to a form Linux can run.
    ShebangFix { prefix: Vec<u8> },
}

/// The archived bytes of a file, with their exact length.
#[derive(Debug)]
pub enum Body {
    Mem(Vec<u8>),
    /// Stream `path` through `steps` when writing; yields exactly `size` bytes. With a
    /// stamp, the file must still be what it was when stamped.
    File {
        path: PathBuf,
        stamp: Option<Stamp>,
        steps: Vec<Step>,
        size: u64,
    },
}

/// What identifies a file's content short of reading it: a write changes its size or its
/// mtime, a rename over it its inode. Not the ctime: it also moves when someone merely
/// links the inode again (a package cache installing into another environment) or changes
/// its mode, which alters nothing packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn of(m: &std::fs::Metadata) -> Stamp {
        let (dev, ino, size, mtime, mtime_nsec) = crate::host::stamp(m);
        Stamp {
            dev,
            ino,
            size,
            mtime,
            mtime_nsec,
        }
    }

    /// Whether `file`, opened from `path` and read, is still the file stamped: otherwise
    /// something wrote to it (or replaced it) while it was read, and what was read may
    /// be torn between two versions.
    pub fn check(&self, file: &File, path: &Path) -> Result<()> {
        if Stamp::of(&file.metadata().at(path)?) == *self {
            Ok(())
        } else {
            Err(changed(path))
        }
    }
}

/// The whole file at `path` (stamped `stamp`, if given) in a pooled buffer.
pub fn read_checked(path: &Path, size: u64, stamp: Option<&Stamp>) -> Result<Vec<u8>> {
    let (bytes, file) = buffers::read_file(path, size).at(path)?;
    if let Some(s) = stamp {
        if let Err(e) = s.check(&file, path) {
            buffers::give(bytes);
            return Err(e);
        }
    }
    Ok(bytes)
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Mem(v) => v.len() as u64,
            Body::File { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliver the bytes to `sink` in chunks.
    pub fn write_to(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        match self {
            Body::Mem(v) => sink(v),
            Body::File {
                path,
                stamp,
                steps,
                size,
            } => {
                let mut written = 0u64;
                stream(path, stamp.as_ref(), steps, &mut |chunk| {
                    written += chunk.len() as u64;
                    if written > *size {
                        return Err(changed(path));
                    }
                    sink(chunk)
                })?;
                if written != *size {
                    return Err(changed(path));
                }
                Ok(())
            }
        }
    }
}

pub fn changed(path: &Path) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(
            "changed while it was being packed: pack again when nothing is writing to the \
             environment, or leave the file out with --exclude",
        ),
    }
}

/// Decide and compute the archived bytes of the file at `path` (`size` bytes per lstat).
pub fn prepare(
    path: &Path,
    stamp: &Stamp,
    spec: &ContentSpec,
    inline_limit: u64,
) -> Result<(Body, Report)> {
    let size = stamp.size();
    let inline = size <= inline_limit;
    let mut env = Material::open(path, Some(stamp), size, inline)?;
    let mut report = Report::default();
    let start = match &spec.restore {
        Some(r) => restore_placeholder(&mut env, size, inline, r, &mut report)?,
        None => Start {
            mat: None,
            current: spec.probe.clone().unwrap_or_default(),
            mode: None,
            facts: None,
        },
    };
    let current = start.current;
    let mut mat = start.mat.unwrap_or_else(|| env.clone());
    let found = match start.facts {
        Some(facts) => facts,
        None => mat.measure(Probe::find(&current))?,
    };
    report.binary = match start.mode {
        Some(m) => m == Mode::Binary,
        None => found.nul,
    };
    report.contains = found.count > 0;
    if report.binary && spec.dest.is_none() {
        report.offsets = found.span_starts.clone();
    }
    let mode = start
        .mode
        .unwrap_or(if found.nul { Mode::Binary } else { Mode::Text });
    let changed_since_probe = match &spec.dest {
        Some(dest) => relocate_to(&mut mat, spec, mode, &current, dest, &report)?,
        None if spec.shebang && mode == Mode::Text => {
            shebang_to_env(&mut mat, &current, &found, &mut report)?
        }
        None => false,
    };
    let size = if changed_since_probe || !mat.is_mem() {
        mat.measure(Probe::default())?.size
    } else {
        found.size
    };
    env.recycle(); // so the body takes the bytes over instead of copying them
    Ok((mat.into_body(size), report))
}

/// Where [`prepare`] goes on from once the placeholder is (or is not) restored.
struct Start {
    /// The bytes to go on from, when not the installed file's own.
    mat: Option<Material>,
    /// The prefix those bytes hold.
    current: Vec<u8>,
    /// The file's mode when conda recorded it.
    mode: Option<Mode>,
    /// What the pass that verified a restore learned about its bytes, to spare a pass.
    facts: Option<Measured>,
}

/// Put the build placeholder back into a conda-managed file and verify it against the
/// package's records, falling back to the package cache's copy, or to the file as it is.
fn restore_placeholder(
    env: &mut Material,
    size: u64,
    inline: bool,
    r: &Restore,
    report: &mut Report,
) -> Result<Start> {
    let mut start = Start {
        mat: None,
        current: r.env_prefix.clone(),
        mode: Some(r.mode),
        facts: None,
    };
    let restore = Step::Replace {
        mode: r.mode,
        old: r.env_prefix.clone(),
        new: r.placeholder.clone(),
    };
    // A binary restore in memory changes the installed bytes in place (an undo log
    // puts them back if the result is not the package's file); otherwise on a copy.
    let in_place = r.mode == Mode::Binary && !r.verify_only;
    let attempt = match in_place.then(|| try_restore_in_place(env, r)).flatten() {
        Some(Ok(facts)) => Ok((env.clone(), facts)),
        Some(Err(problem)) => Err(problem),
        None => try_restore(env, size, restore, r),
    };
    match attempt {
        // Unless the placeholder itself is in the file (a user's own File naming its
        // build prefix): only the restored bytes relocate that.
        Ok((restored, _))
            if r.verify_only && env.measure(Probe::find(&r.placeholder))?.count == 0 =>
        {
            restored.recycle();
            report.outcome = Some(Outcome::Verified)
        }
        Ok((restored, facts)) => {
            start.mat = Some(restored);
            start.facts = Some(facts);
            start.current = r.placeholder.clone();
            report.outcome = Some(Outcome::Restored);
        }
        Err(problem) => {
            report.problem = Some(problem);
            report.modified = match &r.sha256_in_prefix {
                Some(h) => Some(env.measure(Probe::hash())?.sha256 != Some(*h)),
                None => None,
            };
            let cached = match (&r.cache, report.modified) {
                (Some(cache), Some(false) | None) => cached_copy(cache, r, inline)?,
                _ => None,
            };
            if let Some(c) = cached {
                start.mat = Some(c);
                start.current = r.placeholder.clone();
                report.outcome = Some(Outcome::Cached);
            } else {
                report.outcome = Some(Outcome::AsIs);
            }
        }
    }
    Ok(start)
}

/// `--dest-prefix`: rewrite `current` to `dest` (and shebangs); true if anything changed.
fn relocate_to(
    mat: &mut Material,
    spec: &ContentSpec,
    mode: Mode,
    current: &[u8],
    dest: &[u8],
    report: &Report,
) -> Result<bool> {
    let mut changed = false;
    // Unmanaged binaries are never patched: their strings may be length-prefixed.
    if report.contains && (mode == Mode::Text || spec.restore.is_some()) {
        mat.push(Step::Replace {
            mode,
            old: current.to_vec(),
            new: dest.to_vec(),
        })?;
        changed = true;
    }
    if spec.shebang && mode == Mode::Text {
        mat.push(Step::ShebangFix {
            prefix: dest.to_vec(),
        })?;
        changed = true;
    }
    Ok(changed)
}

/// A text file whose shebang names the environment's interpreter: recorded for
/// conda-unpack, and rewritten to `/usr/bin/env` when it is the file's only prefix (conda-pack
/// 0.9.2's rule, so the archive works without conda-unpack once activated). True if the
/// bytes changed.
fn shebang_to_env(
    mat: &mut Material,
    current: &[u8],
    found: &Measured,
    report: &mut Report,
) -> Result<bool> {
    let Some(sb) = prefix::parse_shebang(&found.head) else {
        return Ok(false);
    };
    let Some(exe) = sb.exe_in(current) else {
        return Ok(false);
    };
    let rewritten = found.count == 1 && found.head_is_first_line;
    report.shebang = Some(ShebangInfo {
        exe: exe.to_vec(),
        options: sb.options.to_vec(),
        rewritten,
    });
    if !rewritten {
        return Ok(false);
    }
    mat.push(Step::ShebangToEnv {
        prefix: current.to_vec(),
    })?;
    report.contains = false;
    Ok(true)
}

/// Restore the placeholder and check the result against the package's records. Also
/// returns the restored bytes' facts with the placeholder as needle (what `prepare`
/// measures next), gathered in the same pass as the hash.
fn try_restore(
    env: &Material,
    env_size: u64,
    step: Step,
    r: &Restore,
) -> std::result::Result<(Material, Measured), String> {
    let mut mat = env.clone();
    mat.push(step).map_err(relocation_message)?;
    let m = mat.measure(restore_probe(r)).map_err(relocation_message)?;
    Ok((mat, check_restored(m, r, env_size)?))
}

/// [`try_restore`] of a binary file held in memory and by no one else, in its own
/// buffer; `None` when it is not. On failure the installed bytes are back in place.
fn try_restore_in_place(
    env: &mut Material,
    r: &Restore,
) -> Option<std::result::Result<Measured, String>> {
    let Material::Mem { data, .. } = env else {
        return None;
    };
    let bytes = Rc::get_mut(data)?;
    let env_size = bytes.len() as u64;
    let mut undo = prefix::Undo::new();
    let result = prefix::replace_cstrings_in_place(bytes, &r.env_prefix, &r.placeholder, &mut undo)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            let mut probe = restore_probe(r);
            probe.feed(bytes);
            check_restored(probe.finish(), r, env_size)
        });
    if result.is_err() {
        prefix::undo_in_place(bytes, &mut undo, 0);
    }
    Some(result)
}

/// What a restore's result is measured with: the placeholder as needle (what `prepare`
/// needs next) and, when the package's hash is known, the hash.
fn restore_probe(r: &Restore) -> Probe {
    let mut probe = Probe::find(&r.placeholder);
    if r.sha256.is_some() {
        probe.sha = Some(Sha256::new());
    }
    probe
}

/// The restored bytes' facts, if they are the package's file.
fn check_restored(
    m: Measured,
    r: &Restore,
    env_size: u64,
) -> std::result::Result<Measured, String> {
    // Installers disagree on `size_in_bytes` for files with a prefix (conda records the
    // package's size, rattler the installed one), so the hash decides when there is one.
    if let Some(sha) = &r.sha256 {
        if m.sha256.as_ref() != Some(sha) {
            return Err("restored sha256 differs from the package's".into());
        }
    } else if let Some(size) = r.size {
        if m.size != size && env_size != size {
            return Err(format!(
                "restored size {} differs from the package's {size}",
                m.size
            ));
        }
    }
    Ok(m)
}

fn relocation_message(e: Error) -> String {
    match e {
        Error::Relocation { message, .. } => message,
        other => other.to_string(),
    }
}

/// The package cache's copy, if it exists and matches the package's records.
fn cached_copy(cache: &Path, r: &Restore, inline: bool) -> Result<Option<Material>> {
    let meta = match std::fs::metadata(cache) {
        Ok(m) if m.is_file() => m,
        _ => return Ok(None),
    };
    if r.sha256.is_none() && r.size.is_some_and(|s| s != meta.len()) {
        return Ok(None);
    }
    // The cache is conda's, not the environment: nobody is expected to write there.
    let mat = Material::open(
        cache,
        None,
        meta.len(),
        inline && meta.len() <= CHUNK as u64 * 64,
    )?;
    if let Some(sha) = &r.sha256 {
        if mat.measure(Probe::hash())?.sha256.as_ref() != Some(sha) {
            return Ok(None);
        }
    }
    Ok(Some(mat))
}

/// Bytes under construction: in memory with steps applied, or a file plus steps to apply.
/// Clones share the bytes: `prepare` keeps the installed file beside each candidate, and
/// copying a many-megabyte binary to start a candidate cost more than hashing it.
#[derive(Clone)]
enum Material {
    Mem {
        path: PathBuf,
        data: Rc<Vec<u8>>,
    },
    File {
        path: PathBuf,
        stamp: Option<Stamp>,
        steps: Vec<Step>,
    },
}

impl Material {
    /// `size`: what the file is expected to hold, to size its buffer. Every read of the
    /// file checks `stamp`, if given.
    fn open(path: &Path, stamp: Option<&Stamp>, size: u64, inline: bool) -> Result<Material> {
        if inline {
            Ok(Material::Mem {
                path: path.to_path_buf(),
                data: Rc::new(read_checked(path, size, stamp)?),
            })
        } else {
            Ok(Material::File {
                path: path.to_path_buf(),
                stamp: stamp.copied(),
                steps: Vec::new(),
            })
        }
    }

    fn is_mem(&self) -> bool {
        matches!(self, Material::Mem { .. })
    }

    /// Apply `step`: at once in memory; for a file, on every later pass (where a failure
    /// surfaces from `measure`).
    fn push(&mut self, step: Step) -> Result<()> {
        match self {
            Material::Mem { path, data } => {
                let mut out = buffers::take(output_room(&step, data));
                apply(&step, data, true, &mut out, &mut ShebangState::default()).map_err(|e| {
                    Error::Relocation {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
                give_unshared(std::mem::replace(data, Rc::new(out)));
            }
            Material::File { steps, .. } => steps.push(step),
        }
        Ok(())
    }

    fn measure(&self, mut probe: Probe) -> Result<Measured> {
        match self {
            Material::Mem { data, .. } => probe.feed(data),
            Material::File { path, stamp, steps } => {
                stream(path, stamp.as_ref(), steps, &mut |c| {
                    probe.feed(c);
                    Ok(())
                })?
            }
        }
        Ok(probe.finish())
    }

    /// Done with: its buffer goes back to the pool unless a clone still shares it.
    fn recycle(self) {
        if let Material::Mem { data, .. } = self {
            give_unshared(data);
        }
    }

    fn into_body(self, size: u64) -> Body {
        match self {
            // The only owner unless the caller still holds a clone.
            Material::Mem { data, .. } => {
                Body::Mem(Rc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone()))
            }
            Material::File { path, stamp, steps } => Body::File {
                path,
                stamp,
                steps,
                size,
            },
        }
    }
}

/// Bytes no longer needed go back to the pool, unless a clone still shares them.
fn give_unshared(data: Rc<Vec<u8>>) {
    if let Ok(bytes) = Rc::try_unwrap(data) {
        buffers::give(bytes);
    }
}

/// Facts gathered from one pass over a file's (transformed) bytes.
#[derive(Default)]
struct Measured {
    size: u64,
    sha256: Option<[u8; 32]>,
    nul: bool,
    count: usize,
    head: Vec<u8>,
    /// `head` holds the whole first line (it found a newline or the end of the file).
    head_is_first_line: bool,
    span_starts: Vec<u64>,
}

/// A sink that measures what flows through it.
#[derive(Default)]
struct Probe {
    size: u64,
    sha: Option<Sha256>,
    nul: bool,
    needle: Option<memmem::Finder<'static>>,
    count: usize,
    /// The last `needle.len() - 1` bytes, for occurrences spanning two chunks.
    tail: Vec<u8>,
    head: Vec<u8>,
    /// Where each C string holding the needle starts: a hit not preceded by another hit
    /// in the same NUL-terminated string.
    span_starts: Vec<u64>,
    /// A hit was seen and no NUL since: the next hit continues the same string.
    in_span: bool,
}

impl Probe {
    fn hash() -> Probe {
        Probe {
            sha: Some(Sha256::new()),
            ..Probe::default()
        }
    }

    fn find(needle: &[u8]) -> Probe {
        Probe {
            needle: (!needle.is_empty()).then(|| finder(needle)),
            ..Probe::default()
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if let Some(sha) = &mut self.sha {
            sha.update(chunk);
        }
        if !self.nul {
            self.nul = memchr::memchr(0, chunk).is_some();
        }
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if let Some(f) = &self.needle {
            let n = f.needle().len();
            let base = self.size - chunk.len() as u64;
            let mut hits: Vec<u64> = Vec::new();
            let old_tail = std::mem::take(&mut self.tail);
            if !old_tail.is_empty() {
                // Join the previous tail with this chunk's start to catch a straddling hit.
                let from = base - old_tail.len() as u64;
                let mut joined = old_tail.clone();
                joined.extend_from_slice(&chunk[..(n - 1).min(chunk.len())]);
                hits.extend(f.find_iter(&joined).map(|h| from + h as u64));
            }
            hits.extend(f.find_iter(chunk).map(|h| base + h as u64));
            self.count += hits.len();
            // Bytes of this chunk not yet examined for a terminating NUL.
            let mut seen = 0usize;
            for h in hits {
                let upto = h.saturating_sub(base) as usize;
                if self.in_span && upto > seen && memchr::memchr(0, &chunk[seen..upto]).is_some() {
                    self.in_span = false;
                }
                if !self.in_span {
                    self.span_starts.push(h);
                    self.in_span = true;
                }
                let end = (h + n as u64).saturating_sub(base) as usize;
                seen = seen.max(end).min(chunk.len());
            }
            if self.in_span && memchr::memchr(0, &chunk[seen..]).is_some() {
                self.in_span = false;
            }
            // The last n - 1 bytes seen, across chunks however small.
            self.tail = if chunk.len() >= n - 1 {
                chunk[chunk.len() - (n - 1)..].to_vec()
            } else {
                let mut tail = old_tail;
                tail.extend_from_slice(chunk);
                let drop = tail.len().saturating_sub(n - 1);
                tail.drain(..drop);
                tail
            };
        }
    }

    fn finish(self) -> Measured {
        let head_is_first_line =
            memchr::memchr(b'\n', &self.head).is_some() || self.size as usize == self.head.len();
        Measured {
            size: self.size,
            sha256: self.sha.map(|s| s.finalize().into()),
            nul: self.nul,
            count: self.count,
            head: self.head,
            head_is_first_line,
            span_starts: self.span_starts,
        }
    }
}

/// A searcher for `needle`. Building one costs more than searching a typical small file,
/// and a worker looks for the same one or two needles (the prefix, the placeholder) in
/// thousands of files, so each thread keeps the last few it built.
fn finder(needle: &[u8]) -> memmem::Finder<'static> {
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<memmem::Finder<'static>>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    RECENT.with(|cell| {
        let mut recent = cell.borrow_mut();
        if let Some(f) = recent.iter().find(|f| f.needle() == needle) {
            return f.clone();
        }
        let f = memmem::Finder::new(needle).into_owned();
        if recent.len() == 4 {
            recent.remove(0);
        }
        recent.push(f.clone());
        f
    })
}

/// Whether a shebang step has seen the first line yet (streamed files arrive in chunks).
#[derive(Default)]
struct ShebangState {
    done: bool,
}

/// Room for `step`'s output on all of `input`: exact for a text replacement, with slack
/// for a rewritten first line.
fn output_room(step: &Step, input: &[u8]) -> usize {
    match step {
        Step::Replace {
            mode: Mode::Text,
            old,
            new,
        } => prefix::replaced_len(input, old, new),
        _ => input.len() + 256,
    }
}

fn apply(
    step: &Step,
    input: &[u8],
    is_last: bool,
    out: &mut Vec<u8>,
    sb: &mut ShebangState,
) -> std::result::Result<usize, ReplaceError> {
    match step {
        Step::Replace { mode, old, new } => {
            prefix::replace_window(input, is_last, *mode, old, new, out).map(|(done, _)| done)
        }
        Step::ShebangToEnv { prefix } | Step::ShebangFix { prefix } => {
            if sb.done {
                out.extend_from_slice(input);
                return Ok(input.len());
            }
            let line_end = memchr::memchr(b'\n', input);
            if line_end.is_none() && !is_last && input.len() < HEAD {
                return Ok(0); // wait for the rest of the first line
            }
            sb.done = true;
            let fixed: Option<(usize, Vec<u8>)> = prefix::parse_shebang(input).and_then(|s| {
                let exe = s.exe_in(prefix)?;
                let line = match step {
                    Step::ShebangToEnv { .. } => prefix::env_shebang(exe, s.options),
                    _ => prefix::format_shebang(prefix, exe, s.options),
                };
                Some((s.line.len(), line))
            });
            match fixed {
                Some((old_len, line)) => {
                    out.extend_from_slice(&line);
                    out.extend_from_slice(&input[old_len..]);
                }
                None => out.extend_from_slice(input),
            }
            Ok(input.len())
        }
    }
}

thread_local! {
    /// The stop flag of the archive this thread reads files for (see [`watch`]).
    static WATCHED: std::cell::RefCell<Option<Cancel>> = const { std::cell::RefCell::new(None) };
}

/// While the guard lives, files streamed on this thread stop between chunks once
/// `cancel` is set: a pass over a file of gigabytes is seconds of reading.
pub fn watch(cancel: &Cancel) -> impl Drop {
    struct Unwatch;
    impl Drop for Unwatch {
        fn drop(&mut self) {
            WATCHED.with(|w| w.borrow_mut().take());
        }
    }
    WATCHED.with(|w| *w.borrow_mut() = Some(cancel.clone()));
    Unwatch
}

fn check_watched() -> Result<()> {
    WATCHED.with(|w| w.borrow().as_ref().map_or(Ok(()), Cancel::check))
}

/// Read `path` in chunks, run them through `steps`, and hand the output to `sink`; the
/// file must still be as stamped (if `stamp`) once read.
pub fn stream(
    path: &Path,
    stamp: Option<&Stamp>,
    steps: &[Step],
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut file = File::open(path).at(path)?;
    let mut carries: Vec<Vec<u8>> = vec![Vec::new(); steps.len()];
    let mut states: Vec<ShebangState> = steps.iter().map(|_| ShebangState::default()).collect();
    let mut buf = buffers::take(CHUNK);
    buf.resize(CHUNK, 0);
    loop {
        check_watched()?;
        let n = read_full(&mut file, &mut buf).at(path)?;
        let is_last = n < buf.len();
        if steps.is_empty() {
            if n > 0 {
                sink(&buf[..n])?;
            }
        } else {
            let mut data = buf[..n].to_vec();
            for (i, step) in steps.iter().enumerate() {
                let carry = &mut carries[i];
                carry.extend_from_slice(&data);
                let mut out = Vec::with_capacity(carry.len() + 256);
                let done = apply(step, carry, is_last, &mut out, &mut states[i]).map_err(|e| {
                    Error::Relocation {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    }
                })?;
                carry.drain(..done);
                data = out;
            }
            if !data.is_empty() {
                sink(&data)?;
            }
        }
        if is_last {
            buffers::give(buf);
            return match stamp {
                Some(s) => s.check(&file, path),
                None => Ok(()),
            };
        }
    }
}

/// Fill `buf` unless the file ends first; returns the bytes read.
pub fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Span starts by definition: a hit with no earlier hit in the same NUL-free run.
    fn brute_span_starts(data: &[u8], needle: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut in_span = false;
        let mut i = 0;
        while i < data.len() {
            if data[i..].starts_with(needle) {
                if !in_span {
                    out.push(i as u64);
                }
                in_span = true;
                i += needle.len();
            } else {
                if data[i] == 0 {
                    in_span = false;
                }
                i += 1;
            }
        }
        out
    }

    #[test]
    fn span_starts_do_not_depend_on_chunking() {
        let needle = b"/opt/prefix";
        let mut data = Vec::new();
        for i in 0..200u32 {
            match i % 5 {
                0 => data.extend_from_slice(b"\0\0"),
                1 => data.extend_from_slice(needle),
                2 => data.extend_from_slice(b"/lib:"),
                3 => data.extend_from_slice(&i.to_le_bytes()),
                _ => data.push(b'x'),
            }
        }
        let want = brute_span_starts(&data, needle);
        assert!(want.len() > 10);
        for chunk in [1usize, 3, 7, 11, 64, data.len()] {
            let mut p = Probe::find(needle);
            for c in data.chunks(chunk) {
                p.feed(c);
            }
            assert_eq!(p.finish().span_starts, want, "chunk {chunk}");
        }
    }
}
