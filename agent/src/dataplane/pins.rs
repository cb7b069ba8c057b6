//! Where the datapath lives on the bpffs. One layout for every program:
//!
//! ```text
//! <pin root>/maps/GRIDNET_*                    the maps, by name (reused by every load)
//! <pin root>/programs/<program>                each program that is in use
//! <pin root>/links/<program>/<interface>       each TCX or XDP link of that program
//! ```
//!
//! Netlink cls_bpf filters hold no link and have no pin: they live on their interface.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
};

use gridnet_common::verdict::Program;

/// The directory of the pinned maps.
pub fn maps_dir(pin_root: &Path) -> PathBuf {
    pin_root.join("maps")
}

/// The pin of the map named `name`.
pub fn map_pin(pin_root: &Path, name: &str) -> PathBuf {
    maps_dir(pin_root).join(name)
}

/// The pin of `program`.
pub fn program_pin(pin_root: &Path, program: Program) -> PathBuf {
    pin_root.join("programs").join(program.name())
}

/// The directory of `program`'s link pins.
pub fn links_dir(pin_root: &Path, program: Program) -> PathBuf {
    pin_root.join("links").join(program.name())
}

/// The pin of `program`'s link on `interface`.
pub fn link_pin(pin_root: &Path, program: Program, interface: &str) -> PathBuf {
    links_dir(pin_root, program).join(interface)
}

/// The interfaces that have a pinned link of `program`.
pub fn link_pins(pin_root: &Path, program: Program) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(links_dir(pin_root, program)) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Removes the pin of `program`'s link on `interface`; a missing pin is fine. Nothing else
/// holds gridnet's links, so this detaches the program from that interface.
pub fn unpin_link(pin_root: &Path, program: Program, interface: &str) -> io::Result<()> {
    match std::fs::remove_file(link_pin(pin_root, program, interface)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates the directories that pins go into.
pub fn create_dirs(pin_root: &Path) -> io::Result<()> {
    std::fs::create_dir_all(maps_dir(pin_root))?;
    std::fs::create_dir_all(pin_root.join("programs"))?;
    for program in Program::ALL {
        std::fs::create_dir_all(links_dir(pin_root, program))?;
    }
    Ok(())
}

/// Moves pins of the earlier layout (programs at the root, links in `tcx/` and `xdp/`) into this
/// one, so an upgraded agent adopts what runs instead of attaching a second copy. bpffs renames
/// keep the pinned objects, and the attachments with them.
pub fn adopt_earlier_layout(pin_root: &Path) -> io::Result<()> {
    let moves = [
        (pin_root.join("tcx"), Program::TcFromContainer),
        (pin_root.join("xdp"), Program::XdpUplink),
    ];
    for (dir, program) in moves {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let target = links_dir(pin_root, program).join(entry.file_name());
            if !target.exists() {
                std::fs::rename(entry.path(), target)?;
            }
        }
        std::fs::remove_dir_all(&dir)?;
    }
    for program in Program::ALL {
        let old = pin_root.join(program.name());
        if old.exists() {
            let target = program_pin(pin_root, program);
            if target.exists() {
                std::fs::remove_file(&old)?;
            } else {
                std::fs::rename(&old, target)?;
            }
        }
    }
    Ok(())
}
