//! The API's wire shapes, named and spelled as in the botocore model
//! `apprunner/2020-05-15/service-2.json`.
//!
//! Every request member is optional here, so that a missing required member is reported by
//! [`crate::validate`] as an `InvalidRequestException` naming the field, rather than as a
//! parse failure. The same structures, once validated and completed with defaults, are
//! what a service stores and what the API answers.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! shape {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

pub(crate) use shape;

/// Environment variables and secret references, in key order.
pub type StringMap = BTreeMap<String, String>;

shape! {
    pub struct Tag { key: String, value: String }
}

shape! {
    pub struct SourceConfiguration {
        code_repository: CodeRepository,
        image_repository: ImageRepository,
        auto_deployments_enabled: bool,
        authentication_configuration: AuthenticationConfiguration,
    }
}

impl SourceConfiguration {
    /// The connection the source is reached with, if it names one.
    pub fn connection_arn(&self) -> Option<&str> {
        self.authentication_configuration
            .as_ref()
            .and_then(|a| a.connection_arn.as_deref())
    }
}

shape! {
    pub struct CodeRepository {
        repository_url: String,
        source_code_version: SourceCodeVersion,
        code_configuration: CodeConfiguration,
        source_directory: String,
    }
}

shape! {
    pub struct SourceCodeVersion {
        #[serde(rename = "Type")]
        kind: String,
        value: String,
    }
}

shape! {
    pub struct CodeConfiguration {
        configuration_source: String,
        code_configuration_values: CodeConfigurationValues,
    }
}

shape! {
    pub struct CodeConfigurationValues {
        runtime: String,
        build_command: String,
        start_command: String,
        port: String,
        runtime_environment_variables: StringMap,
        runtime_environment_secrets: StringMap,
    }
}

shape! {
    pub struct ImageRepository {
        image_identifier: String,
        image_configuration: ImageConfiguration,
        image_repository_type: String,
    }
}

shape! {
    pub struct ImageConfiguration {
        runtime_environment_variables: StringMap,
        start_command: String,
        port: String,
        runtime_environment_secrets: StringMap,
    }
}

shape! {
    pub struct AuthenticationConfiguration {
        connection_arn: String,
        access_role_arn: String,
    }
}

shape! {
    pub struct InstanceConfiguration {
        cpu: String,
        memory: String,
        instance_role_arn: String,
    }
}

shape! {
    pub struct EncryptionConfiguration { kms_key: String }
}

shape! {
    pub struct HealthCheckConfiguration {
        protocol: String,
        path: String,
        interval: i64,
        timeout: i64,
        healthy_threshold: i64,
        unhealthy_threshold: i64,
    }
}

shape! {
    pub struct NetworkConfiguration {
        egress_configuration: EgressConfiguration,
        ingress_configuration: IngressConfiguration,
        ip_address_type: String,
    }
}

shape! {
    pub struct EgressConfiguration {
        egress_type: String,
        vpc_connector_arn: String,
    }
}

shape! {
    pub struct IngressConfiguration { is_publicly_accessible: bool }
}

shape! {
    pub struct ServiceObservabilityConfiguration {
        observability_enabled: bool,
        observability_configuration_arn: String,
    }
}

shape! {
    pub struct TraceConfiguration { vendor: String }
}

// ---- services ----

shape! {
    pub struct CreateServiceRequest {
        service_name: String,
        source_configuration: SourceConfiguration,
        instance_configuration: InstanceConfiguration,
        tags: Vec<Tag>,
        encryption_configuration: EncryptionConfiguration,
        health_check_configuration: HealthCheckConfiguration,
        auto_scaling_configuration_arn: String,
        network_configuration: NetworkConfiguration,
        observability_configuration: ServiceObservabilityConfiguration,
    }
}

shape! {
    pub struct UpdateServiceRequest {
        service_arn: String,
        source_configuration: SourceConfiguration,
        instance_configuration: InstanceConfiguration,
        auto_scaling_configuration_arn: String,
        health_check_configuration: HealthCheckConfiguration,
        network_configuration: NetworkConfiguration,
        observability_configuration: ServiceObservabilityConfiguration,
    }
}

shape! {
    /// The input of every call that names just a service: Describe, Delete, Pause,
    /// Resume and StartDeployment.
    pub struct ServiceArnRequest { service_arn: String }
}

shape! {
    pub struct ListServicesRequest { next_token: String, max_results: i64 }
}

shape! {
    pub struct ListOperationsRequest { service_arn: String, next_token: String, max_results: i64 }
}

shape! {
    pub struct Service {
        service_name: String,
        service_id: String,
        service_arn: String,
        service_url: String,
        created_at: Timestamp,
        updated_at: Timestamp,
        deleted_at: Timestamp,
        status: String,
        source_configuration: SourceConfiguration,
        instance_configuration: InstanceConfiguration,
        encryption_configuration: EncryptionConfiguration,
        health_check_configuration: HealthCheckConfiguration,
        auto_scaling_configuration_summary: AutoScalingConfigurationSummary,
        network_configuration: NetworkConfiguration,
        observability_configuration: ServiceObservabilityConfiguration,
    }
}

shape! {
    pub struct ServiceSummary {
        service_name: String,
        service_id: String,
        service_arn: String,
        service_url: String,
        created_at: Timestamp,
        updated_at: Timestamp,
        status: String,
    }
}

shape! {
    /// The answer of CreateService, UpdateService, DeleteService, PauseService and ResumeService.
    pub struct ServiceResponse { service: Service, operation_id: String }
}

shape! {
    pub struct DescribeServiceResponse { service: Service }
}

shape! {
    pub struct StartDeploymentResponse { operation_id: String }
}

shape! {
    pub struct ListServicesResponse { service_summary_list: Vec<ServiceSummary>, next_token: String }
}

shape! {
    pub struct OperationSummary {
        id: String,
        #[serde(rename = "Type")]
        kind: String,
        status: String,
        target_arn: String,
        started_at: Timestamp,
        ended_at: Timestamp,
        updated_at: Timestamp,
    }
}

shape! {
    pub struct ListOperationsResponse { operation_summary_list: Vec<OperationSummary>, next_token: String }
}

// ---- auto scaling configurations ----

shape! {
    pub struct CreateAutoScalingConfigurationRequest {
        auto_scaling_configuration_name: String,
        max_concurrency: i64,
        min_size: i64,
        max_size: i64,
        tags: Vec<Tag>,
    }
}

shape! {
    pub struct AutoScalingConfigurationArnRequest { auto_scaling_configuration_arn: String }
}

shape! {
    pub struct DeleteAutoScalingConfigurationRequest {
        auto_scaling_configuration_arn: String,
        delete_all_revisions: bool,
    }
}

shape! {
    pub struct ListAutoScalingConfigurationsRequest {
        auto_scaling_configuration_name: String,
        latest_only: bool,
        max_results: i64,
        next_token: String,
    }
}

shape! {
    pub struct ListServicesForAutoScalingConfigurationRequest {
        auto_scaling_configuration_arn: String,
        max_results: i64,
        next_token: String,
    }
}

shape! {
    pub struct AutoScalingConfiguration {
        auto_scaling_configuration_arn: String,
        auto_scaling_configuration_name: String,
        auto_scaling_configuration_revision: i64,
        latest: bool,
        status: String,
        max_concurrency: i64,
        min_size: i64,
        max_size: i64,
        created_at: Timestamp,
        deleted_at: Timestamp,
        has_associated_service: bool,
        is_default: bool,
    }
}

shape! {
    pub struct AutoScalingConfigurationSummary {
        auto_scaling_configuration_arn: String,
        auto_scaling_configuration_name: String,
        auto_scaling_configuration_revision: i64,
        status: String,
        created_at: Timestamp,
        has_associated_service: bool,
        is_default: bool,
    }
}

shape! {
    pub struct AutoScalingConfigurationResponse { auto_scaling_configuration: AutoScalingConfiguration }
}

shape! {
    pub struct ListAutoScalingConfigurationsResponse {
        auto_scaling_configuration_summary_list: Vec<AutoScalingConfigurationSummary>,
        next_token: String,
    }
}

shape! {
    pub struct ListServicesForAutoScalingConfigurationResponse {
        service_arn_list: Vec<String>,
        next_token: String,
    }
}

// ---- connections ----

shape! {
    pub struct CreateConnectionRequest { connection_name: String, provider_type: String, tags: Vec<Tag> }
}

shape! {
    pub struct ConnectionArnRequest { connection_arn: String }
}

shape! {
    pub struct ListConnectionsRequest { connection_name: String, max_results: i64, next_token: String }
}

shape! {
    pub struct Connection {
        connection_name: String,
        connection_arn: String,
        provider_type: String,
        status: String,
        created_at: Timestamp,
    }
}

shape! {
    pub struct ConnectionResponse { connection: Connection }
}

shape! {
    pub struct ListConnectionsResponse { connection_summary_list: Vec<Connection>, next_token: String }
}

// ---- observability configurations ----

shape! {
    pub struct CreateObservabilityConfigurationRequest {
        observability_configuration_name: String,
        trace_configuration: TraceConfiguration,
        tags: Vec<Tag>,
    }
}

shape! {
    pub struct ObservabilityConfigurationArnRequest { observability_configuration_arn: String }
}

shape! {
    pub struct ListObservabilityConfigurationsRequest {
        observability_configuration_name: String,
        latest_only: bool,
        max_results: i64,
        next_token: String,
    }
}

shape! {
    pub struct ObservabilityConfiguration {
        observability_configuration_arn: String,
        observability_configuration_name: String,
        trace_configuration: TraceConfiguration,
        observability_configuration_revision: i64,
        latest: bool,
        status: String,
        created_at: Timestamp,
        deleted_at: Timestamp,
    }
}

shape! {
    pub struct ObservabilityConfigurationSummary {
        observability_configuration_arn: String,
        observability_configuration_name: String,
        observability_configuration_revision: i64,
    }
}

shape! {
    pub struct ObservabilityConfigurationResponse { observability_configuration: ObservabilityConfiguration }
}

shape! {
    pub struct ListObservabilityConfigurationsResponse {
        observability_configuration_summary_list: Vec<ObservabilityConfigurationSummary>,
        next_token: String,
    }
}

// ---- tags ----

shape! {
    pub struct TagResourceRequest { resource_arn: String, tags: Vec<Tag> }
}

shape! {
    pub struct UntagResourceRequest { resource_arn: String, tag_keys: Vec<String> }
}

shape! {
    pub struct ResourceArnRequest { resource_arn: String }
}

shape! {
    pub struct ListTagsForResourceResponse { tags: Vec<Tag> }
}

shape! {
    /// The empty answer of TagResource and UntagResource.
    pub struct Empty {}
}

// ---- runway's extension operations (target prefix `Runway.`) ----

shape! {
    pub struct ServicePageRequest { service_arn: String, max_results: i64, next_token: String }
}

shape! {
    pub struct RevisionSummary {
        revision_id: String,
        number: i64,
        status: String,
        created_at: Timestamp,
        image_identifier: String,
        image_digest: String,
        percent: i64,
        tag: String,
        message: String,
        desired_instances: i64,
        /// Every HTTP setting the revision is served with.
        http_configuration: HttpConfiguration,
    }
}

shape! {
    pub struct ListRevisionsResponse { revisions: Vec<RevisionSummary>, next_token: String }
}

shape! {
    pub struct RollbackServiceRequest { service_arn: String, revision_id: String }
}

shape! {
    pub struct TrafficEntry { revision_id: String, percent: i64, tag: String }
}

shape! {
    pub struct UpdateTrafficRequest { service_arn: String, traffic: Vec<TrafficEntry> }
}

shape! {
    pub struct UpdateTrafficResponse { traffic: Vec<TrafficEntry> }
}

shape! {
    pub struct ServiceEvent { time: Timestamp, message: String, operation_id: String }
}

shape! {
    pub struct ListServiceEventsResponse { events: Vec<ServiceEvent>, next_token: String }
}

shape! {
    pub struct UpdateConnectionCredentialsRequest {
        connection_arn: String,
        username: String,
        token: String,
        ssh_private_key: String,
        webhook_secret: String,
    }
}

shape! {
    /// A service's HTTP settings (see [`crate::http`]); a member left out is not set.
    pub struct HttpConfiguration {
        /// `HTTP1` or `H2C`.
        instance_protocol: String,
        request_timeout_seconds: i64,
        idle_timeout_seconds: i64,
        /// 0: unlimited.
        max_request_body_bytes: i64,
    }
}

shape! {
    pub struct UpdateServiceHttpConfigurationRequest {
        service_arn: String,
        http_configuration: HttpConfiguration,
    }
}

shape! {
    pub struct UpdateServiceHttpConfigurationResponse {
        service_arn: String,
        http_configuration: HttpConfiguration,
        operation_id: String,
    }
}

shape! {
    pub struct DescribeServiceHttpConfigurationResponse {
        service_arn: String,
        /// What the API set (members left out follow apprunner.yaml or the default).
        http_configuration: HttpConfiguration,
        /// The revision with the most traffic, whose settings the router applies.
        serving_revision_id: String,
        /// Every setting as that revision is served with it.
        serving_http_configuration: HttpConfiguration,
    }
}

shape! {
    pub struct GetBuildLogRequest { operation_id: String, offset: i64 }
}

shape! {
    pub struct GetBuildLogResponse { log: String, next_offset: i64, operation_status: String }
}

shape! {
    pub struct GetLogsRequest { service_arn: String, start_time: Timestamp, limit: i64 }
}

shape! {
    pub struct LogLine { time: Timestamp, instance_id: String, stream: String, message: String }
}

shape! {
    pub struct GetLogsResponse { lines: Vec<LogLine> }
}

shape! {
    pub struct Instance {
        instance_id: String,
        revision_id: String,
        address: String,
        state: String,
        restarts: i64,
        started_at: Timestamp,
    }
}

shape! {
    pub struct ListInstancesResponse { instances: Vec<Instance> }
}

shape! {
    /// A managed runtime and its base image (`Runway.ListRuntimes`).
    pub struct RuntimeSummary {
        /// The name in `apprunner.yaml` (`python311`).
        runtime: String,
        /// The API's name (`PYTHON_311`).
        api_name: String,
        /// `Python 3.11`.
        language: String,
        retired: bool,
        /// The runtime builds fall back to when this one has no image.
        successor: String,
        /// The base image reference (may hold `{version}`).
        image: String,
        /// `set` (`runway runtimes set`), `configured` (the server's flags or file),
        /// `imported` (`runtimes/<name>` in runway's registry), `official`, or `none`.
        source: String,
        /// `present`, `missing`, or `not pulled` (an official image, pulled on first use).
        state: String,
        /// The versions present (tags of an imported repository).
        versions: Vec<String>,
        /// What to do about it, or where it was pulled from.
        detail: String,
    }
}

shape! {
    pub struct ListRuntimesResponse { runtimes: Vec<RuntimeSummary> }
}

shape! {
    /// `Runway.UpdateRuntime`: sets a runtime's base image; without `ImageReference`
    /// (or with an empty one) the runtime goes back to its imported or official image.
    pub struct UpdateRuntimeRequest { runtime: String, image_reference: String }
}

shape! {
    /// `Runway.CheckRuntime`: finds (and pulls, for an official image) the base image a
    /// build of `Runtime` at `RuntimeVersion` would use.
    pub struct CheckRuntimeRequest { runtime: String, runtime_version: String }
}

shape! {
    pub struct CheckRuntimeResponse {
        runtime: RuntimeSummary,
        /// The runtime whose image it is (the successor, for a retired one).
        built_with: String,
        /// The reference chosen, and its digest in runway's registry.
        image_reference: String,
        image_digest: String,
        /// The version the image holds, when known.
        version: String,
        /// Why another runtime's image is used, if it is.
        note: String,
    }
}

shape! {
    pub struct AssociateCustomDomainRequest {
        service_arn: String,
        domain_name: String,
        #[serde(rename = "EnableWWWSubdomain")]
        enable_www_subdomain: bool,
    }
}

shape! {
    pub struct DescribeCustomDomainsRequest { service_arn: String, next_token: String, max_results: i64 }
}

shape! {
    pub struct DisassociateCustomDomainRequest { service_arn: String, domain_name: String }
}

shape! {
    /// A record the user adds to their DNS so that runway can validate the domain.
    pub struct CertificateValidationRecord { name: String, r#type: String, value: String, status: String }
}

shape! {
    pub struct CustomDomain {
        domain_name: String,
        #[serde(rename = "EnableWWWSubdomain")]
        enable_www_subdomain: bool,
        certificate_validation_records: Vec<CertificateValidationRecord>,
        status: String,
    }
}

shape! {
    pub struct VpcDNSTarget { vpc_ingress_connection_arn: String, vpc_id: String, domain_name: String }
}

shape! {
    /// The answer of AssociateCustomDomain and DisassociateCustomDomain.
    pub struct CustomDomainResponse {
        #[serde(rename = "DNSTarget")]
        dns_target: String,
        service_arn: String,
        custom_domain: CustomDomain,
        #[serde(rename = "VpcDNSTargets")]
        vpc_dns_targets: Vec<VpcDNSTarget>,
    }
}

shape! {
    pub struct DescribeCustomDomainsResponse {
        #[serde(rename = "DNSTarget")]
        dns_target: String,
        service_arn: String,
        custom_domains: Vec<CustomDomain>,
        #[serde(rename = "VpcDNSTargets")]
        vpc_dns_targets: Vec<VpcDNSTarget>,
        next_token: String,
    }
}
