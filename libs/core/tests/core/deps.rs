//! The architecture invariant: no async, RPC, database or dataframe crate in the
//! normal dependency tree of the domain core.

use std::process::Command;

#[test]
fn core_has_no_heavy_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "grodt-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("rust_decimal"),
        "unexpected tree output:\n{tree}"
    );
    for banned in ["tokio", "tonic", "prost", "sqlx", "redis", "polars"] {
        let hit = tree.lines().find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|name| name == banned || name.starts_with(&format!("{banned}-")))
        });
        assert!(hit.is_none(), "grodt-core depends on {banned}: {hit:?}");
    }
}
