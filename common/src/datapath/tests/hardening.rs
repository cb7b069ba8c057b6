//! Frames a container must not get through, or get answered, by bending the rules: VLAN tags,
//! lengths that disagree, IPv4-mapped addresses, down endpoints, and reasons that must be right.

use super::*;

#[test]
fn vlan_tagged_frames_are_dropped_and_counted_with_their_tag() {
    let ipv4 = ipv4_frame(A1_MAC, A1_V4, A2_V4);
    let request = arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, A2_V4);
    for frame in [&ipv4, &request] {
        // The kernel lifted the tag (any VID, 0 included): the bytes look untagged.
        let ingress = Ingress {
            vlan_tag_stripped: true,
            ..untagged(frame, A1_IF)
        };
        assert_eq!(
            from_container(&frame[..], &ingress, &maps()),
            Decision {
                network_id: A_NET,
                action: Action::Drop(DropReason::VlanTagged)
            }
        );
        assert_eq!(ingress.wire_len(), frame.len() as u32 + 4);
        assert_eq!(untagged(frame, A1_IF).wire_len(), frame.len() as u32);
    }
    // The inner tag of a QinQ pair stays in the frame.
    for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
        let mut inner = ipv4.clone();
        inner.splice(12..12, tpid.to_be_bytes().into_iter().chain([0, 5]));
        assert_eq!(dropped(&inner, A1_IF), DropReason::VlanTagged);
    }
}
