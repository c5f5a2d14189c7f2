use super::*;
use http::HeaderValue;

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn github_body() -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000001",
        "after": SHA,
        "created": false,
        "deleted": false,
        "repository": {
            "id": 1296269,
            "full_name": "octocat/Hello-World",
            "html_url": "https://github.com/octocat/Hello-World",
            "url": "https://github.com/octocat/Hello-World",
            "git_url": "git://github.com/octocat/Hello-World.git",
            "ssh_url": "git@github.com:octocat/Hello-World.git",
            "clone_url": "https://github.com/octocat/Hello-World.git"
        },
        "pusher": {"name": "octocat"},
        "head_commit": {"id": SHA, "message": "Update README"}
    })
    .to_string()
    .into_bytes()
}

fn gitlab_body() -> Vec<u8> {
    serde_json::json!({
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": SHA,
        "ref": "refs/heads/develop",
        "checkout_sha": SHA,
        "project": {
            "id": 15,
            "name": "Diaspora",
            "web_url": "http://gitlab.example.com/mike/diaspora",
            "git_ssh_url": "git@gitlab.example.com:mike/diaspora.git",
            "git_http_url": "http://gitlab.example.com/mike/diaspora.git",
            "path_with_namespace": "mike/diaspora"
        },
        "repository": {
            "name": "Diaspora",
            "url": "git@gitlab.example.com:mike/diaspora.git",
            "homepage": "http://gitlab.example.com/mike/diaspora",
            "git_http_url": "http://gitlab.example.com/mike/diaspora.git",
            "git_ssh_url": "git@gitlab.example.com:mike/diaspora.git"
        },
        "total_commits_count": 1
    })
    .to_string()
    .into_bytes()
}

fn gitea_body() -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "28e1879d029cb852e4844d9c718537df08844e03",
        "after": SHA,
        "compare_url": "http://gitea.local:3000/alice/app/compare/28e1879...6113728",
        "repository": {
            "id": 1,
            "full_name": "alice/app",
            "html_url": "http://gitea.local:3000/alice/app",
            "ssh_url": "ssh://git@gitea.local:2222/alice/app.git",
            "clone_url": "http://gitea.local:3000/alice/app.git"
        },
        "pusher": {"login": "alice"}
    })
    .to_string()
    .into_bytes()
}

fn hex_hmac(secret: &[u8], body: &[u8]) -> String {
    sign_github(secret, body)
        .trim_start_matches("sha256=")
        .to_string()
}

#[test]
fn github_pushes_are_verified_and_parsed() {
    let body = github_body();
    let sig = sign_github(b"s3cret", &body);
    let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
    let WebhookEvent::Push(push) = verify_and_parse(&h, &body, b"s3cret").unwrap() else {
        panic!("not a push")
    };
    assert_eq!(push.provider, Provider::GitHub);
    assert_eq!(push.branch, "main");
    assert_eq!(push.commit, SHA);
    assert!(
        push.repository_urls
            .contains(&"https://github.com/octocat/Hello-World.git".to_string())
    );
    assert!(same_repository(
        &push,
        "https://github.com/octocat/hello-world"
    ));
    assert!(same_repository(
        &push,
        "git@github.com:octocat/Hello-World.git"
    ));
    assert!(same_repository(
        &push,
        "ssh://git@github.com/octocat/Hello-World.git"
    ));
    assert!(!same_repository(&push, "https://github.com/octocat/Other"));
}

#[test]
fn bad_signatures_are_refused() {
    let body = github_body();
    let sig = sign_github(b"s3cret", &body);
    for (h, secret) in [
        (
            headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]),
            b"wrong".as_slice(),
        ),
        (
            headers(&[
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=00"),
            ]),
            b"s3cret",
        ),
        (
            headers(&[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &hex_hmac(b"s3cret", &body)),
            ]),
            b"s3cret",
        ),
        (
            headers(&[
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=zz"),
            ]),
            b"s3cret",
        ),
        (
            headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]),
            b"",
        ),
    ] {
        assert_eq!(
            verify_and_parse(&h, &body, secret),
            Err(WebhookError::BadSignature)
        );
    }
    // A body changed after signing.
    let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        verify_and_parse(&h, &tampered, b"s3cret"),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_and_parse(&headers(&[("x-github-event", "push")]), &body, b"s3cret"),
        Err(WebhookError::MissingSignature("X-Hub-Signature-256"))
    );
    assert_eq!(
        verify_and_parse(&HeaderMap::new(), &body, b"s3cret"),
        Err(WebhookError::UnknownProvider)
    );
    // GitLab: the token itself.
    let body = gitlab_body();
    let h = headers(&[
        ("x-gitlab-event", "Push Hook"),
        ("x-gitlab-token", "not-it"),
    ]);
    assert_eq!(
        verify_and_parse(&h, &body, b"tok"),
        Err(WebhookError::BadSignature)
    );
    // Gitea.
    let body = gitea_body();
    let h = headers(&[
        ("x-gitea-event", "push"),
        ("x-gitea-signature", &hex_hmac(b"other", &body)),
    ]);
    assert_eq!(
        verify_and_parse(&h, &body, b"tok"),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn gitlab_and_gitea_pushes_are_parsed() {
    let body = gitlab_body();
    let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "tok")]);
    let WebhookEvent::Push(push) = verify_and_parse(&h, &body, b"tok").unwrap() else {
        panic!("not a push")
    };
    assert_eq!(
        (push.provider, push.branch.as_str(), push.commit.as_str()),
        (Provider::GitLab, "develop", SHA)
    );
    assert!(same_repository(
        &push,
        "https://gitlab.example.com/mike/diaspora.git"
    ));
    assert!(same_repository(
        &push,
        "git@gitlab.example.com:mike/diaspora"
    ));

    let body = gitea_body();
    let h = headers(&[
        ("x-gitea-event", "push"),
        ("x-github-event", "push"),
        ("x-gitea-signature", &hex_hmac(b"tok", &body)),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&h, &body, b"tok").unwrap() else {
        panic!("not a push")
    };
    assert_eq!(
        (push.provider, push.branch.as_str()),
        (Provider::Gitea, "main")
    );
    assert!(same_repository(
        &push,
        "http://gitea.local:3000/alice/app.git"
    ));
    assert!(same_repository(
        &push,
        "ssh://git@gitea.local:2222/alice/app.git"
    ));
}

#[test]
fn other_events_are_ignored_after_verification() {
    let sign = |body: &[u8]| sign_github(b"k", body);
    let ping = br#"{"zen": "Keep it logically awesome."}"#;
    let h = headers(&[
        ("x-github-event", "ping"),
        ("x-hub-signature-256", &sign(ping)),
    ]);
    assert!(matches!(
        verify_and_parse(&h, ping, b"k"),
        Ok(WebhookEvent::Ignored { .. })
    ));
    let tag = br#"{"ref": "refs/tags/v1", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "repository": {"clone_url": "https://h/r.git"}}"#;
    let h = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", &sign(tag)),
    ]);
    assert!(matches!(
        verify_and_parse(&h, tag, b"k"),
        Ok(WebhookEvent::Ignored { .. })
    ));
    let deleted = br#"{"ref": "refs/heads/x", "after": "0000000000000000000000000000000000000000", "deleted": true, "repository": {"clone_url": "https://h/r.git"}}"#;
    let h = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", &sign(deleted)),
    ]);
    assert!(matches!(
        verify_and_parse(&h, deleted, b"k"),
        Ok(WebhookEvent::Ignored { .. })
    ));
    let h = headers(&[("x-gitlab-event", "Tag Push Hook"), ("x-gitlab-token", "k")]);
    assert!(matches!(
        verify_and_parse(&h, b"{}", b"k"),
        Ok(WebhookEvent::Ignored { .. })
    ));
    // Verified but malformed.
    let junk = b"{not json";
    let h = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", &sign(junk)),
    ]);
    assert!(matches!(
        verify_and_parse(&h, junk, b"k"),
        Err(WebhookError::Malformed(_))
    ));
    let no_repo =
        br#"{"ref": "refs/heads/x", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#;
    let h = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", &sign(no_repo)),
    ]);
    assert!(matches!(
        verify_and_parse(&h, no_repo, b"k"),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn repository_urls_normalize() {
    for (a, b) in [
        ("https://GitHub.com/O/R.git", "github.com/o/r"),
        ("git@github.com:o/r.git", "github.com/o/r"),
        ("ssh://git@github.com:22/o/r", "github.com/o/r"),
        ("https://user:pw@host:8443/a/b/", "host/a/b"),
        ("file:///srv/git/app.git", "/srv/git/app"),
    ] {
        assert_eq!(normalize_repository_url(a), b, "{a}");
    }
}
