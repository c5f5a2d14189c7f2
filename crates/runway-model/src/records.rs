//! What runway stores for each resource. Wire shapes are embedded where the API returns
//! them unchanged; everything derived (Latest, IsDefault, HasAssociatedService, summaries)
//! is computed when answering, never stored twice.

use crate::shapes::{
    EncryptionConfiguration, HealthCheckConfiguration, InstanceConfiguration, NetworkConfiguration,
    ServiceObservabilityConfiguration, SourceConfiguration, Tag, TraceConfiguration,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident => $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),*
        }

        impl $name {
            /// The value as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum! {
    /// A service's status.
    pub enum ServiceStatus {
        CreateFailed => "CREATE_FAILED",
        Running => "RUNNING",
        Deleted => "DELETED",
        DeleteFailed => "DELETE_FAILED",
        Paused => "PAUSED",
        OperationInProgress => "OPERATION_IN_PROGRESS",
    }
}

wire_enum! {
    /// What an operation does to its service.
    pub enum OperationType {
        StartDeployment => "START_DEPLOYMENT",
        CreateService => "CREATE_SERVICE",
        PauseService => "PAUSE_SERVICE",
        ResumeService => "RESUME_SERVICE",
        DeleteService => "DELETE_SERVICE",
        UpdateService => "UPDATE_SERVICE",
    }
}

wire_enum! {
    /// Where an operation is in its life.
    pub enum OperationStatus {
        Pending => "PENDING",
        InProgress => "IN_PROGRESS",
        Failed => "FAILED",
        Succeeded => "SUCCEEDED",
        RollbackInProgress => "ROLLBACK_IN_PROGRESS",
        RollbackFailed => "ROLLBACK_FAILED",
        RollbackSucceeded => "ROLLBACK_SUCCEEDED",
    }
}

impl OperationStatus {
    /// Whether the operation has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OperationStatus::Failed
                | OperationStatus::Succeeded
                | OperationStatus::RollbackFailed
                | OperationStatus::RollbackSucceeded
        )
    }
}

wire_enum! {
    /// Whether a configuration revision can still be used.
    pub enum ConfigStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
}

wire_enum! {
    /// A connection's status.
    pub enum ConnectionStatus {
        PendingHandshake => "PENDING_HANDSHAKE",
        Available => "AVAILABLE",
        Error => "ERROR",
        Deleted => "DELETED",
    }
}

/// The configuration a service is asked to run, complete with defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    pub source_configuration: SourceConfiguration,
    pub instance_configuration: InstanceConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    pub health_check_configuration: HealthCheckConfiguration,
    pub auto_scaling_configuration_arn: String,
    pub network_configuration: NetworkConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability_configuration: Option<ServiceObservabilityConfiguration>,
}

/// A service: its identity, status and desired configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub arn: String,
    pub id: String,
    pub name: String,
    /// The host name of the default URL, `<name>-<short-id>.<base-domain>`.
    pub url: String,
    pub status: ServiceStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    pub spec: ServiceSpec,
}

/// A recorded operation on a service; the controller carries it out in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    pub service_arn: String,
    pub kind: OperationType,
    pub status: OperationStatus,
    pub started_at: Timestamp,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// The configuration the operation deploys (create, update, deployment, resume).
    #[serde(default)]
    pub spec: Option<ServiceSpec>,
    /// Why the operation failed or rolled back.
    #[serde(default)]
    pub message: Option<String>,
    /// For a deployment that redeploys an earlier revision (rollback), that revision.
    #[serde(default)]
    pub redeploy: Option<String>,
    /// How far the controller got; it resumes from here after a restart.
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// The controller's position in an operation, recorded before each step is acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Progress {
    /// The source is being built into an image (a code repository service); no revision
    /// exists yet.
    Building,
    /// The new revision exists and its instances are starting; traffic is not on it yet.
    Starting {
        revision: String,
        deadline: Timestamp,
    },
    /// Traffic is on the new revision; the previous ones drain until `until`.
    Draining { revision: String, until: Timestamp },
    /// The new revision failed; it is being stopped and the old one keeps serving.
    RollingBack { revision: String, reason: String },
    /// Instances are stopping (pause, delete).
    Stopping,
}

/// One revision of an auto scaling configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoScalingRecord {
    pub arn: String,
    pub name: String,
    pub revision: i64,
    pub max_concurrency: i64,
    pub min_size: i64,
    pub max_size: i64,
    pub status: ConfigStatus,
    pub created_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
}

/// A connection to a source code provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub arn: String,
    pub name: String,
    pub provider_type: String,
    pub status: ConnectionStatus,
    pub created_at: Timestamp,
}

/// One revision of an observability configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservabilityRecord {
    pub arn: String,
    pub name: String,
    pub revision: i64,
    #[serde(default)]
    pub trace_configuration: Option<TraceConfiguration>,
    pub status: ConfigStatus,
    pub created_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
}

/// The tags of one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagsRecord {
    pub arn: String,
    pub tags: Vec<Tag>,
}

wire_enum! {
    /// Where a revision is in its life.
    pub enum RevisionStatus {
        Deploying => "DEPLOYING",
        Serving => "SERVING",
        Retired => "RETIRED",
        Failed => "FAILED",
    }
}

/// An image resolved to what instances run: a repository in runway's registry and a
/// manifest digest, so a revision always runs the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    pub repository: String,
    pub digest: String,
}

/// An immutable revision of a service: the configuration and the exact image it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// `<service id>-<number, 5 digits>`.
    pub id: String,
    pub service_arn: String,
    pub number: u32,
    pub created_at: Timestamp,
    pub spec: ServiceSpec,
    /// Set once the image is resolved.
    #[serde(default)]
    pub image: Option<ResolvedImage>,
    pub status: RevisionStatus,
    /// Why the revision failed.
    #[serde(default)]
    pub message: Option<String>,
}

/// Where a service's traffic goes: revisions with a share and an optional tag, which
/// gives the revision its own URL (`<tag>---<host>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficTarget {
    pub revision: String,
    pub percent: u8,
    #[serde(default)]
    pub tag: Option<String>,
}

/// What the controller keeps per service besides the API's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub service_arn: String,
    /// The number the next revision gets.
    pub next_revision: u32,
    pub traffic: Vec<TrafficTarget>,
    /// The instance count the autoscaler last chose for each revision, so a restart keeps
    /// capacity instead of starting over.
    #[serde(default)]
    pub desired: std::collections::BTreeMap<String, u32>,
    pub paused: bool,
}

/// A line of a service's event log ("Provisioning instances", ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub service_arn: String,
    pub time: Timestamp,
    #[serde(default)]
    pub operation_id: Option<String>,
    pub message: String,
}
