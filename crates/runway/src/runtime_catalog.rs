//! The managed runtimes' base images for the API's `Runway.ListRuntimes`,
//! `Runway.UpdateRuntime` and `Runway.CheckRuntime`: what the builder would use for each,
//! whether runway's registry has it, and changes applied to the running builder.

use runway_api::RuntimeCatalog;
use runway_build::runtimes::{self, ImageSource, Runtime};
use runway_build::{Builder, image};
use runway_model::reference::ImageReference;
use runway_model::shapes::{CheckRuntimeResponse, RuntimeSummary};
use runway_registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;

/// The builder's runtimes, over runway's registry.
pub struct Catalog {
    pub builder: Builder,
    pub registry: Registry,
    /// The names runway's registry is reached by.
    pub hosts: Vec<String>,
    /// What the server's flags and file configure, restored when a runtime is reset.
    pub configured: HashMap<Runtime, String>,
    /// The runtimes set with `Runway.UpdateRuntime`.
    pub set: Mutex<HashMap<Runtime, String>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

fn runtime(name: &str) -> Option<Runtime> {
    Runtime::from_name(name).or_else(|| Runtime::from_api_name(name))
}

impl Catalog {
    /// Whether runway's registry has `reference` (an official image: its pulled copy).
    async fn present(&self, reference: &str) -> bool {
        let (repository, tag) = if runtimes::is_local_reference(reference, &self.hosts) {
            runtimes::split_local_reference(reference, &self.hosts)
        } else {
            let Ok(parsed) = ImageReference::parse(reference) else {
                return false;
            };
            let Ok(repository) = runway_registry::internal_repository(&parsed) else {
                return false;
            };
            let tag = parsed
                .digest
                .clone()
                .or(parsed.tag.clone())
                .unwrap_or_else(|| "latest".into());
            (repository, tag)
        };
        self.registry
            .resolve_manifest(&repository, &tag)
            .await
            .is_ok()
    }

    async fn summary(&self, rt: Runtime) -> RuntimeSummary {
        let choice = self.builder.image_choice(rt).await;
        let set = self
            .set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&rt);
        let (image, source, state, versions, detail) = match choice {
            None => {
                let detail = match rt.successor() {
                    Some(next) => format!(
                        "builds use {next}'s image; `scripts/base-image {rt}` imports one of its own"
                    ),
                    None => format!(
                        "`scripts/base-image {rt}` imports one, `runway runtimes set {rt} REFERENCE` names one"
                    ),
                };
                (String::new(), "none", "missing", Vec::new(), detail)
            }
            Some(c) => {
                let source = match c.source {
                    ImageSource::Configured if set => "set",
                    other => other.as_str(),
                };
                let versions = c
                    .local_tags
                    .as_deref()
                    .map(runtimes::versions)
                    .unwrap_or_default();
                let filled = c.reference.replace("{version}", rt.default_version());
                let here = self.present(&filled).await;
                let (state, detail) = match (c.source, here) {
                    (_, true) if runtimes::is_local_reference(&filled, &self.hosts) => {
                        ("present", String::new())
                    }
                    (_, true) => ("present", format!("pulled from {filled}")),
                    (ImageSource::Official, false) | (ImageSource::Configured, false)
                        if !runtimes::is_local_reference(&filled, &self.hosts) =>
                    {
                        (
                            "not pulled",
                            format!(
                                "pulled from {filled} by the first build; without a public registry, \
                                 `scripts/base-image {rt}` imports one"
                            ),
                        )
                    }
                    _ => (
                        "missing",
                        format!(
                            "{filled} is not in runway's registry: `scripts/base-image {rt}` imports it"
                        ),
                    ),
                };
                (c.reference, source, state, versions, detail)
            }
        };
        RuntimeSummary {
            runtime: Some(rt.name().to_string()),
            api_name: Some(rt.api_name().to_string()),
            language: Some(rt.describe()),
            retired: Some(rt.retired()),
            successor: rt.successor().map(|s| s.name().to_string()),
            image: Some(image),
            source: Some(source.to_string()),
            state: Some(state.to_string()),
            versions: Some(versions),
            detail: Some(detail).filter(|d| !d.is_empty()),
        }
    }
}

impl RuntimeCatalog for Catalog {
    fn canonical(&self, name: &str) -> Option<String> {
        runtime(name).map(|r| r.name().to_string())
    }

    fn apply(&self, name: &str, reference: Option<&str>) -> Result<(), String> {
        let rt = runtime(name).ok_or_else(|| format!("{name:?} is not a managed runtime"))?;
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        match reference {
            Some(r) => {
                self.builder.set_runtime_image(rt, Some(r))?;
                set.insert(rt, r.to_string());
            }
            None => {
                let configured = self.configured.get(&rt).map(String::as_str);
                self.builder.set_runtime_image(rt, configured)?;
                set.remove(&rt);
            }
        }
        Ok(())
    }

    fn list(&self) -> runway_api::runtimes::BoxFuture<'_, Vec<RuntimeSummary>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for rt in Runtime::ALL {
                out.push(self.summary(rt).await);
            }
            out
        })
    }

    fn check<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
    ) -> runway_api::runtimes::BoxFuture<'a, Result<CheckRuntimeResponse, String>> {
        Box::pin(async move {
            let rt = runtime(name).ok_or_else(|| format!("{name:?} is not a managed runtime"))?;
            let chosen = self
                .builder
                .choose_image(rt, version)
                .await
                .map_err(|e| e.to_string())?;
            let base = image::resolve_base(&self.registry, &chosen.reference, &self.hosts)
                .await
                .map_err(|e| {
                    format!(
                        "{e}; `scripts/base-image {}` imports an image, `runway runtimes set {} REFERENCE` names one",
                        chosen.runtime, chosen.runtime
                    )
                })?;
            Ok(CheckRuntimeResponse {
                runtime: Some(self.summary(rt).await),
                built_with: Some(chosen.runtime.name().to_string()),
                image_reference: Some(chosen.reference),
                image_digest: Some(base.digest),
                version: chosen.version,
                note: chosen.fallback,
            })
        })
    }
}
