use super::*;

fn ok(path: &str) -> Route {
    route(path).unwrap_or_else(|f| panic!("{path}: {f:?}"))
}

#[test]
fn routes_parse_from_the_end() {
    let d = format!("sha256:{}", "a".repeat(64));
    assert_eq!(ok("/v2/"), Route::Base);
    assert_eq!(ok("/v2"), Route::Base);
    assert_eq!(ok("/v2/token"), Route::Token);
    assert_eq!(ok("/v2/_catalog"), Route::Catalog);
    assert_eq!(ok("/v2/a/b/tags/list"), Route::Tags("a/b".into()));
    assert_eq!(
        ok("/v2/a/manifests/v1"),
        Route::Manifest("a".into(), "v1".into())
    );
    assert_eq!(
        ok(&format!("/v2/team/blobs/blobs/{d}")),
        Route::Blob("team/blobs".into(), d.clone())
    );
    assert_eq!(ok("/v2/a/blobs/uploads/"), Route::Uploads("a".into()));
    assert_eq!(ok("/v2/a/blobs/uploads"), Route::Uploads("a".into()));
    assert_eq!(
        ok("/v2/blobs/blobs/uploads/"),
        Route::Uploads("blobs".into())
    );
    assert_eq!(
        ok("/v2/x/y/blobs/uploads/123"),
        Route::Upload("x/y".into(), "123".into())
    );
    assert_eq!(
        ok(&format!("/v2/a/referrers/{d}")),
        Route::Referrers("a".into(), d)
    );
    assert_eq!(ok("/runway/v1/gc"), Route::Gc);
    assert_eq!(
        ok("/runway/v1/repositories/a/b/anonymous-pull"),
        Route::AnonymousPull("a/b".into())
    );
}

#[test]
fn bad_paths_and_names() {
    for path in ["/", "/v1/", "/v2/a", "/v2/a/other/x", "/runway/v1/x"] {
        assert_eq!(
            route(path).unwrap_err().0.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a//b/manifests/x",
        "/v2/blobs/uploads/",
        "/v2/-a/manifests/x",
    ] {
        assert_eq!(route(path).unwrap_err().0.code, Code::NameInvalid, "{path}");
    }
}

#[test]
fn queries_decode_like_forms() {
    let uri: http::Uri = "/x?n=2&last=a%2Fb&artifactType=application%2Fvnd.x%2Bjson&flag&t=a+b"
        .parse()
        .unwrap();
    let q = query(&uri);
    assert_eq!(param(&q, "n"), Some("2"));
    assert_eq!(param(&q, "last"), Some("a/b"));
    assert_eq!(param(&q, "artifactType"), Some("application/vnd.x+json"));
    assert_eq!(param(&q, "flag"), Some(""));
    assert_eq!(param(&q, "t"), Some("a b"));
}
