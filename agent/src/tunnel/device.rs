//! A network's TUN device: created, or taken over when a persistent one of that name exists
//! (what an earlier run of the agent left), kept persistent while the agent runs, deleted when
//! the network goes away.
//!
//! Persistence is what lets the device, its addresses and the eBPF program attached to it
//! outlive an agent restart: the next run attaches to the same interface (same ifindex) and
//! only its WireGuard sessions start over.

use std::{
    io,
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicU16, Ordering},
};

use tun_rs::{AsyncDevice, DeviceBuilder};

/// An open TUN device.
pub(super) struct Device {
    pub tun: AsyncDevice,
    pub ifindex: u32,
    /// The tunnel's MTU, read by its task for every packet from the device.
    mtu: AtomicU16,
}

impl Device {
    /// Creates the device `ifname` in the calling thread's network namespace, or attaches to the
    /// existing persistent one; makes it persistent, sets it up with `mtu`. Fails with
    /// `EBUSY` while another process has it open and `EINVAL` when `ifname` is not a TUN device.
    pub fn open(ifname: &str, mtu: u16) -> io::Result<Self> {
        // No packet information header, no offloads: one IP packet per read and write.
        let tun = DeviceBuilder::new()
            .name(ifname)
            .mtu(mtu)
            .enable(true)
            .build_async()?;
        set_persist(&tun, true)?;
        let ifindex = tun.if_index()?;
        Ok(Self {
            tun,
            ifindex,
            mtu: AtomicU16::new(mtu),
        })
    }

    /// Makes the device go away once it is closed (it is no longer persistent).
    pub fn release(&self) -> io::Result<()> {
        set_persist(&self.tun, false)
    }

    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        self.tun.set_mtu(mtu)?;
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    /// The tunnel's MTU: the longest packet one datagram carries.
    pub fn mtu(&self) -> u16 {
        self.mtu.load(Ordering::Relaxed)
    }
}

/// `TUNSETPERSIST`: whether the device outlives its last open file.
///
/// tun-rs only sets persistence, and passes the flag by pointer; the kernel reads the ioctl's
/// argument itself as the flag, so clearing it needs this call.
fn set_persist(tun: &AsyncDevice, persist: bool) -> io::Result<()> {
    // SAFETY: `tun` owns an open TUN descriptor for the whole call; TUNSETPERSIST takes an
    // integer argument by value and touches no user memory.
    let rc = unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
