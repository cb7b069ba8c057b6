//! gridnet's kernel programs live in `src/main.rs` (built for `bpfel-unknown-none` by the agent's
//! build script). This empty library only lets the agent list the crate as a build dependency,
//! so cargo rebuilds the agent when the programs change.
#![no_std]
