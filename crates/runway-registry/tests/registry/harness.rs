//! A registry on a random port with its own data directory, an access key, and helpers
//! for raw HTTP and for running skopeo and podman.

use runway_registry::{Registry, RegistryConfig};
use runway_secrets::MasterKey;
use runway_store::{SqliteStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct Server {
    pub registry: Registry,
    pub addr: SocketAddr,
    pub key_id: String,
    pub secret: String,
    pub root: PathBuf,
    pub metrics: Arc<runway_telemetry::Registry>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Last: removed after the server stops.
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Opens a registry over `root` and the store, and serves `wrap(router)` on a random
/// port.
pub async fn serve(
    config: RegistryConfig,
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> (
    Registry,
    SocketAddr,
    Arc<runway_telemetry::Registry>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut metrics = runway_telemetry::Registry::default();
    let registry = Registry::open(config, store, master, &mut metrics).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = wrap(registry.router());
    let task = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (registry, addr, Arc::new(metrics), stop, task)
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}, |r| r).await
    }

    pub async fn start_with(
        configure: impl FnOnce(&mut RegistryConfig),
        wrap: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let master = Arc::new(MasterKey::load_or_create(&dir.path().join("master.key")).unwrap());
        let (key_id, secret) = {
            let mut tx = store.begin().unwrap();
            let (id, secret) =
                runway_secrets::create_access_key(&mut *tx, &master, "test").unwrap();
            tx.commit().unwrap();
            (id, secret.expose().to_string())
        };
        let root = dir.path().join("registry");
        let mut config = RegistryConfig::new(&root);
        configure(&mut config);
        let (registry, addr, metrics, stop, task) = serve(config, store, master, wrap).await;
        Server {
            registry,
            addr,
            key_id,
            secret,
            root,
            metrics,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `KEYID:SECRET`, for `--creds`.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.key_id, self.secret)
    }

    pub fn http(&self) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: format!("http://{}", self.addr),
            auth: Some((self.key_id.clone(), self.secret.clone())),
        }
    }

    /// Blob files in the store (walks `<root>/blobs`).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        walk(&self.root.join("blobs"))
    }

    /// Files and directories under `<root>/uploads`.
    pub fn upload_entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.join("uploads"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Raw HTTP against a server, with or without its access key.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Http {
    pub fn anonymous(&self) -> Http {
        Http {
            auth: None,
            ..self.clone()
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let b = self.client.request(method, url);
        match &self.auth {
            Some((id, secret)) => b.basic_auth(id, Some(secret)),
            None => b,
        }
    }

    /// Uploads `bytes` into `repo` with POST then PUT; the digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let location = header(&r, "location");
        let r = self
            .req(reqwest::Method::PUT, &format!("{location}?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        digest
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> reqwest::Response {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
    }
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {r:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

pub fn sha256(bytes: &[u8]) -> String {
    runway_registry::digest::Digest::of(runway_registry::digest::Algorithm::Sha256, bytes)
        .to_string()
}

/// The spec error code of an error answer.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_string()
}

/// A minimal image manifest for `config` and `layers` (digest, size) pairs.
pub fn image_manifest(
    config: (&str, usize),
    layers: &[(&str, usize)],
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s
        })).collect::<Vec<_>>(),
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&m).unwrap()
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes a small image (a config and one layer) to `repo:tag` over raw HTTP; the
/// manifest's bytes and digest.
pub async fn push_small_image(http: &Http, repo: &str, tag: &str) -> (Vec<u8>, String) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","n":"{tag}"}}"#).into_bytes();
    let layer = runway_registry::test_util::random_bytes(2048);
    let c = http.push_blob(repo, &config).await;
    let l = http.push_blob(repo, &layer).await;
    let manifest = image_manifest(
        (&c, config.len()),
        &[(&l, layer.len())],
        serde_json::json!({}),
    );
    let r = http.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let digest = sha256(&manifest);
    (manifest, digest)
}

/// Runs a program to completion without blocking the runtime.
pub async fn run(program: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Panics with the program's output unless it succeeded; its stdout.
pub fn success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo copy` with TLS off both ways.
pub async fn skopeo_copy(src: &str, dest: &str, extra: &[&str]) -> Output {
    let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(src);
    args.push(dest);
    run("skopeo", &args).await
}
