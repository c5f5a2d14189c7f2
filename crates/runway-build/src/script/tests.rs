use super::*;
use std::process::Command;

fn sh(script: &str) -> (i32, String) {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn quoting() {
    assert_eq!(quote("plain-word_1.2"), "plain-word_1.2");
    assert_eq!(quote(""), "''");
    assert_eq!(quote("a b"), "'a b'");
    assert_eq!(quote("it's"), r"'it'\''s'");
    let (_, out) = sh(&format!(
        "printf '%s' {}",
        quote("$HOME `x` \"q\" 'a' \\ *")
    ));
    assert_eq!(out, "$HOME `x` \"q\" 'a' \\ *");
}

#[test]
fn the_build_script_stops_at_the_first_failure_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().to_str().unwrap();
    let commands = vec![
        "echo one > one.txt".to_string(),
        "cd sub 2>/dev/null || mkdir sub; export X=2".to_string(),
        "false && echo never".to_string(),
        "echo four > four.txt".to_string(),
    ];
    let (code, out) = sh(&build_script(workdir, &commands));
    assert_eq!(code, 1);
    assert!(dir.path().join("one.txt").exists());
    assert!(
        !dir.path().join("four.txt").exists(),
        "stopped at the third:\n{out}"
    );
    let last = out.lines().rev().find_map(parse_marker);
    assert_eq!(last, Some(3), "{out}");
    // Shell state carries from one command to the next.
    let (code, out) = sh(&build_script(
        workdir,
        &[
            "export GREETING=hi".into(),
            "mkdir -p d && cd d".into(),
            "echo \"$GREETING\" > here".into(),
        ],
    ));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("d/here")).unwrap(),
        "hi\n"
    );
    // A multi-line command's own status counts; an exit code is kept.
    let (code, _) = sh(&build_script(
        workdir,
        &["true\nexit 7".into(), "true".into()],
    ));
    assert_eq!(code, 7);
}

#[test]
fn markers_and_summaries() {
    assert_eq!(parse_marker("--> [2/5] npm ci"), Some(2));
    assert_eq!(parse_marker("--> [x/5] npm ci"), None);
    assert_eq!(parse_marker("npm ERR!"), None);
    assert_eq!(
        summary("  pip install -r requirements.txt  "),
        "pip install -r requirements.txt"
    );
    assert_eq!(summary("one\ntwo"), "one ...");
    assert_eq!(summary(&"x".repeat(300)).len(), 204);
}

#[test]
fn start_scripts() {
    assert_eq!(start_script("python3 app.py"), "exec python3 app.py");
    assert_eq!(start_script("cd web && node s.js"), "cd web && node s.js");
    assert_eq!(start_script("FOO=1 node s.js"), "FOO=1 node s.js");
    let (code, out) = sh(&start_script("echo \"run $((1+1))\""));
    assert_eq!((code, out.as_str()), (0, "run 2\n"));
}

#[test]
fn a_commands_errors_come_after_its_marker_on_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let script = build_script(
        dir.path().to_str().unwrap(),
        &["echo oops >&2; exit 4".to_string()],
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    // Nothing on a second stream that a reader could take before the marker.
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, vec!["--> [1/1] echo oops >&2; exit 4", "oops"]);
}
