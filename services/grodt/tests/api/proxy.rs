//! A TCP proxy a test puts between services and a server it cannot restart
//! itself (the machine's shared Postgres): `cut()` does to the clients what a
//! server restart does — every open connection is closed in both directions
//! and new ones are refused (the listening port is closed) — until
//! `restore()` listens again on the same port and forwards as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    port: u16,
    upstream: SocketAddr,
    /// Bumped by every cut: a connection closes once it differs from the
    /// generation it was opened in.
    generation: watch::Sender<u64>,
    accept: Option<JoinHandle<()>>,
    /// Connections forwarded, and connections the cuts closed.
    pub opened: Arc<AtomicUsize>,
    pub severed: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on a free port (kept for the proxy's life) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let (generation, _) = watch::channel(0);
        let mut proxy = Self {
            port: crate::cluster::free_port(),
            upstream,
            generation,
            accept: None,
            opened: Arc::new(AtomicUsize::new(0)),
            severed: Arc::new(AtomicUsize::new(0)),
        };
        proxy.restore().await;
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server "goes down": the listener closes (new connections are
    /// refused) and every open connection is shut.
    pub async fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // The listener is closed once the task is gone; only then is
            // every forwarded connection one of the old generation.
            let _ = accept.await;
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// The server "is back": listens on the same port again.
    pub async fn restore(&mut self) {
        if self.accept.is_some() {
            return;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("proxy cannot listen on {}: {e}", self.port));
        let (upstream, generation) = (self.upstream, self.generation.clone());
        let (opened, severed) = (self.opened.clone(), self.severed.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut gen_rx = generation.subscribe();
                let born = *gen_rx.borrow_and_update();
                let severed = severed.clone();
                opened.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    // The upstream refusing is the client's problem, as it
                    // would be without the proxy: close its side.
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gen_rx.wait_for(|g| *g != born) => {
                            severed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Dropping both streams closes both directions at once.
                });
            }
        }));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.generation.send_modify(|g| *g += 1);
    }
}
