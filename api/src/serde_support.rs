//! Serde mappings for the few Kubernetes JSON shapes that proto3 cannot say
//! directly: IntOrString and numeric resource quantities.

/// IntOrString stored as a string: `80` and `"http"` both decode; digits
/// encode back as a number, as Kubernetes writes them.
pub mod int_or_string {
    use serde::{de, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        match v.parse::<i64>() {
            // "+5" and "007" stay strings: only canonical digits are numbers.
            Ok(n) if !(v.starts_with('+') || (v.starts_with('0') && v.len() > 1)) => {
                s.serialize_i64(n)
            }
            _ => s.serialize_str(v),
        }
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Visitor)
    }
}

/// A map of resource quantities (`cpu: 1`, `memory: 64Mi`), numbers taken as
/// their decimal text.
pub fn quantity_map<'de, D>(d: D) -> Result<std::collections::HashMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Quantity {
        Int(i64),
        Float(f64),
        Text(String),
    }
    let raw: Option<std::collections::HashMap<String, Quantity>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Quantity::Int(n) => n.to_string(),
                Quantity::Float(f) => f.to_string(),
                Quantity::Text(s) => s,
            };
            (k, v)
        })
        .collect())
}
