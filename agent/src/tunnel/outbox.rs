//! What the packet path produced and the task must still send: datagrams to peers and packets for
//! the TUN device, in one byte buffer that is reused from batch to batch.
//!
//! boringtun writes its output into a slice it is handed; the slice is the free end of the outbox,
//! so a packet is encrypted or decrypted straight into the place it is sent from. After warming
//! up, the packet path allocates nothing.

use std::net::SocketAddr;

/// Where an output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A datagram to this underlay address.
    Network(SocketAddr),
    /// A decrypted packet for the TUN device.
    Tun,
}

#[derive(Clone, Copy, Debug)]
struct Output {
    target: Target,
    start: usize,
    end: usize,
}

/// The outputs of one batch.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    bytes: Vec<u8>,
    /// Where committed outputs end; `bytes` past it is scratch space handed out by `reserve`.
    end: usize,
    outputs: Vec<Output>,
}

impl Outbox {
    /// Scratch space of `size` bytes after the committed outputs.
    pub fn reserve(&mut self, size: usize) -> &mut [u8] {
        self.bytes.resize(self.end + size, 0);
        &mut self.bytes[self.end..]
    }

    /// Keeps `len` bytes at `offset` of the space last reserved as an output to `target`.
    pub fn commit(&mut self, target: Target, offset: usize, len: usize) {
        let start = self.end + offset;
        let end = (start + len).min(self.bytes.len());
        self.outputs.push(Output { target, start, end });
        self.end = end;
    }

    /// `len` bytes at `offset` of the space last reserved.
    pub fn scratch(&self, offset: usize, len: usize) -> &[u8] {
        let start = (self.end + offset).min(self.bytes.len());
        &self.bytes[start..(start + len).min(self.bytes.len())]
    }

    /// Copies `bytes` in as an output to `target`.
    pub fn push(&mut self, target: Target, bytes: &[u8]) {
        self.reserve(bytes.len()).copy_from_slice(bytes);
        self.commit(target, 0, bytes.len());
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// The outputs, in the order they were committed.
    pub fn iter(&self) -> impl Iterator<Item = (Target, &[u8])> {
        self.outputs
            .iter()
            .map(|o| (o.target, &self.bytes[o.start..o.end]))
    }

    /// Forgets the outputs, keeping the memory for the next batch.
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.end = 0;
    }
}

/// Where `part` (a slice boringtun returned) lies in the space that started at `base`.
pub(super) fn span(base: *const u8, part: &[u8]) -> (usize, usize) {
    (part.as_ptr() as usize - base as usize, part.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_back_in_order_and_scratch_space_is_not_kept() {
        let mut out = Outbox::default();
        let to: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        let space = out.reserve(100);
        space[..3].copy_from_slice(b"abc");
        let base = space.as_ptr();
        let (offset, len) = span(base, &space[1..3]);
        out.commit(Target::Network(to), offset, len);
        out.push(Target::Tun, b"xyz");
        out.reserve(1000);
        let seen: Vec<_> = out.iter().map(|(t, b)| (t, b.to_vec())).collect();
        assert_eq!(
            seen,
            vec![
                (Target::Network(to), b"bc".to_vec()),
                (Target::Tun, b"xyz".to_vec())
            ]
        );
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.iter().count(), 0);
    }
}
