use super::*;

const HYBRID: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
";

const UNIFIED: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

#[test]
fn detects_the_layout_as_runc_does() {
    let v1 = Cgroups::parse(HYBRID).unwrap();
    assert!(!v1.is_v2());
    assert_eq!(
        v1.dir("cpu", "/runway-x/i1").unwrap(),
        PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/runway-x/i1")
    );
    assert_eq!(
        v1.dir("memory", "/runway-x/i1").unwrap(),
        PathBuf::from("/sys/fs/cgroup/memory/runway-x/i1")
    );
    assert!(
        v1.dirs("/runway-x")
            .contains(&PathBuf::from("/sys/fs/cgroup/unified/runway-x"))
    );
    assert!(
        v1.dirs("/runway-x")
            .contains(&PathBuf::from("/sys/fs/cgroup/systemd/runway-x"))
    );
    assert_eq!(
        v1.dirs("/runway-x").len(),
        4,
        "cpu,cpuacct once, memory, systemd, unified"
    );
    assert!(matches!(
        v1.dir("pids", "/x"),
        Err(CgroupError::NoController(_))
    ));

    let v2 = Cgroups::parse(UNIFIED).unwrap();
    assert!(v2.is_v2());
    assert_eq!(
        v2.dir("memory", "/runway-x/i1").unwrap(),
        PathBuf::from("/sys/fs/cgroup/runway-x/i1")
    );
    assert!(matches!(Cgroups::parse(""), Err(CgroupError::NotMounted)));
}

fn fake_v2(files: &[(&str, &str)]) -> (tempfile::TempDir, Cgroups) {
    let dir = tempfile::tempdir().unwrap();
    let cg = dir.path().join("runway-x/i1");
    std::fs::create_dir_all(&cg).unwrap();
    for (name, content) in files {
        std::fs::write(cg.join(name), content).unwrap();
    }
    let root = dir.path().to_path_buf();
    (dir, Cgroups::V2 { root })
}

#[test]
fn reads_v2_counters_and_limits() {
    let (_dir, cg) = fake_v2(&[
        (
            "memory.events",
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        ),
        ("cpu.max", "50000 100000\n"),
        ("memory.max", "67108864\n"),
    ]);
    assert_eq!(cg.oom_kills("/runway-x/i1").unwrap(), 1);
    assert_eq!(
        cg.cpu_limit("/runway-x/i1").unwrap(),
        CpuLimit {
            quota: Some(50000),
            period: 100000
        }
    );
    assert_eq!(cg.memory_limit("/runway-x/i1").unwrap(), Some(64 << 20));
    assert!(cg.exists("/runway-x/i1"));
    assert_eq!(cg.children("/runway-x"), vec!["i1".to_string()]);

    let (_dir, cg) = fake_v2(&[("cpu.max", "max 100000\n"), ("memory.max", "max\n")]);
    assert_eq!(cg.cpu_limit("/runway-x/i1").unwrap().quota, None);
    assert_eq!(cg.memory_limit("/runway-x/i1").unwrap(), None);
    assert!(matches!(
        cg.oom_kills("/runway-x/i1"),
        Err(CgroupError::Read { .. })
    ));
}

#[test]
fn reads_v1_counters_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mem = dir.path().join("memory");
    let cpu = dir.path().join("cpu");
    for d in [&mem, &cpu] {
        std::fs::create_dir_all(d.join("runway-x/i1")).unwrap();
    }
    std::fs::write(
        mem.join("runway-x/i1/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    .unwrap();
    std::fs::write(
        mem.join("runway-x/i1/memory.limit_in_bytes"),
        "9223372036854771712\n",
    )
    .unwrap();
    std::fs::write(cpu.join("runway-x/i1/cpu.cfs_quota_us"), "-1\n").unwrap();
    std::fs::write(cpu.join("runway-x/i1/cpu.cfs_period_us"), "100000\n").unwrap();
    let cg = Cgroups::V1 {
        controllers: [("memory".to_string(), mem), ("cpu".to_string(), cpu)].into(),
        unified: None,
    };
    assert_eq!(cg.oom_kills("/runway-x/i1").unwrap(), 2);
    assert_eq!(cg.memory_limit("/runway-x/i1").unwrap(), None);
    assert_eq!(cg.cpu_limit("/runway-x/i1").unwrap().quota, None);
}
