use super::*;
use crate::test_env::Env;

fn put(name: &str, value: &str, kind: Option<ParameterType>) -> Put {
    Put {
        name: name.into(),
        value: value.into(),
        kind,
        ..Put::default()
    }
}

#[test]
fn values_come_back_and_secure_strings_only_with_decryption() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(Timestamp::from_millis(1)),
    };
    let mut tx = env.begin();
    assert_eq!(
        store
            .put(
                &mut *tx,
                put("/app/db/url", "postgres://db", Some(ParameterType::String))
            )
            .unwrap(),
        (1, Tier::Standard)
    );
    store
        .put(
            &mut *tx,
            put(
                "/app/db/password",
                "s3cr3t-pw",
                Some(ParameterType::SecureString),
            ),
        )
        .unwrap();
    let p = store.get(&mut *tx, "/app/db/url", false).unwrap();
    assert_eq!(
        (p.value.as_str(), p.arn.as_str()),
        (
            "postgres://db",
            "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/url"
        )
    );
    let hidden = store.get(&mut *tx, "/app/db/password", false).unwrap();
    assert_ne!(hidden.value, "s3cr3t-pw");
    let shown = store
        .get(
            &mut *tx,
            "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/password",
            true,
        )
        .unwrap();
    assert_eq!(shown.value, "s3cr3t-pw");
    tx.commit().unwrap();
    let stored = env.dump();
    assert!(!stored.contains("s3cr3t-pw") && !stored.contains("postgres://db"));
}

#[test]
fn versions_labels_and_selectors() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(Timestamp::from_millis(1)),
    };
    let mut tx = env.begin();
    store
        .put(&mut *tx, put("flag", "a", Some(ParameterType::String)))
        .unwrap();
    assert!(matches!(
        store.put(&mut *tx, put("flag", "b", None)),
        Err(ParameterError::AlreadyExists(_))
    ));
    let mut over = put("flag", "b", None);
    over.overwrite = true;
    assert_eq!(store.put(&mut *tx, over.clone()).unwrap().0, 2);
    over.value = "c".into();
    store.put(&mut *tx, over).unwrap();
    assert_eq!(store.get(&mut *tx, "flag", true).unwrap().value, "c");
    assert_eq!(store.get(&mut *tx, "flag:1", true).unwrap().value, "a");
    assert!(matches!(
        store.get(&mut *tx, "flag:9", true),
        Err(ParameterError::VersionNotFound(_))
    ));
    let (invalid, version) = store
        .label(
            &mut *tx,
            "flag",
            Some(2),
            &["prod".into(), "1bad".into(), "awsy".into()],
        )
        .unwrap();
    assert_eq!(
        (invalid, version),
        (vec!["1bad".to_string(), "awsy".to_string()], 2)
    );
    let p = store.get(&mut *tx, "flag:prod", true).unwrap();
    assert_eq!(
        (p.value.as_str(), p.selector.as_deref()),
        ("b", Some(":prod"))
    );
    // A label moves: it is on one version at a time.
    store
        .label(&mut *tx, "flag", None, &["prod".into()])
        .unwrap();
    assert_eq!(store.get(&mut *tx, "flag:prod", true).unwrap().value, "c");
    let history = store.history(&mut *tx, "flag", true).unwrap();
    let labels: Vec<Vec<String>> = history.iter().map(|h| h.meta.labels.clone()).collect();
    assert_eq!(labels, [vec![], vec![], vec!["prod".to_string()]]);
    let (removed, missing) = store
        .unlabel(&mut *tx, "flag", 3, &["prod".into(), "other".into()])
        .unwrap();
    assert_eq!(
        (removed, missing),
        (vec!["prod".to_string()], vec!["other".to_string()])
    );
    store.delete(&mut *tx, "flag").unwrap();
    assert!(matches!(
        store.get(&mut *tx, "flag", true),
        Err(ParameterError::NotFound(_))
    ));
    assert!(matches!(
        store.delete(&mut *tx, "flag"),
        Err(ParameterError::NotFound(_))
    ));
}

#[test]
fn names_and_values_are_checked() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(Timestamp::from_millis(1)),
    };
    let mut tx = env.begin();
    for bad in ["", "a b", "x/y", "/a//b", "awsthing", "/SSM/x", "a;b"] {
        assert!(
            matches!(
                store.put(&mut *tx, put(bad, "v", Some(ParameterType::String))),
                Err(ParameterError::Validation(_))
            ),
            "{bad:?}"
        );
    }
    let deep = "/a".repeat(16);
    assert!(matches!(
        store.put(&mut *tx, put(&deep, "v", Some(ParameterType::String))),
        Err(ParameterError::HierarchyLevelLimit(_))
    ));
    assert!(matches!(
        store.put(&mut *tx, put("new", "v", None)),
        Err(ParameterError::Validation(_))
    ));
    let mut p = put("n", "abc", Some(ParameterType::String));
    p.allowed_pattern = Some(r"^\d+$".into());
    let err = store.put(&mut *tx, p.clone()).unwrap_err();
    assert!(matches!(err, ParameterError::PatternMismatch(_)));
    assert!(!err.to_string().contains("abc"));
    p.allowed_pattern = Some("(".into());
    assert!(matches!(
        store.put(&mut *tx, p),
        Err(ParameterError::InvalidAllowedPattern(_))
    ));
    let big = "x".repeat(5000);
    assert!(matches!(
        store.put(&mut *tx, put("big", &big, Some(ParameterType::String))),
        Err(ParameterError::Validation(_))
    ));
    let mut tiered = put("big", &big, Some(ParameterType::String));
    tiered.tier = Some("Intelligent-Tiering".into());
    assert_eq!(store.put(&mut *tx, tiered).unwrap().1, Tier::Advanced);
    let mut keyed = put("k", "v", Some(ParameterType::String));
    keyed.key_id = Some("alias/aws/ssm".into());
    assert!(matches!(
        store.put(&mut *tx, keyed),
        Err(ParameterError::Validation(_))
    ));
    let mut secure = put("k", "v", Some(ParameterType::SecureString));
    secure.key_id = Some("alias/missing".into());
    assert!(matches!(
        store.put(&mut *tx, secure),
        Err(ParameterError::InvalidKeyId(_))
    ));
}

#[test]
fn paths_and_filters() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(Timestamp::from_millis(1)),
    };
    let mut tx = env.begin();
    for (name, kind) in [
        ("/app/a", ParameterType::String),
        ("/app/b", ParameterType::SecureString),
        ("/app/sub/c", ParameterType::StringList),
        ("/other/d", ParameterType::String),
        ("top", ParameterType::String),
    ] {
        store.put(&mut *tx, put(name, "v", Some(kind))).unwrap();
    }
    let names = |ps: Vec<Parameter>| ps.into_iter().map(|p| p.meta.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.by_path(&mut *tx, "/app", false, &[], true).unwrap()),
        ["/app/a", "/app/b"]
    );
    assert_eq!(
        names(store.by_path(&mut *tx, "/app/", true, &[], true).unwrap()),
        ["/app/a", "/app/b", "/app/sub/c"]
    );
    let secure = Filter {
        key: "Type".into(),
        option: Some("Equals".into()),
        values: vec!["SecureString".into()],
    };
    assert_eq!(
        names(
            store
                .by_path(&mut *tx, "/", true, std::slice::from_ref(&secure), true)
                .unwrap()
        ),
        ["/app/b"]
    );
    assert!(matches!(
        store.by_path(&mut *tx, "app", true, &[], true),
        Err(ParameterError::Validation(_))
    ));
    let by_name = Filter {
        key: "Name".into(),
        option: Some("BeginsWith".into()),
        values: vec!["/app".into()],
    };
    assert!(matches!(
        store.by_path(&mut *tx, "/", true, std::slice::from_ref(&by_name), true),
        Err(ParameterError::InvalidFilterKey(_))
    ));
    let described: Vec<String> = store
        .describe(&*tx, &[by_name])
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.name)
        .collect();
    assert_eq!(described, ["/app/a", "/app/b", "/app/sub/c"]);
    let one_level = Filter {
        key: "Path".into(),
        option: Some("OneLevel".into()),
        values: vec!["/app".into()],
    };
    assert_eq!(store.describe(&*tx, &[one_level]).unwrap().len(), 2);
    let bad_option = Filter {
        key: "Type".into(),
        option: Some("Contains".into()),
        values: vec!["String".into()],
    };
    assert!(matches!(
        store.describe(&*tx, &[bad_option]),
        Err(ParameterError::InvalidFilterOption(_))
    ));
}
