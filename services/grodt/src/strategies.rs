//! `grodt strategies`: every registered strategy with its parameters (type,
//! default, bounds, step, description) and the constraints between them, as
//! a table or, with `--json`, as the registry's schema in JSON.

use std::fmt::Write as _;

use grodt_strategies::registry::{self, ParamType, StrategySpec};

/// The listing as text (one block per strategy) or JSON (an array of specs).
///
/// # Errors
/// Only if the schema cannot be serialized (never for the built-in types).
pub fn render(json: bool) -> Result<String, serde_json::Error> {
    if json {
        let mut text = serde_json::to_string_pretty(registry::specs())?;
        text.push('\n');
        return Ok(text);
    }
    let mut out = String::new();
    for (i, s) in registry::specs().iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        table(&mut out, s);
    }
    Ok(out)
}

fn columns(kind: &ParamType) -> [String; 3] {
    match kind {
        ParamType::Int {
            min,
            max,
            default,
            step,
        } => [
            default.to_string(),
            format!("[{min}, {max}]"),
            step.to_string(),
        ],
        ParamType::Float {
            min,
            max,
            default,
            step,
        } => [
            default.to_string(),
            format!("[{min}, {max}]"),
            step.to_string(),
        ],
        ParamType::Decimal {
            min,
            max,
            default,
            step,
        } => [
            default.to_string(),
            format!("[{min}, {max}]"),
            step.to_string(),
        ],
        ParamType::Bool { default } => [default.to_string(), "true|false".into(), "-".into()],
        ParamType::Choice { options, default } => {
            [(*default).to_owned(), options.join("|"), "-".into()]
        }
        ParamType::Set { options, default } => [
            default.join(","),
            format!("subset of {}", options.join("|")),
            "-".into(),
        ],
    }
}

fn table(out: &mut String, s: &StrategySpec) {
    let _ = writeln!(out, "{}: {}", s.name, s.description);
    let mut rows = vec![[
        "parameter".to_owned(),
        "type".to_owned(),
        "default".to_owned(),
        "bounds".to_owned(),
        "step".to_owned(),
        "description".to_owned(),
    ]];
    for p in &s.params {
        let [default, bounds, step] = columns(&p.kind);
        rows.push([
            p.name.to_owned(),
            p.kind.name().to_owned(),
            default,
            bounds,
            step,
            p.description.to_owned(),
        ]);
    }
    let mut width = [0usize; 5];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    for r in &rows {
        let mut line = String::from("  ");
        for (c, w) in r.iter().zip(width) {
            let _ = write!(line, "{c:<w$}  ");
        }
        line.push_str(&r[5]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let constraints: Vec<String> = s.constraints.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "  constraints: {}",
        if constraints.is_empty() {
            "none".to_owned()
        } else {
            constraints.join(", ")
        }
    );
}
