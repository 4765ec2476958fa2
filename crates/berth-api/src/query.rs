//! Query parameters with dockerd's form semantics: keys may repeat
//! (`names=a&names=b`, `changes=...`), and booleans are true for anything
//! but "", "0", "no", "false" and "none".

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The decoded query string of a request, in order, repeats kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes a raw query string (`a=1&b=x%20y`).
    pub fn parse(raw: &str) -> Result<Query, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map(Query)
            .map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))
    }

    /// The first value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, or "" (Go's `Form.Get`).
    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// The first value of `key` when given and not empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `key` appears at all (even empty).
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// dockerd's `BoolValue`: absent or a false-ish word is false.
    pub fn bool(&self, key: &str) -> bool {
        !matches!(
            self.str(key).trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        )
    }

    /// dockerd's `BoolValueOrDefault`: `default` only when the key is absent.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        if self.contains(key) {
            self.bool(key)
        } else {
            default
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::parse(parts.uri.query().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_repeated_keys_in_order() {
        let q = Query::parse("names=a&names=b%2Fc&x=1").unwrap();
        assert_eq!(q.all("names"), vec!["a", "b/c"]);
        assert_eq!(q.get("x"), Some("1"));
        assert_eq!(q.get("y"), None);
        assert_eq!(q.str("y"), "");
    }

    #[test]
    fn booleans_follow_dockerd() {
        let q = Query::parse("a=1&b=0&c=false&d=none&e=&f=True&g=yes&h=no").unwrap();
        assert!(q.bool("a"));
        assert!(!q.bool("b"));
        assert!(!q.bool("c"));
        assert!(!q.bool("d"));
        assert!(!q.bool("e"));
        assert!(q.bool("f"));
        assert!(q.bool("g"));
        assert!(!q.bool("h"));
        assert!(!q.bool("missing"));
        assert!(q.bool_or("missing", true));
        assert!(!q.bool_or("b", true));
    }
}
