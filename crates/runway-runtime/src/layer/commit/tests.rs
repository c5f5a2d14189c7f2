//! Upper directories written as layers (as root: owners, whiteouts, the trusted
//! attribute and overlay mounts need it).

use super::*;
use crate::layer::{UnpackOptions, unpack_blob};
use crate::rootfs;
use crate::test_util::TarBuilder;
use std::os::unix::fs::PermissionsExt;

/// One entry of a tarball, as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    data: Vec<u8>,
}

fn entry(path: &str, kind: tar::EntryType, mode: u32, owner: u64) -> Seen {
    Seen {
        path: path.to_string(),
        kind,
        mode,
        uid: owner,
        gid: owner,
        link: None,
        data: Vec::new(),
    }
}

/// The entries of a gzipped tarball, in order.
fn read_layer(path: &Path) -> Vec<Seen> {
    let gz = flate2::read::GzDecoder::new(File::open(path).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Seen {
            path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            data,
        });
    }
    out
}

fn sha256_file(path: &Path) -> String {
    crate::image::sha256_digest(&std::fs::read(path).unwrap())
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn write(path: &Path, data: &[u8], mode: u32, owner: u32) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(owner), Some(owner)).unwrap();
}

fn mkdir(path: &Path, mode: u32, owner: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(owner), Some(owner)).unwrap();
}

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

fn set_opaque(path: &Path) {
    rustix::fs::setxattr(path, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty()).unwrap();
}

#[test]
fn an_upper_directory_becomes_a_layer_entry_by_entry() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    std::fs::create_dir(&up).unwrap();
    mkdir(&up.join("app"), 0o750, 1000);
    write(&up.join("app/main.py"), b"print(1)\n", 0o640, 1000);
    std::fs::hard_link(up.join("app/main.py"), up.join("app/same.py")).unwrap();
    std::os::unix::fs::symlink("main.py", up.join("app/alias")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("app/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(up.join("app/sock")).unwrap();
    whiteout(&up.join("gone.txt"));
    mkdir(&up.join("opq"), 0o755, 0);
    set_opaque(&up.join("opq"));
    write(&up.join("opq/new"), b"fresh", 0o644, 0);
    // Whiteouts come before their siblings even when their names sort later.
    write(&up.join("opq/-early"), b"", 0o644, 0);
    whiteout(&up.join("opq/zz"));
    // Mount points: a cache whose parents exist only for it, one beside other content,
    // and the runtime's /etc files.
    std::fs::create_dir_all(up.join("root/.cache/pip")).unwrap();
    mkdir(&up.join("keep"), 0o755, 0);
    std::fs::create_dir(up.join("keep/mnt")).unwrap();
    write(&up.join("keep/file"), b"k", 0o600, 0);
    std::fs::create_dir(up.join("etc")).unwrap();
    write(&up.join("etc/hosts"), b"", 0o644, 0);
    mkdir(&up.join("empty"), 0o700, 0);

    let out = t.path().join("layer.tar.gz");
    let layer = from_upper(&up, &["/root/.cache/pip", "keep/mnt", "/etc/hosts"], &out).unwrap();

    let seen = read_layer(&out);
    let mut expected = vec![
        entry(".wh.gone.txt", Regular, 0, 0),
        entry("app", Directory, 0o750, 1000),
        Seen {
            link: Some("main.py".into()),
            ..entry("app/alias", Symlink, 0o777, 0)
        },
        Seen {
            data: b"print(1)\n".to_vec(),
            ..entry("app/main.py", Regular, 0o640, 1000)
        },
        Seen {
            link: Some("app/main.py".into()),
            ..entry("app/same.py", Link, 0o640, 1000)
        },
        entry("empty", Directory, 0o700, 0),
        entry("keep", Directory, 0o755, 0),
        Seen {
            data: b"k".to_vec(),
            ..entry("keep/file", Regular, 0o600, 0)
        },
        entry("opq", Directory, 0o755, 0),
        entry("opq/.wh..wh..opq", Regular, 0, 0),
        entry("opq/.wh.zz", Regular, 0, 0),
        entry("opq/-early", Regular, 0o644, 0),
        Seen {
            data: b"fresh".to_vec(),
            ..entry("opq/new", Regular, 0o644, 0)
        },
    ];
    // Symlink modes depend on the filesystem; compare what the link was created with.
    let alias_mode = std::fs::symlink_metadata(up.join("app/alias"))
        .unwrap()
        .mode()
        & 0o7777;
    expected[2].mode = alias_mode;
    let paths = |v: &[Seen]| v.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&seen), paths(&expected));
    assert_eq!(seen, expected);
    assert_eq!(layer.entries, expected.len() as u64);
    assert_eq!(layer.skipped, 2, "the fifo and the socket");

    // The digests are of the file and of its uncompressed content.
    assert_eq!(layer.digest, sha256_file(&out));
    assert_eq!(layer.diff_id, crate::image::sha256_digest(&gunzip(&out)));
    assert_eq!(layer.size, std::fs::metadata(&out).unwrap().len());
    assert_eq!(layer.path, out);
    // Modification times are kept.
    let mtime = std::fs::metadata(up.join("app/main.py")).unwrap().mtime();
    let gz = flate2::read::GzDecoder::new(File::open(&out).unwrap());
    let mut archive = tar::Archive::new(gz);
    let main = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"app/main.py")
        .unwrap();
    assert_eq!(main.header().mtime().unwrap(), mtime as u64);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn equal_directories_give_equal_layers() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    std::fs::create_dir_all(up.join("a/b")).unwrap();
    for i in 0..50 {
        write(
            &up.join(format!("a/b/f{i}")),
            format!("{i}").as_bytes(),
            0o644,
            0,
        );
    }
    whiteout(&up.join("a/w"));
    let first = from_upper(&up, &[], &t.path().join("1.tar.gz")).unwrap();
    let second = from_upper(&up, &[], &t.path().join("2.tar.gz")).unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.diff_id, second.diff_id);
    // Reading the files changed their access times, which the layer does not carry.
    let third = from_upper(&up, &[], &t.path().join("3.tar.gz")).unwrap();
    assert_eq!(first.digest, third.digest);
}

#[test]
fn long_names_and_link_targets_survive() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    let deep = up.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    write(&deep.join("f".repeat(120)), b"long", 0o644, 0);
    let target = "t".repeat(150);
    std::os::unix::fs::symlink(&target, deep.join("link")).unwrap();
    let out = t.path().join("l.tar.gz");
    from_upper(&up, &[], &out).unwrap();
    let seen = read_layer(&out);
    let file = format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "f".repeat(120));
    assert!(seen.iter().any(|s| s.path == file && s.data == b"long"));
    assert!(
        seen.iter()
            .any(|s| s.path.ends_with("/link") && s.link.as_deref() == Some(target.as_str()))
    );
}

#[test]
fn whiteout_names_cannot_be_stored() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    std::fs::create_dir_all(up.join("d")).unwrap();
    std::fs::write(up.join("d/.wh.sneaky"), b"").unwrap();
    let out = t.path().join("x.tar.gz");
    let err = from_upper(&up, &[], &out).unwrap_err();
    assert!(matches!(err, CommitError::ReservedName { .. }), "{err}");
    assert!(!out.exists());
}

#[test]
fn excluded_paths_must_stay_inside_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("x.tar.gz");
    for bad in ["", "/", "../etc", "a/../../b"] {
        let err = from_upper(t.path(), &[bad], &out).unwrap_err();
        assert!(matches!(err, CommitError::BadExclude(_)), "{bad}: {err}");
    }
    assert!(!out.exists());
}

/// Unmounts the overlay at its path when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rootfs::unmount(&self.0);
    }
}

fn overlay(t: &Path, name: &str, lowers: &[PathBuf]) -> (PathBuf, PathBuf, Mounted) {
    let dir = t.join(name);
    for sub in ["upper", "work", "merged", "empty"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    rootfs::mount_overlay_with(
        lowers,
        &dir.join("empty"),
        &dir.join("upper"),
        &dir.join("work"),
        &dir.join("merged"),
        rootfs::DIFF_OPTIONS,
    )
    .unwrap();
    let merged = dir.join("merged");
    (dir.join("upper"), merged.clone(), Mounted(merged))
}

#[test]
fn changes_made_through_an_overlay_stack_back_onto_the_lower_layer() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    let base = TarBuilder::new()
        .dir("opq", 0o755)
        .file("opq/old", 0o644, b"old")
        .dir("kept", 0o755)
        .file("kept/same", 0o644, b"same")
        .file("gone", 0o644, b"bye")
        .finish();
    crate::layer::unpack(base.as_slice(), &lower, &UnpackOptions::default()).unwrap();

    // A container's changes, made through the overlay as a build would make them.
    let (upper, merged, mount) = overlay(t.path(), "build", std::slice::from_ref(&lower));
    std::fs::remove_file(merged.join("gone")).unwrap();
    std::fs::remove_dir_all(merged.join("opq")).unwrap();
    std::fs::create_dir(merged.join("opq")).unwrap();
    std::fs::write(merged.join("opq/new"), b"new").unwrap();
    std::fs::create_dir_all(merged.join("out/bin")).unwrap();
    std::fs::write(merged.join("out/bin/tool"), b"tool").unwrap();
    std::fs::create_dir_all(merged.join("cache/pip")).unwrap();
    // Renaming a lower directory: without redirects it is copied whole into the upper
    // directory (as `mv` does when rename(2) answers EXDEV), the old name whited out.
    match std::fs::rename(merged.join("kept"), merged.join("moved")) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            std::fs::create_dir(merged.join("moved")).unwrap();
            std::fs::copy(merged.join("kept/same"), merged.join("moved/same")).unwrap();
            std::fs::remove_dir_all(merged.join("kept")).unwrap();
        }
        other => panic!("a lower directory was renamed in place: {other:?}"),
    }
    drop(mount);

    let out = t.path().join("layer.tar.gz");
    let layer = from_upper(&upper, &["cache/pip"], &out).unwrap();
    let names: Vec<String> = read_layer(&out).into_iter().map(|s| s.path).collect();
    assert_eq!(
        names,
        [
            ".wh.gone",
            ".wh.kept",
            "moved",
            "moved/same",
            "opq",
            "opq/.wh..wh..opq",
            "opq/new",
            "out",
            "out/bin",
            "out/bin/tool"
        ]
    );

    // Unpacked (digests checked) and stacked on the lower layer, it shows the changes.
    let committed = t.path().join("committed");
    std::fs::create_dir(&committed).unwrap();
    unpack_blob(
        File::open(&layer.path).unwrap(),
        &committed,
        &layer.digest,
        Some(&layer.diff_id),
        &UnpackOptions::default(),
    )
    .unwrap();
    let (_, view, _mount) = overlay(t.path(), "view", &[committed, lower]);
    assert!(!view.join("gone").exists());
    let listed = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(view.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listed("opq"), ["new"]);
    assert_eq!(listed("moved"), ["same"]);
    assert!(!view.join("kept").exists());
    assert_eq!(std::fs::read(view.join("out/bin/tool")).unwrap(), b"tool");
    assert!(!view.join("cache").exists());
}
