//! The harness's own promises, where a broken one would make other tests fail for no fault of
//! gridnet's, or pass when they should not.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
};

use anyhow::ensure;
use gridnet_tests::Etcd;

/// Two loopback ports free right now.
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let client = TcpListener::bind("127.0.0.1:0")?;
    let peer = TcpListener::bind("127.0.0.1:0")?;
    Ok((client.local_addr()?.port(), peer.local_addr()?.port()))
}

#[test]
fn etcd_whose_port_is_taken_starts_on_fresh_ones_and_never_mistakes_another_server_for_itself()
-> anyhow::Result<()> {
    // Another server listens on the first client port etcd is given, as another test's etcd
    // would after taking it, and says it is a healthy etcd: only asking who holds the socket
    // tells them apart.
    let squatter = TcpListener::bind("127.0.0.1:0")?;
    let taken = squatter.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in squatter.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n{\"health\":\"true\"}");
        }
    });
    let mut draws = 0;
    let etcd = Etcd::start_drawing(|| {
        draws += 1;
        if draws == 1 {
            Ok((taken, free_ports()?.1))
        } else {
            free_ports()
        }
    })?;
    ensure!(draws == 2, "etcd was started {draws} times, 2 expected");
    ensure!(
        !etcd.client_url.ends_with(&format!(":{taken}")),
        "etcd claims the taken port: {}",
        etcd.client_url
    );
    // And the etcd found is this one, serving.
    ensure!(etcd.watchers()? == 0, "a fresh etcd holds watches");
    Ok(())
}
