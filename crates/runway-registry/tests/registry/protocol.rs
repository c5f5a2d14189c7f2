//! Protocol details over raw HTTP: uploads (chunked, out of order, monolithic, mount),
//! digests, manifests and their errors, Range, tags, catalog and referrers.

use crate::harness::*;
use reqwest::Method;
use runway_registry::test_util::random_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_refuses_an_out_of_order_chunk_with_416() {
    let s = Server::start().await;
    let http = s.http();
    let data = random_bytes(3000);
    let digest = sha256(&data);

    let r = http
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let uuid = header(&r, "docker-upload-uuid");
    assert!(location.ends_with(&uuid), "{location}");
    assert_eq!(header(&r, "range"), "0-0");

    let r = http
        .req(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-999");
    let location = header(&r, "location");

    // Skips bytes 1000..1500: refused, and the upload says where to resume.
    let r = http
        .req(Method::PATCH, &location)
        .header("content-range", "1500-2999")
        .body(data[1500..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-999");
    assert_eq!(header(&r, "location"), location);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");

    let r = http.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-999");
    assert_eq!(header(&r, "docker-upload-uuid"), uuid);

    // A chunk shorter than its Content-Range changes nothing.
    let r = http
        .req(Method::PATCH, &location)
        .header("content-range", "1000-1999")
        .body(data[1000..1500].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "SIZE_INVALID");

    let r = http
        .req(Method::PATCH, &location)
        .header("content-range", "1000-1999")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-1999");
    // The last chunk comes with the closing PUT.
    let r = http
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/team/app/blobs/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest);

    let r = http
        .req(Method::GET, &format!("/v2/team/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    // The upload is gone once committed.
    let r = http.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert!(s.upload_entries().is_empty(), "{:?}", s.upload_entries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_is_digest_invalid_and_stores_nothing() {
    let s = Server::start().await;
    let http = s.http();
    let data = random_bytes(5000);
    let wrong = sha256(b"something else");
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .req(Method::PUT, &format!("{location}?digest={wrong}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [wrong.clone(), sha256(&data)] {
        let r = http
            .req(Method::HEAD, &format!("/v2/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert!(s.blob_files().is_empty(), "{:?}", s.blob_files());
    assert!(s.upload_entries().is_empty(), "{:?}", s.upload_entries());
    assert_eq!(
        http.req(Method::GET, &location)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Single-request monolithic POST with a wrong digest: same.
    let r = http
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert!(s.blob_files().is_empty());
    assert!(s.upload_entries().is_empty());

    // Malformed and unsupported digests.
    for bad in [
        "sha256:xyz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nonsense",
    ] {
        let r = http
            .req(Method::HEAD, &format!("/v2/app/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let r = http
            .req(Method::GET, &format!("/v2/app/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, "DIGEST_INVALID", "{bad}");
    }

    // The right digest, by single POST, works.
    let digest = sha256(&data);
    let r = http
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/app/blobs/{digest}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_blobs_are_verified_too() {
    let s = Server::start().await;
    let http = s.http();
    let data = random_bytes(1234);
    let digest =
        runway_registry::digest::Digest::of(runway_registry::digest::Algorithm::Sha512, &data)
            .to_string();
    let r = http
        .req(
            Method::POST,
            "/v2/app/blobs/uploads/?digest-algorithm=sha512",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let r = http
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .req(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/?digest-algorithm=md5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_with_missing_blobs_are_refused() {
    let s = Server::start().await;
    let http = s.http();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = http.push_blob("app", config).await;
    let missing = sha256(b"never pushed");
    let manifest = image_manifest((&c, config.len()), &[(&missing, 12)], serde_json::json!({}));
    let r = http
        .put_manifest("app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["digests"][0], missing.as_str());
    let r = http
        .req(Method::GET, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    // A blob pushed to another repository does not count.
    let layer = random_bytes(100);
    let l = http.push_blob("other", &layer).await;
    let manifest = image_manifest(
        (&c, config.len()),
        &[(&l, layer.len())],
        serde_json::json!({}),
    );
    let r = http
        .put_manifest("app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    // An index whose child manifest is missing.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}],
    });
    let r = http
        .put_manifest(
            "app",
            "multi",
            "application/vnd.oci.image.index.v1+json",
            index.to_string().as_bytes(),
        )
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    // Invalid manifests.
    for (ct, body) in [
        (OCI_MANIFEST, "not json".to_string()),
        (OCI_MANIFEST, r#"{"schemaVersion":1}"#.to_string()),
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            String::from_utf8(manifest.clone()).unwrap(),
        ),
    ] {
        let r = http.put_manifest("app", "v1", ct, body.as_bytes()).await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    // Pushed by a digest that is not the body's.
    let r = http
        .put_manifest("app", &missing, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // Too large: refused from its Content-Length, before the body is read. (Sent by
    // hand: a client still writing the body when the answer comes may see its
    // connection closed instead of the answer.)
    {
        use base64::Engine as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.key_id, s.secret));
        let head = format!(
            "PUT /v2/app/manifests/v1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
            s.addr,
            5 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(answer.contains("SIZE_INVALID"), "{answer}");
    }
    // Invalid names and tags.
    let r = http
        .put_manifest("Bad-Name", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(error_code(r).await, "NAME_INVALID");
    let r = http
        .put_manifest("app", "-tag", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_round_trip_exactly_by_tag_and_digest() {
    let s = Server::start().await;
    let http = s.http();
    let (manifest, digest) = push_small_image(&http, "team/app", "v1").await;
    for reference in ["v1", digest.as_str()] {
        let r = http
            .req(Method::GET, &format!("/v2/team/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let r = http
            .req(Method::HEAD, &format!("/v2/team/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
        assert_eq!(header(&r, "docker-content-digest"), digest);
    }
    // Docker schema 2 with its own content type, pushed by digest with ?tag=.
    let docker = String::from_utf8(manifest.clone()).unwrap().replace(
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    let ddigest = sha256(docker.as_bytes());
    let r = http
        .put_manifest(
            "team/app",
            &format!("{ddigest}?tag=d1&tag=d2"),
            "application/vnd.docker.distribution.manifest.v2+json",
            docker.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-tag"), "d1, d2");
    let r = http
        .req(Method::GET, "/v2/team/app/manifests/d2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), docker.as_bytes());

    // An index of the two, then deletes: a tag, then a manifest by digest.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ddigest, "size": docker.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    })
    .to_string();
    let r = http
        .put_manifest(
            "team/app",
            "multi",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = http
        .req(Method::DELETE, "/v2/team/app/manifests/multi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http.req(Method::GET, "/v2/team/app/manifests/multi")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .req(Method::DELETE, &format!("/v2/team/app/manifests/{ddigest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for reference in ["d1", "d2", ddigest.as_str()] {
        let r = http
            .req(Method::GET, &format!("/v2/team/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{reference}");
    }
    let r = http
        .req(Method::GET, "/v2/nosuch/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_serve_ranges_and_mount_across_repositories() {
    let s = Server::start().await;
    let http = s.http();
    let data = random_bytes(10_000);
    let digest = http.push_blob("src", &data).await;
    let path = format!("/v2/src/blobs/{digest}");
    let r = http.req(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "10000");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let r = http
        .req(Method::GET, &path)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);
    let r = http
        .req(Method::GET, &path)
        .header("range", "bytes=9990-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9990..]);
    let r = http
        .req(Method::GET, &path)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9995..]);
    let r = http
        .req(Method::GET, &path)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), "bytes */10000");

    // Not visible in another repository until mounted there.
    let other = format!("/v2/dst/blobs/{digest}");
    assert_eq!(
        http.req(Method::HEAD, &other)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), other);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(
        http.req(Method::HEAD, &other)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // From a repository without the blob: an upload session instead.
    let r = http
        .req(
            Method::POST,
            &format!("/v2/dst2/blobs/uploads/?mount={digest}&from=nosuch"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(header(&r, "location").starts_with("/v2/dst2/blobs/uploads/"));
    // Deleting the link hides the blob in that repository only.
    assert_eq!(
        http.req(Method::DELETE, &other)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        http.req(Method::HEAD, &other)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.req(Method::HEAD, &path).send().await.unwrap().status(),
        200
    );
    assert_eq!(s.blob_files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_blob_pushed_concurrently_is_stored_once() {
    let s = Server::start().await;
    let data = random_bytes(4 << 20);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let http = s.http();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let repo = if i % 2 == 0 { "app" } else { "app2" };
            let r = http
                .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let location = header(&r, "location");
            let r = http
                .req(Method::PATCH, &location)
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let location = header(&r, "location");
            let r = http
                .req(Method::PUT, &format!("{location}?digest={}", sha256(&data)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.blob_files().len(), 1, "{:?}", s.blob_files());
    let http = s.http();
    for repo in ["app", "app2"] {
        let r = http
            .req(Method::GET, &format!("/v2/{repo}/blobs/{}", sha256(&data)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    }
    assert!(s.upload_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_paginate_and_catalog_lists_repositories() {
    let s = Server::start().await;
    let http = s.http();
    let (manifest, _) = push_small_image(&http, "team/app", "a").await;
    for tag in ["d", "b", "c", "B"] {
        let r = http
            .put_manifest("team/app", tag, OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), 201);
    }
    let r = http
        .req(Method::GET, "/v2/team/app/tags/list")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "team/app", "tags": ["B", "a", "b", "c", "d"]})
    );

    let r = http
        .req(Method::GET, "/v2/team/app/tags/list?n=2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/team/app/tags/list?n=2&last=a>; rel=\"next\""
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["B", "a"]));
    let r = http
        .req(Method::GET, "/v2/team/app/tags/list?n=2&last=a")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["b", "c"]));
    let r = http
        .req(Method::GET, "/v2/team/app/tags/list?n=2&last=c")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["d"]));
    let r = http
        .req(Method::GET, "/v2/team/app/tags/list?n=0")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!([]));
    let r = http
        .req(Method::GET, "/v2/team/app/tags/list?last=b")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["c", "d"]));
    let r = http
        .req(Method::GET, "/v2/nosuch/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    push_small_image(&http, "alpha", "v1").await;
    push_small_image(&http, "zeta/x", "v1").await;
    let r = http.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["alpha", "team/app", "zeta/x"])
    );
    let r = http
        .req(Method::GET, "/v2/_catalog?n=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=1&last=alpha>; rel=\"next\""
    );
    let r = http
        .req(Method::GET, "/v2/_catalog?n=5&last=alpha")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["team/app", "zeta/x"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_list_manifests_with_a_subject_filtered_by_artifact_type() {
    let s = Server::start().await;
    let http = s.http();
    let (image, image_digest) = push_small_image(&http, "app", "v1").await;
    // Two artifacts refer to the image: an SBOM (artifactType) and a signature (config
    // media type); one more refers to something else.
    let empty = b"{}";
    let e = http.push_blob("app", empty).await;
    let sbom = random_bytes(100);
    let sbom_digest = http.push_blob("app", &sbom).await;
    let subject =
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.len()});
    let artifact = |artifact_type: Option<&str>,
                    config_type: &str,
                    annotation: &str,
                    subject: &serde_json::Value| {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": e, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sbom_digest, "size": sbom.len()}],
            "subject": subject,
            "annotations": {"org.example.note": annotation},
        });
        if let Some(t) = artifact_type {
            m["artifactType"] = t.into();
        }
        serde_json::to_vec(&m).unwrap()
    };
    let sbom_manifest = artifact(
        Some("application/vnd.example.sbom.v1"),
        "application/vnd.oci.empty.v1+json",
        "sbom",
        &subject,
    );
    let sig_manifest = artifact(
        None,
        "application/vnd.example.signature.v1",
        "sig",
        &subject,
    );
    let other_subject =
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"x"), "size": 1});
    let unrelated = artifact(
        Some("application/vnd.example.sbom.v1"),
        "application/vnd.oci.empty.v1+json",
        "other",
        &other_subject,
    );
    for m in [&sbom_manifest, &sig_manifest, &unrelated] {
        let d = sha256(m);
        let r = http.put_manifest("app", &d, OCI_MANIFEST, m).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let subject = r
            .headers()
            .get("oci-subject")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(subject == image_digest || subject == sha256(b"x"));
    }

    let r = http
        .req(Method::GET, &format!("/v2/app/referrers/{image_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(r.headers().get("oci-filters-applied").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    let manifests = body["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{body}");
    let by_digest = |d: &str| manifests.iter().find(|m| m["digest"] == d).unwrap().clone();
    let sbom_entry = by_digest(&sha256(&sbom_manifest));
    assert_eq!(
        sbom_entry["artifactType"],
        "application/vnd.example.sbom.v1"
    );
    assert_eq!(sbom_entry["annotations"]["org.example.note"], "sbom");
    assert_eq!(sbom_entry["size"], sbom_manifest.len());
    assert_eq!(sbom_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(
        by_digest(&sha256(&sig_manifest))["artifactType"],
        "application/vnd.example.signature.v1"
    );

    let r = http
        .req(
            Method::GET,
            &format!(
                "/v2/app/referrers/{image_digest}?artifactType=application%2Fvnd.example.sbom.v1"
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(body["manifests"][0]["digest"], sha256(&sbom_manifest));

    // Nothing refers to the SBOM: an empty index, not a 404. A bad digest: 400.
    let r = http
        .req(
            Method::GET,
            &format!("/v2/app/referrers/{}", sha256(&sbom_manifest)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"], serde_json::json!([]));
    let r = http
        .req(Method::GET, "/v2/app/referrers/sha256:nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Deleting a referrer removes it from the list.
    let r = http
        .req(
            Method::DELETE,
            &format!("/v2/app/manifests/{}", sha256(&sig_manifest)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .req(Method::GET, &format!("/v2/app/referrers/{image_digest}"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_hook_fires_with_repository_tag_and_digest() {
    let s = Server::start().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.registry.on_push(move |e| {
        let _ = tx.send(e.clone());
    });
    let http = s.http();
    let (manifest, digest) = push_small_image(&http, "team/app", "v1").await;
    let e = rx.try_recv().expect("the hook ran before the 201");
    assert_eq!(e.repository, "team/app");
    assert_eq!(e.tag.as_deref(), Some("v1"));
    assert_eq!(e.digest, digest);
    assert_eq!(e.media_type, OCI_MANIFEST);
    let r = http
        .put_manifest("team/app", &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), 201);
    let e = rx.try_recv().unwrap();
    assert_eq!((e.tag, e.digest), (None, digest));
    // A refused push fires nothing.
    let r = http
        .put_manifest("team/app", "v2", OCI_MANIFEST, b"{}")
        .await;
    assert_eq!(r.status(), 400);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_use_the_spec_format_and_metrics_count_requests() {
    let s = Server::start().await;
    let http = s.http();
    let r = http
        .req(Method::GET, &format!("/v2/app/blobs/{}", sha256(b"x")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not in app")
    );
    let r = http
        .req(Method::PATCH, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = http
        .req(Method::GET, "/v2/app/blobs/uploads/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &s.metrics).unwrap();
    assert!(
        text.contains(
            "runway_registry_requests_total{route=\"blob\",method=\"GET\",status=\"4xx\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_size_limit_are_refused_and_cancelled() {
    let s = Server::start_with(|c| c.max_upload_size = 1000, |r| r).await;
    let http = s.http();
    let data = random_bytes(2000);
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .req(Method::PUT, &format!("{location}?digest={}", sha256(&data)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    assert_eq!(
        http.req(Method::GET, &location)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Chunks that add up past the limit: the one that crosses it is refused.
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .req(Method::PATCH, &location)
        .body(data[..600].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let r = http
        .req(Method::PATCH, &location)
        .body(data[600..1200].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(s.blob_files().is_empty());
    assert!(s.upload_entries().is_empty());
    let small = http.push_blob("app", &data[..1000]).await;
    assert!(s.registry.blob_path(&small).is_some());
}
