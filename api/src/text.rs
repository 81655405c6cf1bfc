//! Text that came from outside (names, messages, task output) made safe to
//! echo: bounded in length, and with control characters made visible.
//!
//! Error messages quote what was wrong; quoting a 100 KB name whole would
//! overflow the gRPC headers the message travels in, and a name with
//! terminal escape sequences would reprogram the terminal that prints it.

use std::borrow::Cow;
use std::fmt::Write;

/// Most bytes of one quoted value in an error message.
pub const QUOTED_BYTES_MAX: usize = 128;

/// `text` cut to at most `max` bytes on a character boundary, with an
/// ellipsis when something was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// `text` quoted for an error message: clipped to [`QUOTED_BYTES_MAX`]
/// (saying how long it was) and escaped as a Rust string literal, so
/// control characters show as `\u{1b}`, `\n` and so on.
pub fn quoted(text: &str) -> String {
    if text.len() <= QUOTED_BYTES_MAX {
        return format!("{text:?}");
    }
    format!(
        "{:?} ({} bytes in all)",
        clip(text, QUOTED_BYTES_MAX),
        text.len()
    )
}

/// `text` with every control character (C0, DEL and C1: what terminals act
/// on) replaced by its visible escape, e.g. ESC by `\u{1b}` and a newline by
/// `\n`; borrowed when there is none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
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
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(clip("aé", 2), "a…");
    }

    #[test]
    fn long_values_are_quoted_short() {
        let name = "x".repeat(100_000);
        let q = quoted(&name);
        assert!(q.len() < 200, "{}", q.len());
        assert!(q.ends_with("(100000 bytes in all)"), "{q}");
        assert_eq!(quoted("web"), "\"web\"");
    }

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape_controls("plain"), Cow::Borrowed("plain"));
        assert_eq!(escape_controls("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert_eq!(escape_controls("c1\u{9b}x"), "c1\\u{9b}x");
        assert!(quoted("a\u{1b}b").contains("\\u{1b}"));
    }
}
