//! One pass over an environment: what conda recorded, matched against what is on disk.
//!
//! The prefix walk and the parsing of conda's records run in parallel; then every path a
//! record names is looked up among the files found, and the rest of the files are the
//! unmanaged ones. Where a record does not say which files hold the prefix (micromamba
//! leaves that out), the package cache's `info/paths.json` is read for it. The result is
//! facts only; what they mean (missing, changed, unmanaged) is decided in Python.

use crate::error::Result;
use crate::meta::{self, Hashes, PathEntry, Record};
use crate::scan::{self, Found, Kind};
use rayon::prelude::*;
use rustc_hash::FxHashSet;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a package's placeholder records came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    CondaMeta,
    PathsJson,
    /// Neither says: the package's files must be scanned for the prefix.
    Unknown,
}

impl Placeholders {
    pub fn name(self) -> &'static str {
        match self {
            Placeholders::CondaMeta => "conda-meta",
            Placeholders::PathsJson => "paths.json",
            Placeholders::Unknown => "unknown",
        }
    }
}

pub struct Package {
    pub record: Record,
    pub placeholders: Placeholders,
}

/// A path recorded by a package, or found on disk, or both.
pub struct Entry {
    pub path: Box<[u8]>,
    /// Index into [`EnvIndex::packages`]; None for files no package recorded.
    pub package: Option<u32>,
    /// What is on disk there; None when a recorded path is missing.
    pub disk: Option<(Kind, u64)>,
    /// Where the record's facts about the path are among its package's paths (unused
    /// for unmanaged files). An index, not the facts: an entry is then 48 bytes, not
    /// ~160, and the index holds every file of the environment at once.
    pub recorded_at: u32,
}

impl Entry {
    /// The record's facts about the path, if a package recorded it.
    pub fn recorded<'a>(&self, packages: &'a [Package]) -> Option<&'a PathEntry> {
        let paths = packages[self.package? as usize].record.paths.as_deref()?;
        paths.get(self.recorded_at as usize)
    }
}

pub struct EnvIndex {
    pub packages: Vec<Package>,
    pub entries: Vec<Entry>,
    pub windows: bool,
    pub python_version: Option<String>,
    /// Inodes of regular files found under more than one name in the environment, sorted:
    /// the only ones the packer must remember to store hard links.
    pub shared_inodes: Vec<u64>,
}

/// Where noarch: python files land (conda's layout rule).
struct Layout {
    site_packages: Option<String>,
    bin_dir: &'static str,
}

impl Layout {
    fn installed(&self, rel: &str, noarch_python: bool) -> String {
        if noarch_python {
            if let (Some(sp), Some(rest)) =
                (&self.site_packages, rel.strip_prefix("site-packages/"))
            {
                return format!("{sp}/{rest}");
            }
            if let Some(rest) = rel.strip_prefix("python-scripts/") {
                return format!("{}/{rest}", self.bin_dir);
            }
        }
        rel.to_string()
    }
}

pub fn index(prefix: &Path, skip_top: &[OsString]) -> Result<EnvIndex> {
    let conda_meta = prefix.join("conda-meta");
    let (records, found) = rayon::join(
        || meta::read_records(&conda_meta),
        || scan::scan(prefix, skip_top),
    );
    let (records, found) = (records?, found?);
    let windows = records
        .iter()
        .any(|r| r.subdir.as_deref().is_some_and(|s| s.starts_with("win-")));
    let python_version = records
        .iter()
        .find(|r| r.name == "python")
        .map(|r| r.version.clone());
    let layout = Layout {
        site_packages: python_version.as_ref().map(|v| {
            if windows {
                "Lib/site-packages".to_string()
            } else {
                let mm: Vec<&str> = v.split('.').take(2).collect();
                format!("lib/python{}/site-packages", mm.join("."))
            }
        }),
        bin_dir: if windows { "Scripts" } else { "bin" },
    };
    let shared_inodes = shared_inodes(&found);
    let mut packages = resolve_placeholders(records, &layout);
    let entries = join(prefix, &mut packages, found);
    crate::memory::release_freed();
    Ok(EnvIndex {
        entries,
        packages,
        windows,
        python_version,
        shared_inodes,
    })
}

/// Files installed from a package cache are hard links to it, so most have several links;
/// what matters is which inodes occur twice *here*. Remembering every linked file's path
/// instead cost ~100 bytes per file while packing.
fn shared_inodes(found: &[Found]) -> Vec<u64> {
    let mut inos: Vec<u64> = found
        .iter()
        .filter(|f| f.kind == Kind::File)
        .map(|f| f.ino)
        .collect();
    inos.sort_unstable();
    let mut shared: Vec<u64> = inos
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    shared.dedup();
    shared
}

/// Fill in placeholders from the package cache where conda-meta has none.
fn resolve_placeholders(records: Vec<Record>, layout: &Layout) -> Vec<Package> {
    records
        .into_par_iter()
        .map(|mut record| {
            let paths = record.paths.get_or_insert_with(|| {
                record
                    .files
                    .iter()
                    .map(|f| PathEntry {
                        path: f.as_str().into(),
                        ..PathEntry::default()
                    })
                    .collect()
            });
            if paths.iter().any(|p| p.placeholder.is_some()) {
                return Package {
                    record,
                    placeholders: Placeholders::CondaMeta,
                };
            }
            let cached = record
                .link_source
                .as_ref()
                .and_then(|src| meta::read_paths_json(&[PathBuf::from(src)]).ok())
                .and_then(|mut v| v.pop().flatten());
            let Some(cached) = cached else {
                return Package {
                    record,
                    placeholders: Placeholders::Unknown,
                };
            };
            let noarch = record.noarch.as_deref() == Some("python");
            let by_path: HashMap<String, PathEntry> = cached
                .into_iter()
                .map(|e| (layout.installed(&e.path, noarch), e))
                .collect();
            // No path of this record names a placeholder (see above), so the cache's
            // facts are the only ones.
            for p in paths.iter_mut() {
                if let Some(c) = by_path.get(&*p.path) {
                    if let Some(ph) = &c.placeholder {
                        let mut ph = ph.clone();
                        ph.file_mode = ph.file_mode.or(Some(Arc::from("text")));
                        p.placeholder = Some(ph);
                        p.size_in_bytes = p.size_in_bytes.or(c.size_in_bytes);
                    }
                }
            }
            Package {
                record,
                placeholders: Placeholders::PathsJson,
            }
        })
        .collect()
}

/// An [`EnvIndex`]'s entries as flat columns, one element per entry in order: a few bytes
/// per file where a Python tuple per entry costs hundreds, in environments of 100k+ files.
#[derive(Default)]
pub struct Columns {
    /// Every path followed by a NUL (which no path holds); `ends[i]` is where path `i`'s
    /// NUL is.
    pub paths: Vec<u8>,
    pub ends: Vec<u64>,
    /// Package index, -1 for unrecorded files.
    pub package: Vec<i32>,
    /// [`Kind::code`]'s letter, or `-` for a recorded path missing on disk.
    pub kind: Vec<u8>,
    /// The record's size for recorded files (0 if it has none), else the size on disk.
    pub size: Vec<u64>,
    /// [`SIZE_RECORDED`], [`BYTECODE_OF_RECORDED`], [`PLACEHOLDER`], [`SHA256`] and
    /// [`SHA256_IN_PREFIX`] bits.
    pub flags: Vec<u8>,
    /// 1 + index into `path_types`, 0 when the record gives none.
    pub path_type: Vec<u8>,
    pub path_types: Vec<String>,
    /// The entries whose record names a placeholder ([`PLACEHOLDER`] set), in order.
    pub with_placeholder: PlaceholderColumns,
}

/// Facts of the entries with a placeholder, one element per such entry: ~80 bytes each
/// where Python tuples of hex strings cost ~400.
#[derive(Default)]
pub struct PlaceholderColumns {
    pub entry: Vec<u64>,
    /// Index into `strings`.
    pub placeholder: Vec<u32>,
    /// 1 + index into `strings`, 0 when the record gives no file mode.
    pub mode: Vec<u32>,
    pub strings: Vec<String>,
    /// sha256 then sha256_in_prefix, 32 bytes each (zeros where the flag says absent).
    pub hashes: Vec<u8>,
    /// Where each of `strings` is.
    index: HashMap<String, u32>,
}

impl PlaceholderColumns {
    fn push(&mut self, entry: usize, placeholder: &str, mode: Option<&str>, h: &Hashes) -> u8 {
        let mut id = |s: &str| -> u32 {
            if let Some(&k) = self.index.get(s) {
                return k;
            }
            self.strings.push(s.to_string());
            let k = self.strings.len() as u32 - 1;
            self.index.insert(s.to_string(), k);
            k
        };
        let text = id(placeholder);
        let mode = mode.map_or(0, |m| id(m) + 1);
        self.entry.push(entry as u64);
        self.placeholder.push(text);
        self.mode.push(mode);
        let mut flags = PLACEHOLDER;
        for (digest, bit) in [(&h.sha256, SHA256), (&h.sha256_in_prefix, SHA256_IN_PREFIX)] {
            match digest.as_deref().and_then(meta::parse_sha256) {
                Some(d) => {
                    self.hashes.extend_from_slice(&d);
                    flags |= bit;
                }
                None => self.hashes.extend_from_slice(&[0; 32]),
            }
        }
        flags
    }
}

/// The `kind` of a recorded path missing on disk (the others are [`Kind::code`]'s).
pub const MISSING: u8 = b'-';

/// The record gives the file's size (`size` is then the package's, to check against).
pub const SIZE_RECORDED: u8 = 1;
/// An unrecorded `__pycache__/*.pyc` whose source file is recorded: Python regenerates
/// it where the environment lands.
pub const BYTECODE_OF_RECORDED: u8 = 2;
/// The record names a placeholder: the entry's facts are in [`PlaceholderColumns`].
pub const PLACEHOLDER: u8 = 4;
/// The record gives the package file's sha256.
pub const SHA256: u8 = 8;
/// The record gives the installed file's sha256.
pub const SHA256_IN_PREFIX: u8 = 16;

impl Columns {
    /// The columns of `entries`, whose recorded facts are in `packages` (which keep
    /// them: the caller may drop the packages' paths once this returns).
    pub fn new(entries: Vec<Entry>, packages: &[Package]) -> Columns {
        let recorded: FxHashSet<&[u8]> = entries
            .iter()
            .filter(|e| e.package.is_some())
            .map(|e| &*e.path)
            .collect();
        let compiled: Vec<bool> = entries
            .iter()
            .map(|e| {
                e.package.is_none()
                    && bytecode_source(&e.path).is_some_and(|s| recorded.contains(s.as_slice()))
            })
            .collect();
        drop(recorded);
        let n = entries.len();
        let mut c = Columns {
            ends: Vec::with_capacity(n),
            package: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            size: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            path_type: Vec::with_capacity(n),
            ..Columns::default()
        };
        let mut type_index: HashMap<String, u8> = HashMap::new();
        let unrecorded = PathEntry::default();
        for (i, (e, compiled)) in entries.into_iter().zip(compiled).enumerate() {
            c.paths.extend_from_slice(&e.path);
            c.ends.push(c.paths.len() as u64);
            c.paths.push(0);
            c.package.push(e.package.map_or(-1, |p| p as i32));
            let (kind, size) = match e.disk {
                Some((k, s)) => (k.code(), s),
                None => (MISSING, 0),
            };
            c.kind.push(kind);
            c.size.push(size);
            let m = e.recorded(packages).unwrap_or(&unrecorded);
            let mut flags = 0;
            if let Some(ph) = m.placeholder.as_deref().filter(|p| !p.text.is_empty()) {
                let mode = ph.file_mode.as_deref();
                flags |= c.with_placeholder.push(i, &ph.text, mode, &ph.hashes);
            }
            if m.size_in_bytes.is_some() {
                flags |= SIZE_RECORDED;
            }
            if compiled {
                flags |= BYTECODE_OF_RECORDED;
            }
            c.flags.push(flags);
            let t = match &m.path_type {
                None => 0,
                Some(t) => match type_index.get(t.name()) {
                    Some(&k) => k,
                    // Types beyond u8's range are kept as "no type": none such exist.
                    None if c.path_types.len() < 255 => {
                        c.path_types.push(t.name().to_string());
                        let k = c.path_types.len() as u8;
                        type_index.insert(t.name().to_string(), k);
                        k
                    }
                    None => 0,
                },
            };
            c.path_type.push(t);
        }
        c
    }
}

/// The source `dir/name.py` of bytecode `dir/__pycache__/name.TAG[.opt-N].pyc`, by
/// `importlib.util.source_from_cache`'s rule.
fn bytecode_source(path: &[u8]) -> Option<Vec<u8>> {
    let (dir, file) = match path.iter().rposition(|&b| b == b'/') {
        Some(k) => (&path[..k], &path[k + 1..]),
        None => return None,
    };
    let parent = match dir.iter().rposition(|&b| b == b'/') {
        Some(k) => &dir[..k + 1],
        None => &dir[..0],
    };
    if &dir[parent.len()..] != b"__pycache__" || !file.ends_with(b".pyc") {
        return None;
    }
    let dots = file.iter().filter(|&&b| b == b'.').count();
    let stem = &file[..file.iter().position(|&b| b == b'.')?];
    let ok = match dots {
        2 => true,
        3 => file
            .split(|&b| b == b'.')
            .nth(2)
            .is_some_and(|opt| opt.starts_with(b"opt-") && opt.len() > 4),
        _ => false,
    };
    ok.then(|| [parent, stem, b".py"].concat())
}

/// Match recorded paths to files on disk, in archive order (bytewise, as Python orders
/// str; records' order kept among duplicates: Python then walks and keeps entries without
/// sorting or copying them). The paths move out of the records into the entries (they are
/// the bulk of the memory). A recorded file's size is the record's; unrecorded files are
/// stat'ed (usually few of them). Both sides are sorted and merged: a hash map of every
/// path found cost a quarter of indexing the 3 GB benchmark env.
fn join(prefix: &Path, packages: &mut [Package], mut found: Vec<Found>) -> Vec<Entry> {
    let listed: usize = packages
        .iter()
        .map(|p| p.record.paths.as_ref().map_or(0, Vec::len))
        .sum();
    // Room for the unmanaged files too, merged in place below: capacity never written
    // costs no memory, a second vector of entries would (5 MB at 100k files).
    let mut entries = Vec::with_capacity(listed + found.len());
    for (i, pkg) in packages.iter_mut().enumerate() {
        for (at, p) in pkg.record.paths.iter_mut().flatten().enumerate() {
            entries.push(Entry {
                path: std::mem::take(&mut p.path).into_boxed_bytes(),
                package: Some(i as u32),
                disk: None,
                recorded_at: at as u32,
            });
        }
    }
    // Unstable sorts need no buffer; ties are broken by the records' order, as a stable
    // sort would keep it.
    rayon::join(
        || {
            entries.par_sort_unstable_by(|a, b| {
                (&a.path, a.package, a.recorded_at).cmp(&(&b.path, b.package, b.recorded_at))
            })
        },
        || found.par_sort_unstable_by(|a, b| name(a).cmp(name(b))),
    );
    // A path on disk goes to the first record naming it; the files no record names are
    // the unmanaged ones.
    let mut unmanaged = Vec::new();
    let mut disk = found.into_iter().peekable();
    for e in entries.iter_mut() {
        while let Some(f) = disk.next_if(|f| name(f) < &e.path[..]) {
            unmanaged.push(f);
        }
        if let Some(f) = disk.next_if(|f| name(f) == &e.path[..]) {
            let size = e.recorded(packages).and_then(|p| p.size_in_bytes);
            e.disk = Some((f.kind, size.unwrap_or(0)));
        }
    }
    unmanaged.extend(disk);
    scan::sizes(prefix, &mut unmanaged);
    // Merge the sorted unmanaged files in from the back, into the room reserved above.
    let mut placed = entries.len();
    entries.resize_with(placed + unmanaged.len(), || Entry {
        path: Box::default(),
        package: None,
        disk: None,
        recorded_at: 0,
    });
    for k in (0..entries.len()).rev() {
        let Some(last) = unmanaged.last() else { break };
        if placed > 0 && entries[placed - 1].path[..] > *name(last) {
            entries.swap(placed - 1, k);
            placed -= 1;
        } else {
            entries[k] = unmanaged_entry(unmanaged.pop().expect("a last file"));
        }
    }
    entries
}

fn name(f: &Found) -> &[u8] {
    f.path.as_os_str().as_bytes()
}

fn unmanaged_entry(f: Found) -> Entry {
    Entry {
        path: f.path.into_os_string().into_vec().into_boxed_slice(),
        package: None,
        disk: Some((f.kind, f.size)),
        recorded_at: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noarch_paths_land_in_site_packages_and_bin() {
        let l = Layout {
            site_packages: Some("lib/python3.11/site-packages".into()),
            bin_dir: "bin",
        };
        assert_eq!(
            l.installed("site-packages/a/b.py", true),
            "lib/python3.11/site-packages/a/b.py"
        );
        assert_eq!(l.installed("python-scripts/tool", true), "bin/tool");
        assert_eq!(
            l.installed("site-packages/a/b.py", false),
            "site-packages/a/b.py"
        );
    }

    #[test]
    fn columns_are_in_bytewise_order_and_only_inner_hard_links_are_shared() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("conda-meta")).unwrap();
        std::fs::create_dir_all(p.join("a")).unwrap();
        std::fs::write(p.join("a.b"), b"1").unwrap();
        std::fs::write(p.join("a/b"), b"2").unwrap();
        std::fs::hard_link(p.join("a/b"), p.join("a/c")).unwrap();
        // A link outside the environment (as into a package cache) does not count.
        let outside = tempfile::tempdir().unwrap();
        std::fs::hard_link(p.join("a.b"), outside.path().join("cached")).unwrap();
        let idx = index(p, &[]).unwrap();
        let shared = idx.shared_inodes.clone();
        let cols = Columns::new(idx.entries, &idx.packages);
        let mut paths = Vec::new();
        let mut start = 0;
        for &end in &cols.ends {
            paths.push(String::from_utf8(cols.paths[start..end as usize].to_vec()).unwrap());
            assert_eq!(cols.paths[end as usize], 0);
            start = end as usize + 1;
        }
        // Bytewise: '.' sorts before '/', unlike Path's component order.
        assert_eq!(paths, ["a.b", "a/b", "a/c", "conda-meta"]); // the last: an empty dir
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(p.join("a/b")).unwrap().ino();
        assert_eq!(shared, vec![ino]);
    }

    #[test]
    fn bytecode_maps_to_its_source_like_importlib() {
        let src = |p: &str| bytecode_source(p.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            src("lib/a/__pycache__/m.cpython-311.pyc").as_deref(),
            Some("lib/a/m.py")
        );
        assert_eq!(
            src("__pycache__/m.cpython-311.opt-1.pyc").as_deref(),
            Some("m.py")
        );
        assert_eq!(
            src("x/__pycache__/m.cpython-311.opt-2.pyc").as_deref(),
            Some("x/m.py")
        );
        assert_eq!(src("x/__pycache__/m.pyc"), None);
        assert_eq!(src("x/__pycache__/m.a.b.c.pyc"), None);
        assert_eq!(src("x/__pycache__/m.a.b.pyc"), None);
        assert_eq!(src("x/m.cpython-311.pyc"), None);
    }

    #[test]
    fn recorded_files_are_matched_and_the_rest_are_unmanaged() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("conda-meta")).unwrap();
        std::fs::create_dir_all(p.join("lib")).unwrap();
        std::fs::write(p.join("lib/a.txt"), b"aaa").unwrap();
        std::fs::write(p.join("lib/extra.txt"), b"x").unwrap();
        std::fs::write(
            p.join("conda-meta/pkg-1-0.json"),
            br#"{"name":"pkg","version":"1","build":"0","files":["lib/a.txt","lib/gone.txt"],
                "paths_data":{"paths":[{"_path":"lib/a.txt","size_in_bytes":3},{"_path":"lib/gone.txt"}]}}"#,
        )
        .unwrap();
        let idx = index(p, &[]).unwrap();
        let got: Vec<(String, Option<u32>, bool)> = idx
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.path).into_owned(),
                    e.package,
                    e.disk.is_some(),
                )
            })
            .collect();
        assert!(got.contains(&("lib/a.txt".into(), Some(0), true)));
        assert!(got.contains(&("lib/gone.txt".into(), Some(0), false)));
        assert!(got.contains(&("lib/extra.txt".into(), None, true)));
        assert!(got.contains(&("conda-meta/pkg-1-0.json".into(), None, true)));
        assert_eq!(idx.packages[0].placeholders, Placeholders::Unknown);
    }

    #[test]
    fn a_clobbered_path_is_on_disk_for_its_first_record_and_all_come_in_bytewise_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("conda-meta")).unwrap();
        std::fs::create_dir_all(p.join("lib/sub")).unwrap();
        for f in [
            "lib/both",
            "lib/mine",
            "lib/a-pip",
            "lib/sub/x",
            "lib/z-pip",
            "lib.txt",
        ] {
            std::fs::write(p.join(f), b"1").unwrap();
        }
        let record = |name: &str, paths: &[&str]| {
            let list: Vec<String> = paths.iter().map(|x| format!("{x:?}")).collect();
            let body = format!(
                r#"{{"name":"{name}","version":"1","build":"0","files":[{}]}}"#,
                list.join(",")
            );
            std::fs::write(p.join(format!("conda-meta/{name}-1-0.json")), body).unwrap();
        };
        record("a", &["lib/both", "lib/sub/x"]);
        record("b", &["lib/mine", "lib/both"]);
        let idx = index(p, &[]).unwrap();
        let name = |i: Option<u32>| i.map(|i| idx.packages[i as usize].record.name.clone());
        let got: Vec<(String, Option<String>, bool)> = idx
            .entries
            .iter()
            .map(|e| {
                let path = String::from_utf8_lossy(&e.path).into_owned();
                (path, name(e.package), e.disk.is_some())
            })
            .collect();
        let want = |path: &str, pkg: Option<&str>, disk: bool| {
            (path.to_string(), pkg.map(str::to_string), disk)
        };
        assert_eq!(
            got,
            [
                want("conda-meta/a-1-0.json", None, true),
                want("conda-meta/b-1-0.json", None, true),
                want("lib.txt", None, true),
                want("lib/a-pip", None, true),
                want("lib/both", Some("a"), true),
                want("lib/both", Some("b"), false),
                want("lib/mine", Some("b"), true),
                want("lib/sub/x", Some("a"), true),
                want("lib/z-pip", None, true),
            ]
        );
    }
}

#[cfg(test)]
mod timing {
    /// `INDEX_PREFIX=/env cargo test --release --lib index_phases -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn index_phases() {
        let prefix = std::path::PathBuf::from(std::env::var("INDEX_PREFIX").unwrap());
        let t = std::time::Instant::now();
        let found = crate::scan::scan(&prefix, &[]).unwrap();
        println!("scan {:?} ({} entries)", t.elapsed(), found.len());
        let t = std::time::Instant::now();
        let recs = crate::meta::read_records(&prefix.join("conda-meta")).unwrap();
        println!("records {:?} ({} records)", t.elapsed(), recs.len());
        let t = std::time::Instant::now();
        let idx = super::index(&prefix, &[]).unwrap();
        println!("index {:?} ({} entries)", t.elapsed(), idx.entries.len());
    }
}
