//! TC ingress on each network's tunnel device: packets decrypted from other nodes, delivered
//! only to local containers of the tunnel's own network.

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT},
    helpers::{bpf_redirect_peer, bpf_skb_change_head},
    macros::classifier,
    programs::TcContext,
};
use gridnet_common::{
    GATEWAY_MAC,
    packet::ETH_LEN,
    tunnel::{TunnelAction, from_tunnel},
    verdict::{DropReason, Program, Verdict},
};

use crate::{
    maps::{Maps, count},
    skb::Skb,
};

#[classifier]
pub fn tc_from_tunnel(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer the kernel passed in; `ifindex` is readable in TC.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let len = ctx.len();
    let decision = from_tunnel(&Skb(&ctx), ifindex, len as usize, &Maps);
    let (verdict, reason, code) = match decision.action {
        TunnelAction::Deliver {
            ifindex: peer,
            dst_mac,
            ether_type,
        } => deliver(&ctx, peer, dst_mac, ether_type),
        TunnelAction::Drop(reason) => (Verdict::Drop, reason, TC_ACT_SHOT),
    };
    count(
        Program::TcFromTunnel,
        verdict,
        reason,
        decision.network_id,
        len,
    );
    code
}

/// Puts an Ethernet header in front of the packet (a tunnel device has none) and hands the
/// frame to the container behind host veth `peer`.
#[inline(always)]
fn deliver(
    ctx: &TcContext,
    peer: u32,
    dst_mac: [u8; 6],
    ether_type: u16,
) -> (Verdict, DropReason, i32) {
    // SAFETY: a helper call on the context's own socket buffer.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_LEN as u32, 0) } != 0 {
        return (Verdict::Drop, DropReason::Malformed, TC_ACT_SHOT);
    }
    let [a, b, c, d, e, f] = dst_mac;
    let [g, h, i, j, k, l] = GATEWAY_MAC;
    let [m, n] = ether_type.to_be_bytes();
    if ctx
        .store(0, &[a, b, c, d, e, f, g, h, i, j, k, l, m, n], 0)
        .is_err()
    {
        return (Verdict::Drop, DropReason::Malformed, TC_ACT_SHOT);
    }
    // SAFETY: a plain helper call; `peer` is an ifindex from our own map.
    let code = unsafe { bpf_redirect_peer(peer, 0) } as i32;
    if code == TC_ACT_REDIRECT {
        (Verdict::Forward, DropReason::None, code)
    } else {
        (Verdict::Drop, DropReason::RedirectFailed, TC_ACT_SHOT)
    }
}
