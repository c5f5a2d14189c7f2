//! Managed runtimes as a user meets them: `runway runtimes ls`, `set` and `check` on a
//! running server, an image imported by version the way `scripts/base-image` does, a
//! retired runtime version (in App Runner's capitalisation of the name) built with the
//! nearest version there is and saying so, a version newer than every image refused
//! naming the versions there are, and a missing image reported with its fix.

use crate::deploy::get;
use crate::harness::{Server, assert_ok};
use crate::source::copy_dir;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn runtimes(server: &Server, args: &[&str]) -> std::process::Output {
    server.runway().arg("runtimes").args(args).output().unwrap()
}

fn runtime_row(server: &Server, name: &str) -> Value {
    let out = runtimes(server, &["ls", "--output", "json"]);
    let list: Value = serde_json::from_str(&assert_ok(&out, "runway runtimes ls")).unwrap();
    list["Runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Runtime"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
}

/// Writes `apprunner.yaml` into the Python example copied to `dir`.
fn python_app(dir: &Path, yaml: &str) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello"),
        dir,
    );
    std::fs::write(dir.join("apprunner.yaml"), yaml).unwrap();
}

#[test]
fn runtimes_are_listed_set_checked_and_versions_honoured() {
    // No --runtime-image: what the server builds on is what it finds.
    let server = Server::start_with(&[]);
    let row = runtime_row(&server, "python311");
    assert_eq!(row["Source"], "official", "{row}");
    assert_eq!(row["State"], "not pulled", "{row}");
    let row = runtime_row(&server, "nodejs16");
    assert_eq!(
        (row["Retired"].clone(), row["State"].clone()),
        (Value::Bool(true), "missing".into())
    );

    // Imported by version, as scripts/base-image does: python3's image is Python 3.9
    // (Debian's nearest to App Runner's 3.8).
    let layer = runway_build::test_util::base_layer("python3").expect("the python3 base layer");
    let rootfs = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer.path)
        .arg("-C")
        .arg(rootfs.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = server
        .runway()
        .args(["image", "import-rootfs"])
        .arg(rootfs.path())
        .args(["--name", "runtimes/python3:3.9", "--tag", "latest"])
        .output()
        .unwrap();
    assert_ok(&out, "runway image import-rootfs");
    let row = runtime_row(&server, "python3");
    assert_eq!(
        (row["Source"].as_str(), row["State"].as_str()),
        (Some("imported"), Some("present")),
        "{row}"
    );
    assert_eq!(row["Versions"], serde_json::json!(["3.9"]));

    // A retired version, in a runtime name as App Runner users wrote it, builds with the
    // nearest version there is and says so, in the build log and in the events; the
    // build log names the interpreter that ran.
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("oldpy");
    python_app(
        &app,
        "version: 1.0\nruntime: Python3\nbuild:\n  commands:\n    build:\n      - python -c 'import sys; print(sys.version)'\n      - pip --version\nrun:\n  runtime-version: 3.8.16\n  command: python app.py\n  network:\n    port: 8000\n",
    );
    let out = server.deploy_source(&app);
    let stdout = assert_ok(&out, "runway deploy --source (Python3 at 3.8.16)");
    assert!(
        stdout.contains("runtime-version 3.8.16 has no image here; the nearest, Python 3.9 (runtimes/python3:3.9)"),
        "{stdout}"
    );
    assert!(stdout.contains("==> Python 3.9."), "{stdout}");
    let services = server.aws(&["list-services"]).ok();
    let host = services["ServiceSummaryList"][0]["ServiceUrl"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&server, &host, "/").0, 200);
    let events = server.runway().args(["events", "oldpy"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&events.stdout)
            .contains("runtime-version 3.8.16 has no image here"),
        "the note is an event too"
    );

    // A version newer than every image: refused, naming what there is and how to add it.
    let app = work.path().join("py312");
    python_app(
        &app,
        "version: 1.0\nruntime: python3\nrun:\n  runtime-version: 3.12\n  command: python app.py\n",
    );
    let out = server.deploy_source(&app);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("no base image for runtime python3 version 3.12")
            && stdout.contains("python3: 3.9;")
            && stdout.contains("python311: Python 3.11 only")
            && stdout.contains("scripts/base-image python3 --version 3.12"),
        "{stdout}"
    );

    // Set while running: a missing image is reported with its fix, not a DNS error.
    let out = runtimes(&server, &["set", "nodejs22", "runtimes/no-such-node:22"]);
    assert_ok(&out, "runway runtimes set");
    assert_eq!(runtime_row(&server, "nodejs22")["Source"], "set");
    let out = runtimes(&server, &["check", "nodejs22"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("runtimes/no-such-node:22")
            && stderr.contains("scripts/base-image nodejs22"),
        "{stderr}"
    );
    let out = runtimes(&server, &["set", "nodejs22", "--reset"]);
    assert_ok(&out, "runway runtimes set --reset");
    assert_eq!(runtime_row(&server, "nodejs22")["Source"], "official");
    // Bad input changes nothing.
    let out = runtimes(&server, &["set", "cobol1", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a managed runtime"));
    let out = runtimes(&server, &["check", "python3", "--version", "3.9"]);
    let stdout = assert_ok(&out, "runway runtimes check");
    assert!(stdout.contains("runtimes/python3:3.9"), "{stdout}");
}
