//! Manifest parsing and validation: OCI image manifests and indexes, Docker schema 2
//! manifests and manifest lists. Whatever bytes arrive, the answer is a [`Manifest`] or a
//! [`ManifestError`] saying what is wrong, never a panic (this parser has a fuzz target).

use crate::digest::{Digest, DigestError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Schema 1 (signed) manifests: deprecated, refused with a clear message.
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Layer types that are never pushed to a registry (fetched from their `urls`).
const FOREIGN_LAYERS: [&str; 4] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];
/// Every manifest media type the registry stores, for `Accept` headers.
pub const MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The kind of a manifest, one per accepted media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl Kind {
    /// The media type this kind is served with.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::OciManifest => OCI_MANIFEST,
            Kind::OciIndex => OCI_INDEX,
            Kind::DockerManifest => DOCKER_MANIFEST,
            Kind::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    /// The kind of a media type (parameters and case ignored), if it is a manifest type.
    pub fn from_media_type(media_type: &str) -> Option<Kind> {
        let essence = media_type.split(';').next().unwrap_or("").trim();
        [
            Kind::OciManifest,
            Kind::OciIndex,
            Kind::DockerManifest,
            Kind::DockerManifestList,
        ]
        .into_iter()
        .find(|k| k.media_type().eq_ignore_ascii_case(essence))
    }

    /// Whether this kind lists other manifests rather than a config and layers.
    pub fn is_index(self) -> bool {
        matches!(self, Kind::OciIndex | Kind::DockerManifestList)
    }
}

/// The platform a manifest in an index is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A validated content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// Whether this layer lives outside registries (foreign or non-distributable), so a
    /// manifest may reference it without it being pushed.
    pub fn is_foreign(&self) -> bool {
        FOREIGN_LAYERS.contains(&self.media_type.as_str())
    }
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub kind: Kind,
    /// Image manifests: the config descriptor.
    pub config: Option<Descriptor>,
    /// Image manifests: the layers, in order.
    pub layers: Vec<Descriptor>,
    /// Indexes: the manifests listed.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs...).
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The artifact type the referrers API reports: `artifactType`, or for an image
    /// manifest without one, its config's media type.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| match self.kind.is_index() {
                true => None,
                false => self.config.as_ref().map(|c| c.media_type.as_str()),
            })
    }

    /// The blobs (config and pushed layers) an image manifest needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_foreign()))
    }
}

/// What is wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a JSON object of the expected shape.
    #[error("the manifest is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// `schemaVersion` is missing or not 2.
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    /// The manifest type is one this registry does not store.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedType(String),
    /// Docker schema 1 manifests are refused.
    #[error("Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest")]
    Schema1,
    /// The `mediaType` field contradicts the `Content-Type`.
    #[error("the manifest's mediaType {field:?} does not match its Content-Type {header:?}")]
    TypeMismatch { field: String, header: String },
    /// Neither the headers nor the fields say what kind of manifest this is.
    #[error("cannot tell the manifest's type: give a mediaType field or Content-Type")]
    UnknownType,
    /// A field that this kind of manifest requires is missing.
    #[error("{0} is required for this manifest type")]
    Missing(&'static str),
    /// A field that this kind of manifest must not have is present.
    #[error("{0} is not allowed for this manifest type")]
    Unexpected(&'static str),
    /// A descriptor is invalid.
    #[error("{path}: {reason}")]
    Descriptor { path: String, reason: String },
    /// A media type field is not `type/subtype`.
    #[error("{path}: {value:?} is not a valid media type")]
    MediaType { path: String, value: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<serde_json::Value>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    platform: Option<Platform>,
}

/// Parses and validates `bytes` pushed with `content_type` (the request's
/// `Content-Type`, if any).
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let header = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .filter(|ct| !ct.is_empty());
    if let Some(h) = header
        && DOCKER_SCHEMA1.iter().any(|s| s.eq_ignore_ascii_case(h))
    {
        return Err(ManifestError::Schema1);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawManifest = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ManifestError::Json(short(&e.to_string())))?;
    de.end()
        .map_err(|e| ManifestError::Json(short(&e.to_string())))?;

    match &raw.schema_version {
        Some(v) if v.as_u64() == Some(2) => {}
        Some(v) if v.as_u64() == Some(1) => return Err(ManifestError::Schema1),
        _ => return Err(ManifestError::SchemaVersion),
    }

    let field_kind = match &raw.media_type {
        Some(mt) if DOCKER_SCHEMA1.contains(&mt.as_str()) => return Err(ManifestError::Schema1),
        Some(mt) => Some(
            Kind::from_media_type(mt)
                .filter(|k| k.media_type() == mt)
                .ok_or_else(|| ManifestError::UnsupportedType(short(mt)))?,
        ),
        None => None,
    };
    let header_kind = header.and_then(Kind::from_media_type);
    let kind = match (field_kind, header_kind) {
        (Some(f), Some(h)) if f != h => {
            return Err(ManifestError::TypeMismatch {
                field: f.media_type().into(),
                header: h.media_type().into(),
            });
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => match (&raw.manifests, &raw.config, header) {
            (_, _, Some(h)) if !is_generic(h) => {
                return Err(ManifestError::UnsupportedType(short(h)));
            }
            // A generic type (application/json, octet-stream) or none: tell by the fields,
            // as the OCI image spec suggests for manifests without mediaType.
            (Some(_), None, _) => Kind::OciIndex,
            (None, Some(_), _) => Kind::OciManifest,
            _ => return Err(ManifestError::UnknownType),
        },
    };

    if let Some(at) = &raw.artifact_type {
        check_media_type("artifactType", at)?;
    }
    let subject = raw
        .subject
        .as_ref()
        .map(|d| descriptor("subject", d))
        .transpose()?;
    let annotations = raw.annotations.unwrap_or_default();

    if kind.is_index() {
        if raw.config.is_some() {
            return Err(ManifestError::Unexpected("config"));
        }
        if raw.layers.is_some() {
            return Err(ManifestError::Unexpected("layers"));
        }
        let manifests = raw
            .manifests
            .as_ref()
            .ok_or(ManifestError::Missing("manifests"))?
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor(&format!("manifests[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            kind,
            config: None,
            layers: Vec::new(),
            manifests,
            subject,
            artifact_type: raw.artifact_type,
            annotations,
        })
    } else {
        if raw.manifests.is_some() {
            return Err(ManifestError::Unexpected("manifests"));
        }
        let config = descriptor(
            "config",
            raw.config
                .as_ref()
                .ok_or(ManifestError::Missing("config"))?,
        )?;
        let layers = raw
            .layers
            .as_ref()
            .ok_or(ManifestError::Missing("layers"))?
            .iter()
            .enumerate()
            .map(|(i, d)| descriptor(&format!("layers[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            kind,
            config: Some(config),
            layers,
            manifests: Vec::new(),
            subject,
            artifact_type: raw.artifact_type,
            annotations,
        })
    }
}

fn is_generic(media_type: &str) -> bool {
    ["application/json", "application/octet-stream", "text/plain"]
        .iter()
        .any(|g| g.eq_ignore_ascii_case(media_type))
}

fn descriptor(path: &str, raw: &RawDescriptor) -> Result<Descriptor, ManifestError> {
    let err = |reason: String| ManifestError::Descriptor {
        path: path.to_string(),
        reason,
    };
    let media_type = raw
        .media_type
        .clone()
        .ok_or_else(|| err("mediaType is required".into()))?;
    check_media_type(&format!("{path}.mediaType"), &media_type)?;
    let digest = raw
        .digest
        .as_deref()
        .ok_or_else(|| err("digest is required".into()))?;
    let digest = Digest::parse(digest).map_err(|e: DigestError| err(e.to_string()))?;
    let size = raw
        .size
        .as_ref()
        .ok_or_else(|| err("size is required".into()))?
        .as_u64()
        .filter(|s| *s <= i64::MAX as u64)
        .ok_or_else(|| err("size must be a non-negative integer".into()))?;
    if let Some(at) = &raw.artifact_type {
        check_media_type(&format!("{path}.artifactType"), at)?;
    }
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type: raw.artifact_type.clone(),
        annotations: raw.annotations.clone().unwrap_or_default(),
        platform: raw.platform.clone(),
    })
}

/// RFC 6838's `type "/" subtype` with restricted-name characters (plus the `+json`
/// structured suffixes and parameters-free form the image spec uses).
fn check_media_type(path: &str, value: &str) -> Result<(), ManifestError> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match value.split_once('/') {
        Some((t, s)) if name_ok(t) && name_ok(s) => Ok(()),
        _ => Err(ManifestError::MediaType {
            path: path.to_string(),
            value: short(value),
        }),
    }
}

fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests;
