//! Shebang lines: finding the interpreter, and writing one that will actually run.
//!
//! Two rules come from the ecosystem. conda-pack rewrites a shebang pointing into the
//! environment to `#!/usr/bin/env NAME` so an archive works once activated, wherever it is
//! extracted. After relocation the absolute interpreter is better (it runs without
//! activation), but Linux reads at most 127 bytes of the line and splits nothing after the
//! interpreter, so a long or space-holding prefix needs another form: for Python the
//! `/bin/sh` trampoline that conda's successors use, else the `env` form.

/// Longest shebang line Linux honours (BINPRM_BUF_SIZE less the NUL).
pub const SHEBANG_LIMIT: usize = 127;

/// A parsed first line `#!<exe><options>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang<'a> {
    /// The whole first line without its `\n`.
    pub line: &'a [u8],
    /// The interpreter path as written (a `\ ` escape is kept verbatim).
    pub exe: &'a [u8],
    /// Everything after the interpreter, leading whitespace included.
    pub options: &'a [u8],
}

/// Parse `data`'s first line as conda-pack 0.9.2 does: `#!`, optional spaces, an absolute
/// interpreter (no unescaped blank), then anything up to the end of the line.
pub fn parse_shebang(data: &[u8]) -> Option<Shebang<'_>> {
    let line_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let line = &data[..line_end];
    let rest = line.strip_prefix(b"#!")?;
    let skip = rest.iter().take_while(|&&b| b == b' ').count();
    let body = &rest[skip..];
    if body.first() != Some(&b'/') {
        return None;
    }
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' if body.get(i + 1) == Some(&b' ') => i += 2,
            b' ' | b'\r' | b'\t' => break,
            _ => i += 1,
        }
    }
    Some(Shebang {
        line,
        exe: &body[..i],
        options: &body[i..],
    })
}

impl Shebang<'_> {
    /// The interpreter relative to `prefix`, when it lives inside it.
    pub fn exe_in(&self, prefix: &[u8]) -> Option<&[u8]> {
        let rel = self.exe.strip_prefix(prefix)?;
        let rel = rel.strip_prefix(b"/")?;
        (!rel.is_empty()).then_some(rel)
    }
}

fn basename(path: &[u8]) -> &[u8] {
    match memchr::memrchr(b'/', path) {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `#!/usr/bin/env NAME<options>` for an interpreter inside the environment.
pub fn env_shebang(exe: &[u8], options: &[u8]) -> Vec<u8> {
    let mut line = b"#!/usr/bin/env ".to_vec();
    line.extend_from_slice(basename(exe));
    line.extend_from_slice(options);
    line
}

fn is_python(exe: &[u8]) -> bool {
    let name = basename(exe);
    name.strip_prefix(b"python")
        .is_some_and(|v| v.iter().all(|b| b.is_ascii_digit() || *b == b'.'))
}

/// The first line(s) to write for interpreter `prefix/exe_rel` with `options`.
///
/// The absolute form when the kernel can run it; for Python a `/bin/sh` trampoline that
/// keeps the absolute interpreter; otherwise the `env` form (runs when activated).
pub fn format_shebang(prefix: &[u8], exe_rel: &[u8], options: &[u8]) -> Vec<u8> {
    let (opts, cr) = match options.strip_suffix(b"\r") {
        Some(o) => (o, &b"\r"[..]),
        None => (options, &b""[..]),
    };
    let mut exe = prefix.to_vec();
    exe.push(b'/');
    exe.extend_from_slice(exe_rel);
    let plain = 2 + exe.len() + options.len();
    // Linux passes everything after the interpreter as one argument, so `-E -s` reaches
    // Python as the single option "-E -s"; the trampoline below splits it.
    let split_opts = opts.trim_ascii().iter().any(u8::is_ascii_whitespace);
    let python = is_python(exe_rel);
    if plain <= SHEBANG_LIMIT
        && !prefix.iter().any(u8::is_ascii_whitespace)
        && !(python && split_opts)
    {
        let mut line = b"#!".to_vec();
        line.extend_from_slice(&exe);
        line.extend_from_slice(options);
        return line;
    }
    if !python {
        return env_shebang(exe_rel, options);
    }
    let mut line = b"#!/bin/sh".to_vec();
    line.extend_from_slice(cr);
    line.extend_from_slice(b"\n'''exec' \"");
    for &b in &exe {
        if matches!(b, b'"' | b'$' | b'`' | b'\\') {
            line.push(b'\\');
        }
        line.push(b);
    }
    line.push(b'"');
    let opts = opts.trim_ascii();
    if !opts.is_empty() {
        line.push(b' ');
        line.extend_from_slice(opts);
    }
    line.extend_from_slice(b" \"$0\" \"$@\" #'''");
    line.extend_from_slice(cr);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_conda_pack() {
        let s = parse_shebang(b"#! /env/bin/python3.11 -E -s\nprint()").unwrap();
        assert_eq!(s.exe, b"/env/bin/python3.11");
        assert_eq!(s.options, b" -E -s");
        assert_eq!(s.line, b"#! /env/bin/python3.11 -E -s");
        let s = parse_shebang(b"#!/my\\ env/bin/python").unwrap();
        assert_eq!(s.exe, b"/my\\ env/bin/python");
        assert!(parse_shebang(b"#!python\n").is_none());
        assert!(parse_shebang(b"print()").is_none());
        // A first line with no newline must not trip the parser.
        assert_eq!(parse_shebang(b"#!/bin/sh").unwrap().exe, b"/bin/sh");
    }

    #[test]
    fn exe_inside_prefix() {
        let s = parse_shebang(b"#!/env/bin/python\n").unwrap();
        assert_eq!(s.exe_in(b"/env"), Some(&b"bin/python"[..]));
        assert_eq!(s.exe_in(b"/en"), None);
    }

    #[test]
    fn short_prefix_gets_absolute_interpreter() {
        assert_eq!(
            format_shebang(b"/opt/env", b"bin/python3.11", b" -E"),
            b"#!/opt/env/bin/python3.11 -E"
        );
    }

    #[test]
    fn several_python_options_get_a_trampoline() {
        assert_eq!(
            format_shebang(b"/opt/env", b"bin/python3.11", b" -E -s"),
            &b"#!/bin/sh\n'''exec' \"/opt/env/bin/python3.11\" -E -s \"$0\" \"$@\" #'''"[..]
        );
        assert_eq!(
            format_shebang(b"/opt/env", b"bin/perl", b" -w -T"),
            b"#!/opt/env/bin/perl -w -T"
        );
    }

    #[test]
    fn long_or_spaced_prefix_gets_a_trampoline_for_python() {
        let long = [b'x'; 140];
        let mut prefix = b"/".to_vec();
        prefix.extend_from_slice(&long);
        let got = format_shebang(&prefix, b"bin/python3.11", b" -E -s");
        let expect = format!(
            "#!/bin/sh\n'''exec' \"{}/bin/python3.11\" -E -s \"$0\" \"$@\" #'''",
            String::from_utf8(prefix.clone()).unwrap()
        );
        assert_eq!(String::from_utf8(got).unwrap(), expect);
        let got = format_shebang(b"/my env", b"bin/python", b"");
        assert_eq!(
            got,
            b"#!/bin/sh\n'''exec' \"/my env/bin/python\" \"$0\" \"$@\" #'''"
        );
        assert_eq!(
            format_shebang(&prefix, b"bin/perl", b" -w"),
            b"#!/usr/bin/env perl -w"
        );
    }
}
