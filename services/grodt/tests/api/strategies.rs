//! `grodt strategies` as a real process: every registered strategy with its
//! parameters, as a table and as JSON that matches the registry.

use std::process::Command;

const GRODT: &str = env!("CARGO_BIN_EXE_grodt");

fn strategies(args: &[&str]) -> String {
    let out = Command::new(GRODT)
        .arg("strategies")
        .args(args)
        .output()
        .expect("grodt runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_table_lists_every_parameter_with_type_default_bounds_step_and_constraints() {
    let text = strategies(&[]);
    let fast = text
        .lines()
        .find(|l| l.trim_start().starts_with("fast "))
        .unwrap_or_else(|| panic!("no fast row in\n{text}"));
    let cols: Vec<&str> = fast.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["fast", "int", "10", "[1,", "99999]", "1"],
        "{fast}"
    );
    assert!(text.contains("sma_cross: "), "{text}");
    assert!(text.contains("s1: "), "{text}");
    assert!(text.contains("constraints: fast < slow"), "{text}");
    assert!(text.contains("constraints: ema_fast < ema_slow"), "{text}");
    for spec in grodt_strategies::registry::specs() {
        for p in &spec.params {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{} ", p.name))),
                "{} missing in\n{text}",
                p.name
            );
        }
    }
}

#[test]
fn json_is_the_registry_schema() {
    let json: serde_json::Value = serde_json::from_str(&strategies(&["--json"])).expect("json");
    let specs = json.as_array().expect("array");
    assert_eq!(specs.len(), grodt_strategies::registry::specs().len());
    let sma = &specs[0];
    assert_eq!(sma["name"], "sma_cross");
    let slow = &sma["params"][1];
    assert_eq!(slow["name"], "slow");
    assert_eq!(slow["type"], "int");
    assert_eq!(slow["default"], 30);
    assert_eq!(slow["min"], 2);
    assert_eq!(slow["step"], 1);
    let fraction = &sma["params"][3];
    assert_eq!(fraction["type"], "decimal");
    // Decimals stay exact: text, not floats.
    assert_eq!(fraction["default"], "1");
    assert_eq!(
        sma["constraints"][0],
        serde_json::json!({"rule": "less_than", "left": "fast", "right": "slow"})
    );
    let s1 = specs.iter().find(|s| s["name"] == "s1").expect("s1");
    assert_eq!(s1["params"][5]["type"], "float");
}
