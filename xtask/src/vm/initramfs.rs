//! The guest's initramfs: busybox, a tiny init, the kernel modules, the agent, the privileged
//! test executables, and the real tools the tests call (with their shared libraries).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};

use super::{cpio::Archive, kernel};

/// Host tools the tests run inside the guest: iproute2's `ip` and `tc`, iputils' `ping`,
/// WireGuard's `wg` and `wireguard-go`, `tcpdump` (the guest has no user of its own for it:
/// the tests run it with `-Z root`), and `bpftool` (each kernel's view of the maps' BTF).
const TOOLS: &[&str] = &[
    "ip",
    "tc",
    "ping",
    "wg",
    "wireguard-go",
    "tcpdump",
    "bpftool",
];

/// What goes into one initramfs.
pub struct Contents<'a> {
    pub kernel: &'a kernel::Kernel,
    pub gridnet: &'a Path,
    pub tests: &'a [PathBuf],
}

/// The init: mounts what a node has, loads the modules, runs every test executable, and prints
/// one verdict line before powering off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
export GRIDNET_BIN=/usr/local/bin/gridnet RUST_BACKTRACE=0
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/netns /run/wireguard /sys/fs/bpf
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
while read m; do insmod /modules/$m.ko || echo "init: cannot load module $m"; done < /modules.order
echo "init: kernel $(uname -r)"
if [ -e /sys/kernel/btf/vmlinux ]; then echo "init: btf present"; else echo "init: btf missing"; fi
fail=0
for t in /tests/*; do
  echo "init: running $t"
  "$t" --test-threads=1 || fail=1
done
if [ "$fail" = 0 ]; then echo "init: success"; else echo "init: failure"; fi
poweroff -f
"#;

pub fn build(contents: &Contents<'_>, out: &Path) -> anyhow::Result<()> {
    let mut archive = Archive::default();
    let mut dirs = BTreeSet::new();
    for dir in [
        "/bin",
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/tmp",
        "/var",
        "/tests",
        "/modules",
        "/usr/local/bin",
        "/etc",
    ] {
        add_dir(&mut archive, &mut dirs, dir);
    }
    archive.symlink("/var/run", "/run");
    archive.char_device("/dev/console", 0o600, 5, 1);
    archive.file("/init", 0o755, INIT.as_bytes());
    archive.file("/etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n");

    let busybox = which("busybox")?;
    archive.file("/bin/busybox", 0o755, &std::fs::read(&busybox)?);

    let mut libraries = BTreeSet::new();
    add_binary(
        &mut archive,
        &mut dirs,
        &mut libraries,
        contents.gridnet,
        "/usr/local/bin/gridnet",
    )?;
    for tool in TOOLS {
        let path = which(tool)?;
        add_binary(
            &mut archive,
            &mut dirs,
            &mut libraries,
            &path,
            &format!("/usr/local/bin/{tool}"),
        )?;
    }
    for test in contents.tests {
        let name = test
            .file_name()
            .and_then(|n| n.to_str())
            .context("test name")?;
        add_binary(
            &mut archive,
            &mut dirs,
            &mut libraries,
            test,
            &format!("/tests/{name}"),
        )?;
    }
    for library in &libraries {
        if let Some(parent) = Path::new(library).parent().and_then(Path::to_str) {
            add_dir(&mut archive, &mut dirs, parent);
        }
        let data = std::fs::read(library).with_context(|| format!("read {library}"))?;
        archive.file(library, 0o755, &data);
    }

    let modules = kernel::resolve_modules(contents.kernel, kernel::MODULES)?;
    let mut order = String::new();
    for (name, path) in &modules {
        archive.file(
            &format!("/modules/{name}.ko"),
            0o644,
            &kernel::module_bytes(path)?,
        );
        order.push_str(name);
        order.push('\n');
    }
    archive.file("/modules.order", 0o644, order.as_bytes());

    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, archive.finish()).with_context(|| format!("write {}", out.display()))
}

fn add_dir(archive: &mut Archive, dirs: &mut BTreeSet<String>, path: &str) {
    let mut current = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        current.push('/');
        current.push_str(part);
        if dirs.insert(current.clone()) {
            archive.dir(&current);
        }
    }
}

/// Adds an executable without its debug info, and records the libraries it loads.
fn add_binary(
    archive: &mut Archive,
    dirs: &mut BTreeSet<String>,
    libraries: &mut BTreeSet<String>,
    source: &Path,
    dest: &str,
) -> anyhow::Result<()> {
    let stripped = std::env::temp_dir().join(format!(
        "gridnet-vm-{}-{}",
        std::process::id(),
        dest.replace('/', "_")
    ));
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(source)
        .status()?;
    ensure!(status.success(), "strip {} failed", source.display());
    let data = std::fs::read(&stripped)?;
    let _ = std::fs::remove_file(&stripped);
    if let Some(parent) = Path::new(dest).parent().and_then(Path::to_str) {
        add_dir(archive, dirs, parent);
    }
    archive.file(dest, 0o755, &data);
    let out = Command::new("ldd").arg(source).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("");
        if path.starts_with('/') {
            libraries.insert(path.to_owned());
        }
    }
    Ok(())
}

fn which(tool: &str) -> anyhow::Result<PathBuf> {
    for dir in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let path = Path::new(dir).join(tool);
        if path.is_file() {
            return Ok(path);
        }
    }
    anyhow::bail!("{tool} is not installed (run `cargo xtask setup`)")
}
