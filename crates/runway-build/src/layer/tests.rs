use super::*;
use crate::test_util::write_files;
use std::io::Read;

/// (path, type, mode, uid, mtime, link target, content) of each entry.
type Entry = (
    String,
    tar::EntryType,
    u32,
    u64,
    u64,
    Option<String>,
    Vec<u8>,
);

fn entries(layer: &LayerFile) -> Vec<Entry> {
    let bytes = std::fs::read(&layer.path).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref())
        ),
        layer.digest
    );
    assert_eq!(bytes.len() as u64, layer.size);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &tar_bytes).as_ref())
        ),
        layer.diff_id
    );
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                data,
            )
        })
        .collect()
}

fn names(layer: &LayerFile) -> Vec<String> {
    entries(layer).into_iter().map(|e| e.0).collect()
}

#[test]
fn source_layers_are_deterministic_and_at_app() {
    let src = tempfile::tempdir().unwrap();
    write_files(
        src.path(),
        &[
            ("b.py", "b"),
            ("a.py", "a"),
            ("pkg/z.txt", "z"),
            (".git/HEAD", "ref"),
            ("pkg/.git", "kept"),
        ],
    );
    std::os::unix::fs::symlink("a.py", src.path().join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.path().join("b.py"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let one = write_source_layer(src.path(), &out.path().join("1.tar.gz")).unwrap();
    assert_eq!(
        names(&one),
        vec![
            "app/",
            "app/a.py",
            "app/b.py",
            "app/link",
            "app/pkg/",
            "app/pkg/.git",
            "app/pkg/z.txt"
        ]
    );
    for (name, kind, mode, uid, mtime, target, data) in entries(&one) {
        assert_eq!((uid, mtime), (0, 0), "{name}");
        match name.as_str() {
            "app/b.py" => assert_eq!(
                (mode, data.as_slice()),
                (0o755, b"b".as_slice()),
                "setuid dropped"
            ),
            "app/link" => {
                assert_eq!(kind, tar::EntryType::Symlink);
                assert_eq!(target.as_deref(), Some("a.py"));
            }
            _ => {}
        }
    }
    // Times on disk do not matter; content does.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(src.path().join("a.py"), "a").unwrap();
    let two = write_source_layer(src.path(), &out.path().join("2.tar.gz")).unwrap();
    assert_eq!((&one.digest, &one.diff_id), (&two.digest, &two.diff_id));
    std::fs::write(src.path().join("a.py"), "a2").unwrap();
    let three = write_source_layer(src.path(), &out.path().join("3.tar.gz")).unwrap();
    assert_ne!(one.diff_id, three.diff_id);
    // An upload has no prefix.
    let packed = pack_source(src.path(), &out.path().join("p.tar.gz")).unwrap();
    assert_eq!(names(&packed.layer)[0], "a.py");
    assert!(write_source_layer(&src.path().join("a.py"), &out.path().join("x")).is_err());
}

#[test]
fn rootfs_layers_keep_owners_times_and_hard_links() {
    let root = tempfile::tempdir().unwrap();
    write_files(
        root.path(),
        &[
            ("usr/bin/tool", "#!/bin/sh\n"),
            ("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        ],
    );
    std::fs::hard_link(
        root.path().join("usr/bin/tool"),
        root.path().join("usr/bin/tool2"),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.path().join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let layer = write_rootfs_layer(root.path(), &out.path().join("rootfs.tar.gz")).unwrap();
    let all = entries(&layer);
    let get = |n: &str| {
        all.iter()
            .find(|e| e.0 == n)
            .unwrap_or_else(|| panic!("{n} in {all:?}"))
    };
    assert_eq!(get("bin").1, tar::EntryType::Symlink);
    assert_eq!(get("usr/bin/tool").2, 0o4755, "modes are kept");
    assert_eq!(get("usr/bin/tool2").1, tar::EntryType::Link);
    assert_eq!(get("usr/bin/tool2").5.as_deref(), Some("usr/bin/tool"));
    assert!(get("etc/passwd").4 > 0, "times are kept");
    let again = write_rootfs_layer(root.path(), &out.path().join("again.tar.gz")).unwrap();
    assert_eq!(layer.digest, again.digest);
}

#[test]
fn uploads_leave_out_what_gitignore_and_runwayignore_name() {
    let src = tempfile::tempdir().unwrap();
    write_files(
        src.path(),
        &[
            (".gitignore", "node_modules/\n.env\n*.log\n!keep.log\n"),
            (".runwayignore", "docs/\n"),
            ("app.js", "x"),
            (".env", "SECRET=1"),
            ("debug.log", "noise"),
            ("keep.log", "kept"),
            ("node_modules/left/index.js", "big"),
            ("docs/guide.md", "words"),
            ("web/.gitignore", "build\n"),
            ("web/build/out.js", "built"),
            ("web/src/main.js", "source"),
            (".git/config", "[core]"),
            (".github/workflows/ci.yml", "on: push"),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let packed = pack_source(src.path(), &out.path().join("p.tar.gz")).unwrap();
    let mut got = names(&packed.layer);
    got.retain(|n| !n.ends_with('/'));
    got.sort();
    assert_eq!(
        got,
        vec![
            ".github/workflows/ci.yml",
            ".gitignore",
            ".runwayignore",
            "app.js",
            "keep.log",
            "web/.gitignore",
            "web/src/main.js",
        ]
    );
    assert_eq!(packed.files, 7);
    assert_eq!(packed.bytes, 8 + 35 + 6 + 1 + 4 + 6 + 6);
}
