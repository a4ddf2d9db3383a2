//! What packing meets on Windows only, run under wine by `make check-windows`: paths past
//! 260 characters, names that are not valid UTF-16, read-only files, files another program
//! holds, hard links told by file index, and links (which wine 8 cannot make: those tests
//! say so and check what they can).

use crate::archive::{DirArchive, Encoder, TarArchive};
use crate::content::Body;
use crate::error::Cancel;
use crate::host;
use crate::pack::{Content, PackEntry, PackOptions, Packer, Progress, Source};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn entry(target: &[u8]) -> PackEntry {
    PackEntry {
        target: target.to_vec(),
        source: Source::Path {
            path: None,
            content: Content::Copy,
        },
        mode: None,
        mtime: None,
        size: 0,
    }
}

/// `(name, kind, link target, data)` of each member.
type Member = (Vec<u8>, tar::EntryType, Vec<u8>, Vec<u8>);

/// Pack `targets` of `prefix` into a plain tar; its members.
fn pack(prefix: &Path, targets: &[&[u8]]) -> crate::error::Result<Vec<Member>> {
    let out = prefix.parent().unwrap().join("out.tar");
    let file = fs::File::create(&out).unwrap();
    let archive = Box::new(TarArchive::new(Encoder::plain(file), &out));
    let opts = PackOptions {
        arcroot: Vec::new(),
        prefix: prefix.to_path_buf(),
        threads: 2,
        shared_inodes: None,
    };
    let mut packer = Packer::new(archive, opts)?;
    let entries: Vec<PackEntry> = targets.iter().map(|t| entry(t)).collect();
    packer.write(&entries, &Progress::new(&Cancel::default()))?;
    packer.finish()?;
    let mut members = Vec::new();
    let mut tar = tar::Archive::new(fs::File::open(&out).unwrap());
    for m in tar.entries().unwrap() {
        let mut m = m.unwrap();
        let name = m.path_bytes().into_owned();
        let kind = m.header().entry_type();
        let link = m
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        m.read_to_end(&mut data).unwrap();
        members.push((name, kind, link, data));
    }
    Ok(members)
}

#[test]
fn paths_longer_than_260_characters_are_packed() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    // Twelve levels of 40 characters: past MAX_PATH, which std passes as \\?\ paths.
    let rel: Vec<String> = (0..12)
        .map(|i| format!("{i:02}{}", "d".repeat(38)))
        .collect();
    let rel = format!("{}/file.txt", rel.join("/"));
    let abs = host::join(&prefix, rel.as_bytes()).unwrap();
    assert!(abs.as_os_str().len() > 300);
    fs::create_dir_all(abs.parent().unwrap()).unwrap();
    fs::write(&abs, b"deep").unwrap();
    // The walk finds it under its relative, /-separated name.
    let found = crate::scan::scan(&prefix, &[]).unwrap();
    assert_eq!(host::bytes(found[0].path.as_os_str()), rel.as_bytes());
    let members = pack(&prefix, &[rel.as_bytes()]).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].0, rel.as_bytes());
    assert_eq!(members[0].3, b"deep");
    // And extracted again, into a directory archive (--format no-archive).
    let out = d.path().join("unpacked");
    let mut dir = DirArchive::new(&out, false, 0).unwrap();
    let meta = crate::archive::Meta {
        path: rel.as_bytes().to_vec(),
        mode: 0o644,
        mtime: 0,
    };
    use crate::archive::{Archive, Origin};
    dir.file(
        &meta,
        &Body::Mem(b"deep".to_vec()),
        Origin { unchanged: None },
    )
    .unwrap();
    assert_eq!(
        fs::read(host::join(&out, rel.as_bytes()).unwrap()).unwrap(),
        b"deep"
    );
}

#[test]
fn names_that_are_not_valid_utf16_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    fs::create_dir_all(&prefix).unwrap();
    // "a", a lone lead surrogate, "b": a legal NTFS name, no Unicode string.
    let wide = [0x61u16, 0xD800, 0x62];
    let name = OsString::from_wide(&wide);
    if fs::write(prefix.join(&name), b"odd").is_err() || fs::read_dir(&prefix).is_err() {
        eprintln!("this file system cannot hold the name: nothing to test");
        return;
    }
    let listed: Vec<OsString> = fs::read_dir(&prefix)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if listed
        .iter()
        .all(|n| n.encode_wide().collect::<Vec<_>>() != wide)
    {
        eprintln!("the file system changed the name ({listed:?}): nothing to test");
        return;
    }
    let found = crate::scan::scan(&prefix, &[]).unwrap();
    let bytes = host::bytes(found[0].path.as_os_str()).to_vec();
    // As Python's os.fsencode spells it on Windows: the surrogate as three bytes.
    assert_eq!(bytes, b"a\xed\xa0\x80b");
    let members = pack(&prefix, &[&bytes]).unwrap();
    assert_eq!(members[0].0, bytes);
    assert_eq!(members[0].3, b"odd");
    // Back to the same name, not a replacement character.
    let back = host::join(&prefix, &bytes).unwrap();
    assert_eq!(fs::read(back).unwrap(), b"odd");
}

#[test]
fn read_only_files_are_packed_read_only_and_replaced_when_unpacked_again() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    fs::create_dir_all(prefix.join("Scripts")).unwrap();
    fs::write(prefix.join("ro.ini"), b"x").unwrap();
    fs::write(prefix.join("rw.ini"), b"y").unwrap();
    fs::write(prefix.join("Scripts/tool.exe"), b"MZ").unwrap();
    let mut p = fs::metadata(prefix.join("ro.ini")).unwrap().permissions();
    p.set_readonly(true);
    fs::set_permissions(prefix.join("ro.ini"), p).unwrap();
    let members = pack(&prefix, &[b"ro.ini", b"rw.ini", b"Scripts/tool.exe"]).unwrap();
    let out = d.path().join("out.tar");
    let mut tar = tar::Archive::new(fs::File::open(&out).unwrap());
    let modes: Vec<u32> = tar
        .entries()
        .unwrap()
        .map(|m| m.unwrap().header().mode().unwrap())
        .collect();
    // What Python's os.stat reports there, which conda-pack 0.9.2 archived.
    assert_eq!(modes, [0o444, 0o666, 0o777]);
    assert_eq!(members.len(), 3);

    // A directory archive writes it read-only, and can write it again over itself
    // (Windows refuses to delete a read-only file).
    use crate::archive::{Archive, Meta, Origin};
    let dest = d.path().join("unpacked");
    let mut dir = DirArchive::new(&dest, false, 0).unwrap();
    let meta = Meta {
        path: b"ro.ini".to_vec(),
        mode: 0o444,
        mtime: 0,
    };
    for body in [&b"1"[..], b"2"] {
        dir.file(&meta, &Body::Mem(body.to_vec()), Origin { unchanged: None })
            .unwrap();
    }
    assert_eq!(fs::read(dest.join("ro.ini")).unwrap(), b"2");
    assert!(fs::metadata(dest.join("ro.ini"))
        .unwrap()
        .permissions()
        .readonly());
}

#[test]
fn a_file_another_program_holds_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    fs::create_dir_all(prefix.join("Lib")).unwrap();
    let held = prefix.join("Lib").join("held.db");
    fs::write(&held, b"data").unwrap();
    // Opened without sharing, as a database or an editor may: nobody else may read it.
    let _holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .share_mode(0)
        .open(&held)
        .unwrap();
    let err = pack(&prefix, &[b"Lib/held.db"]).unwrap_err().to_string();
    assert!(err.contains("held.db"), "{err}");
    assert!(err.contains("another program has it open"), "{err}");
    assert!(err.contains("--exclude"), "{err}");
}

#[test]
fn hard_links_are_told_by_file_index() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    fs::create_dir_all(&prefix).unwrap();
    fs::write(prefix.join("a.dll"), b"same bytes").unwrap();
    if fs::hard_link(prefix.join("a.dll"), prefix.join("b.dll")).is_err() {
        eprintln!("no hard links here: nothing to test");
        return;
    }
    fs::write(prefix.join("c.dll"), b"same bytes").unwrap();
    let members = pack(&prefix, &[b"a.dll", b"b.dll", b"c.dll"]).unwrap();
    let kinds: Vec<(&[u8], tar::EntryType, &[u8])> =
        members.iter().map(|m| (&m.0[..], m.1, &m.2[..])).collect();
    // The second name is a link to the first; an equal copy is a file of its own.
    assert_eq!(
        kinds,
        [
            (&b"a.dll"[..], tar::EntryType::Regular, &b""[..]),
            (b"b.dll", tar::EntryType::Link, b"a.dll"),
            (b"c.dll", tar::EntryType::Regular, b""),
        ]
    );
}

#[test]
fn links_are_stored_as_the_files_they_point_to() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("env");
    fs::create_dir_all(prefix.join("Library/bin")).unwrap();
    fs::write(prefix.join("Library/bin/real.dll"), b"real").unwrap();
    let link: PathBuf = prefix.join("Library/bin/alias.dll");
    let made = std::os::windows::fs::symlink_file("real.dll", &link).is_ok()
        && fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
    if !made {
        // Windows without the privilege, and wine 8: no link to pack.
        eprintln!("links cannot be made here: nothing to test");
        return;
    }
    let members = pack(
        &prefix,
        &[b"Library/bin/alias.dll", b"Library/bin/real.dll"],
    )
    .unwrap();
    assert_eq!(members[0].1, tar::EntryType::Regular);
    assert_eq!(members[0].3, b"real");
}
