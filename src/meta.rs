//! Reading conda's per-package records (`conda-meta/*.json`, `info/paths.json`).
//!
//! Only the fields packing needs are kept, in plain structs; `lib.rs` hands them to Python,
//! which decides what they mean. Files are parsed in parallel: a large environment has
//! hundreds of records holding hundreds of thousands of paths.

use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One entry of `paths_data.paths` (conda-meta) or `paths` (info/paths.json).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct PathEntry {
    #[serde(rename = "_path")]
    pub path: String,
    #[serde(default)]
    pub path_type: Option<String>,
    #[serde(default)]
    pub prefix_placeholder: Option<String>,
    #[serde(default)]
    pub file_mode: Option<String>,
    #[serde(default)]
    pub size_in_bytes: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha256_in_prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct PathsData {
    #[serde(default)]
    paths: Vec<PathEntry>,
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
    let raw: RawRecord = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
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
        paths: raw.paths_data.map(|p| p.paths),
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
                    Ok(Some(data.paths))
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
