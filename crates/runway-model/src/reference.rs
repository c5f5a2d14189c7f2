//! OCI image references (`[registry[:port]/]repository[:tag][@digest]`), parsed by the
//! grammar of the distribution project's reference package and normalised as docker does
//! (`nginx` is `docker.io/library/nginx:latest`).

use std::fmt;

/// The registry an unqualified reference names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The longest repository name (registry included) the grammar allows.
const MAX_NAME_LEN: usize = 255;
/// The longest tag the grammar allows.
pub const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/nginx`).
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest (`sha256:<hex>`), when pinned.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<ImageReference, String> {
        if s.is_empty() {
            return Err("an image reference must not be empty".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_registry(first) => {
                check_registry(first)?;
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        check_path(&path)?;
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        // Checked on the normalised name, so that what is accepted can be printed and
        // parsed again.
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_registry(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("registry {host:?} has an unclosed '['"))?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("registry {host:?} is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry {host:?} is malformed"))?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(format!("registry {host:?} has an invalid port"));
    }
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
        if !ok {
            return Err(format!("registry {host:?} is not a valid host name"));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository name is empty".into());
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// One component of a repository path: `[a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*`.
pub fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

fn check_tag(tag: &str) -> Result<(), String> {
    if is_tag(tag) {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} must be <algorithm>:<hex>"));
    };
    let hex_ok = |len: usize| {
        hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = match algorithm {
        "sha256" => hex_ok(64),
        "sha512" => hex_ok(128),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?} must be sha256 with 64 or sha512 with 128 lowercase hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(parse("nginx").to_string(), "docker.io/library/nginx:latest");
        assert_eq!(parse("user/app:v1").to_string(), "docker.io/user/app:v1");
        let r = parse("127.0.0.1:5000/team/app:1.2");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        let r = parse("localhost/app");
        assert_eq!(r.registry, "localhost");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("ghcr.io/o/app@{d}"));
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        let r = parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest");
        assert_eq!(r.registry, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        parse("public.ecr.aws/nginx/nginx:stable-alpine");
        parse("quay.io/a__b/c-d---e.f:tag_1.0-x");
        parse("[::1]:5000/app");
    }

    #[test]
    fn refuses_malformed_references() {
        for s in [
            "",
            "UPPER",
            "app:",
            "app:-tag",
            "app@sha256:abc",
            "app@md5:0123456789abcdef0123456789abcdef",
            "registry.io:99999/app",
            "registry.io/",
            "registry.io//app",
            "a/-b",
            "a/b_",
            "a/b...c",
            "app with space",
            "-registry.io/app",
            "[::1/app",
        ] {
            assert!(ImageReference::parse(s).is_err(), "{s:?} should be refused");
        }
        assert!(ImageReference::parse(&format!("app:{}", "t".repeat(129))).is_err());
        assert!(ImageReference::parse(&format!("reg.io/{}", "a".repeat(256))).is_err());
    }
}
