//! [`Extra`]: the fields of a platform object that its Rust type does not name.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Fields of a platform object that its Rust type does not name, kept as they came so the
/// object is written back unchanged.
///
/// They are held as one compact JSON object (keys sorted), not as a map of values: a cached
/// customer carries a few dozen such fields that checks never read, and a map costs a tree
/// node and two allocations per field. Reading one parses it; they are rarely read.
///
/// ```
/// use atlas_actix::models::Extra;
/// use serde_json::json;
///
/// let mut extra = Extra::new();
/// extra.insert("stripeId", json!("cus_123"));
/// assert_eq!(extra.get("stripeId"), Some(json!("cus_123")));
/// assert_eq!(extra.to_string(), r#"{"stripeId":"cus_123"}"#);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Extra(Option<Box<str>>);

impl Extra {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fields, as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.0
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }

    /// Whether the field is there.
    pub fn contains_key(&self, key: &str) -> bool {
        self.to_map().contains_key(key)
    }

    /// Sets a field; returns its previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let mut map = self.to_map();
        let previous = map.insert(key.into(), value);
        *self = Self::from(map);
        previous
    }

    /// Removes a field; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let mut map = self.to_map();
        let removed = map.remove(key);
        if removed.is_some() {
            *self = Self::from(map);
        }
        removed
    }

    /// These fields without `key`.
    pub fn without(&self, key: &str) -> Self {
        let mut extra = self.clone();
        extra.remove(key);
        extra
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Bytes held on the heap, for cache weighing.
    pub(crate) fn heap_size(&self) -> usize {
        self.0.as_deref().map_or(0, str::len)
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        if map.is_empty() {
            return Self(None);
        }
        // A map of JSON values always serialises.
        Self(serde_json::to_string(&map).ok().map(String::into_boxed_str))
    }
}

impl FromIterator<(String, Value)> for Extra {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(fields: I) -> Self {
        Self::from(fields.into_iter().collect::<Map<_, _>>())
    }
}

/// The fields as a JSON object: `{}` when there are none.
impl std::fmt::Display for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("{}"))
    }
}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extra({self})")
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize, Deserialize)]
    struct Object {
        id: String,
        #[serde(flatten)]
        extra: Extra,
    }

    #[test]
    fn unknown_fields_round_trip_unchanged() {
        let json = json!({"id": "a", "n": 29, "x": 0.5, "nested": {"b": [1, null]}, "s": "é\n"});
        let object: Object = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(object.extra.get("n"), Some(json!(29)));
        assert_eq!(serde_json::to_value(&object).unwrap(), json);
        let bare: Object = serde_json::from_value(json!({"id": "b"})).unwrap();
        assert!(bare.extra.is_empty());
        assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"id": "b"}));
    }

    #[test]
    fn edits_keep_it_canonical() {
        let mut extra: Extra = [("b".to_owned(), json!(1))].into_iter().collect();
        extra.insert("a", json!(2));
        assert_eq!(extra.to_string(), r#"{"a":2,"b":1}"#);
        assert_eq!(extra.remove("a"), Some(json!(2)));
        assert_eq!(extra.without("b"), Extra::new());
        assert_eq!(extra.remove("missing"), None);
    }
}
