//! `cargo xtask setup`: installs what a fresh machine lacks, and nothing twice.
//!
//! - Debian packages the tests, the demo and the VM harness use;
//! - rustup components: `rust-src` for nightly (eBPF builds `core` from source), rustfmt and
//!   clippy for the lint stage;
//! - `bpf-linker`, built against the LLVM that ships inside the nightly toolchain.
//!
//! A second run only checks, in a few seconds.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// Debian packages, each for a reason:
const PACKAGES: &[&str] = &[
    "iproute2",          // `ip` in tests and the demo
    "iputils-ping",      // a real ping between containers
    "iperf3",            // throughput in benchmarks
    "bpftool",           // inspecting programs and maps
    "tcpdump",           // captures while debugging
    "curl",              // a real HTTP client for gateways
    "wrk",               // HTTP load for the gateway benchmark
    "openssl",           // a CA, certificates and a TLS server behind gateways in tests
    "wireguard-tools",   // `wg`, against gridnet's UAPI
    "nftables",          // the baseline of the XDP guard benchmark
    "wireguard-go",      // a real WireGuard peer in tests and benchmarks
    "qemu-system-x86",   // the VM kernel harness
    "busybox-static",    // the VM's userland
    "cpio",              // checking the initramfs the harness writes
    "kmod",              // depmod for the VM kernels' modules
    "etcd-server",       // the ledger's etcd source in tests
    "protobuf-compiler", // etcd-client's build script
    "libprotobuf-dev",   // etcd-client's well-known protos
];

/// The bpf-linker release that links eBPF objects with nightly's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The bpf-linker feature selecting that LLVM.
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

pub fn run() -> anyhow::Result<()> {
    apt_packages()?;
    rust_components()?;
    bpf_linker()?;
    println!("setup: ready");
    Ok(())
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    if !is_root() {
        bail!(
            "installing packages needs root: run `sudo apt-get install --no-install-recommends {}`",
            missing.join(" ")
        );
    }
    run_cmd(
        Command::new("apt-get").arg("update").arg("-q"),
        "apt-get update",
    )?;
    // No recommends: wireguard-tools would pull a whole kernel.
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// rustup components, each for a reason: `(toolchain, component)`, where `None` is the
/// toolchain cargo runs xtask with.
const COMPONENTS: &[(Option<&str>, &str)] = &[
    (None, "rustfmt"),             // the lint stage's format check
    (None, "clippy"),              // the lint stage, host crates
    (Some("nightly"), "clippy"),   // the lint stage, the eBPF crate
    (Some("nightly"), "rust-src"), // eBPF builds `core` from source
];

fn rust_components() -> anyhow::Result<()> {
    for &(toolchain, component) in COMPONENTS {
        let mut list = Command::new("rustup");
        list.args(["component", "list", "--installed"]);
        if let Some(toolchain) = toolchain {
            list.args(["--toolchain", toolchain]);
        }
        let out = list.output().context(
            "rustup is needed (with a `nightly` toolchain) to build and lint the eBPF programs",
        )?;
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with(component))
        {
            continue;
        }
        let on = toolchain.unwrap_or("the default toolchain");
        println!("setup: adding {component} to {on}");
        let mut add = Command::new("rustup");
        add.args(["component", "add", component]);
        if let Some(toolchain) = toolchain {
            add.args(["--toolchain", toolchain]);
        }
        run_cmd(&mut add, "rustup component add")?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let works = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        });
    if works {
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM (about a minute)"
    );
    // bpf-linker keeps an rpath to this prefix: it must outlive any checkout.
    let prefix = llvm_prefix()?;
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("rustc +nightly")?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let libllvm = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("the nightly toolchain ships no libLLVM.so.*")?;
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    for link in [
        lib.join("libLLVM.so"),
        lib.join(libllvm.file_name().context("name")?),
    ] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)?;
    }
    run_cmd(
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
            ])
            .env("LLVM_PREFIX", &prefix),
        "cargo install bpf-linker",
    )
}

fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/gridnet/llvm-prefix"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn run_cmd(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
