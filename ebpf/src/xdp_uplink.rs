//! XDP on each uplink: drop unsolicited inbound traffic as early as possible.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_load_bytes, macros::xdp, programs::XdpContext,
};
use gridnet_common::{
    packet::{Frame, Wire},
    uplink::{Guard, from_uplink},
    verdict::{DropReason, Program, Verdict},
};

use crate::maps::{Maps, count};

/// The frame, read with `bpf_xdp_load_bytes` (5.18+): headers sit at offsets that depend on
/// the packet (IPv4 options, IPv6 hop-by-hop), which direct packet access cannot prove safe to
/// the verifier without contortions; the helper checks bounds itself.
struct Packet<'a>(&'a XdpContext);

impl Frame for Packet<'_> {
    #[inline(always)]
    fn load<T: Wire>(&self, offset: usize) -> Option<T> {
        let mut value = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes at most `size_of::<T>()` bytes, into `value`, which has
        // room for exactly that many.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.0.ctx,
                offset as u32,
                value.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
            )
        };
        // SAFETY: a successful call wrote all `size_of::<T>()` bytes, and `T: Wire` is valid
        // for any bit pattern.
        (rc == 0).then(|| unsafe { value.assume_init() })
    }
}

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u32;
    match from_uplink(&Packet(&ctx), &Maps) {
        Guard::Pass => {
            count(Program::XdpUplink, Verdict::Pass, DropReason::None, 0, len);
            xdp_action::XDP_PASS
        }
        Guard::Drop(reason) => {
            count(Program::XdpUplink, Verdict::Drop, reason, 0, len);
            xdp_action::XDP_DROP
        }
    }
}
