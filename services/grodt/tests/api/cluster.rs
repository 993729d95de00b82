//! A cluster of `grodt serve` processes over one Redis prefix and one
//! Postgres database, each on ports fixed for its whole life, that a test
//! can kill with SIGKILL and start again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A port kept for the process's whole life: a killed service must come
/// back on the address its clients know (outside the ephemeral range, see
/// `service_port`).
pub fn free_port() -> u16 {
    grodt_store::testing::service_port()
}

pub struct Proc {
    /// The service `grodt serve` runs.
    pub name: &'static str,
    /// Its name in log files (two replicas of one service differ here).
    pub label: String,
    pub grpc: u16,
    pub http: u16,
    pub child: Option<Child>,
    pub starts: usize,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Cluster {
    pub config_dir: PathBuf,
    pub prefix: String,
    /// The Redis every process of the cluster uses (the shared one, or a
    /// test's private server it restarts).
    pub redis_url: String,
    pub db_url: String,
    pub procs: Vec<Proc>,
    /// More environment for every process (e.g. the OTLP endpoint).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub fn start(&mut self, k: usize) {
        let p = &mut self.procs[k];
        let log = std::fs::File::create(
            self.config_dir
                .join(format!("{}-{}.log", p.label, p.starts)),
        )
        .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_grodt"))
            .args(["serve", p.name])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRODT_CONFIG_DIR", &self.config_dir)
            .env("GRODT_GRPC__ADDR", format!("127.0.0.1:{}", p.grpc))
            .env("GRODT_HTTP__ADDR", format!("127.0.0.1:{}", p.http))
            .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
            .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
            .env("GRODT_REDIS__URL", &self.redis_url)
            .env("GRODT_REDIS__KEY_PREFIX", &self.prefix)
            .env("GRODT_DATABASE__URL", &self.db_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("grodt serve starts");
        p.child = Some(child);
        p.starts += 1;
    }

    /// SIGKILL: no drain, no flush; whatever is in flight is cut off.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut c) = self.procs[k].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reaped");
        }
    }

    pub async fn wait_serving(&self, k: usize) {
        let addr = format!("127.0.0.1:{}", self.procs[k].grpc);
        for _ in 0..300 {
            if grodt::health::check(&addr, "", Duration::from_millis(500))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.config_dir.join(format!(
            "{}-{}.log",
            self.procs[k].label,
            self.procs[k].starts - 1
        )))
        .unwrap_or_default();
        panic!("{} did not serve; log:\n{log}", self.procs[k].name);
    }
}
