use super::*;
use crate::test_env::Env;

const T0: i64 = 1_700_000_000_000;

fn at(days: i64) -> Timestamp {
    Timestamp::from_millis(T0 + days * DAY_MS)
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ciphertexts_open_only_with_their_key_and_context() {
    let env = Env::new();
    let kms = env.kms(at(0));
    let mut tx = env.begin();
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    let other = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    let context = ctx(&[("app", "web"), ("stage", "prod")]);
    let (blob, used) = kms
        .encrypt(&mut *tx, &key.id, b"hunter2", &context)
        .unwrap();
    assert_eq!(used.arn, key.arn);
    assert!(!blob.windows(7).any(|w| w == b"hunter2"));

    let (plain, by, material) = kms.decrypt(&mut *tx, &blob, &context, None).unwrap();
    assert_eq!(
        (plain.as_slice(), by.id.as_str()),
        (&b"hunter2"[..], key.id.as_str())
    );
    assert_eq!(Some(material.as_str()), key.current_material());
    // By ARN too; the pairs' order does not matter, their content does.
    assert!(
        kms.decrypt(&mut *tx, &blob, &context, Some(&key.arn))
            .is_ok()
    );
    for wrong in [
        ctx(&[]),
        ctx(&[("app", "web")]),
        ctx(&[("app", "web"), ("stage", "dev")]),
    ] {
        assert!(matches!(
            kms.decrypt(&mut *tx, &blob, &wrong, None),
            Err(KmsError::InvalidCiphertext)
        ));
    }
    assert!(matches!(
        kms.decrypt(&mut *tx, &blob, &context, Some(&other.id)),
        Err(KmsError::IncorrectKey(_))
    ));
    let mut tampered = blob.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        kms.decrypt(&mut *tx, &tampered, &context, None),
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        kms.decrypt(&mut *tx, b"garbage", &context, None),
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        kms.encrypt(&mut *tx, &key.id, &[0; MAX_PLAINTEXT + 1], &context),
        Err(KmsError::Validation(_))
    ));
    tx.commit().unwrap();
    // Key material is stored sealed.
    let stored = env.dump();
    assert!(stored.contains(&key.id) && !stored.contains("hunter2"));
}

#[test]
fn keys_are_found_by_id_arn_alias_and_alias_arn() {
    let env = Env::new();
    let kms = env.kms(at(0));
    let mut tx = env.begin();
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.create_alias(&mut *tx, "alias/app", &key.id).unwrap();
    for r in [
        key.id.clone(),
        key.arn.clone(),
        "alias/app".to_string(),
        kms.alias_arn("alias/app"),
    ] {
        assert_eq!(kms.find_key(&mut *tx, &r, true).unwrap().id, key.id, "{r}");
    }
    // Managing a key takes its id or ARN, not an alias.
    assert!(matches!(
        kms.find_key(&mut *tx, "alias/app", false),
        Err(KmsError::NotFound(_))
    ));
    for bad in [
        "nope",
        "alias/nope",
        "arn:aws:kms:eu-west-1:000000000000:key/00000000-0000-0000-0000-000000000000",
        "00000000-0000-0000-0000-000000000000",
    ] {
        assert!(
            matches!(
                kms.find_key(&mut *tx, bad, true),
                Err(KmsError::NotFound(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        kms.create_alias(&mut *tx, "alias/app", &key.id),
        Err(KmsError::AlreadyExists(_))
    ));
    assert!(matches!(
        kms.create_alias(&mut *tx, "alias/aws/mine", &key.id),
        Err(KmsError::InvalidAliasName(_))
    ));
    assert!(matches!(
        kms.create_alias(&mut *tx, "app", &key.id),
        Err(KmsError::Validation(_))
    ));
    let second = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.update_alias(&mut *tx, "alias/app", &second.arn)
        .unwrap();
    assert_eq!(
        kms.find_key(&mut *tx, "alias/app", true).unwrap().id,
        second.id
    );
    kms.delete_alias(&mut *tx, "alias/app").unwrap();
    assert!(matches!(
        kms.delete_alias(&mut *tx, "alias/app"),
        Err(KmsError::NotFound(_))
    ));

    // An AWS managed key is made on first use of its alias, once.
    let managed = kms
        .find_key(&mut *tx, "alias/aws/secretsmanager", true)
        .unwrap();
    assert_eq!(managed.manager, KeyManager::Aws);
    assert_eq!(managed.rotation_period_days, Some(DEFAULT_ROTATION_DAYS));
    let again = kms
        .find_key(&mut *tx, "alias/aws/secretsmanager", true)
        .unwrap();
    assert_eq!(managed.id, again.id);
    assert!(matches!(
        kms.schedule_deletion(&mut *tx, &managed.id, 7),
        Err(KmsError::Unsupported(_))
    ));
    let aliases = kms.list_aliases(&mut *tx, None).unwrap();
    assert_eq!(aliases.len(), 1);
    assert_eq!(kms.list_keys(&mut *tx).unwrap().len(), 3);
}

#[test]
fn rotation_keeps_old_ciphertexts_readable() {
    let env = Env::new();
    let mut tx = env.begin();
    let kms = env.kms(at(0));
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    let context = ctx(&[("k", "v")]);
    let (old, _) = kms.encrypt(&mut *tx, &key.id, b"before", &context).unwrap();
    let sealed_old = kms.seal(&mut *tx, &key.id, &context, b"enveloped").unwrap();

    let rotated = kms.rotate_now(&mut *tx, &key.id).unwrap();
    assert_eq!(rotated.materials.len(), 2);
    let (new, _) = kms.encrypt(&mut *tx, &key.id, b"after", &context).unwrap();
    let (_, _, m_old) = kms.decrypt(&mut *tx, &old, &context, None).unwrap();
    let (_, _, m_new) = kms.decrypt(&mut *tx, &new, &context, None).unwrap();
    assert_ne!(m_old, m_new);
    assert_eq!(
        kms.open(&mut *tx, &sealed_old, &context).unwrap(),
        b"enveloped"
    );

    // Automatic rotation happens when the key is used after it is due.
    kms.set_rotation(&mut *tx, &key.id, Some(90)).unwrap();
    assert!(matches!(
        kms.set_rotation(&mut *tx, &key.id, Some(89)),
        Err(KmsError::Validation(_))
    ));
    let later = env.kms(at(91));
    let (_, used) = later.encrypt(&mut *tx, &key.id, b"x", &context).unwrap();
    assert_eq!(used.materials.len(), 3);
    assert_eq!(used.materials[2].rotation, Some(RotationType::Automatic));
    assert_eq!(
        later.decrypt(&mut *tx, &old, &context, None).unwrap().0,
        b"before"
    );
    kms.set_rotation(&mut *tx, &key.id, None).unwrap();
    assert_eq!(
        kms.rotation_status(&mut *tx, &key.id)
            .unwrap()
            .rotation_period_days,
        None
    );

    for _ in 0..MAX_ON_DEMAND_ROTATIONS - 1 {
        kms.rotate_now(&mut *tx, &key.id).unwrap();
    }
    assert!(matches!(
        kms.rotate_now(&mut *tx, &key.id),
        Err(KmsError::LimitExceeded(_))
    ));
}

#[test]
fn disabled_and_deleted_keys_refuse_to_work() {
    let env = Env::new();
    let mut tx = env.begin();
    let kms = env.kms(at(0));
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.create_alias(&mut *tx, "alias/doomed", &key.id).unwrap();
    let context = EncryptionContext::new();
    let (blob, _) = kms.encrypt(&mut *tx, &key.id, b"x", &context).unwrap();

    kms.set_enabled(&mut *tx, &key.id, false).unwrap();
    assert!(matches!(
        kms.encrypt(&mut *tx, &key.id, b"x", &context),
        Err(KmsError::Disabled(_))
    ));
    assert!(matches!(
        kms.decrypt(&mut *tx, &blob, &context, None),
        Err(KmsError::Disabled(_))
    ));
    kms.set_enabled(&mut *tx, &key.id, true).unwrap();

    assert!(matches!(
        kms.schedule_deletion(&mut *tx, &key.id, 6),
        Err(KmsError::Validation(_))
    ));
    let scheduled = kms.schedule_deletion(&mut *tx, &key.id, 7).unwrap();
    assert_eq!(scheduled.state, KeyState::PendingDeletion);
    assert_eq!(scheduled.deletion_date, Some(at(7)));
    assert!(matches!(
        kms.decrypt(&mut *tx, &blob, &context, None),
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        kms.cancel_deletion(&mut *tx, "alias/doomed"),
        Err(KmsError::NotFound(_))
    ));
    let cancelled = kms.cancel_deletion(&mut *tx, &key.arn).unwrap();
    assert_eq!(cancelled.state, KeyState::Disabled);
    assert!(matches!(
        kms.cancel_deletion(&mut *tx, &key.id),
        Err(KmsError::InvalidState(_))
    ));

    kms.schedule_deletion(&mut *tx, &key.id, 30).unwrap();
    let after = env.kms(at(30));
    assert!(matches!(
        after.find_key(&mut *tx, &key.id, true),
        Err(KmsError::NotFound(_))
    ));
    assert!(after.list_aliases(&mut *tx, None).unwrap().is_empty());
    assert!(after.list_keys(&mut *tx).unwrap().is_empty());
}

#[test]
fn data_keys_and_envelopes() {
    let env = Env::new();
    let mut tx = env.begin();
    let kms = env.kms(at(0));
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    let context = ctx(&[("SecretARN", "arn:x")]);
    let data = kms
        .generate_data_key(&mut *tx, &key.id, 16, &context)
        .unwrap();
    assert_eq!(data.plaintext.len(), 16);
    let (plain, _, _) = kms
        .decrypt(&mut *tx, &data.ciphertext, &context, None)
        .unwrap();
    assert_eq!(plain, data.plaintext);
    assert!(!format!("{data:?}").contains("plaintext"));
    assert!(matches!(
        kms.generate_data_key(&mut *tx, &key.id, 1025, &context),
        Err(KmsError::Validation(_))
    ));

    let long = vec![b'z'; 70_000];
    let sealed = kms.seal(&mut *tx, &key.arn, &context, &long).unwrap();
    assert_eq!(sealed.key_id().as_deref(), Some(key.id.as_str()));
    assert_eq!(kms.open(&mut *tx, &sealed, &context).unwrap(), long);
    assert!(matches!(
        kms.open(&mut *tx, &sealed, &ctx(&[("SecretARN", "arn:y")])),
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        kms.open(&mut *tx, &Sealed("bm90IGFuIGVudmVsb3Bl".into()), &context),
        Err(KmsError::InvalidCiphertext)
    ));
    assert_eq!(format!("{sealed:?}"), "Sealed(..)");
}

/// What an operation's result is, by KMS's error type.
fn outcome<T>(result: Result<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(KmsError::Disabled(_)) => "DisabledException",
        Err(KmsError::InvalidState(_)) => "KMSInvalidStateException",
        Err(KmsError::Unsupported(_)) => "UnsupportedOperationException",
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn each_operation_answers_each_key_state_as_kms_does() {
    let env = Env::new();
    let mut tx = env.begin();
    let kms = env.kms(at(0));
    let context = EncryptionContext::new();
    type Op = fn(&Kms<'_>, &mut dyn Txn, &KeyRecord, &[u8]) -> &'static str;
    // (operation, its outcome on an Enabled, a Disabled and a PendingDeletion key), as in
    // AWS's key state table.
    let ok = "ok";
    let (disabled, invalid) = ("DisabledException", "KMSInvalidStateException");
    let table: &[(&str, Op, [&str; 3])] = &[
        (
            "Encrypt",
            |k, tx, key, _| outcome(k.encrypt(tx, &key.id, b"x", &EncryptionContext::new())),
            [ok, disabled, invalid],
        ),
        (
            "Decrypt",
            |k, tx, _, blob| outcome(k.decrypt(tx, blob, &EncryptionContext::new(), None)),
            [ok, disabled, invalid],
        ),
        (
            "GenerateDataKey",
            |k, tx, key, _| {
                outcome(k.generate_data_key(tx, &key.arn, 32, &EncryptionContext::new()))
            },
            [ok, disabled, invalid],
        ),
        (
            "EnableKeyRotation",
            |k, tx, key, _| outcome(k.set_rotation(tx, &key.id, Some(180))),
            [ok, disabled, invalid],
        ),
        (
            "DisableKeyRotation",
            |k, tx, key, _| outcome(k.set_rotation(tx, &key.id, None)),
            [ok, disabled, invalid],
        ),
        (
            "RotateKeyOnDemand",
            |k, tx, key, _| outcome(k.rotate_now(tx, &key.id)),
            [ok, disabled, invalid],
        ),
        (
            "CreateAlias",
            |k, tx, key, _| outcome(k.create_alias(tx, &format!("alias/{}", key.id), &key.id)),
            [ok, ok, invalid],
        ),
        (
            "UpdateAlias",
            |k, tx, key, _| outcome(k.update_alias(tx, "alias/moving", &key.id)),
            [ok, ok, invalid],
        ),
        (
            "EnableKey",
            |k, tx, key, _| outcome(k.set_enabled(tx, &key.id, true)),
            [ok, ok, invalid],
        ),
        (
            "DisableKey",
            |k, tx, key, _| outcome(k.set_enabled(tx, &key.id, false)),
            [ok, ok, invalid],
        ),
        (
            "ScheduleKeyDeletion",
            |k, tx, key, _| outcome(k.schedule_deletion(tx, &key.id, 7)),
            [ok, ok, invalid],
        ),
        (
            "CancelKeyDeletion",
            |k, tx, key, _| outcome(k.cancel_deletion(tx, &key.id)),
            [invalid, invalid, ok],
        ),
        (
            "DescribeKey",
            |k, tx, key, _| outcome(k.find_key(tx, &key.arn, true)),
            [ok, ok, ok],
        ),
        (
            "GetKeyRotationStatus",
            |k, tx, key, _| outcome(k.rotation_status(tx, &key.id)),
            [ok, ok, ok],
        ),
    ];
    let spare = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.create_alias(&mut *tx, "alias/moving", &spare.id)
        .unwrap();
    for (name, op, expected) in table {
        for (state, want) in [
            KeyState::Enabled,
            KeyState::Disabled,
            KeyState::PendingDeletion,
        ]
        .into_iter()
        .zip(expected)
        {
            // A fresh key for each call, with rotation on and a ciphertext of its own.
            let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
            kms.set_rotation(&mut *tx, &key.id, Some(90)).unwrap();
            let (blob, _) = kms.encrypt(&mut *tx, &key.id, b"x", &context).unwrap();
            match state {
                KeyState::Enabled => {}
                KeyState::Disabled => kms.set_enabled(&mut *tx, &key.id, false).unwrap(),
                KeyState::PendingDeletion => {
                    kms.schedule_deletion(&mut *tx, &key.id, 7).unwrap();
                }
            }
            assert_eq!(
                op(&kms, &mut *tx, &key, &blob),
                *want,
                "{name} on a key that is {}",
                state.as_str()
            );
        }
    }

    // Automatic rotation is reported off while a key is pending deletion and comes back
    // when the deletion is cancelled; nothing rotates meanwhile.
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.set_rotation(&mut *tx, &key.id, Some(90)).unwrap();
    let status = kms.rotation_status(&mut *tx, &key.id).unwrap();
    assert_eq!(status.automatic_rotation(), Some((90, Some(at(90)))));
    kms.schedule_deletion(&mut *tx, &key.id, 30).unwrap();
    let pending = env.kms(at(20));
    let status = pending.rotation_status(&mut *tx, &key.id).unwrap();
    assert_eq!(status.automatic_rotation(), None);
    let status = env.kms(at(95)).find_key(&mut *tx, &key.id, true);
    assert!(
        matches!(status, Err(KmsError::NotFound(_))),
        "deleted at day 30"
    );
    let key = kms.create_key(&mut *tx, NewKey::default()).unwrap();
    kms.set_rotation(&mut *tx, &key.id, Some(90)).unwrap();
    kms.schedule_deletion(&mut *tx, &key.id, 30).unwrap();
    let later = env.kms(at(100));
    let restored = env.kms(at(10)).cancel_deletion(&mut *tx, &key.id).unwrap();
    assert_eq!(restored.automatic_rotation(), Some((90, Some(at(90)))));
    // Disabled after the cancel: it does not rotate until it is enabled again.
    assert_eq!(
        later
            .rotation_status(&mut *tx, &key.id)
            .unwrap()
            .materials
            .len(),
        1
    );
    later.set_enabled(&mut *tx, &key.id, true).unwrap();
    let (_, used) = later.encrypt(&mut *tx, &key.id, b"x", &context).unwrap();
    assert_eq!(used.materials.len(), 2);

    // An AWS managed key is used like any other but managed by no one.
    let managed = kms.find_key(&mut *tx, "alias/aws/ssm", true).unwrap();
    for (name, result) in [
        (
            "EnableKey",
            outcome(kms.set_enabled(&mut *tx, &managed.id, true)),
        ),
        (
            "DisableKey",
            outcome(kms.set_enabled(&mut *tx, &managed.id, false)),
        ),
        (
            "EnableKeyRotation",
            outcome(kms.set_rotation(&mut *tx, &managed.id, Some(90))),
        ),
        (
            "RotateKeyOnDemand",
            outcome(kms.rotate_now(&mut *tx, &managed.id)),
        ),
        (
            "CancelKeyDeletion",
            outcome(kms.cancel_deletion(&mut *tx, &managed.id)),
        ),
        (
            "CreateAlias",
            outcome(kms.create_alias(&mut *tx, "alias/mine", &managed.id)),
        ),
    ] {
        assert_eq!(result, "UnsupportedOperationException", "{name}");
    }
    assert_eq!(
        outcome(kms.encrypt(&mut *tx, "alias/aws/ssm", b"x", &context)),
        "ok"
    );
}
