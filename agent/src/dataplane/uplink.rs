//! The uplink guard's user side: attaching `xdp_uplink` (native where the driver can, generic
//! otherwise), and its allow-list and settings.

use std::{collections::BTreeSet, path::Path};

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use gridnet_common::maps::{PortKey, UplinkConfig};

use super::{DataplaneError, XDP_UPLINK};

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

/// The pin of the XDP link on `interface`.
pub fn xdp_link_pin(pin_root: &Path, interface: &str) -> std::path::PathBuf {
    pin_root.join("xdp").join(interface)
}

/// Makes sure `program` runs on `interface`; returns the change made, if any. A pinned link of
/// ours is updated in place when the program changed (no unguarded moment).
pub fn ensure_xdp(
    program: &mut Xdp,
    pin_root: &Path,
    interface: &str,
) -> Result<Option<String>, DataplaneError> {
    let err = |action| {
        move |source| DataplaneError::Program {
            action,
            program: XDP_UPLINK,
            source,
        }
    };
    let pin = xdp_link_pin(pin_root, interface);
    let our_id = program.info().map_err(err("inspect"))?.id();
    if let Ok(old) = PinnedLink::from_pin(&pin) {
        let link = FdLink::from(old);
        let current = link.info().map(|info| info.program_id()).ok();
        if current == Some(our_id) {
            return Ok(None);
        }
        let updated = XdpLink::try_from(link)
            .ok()
            .and_then(|link| program.attach_to_link(link).ok());
        let _ = std::fs::remove_file(&pin);
        if let Some(id) = updated {
            keep(program, id, &pin)?;
            return Ok(Some(format!("replace the XDP guard on {interface}")));
        }
    }
    super::link_pin_dir(&pin, pin_root)?;
    // Native first; a driver without XDP support refuses it, and generic XDP always works.
    let (id, mode) = match program.attach(interface, XdpMode::Driver) {
        Ok(id) => (id, XdpAttachMode::Native),
        Err(_) => (
            program
                .attach(interface, XdpMode::Skb)
                .map_err(err("attach"))?,
            XdpAttachMode::Generic,
        ),
    };
    keep(program, id, &pin)?;
    Ok(Some(format!(
        "attach the XDP guard to {interface} ({})",
        mode.name()
    )))
}

fn keep(
    program: &mut Xdp,
    id: aya::programs::xdp::XdpLinkId,
    pin: &Path,
) -> Result<(), DataplaneError> {
    let link = program
        .take_link(id)
        .map_err(|source| DataplaneError::Program {
            action: "keep the link of",
            program: XDP_UPLINK,
            source,
        })?;
    // Kernels without XDP links attach through netlink, which holds no descriptor and stays on
    // the interface by itself; only a real link needs its pin.
    if let Ok(link) = FdLink::try_from(link) {
        link.pin(pin).map_err(|source| DataplaneError::Pin {
            program: XDP_UPLINK,
            path: pin.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Takes the guard off `interface`: unpinning its link detaches it, since nothing else holds
/// the link. Only for operators who ask; by default the guard outlives the agent.
pub fn detach_xdp(pin_root: &Path, interface: &str) -> std::io::Result<()> {
    match std::fs::remove_file(xdp_link_pin(pin_root, interface)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The allow-list a plan asks for, as map keys.
pub fn port_keys(ports: &BTreeSet<(u8, u16)>) -> Vec<PortKey> {
    ports
        .iter()
        .map(|&(protocol, port)| PortKey::new(protocol, port))
        .collect()
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
