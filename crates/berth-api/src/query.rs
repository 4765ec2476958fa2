//! Query parameters with dockerd's form semantics: keys may repeat
//! (`names=a&names=b`, `changes=...`), booleans are true for anything
//! but "", "0", "no", "false" and "none", and numbers fail with the text
//! of Go's `strconv` errors, which clients show verbatim.

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

    /// Go's `strconv.Atoi` of `key` (`t`, `limit`): `None` when absent or
    /// empty, a 400 worded like Go's error when not an integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let raw = self.str(key);
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse::<i64>().map(Some).map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            ApiError::invalid(format!("strconv.Atoi: parsing {raw:?}: {why}"))
        })
    }

    /// dockerd's `Uint32Value` (terminal sizes): required, decimal, no
    /// sign; the error is Go's bare reason, which callers wrap.
    pub fn uint32(&self, key: &str) -> Result<u32, &'static str> {
        let raw = self.str(key);
        let (digits, negative) = match raw.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (raw, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid syntax");
        }
        let n = digits.parse::<u32>().map_err(|_| "value out of range")?;
        if negative {
            return Err("value out of range");
        }
        Ok(n)
    }

    /// `h` and `w` of the resize endpoints, refused in dockerd's words. A
    /// terminal's size is 16-bit; larger values saturate.
    pub fn terminal_size(&self) -> Result<(u16, u16), ApiError> {
        let size = |key: &str, what: &str| {
            self.uint32(key)
                .map(|n| u16::try_from(n).unwrap_or(u16::MAX))
                .map_err(|why| {
                    ApiError::invalid(format!("invalid resize {what} {:?}: {why}", self.str(key)))
                })
        };
        Ok((size("h", "height")?, size("w", "width")?))
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

    #[test]
    fn booleans_accept_every_spelling_clients_send() {
        // docker CLI sends 1, docker-py "True"/"true", bollard "true".
        let q = Query::parse("a=TRUE&b=%20true%20&c=FALSE&d=No&e=NONE&f=t").unwrap();
        assert!(q.bool("a"));
        assert!(q.bool("b"));
        assert!(!q.bool("c"));
        assert!(!q.bool("d"));
        assert!(!q.bool("e"));
        assert!(q.bool("f"));
    }

    #[test]
    fn integers_fail_with_go_wording() {
        let q = Query::parse("t=10&n=-3&p=%2B4&e=&x=ten&big=99999999999999999999").unwrap();
        assert_eq!(q.int("t").unwrap(), Some(10));
        assert_eq!(q.int("n").unwrap(), Some(-3));
        assert_eq!(q.int("p").unwrap(), Some(4));
        assert_eq!(q.int("e").unwrap(), None);
        assert_eq!(q.int("missing").unwrap(), None);
        let err = q.int("x").unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message(),
            r#"strconv.Atoi: parsing "ten": invalid syntax"#
        );
        assert_eq!(
            q.int("big").unwrap_err().message(),
            r#"strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
    }

    #[test]
    fn terminal_sizes_parse_like_uint32_value() {
        let q = Query::parse("h=24&w=-80&x=%2B1&y=&z=4294967296&n=-0").unwrap();
        assert_eq!(q.uint32("h"), Ok(24));
        assert_eq!(q.uint32("w"), Err("value out of range"));
        assert_eq!(q.uint32("x"), Err("invalid syntax"));
        assert_eq!(q.uint32("y"), Err("invalid syntax"));
        assert_eq!(q.uint32("missing"), Err("invalid syntax"));
        assert_eq!(q.uint32("z"), Err("value out of range"));
        assert_eq!(q.uint32("n"), Err("value out of range"));
    }

    #[test]
    fn terminal_size_errors_name_the_dimension() {
        let q = Query::parse("h=40&w=120").unwrap();
        assert_eq!(q.terminal_size().unwrap(), (40, 120));
        let q = Query::parse("h=40&w=wide").unwrap();
        assert_eq!(
            q.terminal_size().unwrap_err().message(),
            r#"invalid resize width "wide": invalid syntax"#
        );
        let q = Query::parse("w=1").unwrap();
        assert_eq!(
            q.terminal_size().unwrap_err().message(),
            r#"invalid resize height "": invalid syntax"#
        );
        let q = Query::parse("h=70000&w=1").unwrap();
        assert_eq!(q.terminal_size().unwrap(), (u16::MAX, 1));
    }
}
