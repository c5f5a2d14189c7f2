use super::*;
use crate::test_env::Env;

const T0: i64 = 1_700_000_000_000;

fn at(days: i64) -> Timestamp {
    Timestamp::from_millis(T0 + days * DAY_MS)
}

fn text(s: &str) -> SecretValue {
    SecretValue::String(s.to_string())
}

fn stages(secret: &SecretRecord, version: &str) -> Vec<String> {
    let mut s = secret
        .versions
        .iter()
        .find(|v| v.id == version)
        .unwrap()
        .stages
        .clone();
    s.sort();
    s
}

fn create(store: &Store<'_>, tx: &mut dyn Txn, name: &str, value: &str) -> (SecretRecord, String) {
    let (secret, version) = store
        .create(
            tx,
            NewSecret {
                name: name.into(),
                value: Some(text(value)),
                ..NewSecret::default()
            },
        )
        .unwrap();
    (secret, version.unwrap())
}

#[test]
fn new_values_move_the_staging_labels() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(at(0)),
    };
    let mut tx = env.begin();
    let (secret, v1) = create(&store, &mut *tx, "db/password", "one");
    let suffix = secret.arn.rsplit('-').next().unwrap();
    assert!(
        secret
            .arn
            .starts_with("arn:aws:secretsmanager:us-east-1:000000000000:secret:db/password-")
    );
    assert_eq!(suffix.len(), 6);
    assert_eq!(stages(&secret, &v1), [AWSCURRENT]);

    let (_, v2, s2) = store
        .put_value(&mut *tx, "db/password", None, text("two"), None)
        .unwrap();
    assert_eq!(s2, [AWSCURRENT]);
    let (_, v3, _) = store
        .put_value(&mut *tx, &secret.arn, None, text("three"), None)
        .unwrap();
    let secret = store.find(&mut *tx, "db/password").unwrap();
    assert_eq!(stages(&secret, &v3), [AWSCURRENT]);
    assert_eq!(stages(&secret, &v2), [AWSPREVIOUS]);
    assert!(stages(&secret, &v1).is_empty(), "v1 is deprecated");

    let read = store
        .get_value(&mut *tx, "db/password", None, None)
        .unwrap();
    assert_eq!((read.value, read.version.id), (text("three"), v3.clone()));
    let read = store
        .get_value(&mut *tx, "db/password", None, Some(AWSPREVIOUS))
        .unwrap();
    assert_eq!(read.value, text("two"));
    let read = store
        .get_value(&mut *tx, "db/password", Some(&v1), None)
        .unwrap();
    assert_eq!(read.value, text("one"));
    assert!(matches!(
        store.get_value(&mut *tx, "db/password", Some(&v1), Some(AWSCURRENT)),
        Err(SecretError::NotFound(_))
    ));

    // A pending version, then promoted: the old current becomes previous.
    let token = "pending-version-0000000000000000000";
    let (_, v4, s4) = store
        .put_value(
            &mut *tx,
            "db/password",
            Some(token.into()),
            text("four"),
            Some(vec![AWSPENDING.into()]),
        )
        .unwrap();
    assert_eq!((v4.as_str(), s4), (token, vec![AWSPENDING.to_string()]));
    assert_eq!(
        store
            .get_value(&mut *tx, "db/password", None, None)
            .unwrap()
            .value,
        text("three")
    );
    assert!(matches!(
        store.update_stage(&mut *tx, "db/password", AWSCURRENT, None, Some(token)),
        Err(SecretError::InvalidParameter(_))
    ));
    let secret = store
        .update_stage(&mut *tx, "db/password", AWSCURRENT, Some(&v3), Some(token))
        .unwrap();
    assert_eq!(stages(&secret, token), [AWSCURRENT, AWSPENDING]);
    assert_eq!(stages(&secret, &v3), [AWSPREVIOUS]);
    let secret = store
        .update_stage(&mut *tx, "db/password", AWSPENDING, Some(token), None)
        .unwrap();
    assert_eq!(stages(&secret, token), [AWSCURRENT]);

    // The same token and value again is a no-op; another value is refused.
    let (_, again, _) = store
        .put_value(
            &mut *tx,
            "db/password",
            Some(token.into()),
            text("four"),
            None,
        )
        .unwrap();
    assert_eq!(again, token);
    assert!(matches!(
        store.put_value(
            &mut *tx,
            "db/password",
            Some(token.into()),
            text("five"),
            None
        ),
        Err(SecretError::Exists(_))
    ));
    tx.commit().unwrap();
    let stored = env.dump();
    for value in ["one", "two", "three", "four"] {
        assert!(
            !stored.contains(&format!("\"{value}\"")),
            "{value} in the store"
        );
    }
}

#[test]
fn the_first_version_is_current_whatever_its_labels() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(at(0)),
    };
    let mut tx = env.begin();
    let (secret, none) = store
        .create(
            &mut *tx,
            NewSecret {
                name: "empty".into(),
                ..NewSecret::default()
            },
        )
        .unwrap();
    assert!(none.is_none() && secret.versions.is_empty());
    assert!(matches!(
        store.get_value(&mut *tx, "empty", None, None),
        Err(SecretError::NotFound(_))
    ));
    let (_, _, s) = store
        .put_value(
            &mut *tx,
            "empty",
            None,
            SecretValue::Binary(vec![0, 1, 2]),
            Some(vec![AWSPENDING.into()]),
        )
        .unwrap();
    assert_eq!(s, [AWSPENDING, AWSCURRENT]);
    assert_eq!(
        store
            .get_value(&mut *tx, "empty", None, None)
            .unwrap()
            .value,
        SecretValue::Binary(vec![0, 1, 2])
    );
}

#[test]
fn secrets_are_found_by_name_full_arn_and_partial_arn() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(at(0)),
    };
    let mut tx = env.begin();
    let (secret, _) = create(&store, &mut *tx, "app-key", "v");
    let partial = secret.arn.rsplit_once('-').unwrap().0.to_string();
    for id in [secret.arn.as_str(), "app-key", partial.as_str()] {
        assert_eq!(store.find(&mut *tx, id).unwrap().arn, secret.arn, "{id}");
    }
    for id in [
        "app",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:app-key-XXXXXX",
        "arn:aws:secretsmanager:eu-west-1:000000000000:secret:app-key",
    ] {
        assert!(
            matches!(store.find(&mut *tx, id), Err(SecretError::NotFound(_))),
            "{id}"
        );
    }
    assert!(matches!(
        store.create(
            &mut *tx,
            NewSecret {
                name: "app-key".into(),
                ..NewSecret::default()
            }
        ),
        Err(SecretError::Exists(_))
    ));
    for bad in ["", "has space", "semi;colon", &"x".repeat(513)] {
        assert!(matches!(
            store.create(
                &mut *tx,
                NewSecret {
                    name: bad.into(),
                    ..NewSecret::default()
                }
            ),
            Err(SecretError::Validation(_))
        ));
    }
}

#[test]
fn deletion_waits_for_its_window_unless_forced() {
    let env = Env::new();
    let mut tx = env.begin();
    let store = Store {
        kms: env.kms(at(0)),
    };
    create(&store, &mut *tx, "old", "v");
    create(&store, &mut *tx, "gone", "v");
    assert!(matches!(
        store.delete(&mut *tx, "old", Some(6), false),
        Err(SecretError::InvalidParameter(_))
    ));
    assert!(matches!(
        store.delete(&mut *tx, "old", Some(7), true),
        Err(SecretError::InvalidParameter(_))
    ));
    let (_, date) = store.delete(&mut *tx, "old", Some(7), false).unwrap();
    assert_eq!(date, at(7));
    assert!(matches!(
        store.get_value(&mut *tx, "old", None, None),
        Err(SecretError::InvalidRequest(_))
    ));
    assert!(matches!(
        store.delete(&mut *tx, "old", None, false),
        Err(SecretError::InvalidRequest(_))
    ));
    assert!(matches!(
        store.create(
            &mut *tx,
            NewSecret {
                name: "old".into(),
                ..NewSecret::default()
            }
        ),
        Err(SecretError::InvalidRequest(_))
    ));
    assert!(store.find(&mut *tx, "old").unwrap().is_deleted());
    store.restore(&mut *tx, "old").unwrap();
    assert_eq!(
        store.get_value(&mut *tx, "old", None, None).unwrap().value,
        text("v")
    );

    store.delete(&mut *tx, "gone", None, true).unwrap();
    assert!(matches!(
        store.find(&mut *tx, "gone"),
        Err(SecretError::NotFound(_))
    ));
    store.delete(&mut *tx, "old", Some(7), false).unwrap();
    let later = Store {
        kms: env.kms(at(7)),
    };
    assert!(later.list(&mut *tx).unwrap().is_empty());
    // The name is free again.
    create(&later, &mut *tx, "old", "new");
    tx.commit().unwrap();
    let tx = env.begin();
    assert_eq!(tx.list("sm_version", &Default::default()).unwrap().len(), 1);
}

#[test]
fn a_secrets_key_must_be_usable() {
    let env = Env::new();
    let store = Store {
        kms: env.kms(at(0)),
    };
    let mut tx = env.begin();
    let new = |key: &str| NewSecret {
        name: "k".into(),
        kms_key_id: Some(key.into()),
        value: Some(text("v")),
        ..NewSecret::default()
    };
    assert!(matches!(
        store.create(&mut *tx, new("alias/none")),
        Err(SecretError::Encryption(_))
    ));
    let key = store
        .kms
        .create_key(&mut *tx, crate::kms::NewKey::default())
        .unwrap();
    let (secret, _) = store.create(&mut *tx, new(&key.id)).unwrap();
    assert_eq!(secret.versions[0].key_arn, key.arn);
    store.kms.set_enabled(&mut *tx, &key.id, false).unwrap();
    assert!(matches!(
        store.get_value(&mut *tx, "k", None, None),
        Err(SecretError::Decryption(_))
    ));
}
