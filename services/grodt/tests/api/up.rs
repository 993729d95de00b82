//! `grodt up` as a real process: all seven SERVING, SIGTERM drains and exits
//! 0; a bad configuration exits 64 naming the key. `grodt health` and
//! `grodt migrate` exit codes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

const GRODT: &str = env!("CARGO_BIN_EXE_grodt");

/// `grodt` with an empty config dir and no inherited GRODT_ overrides.
fn grodt(config_dir: &Path) -> Command {
    let mut cmd = Command::new(GRODT);
    for (key, _) in std::env::vars() {
        if key.starts_with("GRODT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GRODT_CONFIG_DIR", config_dir)
        .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn wait_for_file(path: &Path, child: &mut Child) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("grodt up exited early with {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "grodt up wrote no ports file within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exit_code(mut child: Child) -> (i32, String) {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("grodt exits within 30 s")
        .expect("wait");
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        err.read_to_string(&mut stderr).await.expect("stderr");
    }
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn grodt_up_serves_all_seven_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = dir.path().join("ports.json");
    let mut child = grodt(dir.path())
        .args(["up", "--ephemeral-ports", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--ports-file")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn grodt up");
    let text = wait_for_file(&ports, &mut child).await;
    let map: serde_json::Value = serde_json::from_str(&text).expect("ports file is JSON");

    for member in grodt::up::members() {
        let grpc = map[member.name]["grpc"]
            .as_str()
            .unwrap_or_else(|| panic!("{} missing in {text}", member.name));
        let out = Command::new(GRODT)
            .args(["health", grpc, member.grpc_service])
            .output()
            .await
            .expect("grodt health");
        assert!(
            out.status.success(),
            "{}: grodt health exited {:?}",
            member.name,
            out.status
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    }

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let (code, stderr) = exit_code(child).await;
    assert_eq!(code, 0, "clean exit after SIGTERM; stderr:\n{stderr}");
}

#[tokio::test]
async fn unknown_config_key_exits_64_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = grodt(dir.path())
        .args(["up", "--ephemeral-ports", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("GRODT_SERVER__CONCURENCY_LIMIT", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (code, stderr) = exit_code(child).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("server.concurency_limit"),
        "names the key: {stderr}"
    );
}

#[tokio::test]
async fn malformed_config_value_exits_64_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("base.toml"),
        "[server]\nrequest_timeout_ms = \"soon\"\n",
    )
    .expect("write");
    let child = grodt(dir.path())
        .args(["up", "--ephemeral-ports", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (code, stderr) = exit_code(child).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("server.request_timeout_ms"),
        "names the key: {stderr}"
    );
}

#[tokio::test]
async fn health_fails_when_nothing_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = Command::new(GRODT)
        .args(["health", &addr.to_string(), "--timeout-ms", "2000"])
        .output()
        .await
        .expect("grodt health");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let db = grodt_store::testing::TestDb::postgres().await;
    for _ in 0..2 {
        let out = Command::new(GRODT)
            .args(["migrate", "--database-url", db.url()])
            .output()
            .await
            .expect("grodt migrate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
