//! Manifest parsing: any bytes, with any of the Content-Types clients send, give a
//! manifest or an error, never a panic; what parses is self-consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runway_registry::manifest::{self, Kind};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_MANIFEST_LIST),
    Some("application/json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok(m) = manifest::parse(content_type, bytes) {
        assert_eq!(Kind::from_media_type(m.kind.media_type()), Some(m.kind));
        if m.kind.is_index() {
            assert!(m.config.is_none() && m.layers.is_empty());
        } else {
            assert!(m.config.is_some() && m.manifests.is_empty());
        }
        let _ = m.referrer_artifact_type();
        assert!(m.blobs().count() <= m.layers.len() + 1);
    }
});
