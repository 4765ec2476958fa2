//! One repository on one registry endpoint, spoken to over the OCI
//! distribution API: the `/v2/` ping that picks the authentication scheme,
//! tokens per scope set, manifests, blobs (GET, HEAD, uploads, cross-repo
//! mounts), and the registry's errors worded as dockerd words them
//! (`Get "url": ...`, `manifest unknown: ...`, `no basic auth credentials`).

use std::collections::HashMap;
use std::error::Error as _;

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::auth::{basic_header, parse_challenge, AuthConfig, Challenge, TokenResponse};
use super::registries::Endpoint;

/// One error of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// A failure talking to a registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No answer: connection refused, TLS failure, reset. Another endpoint
    /// (HTTP after HTTPS, the hub after a mirror) may still work.
    #[error("{method} \"{url}\": {cause}")]
    Transport {
        method: String,
        url: String,
        cause: String,
    },
    /// The registry wants basic authentication and no credentials came.
    #[error("{method} \"{url}\": no basic auth credentials")]
    NoBasicCredentials { method: String, url: String },
    /// The registry answered with its error codes.
    #[error("{}", api_text(.errors, *.status))]
    Api { status: u16, errors: Vec<ApiError> },
    /// Anything else the registry did that berth cannot use.
    #[error("{0}")]
    Protocol(String),
}

/// dockerd's errcode text: `manifest unknown: manifest unknown`.
fn api_text(errors: &[ApiError], status: u16) -> String {
    match errors.first() {
        Some(e) => {
            let code = e.code.to_ascii_lowercase().replace('_', " ");
            if e.message.is_empty() {
                code
            } else {
                format!("{code}: {}", e.message)
            }
        }
        None => format!(
            "received unexpected HTTP status: {status} {}",
            StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
        ),
    }
}

impl RegistryError {
    /// Whether the next endpoint is worth trying after this.
    pub fn is_transport(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }

    /// The first registry error code (`MANIFEST_UNKNOWN`), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Api { errors, .. } => errors.first().map(|e| e.code.as_str()),
            _ => None,
        }
    }

    /// Whether the registry answered 401/403 or wanted credentials.
    pub fn is_auth(&self) -> bool {
        match self {
            RegistryError::NoBasicCredentials { .. } => true,
            RegistryError::Api { status, .. } => *status == 401 || *status == 403,
            _ => false,
        }
    }
}

/// The innermost cause of a transport error, in the words Go's net
/// package uses where they differ.
pub fn transport_cause(e: &reqwest::Error, host: &str) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!("dial tcp {host}: connect: connection refused")
                }
                std::io::ErrorKind::ConnectionReset => {
                    return format!("read tcp {host}: read: connection reset by peer")
                }
                std::io::ErrorKind::UnexpectedEof => return "unexpected EOF".to_string(),
                _ => {}
            }
        }
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        return format!("{last} (timeout)");
    }
    if e.is_body() || e.is_decode() {
        // A body cut short: the connection closed before the length the
        // registry announced.
        return "unexpected EOF".to_string();
    }
    last
}

/// How requests to this repository are authorized.
enum Authorizer {
    None,
    Basic(Option<String>),
    Bearer(Box<BearerAuth>),
}

/// A token service and what to present to it.
struct BearerAuth {
    realm: String,
    service: Option<String>,
    auth: AuthConfig,
    /// Tokens by scope set.
    tokens: Mutex<HashMap<String, String>>,
}

/// One repository (`library/busybox`) on one endpoint.
pub struct RepoClient {
    endpoint: Endpoint,
    /// `host:port` for Go-style error texts.
    host: String,
    /// The repository path on the registry.
    pub repo: String,
    /// `pull` or `pull,push`.
    actions: &'static str,
    authorizer: Authorizer,
}

/// The media types berth accepts for a manifest, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn method_name(m: &Method) -> String {
    // Go spells methods in error texts as `Get`, `Head`, `Put`...
    let s = m.as_str();
    let mut out = s[..1].to_string();
    out.push_str(&s[1..].to_ascii_lowercase());
    out
}

impl RepoClient {
    /// Pings `endpoint`'s `/v2/` and prepares authorization for `repo`
    /// with `actions` (`pull` or `pull,push`). Credentials are never sent
    /// to mirrors.
    pub async fn connect(
        endpoint: &Endpoint,
        repo: &str,
        actions: &'static str,
        auth: &AuthConfig,
    ) -> Result<RepoClient, RegistryError> {
        let url = format!("{}/v2/", endpoint.base);
        let host = reqwest::Url::parse(&endpoint.base)
            .ok()
            .map(|u| {
                let h = u.host_str().unwrap_or_default().to_string();
                let port = u.port_or_known_default().unwrap_or(443);
                format!("{h}:{port}")
            })
            .unwrap_or_default();
        let resp = endpoint
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| RegistryError::Transport {
                method: "Get".into(),
                url: url.clone(),
                cause: transport_cause(&e, &host),
            })?;
        let challenge = if resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(parse_challenge)
                .find(|c| *c != Challenge::None)
                .unwrap_or(Challenge::None)
        } else {
            Challenge::None
        };
        let auth = if endpoint.mirror {
            AuthConfig::default()
        } else {
            auth.clone()
        };
        let authorizer = match challenge {
            Challenge::None => Authorizer::None,
            Challenge::Basic => Authorizer::Basic(auth.basic().map(|(u, p)| basic_header(u, p))),
            Challenge::Bearer { realm, service } => Authorizer::Bearer(Box::new(BearerAuth {
                realm,
                service,
                auth,
                tokens: Mutex::new(HashMap::new()),
            })),
        };
        Ok(RepoClient {
            endpoint: endpoint.clone(),
            host,
            repo: repo.to_string(),
            actions,
            authorizer,
        })
    }

    /// The endpoint's base URL.
    pub fn base(&self) -> &str {
        &self.endpoint.base
    }

    /// Whether this client talks to a mirror.
    pub fn is_mirror(&self) -> bool {
        self.endpoint.mirror
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.endpoint.base, self.repo)
    }

    /// A token for `scopes` from the token service, cached per scope set.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        auth: &AuthConfig,
        tokens: &Mutex<HashMap<String, String>>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let key = scopes.join(" ");
        if let Some(t) = tokens.lock().await.get(&key) {
            return Ok(t.clone());
        }
        if !auth.registry_token.is_empty() {
            return Ok(auth.registry_token.clone());
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let mut req = self.endpoint.http.get(realm).query(&query);
        if let Some((u, p)) = auth.basic() {
            req = req.header(AUTHORIZATION, basic_header(u, p));
        }
        let resp = req.send().await.map_err(|e| RegistryError::Transport {
            method: "Get".into(),
            url: realm.to_string(),
            cause: transport_cause(&e, &self.host),
        })?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| RegistryError::Transport {
            method: "Get".into(),
            url: realm.to_string(),
            cause: transport_cause(&e, &self.host),
        })?;
        let token = serde_json::from_slice::<TokenResponse>(&body)
            .map_err(|e| RegistryError::Protocol(format!("unable to decode token response: {e}")))?
            .into_token();
        if token.is_empty() {
            return Err(RegistryError::Protocol(
                "authorization server did not include a token in the response".into(),
            ));
        }
        tokens.lock().await.insert(key, token.clone());
        Ok(token)
    }

    /// The `Authorization` value for a request, if one is needed.
    async fn authorization(
        &self,
        method: &Method,
        url: &str,
        extra_scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        match &self.authorizer {
            Authorizer::None => Ok(None),
            Authorizer::Basic(Some(h)) => Ok(Some(h.clone())),
            Authorizer::Basic(None) => Err(RegistryError::NoBasicCredentials {
                method: method_name(method),
                url: url.to_string(),
            }),
            Authorizer::Bearer(b) => {
                let BearerAuth {
                    realm,
                    service,
                    auth,
                    tokens,
                } = &**b;
                // A login asks for no repository at all.
                let mut scopes = Vec::new();
                if !self.repo.is_empty() {
                    scopes.push(format!("repository:{}:{}", self.repo, self.actions));
                }
                scopes.extend(extra_scopes.iter().cloned());
                let t = self
                    .token(realm, service.as_deref(), auth, tokens, &scopes)
                    .await?;
                Ok(Some(format!("Bearer {t}")))
            }
        }
    }

    /// Sends one request with authorization; the response may be any
    /// status (callers decide what they expect).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
        extra_scopes: &[String],
    ) -> Result<Response, RegistryError> {
        let mut req = self
            .endpoint
            .http
            .request(method.clone(), url)
            .headers(headers);
        if let Some(a) = self.authorization(&method, url, extra_scopes).await? {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(|e| RegistryError::Transport {
            method: method_name(&method),
            url: url.to_string(),
            cause: transport_cause(&e, &self.host),
        })
    }

    /// Reads a whole (small) body, mapping a cut connection.
    pub async fn body(
        &self,
        method: &str,
        url: &str,
        resp: Response,
    ) -> Result<Bytes, RegistryError> {
        resp.bytes().await.map_err(|e| RegistryError::Transport {
            method: method.to_string(),
            url: url.to_string(),
            cause: transport_cause(&e, &self.host),
        })
    }

    /// `GET /v2/` with the credentials, as `docker login` checks them.
    pub async fn login(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.endpoint.base);
        let failed = |status: StatusCode| {
            RegistryError::Protocol(format!(
                "login attempt to {url} failed with status: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ))
        };
        let resp = match self
            .send(Method::GET, &url, HeaderMap::new(), None, &[])
            .await
        {
            Ok(r) => r,
            Err(RegistryError::Api { status, .. }) if status == 401 || status == 403 => {
                return Err(failed(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
                ))
            }
            Err(e) => return Err(e),
        };
        if resp.status() != StatusCode::OK {
            return Err(failed(resp.status()));
        }
        Ok(())
    }

    /// `GET /v2/<repo>/manifests/<reference>`: the raw bytes, their media
    /// type and digest (`Docker-Content-Digest`, else computed).
    pub async fn manifest(&self, reference: &str) -> Result<(Bytes, String), RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, MANIFEST_ACCEPT.parse().expect("static header"));
        let resp = self.send(Method::GET, &url, headers, None, &[]).await?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let body = self.body("Get", &url, resp).await?;
        Ok((body, media_type))
    }

    /// `GET /v2/<repo>/blobs/<digest>` as a streaming response.
    pub async fn blob(&self, digest: &str) -> Result<Response, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .send(Method::GET, &url, HeaderMap::new(), None, &[])
            .await?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        Ok(resp)
    }

    /// A whole (small) blob, such as an image config.
    pub async fn blob_bytes(&self, digest: &str) -> Result<Bytes, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.blob(digest).await?;
        self.body("Get", &url, resp).await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: its size if the repository has it.
    pub async fn blob_exists(&self, digest: &str) -> Result<Option<u64>, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .send(Method::HEAD, &url, HeaderMap::new(), None, &[])
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_from(resp).await),
        }
    }

    /// Starts an upload, or mounts `digest` from repository `from` on the
    /// same registry. `Ok(None)` means the mount happened; otherwise the
    /// upload location to send the blob to.
    pub async fn start_upload(
        &self,
        mount: Option<(&str, &str)>,
    ) -> Result<Option<String>, RegistryError> {
        let mut url = self.url("blobs/uploads/");
        let mut scopes = Vec::new();
        if let Some((digest, from)) = mount {
            url = format!("{url}?mount={digest}&from={from}");
            scopes.push(format!("repository:{from}:pull"));
        }
        let resp = self
            .send(Method::POST, &url, HeaderMap::new(), None, &scopes)
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&resp)?)),
            _ => Err(error_from(resp).await),
        }
    }

    /// The absolute URL of an upload's `Location`.
    fn location(&self, resp: &Response) -> Result<String, RegistryError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Protocol("registry did not return an upload location".into())
            })?;
        resp.url()
            .join(loc)
            .map(|u| u.to_string())
            .map_err(|e| RegistryError::Protocol(format!("bad upload location {loc:?}: {e}")))
    }

    /// Sends the whole blob in one streaming PATCH, then commits it with
    /// `PUT ?digest=`; `digest` is asked for only after the body is sent,
    /// so it can be computed while streaming.
    pub async fn upload<F>(
        &self,
        location: &str,
        body: reqwest::Body,
        digest: F,
    ) -> Result<(String, u64), RegistryError>
    where
        F: std::future::Future<Output = Result<(String, u64), RegistryError>>,
    {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static header"),
        );
        let resp = self
            .send(Method::PATCH, location, headers, Some(body), &[])
            .await?;
        if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let next = self.location(&resp)?;
        let (digest, size) = digest.await?;
        self.commit(&next, &digest, None).await?;
        Ok((digest, size))
    }

    /// `PUT <location>?digest=` with an optional final body.
    pub async fn commit(
        &self,
        location: &str,
        digest: &str,
        body: Option<Bytes>,
    ) -> Result<(), RegistryError> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|e| RegistryError::Protocol(format!("bad upload location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static header"),
        );
        let body = body.unwrap_or_default();
        let resp = self
            .send(
                Method::PUT,
                url.as_str(),
                headers,
                Some(reqwest::Body::from(body)),
                &[],
            )
            .await?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        Ok(())
    }

    /// Uploads a small blob (an image config) in one request pair.
    pub async fn put_blob(&self, digest: &str, data: Bytes) -> Result<(), RegistryError> {
        let Some(location) = self.start_upload(None).await? else {
            return Ok(());
        };
        self.commit(&location, digest, Some(data)).await
    }

    /// `PUT /v2/<repo>/manifests/<tag>`.
    pub async fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("manifests/{tag}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            media_type
                .parse()
                .map_err(|_| RegistryError::Protocol("bad media type".into()))?,
        );
        let resp = self
            .send(
                Method::PUT,
                &url,
                headers,
                Some(reqwest::Body::from(body)),
                &[],
            )
            .await?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        Ok(())
    }

    /// `GET /v2/<repo>/tags/list` (all pages).
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = self.url("tags/list");
        let resp = self
            .send(Method::GET, &url, HeaderMap::new(), None, &[])
            .await?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let body = self.body("Get", &url, resp).await?;
        let tags: Tags = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Protocol(format!("invalid tag list: {e}")))?;
        Ok(tags.tags.unwrap_or_default())
    }
}

/// The registry's error body (or status) as a [`RegistryError`].
pub async fn error_from(resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let errors = serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.errors)
        .unwrap_or_default();
    let errors = if errors.is_empty() && status == 401 {
        // A HEAD, or a registry that sends no body: dockerd's client
        // reports the class of failure.
        vec![ApiError {
            code: "UNAUTHORIZED".into(),
            message: "authentication required".into(),
        }]
    } else {
        errors
    };
    RegistryError::Api { status, errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_dockerd() {
        let e = RegistryError::Api {
            status: 404,
            errors: vec![ApiError {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into(),
            }],
        };
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
        assert_eq!(e.code(), Some("MANIFEST_UNKNOWN"));
        let e = RegistryError::Api {
            status: 500,
            errors: vec![],
        };
        assert_eq!(
            e.to_string(),
            "received unexpected HTTP status: 500 Internal Server Error"
        );
        let e = RegistryError::NoBasicCredentials {
            method: method_name(&Method::HEAD),
            url: "https://r/v2/x/manifests/latest".into(),
        };
        assert_eq!(
            e.to_string(),
            "Head \"https://r/v2/x/manifests/latest\": no basic auth credentials"
        );
        assert!(e.is_auth());
    }
}
