//! The receiving end: unpacking an archive into a directory and relocating it in the same
//! pass (`conda-pack unpack`).
//!
//! conda-unpack's records come last in our archives (they are known only once every file
//! is packed). Where the archive says where its generated files are (our gzip index, a
//! plain tar's headers, a zip's central directory) they are read first, and every file is
//! relocated in memory before it is written. Elsewhere the files are unpacked as they
//! are, and those the records name rewritten afterwards ([`write::relocate_tree`]).

pub mod names;
pub mod relocate;
pub mod source;
pub mod tar;
pub mod tree;
pub mod write;
pub mod zip;

pub use relocate::Job;
pub use source::{Archive, Format};
pub use write::{relocate_tree, Counters, Outcome, Plan};

use crate::error::{Cancel, Error, Result};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use write::{Extractor, INLINE};

/// A message about the archive's content, naming the archive.
fn archive_error(archive: &Archive, e: io::Error) -> Error {
    Error::io(archive.path.clone(), e)
}

/// Unpack `archive` into `plan.root` (a directory that exists, empty).
pub fn unpack(
    archive: &Archive,
    plan: Plan,
    cancel: &Cancel,
    counters: &Arc<Counters>,
) -> Result<Outcome> {
    let threads = plan.threads;
    let mut ext = Extractor::new(
        plan,
        cancel.clone(),
        Arc::clone(counters),
        archive.path.clone(),
    )?;
    let read = match archive.format {
        Format::Zip => unpack_zip(archive, &mut ext, counters),
        _ => unpack_tar(archive, &mut ext, threads, cancel, counters),
    };
    ext.finish(read)
}

fn unpack_tar(
    archive: &Archive,
    ext: &mut Extractor,
    threads: usize,
    cancel: &Cancel,
    counters: &Arc<Counters>,
) -> Result<()> {
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = archive
        .tar_stream(threads, Arc::clone(&consumed), cancel)
        .map_err(|e| archive_error(archive, e))?;
    let mut tar = tar::TarReader::new(stream);
    loop {
        ext.check()?;
        counters
            .bytes
            .store(consumed.load(Ordering::Relaxed), Ordering::Relaxed);
        let h = match tar.next() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(tar::TarError::Io(e)) => return Err(archive_error(archive, e)),
            Err(tar::TarError::Damaged(at, what)) => {
                return Err(Error::Archive(format!(
                    "at byte {at} of its tar stream: {what}"
                )))
            }
            Err(tar::TarError::Unsupported(name, what)) => {
                return Err(Error::Archive(format!(
                    "member {} is {what}, which conda-pack does not unpack",
                    crate::pack::show(&name)
                )))
            }
        };
        match h.kind {
            tar::Kind::Dir => ext.dir(&h.path, h.mode, h.mtime)?,
            tar::Kind::Symlink => ext.symlink(&h.path, &h.link, h.mtime)?,
            tar::Kind::HardLink => ext.hard_link(&h.path, &h.link)?,
            tar::Kind::File => {
                let mut read = |buf: &mut [u8]| tar.read_content(buf);
                ext.file(&h.path, h.mode, h.mtime, h.size, &mut read)?
            }
        }
    }
    // Read to the end of the stream: decompressors check their checksums there.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| archive_error(archive, e))?;
    counters.bytes.store(archive.len, Ordering::Relaxed);
    Ok(())
}

fn unpack_zip(archive: &Archive, ext: &mut Extractor, counters: &Arc<Counters>) -> Result<()> {
    let entries =
        zip::entries(&archive.file, archive.len).map_err(|e| archive_error(archive, e))?;
    for entry in entries {
        ext.check()?;
        let mode = entry.mode.unwrap_or(match entry.kind {
            tar::Kind::Dir => 0o777,
            _ => 0o666,
        });
        match entry.kind {
            tar::Kind::Dir => ext.dir(&entry.name, mode, entry.mtime)?,
            tar::Kind::Symlink => {
                let mut target = Vec::new();
                zip::EntryReader::new(&archive.file, &entry)
                    .and_then(|mut r| r.read_to_end(&mut target))
                    .map_err(|e| archive_error(archive, e))?;
                counters.bytes.fetch_add(entry.csize, Ordering::Relaxed);
                ext.symlink(&entry.name, &target, entry.mtime)?
            }
            tar::Kind::File | tar::Kind::HardLink => {
                if write::is_unpack_script(&names::member(&entry.name).unwrap_or_default())
                    && entry.usize <= 64 << 20
                {
                    let mut body = Vec::new();
                    zip::EntryReader::new(&archive.file, &entry)
                        .and_then(|mut r| r.read_to_end(&mut body))
                        .map_err(|e| archive_error(archive, e))?;
                    ext.keep_script(&entry.name, body);
                }
                let file = Arc::clone(&archive.file);
                let apath = archive.path.clone();
                let counters = Arc::clone(counters);
                let name = entry.name.clone();
                ext.file_task(&name, move |w, path, job| {
                    let err = |e| Error::io(apath.clone(), e);
                    let mut reader = zip::EntryReader::new(&file, &entry).map_err(err)?;
                    let r = if entry.usize <= INLINE {
                        let mut data = crate::buffers::take(entry.usize as usize + 1);
                        reader.read_to_end(&mut data).map_err(err)?;
                        w.write_mem(path, mode, entry.mtime, data, job)
                    } else {
                        w.write_stream(path, mode, entry.mtime, job, &mut |buf| reader.read(buf))
                    };
                    counters.bytes.fetch_add(entry.csize, Ordering::Relaxed);
                    r
                })?
            }
        }
    }
    Ok(())
}
