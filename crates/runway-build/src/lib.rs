//! Source-to-image builds (the reference architecture's CodeBuild, managed runtimes and
//! CodeStar connections). This crate owns getting a source (git from any host over
//! https, ssh, git or file URLs, or a directory uploaded to runway's registry), reading
//! its `apprunner.yaml` ([`config`]) or the API's code configuration or detecting its
//! language ([`plan`]), the managed runtimes and their base images ([`runtimes`]),
//! running the build commands in an isolated container of the base image with the
//! source at `/app` and per-service dependency caches ([`Builder`], through the
//! [`BuildJobs`] interface the instance runtime implements), and pushing the result to
//! runway's registry as `<repository>:<commit>`: the base's layers, a deterministic
//! source layer and the build's layer, with a config that runs the start command. Builds
//! trust the host's certificate authorities and use the server's proxy settings
//! ([`trust`]). It also verifies and parses push webhooks ([`webhook`]) and tells whether a branch moved
//! ([`Builder::latest_commit`]), and imports root filesystems as base images
//! ([`import_rootfs`]) for machines that reach no public registry.
//!
//! # Base images without a public registry
//!
//! Each runtime's base image is the reference it is set to, else the repository
//! `runtimes/<name>` of runway's own registry, else the official image of the version
//! (`docker.io/library/python:{version}-slim`, ...), pulled into runway's registry the
//! first time a build needs it ([`runtimes`]). To make images from Debian's packages,
//! `scripts/base-image python3` builds a root filesystem with `debootstrap
//! --variant=minbase` and imports it with `runway image import-rootfs DIR --name
//! runtimes/python3:<version> --tag latest` ([`import_rootfs`]); builds find it there. Any
//! root filesystem works (one with a .NET SDK, a company's hardened image unpacked).
//!
//! This crate must never print, log or store git credentials or webhook secrets, never
//! follow a link out of a source on the host, never push `<repository>:<commit>` for a
//! failed build, and never touch a running revision: deploying what it built is the
//! controller's business.

#![forbid(unsafe_code)]

mod build;
pub mod config;
pub mod detect;
mod git;
pub mod image;
pub mod job;
pub mod layer;
mod log;
pub mod plan;
mod runtime_jobs;
pub mod runtimes;
pub mod script;
pub mod source;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod trust;
pub mod webhook;

pub use build::{APP_DIR, BuildError, BuildRequest, BuildResult, Builder, BuilderConfig};
pub use config::{AppRunnerConfig, ConfigFileError, SecretRef};
pub use git::{check_source, is_branch_name};
pub use image::{ImageError, ImportedRootfs, RootfsOptions, import_layer, import_rootfs};
pub use job::{BuildJob, BuildJobs, JobError, JobExit, JobMount, JobRequest};
pub use layer::{LayerFile, PackedSource, pack_source};
pub use plan::{BuildPlan, PlanError, PlanOrigin};
pub use runtime_jobs::RegistryImages;
pub use runtimes::{Family, Runtime, RuntimeImages};
pub use source::{GitCredentials, Source, SourceError, UPLOAD_SCHEME};
pub use trust::{BuildTrust, TrustError};
pub use webhook::{Provider, PushEvent, WebhookError, WebhookEvent};
