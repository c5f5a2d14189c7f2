use super::*;

const FULL: &str = r#"version: 1.0
runtime: python311
build:
  commands:
    pre-build:
      - echo pre
    build:
      - pip install -r requirements.txt
      - |
        python -m compileall .
        echo compiled
    post-build:
      - echo post
  env:
    - name: BUILD_MODE
      value: release
    - name: JOBS
      value: 4
run:
  runtime-version: 3.11.9
  pre-run:
    - python manage.py migrate
  command: python app.py
  network:
    port: 8000
    env: MY_APP_PORT
  env:
    - name: GREETING
      value: "hello: world"
    - name: DEBUG
      value: false
  secrets:
    - name: DB_PASSWORD
      value-from: "arn:aws:secretsmanager:us-east-1:000000000000:secret:db"
"#;

#[test]
fn every_field_is_read() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.runtime, Runtime::Python311);
    assert_eq!(c.pre_build, vec!["echo pre"]);
    assert_eq!(
        c.build,
        vec![
            "pip install -r requirements.txt".to_string(),
            "python -m compileall .\necho compiled\n".to_string()
        ]
    );
    assert_eq!(c.post_build, vec!["echo post"]);
    assert_eq!(
        c.build_env,
        vec![
            ("BUILD_MODE".to_string(), "release".to_string()),
            ("JOBS".to_string(), "4".to_string())
        ]
    );
    assert_eq!(c.runtime_version.as_deref(), Some("3.11.9"));
    assert_eq!(c.pre_run, vec!["python manage.py migrate"]);
    assert_eq!(c.command.as_deref(), Some("python app.py"));
    assert_eq!(c.port, Some(8000));
    assert_eq!(c.port_env.as_deref(), Some("MY_APP_PORT"));
    assert_eq!(
        c.run_env,
        vec![
            ("GREETING".to_string(), "hello: world".to_string()),
            ("DEBUG".to_string(), "false".to_string())
        ]
    );
    assert_eq!(
        c.secrets,
        vec![SecretRef {
            name: "DB_PASSWORD".into(),
            value_from: "arn:aws:secretsmanager:us-east-1:000000000000:secret:db".into()
        }]
    );
}

#[test]
fn the_smallest_file() {
    let c = parse("version: 1.0\nruntime: nodejs22\nrun:\n  command: node server.js\n").unwrap();
    assert_eq!(c.runtime, Runtime::Nodejs22);
    assert!(c.build.is_empty() && c.pre_build.is_empty() && c.post_build.is_empty());
    assert_eq!(c.port, None);
    assert_eq!(c.command.as_deref(), Some("node server.js"));
    // A version written as text, and a runtime-version that YAML would read as 3.1.
    let c = parse("version: \"1.0\"\nruntime: python3\nrun:\n  runtime-version: 3.10\n").unwrap();
    assert_eq!(c.runtime_version.as_deref(), Some("3.10"));
}

fn err(text: &str) -> ConfigFileError {
    parse(text).unwrap_err()
}

#[test]
fn a_wrong_type_names_line_column_and_what_was_expected() {
    let text = "version: 1.0\n\
                runtime: python3\n\
                build:\n\
                \x20 commands:\n\
                \x20   build:\n\
                \x20     - pip install .\n\
                run:\n\
                \x20 command: [python, app.py]\n";
    // Line 7 is `run:`; the list is on line 8.
    let e = err(text);
    assert_eq!((e.line, e.column), (8, 12), "{e}");
    assert!(e.message.contains("expected"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("apprunner.yaml line 8, column 12: "),
        "{shown}"
    );

    // A wrong type at line 7, column 13.
    let text = "version: 1.0\nruntime: python3\n# how to run it\nrun:\n  command: python3 app.py\nbuild:\n  commands: pip install .\n";
    let e = err(text);
    assert_eq!((e.line, e.column), (7, 13), "{e}");
    assert!(e.message.contains("expected"), "{e}");
    let text = "version: 1.0\nruntime: python3\nrun:\n  command: x\n  network:\n    port: 80\n    env: [1]\n";
    let e = err(text);
    assert_eq!((e.line, e.column), (7, 10), "{e}");
    let text = "version: 1.0\nruntime: python3\nrun:\n  command: x\n  network:\n    env: PORT2\n    port: {x: 1}\n";
    let e = err(text);
    assert_eq!((e.line, e.column), (7, 11), "{e}");
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let e = err("version: 1.0\nruntime: python3\nrun:\n  command: x\n  comand: y\n");
    assert_eq!((e.line, e.column), (5, 3), "{e}");
    assert!(e.message.contains("unknown field `comand`"), "{e}");
    assert!(e.message.contains("command"), "says what is allowed: {e}");
    let e = err("version: 1.0\nruntime: python3\nbiuld:\n  commands: {}\n");
    assert_eq!(e.line, 3, "{e}");
    let e = err("version: 1.0\nruntime: python3\nbuild:\n  commands:\n    prebuild: [x]\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("pre-build"), "{e}");
}

#[test]
fn bad_values_are_errors_at_the_value() {
    for version in ["1", "1.0", "1.10"] {
        let text =
            format!("version: {version}\nruntime: python3\nrun:\n  command: python3 app.py\n");
        parse(&text).unwrap_or_else(|e| panic!("version {version}: {e}"));
    }
    let e = err("version: 1.x\nruntime: python3\n");
    assert!(e.message.contains("expected version 1.0"), "{e}");
    let e = err("version: 2.0\nruntime: python3\n");
    assert_eq!((e.line, e.column), (1, 10), "{e}");
    assert!(e.message.contains("expected version 1.0"), "{e}");
    let e = err("version: 1.0\nruntime: cobol\n");
    assert_eq!((e.line, e.column), (2, 10), "{e}");
    assert!(e.message.contains("python3"), "lists the runtimes: {e}");
    let e = err("version: 1.0\nruntime: python3\nrun:\n  network:\n    port: 70000\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("port"), "{e}");
    let e = err("version: 1.0\nruntime: python3\nrun:\n  runtime-version: latest\n");
    assert_eq!(e.line, 4, "{e}");
    let e = err("version: 1.0\nruntime: python3\nrun:\n  env:\n    - name: 1BAD\n      value: x\n");
    assert_eq!(e.line, 5, "{e}");
    let e = err(
        "version: 1.0\nruntime: python3\nrun:\n  env:\n    - name: AWSAPPRUNNER_X\n      value: x\n",
    );
    assert!(e.message.contains("reserved"), "{e}");
    let e = err("version: 1.0\nruntime: python3\nrun:\n  env:\n    - name: A\n");
    assert!(e.message.contains("value"), "a missing field is named: {e}");
    let e = err(
        "version: 1.0\nruntime: python3\nrun:\n  secrets:\n    - name: A\n      value-from: \"\"\n",
    );
    assert_eq!(e.line, 6, "{e}");
    let e = err("version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - \"\"\n");
    assert_eq!(e.line, 6, "{e}");
}

#[test]
fn missing_and_malformed_documents() {
    let e = err("runtime: python3\n");
    assert!(e.message.contains("version"), "{e}");
    let e = err("version: 1.0\n");
    assert!(e.message.contains("runtime"), "{e}");
    assert_eq!(err("").line, 0);
    assert!(err("   \n").message.contains("empty"));
    let e = err("version: 1.0\nruntime: python3\nrun: [\n");
    assert_eq!(e.line, 3, "{e}");
    let e = err("version: 1.0\nruntime: python3\nruntime: nodejs22\n");
    assert_eq!(e.line, 3, "duplicate keys are refused: {e}");
    let e = err("- a\n- b\n");
    assert_eq!(e.line, 1, "{e}");
    let big = format!(
        "version: 1.0\nruntime: python3\n#{}\n",
        "x".repeat(MAX_FILE_SIZE)
    );
    assert!(err(&big).message.contains("larger"));
}

#[test]
fn hostile_yaml_does_not_panic() {
    // Aliases that expand without bound, deep nesting, tags, odd bytes.
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
    assert!(parse(bomb).is_err());
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(&deep).is_err());
    for text in [
        "version: !!binary aGk=\n",
        "\u{0}\u{1}\u{2}",
        "version: 1.0\nruntime: python3\nrun: !!str x\n",
        "%YAML 9.9\n---\n",
    ] {
        let _ = parse(text);
    }
}

#[test]
fn shape_errors_say_what_was_expected_in_the_files_terms() {
    let e = parse("version: 1.0\nruntime: python3\nbuild:\n  commands:\n    - pip install -r requirements.txt\nrun:\n  command: python app.py\n").unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.message
            .contains("found a list, expected build.commands to be a mapping of pre-build, build and post-build"),
        "{e}"
    );
    let e = parse("version: 1.0\nruntime: python3\nrun: python app.py\n").unwrap_err();
    assert!(
        e.message.contains("expected run to be a mapping with"),
        "{e}"
    );
}

#[test]
fn runways_http_settings_are_read_under_run_network() {
    let c = parse(
        "version: 1.0\nruntime: python3\nrun:\n  command: python3 server.py\n  network:\n    port: 50051\n    protocol: h2c\n    request-timeout: 5m\n    idle-timeout: 3600\n    max-request-body: unlimited\n",
    )
    .unwrap();
    assert_eq!(c.port, Some(50051));
    assert_eq!(
        c.http,
        HttpConfiguration {
            instance_protocol: Some("H2C".into()),
            request_timeout_seconds: Some(300),
            idle_timeout_seconds: Some(3600),
            max_request_body_bytes: Some(0),
        }
    );
    let c =
        parse("version: 1.0\nruntime: python3\nrun:\n  network:\n    max-request-body: 64MiB\n")
            .unwrap();
    assert_eq!(c.http.max_request_body_bytes, Some(64 << 20));
    assert_eq!(
        c.http.instance_protocol, None,
        "what is not given stays unset"
    );
    assert_eq!(parse(FULL).unwrap().http, HttpConfiguration::default());
}

#[test]
fn bad_http_settings_are_errors_at_the_value() {
    let network = |line: &str| {
        err(&format!(
            "version: 1.0\nruntime: python3\nrun:\n  network:\n    {line}\n"
        ))
    };
    let e = network("protocol: http3");
    assert_eq!((e.line, e.column), (5, 15), "{e}");
    assert!(e.message.contains("expected protocol http1 or h2c"), "{e}");
    let e = network("request-timeout: 2h");
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.message
            .contains("request-timeout must be from 1 second to 1h"),
        "{e}"
    );
    let e = network("idle-timeout: 2 days");
    assert!(e.message.contains("expected a duration"), "{e}");
    let e = network("idle-timeout: 25h");
    assert!(e.message.contains("idle-timeout must be"), "{e}");
    let e = network("max-request-body: lots");
    assert!(e.message.contains("expected a size"), "{e}");
}
