use super::*;
use std::io::Write;

/// A tar entry written with raw header bytes, so that hostile names get through.
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: &'a str,
}

fn raw(name: &str, kind: tar::EntryType, data: &[u8], link: &str) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tarball(dir: &Path, entries: &[Raw<'_>]) -> PathBuf {
    let mut tar = Vec::new();
    for e in entries {
        tar.extend(raw(e.name, e.kind, e.data, e.link));
    }
    tar.extend([0u8; 1024]);
    let path = dir.join(format!("{}.tar.gz", uuid::Uuid::new_v4().simple()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    path
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        data,
        link: "",
    }
}

fn link<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Symlink,
        data: b"",
        link: target,
    }
}

fn unpack(entries: &[Raw<'_>]) -> (tempfile::TempDir, Result<u64, SourceError>) {
    let work = tempfile::tempdir().unwrap();
    let archive = tarball(work.path(), entries);
    let dest = work.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let r = unpack_upload(&archive, &dest, UploadLimits::default());
    (work, r)
}

#[test]
fn a_good_upload_unpacks() {
    let (work, r) = unpack(&[
        Raw {
            name: "./",
            kind: tar::EntryType::Directory,
            data: b"",
            link: "",
        },
        file("./app.py", b"print('hi')\n"),
        file("pkg/sub/mod.py", b"x = 1\n"),
        link("pkg/link.py", "sub/mod.py"),
        link("pkg/sub/up.py", "../../app.py"),
        file("app.py", b"print('again')\n"),
    ]);
    assert_eq!(r.unwrap(), 12 + 6 + 15);
    let out = work.path().join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("app.py")).unwrap(),
        "print('again')\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("pkg/link.py")).unwrap(),
        "x = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("pkg/sub/up.py")).unwrap(),
        "print('again')\n"
    );
}

#[test]
fn escapes_are_refused() {
    let cases: Vec<(&str, Vec<Raw<'_>>)> = vec![
        ("dot-dot", vec![file("../evil", b"x")]),
        ("dot-dot inside", vec![file("a/../../evil", b"x")]),
        ("absolute link", vec![link("l", "/etc")]),
        ("link climbing out", vec![link("a/l", "../../etc")]),
        ("dot-dot after a name", vec![link("l", "a/../../etc")]),
        (
            "writing through a link",
            vec![link("l", "."), file("l/x", b"x")],
        ),
        (
            "hard link",
            vec![
                file("a", b"x"),
                Raw {
                    name: "b",
                    kind: tar::EntryType::Link,
                    data: b"",
                    link: "a",
                },
            ],
        ),
        (
            "device",
            vec![Raw {
                name: "d",
                kind: tar::EntryType::Char,
                data: b"",
                link: "",
            }],
        ),
        (
            "fifo",
            vec![Raw {
                name: "f",
                kind: tar::EntryType::Fifo,
                data: b"",
                link: "",
            }],
        ),
    ];
    for (what, entries) in cases {
        let (work, r) = unpack(&entries);
        assert!(r.is_err(), "{what} was accepted");
        assert!(!work.path().join("evil").exists(), "{what}");
    }
    // An absolute path is made relative (tar's own rule), never written outside.
    let (work, r) = unpack(&[file("/abs.txt", b"x")]);
    r.unwrap();
    assert!(work.path().join("out/abs.txt").exists());
}

#[test]
fn limits_are_kept() {
    let work = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 4096];
    let archive = tarball(work.path(), &[file("a", &big), file("b", &big)]);
    let dest = work.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let limits = UploadLimits {
        max_bytes: 6000,
        max_entries: 100,
    };
    assert!(matches!(
        unpack_upload(&archive, &dest, limits),
        Err(SourceError::Upload(_))
    ));
    let dest = work.path().join("out2");
    std::fs::create_dir(&dest).unwrap();
    let limits = UploadLimits {
        max_bytes: 1 << 20,
        max_entries: 1,
    };
    assert!(matches!(
        unpack_upload(&archive, &dest, limits),
        Err(SourceError::Upload(_))
    ));
    // Not a tarball at all.
    let junk = work.path().join("junk");
    std::fs::write(&junk, b"not gzip").unwrap();
    let dest = work.path().join("out3");
    std::fs::create_dir(&dest).unwrap();
    assert!(unpack_upload(&junk, &dest, UploadLimits::default()).is_err());
}

#[test]
fn source_directories_stay_inside() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("services/api")).unwrap();
    std::fs::write(root.path().join("file"), b"").unwrap();
    std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
    std::os::unix::fs::symlink("services", root.path().join("in")).unwrap();
    let real = |p: &str| std::fs::canonicalize(root.path().join(p)).unwrap();
    assert_eq!(source_directory(root.path(), None).unwrap(), root.path());
    assert_eq!(
        source_directory(root.path(), Some("/")).unwrap(),
        root.path()
    );
    assert_eq!(
        source_directory(root.path(), Some("services/api")).unwrap(),
        real("services/api")
    );
    assert_eq!(
        source_directory(root.path(), Some("/services/api/")).unwrap(),
        real("services/api")
    );
    assert_eq!(
        source_directory(root.path(), Some("in/api")).unwrap(),
        real("services/api")
    );
    assert!(matches!(
        source_directory(root.path(), Some("../x")),
        Err(SourceError::Escape { .. })
    ));
    assert!(matches!(
        source_directory(root.path(), Some("out")),
        Err(SourceError::Escape { .. })
    ));
    assert!(matches!(
        source_directory(root.path(), Some("nope")),
        Err(SourceError::NoSourceDirectory(_))
    ));
    assert!(matches!(
        source_directory(root.path(), Some("file")),
        Err(SourceError::NoSourceDirectory(_))
    ));
}

#[test]
fn credentials_are_redacted() {
    assert_eq!(
        redact_url("https://user:tok@github.com/o/r.git"),
        "https://github.com/o/r.git"
    );
    assert_eq!(
        redact_url("fatal: unable to access 'https://x:y@h/r/': 403"),
        "fatal: unable to access 'https://h/r/': 403"
    );
    assert_eq!(
        redact_url("git@github.com:o/r.git"),
        "git@github.com:o/r.git"
    );
    let c = GitCredentials::Token {
        username: None,
        token: "s3cret".into(),
    };
    assert!(!format!("{c:?}").contains("s3cret"));
    let k = GitCredentials::SshKey {
        private_key: "-----BEGIN KEY".into(),
    };
    assert!(!format!("{k:?}").contains("BEGIN"));
}
