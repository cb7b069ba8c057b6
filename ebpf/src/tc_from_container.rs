//! TC ingress on the host side of each container's veth: everything a container sends.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_skb_change_tail, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use gridnet_common::{
    GATEWAY_MAC,
    datapath::{Action, Ingress, arp_reply, from_container, neighbor_advert},
    packet::{Frame, Wire},
    verdict::{DropReason, Program, Verdict},
};

use crate::maps::{Maps, count};

/// The socket buffer as a [`Frame`]: loads go through `bpf_skb_load_bytes`, which also reads
/// non-linear data and needs no pointer arithmetic for the verifier to follow.
struct Skb<'a>(&'a TcContext);

impl Frame for Skb<'_> {
    #[inline(always)]
    fn load<T: Wire>(&self, offset: usize) -> Option<T> {
        self.0.load::<T>(offset).ok()
    }

    #[inline(always)]
    fn load_into<'b, T: Wire>(&self, offset: usize, buf: &'b mut MaybeUninit<T>) -> Option<&'b T> {
        // SAFETY: `skb` is the context pointer the kernel passed in; the helper writes at most
        // `size_of::<T>()` bytes, the size of `buf`.
        let read = unsafe {
            bpf_skb_load_bytes(
                self.0.skb.skb.cast(),
                offset as u32,
                buf.as_mut_ptr().cast(),
                size_of::<T>() as u32,
            )
        };
        // SAFETY: on success the helper wrote all of `buf`, and any bytes are a valid `T: Wire`.
        (read == 0).then(|| unsafe { buf.assume_init_ref() })
    }
}

#[classifier]
pub fn tc_from_container(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer the kernel passed in; `ifindex` and `vlan_present`
    // are readable in TC (the verifier rewrites the loads to the socket buffer's fields).
    let (ifindex, vlan_present) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).vlan_present) };
    let ingress = Ingress {
        ifindex,
        len: ctx.len(),
        vlan_tag_stripped: vlan_present != 0,
    };
    let decision = from_container(&Skb(&ctx), &ingress, &Maps);
    let (verdict, reason, code) = act(&ctx, ifindex, decision.action);
    // The frame as received: a reply has changed its length by now.
    count(
        Program::TcFromContainer,
        verdict,
        reason,
        decision.network_id,
        ingress.wire_len(),
    );
    code
}

/// Performs an action; returns what to count and the TC return code.
#[inline(always)]
fn act(ctx: &TcContext, ifindex: u32, action: Action) -> (Verdict, DropReason, i32) {
    match action {
        Action::ArpReply { mac, ip, asked } => reply(ctx, ifindex, &arp_reply(mac, ip, asked)),
        Action::NdReply { mac, target, dst } => {
            reply(ctx, ifindex, &neighbor_advert(mac, target, dst))
        }
        Action::Deliver {
            ifindex: peer,
            dst_mac,
        } => {
            let [a, b, c, d, e, f] = dst_mac;
            let [g, h, i, j, k, l] = GATEWAY_MAC;
            if ctx
                .store(0, &[a, b, c, d, e, f, g, h, i, j, k, l], 0)
                .is_err()
            {
                return drop(DropReason::Malformed);
            }
            // SAFETY: a plain helper call; `peer` is an ifindex from our own map.
            let code = unsafe { bpf_redirect_peer(peer, 0) } as i32;
            if code == TC_ACT_REDIRECT {
                (Verdict::Forward, DropReason::None, code)
            } else {
                drop(DropReason::RedirectFailed)
            }
        }
        Action::Tunnel { ifindex: tunnel } => {
            // To the tunnel device's egress: the kernel takes the Ethernet header off for a
            // layer-3 device, and the agent reads the IP packet from it.
            // SAFETY: a plain helper call; `tunnel` is an ifindex from our own map.
            let code = unsafe { bpf_redirect(tunnel, 0) } as i32;
            if code == TC_ACT_REDIRECT {
                (Verdict::Tunnel, DropReason::None, code)
            } else {
                drop(DropReason::RedirectFailed)
            }
        }
        Action::Drop(reason) => drop(reason),
    }
}

/// Overwrites the frame with `reply`, cuts it to the reply's length (whatever followed the
/// request must not be echoed back) and sends it back out to the container.
#[inline(always)]
fn reply<T>(ctx: &TcContext, ifindex: u32, reply: &T) -> (Verdict, DropReason, i32) {
    if ctx.store(0, reply, 0).is_err() {
        return drop(DropReason::Malformed);
    }
    // SAFETY: a plain helper call on the context pointer the kernel passed in; the loads and
    // stores that follow go through helpers, so no packet pointer outlives the resize.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, size_of::<T>() as u32, 0) } != 0 {
        return drop(DropReason::Malformed);
    }
    // SAFETY: a plain helper call; flags 0 means the egress of `ifindex`, toward the container.
    let code = unsafe { bpf_redirect(ifindex, 0) } as i32;
    (Verdict::Reply, DropReason::None, code)
}

#[inline(always)]
fn drop(reason: DropReason) -> (Verdict, DropReason, i32) {
    (Verdict::Drop, reason, TC_ACT_SHOT)
}
