//! Debian kernels for the harness: found with apt-cache, fetched with `apt-get download`,
//! unpacked with `dpkg -x`, cached under `target/vm/kernels/`, and their modules resolved.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

/// Modules the privileged tests need, beyond what the cloud kernels build in.
pub const MODULES: &[&str] = &[
    "veth",
    "tun",
    "sch_ingress",
    "cls_bpf",
    "bridge",
    "wireguard",
];

/// The kernel series the harness knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    V6_1,
    V6_12,
}

impl Series {
    pub fn parse(text: &str) -> anyhow::Result<Vec<Series>> {
        Ok(match text {
            "6.1" => vec![Series::V6_1],
            "6.12" => vec![Series::V6_12],
            "all" => vec![Series::V6_1, Series::V6_12],
            other => bail!("unknown kernel `{other}`: use 6.1, 6.12 or all"),
        })
    }

    /// The package name pattern of the series' cloud flavour (small, boots fast, has BTF).
    fn pattern(self) -> &'static str {
        match self {
            Series::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
            Series::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
        }
    }
}

/// An unpacked kernel.
pub struct Kernel {
    pub package: String,
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
}

/// The newest package of `series` that apt knows, fetched and unpacked once.
pub fn fetch(series: Series, cache: &Path) -> anyhow::Result<Kernel> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", series.pattern()])
        .output()
        .context("apt-cache (Debian)")?;
    let mut packages: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    packages.sort_by_key(|p| version_key(p));
    let package = packages.pop().with_context(|| {
        format!(
            "apt knows no package matching {}: run `apt-get update`",
            series.pattern()
        )
    })?;
    let root = cache.join(&package);
    let done = root.join(".unpacked");
    if !done.exists() {
        std::fs::create_dir_all(cache)?;
        println!("vm-test: fetching {package}");
        let status = Command::new("apt-get")
            .arg("download")
            .arg(&package)
            .current_dir(cache)
            .status()?;
        ensure!(status.success(), "apt-get download {package} failed");
        let deb = std::fs::read_dir(cache)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
            .context("the downloaded .deb is missing")?;
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()?;
        ensure!(status.success(), "dpkg -x {} failed", deb.display());
        std::fs::remove_file(&deb)?;
        std::fs::write(&done, b"")?;
    }
    let modules_root = root.join("lib/modules");
    let release = std::fs::read_dir(&modules_root)?
        .filter_map(Result::ok)
        .find_map(|e| e.file_name().to_str().map(str::to_owned))
        .context("no lib/modules/<release> in the package")?;
    Ok(Kernel {
        vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
        modules_dir: modules_root.join(&release),
        package,
        release,
    })
}

/// Sorts `linux-image-6.1.0-56-...` and `linux-image-6.12.117+...` by their numbers.
fn version_key(package: &str) -> Vec<u64> {
    package
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The modules to load, dependencies first, as (name, path of the .ko or .ko.xz).
pub fn resolve_modules(kernel: &Kernel, wanted: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let builtin: BTreeSet<String> =
        std::fs::read_to_string(kernel.modules_dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|f| normalize(f.trim_end_matches(".ko")))
            .collect();
    let mut files = BTreeMap::new();
    index(&kernel.modules_dir.join("kernel"), &mut files)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        visit(&normalize(name), &files, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    if builtin.contains(name) || !seen.insert(name.to_owned()) {
        return Ok(());
    }
    let path = files
        .get(name)
        .with_context(|| format!("module {name} is neither built in nor shipped"))?;
    let out = Command::new("modinfo")
        .args(["-F", "depends"])
        .arg(path)
        .output()
        .context("modinfo (apt package kmod)")?;
    for dep in String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .filter(|d| !d.is_empty())
    {
        visit(&normalize(dep), files, builtin, seen, order)?;
    }
    order.push((name.to_owned(), path.clone()));
    Ok(())
}

fn index(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            index(&path, files)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && let Some(stem) = name
                .strip_suffix(".ko")
                .or_else(|| name.strip_suffix(".ko.xz"))
        {
            files.insert(normalize(stem), path.clone());
        }
    }
    Ok(())
}

/// Module names treat `-` and `_` alike.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A module's bytes, decompressed (busybox's insmod takes plain .ko files).
pub fn module_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("xz (apt package xz-utils)")?;
        ensure!(out.status.success(), "xz -d {} failed", path.display());
        Ok(out.stdout)
    } else {
        Ok(std::fs::read(path)?)
    }
}

/// Reads a kernel's config for the features the README reports.
pub fn features(kernel: &Kernel) -> String {
    let config = std::fs::read_to_string(
        kernel
            .modules_dir
            .join("../../../boot")
            .join(format!("config-{}", kernel.release)),
    )
    .unwrap_or_default();
    let has = |key: &str| config.lines().any(|l| l.starts_with(&format!("{key}=")));
    format!(
        "BTF {}, netkit {}, WireGuard {}",
        if has("CONFIG_DEBUG_INFO_BTF") {
            "yes"
        } else {
            "no"
        },
        if has("CONFIG_NETKIT") { "yes" } else { "no" },
        if has("CONFIG_WIREGUARD") {
            "module"
        } else {
            "no"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut p = [
            "linux-image-6.12.99+deb12-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64",
            "linux-image-6.12.101+deb12-cloud-amd64",
        ];
        p.sort_by_key(|p| version_key(p));
        assert_eq!(p.last(), Some(&"linux-image-6.12.117+deb12-cloud-amd64"));
        assert!(Series::parse("5.4").is_err());
        assert_eq!(Series::parse("all").expect("valid").len(), 2);
    }
}
