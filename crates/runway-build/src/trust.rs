//! What builds trust and go through: the host's certificate authorities, an extra bundle
//! the server is given (`--build-ca-bundle`), and the server's proxy settings
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, `ALL_PROXY`), handed to every build
//! container, so that `pip install` and `npm ci` work behind a TLS-inspecting proxy whose
//! authority the host trusts.
//!
//! Each build gets a directory of its own mounted at [`CONTAINER_DIR`] (never part of the
//! image) holding the host's bundle and the extra one. The build script's prelude
//! ([`prelude`]) puts the image's own bundle and those together into
//! `ca-certificates.crt` there, and, where the image has a JDK (`keytool`), a copy of the
//! JDK's trust store with the host's locally added authorities and the extra bundle
//! imported. Tools are pointed at it through the variables each reads ([`CA_ENV`]):
//! OpenSSL and everything on it (Python's `ssl`, Ruby and `gem`/`bundle`, PHP and
//! `composer`, Go, .NET, `uv`), pip, requests and certifi users, curl, git, Node.js and
//! so npm, npx and yarn, the AWS CLI and SDKs; Java through `JAVA_TOOL_OPTIONS`. The
//! image's own files are not changed, so a built image trusts only what its base
//! trusts, unless the server is told to let instances trust the same authorities
//! ([`BuildTrust::for_instances`]): then the image gets a layer with the bundle at
//! [`IMAGE_BUNDLE`] and the same variables.
//!
//! A proxy on the host's loopback address is not reachable from a build container (it
//! has a network of its own); give the proxy's address on another interface.

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// Where a build's trust directory is mounted in its container.
pub const CONTAINER_DIR: &str = "/run/runway/trust";

/// Where the bundle is in images built for instances that trust the build's authorities.
pub const IMAGE_BUNDLE: &str = "/etc/runway/ca-certificates.crt";

/// The variables that point tools at a bundle of certificate authorities (the whole set
/// to trust, or for `NODE_EXTRA_CA_CERTS` the ones added to Node's own).
pub const CA_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "CARGO_HTTP_CAINFO",
    "DENO_CERT",
];

/// The proxy variables passed on to builds, in both spellings tools read.
pub const PROXY_ENV: &[&str] = &["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY"];

/// The system bundles of common Linux distributions, in the order looked for (Debian and
/// Ubuntu, Fedora and Amazon Linux, openSUSE, Alpine).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Where distributions keep the authorities an administrator added (Debian's
/// `update-ca-certificates`, Fedora's `update-ca-trust`): these are what a JDK's own
/// trust store lacks.
pub const LOCAL_ANCHOR_DIRS: &[&str] = &[
    "/usr/local/share/ca-certificates",
    "/etc/pki/ca-trust/source/anchors",
];

/// Why the build's trust could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A bundle could not be read.
    #[error("cannot read the certificate bundle {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bundle holds no certificate (or a broken one).
    #[error("{path} is not a PEM bundle of certificates: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What builds trust and which proxy they use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildTrust {
    /// The host's system bundle (all the authorities the host trusts).
    pub host_bundle: Option<PathBuf>,
    /// Directories of authorities the host's administrator added (searched for `*.crt`
    /// and `*.pem`, recursively).
    pub host_anchor_dirs: Vec<PathBuf>,
    /// An extra bundle the server was given.
    pub extra_bundle: Option<PathBuf>,
    /// Whether built images' instances trust the same authorities.
    pub for_instances: bool,
    /// The proxy variables builds get (name, value), both spellings.
    pub proxy: Vec<(String, String)>,
}

/// The certificates a build trusts, as PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustMaterial {
    /// The host's bundle and the extra one.
    pub bundle: String,
    /// The host's locally added authorities and the extra bundle's, one PEM each (for
    /// trust stores that take one certificate at a time).
    pub added: Vec<String>,
    /// How many certificates came from the host and from the extra bundle.
    pub host_count: usize,
    pub extra_count: usize,
}

impl BuildTrust {
    /// The host's trust and the proxy settings in `env` (the server's environment), with
    /// `extra_bundle` added.
    pub fn from_host(
        extra_bundle: Option<PathBuf>,
        for_instances: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> BuildTrust {
        BuildTrust {
            host_bundle: SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
            host_anchor_dirs: LOCAL_ANCHOR_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .collect(),
            extra_bundle,
            for_instances,
            proxy: proxy_env(env),
        }
    }

    /// Reads the certificates (blocking): fails on an unreadable or empty extra bundle;
    /// the host's files are taken as they are (unreadable ones skipped).
    pub fn load(&self) -> Result<TrustMaterial, TrustError> {
        let mut material = TrustMaterial::default();
        if let Some(path) = &self.host_bundle
            && let Ok(certs) = read_bundle(path)
        {
            material.host_count = certs.len();
            certs.iter().for_each(|c| material.bundle.push_str(&pem(c)));
        }
        for dir in &self.host_anchor_dirs {
            for path in anchor_files(dir) {
                if let Ok(certs) = read_bundle(&path) {
                    material.added.extend(certs.iter().map(|c| pem(c)));
                }
            }
        }
        if let Some(path) = &self.extra_bundle {
            let certs = read_bundle(path)?;
            if certs.is_empty() {
                return Err(TrustError::Invalid {
                    path: path.clone(),
                    reason: "it holds no certificate".into(),
                });
            }
            material.extra_count = certs.len();
            for c in &certs {
                material.bundle.push_str(&pem(c));
                material.added.push(pem(c));
            }
        }
        material.added.sort_unstable();
        material.added.dedup();
        Ok(material)
    }

    /// The environment builds get: the proxy settings and the bundle variables (the
    /// user's build environment is applied after, and wins).
    pub fn build_env(&self) -> Vec<(String, String)> {
        let mut env = self.proxy.clone();
        env.extend(ca_env(&format!("{CONTAINER_DIR}/ca-certificates.crt")));
        env
    }

    /// A line for the build log: what is trusted and which proxy is used (without its
    /// credentials).
    pub fn describe(&self, material: &TrustMaterial) -> String {
        let mut s = format!(
            "==> Trusting the image's certificate authorities and the host's ({})",
            material.host_count
        );
        if let Some(path) = &self.extra_bundle {
            s.push_str(&format!(
                ", and {} from {}",
                material.extra_count,
                path.display()
            ));
        }
        let proxies: Vec<String> = self
            .proxy
            .iter()
            .filter(|(k, _)| k.ends_with("_PROXY") && k != "NO_PROXY")
            .map(|(k, v)| format!("{k}={}", crate::source::redact_url(v)))
            .collect();
        if !proxies.is_empty() {
            s.push_str(&format!("; proxy {}", proxies.join(" ")));
        }
        s
    }
}

/// The bundle variables, each pointing at `path`.
pub fn ca_env(path: &str) -> Vec<(String, String)> {
    CA_ENV
        .iter()
        .map(|k| (k.to_string(), path.to_string()))
        .collect()
}

/// The proxy settings in `env`, each in both spellings (`HTTPS_PROXY` and `https_proxy`:
/// curl reads only the lower-case `http_proxy`, many tools only upper case). The lower
/// case wins when both are set, as in curl.
pub fn proxy_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut out = Vec::new();
    for name in PROXY_ENV {
        let lower = name.to_ascii_lowercase();
        let value = env
            .iter()
            .find(|(k, _)| *k == lower)
            .or_else(|| env.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(v) = value {
            out.push((name.to_string(), v.clone()));
            out.push((lower, v));
        }
    }
    out
}

/// Writes a build's trust files into `dir` (the host side of [`CONTAINER_DIR`]):
/// `host.pem`, and `added-<n>.pem` for each added authority.
pub fn write_files(dir: &Path, material: &TrustMaterial) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("host.pem"), &material.bundle)?;
    for (i, cert) in material.added.iter().enumerate() {
        std::fs::write(dir.join(format!("added-{}.pem", i + 1)), cert)?;
    }
    Ok(())
}

/// The shell lines the build script starts with: the image's own bundle and the host's
/// into `ca-certificates.crt`, and a JDK's trust store with the added authorities.
/// Nothing here fails the build: a step that cannot be done says so and is skipped.
pub fn prelude() -> String {
    let d = CONTAINER_DIR;
    let system = SYSTEM_BUNDLES.join(" ");
    format!(
        r#"__runway_trust={d}
if [ -d "$__runway_trust" ]; then
  for __f in {system}; do
    if [ -r "$__f" ]; then cat "$__f"; echo; break; fi
  done > "$__runway_trust/ca-certificates.crt"
  cat "$__runway_trust/host.pem" >> "$__runway_trust/ca-certificates.crt"
  if command -v keytool >/dev/null 2>&1 && [ -e "$__runway_trust/added-1.pem" ]; then
    __jdk=$(dirname "$(dirname "$(readlink -f "$(command -v keytool)")")") || true
    for __c in "$__jdk/lib/security/cacerts" "$__jdk/jre/lib/security/cacerts" /etc/ssl/certs/java/cacerts; do
      if [ -r "$__c" ]; then cp -L "$__c" "$__runway_trust/java-cacerts" && chmod 600 "$__runway_trust/java-cacerts"; break; fi
    done
    __ok=0
    if [ -e "$__runway_trust/java-cacerts" ]; then
      __ok=1
      for __a in "$__runway_trust"/added-*.pem; do
        keytool -importcert -noprompt -trustcacerts -storepass changeit -keystore "$__runway_trust/java-cacerts" \
          -alias "runway-$(basename "$__a" .pem)" -file "$__a" >/dev/null 2>&1 || __ok=0
      done
    fi
    if [ "$__ok" = 1 ]; then
      export JAVA_TOOL_OPTIONS="-Djavax.net.ssl.trustStore=$__runway_trust/java-cacerts -Djavax.net.ssl.trustStorePassword=changeit${{JAVA_TOOL_OPTIONS:+ $JAVA_TOOL_OPTIONS}}"
    else
      echo "runway: could not add the host's certificate authorities to the JDK's trust store" >&2
    fi
  fi
fi
"#
    )
}

/// The certificates in the PEM file `path`.
fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// The `*.crt` and `*.pem` files under `dir` (recursively, links followed as
/// `update-ca-certificates` does), sorted.
fn anchor_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 8 {
                todo.push((path, depth + 1));
            } else if path.is_file() && path.extension().is_some_and(|e| e == "crt" || e == "pem") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// One certificate as PEM.
fn pem(cert: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

#[cfg(test)]
mod tests;
