//! Deterministic client order ids: the same instance and the same order of
//! its strategy always get the same id, so an intent decided again after a
//! redelivery or a restart is the same order downstream, never a second one.

use grodt_core::OrderId;

/// Longest client order id (`OrderSpec.client_order_id`).
pub const MAX_LEN: usize = 64;

/// The client order id of order `id` of strategy instance `instance`:
/// `<instance>-<id>`; an instance id too long for that keeps its first
/// characters and a 16-hex-digit FNV-1a hash of the whole id, so ids of
/// distinct instances stay distinct.
pub fn client_order_id(instance: &str, id: OrderId) -> String {
    let suffix = format!("-{}", id.0);
    if instance.len() + suffix.len() <= MAX_LEN {
        return format!("{instance}{suffix}");
    }
    let hash = format!("{:016x}", fnv1a(instance.as_bytes()));
    // instance ids are ASCII ([A-Za-z0-9_-]), so byte slicing is safe.
    let keep = MAX_LEN - suffix.len() - hash.len() - 1;
    let head = instance.get(..keep).unwrap_or(instance);
    format!("{head}_{hash}{suffix}")
}

/// The client order ids of a bracket's exits, derived from the entry's.
pub fn bracket_exit_ids(entry: &str) -> (String, String) {
    (format!("{entry}-tp"), format!("{entry}-sl"))
}

/// Whether `id` is a usable client order id: 1..64 chars of `[A-Za-z0-9_-]`
/// (room for the bracket suffix is the submitter's business).
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 64-bit FNV-1a: tiny, stable across builds and platforms, and only used
/// to keep shortened ids distinct (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_instances_read_plainly_and_long_ones_stay_distinct_and_short() {
        assert_eq!(client_order_id("sma-1", OrderId(7)), "sma-1-7");
        let a = "a".repeat(64);
        let mut b = "a".repeat(63);
        b.push('b');
        let (x, y) = (
            client_order_id(&a, OrderId(u64::MAX)),
            client_order_id(&b, OrderId(u64::MAX)),
        );
        assert_ne!(x, y);
        for id in [&x, &y] {
            assert!(is_valid(id), "{id}");
        }
        assert_eq!(
            client_order_id(&a, OrderId(3)),
            client_order_id(&a, OrderId(3))
        );
    }

    #[test]
    fn validity() {
        assert!(is_valid("abc_DEF-09"));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid(&"x".repeat(65)));
    }
}
