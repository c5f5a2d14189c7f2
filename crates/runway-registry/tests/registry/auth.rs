//! Authentication: access keys by Basic, the token flow, anonymous pull per repository,
//! and the admin endpoints.

use crate::harness::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_or_with_wrong_credentials_get_401_with_a_challenge() {
    let s = Server::start().await;
    let anon = s.http().anonymous();
    let r = anon.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/v2/token\",service=\"runway\"",
            s.host()
        )
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");

    let r = anon
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"http://{}/v2/token\",service=\"runway\",scope=\"repository:team/app:pull\"",
            s.host()
        )
    );
    let r = anon
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("scope=\"repository:team/app:pull,push\""));

    let wrong = Http {
        auth: Some((s.key_id.clone(), "not-the-secret".into())),
        ..s.http()
    };
    let r = wrong.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let unknown = Http {
        auth: Some(("RWAYNOSUCHKEY".into(), s.secret.clone())),
        ..s.http()
    };
    assert_eq!(
        unknown
            .req(Method::GET, "/v2/")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = anon
        .req(Method::GET, "/v2/")
        .header("authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Wrong credentials at the token endpoint.
    let r = wrong
        .req(
            Method::GET,
            "/v2/token?service=runway&scope=repository:a:pull",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());

    // The right key by Basic.
    let r = s.http().req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_the_scopes_asked_for_and_no_more() {
    let s = Server::start().await;
    let http = s.http();
    push_small_image(&http, "team/app", "v1").await;
    let r = http
        .req(
            Method::GET,
            "/v2/token?service=runway&scope=repository:team/app:pull",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], token);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(!token.contains(&s.secret));

    let bearer =
        |method: Method, path: &str| s.http().anonymous().req(method, path).bearer_auth(&token);
    assert_eq!(
        bearer(Method::GET, "/v2/").send().await.unwrap().status(),
        200
    );
    assert_eq!(
        bearer(Method::GET, "/v2/team/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Pull only: a push asks for more, naming the scope it needs.
    let r = bearer(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains("scope=\"repository:team/app:pull,push\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // Another repository: not granted.
    assert_eq!(
        bearer(Method::GET, "/v2/other/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        bearer(Method::GET, "/v2/_catalog")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A tampered token is refused.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = s
        .http()
        .anonymous()
        .req(Method::GET, "/v2/")
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));

    // Several scopes in one request, including the catalog.
    let r = http
        .req(
            Method::GET,
            "/v2/token?service=runway&scope=repository:team/app:pull,push&scope=registry:catalog:*",
        )
        .send()
        .await
        .unwrap();
    let token2 = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .http()
        .anonymous()
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(&token2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http()
        .anonymous()
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .bearer_auth(&token2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_have_a_floor() {
    let s = Server::start_with(|c| c.token_ttl = std::time::Duration::from_secs(1), |r| r).await;
    let r = s
        .http()
        .req(Method::GET, "/v2/token?scope=repository:a:pull")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    // The TTL has a floor of a minute, so clients never loop on fresh-but-dead tokens.
    assert_eq!(body["expires_in"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pull_is_per_repository() {
    let s = Server::start().await;
    let http = s.http();
    let (manifest, digest) = push_small_image(&http, "public/app", "v1").await;
    push_small_image(&http, "private/app", "v1").await;

    // Switched on through the admin endpoint (an access key is needed for that).
    let anon = http.anonymous();
    let r = anon
        .req(
            Method::PUT,
            "/runway/v1/repositories/public/app/anonymous-pull",
        )
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .req(
            Method::PUT,
            "/runway/v1/repositories/public/app/anonymous-pull",
        )
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"repository": "public/app", "enabled": true})
    );
    let r = http
        .req(
            Method::GET,
            "/runway/v1/repositories/private/app/anonymous-pull",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["enabled"],
        false
    );
    let r = http
        .req(
            Method::PUT,
            "/runway/v1/repositories/public/app/anonymous-pull",
        )
        .json(&serde_json::json!({"enable": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Without credentials: the public repository answers, the private one does not.
    let r = anon
        .req(Method::GET, "/v2/public/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let r = anon
        .req(Method::GET, "/v2/private/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = anon
        .req(Method::POST, "/v2/public/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "anonymous pull is not push");
    // The token flow gives anonymous clients pull on the public repository only.
    let r = anon
        .req(Method::GET, "/v2/token?service=runway&scope=repository:public/app:pull,push&scope=repository:private/app:pull")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let with = |path: &str| anon.req(Method::GET, path).bearer_auth(&token);
    assert_eq!(
        with(&format!("/v2/public/app/manifests/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        with("/v2/private/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        anon.req(Method::POST, "/v2/public/app/blobs/uploads/")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        anon.req(Method::POST, "/runway/v1/gc")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "an anonymous token is not an access key"
    );

    // skopeo without credentials: works for the public repository only.
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--no-creds",
            &format!("docker://{}/public/app:v1", s.host()),
        ],
    )
    .await;
    assert_eq!(
        success("skopeo inspect public", &out).as_bytes(),
        manifest.as_slice()
    );
    let out = skopeo_copy(
        &format!("docker://{}/private/app:v1", s.host()),
        &format!("oci:{}:x", dir.path().display()),
        &["--src-no-creds"],
    )
    .await;
    assert!(!out.status.success());

    // Switched off again through the library.
    s.registry
        .set_anonymous_pull("public/app", false)
        .await
        .unwrap();
    assert_eq!(
        anon.req(Method::GET, "/v2/public/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_from_one_address_are_throttled_and_other_addresses_are_not() {
    use runway_secrets::{AuthThrottle, ThrottleConfig};
    use std::sync::Arc;
    let throttle = Arc::new(AuthThrottle::new(ThrottleConfig {
        burst: 3,
        refill: std::time::Duration::from_secs(60),
        max_addresses: 100,
    }));
    let s = Server::start_with(|c| c.auth_throttle = Some(throttle.clone()), |r| r).await;
    let from = |ip: [u8; 4], secret: &str| Http {
        client: reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap(),
        auth: Some((s.key_id.clone(), secret.to_string())),
        ..s.http()
    };
    let (wrong, right) = (
        from([127, 0, 0, 2], "wrong"),
        from([127, 0, 0, 2], &s.secret),
    );
    for _ in 0..3 {
        let r = wrong.req(Method::GET, "/v2/").send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    // The address has used its failures: refused unchecked, the right secret too, and the
    // token endpoint alike.
    let r = wrong.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    let r = right.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let r = right
        .req(Method::GET, "/v2/token?service=runway")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Without credentials it is anonymous, not a guess: answered as before.
    let r = right
        .anonymous()
        .req(Method::GET, "/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another address is not affected, for right and wrong secrets alike.
    let r = from([127, 0, 0, 3], &s.secret)
        .req(Method::GET, "/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = from([127, 0, 0, 3], "wrong")
        .req(Method::GET, "/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_realm_is_https_when_clients_come_over_tls() {
    let s = Server::start_with(|c| c.tls = true, |r| r).await;
    let r = s
        .http()
        .anonymous()
        .req(Method::GET, "/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        format!(
            "Bearer realm=\"https://{}/v2/token\",service=\"runway\"",
            s.host()
        )
    );
}
