use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::{
    dataplane::{ContainerIdentity, EndpointState},
    netlink::NamespaceState,
    plan::{ContainerPlan, NetworkPlan, NodePlan},
    reconcile::observe::{HostLink, Inside},
};

const NET: &str = "alice/net";

fn config() -> NodeConfig {
    NodeConfig {
        netns_prefix: "t-".into(),
        ..NodeConfig::default()
    }
}

fn network(name: &str) -> NetworkPlan {
    NetworkPlan::local(
        name,
        "10.1.0.0/16".parse().expect("net"),
        "fd00:1::/48".parse().expect("net"),
        "10.1.1.0/24".parse().expect("net"),
        "fd00:1:0:1::/64".parse().expect("net"),
    )
}

fn container(name: &str, host: u8) -> ContainerPlan {
    ContainerPlan::new(
        name,
        NET,
        Ipv4Addr::new(10, 1, 1, host),
        Ipv6Addr::new(0xfd00, 1, 0, 1, 0, 0, 0, u16::from(host)),
    )
}

fn plan(containers: Vec<ContainerPlan>) -> NodePlan {
    NodePlan {
        networks: vec![network(NET)],
        containers,
        gateways: Vec::new(),
    }
}

/// What the kernel holds once `plan` is realized, host interfaces numbered from 100.
fn realized(plan: &NodePlan) -> Observed {
    let mut observed = Observed::default();
    for (i, network) in plan.networks.iter().enumerate() {
        observed.networks.insert(network.name.clone(), i as u32 + 1);
    }
    for (i, c) in plan.containers.iter().enumerate() {
        let index = 100 + i as u32;
        let id = observed.networks[&c.network];
        let host = format!("{}{i}", names::HOST_VETH_PREFIX);
        observed.namespaces.insert(
            names::netns_name(&config().netns_prefix, &c.name),
            NamespaceState::Mounted,
        );
        observed
            .host_links
            .insert(host.clone(), HostLink::finished_veth(index, Some(&c.name)));
        observed.identities.insert(index, identity(c, id));
        let state = EndpointState {
            ifindex: index,
            down: false,
        };
        observed.endpoints.insert((id, IpAddr::V4(c.ipv4)), state);
        observed.endpoints.insert((id, IpAddr::V6(c.ipv6)), state);
        observed.attachments.insert(index, Attachment::Current);
        observed.link_pins.insert(host);
    }
    observed
}

fn steps_of<'d>(diff: &'d Diff, name: &str) -> &'d [Step] {
    diff.changes
        .iter()
        .find_map(|c| match c {
            Change::Container { target, steps } if target.name == name => Some(steps.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}

fn net(text: &str) -> IpNet {
    text.parse().expect("literal prefix")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("literal address")
}

#[test]
fn nothing_to_do_when_the_kernel_matches() {
    let plan = plan(vec![container("a1", 2), container("a2", 3)]);
    let diff = diff(&plan, &realized(&plan), &config());
    assert_eq!(diff, Diff::default());
}

#[test]
fn a_new_container_gets_every_step_and_a_new_network_an_id() {
    let plan = plan(vec![container("a1", 2)]);
    let diff = diff(&plan, &Observed::default(), &config());
    assert_eq!(
        diff.changes[0],
        Change::AssignNetworkId {
            network: NET.into(),
            id: 1
        }
    );
    assert_eq!(
        steps_of(&diff, "a1"),
        [
            Step::CreateNamespace,
            Step::CreateLink { stale_host: None },
            Step::LabelHost,
            Step::SilenceHost,
            Step::BringUp,
            Step::AddAddress(net("10.1.1.2/32")),
            Step::AddAddress(net("fd00:1:0:1::2/128")),
            Step::SetDefaultRoute(ip("10.1.1.1")),
            Step::SetDefaultRoute(ip("fd00:1:0:1::1")),
            Step::WriteIdentity,
            Step::Attach(Attachment::Missing),
        ]
    );
    assert_eq!(diff.changes.len(), 2);
}

#[test]
fn a_changed_address_is_moved_inside_and_its_old_endpoints_forgotten() {
    let mut observed = realized(&plan(vec![container("a1", 2)]));
    let after = plan(vec![container("a1", 7)]);
    // The identity no longer matches, so the agent has read the container's side.
    observed.inside.insert(
        "a1".into(),
        Inside {
            mac: Some(container("a1", 2).mac.0),
            up: true,
            addresses: [net("10.1.1.2/32"), net("fd00:1:0:1::2/128")].into(),
            gateways: [ip("10.1.1.1"), ip("fd00:1:0:1::1")].into(),
        },
    );
    let diff = diff(&after, &observed, &config());
    assert_eq!(
        steps_of(&diff, "a1"),
        [
            // Its MAC follows its address, set in place.
            Step::SetMac,
            Step::RemoveAddress(net("10.1.1.2/32")),
            Step::RemoveAddress(net("fd00:1:0:1::2/128")),
            Step::AddAddress(net("10.1.1.7/32")),
            Step::AddAddress(net("fd00:1:0:1::7/128")),
            // Removing the last address flushed the routes.
            Step::SetDefaultRoute(ip("10.1.1.1")),
            Step::SetDefaultRoute(ip("fd00:1:0:1::1")),
            Step::WriteIdentity,
        ]
    );
    let forgotten: Vec<IpAddr> = diff
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ForgetEndpoint { address, .. } => Some(*address),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, [ip("10.1.1.2"), ip("fd00:1:0:1::2")]);
    // The veth stays: its identity is rewritten, not forgotten.
    assert!(!diff.changes.iter().any(|c| matches!(
        c,
        Change::ForgetInterface { .. } | Change::RemoveLink { .. }
    )));
}

#[test]
fn a_removed_container_loses_its_veth_namespace_pin_and_entries() {
    let observed = realized(&plan(vec![container("a1", 2), container("a2", 3)]));
    let diff = diff(&plan(vec![container("a1", 2)]), &observed, &config());
    let host = "gnv1".to_owned();
    assert_eq!(
        diff.changes,
        vec![
            Change::RemoveLink {
                name: host.clone(),
                index: 101
            },
            Change::UnpinLink { interface: host },
            Change::RemoveNamespace {
                name: "t-a2".into()
            },
            Change::ForgetInterface { ifindex: 101 },
            Change::ForgetEndpoint {
                network_id: 1,
                address: ip("10.1.1.3"),
                ifindex: 101
            },
            Change::ForgetEndpoint {
                network_id: 1,
                address: ip("fd00:1:0:1::3"),
                ifindex: 101
            },
        ]
    );
}

#[test]
fn a_removed_network_goes_after_its_containers() {
    let observed = realized(&plan(vec![container("a1", 2)]));
    let diff = diff(&NodePlan::default(), &observed, &config());
    assert_eq!(
        diff.changes.last(),
        Some(&Change::ForgetNetworkId {
            network: NET.into(),
            id: 1
        })
    );
    assert_eq!(diff.changes.len(), 7, "{:#?}", diff.changes);
}

#[test]
fn adopted_pins_are_kept_and_an_outdated_program_is_replaced_in_place() {
    let plan = plan(vec![container("a1", 2), container("a2", 3)]);
    let mut observed = realized(&plan);
    // A restarted agent finds everything pinned; after an upgrade, a2's program is outdated.
    observed.attachments.insert(101, Attachment::Outdated);
    let diff = diff(&plan, &observed, &config());
    assert_eq!(steps_of(&diff, "a1"), []);
    assert_eq!(steps_of(&diff, "a2"), [Step::Attach(Attachment::Outdated)]);
    assert_eq!(diff.changes.len(), 1);
}

#[test]
fn an_empty_namespace_mount_point_is_repaired_and_the_container_rebuilt() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = Observed::default();
    observed.networks.insert(NET.into(), 1);
    observed
        .namespaces
        .insert("t-a1".into(), NamespaceState::Empty);
    let diff = diff(&plan, &observed, &config());
    let steps = steps_of(&diff, "a1");
    assert_eq!(steps[0], Step::RepairNamespace);
    assert_eq!(steps[1], Step::CreateLink { stale_host: None });
}

#[test]
fn an_interface_of_another_kind_is_never_deleted_nor_used() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = Observed::default();
    observed.host_links.insert(
        "gnv0".into(),
        HostLink {
            index: 100,
            up: true,
            veth: false,
            silent: false,
            carrier: true,
            mtu: None,
            alias: Some("a1".into()),
        },
    );
    let diff = super::diff(&plan, &observed, &config());
    let Some(Change::Container { target, steps }) = diff
        .changes
        .iter()
        .find(|c| matches!(c, Change::Container { .. }))
    else {
        panic!("no container change: {diff:?}");
    };
    assert_eq!(target.host_ifname, "gnv1");
    assert_eq!(steps[1], Step::CreateLink { stale_host: None });
    let diff = super::diff(&NodePlan::default(), &observed, &config());
    assert!(
        !diff
            .changes
            .iter()
            .any(|c| matches!(c, Change::RemoveLink { .. }))
    );
}

#[test]
fn an_earlier_releases_veth_is_labelled_and_kept() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = realized(&plan);
    let mut link = observed.host_links.remove("gnv0").expect("realized");
    link.alias = None;
    let legacy = names::legacy_host_ifname("a1");
    observed.host_links.insert(legacy.clone(), link);
    observed.link_pins = [legacy].into();
    let diff = diff(&plan, &observed, &config());
    assert_eq!(steps_of(&diff, "a1"), [Step::LabelHost]);
    assert_eq!(diff.changes.len(), 1, "{diff:?}");
}

#[test]
fn the_guard_follows_the_plan_only_with_uplinks() {
    let mut plan = plan(Vec::new());
    plan.networks[0].wireguard_listen_port = 51820;
    let observed = realized(&plan);
    assert_eq!(diff(&plan, &observed, &config()), Diff::default());
    let config = NodeConfig {
        uplinks: vec!["up0".into()],
        ..config()
    };
    assert_eq!(
        diff(&plan, &observed, &config).changes,
        vec![
            Change::AttachGuard {
                uplink: "up0".into(),
                mode: None
            },
            Change::OpenPort {
                protocol: 17,
                port: 51820
            },
            Change::EnforceGuard,
        ]
    );
}

#[test]
fn an_earlier_releases_subnet_addresses_become_host_addresses_at_start() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = realized(&plan);
    // Read once at start: the identity matches, but the container holds /24 and /64 addresses.
    observed.inside.insert(
        "a1".into(),
        Inside {
            mac: Some(container("a1", 2).mac.0),
            up: true,
            addresses: [net("10.1.1.2/24"), net("fd00:1:0:1::2/64")].into(),
            gateways: [ip("10.1.1.1"), ip("fd00:1:0:1::1")].into(),
        },
    );
    observed
        .host_links
        .values_mut()
        .for_each(|h| h.silent = false);
    let diff = diff(&plan, &observed, &config());
    assert_eq!(
        steps_of(&diff, "a1"),
        [
            Step::SilenceHost,
            Step::RemoveAddress(net("10.1.1.2/24")),
            Step::RemoveAddress(net("fd00:1:0:1::2/64")),
            Step::AddAddress(net("10.1.1.2/32")),
            Step::AddAddress(net("fd00:1:0:1::2/128")),
            Step::SetDefaultRoute(ip("10.1.1.1")),
            Step::SetDefaultRoute(ip("fd00:1:0:1::1")),
        ]
    );
    // The veth and its datapath entries stay.
    assert_eq!(diff.changes.len(), 1);
}

#[test]
fn a_vanished_container_side_rebuilds_the_veth_and_forgets_its_old_entries() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = realized(&plan);
    observed.identities.insert(
        100,
        ContainerIdentity {
            ipv4: Ipv4Addr::new(10, 1, 1, 9),
            ..identity(&container("a1", 2), 1)
        },
    );
    // Read from inside: no eth0 at all.
    observed.inside.insert("a1".into(), Inside::default());
    let diff = diff(&plan, &observed, &config());
    assert_eq!(
        steps_of(&diff, "a1")[0],
        Step::CreateLink {
            stale_host: Some(100)
        }
    );
    assert!(
        diff.changes
            .contains(&Change::ForgetInterface { ifindex: 100 })
    );
}

#[test]
fn a_container_whose_side_is_down_has_its_endpoints_marked_and_unmarked() {
    let plan = plan(vec![container("a1", 2)]);
    let mut observed = realized(&plan);
    observed
        .host_links
        .values_mut()
        .for_each(|h| h.carrier = false);
    let diff_down = diff(&plan, &observed, &config());
    assert_eq!(steps_of(&diff_down, "a1"), [Step::MarkLink { down: true }]);
    for state in observed.endpoints.values_mut() {
        state.down = true;
    }
    assert_eq!(diff(&plan, &observed, &config()), Diff::default());
    observed
        .host_links
        .values_mut()
        .for_each(|h| h.carrier = true);
    let diff_up = diff(&plan, &observed, &config());
    assert_eq!(steps_of(&diff_up, "a1"), [Step::MarkLink { down: false }]);
}
