use std::collections::{HashMap, HashSet};

use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorProto};

use crate::descriptors::descriptor_set;

/// Name parts of fields that carry money, prices or quantities.
const MONEY_WORDS: [&str; 11] = [
    "price",
    "quantity",
    "cash",
    "equity",
    "pnl",
    "commission",
    "notional",
    "capital",
    "cost",
    "profit",
    "exposure",
];

fn grodt_files() -> Vec<FileDescriptorProto> {
    descriptor_set()
        .file
        .into_iter()
        .filter(|f| f.name().starts_with("grodt/"))
        .collect()
}

/// Leading comment of a top-level message's field, from source info.
fn field_comment(file: &FileDescriptorProto, msg: usize, field: usize) -> Option<String> {
    let path = [
        4,
        i32::try_from(msg).unwrap(),
        2,
        i32::try_from(field).unwrap(),
    ];
    file.source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.clone())
        .filter(|c| !c.trim().is_empty())
}

#[test]
fn money_prices_and_quantities_never_travel_as_floating_point() {
    let mut offenders = Vec::new();
    for file in grodt_files() {
        for msg in &file.message_type {
            for field in &msg.field {
                let name = field.name();
                let floating = matches!(field.r#type(), Type::Double | Type::Float);
                // Ratios (equity_fraction, profit_factor) are statistics, not amounts.
                let ratio = name.ends_with("_fraction") || name.ends_with("_factor");
                let moneyish = MONEY_WORDS.iter().any(|w| name.contains(w)) && !ratio;
                if floating && moneyish {
                    offenders.push(format!("{}.{}", msg.name(), name));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "floating-point money fields: {offenders:?}"
    );
}

#[test]
fn decimal_is_a_single_string_field() {
    let common = grodt_files()
        .into_iter()
        .find(|f| f.name() == "grodt/v1/common.proto")
        .unwrap();
    let decimal: &DescriptorProto = common
        .message_type
        .iter()
        .find(|m| m.name() == "Decimal")
        .unwrap();
    assert_eq!(decimal.field.len(), 1);
    assert_eq!(decimal.field[0].name(), "value");
    assert_eq!(decimal.field[0].r#type(), Type::String);
}

/// Full names (".grodt.v1.X") of the messages a field refers to, looking
/// through map entries to their value type.
fn referenced_types(msg: &DescriptorProto) -> Vec<String> {
    let direct = msg.field.iter();
    let via_maps = msg.nested_type.iter().flat_map(|n| n.field.iter());
    direct
        .chain(via_maps)
        .filter(|f| f.r#type() == Type::Message)
        .map(|f| f.type_name().to_owned())
        .collect()
}

#[test]
fn every_field_a_client_sends_documents_its_validation_rule() {
    let files = grodt_files();
    // ".grodt.v1.Name" -> (file, index of the top-level message)
    let mut index = HashMap::new();
    for (fi, file) in files.iter().enumerate() {
        for (mi, msg) in file.message_type.iter().enumerate() {
            index.insert(format!(".{}.{}", file.package(), msg.name()), (fi, mi));
        }
    }
    // Everything reachable from a request message is client input.
    let mut queue: Vec<String> = index
        .keys()
        .filter(|n| n.ends_with("Request"))
        .cloned()
        .collect();
    let mut seen = HashSet::new();
    let mut undocumented = Vec::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        // Map entries and well-known types are not ours to document.
        let Some(&(fi, mi)) = index.get(&name) else {
            continue;
        };
        let msg = &files[fi].message_type[mi];
        for (j, field) in msg.field.iter().enumerate() {
            let rule = field_comment(&files[fi], mi, j).is_some_and(|c| {
                let c = c.to_lowercase();
                c.contains("required") || c.contains("optional") || c.contains("output only")
            });
            if !rule {
                undocumented.push(format!("{}.{}", msg.name(), field.name()));
            }
        }
        queue.extend(referenced_types(msg));
    }
    assert!(
        seen.contains(".grodt.v1.CostModel"),
        "traversal reaches nested input"
    );
    undocumented.sort();
    assert!(
        undocumented.is_empty(),
        "input fields without a 'required'/'optional'/'output only' comment: {undocumented:?}"
    );
}

#[test]
fn every_event_payload_named_in_the_conventions_exists() {
    let events = grodt_files()
        .into_iter()
        .find(|f| f.name() == "grodt/v1/events.proto")
        .unwrap();
    let names: Vec<&str> = events.message_type.iter().map(|m| m.name()).collect();
    for payload in [
        "EventEnvelope",
        "BarEvent",
        "RegimeEvent",
        "OrderIntentEvent",
        "OrderEvent",
        "FillEvent",
        "RiskEvent",
        "BacktestJob",
        "BacktestResultEvent",
    ] {
        assert!(names.contains(&payload), "{payload} missing");
    }
    let envelope = events
        .message_type
        .iter()
        .find(|m| m.name() == "EventEnvelope")
        .unwrap();
    let fields: Vec<(&str, Type)> = envelope
        .field
        .iter()
        .map(|f| (f.name(), f.r#type()))
        .collect();
    assert_eq!(
        fields,
        [
            ("event_id", Type::String),
            ("event_type", Type::String),
            ("occurred_at", Type::Message),
            ("traceparent", Type::String),
            ("tracestate", Type::String),
            ("payload", Type::Bytes),
        ]
    );
}
