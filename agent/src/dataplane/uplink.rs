//! The uplink guard's user side: attaching `xdp_uplink` (native where the driver can, generic
//! otherwise), and its allow-list and settings.
//!
//! # Minimum kernel version
//! 5.2 (`bpf_skc_lookup_tcp` from XDP); XDP links, which pin the attachment, since 5.9.

use std::path::Path;

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use gridnet_common::{maps::UplinkConfig, verdict::Program};

use super::{DataplaneError, pins, program::Loaded};

const GUARD: Program = Program::XdpUplink;

/// How XDP runs on an uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachMode {
    /// In the driver, before any allocation: the cheapest drop there is.
    Native,
    /// In the stack (generic XDP), for drivers without XDP support.
    Generic,
}

impl XdpAttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// Whether the pinned link on `interface` runs `loaded`.
pub fn is_current(pin_root: &Path, loaded: &Loaded<Xdp>, interface: &str) -> bool {
    PinnedLink::from_pin(pins::link_pin(pin_root, GUARD, interface))
        .ok()
        .and_then(|old| FdLink::from(old).info().ok())
        .is_some_and(|info| info.program_id() == loaded.id)
}

/// Makes `loaded` run on `interface`. A pinned link of ours is updated in place when the
/// program changed (no unguarded moment). Returns the mode of a new attachment.
pub fn attach(
    pin_root: &Path,
    loaded: &mut Loaded<Xdp>,
    interface: &str,
) -> Result<Option<XdpAttachMode>, DataplaneError> {
    let err = |action| {
        move |source| DataplaneError::Program {
            action,
            program: GUARD,
            source,
        }
    };
    let pin = pins::link_pin(pin_root, GUARD, interface);
    if let Ok(old) = PinnedLink::from_pin(&pin) {
        let updated = XdpLink::try_from(FdLink::from(old))
            .ok()
            .and_then(|link| loaded.program.attach_to_link(link).ok());
        let _ = std::fs::remove_file(&pin);
        if let Some(id) = updated {
            keep(loaded, id, &pin)?;
            return Ok(None);
        }
    }
    // Native first; a driver without XDP support refuses it, and generic XDP always works.
    let (id, mode) = match loaded.program.attach(interface, XdpMode::Driver) {
        Ok(id) => (id, XdpAttachMode::Native),
        Err(_) => (
            loaded
                .program
                .attach(interface, XdpMode::Skb)
                .map_err(err("attach"))?,
            XdpAttachMode::Generic,
        ),
    };
    keep(loaded, id, &pin)?;
    Ok(Some(mode))
}

fn keep(
    loaded: &mut Loaded<Xdp>,
    id: aya::programs::xdp::XdpLinkId,
    pin: &Path,
) -> Result<(), DataplaneError> {
    let link = loaded
        .program
        .take_link(id)
        .map_err(|source| DataplaneError::Program {
            action: "keep the link of",
            program: GUARD,
            source,
        })?;
    // Kernels without XDP links attach through netlink, which holds no descriptor and stays on
    // the interface by itself; only a real link needs its pin.
    if let Ok(link) = FdLink::try_from(link) {
        link.pin(pin).map_err(|source| DataplaneError::Pin {
            program: GUARD,
            path: pin.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Takes the guard off `interface`: unpinning its link detaches it, since nothing else holds
/// the link. Only for operators who ask; by default the guard outlives the agent.
pub fn detach_xdp(pin_root: &Path, interface: &str) -> std::io::Result<()> {
    pins::unpin_link(pin_root, GUARD, interface)
}

/// The node's ephemeral port range, where replies to its own connections arrive.
pub fn ephemeral_range() -> (u16, u16) {
    // Linux's default range, used if the sysctl cannot be read.
    const DEFAULT: (u16, u16) = (32768, 60999);
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return DEFAULT;
    };
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => (low, high),
        _ => DEFAULT,
    }
}

/// The guard's settings for this node.
pub fn enforcing_config() -> UplinkConfig {
    let (ephemeral_low, ephemeral_high) = ephemeral_range();
    UplinkConfig {
        ephemeral_low,
        ephemeral_high,
        enforcing: 1,
        _pad: [0; 3],
    }
}
