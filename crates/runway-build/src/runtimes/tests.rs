use super::*;

#[test]
fn every_runtime_has_one_row_and_round_trips() {
    for r in Runtime::ALL {
        assert_eq!(TABLE.iter().filter(|i| i.runtime == r).count(), 1);
        assert_eq!(Runtime::from_name(r.name()), Some(r));
        assert_eq!(Runtime::from_api_name(r.api_name()), Some(r));
        r.check_version(r.default_version()).unwrap();
        // Every chain of successors ends at a runtime with an official image.
        let mut last = r;
        while let Some(next) = last.successor() {
            last = next;
        }
        assert!(last.default_image().is_some(), "{r}");
    }
    // Every API runtime the model accepts is one, and every one is accepted.
    for name in runway_model::validate::RUNTIMES {
        assert!(Runtime::from_api_name(name).is_some(), "{name}");
    }
    for r in Runtime::ALL {
        assert!(
            runway_model::validate::RUNTIMES.contains(&r.api_name()),
            "{r}"
        );
    }
    assert_eq!(Runtime::from_name("python9"), None);
}

#[test]
fn apprunner_yaml_names_are_case_insensitive_with_runways_earlier_names() {
    for (name, runtime) in [
        ("Nodejs12", Runtime::Nodejs12),
        ("NODEJS16", Runtime::Nodejs16),
        ("nodejs14 ", Runtime::Nodejs14),
        ("Python3", Runtime::Python3),
        ("python311", Runtime::Python311),
        ("Corretto8", Runtime::Corretto8),
        ("dotnet6", Runtime::Dotnet6),
        ("php81", Runtime::Php81),
        ("php8", Runtime::Php81),
        ("Ruby31", Runtime::Ruby31),
        ("ruby3", Runtime::Ruby31),
        ("GO1", Runtime::Go1),
        ("python3.11", Runtime::Python311),
        ("Nodejs 12", Runtime::Nodejs12),
    ] {
        assert_eq!(Runtime::from_name(name), Some(runtime), "{name}");
    }
}

#[test]
fn version_policy() {
    Runtime::Python311.check_version("3.11").unwrap();
    Runtime::Python311.check_version("3.11.9").unwrap();
    assert!(Runtime::Python311.check_version("3.12").is_err());
    assert!(Runtime::Python311.check_version("3.1").is_err());
    Runtime::Python3.check_version("3.8.16").unwrap();
    assert!(Runtime::Python3.check_version("2.7").is_err());
    assert!(Runtime::Nodejs22.check_version("18").is_err());
    assert!(Runtime::Nodejs22.check_version("22.x").is_err());
    assert!(Runtime::Nodejs22.check_version("22;rm").is_err());
    assert!(Runtime::Nodejs22.check_version("").is_err());
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_newest_matching_version_is_chosen() {
    let t = tags(&["latest", "3.11.2", "3.11.10", "3.13.5", "3.9.2"]);
    assert_eq!(best_version(&t, Some("3.11")), Some("3.11.10"));
    assert_eq!(best_version(&t, Some("3.11.2")), Some("3.11.2"));
    assert_eq!(best_version(&t, Some("3.1")), None);
    assert_eq!(best_version(&t, None), Some("3.13.5"));
    assert_eq!(
        versions(&t),
        tags(&["3.13.5", "3.11.10", "3.11.2", "3.9.2"])
    );
}

fn official(rt: Runtime) -> Option<ImageChoice> {
    rt.default_image().map(|r| ImageChoice {
        reference: r.to_string(),
        source: ImageSource::Official,
        local_tags: None,
    })
}

#[test]
fn official_images_are_filled_with_the_version() {
    let c = choose(Runtime::Nodejs22, Some("22.4.1"), official).unwrap();
    assert_eq!(c.reference, "docker.io/library/node:22.4.1-slim");
    assert_eq!(c.version.as_deref(), Some("22.4.1"));
    assert_eq!(c.fallback, None);
    let c = choose(Runtime::Python311, None, official).unwrap();
    assert_eq!(c.reference, "docker.io/library/python:3.11-slim");
    assert!(choose(Runtime::Nodejs22, Some("20"), official).is_err());
}

#[test]
fn a_retired_runtime_falls_back_to_its_successor_and_says_so() {
    let c = choose(Runtime::Nodejs16, None, official).unwrap();
    assert_eq!(c.runtime, Runtime::Nodejs22);
    assert_eq!(c.reference, "docker.io/library/node:22-slim");
    let note = c.fallback.unwrap();
    assert!(
        note.contains("nodejs16")
            && note.contains("nodejs22")
            && note.contains("retired")
            && note.contains("`scripts/base-image nodejs16`"),
        "{note}"
    );
    // `python3` with `3.11` is the successor's line; `3` means it too.
    let c = choose(Runtime::Python3, Some("3.11"), official).unwrap();
    assert_eq!(c.reference, "docker.io/library/python:3.11-slim");
    let c = choose(Runtime::Python3, Some("3"), official).unwrap();
    assert_eq!(c.reference, "docker.io/library/python:3.11-slim");
    // A retired version builds with its successor's default, saying both why.
    let c = choose(Runtime::Python3, Some("3.8.16"), official).unwrap();
    assert_eq!(c.reference, "docker.io/library/python:3.11-slim");
    assert_eq!(c.version.as_deref(), Some("3.11"));
    let note = c.fallback.unwrap();
    assert!(
        note.contains("retired") && note.contains("runtime-version 3.8.16 has no image here"),
        "{note}"
    );
    // A version newer than the successor's: an error naming what there is and the fix.
    let e = choose(Runtime::Nodejs16, Some("23"), official)
        .unwrap_err()
        .0;
    assert!(e.contains("nodejs16 takes a runtime-version of 16"), "{e}");
    let c = choose(Runtime::Corretto8, Some("8"), |rt| {
        (rt == Runtime::Corretto11).then(|| ImageChoice {
            reference: "runtimes/corretto11:latest".into(),
            source: ImageSource::Imported,
            local_tags: Some(tags(&["latest", "11.0.25"])),
        })
    })
    .unwrap();
    assert_eq!(c.reference, "runtimes/corretto11:11.0.25");
}

#[test]
fn a_version_without_an_image_gets_the_nearest_one_and_says_so() {
    let t = tags(&["latest", "3.9.2", "3.11.2", "3.13.5"]);
    // The newest of the same minor version, then the oldest newer one.
    assert_eq!(nearest_version(&t, "3.11.9"), Some("3.11.2"));
    assert_eq!(nearest_version(&t, "3.8.16"), Some("3.9.2"));
    assert_eq!(nearest_version(&t, "3.7"), Some("3.9.2"));
    assert_eq!(nearest_version(&t, "3.12"), Some("3.13.5"));
    assert_eq!(nearest_version(&t, "3.14"), None);
    assert_eq!(nearest_version(&tags(&["latest"]), "3.9"), None);

    // The retired python3 at App Runner's 3.8.16, on a machine with Python 3.9 and 3.11.
    let imported = |rt: Runtime| {
        let t = match rt {
            Runtime::Python3 => tags(&["latest", "3.9.2"]),
            Runtime::Python311 => tags(&["latest", "3.11.2"]),
            _ => return None,
        };
        Some(ImageChoice {
            reference: format!("runtimes/{rt}:latest"),
            source: ImageSource::Imported,
            local_tags: Some(t),
        })
    };
    let c = choose(Runtime::Python3, Some("3.8.16"), imported).unwrap();
    assert_eq!(
        (c.runtime, c.reference.as_str(), c.version.as_deref()),
        (Runtime::Python3, "runtimes/python3:3.9.2", Some("3.9.2"))
    );
    let note = c.fallback.unwrap();
    assert!(
        note.contains("runtime-version 3.8.16 has no image here")
            && note.contains("Python 3.9.2 (runtimes/python3:3.9.2)"),
        "{note}"
    );
    // A version that is there is used as it is, without a note.
    let c = choose(Runtime::Python3, Some("3.9"), imported).unwrap();
    assert_eq!(
        (c.reference.as_str(), c.fallback),
        ("runtimes/python3:3.9.2", None)
    );
    // `3.11` of python3 is its successor's line.
    // The import it names is of the version asked for: python3's 3.9 image would not do.
    let c = choose(Runtime::Python3, Some("3.11"), imported).unwrap();
    assert_eq!(c.reference, "runtimes/python311:3.11.2");
    let note = c.fallback.unwrap();
    assert!(
        note.contains("is built with python311")
            && note.contains("`scripts/base-image python3 --version 3.11`"),
        "{note}"
    );
    // A patch release this machine lacks: the same minor version's.
    let c = choose(Runtime::Python311, Some("3.11.9"), imported).unwrap();
    assert_eq!(c.reference, "runtimes/python311:3.11.2");
    assert!(
        c.fallback
            .unwrap()
            .contains("runtime-version 3.11.9 has no image here")
    );
}

#[test]
fn imported_images_are_chosen_by_their_version_tags() {
    let imported = |rt: Runtime| {
        (rt == Runtime::Nodejs18).then(|| ImageChoice {
            reference: "runtimes/nodejs18:latest".into(),
            source: ImageSource::Imported,
            local_tags: Some(tags(&["latest", "18.19.0", "18.20.8"])),
        })
    };
    let c = choose(Runtime::Nodejs18, Some("18.19"), imported).unwrap();
    assert_eq!(c.reference, "runtimes/nodejs18:18.19.0");
    assert_eq!(c.fallback, None);
    let c = choose(Runtime::Nodejs18, None, imported).unwrap();
    assert_eq!(c.reference, "runtimes/nodejs18:latest");
    assert_eq!(c.version.as_deref(), Some("18.20.8"));
    // One this machine lacks: the nearest of the same minor version, then a newer one.
    let c = choose(Runtime::Nodejs18, Some("18.19.1"), imported).unwrap();
    assert_eq!(c.reference, "runtimes/nodejs18:18.19.0");
    let c = choose(Runtime::Nodejs18, Some("18.17.1"), imported).unwrap();
    assert_eq!(c.reference, "runtimes/nodejs18:18.19.0");
    assert!(c.fallback.is_some());
    // Newer than every image: refused, naming what there is.
    let e = choose(Runtime::Nodejs18, Some("18.21"), imported)
        .unwrap_err()
        .0;
    assert!(
        e.contains("18.20.8, 18.19.0") && e.contains("nodejs22: no image"),
        "{e}"
    );
    // Without an image of its own or its successor's: what to do.
    let e = choose(Runtime::Nodejs16, None, |_| None).unwrap_err().0;
    assert!(e.contains("scripts/base-image nodejs16"), "{e}");
}

#[test]
fn configured_references() {
    let overrides = HashMap::from([
        ("python3".to_string(), "runtimes/python3:latest".to_string()),
        (
            "NODEJS_22".to_string(),
            "registry.example.com/node:{version}".to_string(),
        ),
    ]);
    let mut images = RuntimeImages::new(&overrides).unwrap();
    assert_eq!(
        images.configured(Runtime::Python3),
        Some("runtimes/python3:latest")
    );
    assert_eq!(
        images.configured(Runtime::Nodejs22),
        Some("registry.example.com/node:{version}")
    );
    images.unset(Runtime::Python3);
    assert_eq!(images.configured(Runtime::Python3), None);
    assert!(images.set(Runtime::Go1, "two words").is_err());
    let bad = HashMap::from([("cobol".to_string(), "x".to_string())]);
    assert!(RuntimeImages::new(&bad).is_err());
}

#[test]
fn the_version_probe_names_the_interpreter_and_stops_a_mismatch() {
    let run = |script: String| {
        std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap()
    };
    // No interpreter: said, not fatal.
    let out = run(version_probe(Family::Ruby, None));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("==> Ruby: not found"));
    // A fake interpreter of another version: the build stops with the mismatch.
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    std::fs::write(&node, "#!/bin/sh\necho 22.17.0\n").unwrap();
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let with_path = |script: String| {
        std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap()
    };
    let out = with_path(version_probe(Family::Node, Some("22")));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("==> Node.js 22.17.0"));
    let out = with_path(version_probe(Family::Node, Some("18.19")));
    assert_eq!(out.status.code(), Some(VERSION_MISMATCH_STATUS));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "runway: runtime-version 18.19 was asked for, but the base image has Node.js 22.17.0"
        ),
        "{text}"
    );
}
