//! Entry IDs: `namespace:name`, the address of every manifest entry.

use std::fmt;

use serde::{Serialize, Serializer};

/// A manifest entry's address, `namespace:name` (its `Display`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// The part before the colon.
    pub namespace: String,
    /// The part after the colon.
    pub name: String,
}

impl EntryId {
    /// `namespace:name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        EntryId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `ns:name`. A reference without a namespace is resolved in `default_namespace`, so
    /// entries can point at their neighbours by bare name.
    pub fn parse_in(reference: &str, default_namespace: &str) -> Result<Self, String> {
        let reference = reference.trim();
        let (namespace, name) = match reference.split_once(':') {
            Some((ns, name)) => (ns, name),
            None => (default_namespace, reference),
        };
        if namespace.is_empty() || name.is_empty() || name.contains(':') {
            return Err(format!(
                "`{reference}` is not an entry ID (expected `namespace:name`)"
            ));
        }
        Ok(EntryId::new(namespace, name))
    }

    /// Parses a fully qualified `ns:name`.
    pub fn parse(id: &str) -> Result<Self, String> {
        if !id.contains(':') {
            return Err(format!(
                "`{id}` is not an entry ID (expected `namespace:name`)"
            ));
        }
        Self::parse_in(id, "")
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

impl Serialize for EntryId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qualified_and_bare_references() {
        assert_eq!(
            EntryId::parse("myns:compute_worker").unwrap(),
            EntryId::new("myns", "compute_worker")
        );
        assert_eq!(
            EntryId::parse_in("wasm_binaries", "myns").unwrap(),
            EntryId::new("myns", "wasm_binaries")
        );
        assert_eq!(
            EntryId::parse_in("other:x", "myns").unwrap().to_string(),
            "other:x"
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", ":", "ns:", ":name", "a:b:c", "bare"] {
            assert!(EntryId::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
