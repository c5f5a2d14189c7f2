//! Images as the runtime needs them: a manifest (OCI or Docker schema 2; from an index,
//! the linux/amd64 one), its config and its layers, read through the [`ImageStore`]
//! trait and checked against their digests. [`OciLayout`] reads an OCI image layout
//! directory; the registry implements the trait over its own storage.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest manifest, index or image config read into memory.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

/// What can go wrong reading an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The store does not hold this manifest or blob.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A digest is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    /// Content does not match the digest it was asked for by.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A manifest, index or config is not what the OCI specs describe.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// Something the runtime cannot run (another platform, an unknown layer type).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// Reading failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The store behind the trait failed.
    #[error("image store: {0}")]
    Store(String),
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// An image pinned by its manifest (or index) digest, in a repository of the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub struct ImageRef {
    pub repository: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// A blob's content: a file the runtime may open, or a reader.
pub enum Blob {
    Path(PathBuf),
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blob::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Blob::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

impl Blob {
    /// The blob as a reader.
    pub fn open(self) -> Result<Box<dyn Read + Send>> {
        match self {
            Blob::Path(p) => {
                let f = File::open(&p).map_err(|source| ImageError::Io {
                    context: format!("cannot open {}", p.display()),
                    source,
                })?;
                Ok(Box::new(f))
            }
            Blob::Reader(r) => Ok(r),
        }
    }
}

/// Where the runtime reads images from. The runtime calls these methods only from
/// blocking threads, never from async code, so an implementation may block (including
/// with `tokio::runtime::Handle::block_on` over an async store). Implementations need not
/// check digests: the runtime checks every manifest, config and layer it reads.
pub trait ImageStore: Send + Sync + 'static {
    /// The manifest or index stored under `digest` in `repository`.
    fn manifest(&self, repository: &str, digest: &str) -> Result<Vec<u8>>;
    /// The blob (config or layer) stored under `digest` in `repository`.
    fn blob(&self, repository: &str, digest: &str) -> Result<Blob>;
}

/// Checks that `digest` is a sha256 digest and returns its hex part.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| ImageError::BadDigest(digest.to_string()))?;
    Ok(hex)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A layer of a resolved image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The digest of the blob as stored (compressed).
    pub digest: String,
    pub media_type: String,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`), if given.
    pub diff_id: Option<String>,
}

/// What the image config says about running the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// An image resolved to its config and layers, bottom layer first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The digest of the manifest that was resolved (not the index's).
    pub manifest_digest: String,
    pub config: RunConfig,
    pub layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Layer media types the runtime unpacks (the compression is recognised from the
/// content, so a mislabelled layer still unpacks).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

fn invalid(what: &str, reason: impl std::fmt::Display) -> ImageError {
    ImageError::Invalid {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads and checks the manifest `image` names (following an index to its linux/amd64
/// manifest) and its config.
pub fn resolve(store: &dyn ImageStore, image: &ImageRef) -> Result<Image> {
    let mut digest = image.digest.clone();
    // An index names manifests; a nested index is followed once more at most.
    for _ in 0..3 {
        digest_hex(&digest)?;
        let bytes = store.manifest(&image.repository, &digest)?;
        check_digest(&format!("manifest {digest}"), &digest, &bytes)?;
        let doc: Document = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(&format!("manifest {digest}"), e))?;
        let is_index = doc.manifests.is_some()
            || doc
                .media_type
                .as_deref()
                .is_some_and(|t| INDEX_TYPES.contains(&t));
        if is_index {
            digest = pick_platform(doc.manifests.unwrap_or_default()).ok_or_else(|| {
                ImageError::Unsupported("the index has no linux/amd64 image".into())
            })?;
            continue;
        }
        return manifest(store, &image.repository, digest, doc);
    }
    Err(invalid("index", "indexes nest too deeply"))
}

fn pick_platform(manifests: Vec<Descriptor>) -> Option<String> {
    manifests
        .into_iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .map(|m| m.digest)
}

fn manifest(store: &dyn ImageStore, repo: &str, digest: String, doc: Document) -> Result<Image> {
    let what = format!("manifest {digest}");
    let config_desc = doc.config.ok_or_else(|| invalid(&what, "no config"))?;
    digest_hex(&config_desc.digest)?;
    let mut config_bytes = Vec::new();
    store
        .blob(repo, &config_desc.digest)?
        .open()?
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut config_bytes)
        .map_err(|source| ImageError::Io {
            context: format!("cannot read config {}", config_desc.digest),
            source,
        })?;
    if config_bytes.len() as u64 > MAX_DOCUMENT {
        return Err(invalid("image config", "larger than 4 MiB"));
    }
    check_digest("image config", &config_desc.digest, &config_bytes)?;
    let config: ConfigBlob =
        serde_json::from_slice(&config_bytes).map_err(|e| invalid("image config", e))?;
    if let (Some(os), Some(arch)) = (&config.os, &config.architecture)
        && (os != "linux" || arch != "amd64")
    {
        return Err(ImageError::Unsupported(format!(
            "the image is for {os}/{arch}; this runtime runs linux/amd64"
        )));
    }
    let descs = doc.layers.unwrap_or_default();
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if !diff_ids.is_empty() && diff_ids.len() != descs.len() {
        return Err(invalid(
            &what,
            format!(
                "{} layers but the config lists {} diff_ids",
                descs.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(descs.len());
    for (i, d) in descs.into_iter().enumerate() {
        digest_hex(&d.digest)?;
        let media_type = d.media_type.unwrap_or_default();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(ImageError::Unsupported(format!(
                "layer {} has media type {media_type:?}",
                d.digest
            )));
        }
        let diff_id = diff_ids.get(i).cloned();
        if let Some(id) = &diff_id {
            digest_hex(id)?;
        }
        layers.push(Layer {
            digest: d.digest,
            media_type,
            diff_id,
        });
    }
    Ok(Image {
        manifest_digest: digest,
        config: config.config.unwrap_or_default(),
        layers,
    })
}

fn check_digest(what: &str, expected: &str, data: &[u8]) -> Result<()> {
    let actual = sha256_digest(data);
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`), as
/// `skopeo copy ... oci:DIR` writes it. The repository name is not used.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
}

#[derive(Deserialize)]
struct LayoutIndex {
    manifests: Vec<LayoutEntry>,
}

#[derive(Deserialize)]
struct LayoutEntry {
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl OciLayout {
    /// Opens a layout directory, checking its `oci-layout` marker.
    pub fn open(dir: &Path) -> Result<OciLayout> {
        let marker = dir.join("oci-layout");
        if !marker.is_file() {
            return Err(invalid(
                "OCI layout",
                format!("{} has no oci-layout file", dir.display()),
            ));
        }
        Ok(OciLayout {
            dir: dir.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image tagged `tag` (annotation `org.opencontainers.image.ref.name`), or the
    /// first one when `tag` is `None`, as an [`ImageRef`] in `repository`.
    pub fn image(&self, repository: &str, tag: Option<&str>) -> Result<ImageRef> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(|source| ImageError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        let index: LayoutIndex =
            serde_json::from_slice(&bytes).map_err(|e| invalid("index.json", e))?;
        let entry = index
            .manifests
            .into_iter()
            .find(|m| {
                tag.is_none_or(|t| {
                    m.annotations
                        .get("org.opencontainers.image.ref.name")
                        .map(String::as_str)
                        == Some(t)
                })
            })
            .ok_or_else(|| ImageError::NotFound {
                what: format!("tag {tag:?} in {}", self.dir.display()),
            })?;
        digest_hex(&entry.digest)?;
        Ok(ImageRef {
            repository: repository.to_string(),
            digest: entry.digest,
        })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest)?;
        let path = self.dir.join("blobs/sha256").join(hex);
        if !path.is_file() {
            return Err(ImageError::NotFound {
                what: format!("blob {digest}"),
            });
        }
        Ok(path)
    }
}

impl ImageStore for OciLayout {
    fn manifest(&self, _repository: &str, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes))
            .map_err(|source| ImageError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(invalid("manifest", "larger than 4 MiB"));
        }
        Ok(bytes)
    }

    fn blob(&self, _repository: &str, digest: &str) -> Result<Blob> {
        Ok(Blob::Path(self.blob_path(digest)?))
    }
}

#[cfg(test)]
mod tests;
