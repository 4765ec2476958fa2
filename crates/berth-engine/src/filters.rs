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
