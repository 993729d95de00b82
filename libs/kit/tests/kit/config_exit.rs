//! `load_or_exit` ends the process with status 64 and names the key.

use std::process::Command;

use grodt_kit::config::{CommonConfig, Config, ConfigSource, load_or_exit};

const CHILD: &str = "GRODT_KIT_TEST_EXIT_CHILD";

#[test]
fn a_bad_config_exits_64_naming_the_key() {
    if std::env::var_os(CHILD).is_some() {
        let source = ConfigSource {
            dir: std::env::temp_dir().join("grodt-kit-no-such-dir"),
            vars: [("GRODT_SERVER__CONCURRENCY_LIMIT".to_owned(), "0".to_owned())].into(),
        };
        let defaults = Config {
            common: CommonConfig::with_ports(1, 2),
            service: (),
        };
        load_or_exit(&source, &defaults);
        // Reaching this line is the failure the parent reports (status 0).
        return;
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "config_exit::a_bad_config_exits_64_naming_the_key",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("configuration error: server.concurrency_limit: must be > 0"),
        "{stderr}"
    );
}
