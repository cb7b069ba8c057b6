//! Documents that are not entries, and text from entries in what is printed.

use super::super::{
    fixture::{Grid, container, key},
    *,
};
use crate::vocab::WgKey;

#[test]
fn malformed_yaml_is_refused_with_the_document_and_reason() {
    let grid = Grid::new();
    let good = serde_yaml::to_string(&grid.entries[3]).expect("yaml");
    let cases = [
        (
            good.replace(&grid.entries[3].signature.to_string(), "AAAA"),
            "signature",
        ),
        (good[..good.len() / 2].to_owned(), ""),
        (good.replace("kind: node", "kind: spaceship"), "spaceship"),
        (
            good.replace(&WgKey([1; 32]).to_string(), "AQID"),
            "WireGuard key",
        ),
        (good.replace("seq: 3", "seq: -3"), ""),
        (good + "surprise: true\n", "surprise"),
    ];
    for (text, needle) in cases {
        let (index, reason) = file::parse(&format!("---\n{text}")).expect_err(&text);
        assert_eq!(index, 0);
        assert!(
            reason.to_string().contains(needle),
            "{reason:?} should mention {needle:?}"
        );
    }
}

/// Nesting bombs cost the YAML parser time quadratic in their depth; they must be refused
/// before it runs.
#[test]
fn nesting_bombs_are_refused_quickly() {
    for (what, bomb) in [
        ("200 KB of `[`", "[".repeat(200_000)),
        ("`{a: ` x 100,000", "{a: ".repeat(100_000)),
        ("`a: [` x 16,000", "a: [".repeat(16_000)),
        ("`- ` x 100,000", "- ".repeat(100_000)),
        // Within the size limit: block nesting meets serde_yaml's depth limit in linear time.
        ("`- ` x 30,000", "- ".repeat(30_000)),
        ("`? ` x 30,000", "? ".repeat(30_000)),
    ] {
        let start = std::time::Instant::now();
        let text = format!("---\n{bomb}\n");
        assert!(file::parse(&text).is_err(), "{what} was accepted");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "refusing {what} took {:?}",
            start.elapsed()
        );
    }
}

/// A refusal is printed as one line (`entry N: refused: ...`); text from the entry must not be
/// able to end it and print a line of its own.
#[test]
fn refusals_quote_user_text_on_one_line() {
    use Rejection as R;
    let mut g = Grid::new();
    let forged = "x\nentry 9: refused: \u{1b}[2Kforged\r\u{2028}\u{202e}";
    let one_line = |e: &Rejection| {
        let shown = e.to_string();
        !shown.contains(['\n', '\r', '\u{1b}', '\u{2028}', '\u{202e}']) && shown.contains("\\n")
    };
    let e = g.sign("alice", container(forged, "web", 1, [10, 1, 1, 70]));
    g.refuse(e, |e| matches!(e, R::InvalidName { .. }) && one_line(e));
    let e = g.sign("alice", container("c", forged, 1, [10, 1, 1, 70]));
    g.refuse(e, |e| matches!(e, R::UnknownNetwork { .. }) && one_line(e));
    let e = g.sign(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Access,
            name: forged.into(),
        },
    );
    g.refuse(e, |e| matches!(e, R::UnknownObject { .. }) && one_line(e));
    let e = sign_next(
        &g.chain,
        forged,
        container("c", "web", 1, [10, 1, 1, 70]),
        &key(66),
    );
    g.refuse(e, |e| matches!(e, R::UnknownAuthor { .. }) && one_line(e));
    let e = sign_next(
        &g.chain,
        forged,
        Body::Twin {
            name: "dave".into(),
            public_key: key(66).public(),
        },
        &key(66),
    );
    g.refuse(e, |e| matches!(e, R::TwinAuthor { .. }) && one_line(e));
}

/// The YAML parser's messages quote the text they refuse; they are shown on one line too.
#[test]
fn malformed_documents_are_reported_on_one_line() {
    let grid = Grid::new();
    let good = serde_yaml::to_string(&grid.entries[3]).expect("yaml");
    let text = good.replace("kind: node", "kind: \"node\\nentry 9: refused: forged\"");
    let (_, reason) = file::parse(&format!("---\n{text}")).expect_err("an unknown kind");
    let shown = reason.to_string();
    assert!(shown.contains("forged") && !shown.contains('\n'), "{shown}");
}
