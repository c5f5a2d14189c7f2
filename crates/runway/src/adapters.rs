//! The glue between parts that must not know each other: the API reads instances and
//! logs from the runtime, the controller resolves and builds images through the
//! registry and the builder and reads secrets from runway's secret stores. (The runtime
//! reads images from the registry through [`runway_build::RegistryImages`], which builds
//! share.)

use runway_api::{InstanceEntry, InstanceReader, LogEntry};
use runway_build::{BuildRequest, Builder, GitCredentials, Source};
use runway_control::{BoxFuture, BuiltImage, ImageResolver, SecretResolver, SourceBuild};
use runway_model::records::{ResolvedImage, SecretPin, ServiceRecord};
use runway_model::reference::ImageReference;
use runway_model::shapes::CodeRepository;
use runway_registry::{Registry, UpstreamAuth};
use runway_runtime::{LocalRuntime, LogQuery, Runtime, Stream};
use runway_secrets::kms::Kms;
use runway_secrets::references::{self, ReferenceError};
use runway_secrets::{ConnectionCredentials, MasterKey};
use runway_store::{Store, Txn};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// Instances and their logs for the API, from the runtime.
pub struct RuntimeInstances(pub LocalRuntime);

impl InstanceReader for RuntimeInstances {
    fn instances(&self, service_id: &str) -> Vec<InstanceEntry> {
        let mut out: Vec<InstanceEntry> = self
            .0
            .list()
            .into_iter()
            .filter(|i| i.service_id == service_id)
            .map(|i| InstanceEntry {
                instance_id: i.id.to_string(),
                revision_id: i.revision_id,
                address: i.addr.to_string(),
                state: format!("{:?}", i.state).to_lowercase(),
                restarts: i.restarts,
                started_at: i.started_at,
            })
            .collect();
        out.sort_by_key(|i| std::cmp::Reverse(i.started_at));
        out
    }

    fn logs(
        &self,
        service_id: String,
        since: Option<SystemTime>,
        limit: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<LogEntry>, String>> + Send + '_>> {
        Box::pin(async move {
            let query = LogQuery {
                service: service_id,
                instance: None,
                since,
                follow: false,
            };
            let mut stream = self.0.logs(query).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(line) = stream.next().await {
                if out.len() == limit {
                    break;
                }
                out.push(LogEntry {
                    time: line.time,
                    instance_id: line.instance_id.to_string(),
                    stream: match line.stream {
                        Stream::Stdout => "stdout",
                        Stream::Stderr => "stderr",
                    }
                    .to_string(),
                    text: line.text,
                });
            }
            Ok(out)
        })
    }
}

/// Images for the controller: one in runway's registry (named by any of the names clients
/// reach it by) is resolved to its digest; one elsewhere is copied into it first.
pub struct RegistryResolver {
    pub registry: Registry,
    /// `127.0.0.1:5000`, `localhost:5000`, ...
    pub hosts: Vec<String>,
    /// Source builds, for services from a code repository.
    pub builder: Builder,
    /// Where build logs are kept ([`runway_control::build_log_path`]).
    pub data_dir: PathBuf,
    /// Connections' credentials, for private upstream registries and git repositories.
    pub store: Arc<dyn Store>,
    pub master: Arc<MasterKey>,
}

impl RegistryResolver {
    async fn credentials(
        &self,
        arn: Option<&str>,
    ) -> Result<Option<ConnectionCredentials>, String> {
        connection_credentials(&self.store, &self.master, arn).await
    }
}

/// The credentials of connection `arn` (none if there is no `arn` or it has none).
pub async fn connection_credentials(
    store: &Arc<dyn Store>,
    master: &Arc<MasterKey>,
    arn: Option<&str>,
) -> Result<Option<ConnectionCredentials>, String> {
    let Some(arn) = arn.map(str::to_string) else {
        return Ok(None);
    };
    let (store, master) = (store.clone(), master.clone());
    tokio::task::spawn_blocking(move || {
        let tx = store.read().map_err(|e| e.to_string())?;
        runway_secrets::connection_credentials(&*tx, &master, &arn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What a build fetches for `code`, signed in with `credentials`: an SSH key for ssh
/// URLs, a token (with its user name) for https.
pub fn git_source(code: &CodeRepository, credentials: Option<ConnectionCredentials>) -> Source {
    let url = code.repository_url.clone().unwrap_or_default();
    let credentials = credentials.and_then(|c| match (c.ssh_private_key, c.token) {
        (Some(private_key), _) if !url.starts_with("http") => {
            Some(GitCredentials::SshKey { private_key })
        }
        (_, Some(token)) => Some(GitCredentials::Token {
            username: c.username,
            token,
        }),
        (Some(private_key), None) => Some(GitCredentials::SshKey { private_key }),
        (None, None) => None,
    });
    Source {
        url,
        branch: code
            .source_code_version
            .as_ref()
            .and_then(|v| v.value.clone())
            .unwrap_or_else(|| "main".into()),
        source_directory: code.source_directory.clone(),
        credentials,
    }
}

/// The repository a service's builds are pushed to: `builds/<service name>`.
pub fn build_repository(service_name: &str) -> String {
    format!("builds/{}", service_name.to_ascii_lowercase())
}

/// The repository `runway deploy --source` uploads a service's sources to.
pub fn source_repository(service_name: &str) -> String {
    format!("sources/{}", service_name.to_ascii_lowercase())
}

impl ImageResolver for RegistryResolver {
    fn resolve<'a>(
        &'a self,
        identifier: &'a str,
        connection_arn: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ResolvedImage, String>> {
        Box::pin(async move {
            let reference =
                ImageReference::parse(identifier).map_err(|e| format!("{identifier:?}: {e}"))?;
            if self.hosts.contains(&reference.registry) {
                let wanted = reference
                    .digest
                    .clone()
                    .or(reference.tag.clone())
                    .unwrap_or_else(|| "latest".into());
                let manifest = self
                    .registry
                    .resolve_manifest(&reference.repository, &wanted)
                    .await
                    .map_err(|e| format!("{identifier} is not in runway's registry: {e}"))?;
                return Ok(ResolvedImage {
                    repository: reference.repository,
                    digest: manifest.digest,
                });
            }
            // Pull-through, with the connection's user name and token if it has them.
            let auth =
                self.credentials(connection_arn)
                    .await?
                    .and_then(|c| match (c.username, c.token) {
                        (Some(username), Some(password)) => {
                            Some(UpstreamAuth::Basic { username, password })
                        }
                        (None, Some(token)) => Some(UpstreamAuth::Bearer(token)),
                        _ => None,
                    });
            let imported = self
                .registry
                .import(&reference, auth)
                .await
                .map_err(|e| e.to_string())?;
            Ok(ResolvedImage {
                repository: imported.repository,
                digest: imported.digest,
            })
        })
    }

    fn release<'a>(
        &'a self,
        service: &'a ServiceRecord,
        images: Vec<(String, ResolvedImage)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let builds = build_repository(&service.name);
            for (identifier, image) in images {
                let pulled = ImageReference::parse(&identifier)
                    .is_ok_and(|r| !self.hosts.contains(&r.registry));
                if pulled || image.repository == builds {
                    self.registry
                        .delete_image(&image.repository, &image.digest)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            // Uploaded sources, and builds no revision kept.
            for repository in [builds, source_repository(&service.name)] {
                for tag in self.registry.tags(&repository).await.unwrap_or_default() {
                    self.registry
                        .delete_tag(&repository, &tag)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            if let Err(e) = self.builder.forget_service(&service.id).await {
                tracing::warn!(service = %service.name, error = %e, "cannot remove the build caches");
            }
            Ok(())
        })
    }

    fn build<'a>(&'a self, request: SourceBuild<'a>) -> BoxFuture<'a, Result<BuiltImage, String>> {
        Box::pin(async move {
            let credentials = self.credentials(request.connection_arn).await?;
            let source = git_source(request.code, credentials);
            let log_path = runway_control::build_log_path(&self.data_dir, request.operation_id);
            if let Some(dir) = log_path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let build = BuildRequest {
                service_id: request.service.id.clone(),
                repository: build_repository(&request.service.name),
                source,
                code_configuration: request.code.code_configuration.clone(),
                log_path,
            };
            let built = self
                .builder
                .build(&build, &|_| {})
                .await
                .map_err(|e| e.to_string())?;
            let plan = &built.plan;
            Ok(BuiltImage {
                image: ResolvedImage {
                    repository: built.repository.clone(),
                    digest: built.digest.clone(),
                },
                identifier: format!(
                    "{}/{}:{}",
                    self.hosts.first().map_or("localhost", String::as_str),
                    built.repository,
                    built.tag
                ),
                port: plan.port,
                env: plan.image_env(),
                secrets: plan
                    .secrets
                    .iter()
                    .map(|s| (s.name.clone(), s.value_from.clone()))
                    .collect(),
                notes: built.notes.clone(),
                http: plan.http.clone(),
                summary: format!(
                    "{} {} at {} in {:.1} s",
                    plan.runtime.name(),
                    built.repository,
                    &built.commit[..built.commit.len().min(12)],
                    built.duration.as_secs_f64()
                ),
            })
        })
    }
}

/// Secret references for the controller, from runway's Secrets Manager and Parameter
/// Store (pins name versions; values go to the instance and nowhere else).
pub struct StoreSecrets {
    pub store: Arc<dyn Store>,
    pub master: Arc<MasterKey>,
    pub region: String,
    pub account: String,
}

/// What a call to KMS needs, owned, for a blocking thread.
struct KmsSource {
    master: Arc<MasterKey>,
    region: String,
    account: String,
}

impl KmsSource {
    /// KMS as of now.
    fn kms(&self) -> Kms<'_> {
        Kms {
            master: &self.master,
            region: &self.region,
            account: &self.account,
            now: runway_model::Timestamp::now(),
        }
    }
}

impl StoreSecrets {
    /// Runs `f` in one store transaction on a blocking thread, committing what it wrote
    /// (the AWS managed keys made on first use, the day a secret was last read).
    async fn with_kms<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Txn, &KmsSource) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        let source = KmsSource {
            master: self.master.clone(),
            region: self.region.clone(),
            account: self.account.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let mut tx = store.begin().map_err(|e| e.to_string())?;
            let out = f(&mut *tx, &source)?;
            tx.commit().map_err(|e| e.to_string())?;
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Why a reference cannot be used, for the event log: the variable and the reference.
fn unresolved(name: &str, e: ReferenceError) -> String {
    match e {
        ReferenceError::Secrets(e) => format!("secret {name} cannot be read: {e}"),
        e => format!("secret {name} does not resolve: {e}"),
    }
}

impl SecretResolver for StoreSecrets {
    fn pin<'a>(
        &'a self,
        references: &'a [(String, String)],
        kms_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<SecretPin>, String>> {
        let references = references.to_vec();
        let kms_key = kms_key.map(str::to_string);
        Box::pin(self.with_kms(move |tx, source| {
            if let Some(key) = &kms_key {
                source.kms().usable(tx, key).map_err(|e| {
                    format!(
                        "the service's EncryptionConfiguration.KmsKey {key} cannot be used: {e}"
                    )
                })?;
            }
            references
                .into_iter()
                .map(|(name, reference)| {
                    let pin = references::pin(tx, source.kms(), &reference)
                        .map_err(|e| unresolved(&name, e))?;
                    Ok(SecretPin {
                        name,
                        reference,
                        pinned: pin.encode(),
                    })
                })
                .collect()
        }))
    }

    fn values<'a>(
        &'a self,
        pins: &'a [SecretPin],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, String>> {
        let pins = pins.to_vec();
        Box::pin(self.with_kms(move |tx, source| {
            pins.into_iter()
                .map(|p| {
                    let pin =
                        references::Pin::decode(&p.pinned).map_err(|e| unresolved(&p.name, e))?;
                    let value = references::read(tx, source.kms(), &p.reference, &pin)
                        .map_err(|e| unresolved(&p.name, e))?;
                    Ok((p.name, value))
                })
                .collect()
        }))
    }
}
