//! gridnet's datapath programs. Each attach point is a thin entry; the packet logic lives in
//! `gridnet_common::datapath`, where it is unit-tested on the host.
#![no_std]
#![no_main]

mod maps;
mod skb;
mod tc_from_container;
mod tc_from_tunnel;
mod xdp_uplink;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves no path reaches here; there is nothing to unwind to in the kernel.
    loop {}
}
