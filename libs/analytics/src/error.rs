//! The one error type of this crate.

/// Why a metric could not be computed. Every variant names the input at fault
/// and is a fault of the caller's input, so every one classifies as
/// `ErrorKind::InvalidArgument`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    /// An input series is shorter than the computation needs.
    #[error("{input}: needs at least {min} values, got {actual}")]
    TooShort {
        /// Name of the input, e.g. `equity`.
        input: &'static str,
        /// Minimum length required.
        min: usize,
        /// Length supplied.
        actual: usize,
    },
    /// Two series that must line up have different lengths.
    #[error("{input}: length {actual} does not match {against} (expected {expected})")]
    LengthMismatch {
        /// The series whose length is wrong, e.g. `labels`.
        input: &'static str,
        /// The series it must line up with, e.g. `returns`.
        against: &'static str,
        /// Length required.
        expected: usize,
        /// Length supplied.
        actual: usize,
    },
    /// A value is NaN or infinite.
    #[error("{input}[{index}]: value is not finite")]
    NonFinite {
        /// Name of the input.
        input: &'static str,
        /// Position of the value.
        index: usize,
    },
    /// An equity value is zero or negative, so returns are undefined.
    #[error("{input}[{index}]: equity must be positive, got {value}")]
    NonPositive {
        /// Name of the input.
        input: &'static str,
        /// Position of the value.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// Timestamps do not strictly increase.
    #[error("{input}[{index}]: timestamp does not increase")]
    Unordered {
        /// Name of the input.
        input: &'static str,
        /// Position of the first timestamp not above its predecessor.
        index: usize,
    },
    /// A trade has an impossible field.
    #[error("trades[{index}].{field}: {reason}")]
    InvalidTrade {
        /// Position of the trade.
        index: usize,
        /// Field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("config.{field}: {reason}")]
    InvalidConfig {
        /// Field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A function parameter is out of range.
    #[error("{name}: {reason}")]
    InvalidParameter {
        /// Parameter at fault.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, AnalyticsError>;

/// Fails with [`AnalyticsError::NonFinite`] at the first NaN or infinity.
pub(crate) fn check_finite(input: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(AnalyticsError::NonFinite { input, index }),
        None => Ok(()),
    }
}

pub(crate) fn check_len(input: &'static str, values: &[f64], min: usize) -> Result<()> {
    if values.len() < min {
        return Err(AnalyticsError::TooShort {
            input,
            min,
            actual: values.len(),
        });
    }
    Ok(())
}

impl grodt_core::error::Classify for AnalyticsError {
    fn kind(&self) -> grodt_core::error::ErrorKind {
        grodt_core::error::ErrorKind::InvalidArgument
    }
}
