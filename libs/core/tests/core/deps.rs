//! The architecture invariants on dependencies: no async, RPC, database or
//! dataframe crate in the normal dependency tree of the domain crates (core,
//! indicators, the strategy interface, strategies, sim, analytics, regimes), and
//! strategies never depend on the engine that runs them.

use std::process::Command;

/// Crate names in the normal dependency tree of `package`.
fn normal_tree(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            package,
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
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(
        names.iter().any(|n| n == package),
        "unexpected tree output for {package}: {names:?}"
    );
    names
}

const DOMAIN: &[&str] = &[
    "grodt-core",
    "grodt-indicators",
    "grodt-strategy-api",
    "grodt-strategies",
    "grodt-sim",
    "grodt-analytics",
    "grodt-regimes",
    "grodt-sweep",
    "grodt-optimize",
    "grodt-paper",
    "grodt-portfolio",
    "grodt-risk-rules",
];

const BANNED: &[&str] = &["tokio", "tonic", "prost", "sqlx", "redis", "polars"];

#[test]
fn domain_crates_have_no_heavy_dependencies() {
    for package in DOMAIN {
        let names = normal_tree(package);
        for banned in BANNED {
            let hit = names
                .iter()
                .find(|n| *n == banned || n.starts_with(&format!("{banned}-")));
            assert!(hit.is_none(), "{package} depends on {banned}: {hit:?}");
        }
    }
}

#[test]
fn core_keeps_exact_money() {
    assert!(
        normal_tree("grodt-core")
            .iter()
            .any(|n| n == "rust_decimal")
    );
}

#[test]
fn strategies_do_not_depend_on_the_engine() {
    for package in ["grodt-strategy-api", "grodt-strategies"] {
        let names = normal_tree(package);
        assert!(
            !names.iter().any(|n| n == "grodt-sim"),
            "{package} depends on grodt-sim"
        );
    }
}
