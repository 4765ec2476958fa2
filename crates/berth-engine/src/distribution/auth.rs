//! Registry credentials and how they become an `Authorization` header:
//! the `X-Registry-Auth` header (base64url JSON, what the docker CLI sends),
//! the `WWW-Authenticate` challenge of a registry's `/v2/` (Basic, or
//! Bearer with a token service), and token requests for the scopes an
//! operation needs.

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Credentials for one registry, as `docker login` and `X-Registry-Auth`
/// carry them (Docker's `registry.AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(username:password)`, an older spelling of the two above.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(
        default,
        rename = "serveraddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_address: String,
    /// An OAuth refresh token a registry handed out at login.
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
    /// A bearer token to send to the registry as is.
    #[serde(
        default,
        rename = "registrytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub registry_token: String,
}

impl AuthConfig {
    /// Decodes an `X-Registry-Auth` header. Like dockerd, an unreadable
    /// header counts as no credentials rather than an error.
    pub fn from_header(value: Option<&str>) -> AuthConfig {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return AuthConfig::default();
        };
        let decoded = base64::engine::general_purpose::URL_SAFE
            .decode(v)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(v));
        match decoded
            .ok()
            .and_then(|raw| serde_json::from_slice::<AuthConfig>(&raw).ok())
        {
            Some(a) => a.normalized(),
            None => {
                tracing::debug!("ignoring an X-Registry-Auth header that does not decode");
                AuthConfig::default()
            }
        }
    }

    /// Fills username and password from `auth` when only that is given.
    pub fn normalized(mut self) -> AuthConfig {
        if self.username.is_empty() && !self.auth.is_empty() {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&self.auth) {
                if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                    self.username = u.to_string();
                    self.password = p.trim_end_matches('\0').to_string();
                }
            }
        }
        self
    }

    /// Username and password, when both are there.
    pub fn basic(&self) -> Option<(&str, &str)> {
        (!self.username.is_empty()).then_some((self.username.as_str(), self.password.as_str()))
    }

    /// Whether any credential is present.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.identity_token.is_empty() && self.registry_token.is_empty()
    }
}

/// What a registry's `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication needed.
    None,
    /// HTTP basic authentication on every request.
    Basic,
    /// Tokens from `realm` for `service`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header (the first scheme berth knows).
pub fn parse_challenge(header: &str) -> Challenge {
    let trimmed = header.trim();
    let (scheme, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => {
            let params = parse_params(rest);
            match params.get("realm") {
                Some(realm) => Challenge::Bearer {
                    realm: realm.clone(),
                    service: params.get("service").cloned(),
                },
                None => Challenge::None,
            }
        }
        _ => Challenge::None,
    }
}

/// `realm="https://x",service="y"` → a map; values may be quoted.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A token service's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
}

impl TokenResponse {
    /// The token, whichever field carried it.
    pub fn into_token(self) -> String {
        if self.token.is_empty() {
            self.access_token
        } else {
            self.token
        }
    }
}

/// `Basic <base64(user:pass)>`.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_docker_cli_header() {
        let json = r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}"#;
        let header = base64::engine::general_purpose::URL_SAFE.encode(json);
        let a = AuthConfig::from_header(Some(&header));
        assert_eq!(a.basic(), Some(("u", "p")));
        assert_eq!(a.server_address, "127.0.0.1:5000");
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert_eq!(AuthConfig::from_header(Some(&unpadded)), a);
        assert!(AuthConfig::from_header(Some("!!!")).is_empty());
        assert!(AuthConfig::from_header(None).is_empty());
        // `{}` base64url-encoded is what the CLI sends without credentials.
        assert!(AuthConfig::from_header(Some("e30=")).is_empty());
    }

    #[test]
    fn auth_field_fills_username_and_password() {
        let a = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            ..Default::default()
        }
        .normalized();
        assert_eq!(a.basic(), Some(("alice", "s3:cret")));
    }

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            parse_challenge("Bearer realm=http://127.0.0.1/t"),
            Challenge::Bearer {
                realm: "http://127.0.0.1/t".into(),
                service: None
            }
        );
        assert_eq!(parse_challenge("Negotiate"), Challenge::None);
    }
}
