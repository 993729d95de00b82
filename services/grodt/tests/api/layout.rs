//! The workspace layout the architecture promises: no service crate depends
//! on another (shared code lives in libraries); only `grodt`, the all-in-one
//! runner, depends on services.

use std::path::{Path, PathBuf};

fn package_name(manifest: &str) -> Option<String> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find_map(|l| {
            l.trim()
                .strip_prefix("name = ")
                .map(|n| n.trim_matches('"').to_owned())
        })
}

/// Names of the crates a manifest depends on (normal, dev and build).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim().split('.').next().unwrap_or("").trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn no_service_crate_depends_on_another() {
    let services = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifests: Vec<(String, String)> = std::fs::read_dir(&services)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .map(|p: PathBuf| {
            let text = std::fs::read_to_string(Path::new(&p)).unwrap();
            (package_name(&text).expect("package name"), text)
        })
        .collect();
    assert!(
        manifests.len() >= 8,
        "every service found: {}",
        manifests.len()
    );
    let names: Vec<&str> = manifests.iter().map(|(n, _)| n.as_str()).collect();
    for (name, text) in &manifests {
        if name == "grodt" {
            continue;
        }
        let deps = dependencies(text);
        assert!(
            deps.iter().any(|d| d == "grodt-kit"),
            "{name}: parsed {deps:?}"
        );
        for d in &deps {
            assert!(
                !names.contains(&d.as_str()),
                "{name} depends on the service crate {d}: move the shared code into a library"
            );
        }
    }
}
