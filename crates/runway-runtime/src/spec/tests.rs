use super::*;

fn run_config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
    RunConfig {
        entrypoint: entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect()),
        cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
        ..RunConfig::default()
    }
}

#[test]
fn args_come_from_the_start_command_or_the_image() {
    let c = run_config(Some(&["/entry"]), Some(&["serve", "--fast"]));
    assert_eq!(
        process_args(&c, None, true).unwrap(),
        ["/entry", "serve", "--fast"]
    );
    assert_eq!(
        process_args(&c, Some("npm start"), true).unwrap(),
        ["/bin/sh", "-c", "npm start"]
    );
    assert_eq!(
        process_args(&c, Some(r#"/app --name "a b" 'c d' e\ f"#), false).unwrap(),
        ["/app", "--name", "a b", "c d", "e f"]
    );
    assert_eq!(
        process_args(&c, Some("   "), false).unwrap(),
        ["/entry", "serve", "--fast"]
    );
    assert!(matches!(
        process_args(&run_config(None, None), None, true),
        Err(SpecError::NoCommand)
    ));
    assert!(matches!(
        process_args(&c, Some("'open"), false),
        Err(SpecError::StartCommand(_))
    ));
}

#[test]
fn words_split_as_a_shell_would() {
    assert_eq!(
        split_words(r#"a "b\"c" 'd\e' f\ g ""  "#).unwrap(),
        ["a", "b\"c", r"d\e", "f g", ""]
    );
    assert!(split_words(r#""open"#).is_err());
    assert!(split_words("end\\").is_err());
}

#[test]
fn environment_layers_image_service_and_port() {
    let env = environment(
        &[
            "PATH=/bin".into(),
            "A=image".into(),
            "B=image".into(),
            "junk".into(),
        ],
        &[("B".into(), "service".into()), ("PORT".into(), "1".into())],
        "host1",
        8080,
    );
    assert_eq!(
        env,
        [
            "HOSTNAME=host1",
            "PATH=/bin",
            "A=image",
            "B=service",
            "PORT=8080"
        ]
    );
    let env = environment(&[], &[], "h", 1);
    assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
}

#[test]
fn working_dir_is_absolute() {
    let mut c = RunConfig::default();
    assert_eq!(working_dir(&c), "/");
    c.working_dir = Some("srv/app".into());
    assert_eq!(working_dir(&c), "/srv/app");
    c.working_dir = Some("/opt".into());
    assert_eq!(working_dir(&c), "/opt");
}

#[test]
fn users_resolve_in_the_image() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nweb:x:1001:1002::/srv:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("etc/group"),
        "web:x:1002:\nlogs:x:3000:web,other\nstaff:x:50:\n",
    )
    .unwrap();
    let r = root.path();
    assert_eq!(resolve_user(None, r).unwrap(), (0, 0, vec![]));
    assert_eq!(
        resolve_user(Some("web"), r).unwrap(),
        (1001, 1002, vec![3000])
    );
    assert_eq!(
        resolve_user(Some("web:staff"), r).unwrap(),
        (1001, 50, vec![])
    );
    assert_eq!(
        resolve_user(Some("1001"), r).unwrap(),
        (1001, 1002, vec![3000])
    );
    assert_eq!(
        resolve_user(Some("4000:4001"), r).unwrap(),
        (4000, 4001, vec![])
    );
    assert!(matches!(
        resolve_user(Some("nobody"), r),
        Err(SpecError::User { .. })
    ));
    assert!(matches!(
        resolve_user(Some("web:nogroup"), r),
        Err(SpecError::User { .. })
    ));
    // /etc/passwd is read inside the root: an escaping symlink reads nothing of the host.
    std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../etc/passwd",
        root.path().join("etc/passwd"),
    )
    .unwrap();
    assert!(resolve_user(Some("root"), r).is_err());
    assert!(!has_shell(r));
}

#[test]
fn the_config_limits_and_isolates() {
    let etc = Path::new("/run/x/etc");
    let spec = runtime_config(&BundleSpec {
        hostname: "abc",
        process: ProcessSpec {
            args: vec!["/app".into()],
            env: vec!["PORT=8080".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
        },
        rootfs: Path::new("/run/x/rootfs"),
        netns: Path::new("/run/netns/n1"),
        etc,
        cgroups_path: "/runway-br/i1",
        cpu_units: 256,
        memory_mb: 512,
        pids_limit: 100,
        nofile: 1024,
        mounts: &[],
        id_map: None,
        sysfs: None,
    })
    .unwrap();
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["hostname"], "abc");
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["process"]["user"]["uid"], 1000);
    let caps: Vec<&str> = v["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(caps.contains(&"CAP_NET_BIND_SERVICE"));
    for absent in ["CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_MKNOD", "CAP_NET_ADMIN"] {
        assert!(!caps.contains(&absent), "{absent}");
    }
    let linux = &v["linux"];
    assert_eq!(linux["cgroupsPath"], "/runway-br/i1");
    assert_eq!(linux["resources"]["cpu"]["quota"], 25_000);
    assert_eq!(linux["resources"]["cpu"]["period"], 100_000);
    assert_eq!(linux["resources"]["memory"]["limit"], 512 << 20);
    assert_eq!(linux["resources"]["memory"]["swap"], 512 << 20);
    assert_eq!(linux["resources"]["pids"]["limit"], 100);
    let net = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .unwrap();
    assert_eq!(net["path"], "/run/netns/n1");
    assert!(
        linux["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/kcore".into())
    );
    assert!(
        linux["readonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/sys".into())
    );
    assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    let denied: Vec<&str> = linux["seccomp"]["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for s in ["mount", "bpf", "kexec_load", "unshare", "ptrace"] {
        assert!(denied.contains(&s), "{s}");
    }
    let hosts = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts["source"], "/run/x/etc/hosts");
    assert!(hosts["options"].as_array().unwrap().contains(&"ro".into()));
}

#[test]
fn bind_mounts_follow_the_generated_ones_with_their_access() {
    let mounts = [
        BindMount {
            source: "/var/cache/pip".into(),
            destination: "/root/.cache/pip".into(),
            read_only: false,
        },
        BindMount {
            source: "/srv/src".into(),
            destination: "/src".into(),
            read_only: true,
        },
    ];
    let spec = runtime_config(&BundleSpec {
        hostname: "job",
        process: ProcessSpec {
            args: vec!["/bin/sh".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        },
        rootfs: Path::new("/run/x/rootfs"),
        netns: Path::new("/run/netns/n1"),
        etc: Path::new("/run/x/etc"),
        cgroups_path: "/runway-br/j1",
        cpu_units: 1024,
        memory_mb: 1024,
        pids_limit: 100,
        nofile: 1024,
        mounts: &mounts,
        id_map: None,
        sysfs: None,
    })
    .unwrap();
    let v = serde_json::to_value(&spec).unwrap();
    let all = v["mounts"].as_array().unwrap();
    let etc = all
        .iter()
        .position(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    let cache = all
        .iter()
        .position(|m| m["destination"] == "/root/.cache/pip")
        .unwrap();
    assert!(cache > etc);
    let options = |i: usize| all[i]["options"].as_array().unwrap().clone();
    assert_eq!(all[cache]["source"], "/var/cache/pip");
    assert!(options(cache).contains(&"rw".into()));
    assert!(options(cache).contains(&"nosuid".into()));
    let src = all.iter().position(|m| m["destination"] == "/src").unwrap();
    assert!(options(src).contains(&"ro".into()));
}

#[test]
fn a_job_environment_has_no_port() {
    let env = job_environment(
        &["PATH=/usr/bin".into(), "LANG=C".into()],
        &[("LANG".into(), "C.UTF-8".into())],
        "job1",
    );
    assert_eq!(env, ["HOSTNAME=job1", "PATH=/usr/bin", "LANG=C.UTF-8"]);
    let env = job_environment(&[], &[], "job1");
    assert!(env[0].starts_with("PATH="));
}

#[test]
fn cpu_units_map_to_a_quota() {
    assert_eq!(cpu_quota(1024), 100_000);
    assert_eq!(cpu_quota(256), 25_000);
    assert_eq!(cpu_quota(4096), 400_000);
    assert_eq!(cpu_quota(1), 1000, "the kernel's minimum quota");
}

#[test]
fn an_instance_in_a_user_namespace_maps_its_ids_and_binds_its_own_sysfs() {
    let map = IdMap {
        host: 1_000_000_000,
        size: 65536,
    };
    let spec = runtime_config(&BundleSpec {
        hostname: "abc",
        process: ProcessSpec {
            args: vec!["/app".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        },
        rootfs: Path::new("/run/x/rootfs"),
        netns: Path::new("/run/netns/n1"),
        etc: Path::new("/run/x/etc"),
        cgroups_path: "/runway-br/i1",
        cpu_units: 1024,
        memory_mb: 512,
        pids_limit: 100,
        nofile: 1024,
        mounts: &[],
        id_map: Some(map),
        sysfs: Some(Path::new("/run/x/sys")),
    })
    .unwrap();
    let v = serde_json::to_value(&spec).unwrap();
    let linux = &v["linux"];
    let types: Vec<&str> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"user"), "{types:?}");
    for key in ["uidMappings", "gidMappings"] {
        assert_eq!(
            linux[key],
            serde_json::json!([{"hostID": 1_000_000_000u32, "containerID": 0, "size": 65536}])
        );
    }
    let sys: Vec<&serde_json::Value> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/sys")
        .collect();
    assert_eq!(sys.len(), 1);
    assert_eq!(sys[0]["type"], "bind");
    assert_eq!(sys[0]["source"], "/run/x/sys");
    assert!(sys[0]["options"].as_array().unwrap().contains(&"ro".into()));
    assert_eq!(map.to_host(0), 1_000_000_000);
    assert_eq!(map.to_host(1000), 1_000_001_000);
    assert_eq!(map.to_host(70000), 1_000_065_534, "out of range is nobody");
    assert!(IdMap { host: 0, size: 10 }.validate().is_err());
    assert!(
        IdMap {
            host: u32::MAX - 5,
            size: 10
        }
        .validate()
        .is_err()
    );
}
