//! The few bpf(2) commands the guard's benchmark needs beyond the agent: XDP programs built
//! from raw instructions, pins for tools that attach by path, and `BPF_PROG_TEST_RUN`, which
//! runs a loaded program over one frame many times inside the kernel and reports the mean time
//! per run.
//!
//! The programs here are the benchmark's references and plumbing (the floor that only drops, a
//! pass, a redirect). They are built from raw instructions rather than shipped in the eBPF
//! object, so the agent's object holds only programs the agent loads.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

/// Runs per measurement as the kernel times them: enough that the kernel's per-call setup and its
/// timer's resolution vanish in the mean (a run is tens of nanoseconds).
pub const REPEAT: u32 = 1_000_000;
/// Runs per measurement timed from userspace (see [`Time::per_run_ns`]). A call's fixed cost
/// (the kernel copies the frame in and switches its XDP dispatcher to the program and back) was
/// seen here to vary in steps of about 4 ms; over 30 million runs that is 0.13 ns a run.
pub const LONG_REPEAT: u32 = 30_000_000;
/// Measurements per program, interleaved so both see the same machine.
pub const ROUNDS: usize = 5;

/// XDP return codes (`enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

// bpf(2) commands, the XDP program type, a helper's number (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_FUNC_REDIRECT: i32 = 23;

/// One `struct bpf_insn`: opcode, destination and source registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, imm: i32) -> [u8; 8] {
    let [a, b, c, d] = imm.to_le_bytes();
    [code, dst | src << 4, 0, 0, a, b, c, d]
}

/// `r{dst} = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
fn mov(dst: u8, imm: i32) -> [u8; 8] {
    insn(0xb7, dst, 0, imm)
}

/// `exit` (BPF_JMP | BPF_EXIT): returns r0.
fn exit() -> [u8; 8] {
    insn(0x95, 0, 0, 0)
}

/// An XDP program of raw instructions.
pub enum Raw {
    /// The floor: returns `XDP_DROP` and does nothing else.
    Drop,
    /// Returns `XDP_PASS`.
    Pass,
    /// Redirects every frame to the interface with this index (`bpf_redirect`).
    Redirect(u32),
}

impl Raw {
    fn instructions(&self) -> anyhow::Result<Vec<[u8; 8]>> {
        Ok(match self {
            Raw::Drop => vec![mov(0, XDP_DROP as i32), exit()],
            Raw::Pass => vec![mov(0, XDP_PASS as i32), exit()],
            Raw::Redirect(ifindex) => vec![
                mov(1, i32::try_from(*ifindex).context("ifindex")?),
                mov(2, 0),
                // BPF_JMP | BPF_CALL: r0 = bpf_redirect(r1, r2), which is XDP_REDIRECT.
                insn(0x85, 0, 0, BPF_FUNC_REDIRECT),
                exit(),
            ],
        })
    }

    /// Loads the program.
    pub fn load(&self) -> anyhow::Result<OwnedFd> {
        let instructions = self.instructions()?;
        let license = c"GPL";
        let mut attr: Attr = [0; 128];
        // struct { prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
        //          kern_version, prog_flags, prog_name[16], ... }
        put(&mut attr, 0, &BPF_PROG_TYPE_XDP.to_ne_bytes());
        put(
            &mut attr,
            4,
            &u32::try_from(instructions.len())?.to_ne_bytes(),
        );
        put(&mut attr, 8, &(instructions.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 48, b"gridnet_bench");
        let fd = bpf(BPF_PROG_LOAD, &mut attr).context("load a raw XDP program (BPF_PROG_LOAD)")?;
        let fd = i32::try_from(fd).context("odd descriptor")?;
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Room for the `union bpf_attr` members these commands use, zero beyond them as the kernel
/// requires.
type Attr = [u8; 128];

fn put(attr: &mut Attr, offset: usize, bytes: &[u8]) {
    attr[offset..offset + bytes.len()].copy_from_slice(bytes);
}

fn get_u32(attr: &Attr, offset: usize) -> u32 {
    u32::from_ne_bytes([
        attr[offset],
        attr[offset + 1],
        attr[offset + 2],
        attr[offset + 3],
    ])
}

fn bpf(command: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live buffer of the size passed; the commands used here read it and
    // write results back into it, and read only the user memory its pointers name, which the
    // callers keep alive across the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

fn path_arg(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).context("pin path with a NUL byte")
}

/// A program pinned in bpffs, for tools that attach by path (`ip link ... pinned`); unpinned
/// on drop.
pub struct Pin(PathBuf);

impl Pin {
    pub fn new(program: BorrowedFd<'_>, path: &Path) -> anyhow::Result<Self> {
        let path_c = path_arg(path)?;
        let mut attr: Attr = [0; 128];
        // struct { pathname, bpf_fd, file_flags }
        put(&mut attr, 0, &(path_c.as_ptr() as u64).to_ne_bytes());
        let fd = u32::try_from(program.as_raw_fd()).context("odd descriptor")?;
        put(&mut attr, 8, &fd.to_ne_bytes());
        bpf(BPF_OBJ_PIN, &mut attr).with_context(|| format!("pin at {}", path.display()))?;
        Ok(Self(path.to_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens a pinned program.
pub fn open_pinned(path: &Path) -> anyhow::Result<OwnedFd> {
    let path_c = path_arg(path)?;
    let mut attr: Attr = [0; 128];
    // struct { pathname, bpf_fd, file_flags }
    put(&mut attr, 0, &(path_c.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_OBJ_GET, &mut attr)
        .with_context(|| format!("open the pinned program {}", path.display()))?;
    let fd = i32::try_from(fd).context("odd descriptor")?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One `BPF_PROG_TEST_RUN`: the program's return code, the mean nanoseconds per run as the
/// kernel reports them, and how long the call took.
pub fn test_run(
    program: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<(u32, u32, Duration)> {
    let mut attr: Attr = [0; 128];
    // struct { prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat,
    //          duration, ... }
    let fd = u32::try_from(program.as_raw_fd()).context("odd descriptor")?;
    put(&mut attr, 0, &fd.to_ne_bytes());
    put(&mut attr, 8, &u32::try_from(frame.len())?.to_ne_bytes());
    put(&mut attr, 16, &(frame.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 32, &repeat.to_ne_bytes());
    let started = Instant::now();
    bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN")?;
    let took = started.elapsed();
    Ok((get_u32(&attr, 4), get_u32(&attr, 36), took))
}

/// A program's time per run on one frame.
#[derive(Clone, Copy, Debug)]
pub struct Time {
    /// As `BPF_PROG_TEST_RUN` reports it: the mean in whole nanoseconds, rounded down, the
    /// fastest of [`ROUNDS`] calls of [`REPEAT`] runs. At 5 to 10 ns a run, rounding down alone
    /// moves a ratio by up to 20%.
    pub kernel_ns: u32,
    /// The same mean to a hundredth of a nanosecond: a call of [`LONG_REPEAT`] runs less a call
    /// of 2, timed from userspace, over the difference in runs. The subtraction takes out what a
    /// call costs whatever its runs (copying the frame in, switching the dispatcher), which the
    /// kernel's own timer leaves out too. The median of [`ROUNDS`].
    pub per_run_ns: f64,
}

/// Times `program` on `frame`, one round: the kernel's figure and the userspace slope.
fn time_once(program: BorrowedFd<'_>, frame: &[u8]) -> anyhow::Result<(u32, u32, f64)> {
    let (code, kernel_ns, _) = test_run(program, frame, REPEAT)?;
    let (_, _, short) = test_run(program, frame, 2)?;
    let (_, _, long) = test_run(program, frame, LONG_REPEAT)?;
    let per_run = long.saturating_sub(short).as_secs_f64() * 1e9 / f64::from(LONG_REPEAT - 2);
    Ok((code, kernel_ns, per_run))
}

/// [`ROUNDS`] interleaved measurements of `guard` and `floor` on `frame`; checks that the guard
/// returns `expected` on it, so the time is that of the path meant.
pub fn compare(
    guard: BorrowedFd<'_>,
    floor: BorrowedFd<'_>,
    frame: &[u8],
    expected: u32,
) -> anyhow::Result<(Time, Time)> {
    let (mut guard_kernel, mut floor_kernel) = (u32::MAX, u32::MAX);
    let (mut guard_runs, mut floor_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (code, kernel_ns, per_run) = time_once(guard, frame)?;
        ensure!(
            code == expected,
            "the guard returned {code} on a frame meant to give {expected}"
        );
        guard_kernel = guard_kernel.min(kernel_ns);
        guard_runs.push(per_run);
        let (_, kernel_ns, per_run) = time_once(floor, frame)?;
        floor_kernel = floor_kernel.min(kernel_ns);
        floor_runs.push(per_run);
    }
    Ok((
        Time {
            kernel_ns: guard_kernel,
            per_run_ns: median(guard_runs),
        },
        Time {
            kernel_ns: floor_kernel,
            per_run_ns: median(floor_runs),
        },
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
