//! One YAML document, one entry: a stream split at its document markers, each document
//! guarded before the YAML parser sees it, then parsed.
//!
//! The guard is a linear scan: a document larger than [`MAX_ENTRY_BYTES`] or opening more
//! than [`MAX_FLOW_OPENINGS`] flow collections is refused without being parsed, so no
//! document can make the parser's depth-times-length work large. Block nesting costs the
//! parser linear time and meets serde_yaml's own depth limit.

use serde::{Deserialize as _, de::DeserializeOwned};

use super::{
    limits::{MAX_ENTRY_BYTES, MAX_FLOW_OPENINGS},
    model::Entry,
};
use crate::vocab::UserText;

/// Why a document is not an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{bytes} bytes is more than the {max} an entry may have")]
    TooLarge { bytes: usize, max: usize },
    #[error(
        "opens {openings} flow collections (`[` or `{{`); an entry may open at most {max}, so it cannot nest deeper"
    )]
    TooNested { openings: usize, max: usize },
    #[error("is not UTF-8 text")]
    NotText,
    #[error("holds more than one document; each entry starts with its own `---` line")]
    SeveralDocuments,
    /// The parser's message, which quotes the text it refused.
    #[error("{reason}")]
    Yaml { reason: UserText },
}

/// The documents of a YAML stream as (byte offset, bytes). A document starts at the text's
/// start or at a line that begins with `---` and a blank: the YAML parser ends a document at
/// exactly such a line wherever it stands (inside a quoted scalar it is an error), so each
/// piece holds one document, or a damaged one that fails alone.
pub fn split(text: &[u8]) -> Vec<(usize, &[u8])> {
    let mut starts = vec![0];
    let mut line = 0;
    while line < text.len() {
        if line > 0 && is_marker(&text[line..]) {
            starts.push(line);
        }
        line = match text[line..].iter().position(|&b| b == b'\n') {
            Some(at) => line + at + 1,
            None => text.len(),
        };
    }
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| (w[0], &text[w[0]..w[1]]))
        .filter(|(_, piece)| !piece.is_empty())
        .collect()
}

/// Whether a line is a document start marker: `---` then a blank or the line's end.
fn is_marker(line: &[u8]) -> bool {
    line.starts_with(b"---") && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Refuses a document too large or too deeply nestable to hand to the YAML parser.
pub fn guard(document: &[u8]) -> Result<(), DocumentError> {
    if document.len() > MAX_ENTRY_BYTES {
        return Err(DocumentError::TooLarge {
            bytes: document.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    let openings = document.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if openings > MAX_FLOW_OPENINGS {
        return Err(DocumentError::TooNested {
            openings,
            max: MAX_FLOW_OPENINGS,
        });
    }
    Ok(())
}

/// The value of one guarded YAML text holding at most one document; `None` when it holds
/// only comments or blanks.
pub fn parse_one<T: DeserializeOwned>(document: &[u8]) -> Result<Option<T>, DocumentError> {
    guard(document)?;
    let text = std::str::from_utf8(document).map_err(|_| DocumentError::NotText)?;
    let mut found = None;
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document).map_err(yaml)?;
        if value.is_null() {
            continue;
        }
        if found.is_some() {
            return Err(DocumentError::SeveralDocuments);
        }
        found = Some(serde_yaml::from_value(value).map_err(yaml)?);
    }
    Ok(found)
}

/// One document of a ledger file: an entry, or nothing (comments only).
pub fn parse_entry(document: &[u8]) -> Result<Option<Entry>, DocumentError> {
    parse_one(document)
}

fn yaml(error: serde_yaml::Error) -> DocumentError {
    DocumentError::Yaml {
        reason: UserText::message(&error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_split_at_document_markers_only() {
        let text = b"# header\n---\na: 1\n--- \nb: '---'\n  ---\n---x\n---";
        let pieces: Vec<_> = split(text)
            .into_iter()
            .map(|(at, piece)| (at, String::from_utf8_lossy(piece).into_owned()))
            .collect();
        assert_eq!(
            pieces,
            [
                (0, "# header\n".to_owned()),
                (9, "---\na: 1\n".into()),
                (18, "--- \nb: '---'\n  ---\n---x\n".into()),
                (43, "---".into()),
            ]
        );
        assert!(split(b"").is_empty());
    }

    #[test]
    fn oversized_and_overnested_documents_are_refused_unparsed() {
        let big = format!("a: '{}'\n", "x".repeat(MAX_ENTRY_BYTES));
        assert!(matches!(
            parse_one::<serde_yaml::Value>(big.as_bytes()),
            Err(DocumentError::TooLarge { .. })
        ));
        // Quoted brackets count too: no quoting hides an opening from the guard.
        let nested = format!("a: '{}'\n", "[".repeat(MAX_FLOW_OPENINGS + 1));
        assert!(matches!(
            parse_one::<serde_yaml::Value>(nested.as_bytes()),
            Err(DocumentError::TooNested { .. })
        ));
        let fine = format!("a: {}{}\n", "[".repeat(20), "]".repeat(20));
        assert!(parse_one::<serde_yaml::Value>(fine.as_bytes()).is_ok());
        // A lone carriage return breaks lines for YAML; the split does not look for it, and
        // the two documents are refused together.
        assert!(matches!(
            parse_one::<serde_yaml::Value>(b"a: 1\r---\rb: 2\r"),
            Err(DocumentError::SeveralDocuments)
        ));
        assert_eq!(
            parse_one::<serde_yaml::Value>(b"# only a comment\n"),
            Ok(None)
        );
    }
}
