//! Checks a plan before anything is changed, so a bad plan changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::change::Object;
use crate::plan::{ContainerPlan, NetworkPlan, NodePlan};

/// Why a plan cannot be realized.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("network `{network}` is listed twice")]
    DuplicateNetwork { network: String },
    #[error("container `{container}` is listed twice")]
    DuplicateContainer { container: String },
    #[error("container name `{container}` is invalid: use 1-48 letters, digits, `-`, `_`, `.`")]
    InvalidContainerName { container: String },
    #[error("container `{container}` names network `{network}`, which this node does not have")]
    UnknownNetwork { container: String, network: String },
    #[error("container `{container}`: {address} is outside its network's subnet {subnet}")]
    OutsideSubnet {
        container: String,
        address: IpAddr,
        subnet: String,
    },
    #[error("container `{container}`: {address} is the gateway address of its subnet")]
    GatewayAddress { container: String, address: IpAddr },
    #[error("containers `{first}` and `{second}` both use {address} in network `{network}`")]
    DuplicateAddress {
        first: String,
        second: String,
        address: IpAddr,
        network: String,
    },
    #[error("network `{network}`: subnet {subnet} is not inside its range {range}")]
    SubnetOutsideRange {
        network: String,
        subnet: String,
        range: String,
    },
    #[error("container `{container}`: MAC {mac} is not a unicast address")]
    MulticastMac { container: String, mac: String },
}

/// Longest container name: the namespace name adds a prefix and must stay readable.
pub const MAX_CONTAINER_NAME: usize = 48;

/// Checks every rule the kernel side relies on; the first problem refuses the whole plan
/// (`gridnet apply`: a hand-written plan is fixed by its author).
pub fn validate(plan: &NodePlan) -> Result<(), PlanError> {
    let problems = problems(plan);
    match problems
        .networks
        .into_iter()
        .chain(problems.containers)
        .next()
    {
        Some((_, problem)) => Err(problem),
        None => Ok(()),
    }
}

/// The part of `plan` that passes the rules, and each refused object with its reason. The
/// agent realizes the first and reports the second: one bad object never blocks the others.
pub fn usable(plan: &NodePlan) -> (NodePlan, Vec<(Object, PlanError)>) {
    let problems = problems(plan);
    let refused_networks: BTreeSet<usize> = problems.networks.iter().map(|(i, _)| *i).collect();
    let refused_containers: BTreeSet<usize> = problems.containers.iter().map(|(i, _)| *i).collect();
    let networks: Vec<NetworkPlan> = plan
        .networks
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused_networks.contains(i))
        .map(|(_, n)| n.clone())
        .collect();
    let containers = plan
        .containers
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            !refused_containers.contains(i) && networks.iter().any(|n| n.name == c.network)
        })
        .map(|(_, c)| c.clone())
        .collect();
    let refused = problems
        .networks
        .into_iter()
        .map(|(i, p)| (Object::Network(plan.networks[i].name.clone()), p))
        .chain(
            problems
                .containers
                .into_iter()
                .map(|(i, p)| (Object::Container(plan.containers[i].name.clone()), p)),
        )
        .collect();
    let usable = NodePlan {
        networks,
        containers,
        gateways: plan.gateways.clone(),
    };
    (usable, refused)
}

/// Every rule broken, by the index of the object refused for it: of two objects that clash,
/// the second.
struct Problems {
    networks: Vec<(usize, PlanError)>,
    containers: Vec<(usize, PlanError)>,
}

fn problems(plan: &NodePlan) -> Problems {
    let mut out = Problems {
        networks: Vec::new(),
        containers: Vec::new(),
    };
    let mut networks = BTreeMap::new();
    for (index, network) in plan.networks.iter().enumerate() {
        if networks.contains_key(network.name.as_str()) {
            out.networks.push((
                index,
                PlanError::DuplicateNetwork {
                    network: network.name.clone(),
                },
            ));
            continue;
        }
        if !network.ip_range.contains(&network.subnet)
            || !network.ipv6_range.contains(&network.subnet_v6)
        {
            let (subnet, range) = if network.ip_range.contains(&network.subnet) {
                (
                    network.subnet_v6.to_string(),
                    network.ipv6_range.to_string(),
                )
            } else {
                (network.subnet.to_string(), network.ip_range.to_string())
            };
            out.networks.push((
                index,
                PlanError::SubnetOutsideRange {
                    network: network.name.clone(),
                    subnet,
                    range,
                },
            ));
            continue;
        }
        networks.insert(network.name.as_str(), network);
    }
    let mut names = BTreeSet::new();
    let mut addresses: BTreeMap<(&str, IpAddr), &str> = BTreeMap::new();
    for (index, container) in plan.containers.iter().enumerate() {
        let checked = check_container(container, &networks, &mut names, &mut addresses);
        if let Err(problem) = checked {
            out.containers.push((index, problem));
        }
    }
    out
}

fn check_container<'p>(
    container: &'p ContainerPlan,
    networks: &BTreeMap<&str, &'p NetworkPlan>,
    names: &mut BTreeSet<&'p str>,
    addresses: &mut BTreeMap<(&'p str, IpAddr), &'p str>,
) -> Result<(), PlanError> {
    let name = container.name.as_str();
    if !names.insert(name) {
        return Err(PlanError::DuplicateContainer {
            container: name.to_owned(),
        });
    }
    if !crate::netlink::is_plain_name(name, MAX_CONTAINER_NAME) {
        return Err(PlanError::InvalidContainerName {
            container: name.to_owned(),
        });
    }
    let Some(network) = networks.get(container.network.as_str()) else {
        return Err(PlanError::UnknownNetwork {
            container: name.to_owned(),
            network: container.network.clone(),
        });
    };
    if container.mac.0[0] & 1 != 0 {
        return Err(PlanError::MulticastMac {
            container: name.to_owned(),
            mac: container.mac.to_string(),
        });
    }
    let checks = [
        (
            IpAddr::V4(container.ipv4),
            network.subnet.contains(&container.ipv4),
            network.subnet.to_string(),
            IpAddr::V4(network.gateway_v4()),
        ),
        (
            IpAddr::V6(container.ipv6),
            network.subnet_v6.contains(&container.ipv6),
            network.subnet_v6.to_string(),
            IpAddr::V6(network.gateway_v6()),
        ),
    ];
    for (address, inside, subnet, gateway) in &checks {
        if !inside {
            return Err(PlanError::OutsideSubnet {
                container: name.to_owned(),
                address: *address,
                subnet: subnet.clone(),
            });
        }
        if address == gateway {
            return Err(PlanError::GatewayAddress {
                container: name.to_owned(),
                address: *address,
            });
        }
        if let Some(first) = addresses.get(&(network.name.as_str(), *address)) {
            return Err(PlanError::DuplicateAddress {
                first: (*first).to_owned(),
                second: name.to_owned(),
                address: *address,
                network: network.name.clone(),
            });
        }
    }
    // Only an accepted container holds its addresses.
    for (address, ..) in checks {
        addresses.insert((network.name.as_str(), address), name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ContainerPlan, Mac, NetworkPlan};

    fn network(name: &str) -> NetworkPlan {
        let v4 = |text: &str| text.parse().expect("literal prefix");
        let v6 = |text: &str| text.parse().expect("literal prefix");
        NetworkPlan::local(
            name,
            v4("10.1.0.0/16"),
            v6("fd00:1::/48"),
            v4("10.1.1.0/24"),
            v6("fd00:1:0:1::/64"),
        )
    }

    fn container(name: &str, network: &str, last: u8) -> ContainerPlan {
        let ipv6 = format!("fd00:1:0:1::{last:x}")
            .parse()
            .expect("literal address");
        ContainerPlan::new(name, network, [10, 1, 1, last].into(), ipv6)
    }

    fn plan(containers: Vec<ContainerPlan>) -> NodePlan {
        NodePlan {
            networks: vec![network("a"), network("b")],
            containers,
            gateways: Vec::new(),
        }
    }

    #[test]
    fn the_plan_of_a_valid_ledger_is_realizable() {
        let grid = crate::ledger::fixture::Grid::new();
        for node in [1, 2] {
            let plan = crate::plan::from_ledger::plan_node(grid.chain.state(), node);
            assert_eq!(validate(&plan), Ok(()), "node {node}");
        }
    }

    #[test]
    fn only_the_objects_at_fault_are_left_out() {
        let mut bad = plan(vec![
            container("a1", "a", 2),
            container("a2", "a", 2),
            container("a3", "zzz", 3),
            container("b1", "b", 2),
        ]);
        bad.networks.push(NetworkPlan {
            subnet: "10.2.1.0/24".parse().expect("net"),
            ..network("c")
        });
        bad.containers.push(container("c1", "c", 4));
        let (usable, refused) = usable(&bad);
        let names: Vec<&str> = usable.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a1", "b1"]);
        assert_eq!(usable.networks.len(), 2);
        let objects: Vec<Object> = refused.into_iter().map(|(o, _)| o).collect();
        assert_eq!(
            objects,
            [
                Object::Network("c".into()),
                Object::Container("a2".into()),
                Object::Container("a3".into()),
                Object::Container("c1".into()),
            ]
        );
    }

    #[test]
    fn overlapping_networks_with_the_same_addresses_are_fine() {
        let p = plan(vec![
            container("a1", "a", 2),
            container("a2", "a", 3),
            container("b1", "b", 3),
        ]);
        assert_eq!(validate(&p), Ok(()));
    }

    /// A bad plan and a check of the error it must get.
    type Case = (NodePlan, fn(&PlanError) -> bool);

    #[test]
    fn bad_plans_are_refused_with_the_reason() {
        let cases: Vec<Case> = vec![
            (
                plan(vec![container("a1", "a", 2), container("a1", "a", 3)]),
                |e| matches!(e, PlanError::DuplicateContainer { .. }),
            ),
            (
                plan(vec![container("a1", "a", 2), container("a2", "a", 2)]),
                |e| matches!(e, PlanError::DuplicateAddress { .. }),
            ),
            (plan(vec![container("a1", "zzz", 2)]), |e| {
                matches!(e, PlanError::UnknownNetwork { .. })
            }),
            (plan(vec![container("a1", "a", 1)]), |e| {
                matches!(e, PlanError::GatewayAddress { .. })
            }),
            (plan(vec![container("../x", "a", 2)]), |e| {
                matches!(e, PlanError::InvalidContainerName { .. })
            }),
            (plan(vec![container("", "a", 2)]), |e| {
                matches!(e, PlanError::InvalidContainerName { .. })
            }),
            (
                plan(vec![ContainerPlan {
                    ipv4: [10, 1, 2, 5].into(),
                    ..container("a1", "a", 2)
                }]),
                |e| matches!(e, PlanError::OutsideSubnet { .. }),
            ),
            (
                plan(vec![ContainerPlan {
                    mac: Mac([1, 0, 0, 0, 0, 1]),
                    ..container("a1", "a", 2)
                }]),
                |e| matches!(e, PlanError::MulticastMac { .. }),
            ),
            (
                NodePlan {
                    networks: vec![network("a"), network("a")],
                    containers: Vec::new(),
                    gateways: Vec::new(),
                },
                |e| matches!(e, PlanError::DuplicateNetwork { .. }),
            ),
            (
                NodePlan {
                    networks: vec![NetworkPlan {
                        subnet: "10.2.1.0/24".parse().expect("net"),
                        ..network("a")
                    }],
                    containers: Vec::new(),
                    gateways: Vec::new(),
                },
                |e| matches!(e, PlanError::SubnetOutsideRange { .. }),
            ),
        ];
        for (plan, expected) in cases {
            let err = validate(&plan).expect_err("a bad plan must be refused");
            assert!(expected(&err), "unexpected error: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
}
