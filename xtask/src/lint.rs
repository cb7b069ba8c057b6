//! `cargo xtask lint`: formatting and clippy over every crate, the first stage of
//! `cargo xtask test`.
//!
//! - `fmt`: rustfmt in check mode over the whole workspace, the eBPF crate included;
//! - `clippy`: the host crates, every target (tests, benches, binaries);
//! - `clippy-ebpf`: the eBPF crate on the target and toolchain the agent's build script compiles
//!   it with; on the host it is only an empty library, so the host pass never sees its code.
//!
//! Every stage runs even after one fails, so one run lists all findings; any finding fails.
//! The tools come from `cargo xtask setup` (rustfmt, clippy, nightly's rust-src, protoc for the
//! agent's dependencies, bpf-linker for the agent's build script).

use std::process::Command;

use anyhow::{Context as _, bail};

/// The eBPF target of this machine's byte order, as aya-build picks it for the agent's build.
const EBPF_TARGET: &str = if cfg!(target_endian = "big") {
    "bpfeb-unknown-none"
} else {
    "bpfel-unknown-none"
};

/// The toolchain aya-build uses for the eBPF crate (`aya_build::Toolchain::Nightly`).
const EBPF_TOOLCHAIN: &str = "nightly";

pub fn run() -> anyhow::Result<()> {
    let workspace = crate::workspace_root()?;
    let mut failed = Vec::new();
    for (stage, mut command) in stages() {
        println!("lint: {stage}");
        let status = command
            .current_dir(workspace)
            .status()
            .with_context(|| format!("cannot start the `{stage}` lint stage"))?;
        if !status.success() {
            eprintln!("lint: `{stage}` failed ({status})");
            failed.push(stage);
        }
    }
    if !failed.is_empty() {
        let hint = if failed.contains(&"fmt") {
            " (`cargo fmt --all` fixes formatting)"
        } else {
            ""
        };
        bail!(
            "lint failed in {}: fix the findings above{hint}",
            failed.join(", ")
        );
    }
    println!("lint: clean");
    Ok(())
}

fn stages() -> [(&'static str, Command); 3] {
    let mut fmt = Command::new("cargo");
    fmt.args(["fmt", "--all", "--", "--check"]);

    let mut clippy = Command::new("cargo");
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "gridnet-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);

    // `rustup run` rather than `cargo +nightly`: it works whichever `cargo` comes first in PATH,
    // and it is how aya-build starts the real build.
    let mut ebpf = Command::new("rustup");
    ebpf.args(["run", EBPF_TOOLCHAIN, "cargo", "clippy"])
        .args([
            "--package",
            "gridnet-ebpf",
            "--release",
            "--target",
            EBPF_TARGET,
        ])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"])
        // The cfg aya-build passes (the rest of its flags only matter when linking); it also
        // keeps any host RUSTFLAGS of the caller away from the eBPF target.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        );
    // A RUSTC or workspace wrapper inherited from an outer cargo names the stable compiler, which
    // cannot build `core` for the eBPF target (aya-build removes the same two).
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER"] {
        ebpf.env_remove(key);
    }

    [("fmt", fmt), ("clippy", clippy), ("clippy-ebpf", ebpf)]
}
