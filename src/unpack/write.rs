//! Writing members into the destination: the checks that keep every member inside it,
//! the pool of writer threads, and relocation on the way.
//!
//! One thread reads the archive in order and decides everything about each member (its
//! name, what is already there, the directories it needs); files go to writer threads
//! that relocate them in memory when conda-unpack's records name them, then create,
//! write and stamp them. A file is written once, already relocated. Files too large to
//! hold are written by the reading thread as their bytes come, relocated window by
//! window. Directory modes and times, hard links, and the check of where symbolic links
//! lead come at the end, when every member is known.

use super::names::{self, Node};
use super::relocate::{self, Job};
use super::tree::{self, Dirs};
use crate::error::{Cancel, Error, Result};
use crate::prefix;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Files up to this size are read whole and written by the writer threads.
pub const INLINE: u64 = 4 << 20;
/// Files waiting for each writer thread, at most.
const QUEUE: usize = 64;
/// Bytes of files handed to writers and not yet written, at most.
const IN_FLIGHT: u64 = 48 << 20;
/// Largest conda-unpack kept for its records.
const MAX_SCRIPT: u64 = 64 << 20;
/// Streamed files are copied in pieces of this size.
const PIECE: usize = 1 << 20;

/// Counters the progress bar reads.
#[derive(Default)]
pub struct Counters {
    pub files: AtomicU64,
    /// Bytes of the archive read so far.
    pub bytes: AtomicU64,
}

/// Where conda-unpack lives, for an archive it may be in: `bin/conda-unpack` (Windows:
/// `Scripts/conda-unpack-script.py`) at the environment's root, which is the archive's
/// root or a directory in it (`--arcroot`).
pub fn is_unpack_script(path: &[u8]) -> bool {
    let at_root = |suffix: &[u8]| {
        path == suffix || (path.ends_with(suffix) && path[path.len() - suffix.len() - 1] == b'/')
    };
    at_root(b"bin/conda-unpack") || at_root(b"Scripts/conda-unpack-script.py")
}

/// What the caller asks of an unpack.
pub struct Plan {
    /// The staging directory everything goes into.
    pub root: PathBuf,
    /// conda-unpack's records by member path, when known before the members come.
    pub jobs: HashMap<Vec<u8>, Arc<Job>>,
    /// The prefix relocated files must hold.
    pub target: Vec<u8>,
    pub threads: usize,
}

/// What an unpack did.
#[derive(Default)]
pub struct Outcome {
    pub files: u64,
    pub relocated: u64,
    /// conda-unpack scripts met on the way: `(member path, content)`, shallowest first.
    pub scripts: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How modes and owners come out, as `tar -x` makes them: root keeps the archive's modes,
/// anyone else gets them less the umask. Set-id bits are never restored.
#[derive(Clone, Copy)]
pub struct Modes {
    root: bool,
    umask: u32,
}

impl Modes {
    pub fn current() -> Modes {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        Modes {
            root,
            umask: tree::umask(),
        }
    }

    fn file(&self, mode: u32) -> u32 {
        let m = mode & 0o1777;
        if self.root {
            m
        } else {
            m & !self.umask
        }
    }

    fn dir(&self, mode: Option<u32>) -> u32 {
        match mode {
            Some(m) => self.file(m),
            None => 0o777 & !self.umask,
        }
    }

    /// Whether a file created with `mode` needs a chmod to end up with it.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & self.umask != 0 || mode & 0o1000 != 0
    }
}

/// conda-unpack gives a rewritten file its old times, except Python sources: a source
/// whose bytes changed gets a second more, so that a cached .pyc of the old bytes is
/// not used (`_keeps_mtime` in conda_unpack.py).
fn mtime_after(path: &[u8], mtime: i64, changed: bool) -> i64 {
    let source = path.ends_with(b".py") || path.ends_with(b".pyw");
    mtime + (changed && source) as i64
}

/// What a writer thread is handed.
pub enum Work {
    /// A file whose bytes are in memory.
    Mem {
        path: Vec<u8>,
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
        job: Option<Arc<Job>>,
    },
    /// Anything the writer produces itself (a zip entry it inflates).
    Task(TaskFn),
}

/// Work a writer thread does itself.
type TaskFn = Box<dyn FnOnce(&mut Writer) -> Result<()> + Send>;

/// A writer thread's own state.
pub struct Writer {
    pub dirs: Dirs,
    pub shared: Arc<Shared>,
}

/// What every thread of an unpack shares.
pub struct Shared {
    pub target: Vec<u8>,
    pub modes: Modes,
    pub cancel: Cancel,
    pub counters: Arc<Counters>,
    relocated: AtomicU64,
    /// The first error, which stops everything.
    failure: Mutex<Option<Error>>,
    budget: Mutex<u64>,
    freed: Condvar,
    root: PathBuf,
    /// The archive, named in errors about what it holds.
    archive: PathBuf,
}

impl Shared {
    pub fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() && !matches!(e, Error::Cancelled) {
            *f = Some(e);
        }
        self.cancel.cancel();
    }

    /// An error for `path` in the destination.
    pub fn io(&self, path: &[u8], e: io::Error) -> Error {
        Error::io(self.show(path), e)
    }

    fn show(&self, path: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join(std::ffi::OsStr::from_bytes(path))
    }

    fn take_budget(&self, n: u64) -> Result<()> {
        let mut used = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + n > IN_FLIGHT {
            self.cancel.check()?;
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *used += n;
        Ok(())
    }

    fn give_budget(&self, n: u64) {
        let mut used = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        *used -= n;
        self.freed.notify_all();
    }
}

impl Writer {
    /// Write a file held in memory, relocated first when it has records.
    pub fn write_mem(
        &mut self,
        path: &[u8],
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
        job: Option<&Job>,
    ) -> Result<()> {
        let relocated = match job {
            Some(j) => relocate::relocate(&data, j, &self.shared.target)
                .map_err(|e| relocation_error(&self.shared, path, e))?,
            None => None,
        };
        let changed = relocated.is_some();
        let bytes = relocated.as_deref().unwrap_or(&data);
        let (dir, name) = names::split(path);
        let dfd = self
            .dirs
            .get(dir, false)
            .map_err(|e| self.shared.io(path, e))?;
        let mode = self.shared.modes.file(mode);
        let file = tree::create_file(dfd, name, mode).map_err(|e| self.shared.io(path, e))?;
        let r = (|| {
            file.write_all_at(bytes, 0)?;
            if self.shared.modes.root && self.shared.modes.needs_chmod(mode) {
                tree::chmod_fd(file.as_raw_fd(), mode)?;
            }
            tree::set_times(file.as_raw_fd(), mtime_after(path, mtime, changed), 0)
        })();
        r.map_err(|e| self.shared.io(path, e))?;
        if changed {
            self.shared.relocated.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.counters.files.fetch_add(1, Ordering::Relaxed);
        crate::buffers::give(data);
        if let Some(r) = relocated {
            crate::buffers::give(r);
        }
        Ok(())
    }

    /// Create `path` and write what `read` yields into it (the rest of a member too large
    /// to hold), relocated a window at a time when the job allows it, else whole.
    pub fn write_stream(
        &mut self,
        path: &[u8],
        mode: u32,
        mtime: i64,
        job: Option<&Job>,
        read: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let target = &shared.target;
        if let Some(j) = job.filter(|j| !j.streams(target)) {
            // Several placeholders or a shebang: the rules need the whole file.
            let mut data = Vec::new();
            read_to_end(read, &mut data).map_err(|e| Error::io(shared.archive.clone(), e))?;
            return self.write_mem(path, mode, mtime, data, Some(j));
        }
        let (dir, name) = names::split(path);
        let dfd = self.dirs.get(dir, false).map_err(|e| shared.io(path, e))?;
        let mode = shared.modes.file(mode);
        let file = tree::create_file(dfd, name, mode).map_err(|e| shared.io(path, e))?;
        let mut out = io::BufWriter::with_capacity(PIECE, &file);
        let single = job.and_then(|j| {
            let mut olds: Vec<&[u8]> = j
                .olds
                .iter()
                .map(Vec::as_slice)
                .filter(|o| !o.is_empty() && *o != &target[..])
                .collect();
            olds.dedup();
            Some((j.mode?, olds.first().copied()?))
        });
        let mut buf = crate::buffers::take(PIECE);
        buf.resize(PIECE, 0);
        let mut carry: Vec<u8> = Vec::new();
        let mut replaced = Vec::new();
        let mut changes = 0usize;
        let result: Result<()> = (|| {
            loop {
                shared.cancel.check()?;
                let n = read(&mut buf).map_err(|e| Error::io(shared.archive.clone(), e))?;
                let last = n == 0;
                match single {
                    None => out.write_all(&buf[..n]).map_err(|e| shared.io(path, e))?,
                    Some((mode, old)) => {
                        carry.extend_from_slice(&buf[..n]);
                        replaced.clear();
                        let (done, k) =
                            prefix::replace_window(&carry, last, mode, old, target, &mut replaced)
                                .map_err(|e| relocation_error(&shared, path, e))?;
                        changes += k;
                        carry.drain(..done);
                        out.write_all(&replaced).map_err(|e| shared.io(path, e))?;
                    }
                }
                if last {
                    break;
                }
            }
            out.flush().map_err(|e| shared.io(path, e))?;
            drop(out);
            let fd = file.as_raw_fd();
            if shared.modes.root && shared.modes.needs_chmod(mode) {
                tree::chmod_fd(fd, mode).map_err(|e| shared.io(path, e))?;
            }
            tree::set_times(fd, mtime_after(path, mtime, changes > 0), 0)
                .map_err(|e| shared.io(path, e))
        })();
        crate::buffers::give(buf);
        if changes > 0 {
            shared.relocated.fetch_add(1, Ordering::Relaxed);
        }
        shared.counters.files.fetch_add(1, Ordering::Relaxed);
        result
    }
}

fn read_to_end(
    read: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut piece = vec![0u8; PIECE];
    loop {
        let n = read(&mut piece)?;
        if n == 0 {
            return Ok(());
        }
        out.extend_from_slice(&piece[..n]);
    }
}

fn relocation_error(shared: &Shared, path: &[u8], e: prefix::ReplaceError) -> Error {
    Error::Relocation {
        path: shared.show(path),
        message: e.to_string(),
    }
}

/// The reading thread's side: decides about every member, in archive order.
pub struct Extractor {
    pub shared: Arc<Shared>,
    /// The reading thread's own writer, for files too large to hand over.
    own: Writer,
    jobs: HashMap<Vec<u8>, Arc<Job>>,
    nodes: HashMap<Vec<u8>, Node>,
    /// Directories the archive names: their modes and times, set at the end.
    dir_meta: HashMap<Vec<u8>, (u32, i64)>,
    links: HashMap<Vec<u8>, Vec<u8>>,
    hard_links: Vec<(Vec<u8>, Vec<u8>)>,
    /// One queue per writer thread. A directory's files all go to one writer: creating
    /// a file locks its directory, and two threads creating in one directory spend the
    /// CPU on spinning for that lock (on ext4, a third of the whole unpack's CPU time).
    work: Vec<Sender<Work>>,
    /// Which writer each directory's files go to, handed out in turn on first sight.
    routes: HashMap<Vec<u8>, usize>,
    writers: Vec<std::thread::JoinHandle<()>>,
    scripts: Vec<(Vec<u8>, Vec<u8>)>,
    files: u64,
}

/// Why a member is refused, for the user.
fn refuse(path: &[u8], why: &str) -> Error {
    Error::Archive(format!("member {}: {why}", crate::pack::show(path)))
}

impl Extractor {
    pub fn new(
        plan: Plan,
        cancel: Cancel,
        counters: Arc<Counters>,
        archive: PathBuf,
    ) -> Result<Extractor> {
        let root_fd = tree::open_root(&plan.root).map_err(|e| Error::io(plan.root.clone(), e))?;
        let shared = Arc::new(Shared {
            target: plan.target,
            modes: Modes::current(),
            cancel,
            counters,
            relocated: AtomicU64::new(0),
            failure: Mutex::new(None),
            budget: Mutex::new(0),
            freed: Condvar::new(),
            root: plan.root.clone(),
            archive,
        });
        let own = Writer {
            dirs: Dirs::new(root_fd),
            shared: Arc::clone(&shared),
        };
        let mut work = Vec::new();
        let mut writers = Vec::new();
        for i in 0..plan.threads.max(1) {
            let (tx, rx): (Sender<Work>, Receiver<Work>) = bounded(QUEUE);
            work.push(tx);
            let mut w = Writer {
                dirs: own
                    .dirs
                    .try_clone()
                    .map_err(|e| Error::io(plan.root.clone(), e))?,
                shared: Arc::clone(&shared),
            };
            writers.push(
                std::thread::Builder::new()
                    .name(format!("conda-pack-unpack-{i}"))
                    .spawn(move || {
                        for work in rx {
                            if w.shared.cancel.is_cancelled() {
                                continue; // drained, not done
                            }
                            let r = match work {
                                Work::Mem {
                                    path,
                                    mode,
                                    mtime,
                                    data,
                                    job,
                                } => {
                                    let n = data.len() as u64;
                                    let r = w.write_mem(&path, mode, mtime, data, job.as_deref());
                                    w.shared.give_budget(n);
                                    r
                                }
                                Work::Task(f) => f(&mut w),
                            };
                            if let Err(e) = r {
                                w.shared.fail(e);
                            }
                        }
                    })
                    .expect("spawn writer"),
            );
        }
        let mut nodes = HashMap::new();
        nodes.insert(Vec::new(), Node::Dir);
        Ok(Extractor {
            shared,
            own,
            jobs: plan.jobs,
            nodes,
            dir_meta: HashMap::new(),
            links: HashMap::new(),
            hard_links: Vec::new(),
            work,
            routes: HashMap::new(),
            writers,
            scripts: Vec::new(),
            files: 0,
        })
    }

    /// Stop if a writer failed or the user interrupted.
    /// (A writer's error is the one `finish` returns.)
    pub fn check(&self) -> Result<()> {
        self.shared.cancel.check()
    }

    /// The member name `raw` as a path in the destination, with every directory above it
    /// known to be a directory (made where missing). Refuses names that leave the
    /// destination and members below a file or a link.
    fn place(&mut self, raw: &[u8]) -> Result<Vec<u8>> {
        let path = names::member(raw).ok_or_else(|| {
            refuse(
                raw,
                "its name is absolute or holds '..': it would be written outside the destination",
            )
        })?;
        let mut at = 0;
        while let Some(i) = memchr::memchr(b'/', &path[at..]) {
            let up = &path[..at + i];
            match self.nodes.get(up) {
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(refuse(
                        &path,
                        &format!(
                            "it is below {}, which is not a directory in the archive",
                            crate::pack::show(up)
                        ),
                    ))
                }
                None => {
                    self.nodes.insert(up.to_vec(), Node::Dir);
                }
            }
            at += i + 1;
        }
        Ok(path)
    }

    /// Claim `path` for a member of kind `node`: a name may be given once, except that
    /// a directory may be named again (or after members below it made it).
    fn claim(&mut self, path: &[u8], node: Node) -> Result<()> {
        match (self.nodes.get(path), node) {
            (None, _) => {
                self.nodes.insert(path.to_vec(), node);
                Ok(())
            }
            (Some(Node::Dir), Node::Dir) => Ok(()),
            (Some(old), _) => Err(refuse(
                path,
                &format!(
                    "the archive holds it twice (as {} and as {}); conda-pack never writes such archives, and extracting it would replace one with the other",
                    what(*old),
                    what(node)
                ),
            )),
        }
    }

    fn parent_fd(&mut self, path: &[u8]) -> Result<std::os::fd::RawFd> {
        let (dir, _) = names::split(path);
        self.own
            .dirs
            .get(dir, true)
            .map_err(|e| self.shared.io(path, e))
    }

    pub fn dir(&mut self, raw: &[u8], mode: u32, mtime: i64) -> Result<()> {
        let path = self.place(raw)?;
        self.claim(&path, Node::Dir)?;
        self.own
            .dirs
            .get(&path, true)
            .map_err(|e| self.shared.io(&path, e))?;
        self.dir_meta.insert(path, (mode, mtime));
        Ok(())
    }

    pub fn symlink(&mut self, raw: &[u8], target: &[u8], mtime: i64) -> Result<()> {
        let path = self.place(raw)?;
        if path.is_empty() {
            return Err(refuse(raw, "the destination itself cannot be a link"));
        }
        if target.is_empty() || target.contains(&0) {
            return Err(refuse(&path, "a symbolic link to nothing"));
        }
        self.claim(&path, Node::Symlink)?;
        let dfd = self.parent_fd(&path)?;
        let (_, name) = names::split(&path);
        tree::symlink_at(target, dfd, name).map_err(|e| self.shared.io(&path, e))?;
        tree::set_link_times(dfd, name, mtime).map_err(|e| self.shared.io(&path, e))?;
        self.links.insert(path, target.to_vec());
        self.files += 1;
        Ok(())
    }

    pub fn hard_link(&mut self, raw: &[u8], to_raw: &[u8]) -> Result<()> {
        let path = self.place(raw)?;
        let to = names::member(to_raw).ok_or_else(|| {
            refuse(
                &path,
                "a hard link to an absolute name or one holding '..', outside the destination",
            )
        })?;
        if self.nodes.get(&to) != Some(&Node::File) {
            return Err(refuse(
                &path,
                &format!(
                    "a hard link to {}, which is not a file the archive holds before it",
                    crate::pack::show(&to)
                ),
            ));
        }
        if self.jobs.contains_key(&path) || self.jobs.contains_key(&to) {
            // conda-unpack would give the relocated name a file of its own and leave the
            // other with the old bytes, which are gone once the file is written relocated.
            // conda-pack never links a file that holds a prefix.
            return Err(refuse(
                &path,
                "a hard link of a file conda-unpack rewrites; conda-pack never writes one. Extract the archive with tar, then run bin/conda-unpack",
            ));
        }
        self.claim(&path, Node::File)?;
        self.parent_fd(&path)?;
        self.hard_links.push((path, to));
        self.files += 1;
        Ok(())
    }

    /// A file member: its name checked and claimed, then its bytes (`size` of them, which
    /// `read` yields) handed to a writer, or written here when too large to hold.
    pub fn file(
        &mut self,
        raw: &[u8],
        mode: u32,
        mtime: i64,
        size: u64,
        read: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Result<()> {
        let (path, job) = self.begin_file(raw)?;
        let script = is_unpack_script(&path) && size <= MAX_SCRIPT;
        if size > INLINE && !script {
            return self
                .own
                .write_stream(&path, mode, mtime, job.as_deref(), read);
        }
        self.shared.take_budget(size)?;
        let mut data = crate::buffers::take(size as usize);
        data.resize(size as usize, 0);
        let r = read_exact(read, &mut data).map_err(|e| Error::io(self.shared.archive.clone(), e));
        if let Err(e) = r {
            self.shared.give_budget(size);
            return Err(e);
        }
        if script {
            self.scripts.push((path.clone(), data.clone()));
        }
        let queue = self.route(&path);
        self.send(
            queue,
            Work::Mem {
                path,
                mode,
                mtime,
                data,
                job,
            },
        )
    }

    /// A file member's place in the tree, claimed, its directory open, and its
    /// relocation job if it has one.
    fn begin_file(&mut self, raw: &[u8]) -> Result<(Vec<u8>, Option<Arc<Job>>)> {
        let path = self.place(raw)?;
        if path.is_empty() {
            return Err(refuse(raw, "a file in place of the destination directory"));
        }
        self.claim(&path, Node::File)?;
        self.parent_fd(&path)?;
        let job = self.jobs.get(&path).cloned();
        self.files += 1;
        Ok((path, job))
    }

    /// A file whose bytes a writer produces itself (`task` creates it).
    pub fn file_task(
        &mut self,
        raw: &[u8],
        task: impl FnOnce(&mut Writer, &[u8], Option<&Job>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let (path, job) = self.begin_file(raw)?;
        let queue = self.route(&path);
        self.send(
            queue,
            Work::Task(Box::new(move |w| task(w, &path, job.as_deref()))),
        )
    }

    /// Keep `content` of `raw` as a conda-unpack script met on the way.
    pub fn keep_script(&mut self, raw: &[u8], content: Vec<u8>) {
        if let Some(path) = names::member(raw) {
            self.scripts.push((path, content));
        }
    }

    /// The writer for `path`: the one its directory's files go to.
    fn route(&mut self, path: &[u8]) -> usize {
        let (dir, _) = names::split(path);
        if let Some(&i) = self.routes.get(dir) {
            return i;
        }
        let i = self.routes.len() % self.work.len().max(1);
        self.routes.insert(dir.to_vec(), i);
        i
    }

    fn send(&mut self, queue: usize, work: Work) -> Result<()> {
        let Some(tx) = self.work.get(queue) else {
            return Err(Error::Cancelled); // the writers are stopped
        };
        let mut work = work;
        loop {
            self.check()?;
            match tx.send_timeout(work, Duration::from_millis(100)) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(w)) => work = w,
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                    return Err(Error::Cancelled)
                }
            }
        }
    }

    fn stop_writers(&mut self) {
        self.work.clear();
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
    }

    /// Wait for the writers, then make the hard links, check where symbolic links lead
    /// and give directories their modes and times. `error` is how the reading ended.
    pub fn finish(mut self, read: Result<()>) -> Result<Outcome> {
        if read.is_err() {
            self.shared.cancel.cancel();
        }
        self.stop_writers();
        let failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match (failure, read) {
            (Some(e), _) => return Err(e),
            (None, Err(e)) => return Err(e),
            (None, Ok(())) => self.shared.cancel.check()?,
        }
        for (path, to) in std::mem::take(&mut self.hard_links) {
            let (tdir, tname) = names::split(&to);
            let (ldir, lname) = names::split(&path);
            let tfd = self
                .own
                .dirs
                .get(tdir, false)
                .map_err(|e| self.shared.io(&to, e))?;
            // Held open while the link's directory is looked up.
            let tfd = tree::open_dir_at(tfd, b".").map_err(|e| self.shared.io(&to, e))?;
            let lfd = self
                .own
                .dirs
                .get(ldir, false)
                .map_err(|e| self.shared.io(&path, e))?;
            tree::link_at(tfd.as_raw_fd(), tname, lfd, lname)
                .map_err(|e| self.shared.io(&path, e))?;
        }
        for (path, target) in &self.links {
            if !names::link_stays_inside(&self.nodes, &self.links, path, target) {
                return Err(refuse(
                    path,
                    &format!(
                        "a symbolic link to {}, outside the destination. Extract the archive with tar if you trust it",
                        crate::pack::show(target)
                    ),
                ));
            }
        }
        #[allow(clippy::type_complexity)]
        let mut dirs: Vec<(&Vec<u8>, Option<(u32, i64)>)> = self
            .nodes
            .iter()
            .filter(|(_, n)| **n == Node::Dir)
            .map(|(p, _)| (p, self.dir_meta.get(p).copied()))
            .collect();
        // Deepest first: setting a directory's time, then making something in it, would
        // change it again; and a read-only one would refuse what comes below it.
        dirs.sort_by_key(|(p, _)| {
            std::cmp::Reverse(p.iter().filter(|&&b| b == b'/').count() + !p.is_empty() as usize)
        });
        let modes = self.shared.modes;
        let mut fresh = self
            .own
            .dirs
            .try_clone()
            .map_err(|e| Error::io(self.shared.root.clone(), e))?;
        for (path, meta) in dirs {
            let fd = if path.is_empty() {
                fresh.root()
            } else {
                let (up, name) = names::split(path);
                let parent = fresh.get(up, false).map_err(|e| self.shared.io(path, e))?;
                let fd = tree::open_dir_at(parent, name).map_err(|e| self.shared.io(path, e))?;
                let raw = fd.as_raw_fd();
                let r = Self::stamp_dir(raw, modes.dir(meta.map(|m| m.0)), meta.map(|m| m.1));
                r.map_err(|e| self.shared.io(path, e))?;
                continue;
            };
            Self::stamp_dir(fd, modes.dir(meta.map(|m| m.0)), meta.map(|m| m.1))
                .map_err(|e| self.shared.io(path, e))?;
        }
        self.scripts
            .sort_by_key(|(p, _)| p.iter().filter(|&&b| b == b'/').count());
        Ok(Outcome {
            files: self.files,
            relocated: self.shared.relocated.load(Ordering::Relaxed),
            scripts: std::mem::take(&mut self.scripts),
        })
    }

    fn stamp_dir(fd: std::os::fd::RawFd, mode: u32, mtime: Option<i64>) -> io::Result<()> {
        tree::chmod_fd(fd, mode)?;
        if let Some(t) = mtime {
            tree::set_times(fd, t, 0)?;
        }
        Ok(())
    }
}

impl Drop for Extractor {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.stop_writers();
    }
}

fn what(n: Node) -> &'static str {
    match n {
        Node::Dir => "a directory",
        Node::File => "a file",
        Node::Symlink => "a symbolic link",
    }
}

fn read_exact(
    read: &mut dyn FnMut(&mut [u8]) -> io::Result<usize>,
    mut buf: &mut [u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of a member: it is truncated",
            ));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

/// conda-unpack's pass over files already unpacked (for archives whose records come only
/// at their end): each file named by `jobs` is relocated where it is. A file with other
/// names (hard links) is replaced by a new one instead, as conda-unpack replaces it,
/// leaving the other names its old bytes. Returns how many files changed.
pub fn relocate_tree(
    root: &Path,
    jobs: &[(Vec<u8>, Arc<Job>)],
    target: &[u8],
    threads: usize,
    cancel: &Cancel,
) -> Result<u64> {
    let root_fd = tree::open_root(root).map_err(|e| Error::io(root.to_path_buf(), e))?;
    let dirs = Dirs::new(root_fd);
    let next = AtomicU64::new(0);
    let changed = AtomicU64::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let show = |p: &[u8]| {
        use std::os::unix::ffi::OsStrExt;
        root.join(std::ffi::OsStr::from_bytes(p))
    };
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let mut dirs = match dirs.try_clone() {
                Ok(d) => d,
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Error::io(root.to_path_buf(), e));
                    return;
                }
            };
            let (next, changed, failure) = (&next, &changed, &failure);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= jobs.len() || cancel.is_cancelled() {
                    return;
                }
                let (path, job) = &jobs[i];
                match relocate_file(&mut dirs, path, job, target) {
                    Ok(true) => {
                        changed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let e = match e {
                            FileError::Io(e) => Error::io(show(path), e),
                            FileError::Rules(e) => Error::Relocation {
                                path: show(path),
                                message: e.to_string(),
                            },
                        };
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        cancel.cancel();
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    cancel.check()?;
    Ok(changed.into_inner())
}

enum FileError {
    Io(io::Error),
    Rules(prefix::ReplaceError),
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> FileError {
        FileError::Io(e)
    }
}

fn relocate_file(
    dirs: &mut Dirs,
    path: &[u8],
    job: &Job,
    target: &[u8],
) -> std::result::Result<bool, FileError> {
    let (dir, name) = names::split(path);
    let dfd = match dirs.get(dir, false) {
        Ok(fd) => fd,
        // Not reachable without following a link: conda-unpack skips it too.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    };
    let Some(st) = tree::lstat_at(dfd, name)? else {
        return Ok(false);
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {}
        libc::S_IFLNK => return Ok(false), // its target, if ours, has its own record
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file").into()),
    }
    let file = tree::open_file(dfd, name, st.st_nlink == 1)?;
    let mut data = Vec::with_capacity(st.st_size as usize);
    io::Read::read_to_end(&mut &file, &mut data)?;
    let Some(new) = relocate::relocate(&data, job, target).map_err(FileError::Rules)? else {
        return Ok(false);
    };
    let mtime = mtime_after(path, st.st_mtime, true);
    if st.st_nlink == 1 {
        // In place: a rename over the old file would make ext4 flush it first.
        file.write_all_at(&new, 0)?;
        if new.len() < data.len() {
            file.set_len(new.len() as u64)?;
        }
        tree::set_times(file.as_raw_fd(), mtime, st.st_mtime_nsec)?;
        return Ok(true);
    }
    let tmp = {
        let mut t = b".conda-pack-relocate-".to_vec();
        t.extend_from_slice(name);
        t
    };
    let new_file = tree::create_file(dfd, &tmp, 0o600)?;
    let r = (|| {
        new_file.write_all_at(&new, 0)?;
        tree::chmod_fd(new_file.as_raw_fd(), st.st_mode & 0o7777)?;
        tree::set_times(new_file.as_raw_fd(), mtime, st.st_mtime_nsec)?;
        tree::rename_at(dfd, &tmp, name)
    })();
    if r.is_err() {
        let _ = tree::unlink_at(dfd, &tmp);
    }
    r?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Which thread wrote each path.
    type Seen = Arc<Mutex<Vec<(Vec<u8>, String)>>>;

    /// Each directory's files are written by one writer thread, and directories met in
    /// turn go to different writers.
    #[test]
    fn a_directory_is_written_by_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan {
            root: dir.path().to_path_buf(),
            jobs: HashMap::new(),
            target: b"/opt/env".to_vec(),
            threads: 2,
        };
        let counters = Arc::new(Counters::default());
        let mut ext =
            Extractor::new(plan, Cancel::default(), counters, PathBuf::from("a.tar")).unwrap();
        let seen: Seen = Arc::default();
        for d in ["a", "b", "a/c"] {
            for i in 0..40 {
                let seen = Arc::clone(&seen);
                let name = format!("{d}/f{i}");
                ext.file_task(name.as_bytes(), move |w, path, job| {
                    let thread = std::thread::current().name().unwrap_or("").to_string();
                    seen.lock().unwrap().push((path.to_vec(), thread));
                    w.write_mem(path, 0o644, 0, b"x".to_vec(), job)
                })
                .unwrap();
            }
        }
        let done = ext.finish(Ok(())).unwrap();
        assert_eq!(done.files, 120);
        let seen = seen.lock().unwrap();
        let writers = |d: &str| -> HashSet<String> {
            seen.iter()
                .filter(|(p, _)| names::split(p).0 == d.as_bytes())
                .map(|(_, t)| t.clone())
                .collect()
        };
        let (a, b, c) = (writers("a"), writers("b"), writers("a/c"));
        assert_eq!((a.len(), b.len(), c.len()), (1, 1, 1), "{a:?} {b:?} {c:?}");
        assert_ne!(a, b);
        assert_eq!(a, c, "the third directory goes to the first writer again");
        assert!(dir.path().join("a/c/f39").is_file());
    }
}
