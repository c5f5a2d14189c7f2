//! Unpacking hostile and ordinary layers (as root: owners, whiteouts and overlay mounts
//! need it).

use super::*;
use crate::test_util::{TarBuilder, gzip, write_layout};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// A layer directory inside a scratch directory, so "outside the layer" is observable.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("layer")).unwrap();
        Scratch { dir }
    }

    fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }

    fn outside(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn unpack(&self, tar: Vec<u8>) -> Result<UnpackStats> {
        unpack(tar.as_slice(), &self.layer(), &UnpackOptions::default())
    }
}

fn refused(result: Result<UnpackStats>) -> String {
    match result {
        Err(e @ UnpackError::Escape { .. }) => e.to_string(),
        other => panic!("expected the layer to be refused, got {other:?}"),
    }
}

#[test]
fn dotdot_paths_are_refused_and_nothing_lands_outside() {
    let s = Scratch::new();
    let msg = refused(s.unpack(TarBuilder::new().file("../escaped", 0o644, b"x").finish()));
    assert!(msg.contains(".."), "{msg}");
    assert!(!s.outside("escaped").exists());
    refused(
        s.unpack(
            TarBuilder::new()
                .file("a/../../escaped2", 0o644, b"x")
                .finish(),
        ),
    );
    assert!(!s.outside("escaped2").exists());
}

#[test]
fn absolute_paths_are_contained_in_the_layer() {
    let s = Scratch::new();
    let name = format!("runway-abs-{}", uuid::Uuid::new_v4().simple());
    s.unpack(
        TarBuilder::new()
            .file(&format!("/{name}"), 0o644, b"inside")
            .finish(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.layer().join(&name)).unwrap(), b"inside");
    assert!(!Path::new("/").join(&name).exists());
}

#[test]
fn entries_through_escaping_symlinks_are_refused() {
    let s = Scratch::new();
    std::fs::create_dir(s.outside("target")).unwrap();
    let abs = s.outside("target").display().to_string();
    // Absolute, relative, and a chain that only escapes at its second link.
    for tar in [
        TarBuilder::new()
            .symlink("link", &abs)
            .file("link/pwned", 0o644, b"x")
            .finish(),
        TarBuilder::new()
            .symlink("link", "../target")
            .file("link/pwned", 0o644, b"x")
            .finish(),
        TarBuilder::new()
            .dir("d", 0o755)
            .symlink("d/up", "..")
            .symlink("hop", "d/up/../target")
            .file("hop/pwned", 0o644, b"x")
            .finish(),
    ] {
        let s2 = Scratch::new();
        std::fs::create_dir(s2.outside("target")).unwrap();
        let msg = refused(s2.unpack(tar));
        assert!(msg.contains("symlink"), "{msg}");
        assert!(!s2.outside("target/pwned").exists());
    }
    // A symlink that stays inside is followed.
    s.unpack(
        TarBuilder::new()
            .dir("real", 0o755)
            .symlink("alias", "real")
            .file("alias/file", 0o644, b"in")
            .symlink("abs-out", "/etc/passwd")
            .finish(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.layer().join("real/file")).unwrap(), b"in");
    // Symlinks themselves may point anywhere: they resolve inside the container.
    assert_eq!(
        std::fs::read_link(s.layer().join("abs-out")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn hard_links_must_name_a_file_already_in_the_layer() {
    let s = Scratch::new();
    std::fs::write(s.outside("secret"), b"host").unwrap();
    refused(s.unpack(TarBuilder::new().hardlink("h", "../secret").finish()));
    refused(
        s.unpack(
            TarBuilder::new()
                .hardlink("h", "not-yet")
                .file("not-yet", 0o644, b"x")
                .finish(),
        ),
    );
    let abs = s.outside("secret").display().to_string();
    let s2 = Scratch::new();
    // An absolute target is read inside the layer, where it does not exist.
    refused(s2.unpack(TarBuilder::new().hardlink("h", &abs).finish()));
    let s3 = Scratch::new();
    let dir = s3.outside("").display().to_string();
    refused(
        s3.unpack(
            TarBuilder::new()
                .symlink("out", &dir)
                .hardlink("h", "out/secret")
                .finish(),
        ),
    );
    let s4 = Scratch::new();
    s4.unpack(
        TarBuilder::new()
            .file("f", 0o644, b"same")
            .hardlink("g", "f")
            .finish(),
    )
    .unwrap();
    let (f, g) = (
        std::fs::metadata(s4.layer().join("f")).unwrap(),
        std::fs::metadata(s4.layer().join("g")).unwrap(),
    );
    assert_eq!(f.ino(), g.ino());
    assert_eq!(std::fs::metadata(s.outside("secret")).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_are_skipped() {
    let s = Scratch::new();
    let stats = s
        .unpack(
            TarBuilder::new()
                .dir("dev", 0o755)
                .char_device("dev/mem", 1, 1)
                .fifo("dev/pipe")
                .finish(),
        )
        .unwrap();
    assert_eq!(stats.devices_skipped, 1);
    assert!(std::fs::symlink_metadata(s.layer().join("dev/mem")).is_err());
    let fifo = std::fs::metadata(s.layer().join("dev/pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
}

#[test]
fn setuid_and_setgid_bits_are_cleared_unless_allowed() {
    let tar = || {
        TarBuilder::new()
            .file("suid", 0o4755, b"x")
            .file("sgid", 0o2755, b"x")
            .file("plain", 0o640, b"x")
            .finish()
    };
    let s = Scratch::new();
    let stats = s.unpack(tar()).unwrap();
    assert_eq!(stats.setuid_cleared, 2);
    let mode = |n: &str| {
        std::fs::metadata(s.layer().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sgid"), 0o755);
    assert_eq!(mode("plain"), 0o640);

    let s = Scratch::new();
    let allow = UnpackOptions {
        allow_setuid: true,
        ..UnpackOptions::default()
    };
    unpack(tar().as_slice(), &s.layer(), &allow).unwrap();
    assert_eq!(
        std::fs::metadata(s.layer().join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new();
    s.unpack(
        TarBuilder::new()
            .file("x", 0o644, b"file")
            .dir("x", 0o755)
            .file("x/inner", 0o644, b"in")
            .dir("x", 0o700)
            .symlink("y", "x")
            .file("y", 0o644, b"now a file")
            .finish(),
    )
    .unwrap();
    assert!(
        s.layer().join("x/inner").is_file(),
        "a directory over a directory merges"
    );
    assert_eq!(
        std::fs::metadata(s.layer().join("x"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(std::fs::read(s.layer().join("y")).unwrap(), b"now a file");
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers_in_the_overlay() {
    let s = Scratch::new();
    let lower = s.outside("lower");
    let upper = s.outside("upper");
    for d in [&lower, &upper] {
        std::fs::create_dir(d).unwrap();
    }
    unpack(
        TarBuilder::new()
            .file("dir/gone", 0o644, b"old")
            .file("dir/kept", 0o644, b"old")
            .file("opq/old", 0o644, b"old")
            .finish()
            .as_slice(),
        &lower,
        &UnpackOptions::default(),
    )
    .unwrap();
    unpack(
        TarBuilder::new()
            .file("dir/.wh.gone", 0o644, b"")
            .file("opq/.wh..wh..opq", 0o644, b"")
            .file("opq/new", 0o644, b"new")
            .file(".wh..wh.plnk/ignored", 0o644, b"")
            .finish()
            .as_slice(),
        &upper,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert!(!upper.join(".wh..wh.plnk").exists());
    let whiteout = std::fs::symlink_metadata(upper.join("dir/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &whiteout.file_type()
    ));
    assert_eq!(whiteout.rdev(), 0);

    let (scratch, work, merged, empty) = (
        s.outside("scratch"),
        s.outside("work"),
        s.outside("merged"),
        s.outside("empty"),
    );
    for d in [&scratch, &work, &merged, &empty] {
        std::fs::create_dir(d).unwrap();
    }
    crate::rootfs::mount_overlay(
        &[upper.clone(), lower.clone()],
        &empty,
        &scratch,
        &work,
        &merged,
    )
    .unwrap();
    let seen = (
        merged.join("dir/gone").exists(),
        merged.join("dir/kept").exists(),
        merged.join("opq/old").exists(),
        merged.join("opq/new").exists(),
    );
    crate::rootfs::unmount(&merged).unwrap();
    assert_eq!(seen, (false, true, false, true), "gone, kept, old, new");
}

#[test]
fn blobs_are_checked_against_their_digests() {
    let tar = TarBuilder::new().file("f", 0o644, b"content").finish();
    let gz = gzip(&tar);
    let digest = crate::image::sha256_digest(&gz);
    let diff_id = crate::image::sha256_digest(&tar);
    let s = Scratch::new();
    unpack_blob(
        gz.as_slice(),
        &s.layer(),
        &digest,
        Some(&diff_id),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.layer().join("f")).unwrap(), b"content");

    let s = Scratch::new();
    let err = unpack_blob(
        gz.as_slice(),
        &s.layer(),
        &diff_id,
        None,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, UnpackError::Digest { what: "blob", .. }),
        "{err}"
    );
    let s = Scratch::new();
    let err = unpack_blob(
        gz.as_slice(),
        &s.layer(),
        &digest,
        Some(&digest),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Digest {
                what: "uncompressed",
                ..
            }
        ),
        "{err}"
    );
    // Uncompressed layers are recognised by their content.
    let s = Scratch::new();
    unpack_blob(
        tar.as_slice(),
        &s.layer(),
        &diff_id,
        Some(&diff_id),
        &UnpackOptions::default(),
    )
    .unwrap();
    let s = Scratch::new();
    let zstd = [0x28u8, 0xb5, 0x2f, 0xfd, 0, 0];
    let err = unpack_blob(
        zstd.as_slice(),
        &s.layer(),
        &digest,
        None,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Zstd(_)), "{err}");
}

#[test]
fn expansion_is_bounded() {
    let tar = TarBuilder::new()
        .file("big", 0o644, &vec![0u8; 64 * 1024])
        .finish();
    let s = Scratch::new();
    let opts = UnpackOptions {
        max_bytes: 16 * 1024,
        ..UnpackOptions::default()
    };
    let gz = gzip(&tar);
    let err = unpack_blob(gz.as_slice(), &s.layer(), "sha256:x", None, &opts).unwrap_err();
    assert!(
        matches!(err, UnpackError::TooLarge { .. } | UnpackError::Tar(_)),
        "{err}"
    );
}

#[test]
fn truncated_tarballs_are_an_error() {
    let mut tar = TarBuilder::new().file("f", 0o644, &[7u8; 4096]).finish();
    tar.truncate(1024);
    let s = Scratch::new();
    assert!(matches!(s.unpack(tar), Err(UnpackError::Tar(_))));
}

#[test]
fn the_cache_unpacks_once_and_keeps_nothing_of_a_failed_layer() {
    let images = tempfile::tempdir().unwrap();
    let good = TarBuilder::new().file("hello", 0o644, b"world").finish();
    let (layout, image) = write_layout(images.path(), &[good], serde_json::json!({}), "t").unwrap();
    let resolved = crate::image::resolve(&layout, &image).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(cache_dir.path(), UnpackOptions::default()).unwrap();
    let path = cache.ensure(&layout, "t", &resolved.layers[0]).unwrap();
    assert_eq!(std::fs::read(path.join("hello")).unwrap(), b"world");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // Cached: a second call does not read the blob (removing it proves it).
    let blob = images
        .path()
        .join("blobs/sha256")
        .join(&resolved.layers[0].digest["sha256:".len()..]);
    std::fs::remove_file(&blob).unwrap();
    assert_eq!(
        cache.ensure(&layout, "t", &resolved.layers[0]).unwrap(),
        path
    );

    // A hostile layer leaves neither a cache entry nor a temporary directory.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = TarBuilder::new()
        .file("ok", 0o644, b"x")
        .file("../../x", 0o644, b"x")
        .finish();
    let (layout, image) = write_layout(bad_dir.path(), &[bad], serde_json::json!({}), "b").unwrap();
    let resolved = crate::image::resolve(&layout, &image).unwrap();
    assert!(cache.ensure(&layout, "b", &resolved.layers[0]).is_err());
    assert!(!cache.path(&resolved.layers[0].digest).unwrap().exists());
    assert_eq!(
        std::fs::read_dir(cache_dir.path().join("tmp"))
            .unwrap()
            .count(),
        0
    );
    // A half-unpacked layer left by a crash is removed when the cache opens.
    std::fs::create_dir(cache_dir.path().join("tmp/leftover")).unwrap();
    LayerCache::open(cache_dir.path(), UnpackOptions::default()).unwrap();
    assert_eq!(
        std::fs::read_dir(cache_dir.path().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_user_namespace_map_owns_files_by_the_mapped_ids() {
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
        .symlink("etc/link", "passwd")
        .finish();
    let s = Scratch::new();
    let opts = UnpackOptions {
        id_map: Some(crate::spec::IdMap {
            host: 1_000_000_000,
            size: 65536,
        }),
        ..UnpackOptions::default()
    };
    unpack(tar.as_slice(), &s.layer(), &opts).unwrap();
    for name in ["etc", "etc/passwd", "etc/link"] {
        let meta = std::fs::symlink_metadata(s.layer().join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1_000_000_000, 1_000_000_000),
            "{name}"
        );
    }
}
