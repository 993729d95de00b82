//! f64 fields serialized as their shortest round-trip text (`"0.1"`), so a
//! saved search state restores bit for bit whatever the serde format's float
//! parsing (serde_json's default parser may be off by an ulp). Numbers are
//! accepted too, for hand-written input.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

struct F64Visitor;

impl Visitor<'_> for F64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or its text")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.parse()
            .map_err(|_| E::custom(format!("{v:?} is not a number")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    #[allow(clippy::cast_precision_loss, reason = "hand-written integers")]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss, reason = "hand-written integers")]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

/// Serializes an f64 as text.
///
/// # Errors
/// The serializer's.
#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Deserializes an f64 from text or a number.
///
/// # Errors
/// Neither a number nor its text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(F64Visitor)
}

/// The same for `Option<f64>` (`null` for None).
pub mod option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Exact(#[serde(with = "super")] f64);

    /// Serializes an optional f64 as text or null.
    ///
    /// # Errors
    /// The serializer's.
    #[allow(clippy::ref_option, reason = "serde's signature")]
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(Exact).serialize(s)
    }

    /// Deserializes an optional f64 from text, a number or null.
    ///
    /// # Errors
    /// Neither null, a number nor its text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<Exact>::deserialize(d)?.map(|e| e.0))
    }
}

/// The same for `Vec<f64>`.
pub mod vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Exact(#[serde(with = "super")] f64);

    /// Serializes f64s as texts.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| Exact(*x)))
    }

    /// Deserializes f64s from texts or numbers.
    ///
    /// # Errors
    /// An element neither a number nor its text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Exact>::deserialize(d)?
            .into_iter()
            .map(|e| e.0)
            .collect())
    }
}
