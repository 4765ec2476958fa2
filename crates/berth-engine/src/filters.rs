//! Docker's `filters` query parameter, after the API has parsed its JSON:
//! a map from filter name to the values given. Validation and matching
//! helpers shared by every list endpoint.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// Parsed filters: name → values (`{"label": ["a=b"], "dangling": ["true"]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Refuses filter names not in `allowed`, as dockerd does.
    pub fn validate(&self, allowed: &[&str]) -> Result<()> {
        for key in self.0.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter '{key}'"
                )));
            }
        }
        Ok(())
    }

    /// The values given for `name` (empty when absent).
    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether filter `name` was given at all.
    pub fn contains(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_empty())
    }

    /// A boolean filter (`dangling=true`); `Err` when the value is not a bool.
    pub fn get_bool(&self, name: &str) -> Result<Option<bool>> {
        let values = self.get(name);
        let mut result = None;
        for v in values {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{name}={v}'"
                    )))
                }
            };
            result = Some(b);
        }
        Ok(result)
    }

    /// Whether `labels` satisfy every `label=` filter (`key` or `key=value`).
    pub fn match_labels<'a>(&self, name: &str, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.get(name)
            .iter()
            .all(|want| match want.split_once('=') {
                Some((k, v)) => labels(k) == Some(v),
                None => labels(want).is_some(),
            })
    }
}

/// Parses a Docker timestamp filter value (`since`, `until`): Unix seconds
/// (with optional fraction), RFC 3339, a date, or a Go-style duration
/// (`10m`, `1h30m`) meaning that long ago. Returns Unix seconds.
pub fn parse_timestamp(value: &str) -> Result<i64> {
    let bad = || EngineError::InvalidParameter(format!("invalid timestamp or duration: {value:?}"));
    let v = value.trim();
    if let Ok(secs) = v.split('.').next().unwrap_or(v).parse::<i64>() {
        if v.split('.')
            .nth(1)
            .is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()))
        {
            return Ok(secs);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp());
    }
    let nanos = parse_go_duration(v).ok_or_else(bad)?;
    Ok(chrono::Utc::now().timestamp() - (nanos / 1_000_000_000) as i64)
}

/// `1h30m`, `10s`, `250ms` → nanoseconds.
fn parse_go_duration(s: &str) -> Option<u128> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Some(total as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(parse_timestamp("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_timestamp("1700000000.5").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000
        );
        let now = chrono::Utc::now().timestamp();
        assert!((parse_timestamp("1h30m").unwrap() - (now - 5400)).abs() < 5);
        assert!(parse_timestamp("soon").is_err());
    }
}
