use super::*;

fn spec() -> JobSpec {
    JobSpec {
        name: "build-svc-1".into(),
        service_id: "svc".into(),
        image: ImageRef {
            repository: "r".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        },
        command: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        env: vec![("A".into(), "b".into())],
        workdir: "/src".into(),
        user: None,
        mounts: vec![JobMount {
            source: std::env::temp_dir(),
            target: "/root/.cache/pip".into(),
            read_only: false,
        }],
        cpu_units: 1024,
        memory_mb: 512,
        timeout: Duration::from_secs(60),
    }
}

#[test]
fn specs_are_validated_before_anything_is_created() {
    assert!(spec().validate().is_ok());
    type Change = Box<dyn Fn(&mut JobSpec)>;
    let mount = |target: &str| {
        let target = target.to_string();
        Box::new(move |s: &mut JobSpec| s.mounts[0].target = target.clone()) as Change
    };
    let bad: Vec<Change> = vec![
        Box::new(|s| s.name = String::new()),
        Box::new(|s| s.name = "a\nb".into()),
        Box::new(|s| s.service_id = "a/b".into()),
        Box::new(|s| s.image.digest = "latest".into()),
        Box::new(|s| s.command = vec![]),
        Box::new(|s| s.command = vec![String::new()]),
        Box::new(|s| s.command.push("a\0b".into())),
        Box::new(|s| s.env = vec![("A=B".into(), "c".into())]),
        Box::new(|s| s.workdir = "src".into()),
        Box::new(|s| s.workdir = "/src/../..".into()),
        Box::new(|s| s.user = Some(" ".into())),
        mount("relative"),
        mount("/"),
        mount("/a/../b"),
        mount("/proc/x"),
        mount("/etc/hosts"),
        mount("/dev"),
        Box::new(|s| s.mounts[0].source = "/nonexistent/runway-cache".into()),
        Box::new(|s| s.mounts[0].source = "relative".into()),
        Box::new(|s| s.cpu_units = 0),
        Box::new(|s| s.memory_mb = 1),
        Box::new(|s| s.timeout = Duration::ZERO),
    ];
    for change in bad {
        let mut s = spec();
        change(&mut s);
        assert!(
            matches!(s.validate(), Err(RuntimeError::InvalidSpec(_))),
            "{s:?}"
        );
    }
    // Near misses of the runtime's mount points are fine.
    let mut s = spec();
    s.mounts[0].target = "/etc/hostsfile".into();
    assert!(s.validate().is_ok());
}

#[test]
fn outcomes_say_why() {
    let exit = |code, signal| Exit {
        code,
        signal,
        oom_killed: false,
        at: runway_model::Timestamp::now(),
    };
    let ok = JobOutcome {
        exit: exit(Some(0), None),
        timed_out: false,
        duration: Duration::from_secs(3),
    };
    assert!(ok.succeeded());
    let failed = JobOutcome {
        exit: exit(Some(3), None),
        ..ok.clone()
    };
    assert!(!failed.succeeded());
    assert_eq!(failed.reason(), "exit code 3");
    let late = JobOutcome {
        exit: exit(None, Some(9)),
        timed_out: true,
        duration: Duration::from_secs(600),
    };
    assert!(!late.succeeded());
    assert_eq!(late.reason(), "timed out after 600s");
}

#[test]
fn job_ids_are_32_hex_digits() {
    let id = JobId::new();
    assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
    assert!(JobId::parse("../etc").is_none());
}
