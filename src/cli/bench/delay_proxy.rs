//! A TCP proxy that delays every byte by a fixed time in each direction,
//! for `conveyor bench --delay-us`: Redis and MySQL "a round trip away"
//! while they still run on this machine.
//!
//! This module owns the proxy threads. It must never reorder or drop bytes,
//! and never slow the stream by more than the delay: bytes read are
//! forwarded as soon as their delay has passed, while later bytes are
//! already read (pipelining survives). Plain OS threads with
//! `std::thread::sleep` give sub-millisecond precision that tokio's 1 ms
//! timer cannot.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A listening proxy to one upstream address; lives as long as the process.
pub(super) struct DelayProxy {
    pub(super) local: SocketAddr,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`host:port`), adding `delay` each way.
    pub(super) fn start(upstream: &str, delay: Duration) -> anyhow::Result<DelayProxy> {
        let upstream = upstream
            .to_socket_addrs()
            .with_context(|| format!("resolving {upstream}"))?
            .next()
            .with_context(|| format!("{upstream} has no address"))?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the delay proxy")?;
        let local = listener.local_addr()?;
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Err(error) = connect(client, upstream, delay) {
                    eprintln!("delay proxy: {error:#}");
                }
            }
        });
        Ok(DelayProxy { local })
    }

    /// `url` with its host and port replaced by the proxy's.
    pub(super) fn rewrite(&self, url: &str) -> anyhow::Result<String> {
        let mut parsed = url::Url::parse(url).context("parsing a server URL")?;
        parsed
            .set_host(Some(&self.local.ip().to_string()))
            .context("setting the proxy host")?;
        parsed
            .set_port(Some(self.local.port()))
            .map_err(|()| anyhow::anyhow!("this URL cannot have a port"))?;
        Ok(parsed.to_string())
    }
}

/// `host:port` of a server URL (default port when absent).
pub(super) fn upstream_of(url: &str, default_port: u16) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).context("parsing a server URL")?;
    let host = parsed.host_str().context("the URL has no host")?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(default_port)))
}

fn connect(client: TcpStream, upstream: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream).context("connecting upstream")?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pipe(client.try_clone()?, server.try_clone()?, delay);
    pipe(server, client, delay);
    Ok(())
}

/// Forwards `from` → `to`, each chunk `delay` after it was read: one thread
/// reads and stamps, another sleeps until each stamp is due and writes.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    thread::spawn(move || {
        for (due, bytes) in rx {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
