//! Text that came from a ledger's users, kept and shown in a bounded, one-line form.

use std::fmt::{self, Write as _};

/// Most characters of a user's text a message quotes: enough to recognise any valid name,
/// short enough that a hostile one cannot flood a log line.
pub const MAX_SHOWN_CHARS: usize = 64;

/// Most characters kept of a parser's message, which quotes the text it refused within a
/// sentence of its own.
pub const MAX_SHOWN_MESSAGE: usize = 256;

/// A user's text as a message quotes it: its first [`MAX_SHOWN_CHARS`] characters, then `…`
/// when there were more, with everything but letters, digits, ASCII punctuation and spaces
/// escaped (`\n`, `\u{202e}`, `\\`). A message quoting it stays on one line, reads the same
/// on every terminal, and cannot pass for another line of output. Only the cut text is kept,
/// so a refusal quoting a huge field stays small.
#[derive(Clone, PartialEq, Eq)]
pub struct UserText {
    kept: String,
    cut: bool,
}

impl UserText {
    pub fn new(text: &str) -> Self {
        Self::cut_at(text, MAX_SHOWN_CHARS)
    }

    /// A parser's message about a user's text: kept longer, escaped the same.
    pub fn message(text: &str) -> Self {
        Self::cut_at(text, MAX_SHOWN_MESSAGE)
    }

    fn cut_at(text: &str, max: usize) -> Self {
        match text.char_indices().nth(max) {
            Some((end, _)) => Self {
                kept: text[..end].to_owned(),
                cut: true,
            },
            None => Self {
                kept: text.to_owned(),
                cut: false,
            },
        }
    }
}

impl From<&str> for UserText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<&String> for UserText {
    fn from(text: &String) -> Self {
        Self::new(text)
    }
}

impl From<String> for UserText {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl fmt::Display for UserText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.kept.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                ' ' => f.write_char(c)?,
                c if c.is_ascii_graphic() || (!c.is_ascii() && c.is_alphanumeric()) => {
                    f.write_char(c)?
                }
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UserText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(UserText::new("alice").to_string(), "alice");
        let exact = "a".repeat(MAX_SHOWN_CHARS);
        assert_eq!(UserText::new(&exact).to_string(), exact);
        let long = "é".repeat(10_000);
        let shown = UserText::new(&long).to_string();
        assert_eq!(shown, format!("{}…", "é".repeat(MAX_SHOWN_CHARS)));
        assert_eq!(
            UserText::message(&long).to_string(),
            format!("{}…", "é".repeat(MAX_SHOWN_MESSAGE))
        );
    }

    #[test]
    fn invisible_and_line_breaking_characters_are_escaped() {
        let shown = UserText::new("a b\nc\r\t\u{1b}[2K\\n\u{2028}\u{202e}\u{85}ü-_.:`").to_string();
        assert_eq!(
            shown,
            "a b\\nc\\r\\t\\u{1b}[2K\\\\n\\u{2028}\\u{202e}\\u{85}ü-_.:`"
        );
    }
}
