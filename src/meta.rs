//! Reading conda's per-package records (`conda-meta/*.json`, `info/paths.json`).
//!
//! Only the fields packing needs are kept, in plain structs; `lib.rs` hands them to Python,
//! which decides what they mean. Files are parsed in parallel: a large environment has
//! hundreds of records holding hundreds of thousands of paths.

use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One entry of `paths_data.paths` (conda-meta) or `paths` (info/paths.json), as parsed.
#[derive(Debug, Clone, Deserialize, Default)]
struct RawPathEntry {
    #[serde(rename = "_path")]
    path: String,
    #[serde(default)]
    path_type: Option<String>,
    #[serde(default)]
    prefix_placeholder: Option<String>,
    #[serde(default)]
    file_mode: Option<String>,
    #[serde(default)]
    size_in_bytes: Option<u64>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    sha256_in_prefix: Option<String>,
}

/// How conda linked a path. The common values need no allocation: an environment has
/// hundreds of thousands of paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathType {
    Hardlink,
    Softlink,
    Directory,
    Other(Box<str>),
}

impl PathType {
    fn parse(s: String) -> PathType {
        match s.as_str() {
            "hardlink" => PathType::Hardlink,
            "softlink" => PathType::Softlink,
            "directory" => PathType::Directory,
            _ => PathType::Other(s.into_boxed_str()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            PathType::Hardlink => "hardlink",
            PathType::Softlink => "softlink",
            PathType::Directory => "directory",
            PathType::Other(s) => s,
        }
    }
}

/// What restoring a file's placeholder is checked against.
#[derive(Debug, Clone, Default)]
pub struct Hashes {
    pub sha256: Option<String>,
    pub sha256_in_prefix: Option<String>,
}

/// A hex sha256 as bytes; None for anything else.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&s[2 * i..2 * i + 2]).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A path's record, kept small: hashes only where a placeholder will be restored, and one
/// shared string per distinct placeholder.
#[derive(Debug, Clone, Default)]
pub struct PathEntry {
    pub path: String,
    pub path_type: Option<PathType>,
    pub prefix_placeholder: Option<Arc<str>>,
    /// `text` or `binary` (any other value is kept as written).
    pub file_mode: Option<Arc<str>>,
    pub size_in_bytes: Option<u64>,
    pub hashes: Option<Box<Hashes>>,
}

/// Interns placeholder and mode strings while records are converted.
#[derive(Default)]
struct Strings(HashMap<String, Arc<str>>);

impl Strings {
    fn get(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.0.get(&s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s.as_str());
        self.0.insert(s, a.clone());
        a
    }
}

impl RawPathEntry {
    fn compact(self, strings: &mut Strings) -> PathEntry {
        let hashes = self.prefix_placeholder.as_ref().and_then(|_| {
            (self.sha256.is_some() || self.sha256_in_prefix.is_some()).then(|| {
                Box::new(Hashes {
                    sha256: self.sha256,
                    sha256_in_prefix: self.sha256_in_prefix,
                })
            })
        });
        PathEntry {
            path: self.path,
            path_type: self.path_type.map(PathType::parse),
            prefix_placeholder: self.prefix_placeholder.map(|p| strings.get(p)),
            file_mode: self.file_mode.map(|m| strings.get(m)),
            size_in_bytes: self.size_in_bytes,
            hashes,
        }
    }
}

fn compact_all(raw: Vec<RawPathEntry>) -> Vec<PathEntry> {
    let mut strings = Strings::default();
    raw.into_iter().map(|e| e.compact(&mut strings)).collect()
}

#[derive(Debug, Deserialize, Default)]
struct PathsData {
    #[serde(default)]
    paths: Vec<RawPathEntry>,
}

#[derive(Debug, Deserialize, Default)]
struct Link {
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRecord {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    build: Option<String>,
    #[serde(default)]
    build_string: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    subdir: Option<String>,
    #[serde(default)]
    noarch: Option<Value>,
    #[serde(default)]
    link: Option<Link>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    paths_data: Option<PathsData>,
}

/// A package record, as much of it as packing needs.
#[derive(Debug, Default)]
pub struct Record {
    /// File name inside conda-meta.
    pub filename: String,
    pub name: String,
    pub version: String,
    pub build: String,
    pub url: Option<String>,
    pub subdir: Option<String>,
    /// `python` for noarch: python packages, `generic`, or `None`.
    pub noarch: Option<String>,
    /// `link.source`; `None` when `link` is null or absent (pixi).
    pub link_source: Option<String>,
    pub files: Vec<String>,
    /// `None` when the record has no `paths_data` at all.
    pub paths: Option<Vec<PathEntry>>,
}

fn noarch_kind(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("type").and_then(Value::as_str).map(str::to_owned),
        Value::Bool(true) => Some("generic".into()),
        _ => None,
    }
}

fn parse_record(path: &Path) -> Result<Record> {
    let bytes = std::fs::read(path).at(path)?;
    let mut raw: RawRecord = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    drop(bytes);
    if raw.paths_data.is_some() {
        raw.files = Vec::new(); // it repeats the paths
    }
    Ok(Record {
        filename: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        name: raw.name.unwrap_or_default(),
        version: raw.version.unwrap_or_default(),
        build: raw.build.or(raw.build_string).unwrap_or_default(),
        url: raw.url,
        subdir: raw.subdir,
        noarch: noarch_kind(raw.noarch),
        link_source: raw.link.and_then(|l| l.source).filter(|s| !s.is_empty()),
        files: raw.files,
        paths: raw.paths_data.map(|p| compact_all(p.paths)),
    })
}

/// Parse every `*.json` in `conda_meta`, sorted by file name.
pub fn read_records(conda_meta: &Path) -> Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conda_meta)
        .at(conda_meta)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    files.sort();
    files.par_iter().map(|p| parse_record(p)).collect()
}

/// Parse `info/paths.json` of each package directory; `None` where it is absent.
pub fn read_paths_json(pkg_dirs: &[PathBuf]) -> Result<Vec<Option<Vec<PathEntry>>>> {
    pkg_dirs
        .par_iter()
        .map(|dir| {
            let path = dir.join("info").join("paths.json");
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let data: PathsData =
                        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                            path: path.clone(),
                            source,
                        })?;
                    Ok(Some(compact_all(data.paths)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Io { path, source: e }),
            }
        })
        .collect()
}

/// A conda-meta record as it goes into the archive: absolute paths into this machine's
/// package cache are blanked (they mean nothing on the target), keys sorted, one-space
/// indent, so the same record always gives the same bytes.
pub fn rewrite_record(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut data: Value = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if let Value::Object(map) = &mut data {
        for field in ["extracted_package_dir", "package_tarball_full_path"] {
            if let Some(v) = map.get_mut(field) {
                *v = Value::String(String::new());
            }
        }
        if let Some(Value::Object(link)) = map.get_mut("link") {
            if let Some(v) = link.get_mut("source") {
                *v = Value::String(String::new());
            }
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&data, &mut ser).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_64_hex_digits_or_nothing() {
        let hex = "00ff".repeat(16);
        assert_eq!(parse_sha256(&hex).unwrap()[..2], [0x00, 0xff]);
        assert_eq!(parse_sha256(&hex.to_uppercase()), parse_sha256(&hex));
        assert_eq!(parse_sha256(&hex[2..]), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
        // 64 bytes, but a character straddles a digit pair: no panic, no hash.
        assert_eq!(parse_sha256(&format!("0{}", "é".repeat(31) + "0")), None);
    }

    #[test]
    fn blanks_machine_paths_and_sorts_keys() {
        let src = br#"{"name":"x","link":{"source":"/pkgs/x","type":1},"extracted_package_dir":"/pkgs/x","files":[]}"#;
        let out = String::from_utf8(rewrite_record(src, Path::new("x.json")).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["link"]["source"], "");
        assert_eq!(v["extracted_package_dir"], "");
        assert!(out.find("\"extracted_package_dir\"").unwrap() < out.find("\"name\"").unwrap());
    }

    #[test]
    fn noarch_spellings() {
        assert_eq!(
            noarch_kind(Some(Value::String("python".into()))).as_deref(),
            Some("python")
        );
        assert_eq!(
            noarch_kind(Some(serde_json::json!({"type": "python"}))).as_deref(),
            Some("python")
        );
        assert_eq!(noarch_kind(Some(Value::Bool(false))), None);
        assert_eq!(noarch_kind(None), None);
    }
}
