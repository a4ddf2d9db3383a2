//! One pass over an environment: what conda recorded, matched against what is on disk.
//!
//! The prefix walk and the parsing of conda's records run in parallel; then every path a
//! record names is looked up among the files found, and the rest of the files are the
//! unmanaged ones. Where a record does not say which files hold the prefix (micromamba
//! leaves that out), the package cache's `info/paths.json` is read for it. The result is
//! facts only; what they mean (missing, changed, unmanaged) is decided in Python.

use crate::error::Result;
use crate::meta::{self, PathEntry, Record};
use crate::scan::{self, Found, Kind};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsString;
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
    pub path: PathBuf,
    /// Index into [`EnvIndex::packages`]; None for files no package recorded.
    pub package: Option<usize>,
    /// What is on disk there; None when a recorded path is missing.
    pub disk: Option<(Kind, u64)>,
    /// The record's facts about the path (None for unmanaged files).
    pub meta: Option<PathEntry>,
}

pub struct EnvIndex {
    pub packages: Vec<Package>,
    pub entries: Vec<Entry>,
    pub windows: bool,
    pub python_version: Option<String>,
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
    let mut packages = resolve_placeholders(records, &layout);
    let entries = join(prefix, &mut packages, found);
    crate::memory::release_freed();
    Ok(EnvIndex {
        entries,
        packages,
        windows,
        python_version,
    })
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
                        path: f.clone(),
                        ..PathEntry::default()
                    })
                    .collect()
            });
            if paths.iter().any(|p| p.prefix_placeholder.is_some()) {
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
            for p in paths.iter_mut() {
                if let Some(c) = by_path.get(&p.path) {
                    if c.prefix_placeholder.is_some() {
                        p.prefix_placeholder = c.prefix_placeholder.clone();
                        p.file_mode = c.file_mode.clone().or(Some(Arc::from("text")));
                        p.size_in_bytes = p.size_in_bytes.or(c.size_in_bytes);
                        p.hashes = p.hashes.take().or(c.hashes.clone());
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

/// Match recorded paths to files on disk; unmatched files come last, sorted. The paths
/// move out of the records into the entries (they are the bulk of the memory). A recorded
/// file's size is the record's; unrecorded files are stat'ed (usually few of them).
fn join(prefix: &Path, packages: &mut [Package], found: Vec<Found>) -> Vec<Entry> {
    let mut on_disk: HashMap<PathBuf, (Kind, u64)> = found
        .into_iter()
        .map(|f| (f.path, (f.kind, f.size)))
        .collect();
    let mut entries = Vec::with_capacity(on_disk.len() + 64);
    for (i, pkg) in packages.iter_mut().enumerate() {
        for mut p in pkg.record.paths.take().into_iter().flatten() {
            let path = PathBuf::from(std::mem::take(&mut p.path));
            let disk = on_disk
                .remove(&path)
                .map(|(kind, _)| (kind, p.size_in_bytes.unwrap_or(0)));
            entries.push(Entry {
                path,
                package: Some(i),
                disk,
                meta: Some(p),
            });
        }
    }
    let mut rest: Vec<Found> = on_disk
        .into_iter()
        .map(|(path, (kind, size))| Found { path, kind, size })
        .collect();
    rest.sort_by(|a, b| a.path.cmp(&b.path));
    scan::sizes(prefix, &mut rest);
    entries.extend(rest.into_iter().map(|f| Entry {
        path: f.path,
        package: None,
        disk: Some((f.kind, f.size)),
        meta: None,
    }));
    entries
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
        let got: Vec<(String, Option<usize>, bool)> = idx
            .entries
            .iter()
            .map(|e| {
                (
                    e.path.to_string_lossy().into_owned(),
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
