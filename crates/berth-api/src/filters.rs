//! The `filters` query parameter: JSON in either the current form
//! `{"label":{"a=b":true}}` or the legacy form `{"label":["a=b"]}`, parsed
//! into the engine's [`Filters`]. Which filter names an endpoint accepts is
//! the engine's decision.

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::Filters;

use crate::error::ApiError;

/// Parses a `filters` value; empty means no filters. Malformed JSON is a
/// 400 "invalid filter", as in dockerd.
pub fn parse_filters(raw: &str) -> Result<Filters, ApiError> {
    if raw.is_empty() {
        return Ok(Filters::default());
    }
    // dockerd keeps a set per name and ignores the booleans: every key of
    // the inner map is a value, whatever it maps to.
    if let Ok(sets) = serde_json::from_str::<BTreeMap<String, Option<BTreeMap<String, bool>>>>(raw)
    {
        return Ok(Filters(
            sets.into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default().into_keys().collect()))
                .collect(),
        ));
    }
    if let Ok(lists) = serde_json::from_str::<BTreeMap<String, Option<Vec<String>>>>(raw) {
        return Ok(Filters(
            lists
                .into_iter()
                .map(|(k, v)| {
                    let set: BTreeSet<String> = v.unwrap_or_default().into_iter().collect();
                    (k, set.into_iter().collect())
                })
                .collect(),
        ));
    }
    Err(ApiError::invalid("invalid filter"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn f(pairs: &[(&str, &[&str])]) -> Filters {
        Filters(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn empty_is_no_filters() {
        assert_eq!(parse_filters("").unwrap(), Filters::default());
        assert_eq!(parse_filters("{}").unwrap(), Filters::default());
    }

    #[test]
    fn parses_current_form() {
        let got =
            parse_filters(r#"{"dangling":{"true":true},"label":{"a=b":true,"c":true}}"#).unwrap();
        assert_eq!(got, f(&[("dangling", &["true"]), ("label", &["a=b", "c"])]));
    }

    #[test]
    fn parses_legacy_form_and_dedups() {
        let got = parse_filters(r#"{"reference":["b*","a","a"]}"#).unwrap();
        assert_eq!(got, f(&[("reference", &["a", "b*"])]));
    }

    #[test]
    fn malformed_is_400_invalid_filter() {
        for raw in [
            "{",
            "[]",
            r#"{"a":"b"}"#,
            r#"{"a":{"b":"c"}}"#,
            r#"{"a":[1]}"#,
            "dangling=true",
        ] {
            let err = parse_filters(raw).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{raw}");
            assert_eq!(err.message(), "invalid filter");
        }
    }
}
