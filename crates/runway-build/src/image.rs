//! Images in runway's registry, as builds make them: base images found (in runway's own
//! registry, or pulled into it once from upstream), images assembled from a base's
//! layers plus new ones with a config derived from the base's, and root filesystems
//! imported as single-layer base images ([`import_rootfs`]).

use crate::layer::{self, GZIP_LAYER, LayerFile};
use crate::runtimes;
use bytes::Bytes;
use runway_model::reference::ImageReference;
use runway_registry::manifest::{self, Kind};
use runway_registry::{Registry, RegistryError, names};
use serde_json::{Value, json};
use std::path::Path;

/// The largest image config read.
const MAX_CONFIG: u64 = 4 << 20;
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What can go wrong finding, assembling or importing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The base image cannot be had.
    #[error("base image {reference}: {message}")]
    Base { reference: String, message: String },
    /// A name, manifest or config is not usable.
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A base image, resolved in runway's registry.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// The reference it was asked for by.
    pub reference: String,
    pub repository: String,
    /// The image manifest's digest.
    pub digest: String,
    /// The layer descriptors, bottom first, as in the manifest.
    pub layers: Vec<Value>,
    /// The image config.
    pub config: Value,
}

/// A layer to add on top of a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    pub file: LayerFile,
    /// What made it, for the config's history.
    pub created_by: String,
}

/// Finds the image `reference` names: in runway's registry when it has no registry host
/// (or one of `own_hosts`), else in the registry's copy of the upstream image, which is
/// pulled once, the first time.
pub async fn resolve_base(
    registry: &Registry,
    reference: &str,
    own_hosts: &[String],
) -> Result<BaseImage, ImageError> {
    let base = |message: String| ImageError::Base {
        reference: reference.to_string(),
        message,
    };
    let (repository, wanted) = if runtimes::is_local_reference(reference, own_hosts) {
        let (repository, tag) = runtimes::split_local_reference(reference, own_hosts);
        if !names::is_repository(&repository) {
            return Err(base(format!("{repository:?} is not a repository name")));
        }
        (repository, tag)
    } else {
        let parsed = ImageReference::parse(reference).map_err(base)?;
        let repository = runway_registry::internal_repository(&parsed)?;
        let wanted = parsed
            .digest
            .clone()
            .or(parsed.tag.clone())
            .unwrap_or_else(|| "latest".into());
        // Pulled before: reuse it without asking the upstream.
        if registry
            .resolve_manifest(&repository, &wanted)
            .await
            .is_err()
        {
            let imported = registry
                .import(&parsed, None)
                .await
                .map_err(|e| base(format!("cannot pull it into runway's registry: {e}")))?;
            (imported.repository, imported.digest)
        } else {
            (repository, wanted)
        }
    };
    let found = registry.resolve_manifest(&repository, &wanted).await.map_err(|e| match e {
        RegistryError::NotFound(_) => base(format!(
            "not in runway's registry (repository {repository}, tag {wanted}); create it with \
             `runway image import-rootfs` (see scripts/base-image) or point the runtime at another image"
        )),
        other => ImageError::Registry(other),
    })?;
    let mut digest = found.digest;
    let mut media_type = found.media_type;
    let mut bytes = found.bytes;
    // An index (a manifest list) names one manifest per platform.
    for _ in 0..2 {
        let parsed = manifest::parse(Some(&media_type), &bytes)
            .map_err(|e| base(format!("invalid manifest: {e}")))?;
        if !parsed.kind.is_index() {
            break;
        }
        let platform = runway_registry::host_platform();
        let child = parsed
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
            })
            .ok_or_else(|| {
                base(format!(
                    "no {}/{} image in the index",
                    platform.os, platform.architecture
                ))
            })?;
        let resolved = registry
            .resolve_manifest(&repository, &child.digest.to_string())
            .await?;
        digest = resolved.digest;
        media_type = resolved.media_type;
        bytes = resolved.bytes;
    }
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|e| base(format!("invalid manifest: {e}")))?;
    let config_digest = doc
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| base("the manifest has no config".into()))?;
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let config = read_config(registry, config_digest)
        .await
        .map_err(|e| base(e.to_string()))?;
    Ok(BaseImage {
        reference: reference.to_string(),
        repository,
        digest,
        layers,
        config,
    })
}

async fn read_config(registry: &Registry, digest: &str) -> Result<Value, ImageError> {
    let path = registry
        .blob_path(digest)
        .ok_or_else(|| ImageError::Invalid(format!("config {digest} is not in the registry")))?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|source| ImageError::Io {
            context: format!("cannot read config {digest}"),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(ImageError::Invalid(format!(
            "config {digest} is larger than 4 MiB"
        )));
    }
    let config: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Invalid(format!("config {digest} is not JSON: {e}")))?;
    if !config.is_object() {
        return Err(ImageError::Invalid(format!(
            "config {digest} is not a JSON object"
        )));
    }
    Ok(config)
}

/// How the assembled image runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSettings {
    /// Replaces the base's `Cmd`; the base's `Entrypoint` is dropped.
    pub cmd: Option<Vec<String>>,
    /// Set over the base's environment (same names replaced).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub exposed_port: Option<u16>,
    pub labels: Vec<(String, String)>,
}

/// The base's config with `layers` appended to its root filesystem and history, and
/// `run` applied.
pub fn derive_config(base: &Value, layers: &[NewLayer], run: &RunSettings, created: &str) -> Value {
    let mut obj = base.as_object().cloned().unwrap_or_default();
    obj.insert("created".into(), json!(created));
    obj.entry("architecture")
        .or_insert_with(|| json!(runway_registry::host_platform().architecture));
    obj.entry("os").or_insert_with(|| json!("linux"));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if !rootfs.get("diff_ids").is_some_and(Value::is_array) {
        *rootfs = json!({"type": "layers", "diff_ids": []});
    }
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.extend(layers.iter().map(|l| json!(l.file.diff_id)));
    }
    let history = obj.entry("history").or_insert_with(|| json!([]));
    if !history.is_array() {
        *history = json!([]);
    }
    if let Some(h) = history.as_array_mut() {
        for l in layers {
            h.push(json!({"created": created, "created_by": l.created_by}));
        }
    }
    let mut c = match obj.remove("config") {
        Some(Value::Object(c)) => c,
        _ => serde_json::Map::new(),
    };
    if let Some(cmd) = &run.cmd {
        c.remove("Entrypoint");
        c.insert("Cmd".into(), json!(cmd));
    }
    if !run.env.is_empty() {
        let mut env: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in &run.env {
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
            env.push(format!("{k}={v}"));
        }
        c.insert("Env".into(), json!(env));
    }
    if let Some(dir) = &run.working_dir {
        c.insert("WorkingDir".into(), json!(dir));
    }
    if let Some(port) = run.exposed_port {
        c.insert("ExposedPorts".into(), json!({ format!("{port}/tcp"): {} }));
    }
    if !run.labels.is_empty() {
        let labels = c.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(l) = labels.as_object_mut() {
            for (k, v) in &run.labels {
                l.insert(k.clone(), json!(v));
            }
        }
    }
    obj.insert("config".into(), Value::Object(c));
    Value::Object(obj)
}

/// The OCI media type for a base layer's (Docker media types have OCI twins).
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => GZIP_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        other => other,
    }
}

/// Pushes an image to `repository:tag`: the base's layers (linked from the base's
/// repository), `layers` on top, and `config`; its manifest digest.
pub async fn push_image(
    registry: &Registry,
    repository: &str,
    tag: &str,
    base: &BaseImage,
    layers: &[NewLayer],
    config: &Value,
) -> Result<String, ImageError> {
    let mut descriptors = Vec::new();
    for l in &base.layers {
        let digest = l
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::Invalid("a base layer has no digest".into()))?;
        if base.repository != repository
            && !registry
                .mount_blob(&base.repository, repository, digest)
                .await?
        {
            return Err(ImageError::Invalid(format!(
                "base layer {digest} is missing from {}",
                base.repository
            )));
        }
        let mut d = l.clone();
        if let Some(t) = d
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            d["mediaType"] = json!(oci_layer_type(&t));
        }
        descriptors.push(d);
    }
    for l in layers {
        let digest = registry
            .push_blob_file(repository, &l.file.path, Some(&l.file.digest))
            .await?;
        descriptors.push(json!({"mediaType": GZIP_LAYER, "digest": digest, "size": l.file.size}));
    }
    let config_bytes =
        Bytes::from(serde_json::to_vec(config).map_err(|e| ImageError::Internal(e.to_string()))?);
    let config_size = config_bytes.len();
    let config_digest = registry.push_blob(repository, config_bytes).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": descriptors,
    });
    let bytes = Bytes::from(
        serde_json::to_vec(&manifest).map_err(|e| ImageError::Internal(e.to_string()))?,
    );
    debug_assert!(Kind::from_media_type(manifest::OCI_MANIFEST).is_some());
    Ok(registry
        .push_manifest(repository, tag, manifest::OCI_MANIFEST, bytes)
        .await?)
}

/// How an imported root filesystem runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsOptions {
    pub env: Vec<(String, String)>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
}

impl Default for RootfsOptions {
    fn default() -> Self {
        RootfsOptions {
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            cmd: vec!["/bin/sh".into()],
            working_dir: None,
        }
    }
}

/// A root filesystem imported as an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRootfs {
    pub repository: String,
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The single layer's digest and size.
    pub layer_digest: String,
    pub layer_size: u64,
}

/// Splits `name` (`runtimes/python3` or `runtimes/python3:tag`) into a repository and a
/// tag (`latest` by default), both checked.
pub fn split_name(name: &str) -> Result<(String, String), ImageError> {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].find(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, "latest"),
    };
    if !names::is_repository(repository) {
        return Err(ImageError::Invalid(format!(
            "{repository:?} is not a repository name (lowercase letters, digits, '.', '_', '-', separated by '/')"
        )));
    }
    if !names::is_tag(tag) {
        return Err(ImageError::Invalid(format!("{tag:?} is not a tag")));
    }
    Ok((repository.to_string(), tag.to_string()))
}

/// Imports the root filesystem `dir` into `registry` as the single-layer image `name`
/// (`runtimes/python3[:tag]`), writing the layer in `scratch` (removed afterwards). This
/// is how base images are made without a public registry (`runway image import-rootfs`).
pub async fn import_rootfs(
    registry: &Registry,
    dir: &Path,
    name: &str,
    options: &RootfsOptions,
    scratch: &Path,
) -> Result<ImportedRootfs, ImageError> {
    split_name(name)?;
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(|source| ImageError::Io {
            context: format!("cannot create {}", scratch.display()),
            source,
        })?;
    let out = scratch.join(format!("rootfs-{}.tar.gz", uuid::Uuid::new_v4().simple()));
    let (d, o) = (dir.to_path_buf(), out.clone());
    let written = tokio::task::spawn_blocking(move || layer::write_rootfs_layer(&d, &o))
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))?;
    let result = match written {
        Ok(layer) => import_layer(registry, &layer, name, options).await,
        Err(source) => Err(ImageError::Io {
            context: format!("cannot pack {}", dir.display()),
            source,
        }),
    };
    let _ = tokio::fs::remove_file(&out).await;
    result
}

/// Imports an already written root filesystem layer as the single-layer image `name`.
pub async fn import_layer(
    registry: &Registry,
    layer: &LayerFile,
    name: &str,
    options: &RootfsOptions,
) -> Result<ImportedRootfs, ImageError> {
    let (repository, tag) = split_name(name)?;
    let base = BaseImage {
        reference: String::new(),
        repository: repository.clone(),
        digest: String::new(),
        layers: Vec::new(),
        config: Value::Null,
    };
    let new = [NewLayer {
        file: layer.clone(),
        created_by: "runway image import-rootfs".into(),
    }];
    let config = rootfs_config(layer, options);
    let digest = push_image(registry, &repository, &tag, &base, &new, &config).await?;
    tracing::info!(
        repository,
        tag,
        digest,
        size = layer.size,
        "root filesystem imported"
    );
    Ok(ImportedRootfs {
        repository,
        tag,
        digest,
        layer_digest: layer.digest.clone(),
        layer_size: layer.size,
    })
}

/// The image config of a single-layer image of a root filesystem: the host's platform,
/// `options`' command, environment and working directory.
pub fn rootfs_config(layer: &LayerFile, options: &RootfsOptions) -> Value {
    let base = json!({
        "architecture": runway_registry::host_platform().architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    let new = [NewLayer {
        file: layer.clone(),
        created_by: "runway image import-rootfs".into(),
    }];
    let run = RunSettings {
        cmd: Some(options.cmd.clone()),
        env: options.env.clone(),
        working_dir: options.working_dir.clone(),
        exposed_port: None,
        labels: Vec::new(),
    };
    derive_config(&base, &new, &run, &now_rfc3339())
}

/// Now, as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests;
