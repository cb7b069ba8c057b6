//! The reservation ledger: signed, hash-chained entries and the grid state they build.
