use super::*;
use crate::test_util::write_files;
use runway_model::shapes::CodeConfigurationValues;
use std::collections::BTreeMap;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_files(d.path(), files);
    d
}

fn api(values: CodeConfigurationValues) -> CodeConfiguration {
    CodeConfiguration {
        configuration_source: Some("API".into()),
        code_configuration_values: Some(values),
    }
}

#[test]
fn from_apprunner_yaml() {
    let d = dir_with(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    pre-build: [echo a]\n    build: [pip install -r requirements.txt]\n    post-build: [echo c]\n  env:\n    - name: PIP_BREAK_SYSTEM_PACKAGES\n      value: \"0\"\nrun:\n  runtime-version: 3.11.4\n  pre-run: [echo pre]\n  command: python3 app.py\n  network:\n    port: 8000\n    env: APP_PORT\n    protocol: h2c\n  env:\n    - name: PYTHONUNBUFFERED\n      value: \"0\"\n    - name: PORT\n      value: \"1\"\n  secrets:\n    - name: TOKEN\n      value-from: arn:aws:ssm:us-east-1:000000000000:parameter/t\n",
    )]);
    let p = plan(d.path(), None).unwrap();
    assert_eq!(p.origin, PlanOrigin::ConfigFile);
    assert_eq!(p.runtime, Runtime::Python3);
    assert_eq!(p.runtime_version.as_deref(), Some("3.11.4"));
    // pre-run runs in the build, last, as App Runner runs it while making the run image
    // (python311's `pip3 install` there reaches PyPI with the build's trust and proxy).
    assert_eq!(
        p.commands(),
        vec![
            "echo a",
            "pip install -r requirements.txt",
            "echo c",
            "echo pre"
        ]
    );
    // The user's build env replaces the runtime's default of the same name.
    let pip: Vec<_> = p
        .build_env
        .iter()
        .filter(|(k, _)| k == "PIP_BREAK_SYSTEM_PACKAGES")
        .collect();
    assert_eq!(
        pip,
        vec![&("PIP_BREAK_SYSTEM_PACKAGES".to_string(), "0".to_string())]
    );
    assert_eq!(p.pre_run, vec!["echo pre"]);
    assert_eq!(p.run_command, "python3 app.py");
    assert_eq!(p.port, 8000);
    assert_eq!(p.runtime_version.as_deref(), Some("3.11.4"));
    assert_eq!(p.secrets.len(), 1);
    assert_eq!(p.http.instance_protocol.as_deref(), Some("H2C"));
    let env = p.image_env();
    assert!(
        env.contains(&("PORT".to_string(), "8000".to_string())),
        "the port wins over run.env: {env:?}"
    );
    assert!(env.contains(&("APP_PORT".to_string(), "8000".to_string())));
    assert!(env.contains(&("PYTHONUNBUFFERED".to_string(), "0".to_string())));
    assert_eq!(env.iter().filter(|(k, _)| k == "PORT").count(), 1);
    // Configuration source REPOSITORY reads the file too.
    let repo = CodeConfiguration {
        configuration_source: Some("REPOSITORY".into()),
        code_configuration_values: None,
    };
    assert_eq!(
        plan(d.path(), Some(&repo)).unwrap().origin,
        PlanOrigin::ConfigFile
    );
}

#[test]
fn apprunner_yaml_errors_and_defaults() {
    let d = dir_with(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: python3\nrun:\n  command: 5\n  netwrk: {}\n",
    )]);
    match plan(d.path(), None) {
        Err(PlanError::ConfigFile(e)) => assert_eq!(e.line, 5, "{e}"),
        other => panic!("{other:?}"),
    }
    // No run.command: the runtime's default for the files.
    let d = dir_with(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python3\n"),
        ("app.py", ""),
    ]);
    let p = plan(d.path(), None).unwrap();
    assert_eq!(p.run_command, "python3 app.py");
    assert!(
        p.commands().is_empty(),
        "no build section, no build commands"
    );
    let d = dir_with(&[("apprunner.yaml", "version: 1.0\nruntime: python3\n")]);
    assert!(matches!(
        plan(d.path(), None),
        Err(PlanError::NoStartCommand(_))
    ));
    // A runtime-version outside the runtime's policy.
    let d = dir_with(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: nodejs22\nrun:\n  runtime-version: 18.1\n  command: x\n",
    )]);
    assert!(matches!(plan(d.path(), None), Err(PlanError::Invalid(_))));
}

#[test]
fn from_api_values() {
    let d = dir_with(&[("requirements.txt", ""), ("app.py", "")]);
    let values = CodeConfigurationValues {
        runtime: Some("PYTHON_3".into()),
        build_command: Some("pip install -r requirements.txt && python3 -m compileall .".into()),
        start_command: Some("python3 app.py --serve".into()),
        port: Some("9000".into()),
        runtime_environment_variables: Some(BTreeMap::from([("GREETING".into(), "hi".into())])),
        runtime_environment_secrets: Some(BTreeMap::from([(
            "DB".into(),
            "arn:aws:secretsmanager:x".into(),
        )])),
    };
    let p = plan(d.path(), Some(&api(values))).unwrap();
    assert_eq!(p.origin, PlanOrigin::Api);
    assert_eq!(
        p.build,
        vec!["pip install -r requirements.txt && python3 -m compileall ."]
    );
    assert_eq!(p.run_command, "python3 app.py --serve");
    assert_eq!(p.port, 9000);
    assert!(
        p.run_env
            .contains(&("GREETING".to_string(), "hi".to_string()))
    );
    assert_eq!(p.secrets[0].name, "DB");
    // API values win over an apprunner.yaml in the repository.
    write_files(
        d.path(),
        &[("apprunner.yaml", "version: 1.0\nruntime: nodejs22\n")],
    );
    let values = CodeConfigurationValues {
        runtime: Some("PYTHON_311".into()),
        ..Default::default()
    };
    let p = plan(d.path(), Some(&api(values))).unwrap();
    assert_eq!(p.runtime, Runtime::Python311);
    assert_eq!(
        p.build,
        vec!["python3 -m pip install -r requirements.txt"],
        "the runtime's default"
    );
    assert_eq!(p.run_command, "python3 app.py");
    assert_eq!(p.port, DEFAULT_PORT);
    for bad in [
        CodeConfigurationValues {
            runtime: Some("COBOL_1".into()),
            ..Default::default()
        },
        CodeConfigurationValues {
            runtime: None,
            ..Default::default()
        },
        CodeConfigurationValues {
            runtime: Some("PYTHON_3".into()),
            port: Some("http".into()),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            plan(d.path(), Some(&api(bad))),
            Err(PlanError::Invalid(_))
        ));
    }
    let missing = CodeConfiguration {
        configuration_source: Some("API".into()),
        code_configuration_values: None,
    };
    assert!(plan(d.path(), Some(&missing)).is_err());
}

#[test]
fn from_detection() {
    let d = dir_with(&[
        (
            "package.json",
            r#"{"scripts": {"start": "node server.js"}}"#,
        ),
        ("server.js", ""),
    ]);
    let p = plan(d.path(), None).unwrap();
    assert_eq!(p.origin, PlanOrigin::Detected);
    assert_eq!(p.runtime, Runtime::Nodejs22);
    assert_eq!(p.run_command, "npm start");
    assert_eq!(p.port, 8080);
    assert!(
        p.run_env
            .contains(&("NODE_ENV".to_string(), "production".to_string()))
    );
    let d = dir_with(&[("README.md", "")]);
    assert!(matches!(plan(d.path(), None), Err(PlanError::NoLanguage)));
    let d = dir_with(&[("requirements.txt", "")]);
    assert!(matches!(
        plan(d.path(), None),
        Err(PlanError::NoStartCommand(_))
    ));
    let d = dir_with(&[
        ("requirements.txt", ""),
        ("Procfile", "web: python3 -m http.server $PORT\n"),
    ]);
    assert_eq!(
        plan(d.path(), None).unwrap().run_command,
        "python3 -m http.server $PORT"
    );
}

#[test]
fn an_apprunner_yaml_link_out_is_refused() {
    let outside = dir_with(&[("x.yaml", "version: 1.0\nruntime: python3\n")]);
    let d = dir_with(&[("app.py", "")]);
    std::os::unix::fs::symlink(
        outside.path().join("x.yaml"),
        d.path().join("apprunner.yaml"),
    )
    .unwrap();
    assert!(matches!(
        plan(d.path(), None),
        Err(PlanError::Source(SourceError::Escape { .. }))
    ));
}

#[test]
fn env_names() {
    check_env_name("A_1").unwrap();
    check_env_name("_x").unwrap();
    for bad in ["", "1A", "A-B", "A=B", "AWSAPPRUNNER_X", "awsapprunnerx"] {
        assert!(check_env_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_detected_start_command_is_said() {
    let d = dir_with(&[
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build: [pip install -r requirements.txt]\n",
        ),
        ("requirements.txt", "flask\n"),
        ("app.py", ""),
    ]);
    let p = plan(d.path(), None).unwrap();
    assert_eq!(p.run_command, "python3 app.py");
    assert_eq!(p.notes.len(), 1);
    assert!(
        p.notes[0].contains("no run.command") && p.notes[0].contains("`python3 app.py`"),
        "{:?}",
        p.notes
    );
    // A start command given is not remarked on.
    write_files(
        d.path(),
        &[(
            "apprunner.yaml",
            "version: 1.0\nruntime: python311\nrun:\n  command: python3 app.py\n",
        )],
    );
    assert!(plan(d.path(), None).unwrap().notes.is_empty());
}
