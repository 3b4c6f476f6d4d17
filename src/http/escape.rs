//! Caller-supplied text (URL paths, header values, a pushed ref) made safe for a log line: control
//! characters escaped, length bounded. A private helper of the HTTP module; the CLI and the log
//! elsewhere have their own until the two are unified.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) and every Unicode bidi or invisible format
/// character escaped as `\x1b` or `\u{202e}`, and a backslash doubled, so that what is printed
/// cannot move a terminal's cursor, colour it, reorder it or fake a line; cut after `max`
/// characters of the escaped text, saying how many bytes were left out.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    let mut shown = 0;
    for (i, c) in s.char_indices() {
        let piece = escaped(c);
        let len = piece.as_deref().map_or(1, |p| p.chars().count());
        if shown + len > max {
            let _ = write!(out, "…({} more bytes)", s.len() - i);
            return out;
        }
        shown += len;
        match piece {
            Some(p) => out.push_str(&p),
            None => out.push(c),
        }
    }
    out
}

fn escaped(c: char) -> Option<String> {
    match c {
        '\\' => Some("\\\\".to_owned()),
        c if (c as u32) < 0x80 && c.is_ascii_control() => Some(format!("\\x{:02x}", c as u32)),
        c if c.is_control() || is_format(c) => Some(format!("\\u{{{:x}}}", c as u32)),
        _ => None,
    }
}

/// Unicode format characters that change how text around them is shown: the bidi controls
/// (a "Trojan Source" reordering), zero-width characters and the BOM.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(printable("plain/path-1", 100), "plain/path-1");
        assert_eq!(
            printable("a\x1b[31mred\r\nb", 100),
            "a\\x1b[31mred\\x0d\\x0ab"
        );
        assert_eq!(printable("\u{9b}2J\u{7f}", 100), "\\u{9b}2J\\x7f");
        assert_eq!(printable("abc\u{202e}fed", 100), "abc\\u{202e}fed");
        assert_eq!(printable("a\\x1b", 100), "a\\\\x1b");
        // Other non-ASCII text stays readable.
        assert_eq!(printable("tier-é", 100), "tier-é");
    }

    #[test]
    fn long_text_is_cut_saying_how_much_was_left_out() {
        let long = "x".repeat(10_000);
        assert_eq!(printable(&long, 8), "xxxxxxxx…(9992 more bytes)");
        // An escape is never cut in half.
        assert_eq!(printable("abc\x1bdef", 5), "abc…(4 more bytes)");
        assert_eq!(printable("", 5), "");
    }
}
