//! Text from a config repo (file names, object names, API messages that echo them) is
//! untrusted: printed raw, an escape sequence in a file name would drive the reader's terminal
//! (recolour, retitle, hide lines) and a newline would forge a log line. Everything shown to a
//! person passes through here at the boundary: control characters (C0, DEL, C1) and the
//! Unicode bidirectional overrides become visible `\x1b` / `\u{202e}` escapes.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character escaped, newlines and tabs included: for a name, a path
/// or any single-line field. Backslashes stay as they are, so text escaped once (a file name
/// in a render error) is not escaped again where it is printed.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape(s, Mode::Line)
}

/// `s` with every control character escaped except newline and tab: for multi-line text
/// (an error with the output of a child process, a YAML document), backslashes as they are.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, Mode::Text)
}

/// [`escape_line`] with backslashes doubled (raw caller text, escaped once: `\x1b` read back
/// is always an escape), cut after `max` characters of the escaped text, saying how many
/// bytes were left out: for caller-supplied text (a URL path, a header, a pushed ref) in a
/// log line. An escape is never cut in half.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    let mut piece = String::new();
    let mut shown = 0;
    for (i, c) in s.char_indices() {
        piece.clear();
        if c == '\\' {
            piece.push_str("\\\\");
        } else {
            push(&mut piece, c, Mode::Line);
        }
        let len = piece.chars().count();
        if shown + len > max {
            let _ = write!(out, "…({} more bytes)", s.len() - i);
            return out;
        }
        shown += len;
        out.push_str(&piece);
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Line,
    Text,
}

fn needs_escape(c: char, mode: Mode) -> bool {
    if mode == Mode::Text && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control() || is_format(c)
}

/// Unicode format characters that change how the text around them is shown: the bidi
/// embeddings, overrides, isolates and marks (a "Trojan Source" reordering), zero-width
/// characters, the line and paragraph separators, and the BOM.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

fn push(out: &mut String, c: char, mode: Mode) {
    if !needs_escape(c, mode) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape(s: &str, mode: Mode) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, mode)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c, mode);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escape_line("base/app.yaml"), "base/app.yaml");
        assert!(matches!(escape_line("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_line("base/\x1b[31mred.yaml"),
            "base/\\x1b[31mred.yaml"
        );
        assert_eq!(escape_line("a\nb\rc\td\x07\x7f"), "a\\nb\\rc\\td\\x07\\x7f");
        assert_eq!(escape_line("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(escape_line("evil\u{202e}lmay.exe"), "evil\\u{202e}lmay.exe");
        assert_eq!(
            escape_text("line 1\n\tline 2\x1b]0;t\x07"),
            "line 1\n\tline 2\\x1b]0;t\\x07"
        );
        assert_eq!(escape_line("ünïcödé ok"), "ünïcödé ok");
        // Zero-width and separator characters too; backslashes stay, so escaping twice
        // changes nothing.
        assert_eq!(escape_line("a\u{200f}b\u{feff}"), "a\\u{200f}b\\u{feff}");
        let once = escape_line("base/\x1bx.yaml").into_owned();
        assert_eq!(escape_line(&once), once);
    }

    #[test]
    fn printable_escapes_format_characters_and_backslashes() {
        assert_eq!(printable("plain/path-1", 100), "plain/path-1");
        assert_eq!(printable("a\x1b[31mred\r\nb", 100), "a\\x1b[31mred\\r\\nb");
        assert_eq!(printable("\u{9b}2J\u{7f}", 100), "\\u{9b}2J\\x7f");
        assert_eq!(printable("abc\u{202e}fed", 100), "abc\\u{202e}fed");
        assert_eq!(printable("a\\x1b", 100), "a\\\\x1b");
        assert_eq!(
            printable("zero\u{200b}width\u{2028}", 100),
            "zero\\u{200b}width\\u{2028}"
        );
        // Other non-ASCII text stays readable.
        assert_eq!(printable("tier-é", 100), "tier-é");
    }

    #[test]
    fn printable_text_is_cut_saying_how_much_was_left_out() {
        let long = "x".repeat(10_000);
        assert_eq!(printable(&long, 8), "xxxxxxxx…(9992 more bytes)");
        // An escape is never cut in half.
        assert_eq!(printable("abc\x1bdef", 5), "abc…(4 more bytes)");
        assert_eq!(printable("", 5), "");
    }
}
