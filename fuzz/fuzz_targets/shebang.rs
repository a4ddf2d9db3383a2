//! Shebang lines: parsing never panics and splits the first line exactly; the written line
//! names the same interpreter in whichever form it takes.
#![no_main]

use arbitrary::Arbitrary;
use conda_pack_core_fuzz::prefix::{env_shebang, format_shebang, parse_shebang, SHEBANG_LIMIT};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    data: Vec<u8>,
    prefix: Vec<u8>,
    exe_rel: Vec<u8>,
    options: Vec<u8>,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

fn check_parse(data: &[u8], prefix: &[u8]) {
    let Some(s) = parse_shebang(data) else {
        return;
    };
    let line_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    assert_eq!(s.line, &data[..line_end]);
    let body = s.line.strip_prefix(b"#!").expect("starts with #!");
    let spaces = body.iter().take_while(|&&b| b == b' ').count();
    assert_eq!(&body[spaces..], [s.exe, s.options].concat());
    assert_eq!(s.exe.first(), Some(&b'/'));
    assert!(s.options.first().is_none_or(|&b| is_blank(b)));
    let mut i = 0;
    while i < s.exe.len() {
        if s.exe[i] == b'\\' && s.exe.get(i + 1) == Some(&b' ') {
            i += 2;
        } else {
            assert!(!is_blank(s.exe[i]), "blank inside {:?}", s.exe);
            i += 1;
        }
    }
    if let Some(rel) = s.exe_in(prefix) {
        assert!(!rel.is_empty());
        assert_eq!(s.exe, [prefix, b"/", rel].concat());
    }
}

/// The word a POSIX shell makes of `"..."` at the start of `s`, and the rest after it.
fn sh_double_quoted(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut s = s.strip_prefix(b"\"")?;
    let mut word = Vec::new();
    loop {
        match *s.first()? {
            b'"' => return Some((word, &s[1..])),
            b'\\' if matches!(s.get(1), Some(b'"' | b'$' | b'`' | b'\\')) => {
                word.push(s[1]);
                s = &s[2..];
            }
            b'$' | b'`' => return None, // an expansion: not the literal path
            b => {
                word.push(b);
                s = &s[1..];
            }
        }
    }
}

fn check_format(prefix: &[u8], exe_rel: &[u8], options: &[u8]) {
    // As the packer calls it: an absolute prefix, and a relative interpreter and options
    // taken from a parsed first line.
    let bad = |b: &u8| *b == b'\n' || *b == 0;
    if prefix.first() != Some(&b'/') || prefix.iter().any(bad) {
        return;
    }
    if exe_rel.is_empty() || exe_rel.iter().any(|&b| bad(&b) || is_blank(b)) {
        return;
    }
    if options.first().is_some_and(|&b| !is_blank(b)) || options.iter().any(bad) {
        return;
    }
    // The parser reads `\ ` as part of the interpreter, so no parsed first line splits into
    // an interpreter ending in `\` and options starting with a space.
    if exe_rel.ends_with(b"\\") && options.first() == Some(&b' ') {
        return;
    }
    let exe = [prefix, b"/", exe_rel].concat();
    let cr: &[u8] = if options.ends_with(b"\r") { b"\r" } else { b"" };
    let out = format_shebang(prefix, exe_rel, options);

    if let Some(rest) = out.strip_prefix(b"#!/bin/sh") {
        // The trampoline: sh runs `exec "<exe>" <options> "$0" "$@"`, Python sees a string.
        let rest = rest.strip_prefix(cr).unwrap();
        let rest = rest.strip_prefix(b"\n'''exec' ").expect("trampoline");
        let (word, tail) = sh_double_quoted(rest).expect("quoted interpreter");
        assert_eq!(word, exe);
        let end = [&b" \"$0\" \"$@\" #'''"[..], cr].concat();
        assert!(tail.ends_with(&end), "{:?}", String::from_utf8_lossy(&out));
        assert!(
            !out[..out.len() - end.len()].contains(&b'\n')
                || out.iter().filter(|&&b| b == b'\n').count() == 1
        );
        if !exe.contains(&b'\'') && !options.contains(&b'\'') && !exe.contains(&b'\\') {
            let second = &out[out.iter().position(|&b| b == b'\n').unwrap() + 1..];
            let quotes = second.windows(3).filter(|w| w == b"'''").count();
            assert_eq!(
                quotes,
                2,
                "python string: {:?}",
                String::from_utf8_lossy(second)
            );
        }
    } else if out.starts_with(b"#!/usr/bin/env ") {
        assert_eq!(out, env_shebang(exe_rel, options));
        let name = exe_rel.rsplit(|&b| b == b'/').next().unwrap();
        let s = parse_shebang(&out).unwrap();
        assert_eq!(s.exe, b"/usr/bin/env");
        assert!(s.options.strip_prefix(b" ").unwrap().starts_with(name));
    } else {
        assert_eq!(out, [b"#!", &exe[..], options].concat());
        assert!(out.len() <= SHEBANG_LIMIT, "{} bytes", out.len());
        assert!(!prefix.iter().any(u8::is_ascii_whitespace));
        let s = parse_shebang(&out).unwrap();
        assert_eq!(s.exe, exe);
        assert_eq!(s.options, options);
        assert_eq!(s.exe_in(prefix), Some(exe_rel));
    }
    assert!(!out.contains(&0));
}

fuzz_target!(|input: Input| {
    check_parse(&input.data, &input.prefix);
    check_format(&input.prefix, &input.exe_rel, &input.options);
    // Whatever a real first line holds, rewriting it keeps the interpreter.
    if let Some(s) = parse_shebang(&input.data) {
        if let Some(rel) = s.exe_in(&input.prefix) {
            check_format(&input.prefix, rel, s.options);
        }
    }
});
