//! Image references as dockerd reads and prints them: `busybox` means
//! `docker.io/library/busybox:latest`; the familiar form drops the
//! `docker.io/library/` that the full form carries. Parsing is
//! `oci_spec::distribution::Reference`; this module adds Docker's wording
//! and the familiar/normalized spellings the tag store keys on.

use oci_spec::distribution::{ParseError, Reference};

use crate::error::{EngineError, Result};

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `docker.io/library/busybox`, `localhost:5000/a/b`.
    pub name: String,
    /// The tag, if one was given (or defaulted to `latest`).
    pub tag: Option<String>,
    /// `sha256:...`, if the reference pins a digest.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `s` as dockerd does, defaulting the tag to `latest` when
    /// neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let parsed = Reference::try_from(s).map_err(|e| parse_error(s, e))?;
        Ok(ImageRef {
            name: format!("{}/{}", parsed.registry(), parsed.repository()),
            tag: parsed.tag().map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// Parses a repository name that must carry no tag or digest (the
    /// `repo` of `docker tag`, `docker import`), then applies `tag`
    /// (default `latest`).
    pub fn with_tag(repo: &str, tag: Option<&str>) -> Result<ImageRef> {
        let mut r = ImageRef::parse(repo)?;
        let explicit_in_repo = repo
            .rsplit_once('/')
            .map_or(repo, |(_, last)| last)
            .contains(':');
        match tag.filter(|t| !t.is_empty()) {
            Some(t) => {
                if r.digest.is_some() || explicit_in_repo {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid reference format: repository name {repo:?} must not carry a tag or digest when a tag is given"
                    )));
                }
                let check = format!("{}:{t}", r.name);
                ImageRef::parse(&check)?;
                r.tag = Some(t.to_string());
            }
            None => {
                if r.digest.is_some() {
                    return Err(EngineError::InvalidParameter(
                        "refusing to create a tag with a digest reference".into(),
                    ));
                }
            }
        }
        Ok(r)
    }

    /// The familiar repository name (`busybox`, `user/app`, `host:5000/x`).
    pub fn familiar_name(&self) -> String {
        familiar(&self.name)
    }

    /// The familiar reference (`busybox:latest`, `busybox@sha256:..`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The full normalized reference, the tag store's key.
    pub fn normalized(&self) -> String {
        let mut s = self.name.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// `docker.io/library/busybox` → `busybox`; `docker.io/u/app` → `u/app`.
pub fn familiar(name: &str) -> String {
    match name.strip_prefix("docker.io/") {
        Some(rest) => rest.strip_prefix("library/").unwrap_or(rest).to_string(),
        None => name.to_string(),
    }
}

fn parse_error(s: &str, e: ParseError) -> EngineError {
    let lower = s.to_ascii_lowercase();
    if lower != s && Reference::try_from(lower.as_str()).is_ok() {
        let repo = s.split(['@']).next().unwrap_or(s);
        let repo = match repo.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => r,
            _ => repo,
        };
        return EngineError::InvalidParameter(format!(
            "invalid reference format: repository name ({repo}) must be lowercase"
        ));
    }
    match e {
        ParseError::ReferenceInvalidFormat | ParseError::NameEmpty => {
            EngineError::InvalidParameter("invalid reference format".into())
        }
        other => EngineError::InvalidParameter(format!("invalid reference format: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_prints_familiar() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = ImageRef::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.familiar(), "localhost:5000/a/b:v1");
        let r = ImageRef::parse("user/app:1.0").unwrap();
        assert_eq!(r.normalized(), "docker.io/user/app:1.0");
        assert_eq!(r.familiar(), "user/app:1.0");
    }

    #[test]
    fn refuses_bad_references_in_dockerd_words() {
        let e = ImageRef::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("must be lowercase"), "{e}");
        let e = ImageRef::parse("a b").unwrap_err().to_string();
        assert_eq!(e, "invalid reference format");
    }

    #[test]
    fn tags_repositories() {
        let r = ImageRef::with_tag("myrepo", Some("v2")).unwrap();
        assert_eq!(r.familiar(), "myrepo:v2");
        let r = ImageRef::with_tag("localhost:5000/x", None).unwrap();
        assert_eq!(r.familiar(), "localhost:5000/x:latest");
        assert!(ImageRef::with_tag("x:1", Some("2")).is_err());
    }
}
