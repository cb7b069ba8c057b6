//! Making sure the pin root is on a bpffs.

use std::path::{Path, PathBuf};

use super::DataplaneError;

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where Linux distributions mount the bpffs.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Checks that `pin_root` is (or will be, once created) on a bpffs, and mounts the standard
/// bpffs at `/sys/fs/bpf` when that is where it belongs and nothing is mounted there yet.
pub fn ensure_bpffs(pin_root: &Path) -> Result<(), DataplaneError> {
    let err = |reason: String| DataplaneError::PinRoot {
        path: pin_root.to_owned(),
        reason,
    };
    let mut existing: PathBuf = pin_root.to_owned();
    while !existing.exists() {
        if !existing.pop() {
            return Err(err("no part of it exists".into()));
        }
    }
    if is_bpffs(&existing).map_err(|e| err(e.to_string()))? {
        return Ok(());
    }
    if pin_root.starts_with(BPFFS_MOUNT) && Path::new(BPFFS_MOUNT).is_dir() {
        nix::mount::mount(Some("bpf"), BPFFS_MOUNT, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|e| err(format!("no bpffs at {BPFFS_MOUNT} and mounting one failed ({e}); run `mount -t bpf bpf {BPFFS_MOUNT}` as root")))?;
        return Ok(());
    }
    Err(err(format!(
        "{} is not on a bpffs; mount one (`mount -t bpf bpf DIR`) or choose a pin root under {BPFFS_MOUNT}",
        existing.display()
    )))
}

fn is_bpffs(path: &Path) -> nix::Result<bool> {
    let stat = nix::sys::statfs::statfs(path)?;
    Ok(stat.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}
