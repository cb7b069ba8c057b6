//! Loading a program once for the agent's lifetime, and pinning it.
//!
//! The agent's own copy of a program goes through the verifier once, when the program is first
//! needed. If the pinned program has the same instructions (the same tag), the pinned one is
//! adopted and the fresh copy unloaded, so a restart changes nothing in the kernel; otherwise the
//! fresh copy replaces the pin (an upgrade) and attachments are moved to it as they are checked.

use std::path::Path;

use aya::{
    Ebpf,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use gridnet_common::verdict::Program;

use super::{DataplaneError, pins};

/// A program loaded and pinned, as the agent holds it.
pub struct Loaded<P> {
    pub program: P,
    /// The instruction hash: equal tags mean equal programs.
    pub tag: [u8; 8],
    /// The kernel's id of the program.
    pub id: u32,
}

/// Program types the datapath uses, and how each is loaded and reopened from a pin.
pub trait Kind: Sized {
    fn load_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError>;
    fn unload_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError>;
    fn from_pin(path: &Path) -> Result<Self, ProgramError>;
    fn info(&self) -> Result<aya::programs::ProgramInfo, ProgramError>;
}

impl Kind for SchedClassifier {
    fn load_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError> {
        <&mut Self>::try_from(program)?.load()
    }
    fn unload_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError> {
        <&mut Self>::try_from(program)?.unload()
    }
    fn from_pin(path: &Path) -> Result<Self, ProgramError> {
        Self::from_pin(path)
    }
    fn info(&self) -> Result<aya::programs::ProgramInfo, ProgramError> {
        Self::info(self)
    }
}

impl Kind for Xdp {
    fn load_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError> {
        <&mut Self>::try_from(program)?.load()
    }
    fn unload_fresh(program: &mut aya::programs::Program) -> Result<(), ProgramError> {
        <&mut Self>::try_from(program)?.unload()
    }
    fn from_pin(path: &Path) -> Result<Self, ProgramError> {
        Self::from_pin(path, aya_obj::programs::XdpAttachType::Interface)
    }
    fn info(&self) -> Result<aya::programs::ProgramInfo, ProgramError> {
        Self::info(self)
    }
}

/// Loads `program` from the object, adopts the pinned copy when it is the same program, and
/// returns the pinned instance.
pub fn load<P: Kind>(
    ebpf: &mut Ebpf,
    pin_root: &Path,
    program: Program,
) -> Result<Loaded<P>, DataplaneError> {
    let name = program.name();
    let err = |action| {
        move |source| DataplaneError::Program {
            action,
            program,
            source,
        }
    };
    let fresh = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "find",
        program,
        source: ProgramError::NotLoaded,
    })?;
    P::load_fresh(fresh).map_err(err("load"))?;
    let tag = fresh.info().map_err(err("inspect"))?.tag().to_be_bytes();
    let pin = pins::program_pin(pin_root, program);
    let pinned_tag = P::from_pin(&pin)
        .ok()
        .and_then(|p| p.info().ok())
        .map(|i| i.tag().to_be_bytes());
    if pinned_tag != Some(tag) {
        let _ = std::fs::remove_file(&pin);
        fresh.pin(&pin).map_err(|source| DataplaneError::Pin {
            program,
            path: pin.clone(),
            source,
        })?;
    }
    // The pin holds the program now; the object's own descriptor is not needed.
    P::unload_fresh(fresh).map_err(err("release"))?;
    let pinned = P::from_pin(&pin).map_err(err("reopen"))?;
    let id = pinned.info().map_err(err("inspect"))?.id();
    Ok(Loaded {
        program: pinned,
        tag,
        id,
    })
}
