//! Crafted frames from inside a container, on the running kernel: what `tc_from_container` must
//! never deliver or answer (VLAN tags, inconsistent headers, IPv4-mapped IPv6 addresses, a
//! destination whose interface is down, multicast neighbour targets), the reasons it counts them
//! under, and the exact shape of its replies.
//!
//! Frames are sent from a raw socket in a1 and watched for with a packet socket in a2 (or in a1,
//! for replies). A packet socket sees a frame before any IP validation of the receiving stack, so
//! "not seen" means the datapath did not hand it over. Every test first shows that a well-formed
//! frame of the same kind IS seen, so a silent capture cannot pass for a drop.

use std::{
    ffi::CStr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicU8, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use aya::maps::{HashMap, Map, MapData};
use gridnet_agent::plan::{ContainerPlan, NodePlan};
use gridnet_common::{
    GATEWAY_MAC,
    maps::{ENDPOINT_DOWN, Endpoint, EndpointKey, MAP_ENDPOINTS},
};
use gridnet_tests::{Node, RawSender, counter, run_in, test_container, test_network, within};

const A: &str = "alice/a";
const A1_V4: [u8; 4] = [10, 1, 1, 2];
const A2_V4: [u8; 4] = [10, 1, 1, 3];
const GATEWAY_V4: [u8; 4] = [10, 1, 1, 1];
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// How long a capture waits for frames that should (or should not) arrive: a veth hands a frame
/// over within microseconds, so this only has to cover scheduling.
const SETTLE: Duration = Duration::from_millis(400);

/// a1 (.2, ::2) and a2 (.3, ::3) in network A.
struct Lab {
    node: Node,
    a1: ContainerPlan,
    a2: ContainerPlan,
}

impl Lab {
    fn new() -> anyhow::Result<Self> {
        let node = Node::new()?;
        let (a1, a2) = (test_container("a1", A, 2), test_container("a2", A, 3));
        node.apply(&NodePlan {
            networks: vec![test_network(A)],
            containers: vec![a1.clone(), a2.clone()],
            gateways: Vec::new(),
        })?;
        Ok(Self { node, a1, a2 })
    }

    fn a1_mac(&self) -> [u8; 6] {
        self.a1.mac.0
    }

    fn a1_v6(&self) -> [u8; 16] {
        self.a1.ipv6.octets()
    }

    fn a2_v6(&self) -> [u8; 16] {
        self.a2.ipv6.octets()
    }

    /// Sends frames out of a1's `eth0`, into the datapath.
    fn send_from_a1(&self, frames: &[Vec<u8>]) -> anyhow::Result<()> {
        let frames = frames.to_vec();
        within(
            &self.node.container_ns("a1"),
            move || -> anyhow::Result<()> {
                let sender = RawSender::open(c"eth0")?;
                for frame in &frames {
                    sender
                        .send(frame)
                        .with_context(|| format!("send a {}-byte frame", frame.len()))?;
                }
                Ok(())
            },
        )?
    }

    /// A capture of the frames that arrive on `container`'s `eth0`.
    fn capture(&self, container: &str) -> anyhow::Result<Capture> {
        within(&self.node.container_ns(container), || {
            Capture::open(c"eth0")
        })?
    }

    /// The tc_from_container counter of network A for a verdict and reason: (packets, bytes).
    fn counted(&self, verdict: &str, reason: Option<&str>) -> anyhow::Result<(u64, u64)> {
        Ok(counter(&self.node.bpf_stats()?, A, verdict, reason))
    }

    fn dropped(&self, reason: &str) -> anyhow::Result<(u64, u64)> {
        self.counted("drop", Some(reason))
    }
}

/// An AF_PACKET socket that receives every frame arriving on one interface, closed on drop.
struct Capture {
    fd: OwnedFd,
}

/// `sll_pkttype` of a frame the capturing host sent itself.
const PACKET_OUTGOING: u8 = 4;

impl Capture {
    /// Opens the capture; call it inside the namespace that holds `interface`.
    fn open(interface: &CStr) -> anyhow::Result<Self> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls with checked results; the descriptor is owned from here.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name; `if_nametoindex` only reads it.
        let ifindex = unsafe { libc::if_nametoindex(interface.as_ptr()) };
        ensure!(ifindex != 0, "no interface {interface:?} here");
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: the address struct is valid for the length given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        ensure!(bound == 0, "bind: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: the option value is a valid timeval of the length given.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        ensure!(set == 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        Ok(Self { fd })
    }

    /// The frames that arrived (not those the host sent) within [`SETTLE`].
    fn arrived(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + SETTLE;
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: the buffer and the address struct are valid for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.kind() {
                    std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted => continue,
                    _ => return Err(err).context("recvfrom on the capture"),
                }
            }
            if from.sll_pkttype != PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
        Ok(frames)
    }

    /// Whether a frame carrying `marker` arrived.
    fn saw(&self, marker: &[u8]) -> anyhow::Result<bool> {
        Ok(self
            .arrived()?
            .iter()
            .any(|f| f.windows(marker.len()).any(|w| w == marker)))
    }
}

/// A payload no other frame carries.
fn marker() -> Vec<u8> {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let mut m = b"gn-hardening-".to_vec();
    m.extend(std::process::id().to_be_bytes());
    m.push(NEXT.fetch_add(1, Ordering::Relaxed));
    m
}

fn eth(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend(dst);
    f.extend(src);
    f.extend(ether_type.to_be_bytes());
    f
}

/// The frame with an 802.1Q (or 802.1ad) tag inserted after the MAC addresses.
fn tagged(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend(tpid.to_be_bytes());
    f.extend(vid.to_be_bytes());
    f.extend(&frame[12..]);
    f
}

fn ipv4_checksum(header: &[u8]) -> [u8; 2] {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (!(sum as u16)).to_be_bytes()
}

/// Ethernet (to the gateway MAC) + an IPv4 header with the given fields + `l4`.
fn ipv4_raw(
    src_mac: [u8; 6],
    ihl: u8,
    total_len: u16,
    protocol: u8,
    src: [u8; 4],
    dst: [u8; 4],
    l4: &[u8],
) -> Vec<u8> {
    ipv4_to(GATEWAY_MAC, src_mac, ihl, total_len, protocol, src, dst, l4)
}

#[expect(
    clippy::too_many_arguments,
    reason = "every header field a test varies"
)]
fn ipv4_to(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ihl: u8,
    total_len: u16,
    protocol: u8,
    src: [u8; 4],
    dst: [u8; 4],
    l4: &[u8],
) -> Vec<u8> {
    let mut header = vec![0x40 | ihl, 0];
    header.extend(total_len.to_be_bytes());
    header.extend([0, 0, 0x40, 0, 64, protocol, 0, 0]);
    header.extend(src);
    header.extend(dst);
    let sum = ipv4_checksum(&header);
    header[10..12].copy_from_slice(&sum);
    let mut f = eth(dst_mac, src_mac, ETH_P_IP);
    f.extend(header);
    f.extend(l4);
    f
}

/// A UDP header (ports 40000 -> 7000, checksum 0) and the payload.
fn udp(payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(40000u16.to_be_bytes());
    u.extend(7000u16.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// A consistent IPv4/UDP datagram carrying `payload`.
fn udp4(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let l4 = udp(payload);
    ipv4_raw(src_mac, 5, (20 + l4.len()) as u16, 17, src, dst, &l4)
}

/// Ethernet (to the gateway MAC) + an IPv6 header + `l4`.
fn ipv6_raw(
    src_mac: [u8; 6],
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
    l4: &[u8],
) -> Vec<u8> {
    let mut f = eth(GATEWAY_MAC, src_mac, ETH_P_IPV6);
    f.extend([0x60, 0, 0, 0]);
    f.extend(payload_len.to_be_bytes());
    f.extend([next_header, hop_limit]);
    f.extend(src);
    f.extend(dst);
    f.extend(l4);
    f
}

/// A consistent IPv6/UDP datagram carrying `payload` (checksum 0: only captures read it).
fn udp6(src_mac: [u8; 6], src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let l4 = udp(payload);
    ipv6_raw(src_mac, l4.len() as u16, 17, 64, src, dst, &l4)
}

fn arp(src_mac: [u8; 6], oper: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = eth([0xff; 6], src_mac, ETH_P_ARP);
    f.extend([0, 1, 0x08, 0, 6, 4]);
    f.extend(oper.to_be_bytes());
    f.extend(src_mac);
    f.extend(spa);
    f.extend([0; 6]);
    f.extend(tpa);
    f
}

/// A neighbour solicitation for `target` from `src`, as Linux sends it.
fn neighbor_solicit(src_mac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let mut dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    dst[13..].copy_from_slice(&target[13..]);
    let mut f = eth(
        [0x33, 0x33, 0xff, dst[13], dst[14], dst[15]],
        src_mac,
        ETH_P_IPV6,
    );
    f.extend([0x60, 0, 0, 0, 0, 32, 58, 255]);
    f.extend(src);
    f.extend(dst);
    // Type, code, checksum (the datapath does not check it; a reply is all that is looked at).
    f.extend([135, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(target);
    f.extend([1, 1]);
    f.extend(src_mac);
    f
}

fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    std::net::Ipv4Addr::from(v4).to_ipv6_mapped().octets()
}

#[test]
fn vlan_tagged_frames_are_dropped_and_counted_with_their_tag() -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let a2 = lab.capture("a2")?;
    let a1 = lab.capture("a1")?;
    let plain = marker();
    lab.send_from_a1(&[udp4(lab.a1_mac(), A1_V4, A2_V4, &plain)])?;
    ensure!(a2.saw(&plain)?, "an untagged datagram did not reach a2");

    let (vid5, vid0, qinq) = (marker(), marker(), marker());
    let frames = [
        tagged(&udp4(lab.a1_mac(), A1_V4, A2_V4, &vid5), ETH_P_8021Q, 5),
        // Priority-tagged: VID 0 is still a tag.
        tagged(&udp4(lab.a1_mac(), A1_V4, A2_V4, &vid0), ETH_P_8021Q, 0),
        tagged(
            &tagged(&udp4(lab.a1_mac(), A1_V4, A2_V4, &qinq), ETH_P_8021Q, 7),
            ETH_P_8021AD,
            9,
        ),
        tagged(&arp(lab.a1_mac(), 1, A1_V4, A2_V4), ETH_P_8021Q, 5),
    ];
    let before = lab.dropped("vlan_tagged")?;
    lab.send_from_a1(&frames)?;
    let at_a2 = a2.arrived()?;
    for (name, m) in [("VID 5", &vid5), ("VID 0", &vid0), ("QinQ", &qinq)] {
        ensure!(
            !at_a2
                .iter()
                .any(|f| f.windows(m.len()).any(|w| w == &m[..])),
            "a {name} tagged datagram reached a2"
        );
    }
    // (A packet socket shows a tagged frame without its tag.)
    let replies: Vec<Vec<u8>> = a1
        .arrived()?
        .into_iter()
        .filter(|f| f[6..12] == GATEWAY_MAC && f[12..14] == ETH_P_ARP.to_be_bytes())
        .collect();
    ensure!(
        replies.is_empty(),
        "a tagged ARP request was answered: {replies:?}"
    );
    let after = lab.dropped("vlan_tagged")?;
    assert_eq!(
        after.0 - before.0,
        frames.len() as u64,
        "vlan_tagged packets"
    );
    // Counted as sent, the tags the kernel lifted off included.
    let sent: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(after.1 - before.1, sent, "vlan_tagged bytes");
    Ok(())
}

#[test]
fn inconsistent_headers_are_dropped_as_malformed() -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let a2 = lab.capture("a2")?;
    let mac = lab.a1_mac();
    let good = marker();
    lab.send_from_a1(&[udp4(mac, A1_V4, A2_V4, &good)])?;
    ensure!(a2.saw(&good)?, "a consistent datagram did not reach a2");

    // Each frame carries its marker (in its payload, or as trailing bytes beyond the IP length,
    // which is what Ethernet padding looks like), so a delivery would show.
    let mut cases: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
    let m = marker();
    let l4 = udp(&m);
    cases.push((
        "IPv4 total length beyond the frame",
        ipv4_raw(mac, 5, (20 + l4.len() + 100) as u16, 17, A1_V4, A2_V4, &l4),
        m,
    ));
    let m = marker();
    let l4 = udp(&m);
    cases.push((
        "IPv4 total length shorter than its header",
        ipv4_raw(mac, 5, 16, 17, A1_V4, A2_V4, &l4),
        m,
    ));
    let m = marker();
    cases.push((
        "IPv4 header length beyond the frame",
        ipv4_raw(mac, 15, (20 + m.len()) as u16, 17, A1_V4, A2_V4, &m),
        m,
    ));
    let m = marker();
    let l4 = udp(&m);
    cases.push((
        "IPv6 payload length beyond the frame",
        ipv6_raw(
            mac,
            (l4.len() + 100) as u16,
            17,
            64,
            lab.a1_v6(),
            lab.a2_v6(),
            &l4,
        ),
        m,
    ));
    for (protocol, name) in [(17u8, "UDP"), (6, "TCP"), (1, "ICMP")] {
        let m = marker();
        // Four bytes of L4 header inside the IP length, then trailing bytes with the marker.
        let mut l4 = vec![0x9c, 0x40, 0x1b, 0x58];
        l4.extend(&m);
        cases.push((
            match name {
                "UDP" => "a 4-byte UDP header",
                "TCP" => "a 4-byte TCP header",
                _ => "a 4-byte ICMP header",
            },
            ipv4_raw(mac, 5, 24, protocol, A1_V4, A2_V4, &l4),
            m,
        ));
    }
    let m = marker();
    let mut l4 = vec![0x9c, 0x40, 0x1b, 0x58];
    l4.extend(&m);
    cases.push((
        "a 4-byte UDP header over IPv6",
        ipv6_raw(mac, 4, 17, 64, lab.a1_v6(), lab.a2_v6(), &l4),
        m,
    ));

    let before = lab.dropped("malformed")?;
    let forwarded = lab.counted("forward", None)?;
    let frames: Vec<Vec<u8>> = cases.iter().map(|(_, f, _)| f.clone()).collect();
    lab.send_from_a1(&frames)?;
    let at_a2 = a2.arrived()?;
    for (name, _, m) in &cases {
        ensure!(
            !at_a2
                .iter()
                .any(|f| f.windows(m.len()).any(|w| w == &m[..])),
            "{name}: delivered to a2"
        );
    }
    let after = lab.dropped("malformed")?;
    assert_eq!(after.0 - before.0, cases.len() as u64, "malformed packets");
    assert_eq!(
        lab.counted("forward", None)?,
        forwarded,
        "an inconsistent frame was counted as forwarded"
    );
    Ok(())
}

#[test]
fn ipv4_mapped_ipv6_addresses_never_reach_an_ipv4_container() -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let a2 = lab.capture("a2")?;
    let mac = lab.a1_mac();
    let good = marker();
    lab.send_from_a1(&[udp6(mac, lab.a1_v6(), lab.a2_v6(), &good)])?;
    ensure!(
        a2.saw(&good)?,
        "an IPv6 datagram to a2's IPv6 address was lost"
    );

    let (to_mapped, from_mapped) = (marker(), marker());
    let before = lab.dropped("mapped_address")?;
    lab.send_from_a1(&[
        udp6(mac, lab.a1_v6(), v4_mapped(A2_V4), &to_mapped),
        udp6(mac, v4_mapped(A1_V4), lab.a2_v6(), &from_mapped),
    ])?;
    let at_a2 = a2.arrived()?;
    for (name, m) in [("to", &to_mapped), ("from", &from_mapped)] {
        ensure!(
            !at_a2
                .iter()
                .any(|f| f.windows(m.len()).any(|w| w == &m[..])),
            "an IPv6 datagram {name} an IPv4-mapped address reached a2"
        );
    }
    let after = lab.dropped("mapped_address")?;
    assert_eq!(after.0 - before.0, 2, "mapped_address packets");
    Ok(())
}

/// Marks every endpoint of the container with `mac` down in the pinned endpoint map, as the
/// agent does when it finds the container's interface down.
fn mark_down(node: &Node, mac: [u8; 6]) -> anyhow::Result<usize> {
    let path = gridnet_agent::dataplane::pins::maps_dir(&node.pin_root).join(MAP_ENDPOINTS);
    let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
    let mut map: HashMap<MapData, EndpointKey, Endpoint> =
        HashMap::try_from(Map::HashMap(data)).context("the endpoint map's layout")?;
    let entries: Vec<(EndpointKey, Endpoint)> = map
        .iter()
        .collect::<Result<_, _>>()
        .context("read the endpoints")?;
    let mut marked = 0;
    for (key, mut endpoint) in entries {
        if endpoint.mac == mac {
            endpoint.flags |= ENDPOINT_DOWN;
            map.insert(key, endpoint, 0).context("write an endpoint")?;
            marked += 1;
        }
    }
    Ok(marked)
}

#[test]
fn packets_to_a_container_whose_interface_is_down_are_dropped_as_endpoint_down()
-> anyhow::Result<()> {
    let lab = Lab::new()?;
    let mac = lab.a1_mac();
    let before = lab.counted("forward", None)?;
    lab.send_from_a1(&[udp4(mac, A1_V4, A2_V4, &marker())])?;
    std::thread::sleep(SETTLE);
    // (a2 answers it with a port unreachable, forwarded too.)
    ensure!(
        lab.counted("forward", None)?.0 > before.0,
        "a datagram to a2 (up) was not forwarded"
    );

    let a2 = lab.node.container_ns("a2");
    let out = run_in(&a2, "ip", &["link", "set", "eth0", "down"])?;
    ensure!(
        out.status.success(),
        "ip link set eth0 down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mark_down(&lab.node, lab.a2.mac.0)?, 2, "a2's endpoints");

    let forwarded = lab.counted("forward", None)?;
    let down = lab.dropped("endpoint_down")?;
    lab.send_from_a1(&[
        udp4(mac, A1_V4, A2_V4, &marker()),
        udp6(mac, lab.a1_v6(), lab.a2_v6(), &marker()),
    ])?;
    std::thread::sleep(SETTLE);
    assert_eq!(
        lab.counted("forward", None)?,
        forwarded,
        "packets into a down interface were counted as forwarded"
    );
    assert_eq!(
        lab.dropped("endpoint_down")?.0 - down.0,
        2,
        "endpoint_down packets"
    );
    Ok(())
}

#[test]
fn forged_arp_senders_are_spoofed_ip_and_subnet_broadcasts_link_control() -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let mac = lab.a1_mac();
    let spoofed = lab.dropped("spoofed_ip")?;
    let cross = lab.dropped("cross_network")?;
    let link = lab.dropped("link_control")?;
    lab.send_from_a1(&[
        // A reply claiming a2's address, a request claiming the gateway's.
        arp(mac, 2, A2_V4, A1_V4),
        arp(mac, 1, GATEWAY_V4, A2_V4),
        // The subnet broadcast, to the broadcast MAC (as Linux sends it) and to the gateway MAC.
        ipv4_to([0xff; 6], mac, 5, 28, 17, A1_V4, [10, 1, 1, 255], &udp(&[])),
        udp4(mac, A1_V4, [10, 1, 1, 255], &[]),
    ])?;
    std::thread::sleep(SETTLE);
    assert_eq!(
        lab.dropped("spoofed_ip")?.0 - spoofed.0,
        2,
        "ARP with a neighbour's or the gateway's address as sender"
    );
    assert_eq!(
        lab.dropped("cross_network")?,
        cross,
        "a subnet broadcast was counted as cross_network"
    );
    // At least: the container's own MLD reports may add to it meanwhile.
    ensure!(
        lab.dropped("link_control")?.0 >= link.0 + 2,
        "subnet broadcasts not counted as link_control"
    );
    Ok(())
}

#[test]
fn replies_are_exactly_the_reply_and_multicast_targets_get_none() -> anyhow::Result<()> {
    let lab = Lab::new()?;
    let a1 = lab.capture("a1")?;
    let mac = lab.a1_mac();
    let from_gateway = |frames: Vec<Vec<u8>>, ether_type: u16| -> Vec<Vec<u8>> {
        frames
            .into_iter()
            .filter(|f| {
                f.len() >= 14 && f[6..12] == GATEWAY_MAC && f[12..14] == ether_type.to_be_bytes()
            })
            .collect()
    };

    // Requests padded with junk, as a minimum-size Ethernet frame may be.
    let junk = marker();
    let mut request = arp(mac, 1, A1_V4, A2_V4);
    request.extend(&junk);
    lab.send_from_a1(&[request])?;
    let replies = from_gateway(a1.arrived()?, ETH_P_ARP);
    ensure!(replies.len() == 1, "ARP replies: {replies:?}");
    assert_eq!(replies[0].len(), 42, "ARP reply length: {:?}", replies[0]);

    let mut solicit = neighbor_solicit(mac, lab.a1_v6(), lab.a2_v6());
    solicit.extend(&junk);
    lab.send_from_a1(&[solicit])?;
    let adverts = from_gateway(a1.arrived()?, ETH_P_IPV6);
    ensure!(adverts.len() == 1, "neighbour advertisements: {adverts:?}");
    assert_eq!(
        adverts[0].len(),
        86,
        "advertisement length: {:?}",
        adverts[0]
    );

    // A solicitation for a multicast address is invalid (RFC 4861 §7.1.1).
    let malformed = lab.dropped("malformed")?;
    let mut all_nodes = [0u8; 16];
    all_nodes[..2].copy_from_slice(&[0xff, 0x02]);
    all_nodes[15] = 1;
    lab.send_from_a1(&[neighbor_solicit(mac, lab.a1_v6(), all_nodes)])?;
    let adverts = from_gateway(a1.arrived()?, ETH_P_IPV6);
    ensure!(
        adverts.is_empty(),
        "a solicitation for ff02::1 was answered: {adverts:?}"
    );
    assert_eq!(
        lab.dropped("malformed")?.0 - malformed.0,
        1,
        "malformed packets"
    );
    Ok(())
}
