//! Exact decimal text <-> scaled i64 conversion. No floating point anywhere;
//! the parsing itself is grodt-core's (`fixed::parse_written`), the one the CSV reader uses.

/// Why a decimal text could not be converted (grodt-core's, shared by every reader).
pub use grodt_core::fixed::TextError as FixedError;

/// Largest scale accepted: 10^18 still fits an i64.
pub const MAX_SCALE: u8 = 18;

/// Number of significant decimals in `text` (trailing zeros ignored), or None if it is not a decimal.
pub fn significant_decimals(text: &str) -> Option<u8> {
    grodt_core::fixed::parse_written(text.as_bytes())
        .ok()
        .map(|w| u8::try_from(w.decimals).unwrap_or(u8::MAX))
}

/// Parses decimal text exactly into `value * 10^scale` (grodt-core's byte parser).
pub fn parse_fixed(text: &str, scale: u8) -> Result<i64, FixedError> {
    grodt_core::fixed::parse_fixed_bytes(text.as_bytes(), scale)
}

/// Formats a scaled value as the shortest decimal text that denotes it exactly
/// (no trailing zeros, no dot for integers): the way the sample files write prices.
pub fn format_fixed(value: i64, scale: u8) -> String {
    let neg = value < 0;
    let abs = value.unsigned_abs();
    let pow = 10u64.pow(u32::from(scale));
    let int = abs / pow;
    let frac = abs % pow;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(&int.to_string());
    if frac != 0 {
        let f = format!("{frac:0width$}", width = usize::from(scale));
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_fixed("1.10785", 5), Ok(110_785));
        assert_eq!(parse_fixed("16", 2), Ok(1600));
        assert_eq!(parse_fixed("-0.5", 3), Ok(-500));
        assert_eq!(parse_fixed(".25", 2), Ok(25));
        assert_eq!(parse_fixed("61.20", 1), Ok(612));
        assert_eq!(
            parse_fixed("1.123", 2),
            Err(FixedError::ExcessPrecision {
                decimals: 3,
                scale: 2
            })
        );
        assert_eq!(parse_fixed("1e5", 2), Err(FixedError::Invalid));
        assert_eq!(parse_fixed("", 2), Err(FixedError::Empty));
        assert_eq!(parse_fixed(".", 2), Err(FixedError::Invalid));
        assert_eq!(
            parse_fixed("99999999999999999999", 0),
            Err(FixedError::Overflow)
        );
    }

    #[test]
    fn formats_shortest() {
        assert_eq!(format_fixed(110_785, 5), "1.10785");
        assert_eq!(format_fixed(1600, 2), "16");
        assert_eq!(format_fixed(-500, 3), "-0.5");
        assert_eq!(format_fixed(7, 3), "0.007");
        assert_eq!(significant_decimals("61.20"), Some(1));
        assert_eq!(significant_decimals("abc"), None);
    }

    proptest! {
        #[test]
        fn round_trips(v in -1_000_000_000_000i64..1_000_000_000_000, scale in 0u8..8) {
            let text = format_fixed(v, scale);
            prop_assert_eq!(parse_fixed(&text, scale), Ok(v));
        }
    }
}
