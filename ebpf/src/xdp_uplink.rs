//! XDP on each uplink: drop unsolicited inbound traffic as early as possible.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock, bpf_sock_tuple, xdp_action, xdp_md},
    helpers::{bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    macros::xdp,
    programs::XdpContext,
};
use gridnet_common::{
    packet::{Frame, IPPROTO_TCP, Wire},
    uplink::{Guard, SocketState, SocketTable, SocketTuple, from_uplink},
};

use crate::maps::{Maps, count_uplink};

/// The frame, read in place (direct packet access, no helper call): every read is checked
/// against the end of the frame first, which is also what lets the verifier accept it. Headers
/// sit at offsets that depend on the packet (IPv4 options, IPv6 hop-by-hop); the guard's logic
/// keeps each offset bounded (a 4-bit header length, an 8-bit extension length), which the
/// verifier needs for a variable offset into the packet.
struct Packet {
    start: usize,
    end: usize,
}

impl Frame for Packet {
    #[inline(always)]
    fn load<T: Wire>(&self, offset: usize) -> Option<T> {
        let at = self.start + offset;
        let mut limit = at + core::mem::size_of::<T>();
        if core::mem::size_of::<T>() == 1 {
            // Made opaque to the compiler, which would otherwise test a one-byte read as
            // `end > at`, a form from which the verifier learns no range (it needs the end of
            // the read as a pointer of its own). Costs a stack round trip, so wider reads skip
            // it: their test keeps that pointer anyway.
            limit = core::hint::black_box(limit);
        }
        if limit > self.end {
            return None;
        }
        // SAFETY: `at..at + size_of::<T>()` lies inside the frame (checked above); `T: Wire` is
        // valid for any bit pattern and has alignment 1, so an unaligned read of it is sound.
        Some(unsafe { (at as *const T).read_unaligned() })
    }
}

/// The node's sockets, searched in the network namespace of the uplink the frame arrived on
/// (`BPF_F_CURRENT_NETNS`), as the stack will search them for it (5.2+ in XDP).
struct Sockets<'a>(&'a XdpContext);

impl SocketTable for Sockets<'_> {
    #[inline(always)]
    fn lookup(&self, protocol: u8, tuple: &SocketTuple) -> Option<SocketState> {
        // The helpers tell the address family by the tuple's size.
        let (tuple, size) = match tuple {
            SocketTuple::V4(t) => (core::ptr::from_ref(t).cast::<u8>(), size_of_val(t)),
            SocketTuple::V6(t) => (core::ptr::from_ref(t).cast::<u8>(), size_of_val(t)),
        };
        let tuple = tuple.cast_mut().cast::<bpf_sock_tuple>();
        if protocol == IPPROTO_TCP {
            tcp_socket(self.0.ctx, tuple, size as u32)
        } else {
            udp_socket(self.0.ctx, tuple, size as u32)
        }
    }
}

// One function per lookup helper, never inlined: the two helpers return different pointer
// types, and the verifier refuses one load instruction shared by both, which is what the
// compiler makes of a single `state` read after either.

/// The TCP socket of `tuple`: `skc` also finds request and time-wait sockets, so the late
/// segments of a connection being opened or closed still find it.
#[inline(never)]
fn tcp_socket(ctx: *mut xdp_md, tuple: *mut bpf_sock_tuple, size: u32) -> Option<SocketState> {
    // SAFETY: `tuple` points to `size` readable bytes laid out as the kernel's
    // `struct bpf_sock_tuple` half for that size (see `Ipv4Tuple`, `Ipv6Tuple`); the helper
    // only reads it.
    let socket = unsafe { bpf_skc_lookup_tcp(ctx.cast(), tuple, size, CURRENT_NETNS, 0) };
    state_of(socket)
}

/// The UDP socket of `tuple`: a connected one first, else one bound to its port.
#[inline(never)]
fn udp_socket(ctx: *mut xdp_md, tuple: *mut bpf_sock_tuple, size: u32) -> Option<SocketState> {
    // SAFETY: as in `tcp_socket`.
    let socket = unsafe { bpf_sk_lookup_udp(ctx.cast(), tuple, size, CURRENT_NETNS, 0) };
    state_of(socket)
}

/// The netns argument of the lookups: the namespace of the device the frame arrived on.
const CURRENT_NETNS: u64 = BPF_F_CURRENT_NETNS as u64;

/// The state of a socket a lookup returned, which it then releases.
#[inline(always)]
fn state_of(socket: *mut bpf_sock) -> Option<SocketState> {
    if socket.is_null() {
        return None;
    }
    // SAFETY: `socket` is a live reference the lookup took, checked non-null; `state` is
    // readable on every socket kind the lookups return. It is released on the only path out:
    // the verifier refuses a program that could leak it.
    let state = unsafe {
        let state = core::ptr::read_volatile(&raw const (*socket).state);
        bpf_sk_release(socket.cast());
        state
    };
    Some(SocketState(state))
}

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let guard = from_uplink(&packet, &Maps, &Sockets(&ctx));
    count_uplink(guard.stats_slot(), (packet.end - packet.start) as u32);
    match guard {
        Guard::Pass => xdp_action::XDP_PASS,
        Guard::Drop(_) => xdp_action::XDP_DROP,
    }
}
