//! Attaching TC programs: TCX links where the kernel has them (6.6+), netlink cls_bpf filters
//! otherwise. The choice is probed, not assumed from a version number. One mechanism serves
//! every TC program of the datapath.
//!
//! Both survive the agent: cls_bpf filters live on the interface; TCX links are pinned under
//! `<pin root>/links/<program>/<interface>`.

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};
use gridnet_common::verdict::Program;

use super::{DataplaneError, pins, program::Loaded};
use crate::netlink::Netlink;

/// Priority of gridnet's filter on an interface: first, before anything an operator adds.
pub const FILTER_PRIORITY: u16 = 1;
/// Handle of gridnet's filter at [`FILTER_PRIORITY`].
pub const FILTER_HANDLE: u32 = 1;

/// The attach style in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// TCX links (`bpf_link`, multi-program ordering), pinned per interface.
    Tcx,
    /// Netlink cls_bpf filters on a clsact qdisc.
    Netlink,
}

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachPreference {
    /// TCX when the kernel supports it, else netlink.
    #[default]
    Auto,
    Tcx,
    Netlink,
}

impl std::str::FromStr for AttachPreference {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "tcx" => Ok(Self::Tcx),
            "netlink" => Ok(Self::Netlink),
            other => Err(format!(
                "`{other}` is not an attach mode (auto, tcx, netlink)"
            )),
        }
    }
}

impl AttachMode {
    /// Resolves a preference on this kernel: a TCX query on the loopback interface succeeds
    /// exactly when the kernel knows TCX attach points (it changes nothing).
    pub fn resolve(preference: AttachPreference) -> Self {
        match preference {
            AttachPreference::Tcx => Self::Tcx,
            AttachPreference::Netlink => Self::Netlink,
            AttachPreference::Auto => {
                if SchedClassifier::query_tcx("lo", TcAttachType::Ingress).is_ok() {
                    Self::Tcx
                } else {
                    Self::Netlink
                }
            }
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Netlink => "netlink",
        }
    }
}

/// What runs on an interface's ingress, as far as one of gridnet's programs is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// The agent's current program, attached the way this node attaches.
    Current,
    /// An attachment of ours with other instructions (an earlier release), or a TCX link
    /// without its pin: it is replaced in place.
    Outdated,
    /// Nothing of ours.
    Missing,
}

/// Finds how `program` is attached to the ingress of `interface` (index `ifindex`).
pub async fn observe(
    mode: AttachMode,
    netlink: &Netlink,
    pin_root: &std::path::Path,
    loaded: &Loaded<SchedClassifier>,
    program: Program,
    interface: &str,
    ifindex: u32,
) -> Result<Attachment, DataplaneError> {
    match mode {
        AttachMode::Tcx => {
            let (_, attached) = SchedClassifier::query_tcx(interface, TcAttachType::Ingress)
                .map_err(|source| DataplaneError::Program {
                    action: "query the TCX programs of",
                    program,
                    source,
                })?;
            let current = attached.iter().any(|p| p.tag().to_be_bytes() == loaded.tag);
            let pinned = pins::link_pin(pin_root, program, interface).exists();
            Ok(match (current, pinned) {
                (true, true) => Attachment::Current,
                (_, true) | (true, false) => Attachment::Outdated,
                (false, false) => Attachment::Missing,
            })
        }
        AttachMode::Netlink => {
            let filters = netlink.ingress_bpf_filters(ifindex).await?;
            let ours = filters
                .iter()
                .find(|f| f.priority == FILTER_PRIORITY && f.handle == FILTER_HANDLE);
            Ok(match ours {
                Some(f) if f.tag == Some(loaded.tag) => Attachment::Current,
                Some(_) => Attachment::Outdated,
                None => Attachment::Missing,
            })
        }
    }
}

/// Makes `loaded` the gridnet program on the ingress of `interface`, replacing an attachment
/// of ours (`found`) in place so the interface is never without it.
pub fn attach(
    mode: AttachMode,
    pin_root: &std::path::Path,
    loaded: &mut Loaded<SchedClassifier>,
    program: Program,
    interface: &str,
    found: Attachment,
) -> Result<(), DataplaneError> {
    match mode {
        AttachMode::Tcx => attach_tcx(pin_root, loaded, program, interface),
        AttachMode::Netlink => {
            attach_netlink(loaded, program, interface, found == Attachment::Outdated)
        }
    }
}

fn attach_tcx(
    pin_root: &std::path::Path,
    loaded: &mut Loaded<SchedClassifier>,
    program: Program,
    interface: &str,
) -> Result<(), DataplaneError> {
    let pin = pins::link_pin(pin_root, program, interface);
    if let Ok(old) = PinnedLink::from_pin(&pin) {
        let replaced = SchedClassifierLink::try_from(FdLink::from(old))
            .ok()
            .and_then(|link| loaded.program.attach_to_link(link).ok());
        let _ = std::fs::remove_file(&pin);
        if let Some(id) = replaced {
            return keep_tcx(loaded, program, id, &pin);
        }
        // A link of an interface that no longer exists (the veth was recreated): attach anew.
    }
    let id = loaded
        .program
        .attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(|source| DataplaneError::Program {
            action: "attach (TCX)",
            program,
            source,
        })?;
    keep_tcx(loaded, program, id, &pin)
}

/// Takes the link out of aya's bookkeeping (which would detach it on drop) and pins it.
fn keep_tcx(
    loaded: &mut Loaded<SchedClassifier>,
    program: Program,
    id: tc::SchedClassifierLinkId,
    pin: &std::path::Path,
) -> Result<(), DataplaneError> {
    let link = loaded
        .program
        .take_link(id)
        .map_err(|source| DataplaneError::Program {
            action: "keep the link of",
            program,
            source,
        })?;
    let link = FdLink::try_from(link).map_err(|e| DataplaneError::PinRoot {
        path: pin.to_owned(),
        reason: e.to_string(),
    })?;
    link.pin(pin).map_err(|source| DataplaneError::Pin {
        program,
        path: pin.to_owned(),
        source,
    })?;
    Ok(())
}

fn attach_netlink(
    loaded: &mut Loaded<SchedClassifier>,
    program: Program,
    interface: &str,
    replace: bool,
) -> Result<(), DataplaneError> {
    let handle = TcHandle::from(FILTER_HANDLE);
    let attached = if replace {
        // Swaps the filter atomically: no moment in which packets go unfiltered.
        let existing = SchedClassifierLink::attached(
            interface,
            TcAttachType::Ingress,
            FILTER_PRIORITY,
            handle,
            None,
        )
        .map_err(|source| DataplaneError::Qdisc {
            interface: interface.to_owned(),
            source: tc::TcError::IoError(source),
        })?;
        loaded.program.attach_to_link(existing)
    } else {
        match tc::qdisc_add_clsact(interface) {
            Ok(()) => {}
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(DataplaneError::Qdisc {
                    interface: interface.to_owned(),
                    source,
                });
            }
        }
        loaded.program.attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions {
                priority: FILTER_PRIORITY,
                handle,
                classid: None,
            }),
        )
    };
    let id = attached.map_err(|source| DataplaneError::Program {
        action: "attach",
        program,
        source,
    })?;
    // The filter must outlive this process: take the link out of aya's bookkeeping, which
    // would detach it on drop. A netlink link holds no file descriptor, so nothing leaks.
    let link = loaded
        .program
        .take_link(id)
        .map_err(|source| DataplaneError::Program {
            action: "keep the attachment of",
            program,
            source,
        })?;
    std::mem::forget(link);
    Ok(())
}
