//! gridnet's node agent: from the reservation ledger to running private networks.
//!
//! Data flows one way: [`ledger`] -> [`plan`] -> [`reconcile`] -> {[`netlink`], [`dataplane`],
//! [`tunnel`], [`gateway`]}. No subsystem reaches back up; the words they all share (keys,
//! gateway modes) live in [`vocab`], below every one of them.

pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod gateway;
pub mod ledger;
pub mod netlink;
pub mod plan;
pub mod reconcile;
pub mod tunnel;
pub mod vocab;
