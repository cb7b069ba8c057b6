//! Text that came from a ledger's users, kept and shown in a bounded form.

use std::fmt;

/// Most characters of a user's text a message quotes: enough to recognise any valid name,
/// short enough that a hostile one cannot flood a log line.
pub const MAX_SHOWN_CHARS: usize = 64;

/// A user's text as a message quotes it: its first [`MAX_SHOWN_CHARS`] characters, then `…`
/// when there were more. Only that much is kept, so a refusal quoting a huge field stays small.
#[derive(Clone, PartialEq, Eq)]
pub struct UserText {
    kept: String,
    cut: bool,
}

impl UserText {
    pub fn new(text: &str) -> Self {
        let mut chars = text.char_indices();
        match chars.nth(MAX_SHOWN_CHARS) {
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
        f.write_str(&self.kept)?;
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
    }
}
