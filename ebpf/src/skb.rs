//! The socket buffer as a [`Frame`], for the TC programs.

use aya_ebpf::programs::TcContext;
use gridnet_common::packet::{Frame, Wire};

/// Loads go through `bpf_skb_load_bytes`, which also reads non-linear data and needs no pointer
/// arithmetic for the verifier to follow.
pub struct Skb<'a>(pub &'a TcContext);

impl Frame for Skb<'_> {
    #[inline(always)]
    fn load<T: Wire>(&self, offset: usize) -> Option<T> {
        self.0.load::<T>(offset).ok()
    }
}
