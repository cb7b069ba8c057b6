//! Requests through a web gateway against the same backend reached directly over the overlay:
//! `wrk` (Debian's) with keep-alive connections, once from the internet through the gateway on
//! node 1 (plain HTTP routed by `Host`, then the overlay to node 2), once from a container on
//! node 1 straight to the backend (the same overlay hop, no gateway). The ratio is the gateway's
//! cost: its HTTP parsing and routing, and the extra TCP connection it relays.

use std::{
    io::{Read as _, Write as _},
    process::Output,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::GatewayMode;
use gridnet_tests::{Grid, Internet, gateway_entry, proto::WIREGUARD_PORT, run_in, wait, within};

use super::Section;

/// The backend's port in its container.
const BACKEND_PORT: u16 = 8080;

/// Concurrent connections wrk keeps open, over two threads: enough to keep both cores busy
/// without measuring a queue.
const CONNECTIONS: &str = "32";

/// Times each path is measured, taking turns, so a machine that drifts favours neither.
const ROUNDS: usize = 3;

/// The body the backend answers with: a small page, so the numbers are about requests, not
/// bytes.
const PAGE: &[u8] = b"<html><body>gridnet gateway benchmark</body></html>\n";

/// One run of wrk: requests per second and latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

pub fn run(seconds: u64) -> anyhow::Result<Section> {
    let mut grid = Grid::new("bench-gw", 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.container("alice", "client", "web", 1, 2)?;
    grid.container("alice", "app", "web", 2, 2)?;
    grid.publish(1)?;
    let seq = grid.ledger.submit(
        "alice",
        gateway_entry(
            "bench",
            "web",
            1,
            &["bench.example.org"],
            &[&format!("10.1.2.2:{BACKEND_PORT}")],
            GatewayMode::Http,
        )?,
    )?;
    grid.start("", seq)?;
    serve_page(&grid.node(2).container_ns("alice.app"))?;
    let inet = Internet::attach(&grid)?;
    let client = grid.node(1).container_ns("alice.client");
    let through_gateway = ["-H", "Host: bench.example.org", "http://192.0.2.1/"];
    let direct = [&format!("http://10.1.2.2:{BACKEND_PORT}/")[..]];
    // Both paths answer before anything is measured (handshakes, the first health check).
    for (ns, args) in [
        (inet.ns.name(), &through_gateway[..]),
        (&client[..], &direct[..]),
    ] {
        wait::until(
            Duration::from_secs(30),
            "the benchmark's backend answering",
            || Ok(wrk(ns, args, 1).map(|r| r.rps).unwrap_or(0.0)),
            |&rps| rps > 0.0,
        )?;
    }
    let mut gateway = Vec::new();
    let mut overlay = Vec::new();
    for round in 0..ROUNDS {
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for via_gateway in order {
            let run = if via_gateway {
                wrk(inet.ns.name(), &through_gateway, seconds)?
            } else {
                wrk(&client, &direct, seconds)?
            };
            println!(
                "bench: gateway: {}: {:.0} requests/s, p50 {:.0} us, p99 {:.0} us",
                if via_gateway {
                    "through the gateway"
                } else {
                    "direct"
                },
                run.rps,
                run.p50_us,
                run.p99_us
            );
            if via_gateway {
                gateway.push(run);
            } else {
                overlay.push(run);
            }
        }
    }
    let status = grid.agent(1)?.status()?;
    ensure!(
        gridnet_tests::healthy(&status),
        "the gateway node reports a failure: {status:#}"
    );
    let g = median_run(&gateway)?;
    let d = median_run(&overlay)?;
    let mut body = String::new();
    body.push_str(&format!(
        "`wrk -t2 -c{CONNECTIONS} -d{seconds}s --latency`, keep-alive, a {}-byte page; the backend \
         on node 2; medians of {ROUNDS} rounds, paths taking turns.\n\n",
        PAGE.len()
    ));
    body.push_str("| path | requests/s | p50 | p99 |\n|---|---|---|---|\n");
    for (label, run) in [
        ("internet -> gateway on node 1 -> overlay -> backend", g),
        ("container on node 1 -> overlay -> backend (baseline)", d),
    ] {
        body.push_str(&format!(
            "| {label} | {:.0} | {:.0} us | {:.0} us |\n",
            run.rps, run.p50_us, run.p99_us
        ));
    }
    body.push_str(&format!(
        "\nGateway vs direct: **{:.2}x** the requests/s, **{:.2}x** the median latency.\n",
        g.rps / d.rps,
        g.p50_us / d.p50_us
    ));
    Ok(Section {
        title: "Web gateway (requests through the gateway vs straight over the overlay)",
        body,
    })
}

/// The run with the median requests/s.
fn median_run(runs: &[Run]) -> anyhow::Result<Run> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted.get(sorted.len() / 2).copied().context("no run")
}

/// Runs wrk in namespace `ns` for `seconds` and reads its report.
fn wrk(ns: &str, args: &[&str], seconds: u64) -> anyhow::Result<Run> {
    let duration = format!("{seconds}s");
    let mut all = vec!["-t2", "-c", CONNECTIONS, "-d", &duration, "--latency"];
    all.extend_from_slice(args);
    let out: Output = run_in(ns, "wrk", &all).context("wrk (Debian's `wrk` package)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors:\n{text}"
    );
    let field = |prefix: &str| -> anyhow::Result<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's report:\n{text}"))
    };
    Ok(Run {
        rps: field("Requests/sec:")?.parse()?,
        p50_us: micros(field("50%")?)?,
        p99_us: micros(field("99%")?)?,
    })
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.01s`) in microseconds.
fn micros(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        anyhow::bail!("odd duration {text:?} in wrk's report");
    };
    Ok(number.parse::<f64>()? * scale)
}

/// A keep-alive HTTP/1.1 responder in namespace `ns`: every request head gets [`PAGE`]. The
/// benchmark's backend, fast enough that the paths in front of it are what is measured.
fn serve_page(ns: &str) -> anyhow::Result<()> {
    let listener = within(ns, || std::net::TcpListener::bind(("::", BACKEND_PORT)))??;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_requests(stream));
        }
    });
    Ok(())
}

fn answer_requests(mut stream: std::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n",
        PAGE.len()
    );
    let mut response = head.into_bytes();
    response.extend_from_slice(PAGE);
    let mut buf = [0u8; 8192];
    let mut pending = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        // Requests without bodies (GET): each head ends with an empty line.
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if stream.write_all(&response).is_err() {
                return;
            }
        }
    }
}
