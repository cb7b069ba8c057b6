//! Deleting one of the author's objects.

use super::GridState;
use crate::ledger::{model::ObjectKind, rules::Rejection};

impl GridState {
    /// Removes the author's object `name`; a network only when nothing uses it.
    pub(super) fn delete(
        &mut self,
        author: &str,
        object: ObjectKind,
        name: &str,
    ) -> Result<(), Rejection> {
        let key = format!("{author}/{name}");
        let (kind, removed) = match object {
            ObjectKind::Network => {
                if let Some((other, kind)) = self.network_user(&key) {
                    return Err(Rejection::NetworkInUse {
                        name: key.into(),
                        kind,
                        object: other.into(),
                    });
                }
                let removed = self.networks.remove(&key);
                for m in removed.iter().flat_map(|n| &n.members) {
                    self.ports.remove(&(m.node_id, m.wireguard_listen_port));
                }
                ("network", removed.is_some())
            }
            ObjectKind::Container => ("container", self.containers.remove(&key).is_some()),
            ObjectKind::Gateway => {
                let removed = self.gateways.remove(&key);
                for hostname in removed.iter().flat_map(|g| &g.hostnames) {
                    self.release_hostname(hostname, &key);
                }
                ("gateway", removed.is_some())
            }
            ObjectKind::Access => {
                let removed = self.access.remove(&key);
                if let Some(access) = &removed {
                    self.wg_keys.remove(&access.wireguard_public_key);
                }
                ("access", removed.is_some())
            }
        };
        if removed {
            Ok(())
        } else {
            Err(Rejection::UnknownObject {
                kind,
                name: name.into(),
            })
        }
    }
}
