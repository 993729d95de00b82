//! A private `redis-server` a test owns and may restart: its own port and
//! data directory, append-only file fsynced on every write and no RDB
//! snapshots, so a restart brings back every stream, entry and consumer
//! group from the AOF, as a production Redis configured that way does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How [`RedisServer::stop`] stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub starts: usize,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not on the PATH (the test needs the binary,
    /// it does not skip), or it does not answer within 10 s.
    pub async fn start() -> Self {
        let mut server = Self {
            port: crate::cluster::free_port(),
            dir: tempfile::tempdir().expect("redis data directory"),
            child: None,
            starts: 0,
        };
        server.launch().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join(format!("redis-{}.log", self.starts)))
            .expect("redis log file");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdout(Stdio::from(log.try_clone().expect("redis log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs the redis-server binary on the PATH (apt install \
                     redis-server): cannot run it: {e}"
                )
            });
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server exited at start ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True when it answers PING with PONG (not while it loads its data).
    async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
            Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
        )
    }

    fn log(&self) -> String {
        let name = format!("redis-{}.log", self.starts.saturating_sub(1));
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Stops it and waits until it is gone. `Stop::Term`: an orderly
    /// shutdown (Redis finishes the command at hand, fsyncs the AOF, closes
    /// every client connection and exits); `Stop::Kill`: a crash (SIGKILL),
    /// where only what the AOF already held survives (with
    /// `appendfsync always`, every write Redis acknowledged).
    pub fn stop(&mut self, how: Stop) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = match how {
            Stop::Term => "-TERM",
            Stop::Kill => "-KILL",
        };
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} redis-server");
        let status = child.wait().expect("redis-server reaped");
        assert!(
            how == Stop::Kill || status.success(),
            "redis-server shut down cleanly on SIGTERM ({status}); log:\n{}",
            self.log()
        );
    }

    /// Starts it again (after [`RedisServer::stop`]) on the same port and
    /// directory; its data comes back from the AOF.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
