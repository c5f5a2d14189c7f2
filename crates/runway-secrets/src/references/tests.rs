use super::*;
use crate::parameters::{Put, Store as Parameters};
use crate::secretsmanager::{NewSecret, Store as Secrets};
use crate::test_env::{ACCOUNT, Env, REGION};
use runway_model::Timestamp;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:";

#[test]
fn references_parse_as_app_runner_takes_them() {
    let p = |s: &str| parse(s, REGION, ACCOUNT);
    assert_eq!(
        p(&format!("{ARN}db-AbCdEf")).unwrap(),
        Reference::Secret {
            arn: format!("{ARN}db-AbCdEf"),
            json_key: None,
            stage: None,
            version_id: None
        }
    );
    assert_eq!(
        p(&format!("{ARN}db:password:AWSPREVIOUS:")).unwrap(),
        Reference::Secret {
            arn: format!("{ARN}db"),
            json_key: Some("password".into()),
            stage: Some("AWSPREVIOUS".into()),
            version_id: None
        }
    );
    assert_eq!(
        p(&format!("{ARN}db::::")).unwrap_err().to_string(),
        format!(
            "{ARN}db::::: after the secret's name only :json-key:version-stage:version-id may follow"
        )
    );
    assert!(p(&format!("{ARN}db::AWSCURRENT:0123")).is_err());
    assert!(p("arn:aws:secretsmanager:eu-west-1:000000000000:secret:db").is_err());
    assert!(p("arn:aws:s3:::bucket").is_err());
    assert_eq!(
        p("arn:aws:ssm:us-east-1:000000000000:parameter/app/token").unwrap(),
        Reference::Parameter {
            name: "arn:aws:ssm:us-east-1:000000000000:parameter/app/token".into()
        }
    );
    assert_eq!(
        p("/app/token").unwrap(),
        Reference::Parameter {
            name: "/app/token".into()
        }
    );
}

#[test]
fn pins_name_versions_and_read_back_their_values() {
    let env = Env::new();
    let kms = || env.kms(Timestamp::from_millis(1));
    let mut tx = env.begin();
    let secrets = Secrets { kms: kms() };
    let (secret, _) = secrets
        .create(
            &mut *tx,
            NewSecret {
                name: "db".into(),
                value: Some(SecretValue::String(
                    r#"{"user":"app","password":"pw-1","port":5432}"#.into(),
                )),
                ..NewSecret::default()
            },
        )
        .unwrap();
    let partial = format!("{ARN}db");
    let whole = pin(&mut *tx, kms(), &partial).unwrap();
    let password = pin(&mut *tx, kms(), &format!("{partial}:password::")).unwrap();
    let port = pin(&mut *tx, kms(), &format!("{}:port::", secret.arn)).unwrap();
    assert_eq!(read(&mut *tx, kms(), &partial, &password).unwrap(), "pw-1");
    assert_eq!(read(&mut *tx, kms(), &partial, &port).unwrap(), "5432");
    // A rotation does not change what a pin reads; a new pin reads the new value.
    secrets
        .put_value(
            &mut *tx,
            "db",
            None,
            SecretValue::String(r#"{"password":"pw-2"}"#.into()),
            None,
        )
        .unwrap();
    assert_eq!(read(&mut *tx, kms(), &partial, &password).unwrap(), "pw-1");
    let repinned = pin(&mut *tx, kms(), &format!("{partial}:password::")).unwrap();
    assert_eq!(read(&mut *tx, kms(), &partial, &repinned).unwrap(), "pw-2");
    let previous = pin(&mut *tx, kms(), &format!("{partial}:password:AWSPREVIOUS:")).unwrap();
    assert_eq!(read(&mut *tx, kms(), &partial, &previous).unwrap(), "pw-1");
    assert!(
        read(&mut *tx, kms(), &partial, &whole)
            .unwrap()
            .contains("pw-1")
    );
    assert_eq!(Pin::decode(&whole.encode()).unwrap(), whole);
    assert!(!whole.encode().contains("pw-1"));

    // What does not resolve says which reference, never a value.
    let missing = format!("{partial}:user::");
    let err = pin(&mut *tx, kms(), &missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&missing) && err.contains("\"user\""),
        "{err}"
    );
    let err = pin(&mut *tx, kms(), &format!("{ARN}nope")).unwrap_err();
    assert!(matches!(err, ReferenceError::Unresolved(_)), "{err}");

    let params = Parameters { kms: kms() };
    let mut p = Put {
        name: "/app/token".into(),
        value: "tok-1".into(),
        kind: Some(crate::parameters::ParameterType::SecureString),
        ..Put::default()
    };
    params.put(&mut *tx, p.clone()).unwrap();
    let by_name = pin(&mut *tx, kms(), "/app/token").unwrap();
    let by_arn = pin(
        &mut *tx,
        kms(),
        "arn:aws:ssm:us-east-1:000000000000:parameter/app/token",
    )
    .unwrap();
    assert_eq!(by_name, by_arn);
    p.value = "tok-2".into();
    p.overwrite = true;
    params.put(&mut *tx, p).unwrap();
    assert_eq!(
        read(&mut *tx, kms(), "/app/token", &by_name).unwrap(),
        "tok-1"
    );
    assert!(matches!(
        pin(&mut *tx, kms(), "/app/none"),
        Err(ReferenceError::Unresolved(_))
    ));

    secrets
        .create(
            &mut *tx,
            NewSecret {
                name: "bin".into(),
                value: Some(SecretValue::Binary(vec![1, 2])),
                ..NewSecret::default()
            },
        )
        .unwrap();
    assert!(pin(&mut *tx, kms(), &format!("{ARN}bin")).is_err());
}
