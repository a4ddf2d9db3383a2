//! Reading conda's per-package records (`conda-meta/*.json`, `info/paths.json`).
//!
//! Only the fields packing needs are kept, in plain structs; `lib.rs` hands them to Python,
//! which decides what they mean. Files are parsed in parallel: a large environment has
//! hundreds of records holding hundreds of thousands of paths.

use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One entry of `paths_data.paths` (conda-meta) or `paths` (info/paths.json), as parsed:
/// strings borrowed from the file's bytes where they hold no escapes, so that fields read
/// only to be converted (types, hashes) cost no allocation each.
#[derive(Debug, Deserialize)]
struct RawPathEntry<'a> {
    #[serde(rename = "_path", borrow)]
    path: Str<'a>,
    #[serde(default, borrow)]
    path_type: Option<Str<'a>>,
    #[serde(default, borrow)]
    prefix_placeholder: Option<Str<'a>>,
    #[serde(default, borrow)]
    file_mode: Option<Str<'a>>,
    #[serde(default)]
    size_in_bytes: Option<u64>,
    #[serde(default, borrow)]
    sha256: Option<Str<'a>>,
    #[serde(default, borrow)]
    sha256_in_prefix: Option<Str<'a>>,
}

/// A JSON string, borrowed from the input unless it had escapes to decode.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visit).map(Str)
    }
}

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn owned(self) -> String {
        self.0.into_owned()
    }
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
    fn parse(s: &str) -> PathType {
        match s {
            "hardlink" => PathType::Hardlink,
            "softlink" => PathType::Softlink,
            "directory" => PathType::Directory,
            _ => PathType::Other(s.into()),
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

/// A path's record, kept small (the index holds one per file of the environment at
/// once): what only a path holding a placeholder needs is boxed apart, and each distinct
/// placeholder is one shared string. 56 bytes a path, where separate fields took 96.
#[derive(Debug, Clone, Default)]
pub struct PathEntry {
    pub path: Box<str>,
    pub size_in_bytes: Option<u64>,
    pub path_type: Option<PathType>,
    pub placeholder: Option<Box<Placeholder>>,
}

/// A recorded placeholder and what restoring it is checked against.
#[derive(Debug, Clone)]
pub struct Placeholder {
    pub text: Arc<str>,
    /// `text` or `binary` (any other value is kept as written).
    pub file_mode: Option<Arc<str>>,
    pub hashes: Hashes,
}

/// Interns placeholder and mode strings while records are converted.
#[derive(Default)]
struct Strings(FxHashMap<Box<str>, Arc<str>>);

impl Strings {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(s.into(), a.clone());
        a
    }
}

impl RawPathEntry<'_> {
    fn compact(self, strings: &mut Strings) -> PathEntry {
        let (mode, sha256, sha256_in_prefix) = (self.file_mode, self.sha256, self.sha256_in_prefix);
        let placeholder = self.prefix_placeholder.map(|p| {
            Box::new(Placeholder {
                text: strings.get(p.as_str()),
                file_mode: mode.map(|m| strings.get(m.as_str())),
                hashes: Hashes {
                    sha256: sha256.map(Str::owned),
                    sha256_in_prefix: sha256_in_prefix.map(Str::owned),
                },
            })
        });
        PathEntry {
            path: self.path.owned().into_boxed_str(),
            size_in_bytes: self.size_in_bytes,
            path_type: self.path_type.map(|t| PathType::parse(t.as_str())),
            placeholder,
        }
    }
}

fn compact_all(raw: Vec<RawPathEntry>) -> Vec<PathEntry> {
    let mut strings = Strings::default();
    // Not `collect()`: that reuses the parsed entries' allocation in place, and a parsed
    // entry is nearly twice a compact one, so every record would keep ~80 idle bytes per
    // path until packing starts (8 MB of the 3 GB benchmark env's index).
    let mut out = Vec::with_capacity(raw.len());
    out.extend(raw.into_iter().map(|e| e.compact(&mut strings)));
    out
}

#[derive(Debug, Deserialize, Default)]
struct PathsData<'a> {
    #[serde(default, borrow)]
    paths: Vec<RawPathEntry<'a>>,
}

#[derive(Debug, Deserialize, Default)]
struct Link {
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRecord<'a> {
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
    /// Old records' paths; newer ones repeat them in `paths_data`, so they are only
    /// borrowed until it is known which is needed.
    #[serde(default, borrow)]
    files: Vec<Str<'a>>,
    #[serde(default, borrow)]
    paths_data: Option<PathsData<'a>>,
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
    let files = match raw.paths_data {
        Some(_) => Vec::new(),
        None => raw.files.into_iter().map(Str::owned).collect(),
    };
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
        files,
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
    fn strings_with_escapes_are_decoded_and_plain_ones_borrowed() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let src = format!(
            r#"{{"name":"x","files":["bin\/old"],"paths_data":{{"paths":[
                {{"_path":"lib\/caf\u00e9","path_type":"hard\u006cink","size_in_bytes":3}},
                {{"_path":"bin/tool","path_type":"hardlink","file_mode":"text",
                  "prefix_placeholder":"\/opt\/ph","sha256":"{hex}"}}]}}}}"#
        );
        let path = dir.path().join("x-1-0.json");
        std::fs::write(&path, src).unwrap();
        let r = parse_record(&path).unwrap();
        assert!(r.files.is_empty(), "paths_data wins over files");
        let paths = r.paths.unwrap();
        assert_eq!(&*paths[0].path, "lib/café");
        assert_eq!(paths[0].path_type, Some(PathType::Hardlink));
        assert_eq!(paths[0].size_in_bytes, Some(3));
        assert!(paths[0].placeholder.is_none());
        let ph = paths[1].placeholder.as_deref().unwrap();
        assert_eq!(&*ph.text, "/opt/ph");
        assert_eq!(ph.file_mode.as_deref(), Some("text"));
        assert_eq!(ph.hashes.sha256.as_deref(), Some(hex.as_str()));
        // An old record without paths_data: its files list is what there is.
        std::fs::write(&path, r#"{"name":"x","files":["bin\/a","b"]}"#).unwrap();
        assert_eq!(parse_record(&path).unwrap().files, ["bin/a", "b"]);
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
