//! The task that runs one tunnel: it owns the peers and the socket, and waits on four things at
//! once: the TUN device, the UDP socket, a timer tick, and control messages from [`super::Tunnels`].
//!
//! One task per tunnel, owning everything it touches, needs no locks: boringtun's `Tunn` wants
//! `&mut self` for every packet, and here there is only ever one owner. Tunnels of different
//! networks run in parallel on the runtime's threads. A readiness wake-up drains up to [`BATCH`]
//! packets, encrypting or decrypting each into the outbox, then sends the whole batch.

use std::{io, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    device::Device,
    outbox::{Outbox, Target},
    router::{MAX_DATAGRAM, MAX_PACKET, Router},
    socket::TunnelSocket,
    spec::PeerSpec,
    status::{DropReason, TunnelStatus},
};

/// How often the WireGuard timers run: boringtun's `update_timers` asks to be called every
/// 250 ms; its timers (handshake retry after 5 s, keepalive after 10 s) need no finer grain.
pub(super) const TIMER_TICK: Duration = Duration::from_millis(250);

/// Packets taken from one source per wake-up before the batch is sent. Bounds the outbox (64
/// full-size packets) and lets the other direction, the timers and control messages in between
/// under a flood.
const BATCH: usize = 64;

/// What [`super::Tunnels`] asks of a running tunnel; each answers on `done` once applied.
pub(super) enum Control {
    SetPeers {
        peers: Vec<PeerSpec>,
        done: oneshot::Sender<()>,
    },
    Rebind {
        socket: TunnelSocket,
        done: oneshot::Sender<()>,
    },
}

pub(super) struct Engine {
    pub network: String,
    pub ifname: String,
    pub device: Arc<Device>,
    pub socket: TunnelSocket,
    pub router: Router,
    pub out: Outbox,
    pub status: watch::Sender<TunnelStatus>,
}

impl Engine {
    /// Runs until the control channel closes, or the TUN device fails (it was deleted under the
    /// tunnel): then the task ends and [`super::Tunnels::ensure`] starts the tunnel again.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let mut tun_buf = vec![0u8; MAX_PACKET].into_boxed_slice();
        let mut udp_buf = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.flush().await;
        self.publish();
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None => break,
                    Some(Control::SetPeers { peers, done }) => {
                        self.router.set_peers(&peers, &mut self.out);
                        self.flush().await;
                        self.publish();
                        let _ = done.send(());
                    }
                    Some(Control::Rebind { socket, done }) => {
                        self.socket = socket;
                        self.publish();
                        let _ = done.send(());
                    }
                },
                _ = tick.tick() => {
                    self.router.tick(&mut self.out);
                    self.flush().await;
                    self.publish();
                }
                ready = self.device.tun.readable() => {
                    if let Err(e) = ready.and_then(|()| self.read_tun(&mut tun_buf)) {
                        tracing::error!(network = %self.network, ifname = %self.ifname, "TUN device failed, tunnel stops: {e}");
                        break;
                    }
                    self.flush().await;
                }
                ready = self.socket.socket.readable() => {
                    if ready.is_ok() {
                        self.read_network(&mut udp_buf);
                        self.flush().await;
                    }
                }
            }
        }
    }

    fn read_tun(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mtu = self.device.mtu();
        for _ in 0..BATCH {
            match self.device.tun.try_recv(buf) {
                Ok(n) if n > usize::from(mtu) => self.router.too_big(&buf[..n], mtu, &mut self.out),
                Ok(n) => self.router.outbound(&buf[..n], &mut self.out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read_network(&mut self, buf: &mut [u8]) {
        for _ in 0..BATCH {
            match self.socket.socket.try_recv_from(buf) {
                Ok((n, source)) => self.router.inbound(source, &buf[..n], &mut self.out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error reported on the socket, or an interrupted call: the next read
                // goes on with the next datagram.
                Err(e) => tracing::debug!(network = %self.network, "UDP receive: {e}"),
            }
        }
    }

    /// Sends what the last batch produced.
    async fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let mut failed = 0;
        for (target, bytes) in self.out.iter() {
            let sent = match target {
                Target::Network(peer) => self
                    .socket
                    .socket
                    .send_to(bytes, self.socket.target(peer))
                    .await
                    .map(drop),
                Target::Tun => self.device.tun.send(bytes).await.map(drop),
            };
            if let Err(e) = sent {
                tracing::debug!(network = %self.network, "send to {target:?}: {e}");
                failed += 1;
            }
        }
        for _ in 0..failed {
            self.router.count(DropReason::SendFailed);
        }
        self.out.clear();
    }

    fn publish(&self) {
        self.status.send_replace(TunnelStatus {
            network: self.network.clone(),
            ifname: self.ifname.clone(),
            ifindex: self.device.ifindex,
            listen_port: self.socket.port(),
            peers: self.router.peer_status(),
            drops: self.router.drops(),
        });
    }
}
