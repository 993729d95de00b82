//! Validated names of streams, consumer groups and consumers.

use std::fmt;

use crate::error::BusError;

/// Longest accepted name; Redis would take more, but a name this long is a bug.
const MAX_NAME_LEN: usize = 200;

fn validate(field: &'static str, value: &str) -> Result<(), BusError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_NAME_LEN {
        Some("longer than 200 bytes")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        Some("only ASCII letters, digits and . - _ : are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BusError::InvalidName {
            field,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value`; the error names the field and says what is wrong.
            pub fn parse(value: impl Into<String>) -> Result<Self, BusError> {
                let value = value.into();
                validate($field, &value)?;
                Ok(Self(value))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = BusError;
            fn try_from(value: &str) -> Result<Self, BusError> {
                Self::parse(value)
            }
        }
    };
}

name_type!(
    /// A stream name such as `grodt.fills.v1` (without the key prefix).
    StreamName,
    "stream"
);
impl StreamName {
    /// Where entries of this stream that cannot be processed are moved:
    /// `<stream>.dead-letter`. Built from a valid name, so valid in charset;
    /// it may exceed the length limit by the suffix, which Redis does not mind.
    pub fn dead_letter(&self) -> StreamName {
        StreamName(format!("{}.dead-letter", self.0))
    }
}

name_type!(
    /// A consumer group, named after the consuming service (`backtest-worker`).
    GroupName,
    "group"
);
name_type!(
    /// A consumer inside a group, named after the instance (host or pod name).
    ConsumerName,
    "consumer"
);

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::error::{Classify, ErrorKind};

    #[test]
    fn accepts_convention_names() {
        assert_eq!(
            StreamName::parse("grodt.backtest-jobs.v1")
                .unwrap()
                .as_str(),
            "grodt.backtest-jobs.v1"
        );
        GroupName::parse("backtest-worker").unwrap();
        ConsumerName::parse("worker-7f9c:pod_1").unwrap();
    }

    #[test]
    fn rejections_name_the_field() {
        let err = StreamName::parse("").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("stream"), "{err}");
        let err = GroupName::parse("a b").unwrap_err();
        assert!(err.to_string().contains("group"), "{err}");
        let err = ConsumerName::parse("x".repeat(201)).unwrap_err();
        assert!(err.to_string().contains("consumer"), "{err}");
        assert!(StreamName::parse("x".repeat(200)).is_ok());
        assert!(StreamName::parse("a*").is_err());
        let s = StreamName::parse("grodt.fills.v1").unwrap();
        assert_eq!(s.dead_letter().as_str(), "grodt.fills.v1.dead-letter");
    }
}
