//! OCI image layouts for tests and benchmarks: an image config and layers of random
//! data (gzipped tars), written as an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) that skopeo and podman read as `oci:<dir>:<tag>`.

use crate::digest::{Algorithm, Digest};
use crate::manifest::OCI_MANIFEST;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A blob written to a layout.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    /// The tag in `index.json`.
    pub tag: String,
    pub manifest: Blob,
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Layout {
    /// The skopeo/podman transport reference (`oci:<dir>:<tag>`).
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Where a blob of the layout is.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        self.dir.join("blobs").join(alg).join(hex)
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    for chunk in out.chunks_mut(1 << 16) {
        // Fails only if the system generator is broken; tests would then fail loudly.
        aws_lc_rs::rand::fill(chunk).expect("system random generator");
    }
    out
}

fn write_blob(dir: &Path, bytes: &[u8], media_type: &str) -> io::Result<Blob> {
    let digest = Digest::of(Algorithm::Sha256, bytes);
    let path = dir.join("blobs").join("sha256").join(digest.hex());
    fs::write(path, bytes)?;
    Ok(Blob {
        digest: digest.to_string(),
        size: bytes.len() as u64,
        media_type: media_type.to_string(),
    })
}

/// A tar holding one file of `size` random bytes, gzipped; and the tar's own digest
/// (the layer's diff id).
pub fn random_layer(name: &str, size: usize) -> io::Result<(Vec<u8>, String)> {
    let mut tar = tar::Builder::new(Vec::new());
    let data = random_bytes(size);
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, format!("data/{name}.bin"), data.as_slice())?;
    let tar = tar.into_inner()?;
    let diff_id = Digest::of(Algorithm::Sha256, &tar).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
}

/// Writes an OCI image layout in `dir` with `layers` layers of `layer_size` random bytes
/// each, tagged `tag`.
pub fn build_layout(dir: &Path, tag: &str, layers: usize, layer_size: usize) -> io::Result<Layout> {
    fs::create_dir_all(dir.join("blobs").join("sha256"))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut written = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let (gz, diff_id) = random_layer(&format!("layer{i}"), layer_size)?;
        written.push(write_blob(
            dir,
            &gz,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )?);
        diff_ids.push(diff_id);
    }
    let platform = crate::host_platform();
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/data/layer0.bin"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "runway test"})).collect::<Vec<_>>(),
    });
    let config = write_blob(
        dir,
        config.to_string().as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    )?;
    let descriptor = |b: &Blob| serde_json::json!({ "mediaType": b.media_type, "digest": b.digest, "size": b.size });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&config),
        "layers": written.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    let manifest_blob = write_blob(dir, &manifest_bytes, OCI_MANIFEST)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    fs::write(dir.join("index.json"), index.to_string())?;
    Ok(Layout {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest: manifest_blob,
        manifest_bytes,
        config,
        layers: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = build_layout(dir.path(), "v1", 2, 1000).unwrap();
        let parsed = crate::manifest::parse(Some(OCI_MANIFEST), &layout.manifest_bytes).unwrap();
        assert_eq!(parsed.layers.len(), 2);
        for blob in layout
            .layers
            .iter()
            .chain([&layout.config, &layout.manifest])
        {
            let bytes = fs::read(layout.blob_path(&blob.digest)).unwrap();
            assert_eq!(
                Digest::of(Algorithm::Sha256, &bytes).to_string(),
                blob.digest
            );
            assert_eq!(bytes.len() as u64, blob.size);
        }
    }
}
