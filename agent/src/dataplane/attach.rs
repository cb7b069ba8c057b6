//! How `tc_from_container` is attached: TCX links where the kernel has them (6.6+), netlink
//! cls_bpf filters otherwise. The choice is probed, not assumed from a version number.
//!
//! Both survive the agent: cls_bpf filters live on the interface; TCX links are pinned under
//! `<pin root>/tcx/<interface>`.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
};

use super::{DataplaneError, TC_FROM_CONTAINER};

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

/// The pin of the TCX link on `interface`.
pub fn link_pin(pin_root: &Path, interface: &str) -> PathBuf {
    pin_root.join("tcx").join(interface)
}

/// Makes sure `program` (with instruction tag `tag`) is the gridnet TCX program on the ingress
/// of `interface`. Returns a description of the change, if one was made.
pub fn ensure_tcx(
    program: &mut SchedClassifier,
    tag: [u8; 8],
    pin_root: &Path,
    interface: &str,
) -> Result<Option<String>, DataplaneError> {
    let err = |action| {
        move |source| DataplaneError::Program {
            action,
            program: TC_FROM_CONTAINER,
            source,
        }
    };
    let pin = link_pin(pin_root, interface);
    let (_, attached) =
        SchedClassifier::query_tcx(interface, TcAttachType::Ingress).map_err(err("query"))?;
    let current = attached.iter().any(|p| p.tag().to_be_bytes() == tag);
    if current && pin.exists() {
        return Ok(None);
    }
    // An older program of ours: update the link in place, so there is no moment without it.
    if let Ok(old) = PinnedLink::from_pin(&pin) {
        let replaced = SchedClassifierLink::try_from(FdLink::from(old))
            .ok()
            .and_then(|link| program.attach_to_link(link).ok());
        let _ = std::fs::remove_file(&pin);
        if let Some(id) = replaced {
            keep(program, id, &pin)?;
            return Ok(Some(format!("replace the TCX program on {interface}")));
        }
        // A link of an interface that no longer exists (the veth was recreated): attach anew.
    }
    super::link_pin_dir(&pin, pin_root)?;
    let id = program
        .attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(err("attach (TCX)"))?;
    keep(program, id, &pin)?;
    Ok(Some(format!(
        "attach tc_from_container to {interface} (TCX)"
    )))
}

/// Takes the link out of aya's bookkeeping (which would detach it on drop) and pins it.
fn keep(
    program: &mut SchedClassifier,
    id: aya::programs::tc::SchedClassifierLinkId,
    pin: &Path,
) -> Result<(), DataplaneError> {
    let link = program
        .take_link(id)
        .map_err(|source| DataplaneError::Program {
            action: "keep the link of",
            program: TC_FROM_CONTAINER,
            source,
        })?;
    let link = FdLink::try_from(link).map_err(|e| DataplaneError::PinRoot {
        path: pin.to_owned(),
        reason: e.to_string(),
    })?;
    link.pin(pin).map_err(|source| DataplaneError::Pin {
        program: TC_FROM_CONTAINER,
        path: pin.to_owned(),
        source,
    })?;
    Ok(())
}

/// Removes link pins of interfaces not in `keep`; their links are defunct or about to be.
pub fn forget_tcx_links(pin_root: &Path, keep: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(pin_root.join("tcx")) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}
