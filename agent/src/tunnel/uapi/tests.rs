//! The server over real unix sockets in a scratch directory (no root needed).

use std::{
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    sync::atomic::{AtomicU32, Ordering},
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::tunnel::{DropCounts, PeerSpec};

/// A scratch directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gridnet-uapi-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    /// Where the sockets go: a directory that does not exist yet.
    fn uapi_dir(&self) -> PathBuf {
        self.0.join("wireguard")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server for `gnt7` in a scratch directory of its own, answering from [`spec`] and
/// [`status`]. The server goes before the directory.
struct Served {
    server: UapiServer,
    status: watch::Sender<TunnelStatus>,
    path: PathBuf,
    _scratch: Scratch,
}

fn served() -> Served {
    let scratch = Scratch::new();
    let (status, status_rx) = watch::channel(status());
    let server = Listener::bind(&scratch.uapi_dir(), "gnt7")
        .expect("bind")
        .serve([1; 32], &spec(), status_rx);
    Served {
        server,
        status,
        path: scratch.uapi_dir().join("gnt7.sock"),
        _scratch: scratch,
    }
}

fn spec() -> TunnelSpec {
    TunnelSpec {
        network: "alice/web".into(),
        ifname: "gnt7".into(),
        listen_port: 51820,
        mtu: 1420,
        peers: vec![PeerSpec {
            public_key: [2; 32],
            endpoints: vec!["192.0.2.2:51820".parse().expect("addr")],
            allowed_ips: vec!["10.1.2.0/24".parse().expect("net")],
            keepalive: Some(25),
        }],
    }
}

fn status() -> TunnelStatus {
    TunnelStatus {
        network: "alice/web".into(),
        ifname: "gnt7".into(),
        ifindex: 5,
        listen_port: 51820,
        peers: Vec::new(),
        drops: DropCounts::default(),
    }
}

/// Sends `request` on a new connection, then reads until the server closes or `answers`
/// answers (each ending in a blank line) have arrived.
async fn ask(path: &Path, request: &[u8], answers: usize) -> String {
    let mut stream = UnixStream::connect(path).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&got).matches("\n\n").count() < answers {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("text")
}

/// Reads until the server closes the connection (a reset after the answer, for a request it
/// left unread, counts as closed).
async fn closed(mut stream: UnixStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed in time");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(got).expect("text")
}

#[tokio::test]
async fn get_answers_from_the_current_spec_and_status() {
    let served = served();
    let path = &served.path;
    let got = ask(path, b"get=1\n\n", 1).await;
    assert_eq!(got, protocol::get_answer(&[1; 32], &spec(), &status()));

    // A new status and a new spec show in the next answer.
    let mut later = status();
    later.listen_port = 40000;
    served.status.send_replace(later.clone());
    let mut changed = spec();
    changed.peers[0].allowed_ips = vec!["10.1.9.0/24".parse().expect("net")];
    served.server.publish(&changed);
    let got = ask(path, b"get=1\n\n", 1).await;
    assert!(got.contains("listen_port=40000\n"), "{got}");
    assert!(got.contains("allowed_ip=10.1.9.0/24\n"), "{got}");
    assert_eq!(got, protocol::get_answer(&[1; 32], &changed, &later));
}

#[tokio::test]
async fn set_is_refused_and_the_connection_goes_on() {
    let served = served();
    let path = served.path.clone();
    let request = format!(
        "set=1\npublic_key={}\nremove=true\n\nget=1\n\n",
        "02".repeat(32)
    );
    let got = ask(&path, request.as_bytes(), 2).await;
    let (set, get) = got.split_once("\n\n").expect("two answers");
    assert_eq!(set, "errno=-1");
    assert!(get.contains("allowed_ip=10.1.2.0/24\n"), "{get}");
    assert!(get.ends_with("errno=0\n\n"), "{get}");
}

#[tokio::test]
async fn garbage_gets_einval_and_the_connection_is_closed() {
    let served = served();
    let path = served.path.clone();
    for request in [
        &b"hello\n"[..],
        b"get=1\nprivate_key=00\n\n",
        b"set=1\nno equals\n\n",
        b"\xff\xfe\x00\n",
    ] {
        let mut stream = UnixStream::connect(&path).await.expect("connect");
        stream.write_all(request).await.expect("send");
        assert_eq!(closed(stream).await, "errno=-22\n\n", "{request:?}");
    }
    // A line past the cap is refused without being read to its end.
    let mut stream = UnixStream::connect(&path).await.expect("connect");
    stream
        .write_all(&vec![b'a'; protocol::MAX_LINE + 100])
        .await
        .expect("send");
    assert_eq!(closed(stream).await, "errno=-22\n\n");
    // The server still answers.
    assert!(ask(&path, b"get=1\n\n", 1).await.ends_with("errno=0\n\n"));
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_others_are_served_meanwhile() {
    let served = served();
    let path = served.path.clone();
    let mut silent = UnixStream::connect(&path).await.expect("connect");
    silent.write_all(b"get=1\n").await.expect("half a request");
    assert!(ask(&path, b"get=1\n\n", 1).await.ends_with("errno=0\n\n"));
    let started = tokio::time::Instant::now();
    let mut rest = String::new();
    let read = tokio::time::timeout(
        EXCHANGE_TIMEOUT + Duration::from_secs(2),
        silent.read_to_string(&mut rest),
    )
    .await
    .expect("closed after the exchange timeout");
    assert_eq!(read.expect("read"), 0);
    assert!(started.elapsed() >= EXCHANGE_TIMEOUT - Duration::from_millis(100));
}

#[tokio::test]
async fn the_socket_is_private_replaces_a_stale_one_and_goes_with_the_server() {
    let scratch = Scratch::new();
    let dir = scratch.uapi_dir();
    // A socket file left by a killed process: nobody answers on it.
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("gnt7.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists());

    let (_status_tx, status_rx) = watch::channel(status());
    let server = Listener::bind(&dir, "gnt7")
        .expect("a stale socket is replaced")
        .serve([1; 32], &spec(), status_rx.clone());
    let metadata = std::fs::symlink_metadata(&path).expect("socket");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert!(ask(&path, b"get=1\n\n", 1).await.ends_with("errno=0\n\n"));

    // A socket that answers is someone else's.
    assert!(matches!(
        Listener::bind(&dir, "gnt7"),
        Err(UapiError::InUse { .. })
    ));

    drop(server);
    assert!(!path.exists(), "the socket goes with its server");
    // Only wg's names are left behind: no temporary files.
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
}

#[tokio::test]
async fn a_missing_directory_is_made_world_readable() {
    let scratch = Scratch::new();
    let dir = scratch.uapi_dir().join("nested");
    let (_status_tx, status_rx) = watch::channel(status());
    let _server = Listener::bind(&dir, "gnt7")
        .expect("bind")
        .serve([1; 32], &spec(), status_rx);
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[tokio::test]
async fn a_socket_replaced_by_another_run_is_left_to_it() {
    let scratch = Scratch::new();
    let dir = scratch.uapi_dir();
    let (_status_tx, status_rx) = watch::channel(status());
    let server = Listener::bind(&dir, "gnt7")
        .expect("bind")
        .serve([1; 32], &spec(), status_rx);
    let path = dir.join("gnt7.sock");
    std::fs::remove_file(&path).expect("remove");
    let other = std::os::unix::net::UnixListener::bind(&path).expect("another run's socket");
    drop(server);
    assert!(path.exists(), "another run's socket is not removed");
    drop(other);
}

#[tokio::test]
async fn an_unwritable_directory_is_a_clear_error() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(&scratch.0).expect("scratch");
    // A regular file where the directory should be.
    let file = scratch.0.join("not-a-dir");
    std::fs::write(&file, b"").expect("file");
    let err = Listener::bind(&file, "gnt7").err().expect("refused");
    assert!(matches!(err, UapiError::Directory { .. }), "{err}");
    assert!(err.to_string().contains("uapi_dir"), "{err}");
}
