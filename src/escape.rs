//! Text from a config repo (file names, object names, API messages that echo them) is
//! untrusted: printed raw, an escape sequence in a file name would drive the reader's terminal
//! (recolour, retitle, hide lines) and a newline would forge a log line. Everything shown to a
//! person passes through here at the boundary: control characters (C0, DEL, C1) and the
//! Unicode bidirectional overrides become visible `\x1b` / `\u{202e}` escapes.

use std::borrow::Cow;

/// `s` with every control character escaped, newlines and tabs included: for a name, a path
/// or any single-line field.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` with every control character escaped except newline and tab: for multi-line text
/// (an error with the output of a child process, a YAML document).
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn needs_escape(c: char, keep_lines: bool) -> bool {
    if keep_lines && (c == '\n' || c == '\t') {
        return false;
    }
    // Bidi embeddings, overrides and isolates reorder what a person reads ("Trojan Source").
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, keep_lines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c, keep_lines) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
        } else {
            out.push(c);
        }
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
    }
}
