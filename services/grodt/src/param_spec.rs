//! The `--param` syntax `grodt sweep` and `grodt optimize` share:
//! `NAME=MIN..MAX[:STEP]` (a range) or `NAME=A,B,C` (the values listed). One
//! reader of the text; each command turns the parts into its own range type.

/// What a `--param` spec says, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec<'a> {
    /// `MIN..MAX[:STEP]`.
    Span {
        /// The lower bound.
        min: &'a str,
        /// The upper bound.
        max: &'a str,
        /// The step, when given.
        step: Option<&'a str>,
    },
    /// `A,B,C`: none of them empty.
    Values(Vec<String>),
}

/// Splits `NAME=...` into the name and what it says; the error says why
/// (the caller names the flag and quotes the spec).
pub fn split(spec: &str) -> Result<(&str, Spec<'_>), &'static str> {
    let (name, range) = spec
        .split_once('=')
        .ok_or("want NAME=MIN..MAX[:STEP] or NAME=A,B,C")?;
    if name.is_empty() {
        return Err("the name is empty");
    }
    if let Some((min, rest)) = range.split_once("..") {
        let (max, step) = rest
            .split_once(':')
            .map_or((rest, None), |(h, s)| (h, Some(s)));
        return Ok((name, Spec::Span { min, max, step }));
    }
    let values: Vec<String> = range.split(',').map(str::to_owned).collect();
    if values.iter().any(String::is_empty) {
        return Err("an empty value");
    }
    Ok((name, Spec::Values(values)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_value_lists_split_by_their_syntax() {
        assert_eq!(
            split("fast=5..50:5"),
            Ok((
                "fast",
                Spec::Span {
                    min: "5",
                    max: "50",
                    step: Some("5")
                }
            ))
        );
        assert_eq!(
            split("k=1..2"),
            Ok((
                "k",
                Spec::Span {
                    min: "1",
                    max: "2",
                    step: None
                }
            ))
        );
        assert_eq!(
            split("mode=a,b"),
            Ok(("mode", Spec::Values(vec!["a".into(), "b".into()])))
        );
        assert!(split("fast").is_err());
        assert_eq!(split("=1..2"), Err("the name is empty"));
        assert_eq!(split("x=a,,b"), Err("an empty value"));
    }
}
