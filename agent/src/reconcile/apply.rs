//! Applying typed changes through the subsystem handles, one object at a time.

use std::collections::BTreeSet;

use tracing::{debug, warn};

use super::{
    Failure, Outcome, ReconcileError, Reconciler,
    change::{Change, ContainerTarget, Step, TunnelStep},
    names,
};
use crate::{
    dataplane::TcProgram,
    netlink::{Link, Netlink, Netns, sysctl},
    tunnel::TunnelSpec,
};

impl Reconciler {
    /// Applies `changes` in order. After a change of an object fails, that object's later
    /// changes are skipped until the next pass; other objects go ahead.
    pub(super) async fn apply(&mut self, changes: Vec<Change>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut failing = BTreeSet::new();
        for mut change in changes {
            let object = change.object();
            if failing.contains(&object) {
                continue;
            }
            match self.apply_one(&mut change).await {
                Ok(()) => {
                    debug!(change = %change, "applied");
                    outcome.applied.push(change);
                }
                Err(error) => {
                    let error = format!("{change}: {error}");
                    warn!(object = %object, error = %error, "cannot realize; retrying at the next pass");
                    failing.insert(object.clone());
                    outcome.failed.push(Failure { object, error });
                }
            }
        }
        outcome
    }

    /// Applies one change, filling in what only applying tells (how XDP runs).
    async fn apply_one(&mut self, change: &mut Change) -> Result<(), String> {
        let dataplane = &mut self.dataplane;
        let result: Result<(), ReconcileError> = match change {
            Change::AssignNetworkId { network, id } => {
                dataplane.set_network(*id, network).map_err(Into::into)
            }
            Change::ForgetNetworkId { id, .. } => dataplane.remove_network(*id).map_err(Into::into),
            Change::Container { target, steps } => {
                return self.apply_container(target, steps).await;
            }
            Change::Tunnel {
                spec,
                network_id,
                steps,
            } => return self.apply_tunnel(spec, *network_id, steps).await,
            Change::RemoveTunnel { network } => match &mut self.tunnels {
                Some(tunnels) => tunnels.remove(network).await.map_err(Into::into),
                None => Ok(()),
            },
            Change::ForgetRoute {
                network_id, prefix, ..
            } => dataplane
                .remove_route(*network_id, *prefix)
                .map_err(Into::into),
            Change::ForgetTunnelDevice { ifindex } => {
                dataplane.forget_tunnel(*ifindex).map_err(Into::into)
            }
            Change::RemoveLink { index, .. } => {
                self.netlink.delete_link(*index).await.map_err(Into::into)
            }
            Change::UnpinLink { interface } => dataplane
                .unpin_tc_link(TcProgram::FromContainer, interface)
                .map_err(Into::into),
            Change::RemoveNamespace { name } => Netns::delete(name).map_err(Into::into),
            Change::ForgetInterface { ifindex } => {
                dataplane.forget_interface(*ifindex).map_err(Into::into)
            }
            Change::ForgetEndpoint {
                network_id,
                address,
                ..
            } => dataplane
                .forget_endpoint(*network_id, *address)
                .map_err(Into::into),
            Change::AttachGuard { uplink, mode } => dataplane
                .attach_guard(uplink)
                .map(|attached| *mode = attached)
                .map_err(Into::into),
            Change::OpenPort { protocol, port } => dataplane
                .open_uplink_port(*protocol, *port)
                .map_err(Into::into),
            Change::ClosePort { protocol, port } => dataplane
                .close_uplink_port(*protocol, *port)
                .map_err(Into::into),
            Change::EnforceGuard => dataplane.enforce_guard().map_err(Into::into),
        };
        result.map_err(|e| format!("{:#}", anyhow::Error::from(e)))
    }

    /// Applies a tunnel's steps; an error names the step that failed.
    async fn apply_tunnel(
        &mut self,
        spec: &TunnelSpec,
        network_id: u32,
        steps: &[TunnelStep],
    ) -> Result<(), String> {
        for step in steps {
            self.apply_tunnel_step(spec, network_id, step)
                .await
                .map_err(|e| format!("cannot {step}: {:#}", anyhow::Error::from(e)))?;
        }
        Ok(())
    }

    async fn apply_tunnel_step(
        &mut self,
        spec: &TunnelSpec,
        network_id: u32,
        step: &TunnelStep,
    ) -> Result<(), ReconcileError> {
        if let TunnelStep::Ensure = step {
            if let Some(tunnels) = &mut self.tunnels {
                tunnels.ensure(spec).await?;
            }
            return Ok(());
        }
        let device =
            self.netlink
                .link(&spec.ifname)
                .await?
                .ok_or_else(|| ReconcileError::LinkVanished {
                    name: spec.ifname.clone(),
                })?;
        match step {
            TunnelStep::Ensure => {}
            TunnelStep::Register => self.dataplane.set_tunnel(device.index, network_id)?,
            TunnelStep::Attach(found) => {
                self.dataplane
                    .attach_tc(TcProgram::FromTunnel, &spec.ifname, *found)?;
            }
            TunnelStep::Route(prefix) => {
                self.dataplane
                    .set_route(network_id, *prefix, device.index)?;
            }
        }
        Ok(())
    }

    /// Applies a container's steps; an error names the step that failed.
    async fn apply_container(
        &mut self,
        target: &ContainerTarget,
        steps: &[Step],
    ) -> Result<(), String> {
        let mut work = ContainerWork {
            target,
            inside: None,
            host: None,
        };
        for step in steps {
            self.apply_step(&mut work, step)
                .await
                .map_err(|e| format!("cannot {step}: {:#}", anyhow::Error::from(e)))?;
        }
        Ok(())
    }

    async fn apply_step(
        &mut self,
        work: &mut ContainerWork<'_>,
        step: &Step,
    ) -> Result<(), ReconcileError> {
        let target = work.target;
        match step {
            Step::CreateNamespace => {
                Netns::create(&target.netns)?;
            }
            Step::RepairNamespace => {
                Netns::repair(&target.netns)?;
            }
            Step::CreateLink { stale_host } => {
                if let Some(index) = stale_host {
                    self.netlink.delete_link(*index).await?;
                }
                let ns = Netns::open(&target.netns)?;
                let inside = work.inside().await?;
                // A container side left from an earlier veth whose host half is gone.
                if let Some(old) = inside.link(names::CONTAINER_IFNAME).await? {
                    inside.delete_link(old.index).await?;
                }
                self.netlink
                    .add_veth(
                        (&target.host_ifname, names::HOST_SIDE_MTU),
                        (names::CONTAINER_IFNAME, u32::from(self.config.mtu)),
                        target.identity.mac,
                        &ns,
                    )
                    .await?;
                work.host = None;
            }
            Step::LabelHost => {
                let host = work.host_link(&self.netlink).await?.index;
                self.netlink.set_alias(host, &target.name).await?;
            }
            Step::SilenceHost => {
                sysctl::disable_ipv6(&target.host_ifname).map_err(|source| {
                    ReconcileError::Sysctl {
                        interface: target.host_ifname.clone(),
                        source,
                    }
                })?;
            }
            Step::BringUp => {
                let host = work.host_link(&self.netlink).await?.index;
                self.netlink.set_up(host).await?;
                // Its carrier comes with its peer: look it up again when next asked.
                work.host = None;
                let inside = work.inside().await?;
                for name in [names::CONTAINER_IFNAME, "lo"] {
                    let link = inside
                        .link(name)
                        .await?
                        .ok_or_else(|| vanished(target, name))?;
                    if !link.up {
                        inside.set_up(link.index).await?;
                    }
                }
            }
            Step::SetMac => {
                let eth0 = work.eth0().await?;
                work.inside()
                    .await?
                    .set_mac(eth0, target.identity.mac)
                    .await?;
            }
            Step::AddAddress(net) => {
                let eth0 = work.eth0().await?;
                work.inside().await?.add_address(eth0, *net).await?;
            }
            Step::RemoveAddress(net) => {
                let eth0 = work.eth0().await?;
                work.inside().await?.delete_address(eth0, *net).await?;
            }
            Step::SetDefaultRoute(gateway) => {
                let eth0 = work.eth0().await?;
                work.inside()
                    .await?
                    .set_default_route(eth0, *gateway)
                    .await?;
            }
            Step::WriteIdentity => {
                let host = work.host_link(&self.netlink).await?;
                self.dataplane
                    .set_container(host.index, &target.identity, !host.carrier)?;
            }
            Step::OpenHostMtu => {
                let host = work.host_link(&self.netlink).await?.index;
                self.netlink.set_mtu(host, names::HOST_SIDE_MTU).await?;
            }
            Step::MarkLink { down } => {
                let host = work.host_link(&self.netlink).await?;
                self.dataplane
                    .set_container(host.index, &target.identity, *down)?;
            }
            Step::Attach(found) => {
                self.dataplane
                    .attach_tc(TcProgram::FromContainer, &target.host_ifname, *found)?;
            }
        }
        Ok(())
    }
}

/// One container's steps in progress: its namespace's netlink socket, opened when a step first
/// needs it and closed with the container, and its host interface once looked up.
struct ContainerWork<'a> {
    target: &'a ContainerTarget,
    inside: Option<Netlink>,
    host: Option<Link>,
}

impl ContainerWork<'_> {
    async fn inside(&mut self) -> Result<&Netlink, ReconcileError> {
        if self.inside.is_none() {
            let ns = Netns::open(&self.target.netns)?;
            self.inside = Some(Netlink::connect_in(&ns)?);
        }
        self.inside
            .as_ref()
            .ok_or_else(|| vanished(self.target, "netlink"))
    }

    async fn eth0(&mut self) -> Result<u32, ReconcileError> {
        let target = self.target;
        let eth0 = self
            .inside()
            .await?
            .link(names::CONTAINER_IFNAME)
            .await?
            .ok_or_else(|| vanished(target, names::CONTAINER_IFNAME))?;
        Ok(eth0.index)
    }

    async fn host_link(&mut self, node: &Netlink) -> Result<Link, ReconcileError> {
        if let Some(host) = &self.host {
            return Ok(host.clone());
        }
        let host = node.link(&self.target.host_ifname).await?.ok_or_else(|| {
            ReconcileError::LinkVanished {
                name: self.target.host_ifname.clone(),
            }
        })?;
        self.host = Some(host.clone());
        Ok(host)
    }
}

fn vanished(target: &ContainerTarget, name: &str) -> ReconcileError {
    ReconcileError::LinkVanished {
        name: format!("{}/{name}", target.netns),
    }
}
