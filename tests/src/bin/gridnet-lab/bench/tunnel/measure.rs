//! What the tunnel benchmark measures on every path: TCP throughput with iperf3, and TCP
//! request/response round trips timed one by one.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use gridnet_tests::{in_netns, listens_on, wait, within};

/// The two ends of a path: the namespaces the client and the server run in, and the server's
/// address as the client reaches it.
#[derive(Clone)]
pub struct Ends {
    pub client: String,
    pub server: String,
    pub server_ip: IpAddr,
}

/// iperf3's own default port, named on both sides so the readiness check looks for the right one.
const IPERF3_PORT: u16 = 5201;

/// How long the iperf3 server may take to listen: milliseconds here; the margin is for a loaded
/// machine.
const IPERF3_START: Duration = Duration::from_secs(5);

/// How long an iperf3 run may last beyond its own `-t`: connecting and the end-of-test exchange
/// take well under a second; a run this late has stalled (a tunnel that stopped forwarding), and
/// is killed rather than waited on.
const IPERF3_GRACE: Duration = Duration::from_secs(30);

/// How long iperf3 tries to connect, in milliseconds: the tunnels' handshakes are done before
/// any measurement, so a connection that takes this long will not come.
const IPERF3_CONNECT_MS: &str = "5000";

/// One iperf3 run, as the receiver counted it.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub gbps: f64,
    pub bytes: u64,
    /// TCP retransmissions the sender saw: segments the path lost or reordered badly.
    pub retransmits: u64,
}

/// TCP throughput from `ends.client` to `ends.server` with `streams` parallel streams.
pub fn iperf3(ends: &Ends, streams: u32, seconds: u64) -> anyhow::Result<Throughput> {
    let port = IPERF3_PORT.to_string();
    let server_ip = ends.server_ip.to_string();
    let mut server = Command::new("iperf3");
    server
        .args(["-s", "-1", "-B", &server_ip, "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    in_netns(&mut server, &ends.server)?;
    let mut server = KillOnDrop(server.spawn().context("iperf3 (apt package iperf3)")?);
    // Looked up in /proc rather than by connecting: a one-off server (`-1`) would take the
    // probe for its client and exit.
    wait::until(
        IPERF3_START,
        "the iperf3 server to listen",
        || {
            if let Some(status) = server.0.try_wait()? {
                bail!("the iperf3 server exited: {status}");
            }
            listens_on(server.0.id(), IPERF3_PORT)
        },
        |&listening| listening,
    )?;
    let mut client = Command::new("iperf3");
    client
        .args(["-c", &server_ip, "-p", &port, "-J"])
        .args(["-t", &seconds.to_string(), "-P", &streams.to_string()])
        .args(["--connect-timeout", IPERF3_CONNECT_MS])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    in_netns(&mut client, &ends.client)?;
    let mut client = KillOnDrop(client.spawn().context("iperf3 client")?);
    // Read while it runs: the JSON report can outgrow a pipe's buffer.
    let mut stdout = client.0.stdout.take().context("iperf3 stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let status = wait::until(
        Duration::from_secs(seconds) + IPERF3_GRACE,
        "the iperf3 client to finish",
        || Ok(client.0.try_wait()?),
        Option::is_some,
    )?;
    drop(client);
    drop(server);
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the iperf3 reader panicked"))??;
    let report = parse_iperf3(&out)?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "the iperf3 client failed ({status:?})"
    );
    Ok(report)
}

/// The receiver's totals from `iperf3 -J`, or the error iperf3 reported.
fn parse_iperf3(json: &[u8]) -> anyhow::Result<Throughput> {
    let json: serde_json::Value = serde_json::from_slice(json).context("iperf3's JSON report")?;
    if let Some(error) = json["error"].as_str() {
        bail!("iperf3: {error}");
    }
    let received = &json["end"]["sum_received"];
    Ok(Throughput {
        gbps: received["bits_per_second"]
            .as_f64()
            .context("iperf3 report without end.sum_received.bits_per_second")?
            / 1e9,
        bytes: received["bytes"]
            .as_u64()
            .context("iperf3 report without end.sum_received.bytes")?,
        retransmits: json["end"]["sum_sent"]["retransmits"]
            .as_u64()
            .unwrap_or_default(),
    })
}

/// The request/response server's port, in the server's namespace.
const ROUND_TRIP_PORT: u16 = 7300;

/// Round trips timed per measurement: enough for a stable 99th percentile (20 samples above it)
/// while a slow path still finishes in about a second.
pub const ROUND_TRIPS: usize = 2000;

/// Round trips made before the timed ones and not counted: they warm the caches, the
/// connection's congestion state and the tunnel daemons' threads.
pub const WARMUP_ROUND_TRIPS: usize = 100;

/// How long connecting, and each reply, may take before the measurement fails: a round trip
/// takes well under a millisecond on every path here.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the server looks for its one connection while it waits.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// [`ROUND_TRIPS`] one-byte request/response round trips over one TCP connection (Nagle off),
/// each timed on its own.
pub fn round_trips(ends: &Ends) -> anyhow::Result<Vec<Duration>> {
    let bind = SocketAddr::new(ends.server_ip, ROUND_TRIP_PORT);
    let listener = within(&ends.server, move || TcpListener::bind(bind))?
        .with_context(|| format!("bind the round-trip server to {bind}"))?;
    // Non-blocking, so the server gives up when no client comes instead of outliving the run.
    listener.set_nonblocking(true)?;
    let server = std::thread::spawn(move || echo_one(&listener));
    let client = within(&ends.client, move || {
        TcpStream::connect_timeout(&bind, ROUND_TRIP_TIMEOUT)
    })?
    .with_context(|| format!("connect to the round-trip server at {bind}"));
    let samples = client.and_then(|stream| time_round_trips(&stream));
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("the round-trip server panicked"))?;
    let samples = samples?;
    served.context("the round-trip server")?;
    Ok(samples)
}

/// Accepts one connection and echoes it byte by byte until the client closes it.
fn echo_one(listener: &TcpListener) -> std::io::Result<()> {
    let deadline = Instant::now() + ROUND_TRIP_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ROUND_TRIP_TIMEOUT))?;
    let mut byte = [0u8; 1];
    loop {
        match stream.read_exact(&mut byte) {
            Ok(()) => stream.write_all(&byte)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn time_round_trips(stream: &TcpStream) -> anyhow::Result<Vec<Duration>> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ROUND_TRIP_TIMEOUT))?;
    let mut stream = stream;
    let mut byte = [0u8; 1];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARMUP_ROUND_TRIPS + ROUND_TRIPS {
        let start = Instant::now();
        stream.write_all(&byte)?;
        stream
            .read_exact(&mut byte)
            .context("no reply from the round-trip server")?;
        if i >= WARMUP_ROUND_TRIPS {
            samples.push(start.elapsed());
        }
    }
    Ok(samples)
}

/// The `pct`th percentile (nearest rank) of `samples`, in any order; `None` when empty.
pub fn percentile(samples: &[Duration], pct: u32) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    // Nearest rank: the smallest sample with at least pct% of the samples at or below it.
    let rank = (n * pct as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_micros).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = us(&(1..=200).collect::<Vec<_>>());
        assert_eq!(percentile(&samples, 50), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_micros(198)));
        assert_eq!(percentile(&samples, 100), Some(Duration::from_micros(200)));
        assert_eq!(percentile(&us(&[7]), 99), Some(Duration::from_micros(7)));
        // Samples pooled from several runs come in no order.
        let pooled = us(&[30, 10, 20, 90, 40, 50, 80, 60, 70, 100]);
        assert_eq!(percentile(&pooled, 50), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&pooled, 99), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn iperf3_report_gives_the_receivers_totals() -> anyhow::Result<()> {
        let report = br#"{"end": {"sum_sent": {"bytes": 1300, "retransmits": 7},
            "sum_received": {"bytes": 1250, "bits_per_second": 2.5e9}}}"#;
        let got = parse_iperf3(report)?;
        assert_eq!((got.bytes, got.retransmits), (1250, 7));
        assert!((got.gbps - 2.5).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn iperf3_error_is_reported_not_parsed() {
        let err = parse_iperf3(br#"{"start": {}, "error": "unable to connect to server"}"#)
            .expect_err("an error report");
        assert_eq!(format!("{err:#}"), "iperf3: unable to connect to server");
        let err = parse_iperf3(br#"{"end": {}}"#).expect_err("no totals");
        assert!(format!("{err:#}").contains("bits_per_second"), "{err:#}");
    }
}
