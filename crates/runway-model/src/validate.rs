//! Validation of API input, with App Runner's rules and ranges, and the defaults App Runner
//! fills in. Every error is an `InvalidRequestException` whose message names the field
//! (by its API path, e.g. `HealthCheckConfiguration.Interval`) and says what is allowed.
//!
//! These checks are about form only; whether a referenced resource exists is the API's
//! business, since only it can look.

use crate::arn::{Arn, ResourceKind};
use crate::error::ApiError;
use crate::http;
use crate::reference::ImageReference;
use crate::shapes::*;

type Result<T> = std::result::Result<T, ApiError>;

/// App Runner's managed runtimes, plus the newer ones runway adds.
pub const RUNTIMES: &[&str] = &[
    "PYTHON_3",
    "PYTHON_311",
    "NODEJS_12",
    "NODEJS_14",
    "NODEJS_16",
    "NODEJS_18",
    "NODEJS_22",
    "CORRETTO_8",
    "CORRETTO_11",
    "CORRETTO_17",
    "CORRETTO_21",
    "GO_1",
    "DOTNET_6",
    "DOTNET_8",
    "PHP_81",
    "RUBY_31",
];

/// Connection providers: App Runner's, plus runway's any-git-host extensions.
pub const PROVIDER_TYPES: &[&str] = &["GITHUB", "BITBUCKET", "GITLAB", "GITEA", "GIT", "REGISTRY"];

/// The CPU and memory (in the API's numeric units) App Runner lets instances combine.
pub const CPU_MEMORY: &[(&str, &[&str])] = &[
    ("256", &["512", "1024"]),
    ("512", &["1024"]),
    ("1024", &["2048", "3072", "4096"]),
    ("2048", &["4096", "6144"]),
    ("4096", &["8192", "10240", "12288"]),
];

/// Environment variable names App Runner reserves for itself.
const RESERVED_ENV_PREFIX: &str = "AWSAPPRUNNER";
/// The most tags a resource may carry.
pub const MAX_TAGS: usize = 50;
/// The most instances a service may scale to.
pub const MAX_INSTANCES: i64 = 25;
const MAX_STRING: usize = 51200;

pub fn required<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| ApiError::invalid(format!("{field} is required")))
}

pub fn length(field: &str, s: &str, min: usize, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(format!(
            "{field} must be {min} to {max} characters long, got {n}"
        )));
    }
    Ok(())
}

pub fn range(field: &str, v: i64, min: i64, max: i64) -> Result<()> {
    if v < min || v > max {
        return Err(ApiError::invalid(format!(
            "{field} must be between {min} and {max}, got {v}"
        )));
    }
    Ok(())
}

pub fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<()> {
    if !allowed.contains(&v) {
        return Err(ApiError::invalid(format!(
            "{field} must be one of {}, got {v:?}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

fn single_line(field: &str, s: &str) -> Result<()> {
    length(field, s, 1, MAX_STRING)?;
    if s.contains(['\n', '\r']) {
        return Err(ApiError::invalid(format!("{field} must be a single line")));
    }
    Ok(())
}

/// A resource name: `[A-Za-z0-9][A-Za-z0-9_-]{min-1,max-1}`.
pub fn resource_name(field: &str, v: &Option<String>, min: usize, max: usize) -> Result<String> {
    let name = required(field, v)?;
    length(field, name, min, max)?;
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::invalid(format!(
            "{field} must start with a letter or digit and contain only letters, digits, '-' and '_', got {name:?}"
        )));
    }
    Ok(name.clone())
}

/// An optional name to filter a listing by.
pub fn name_filter(field: &str, v: &Option<String>, max: usize) -> Result<Option<String>> {
    v.as_ref()
        .map(|_| resource_name(field, v, 4, max))
        .transpose()
}

pub fn service_name(v: &Option<String>) -> Result<String> {
    resource_name("ServiceName", v, 4, 40)
}

/// A required ARN of the given kind.
pub fn arn(field: &str, v: &Option<String>, kind: ResourceKind) -> Result<Arn> {
    let s = required(field, v)?;
    parse_arn(field, s, kind)
}

pub fn parse_arn(field: &str, s: &str, kind: ResourceKind) -> Result<Arn> {
    let arn = Arn::parse(s).ok_or_else(|| {
        ApiError::invalid(format!("{field} is not a valid App Runner ARN: {s:?}"))
    })?;
    if arn.kind != kind {
        return Err(ApiError::invalid(format!(
            "{field} must be the ARN of a {}, got {s:?}",
            kind.segment()
        )));
    }
    Ok(arn)
}

/// MaxResults: absent means `max`.
pub fn max_results(v: Option<i64>, max: i64) -> Result<usize> {
    let n = v.unwrap_or(max);
    range("MaxResults", n, 1, max)?;
    Ok(n as usize)
}

pub fn tags(tags: &Option<Vec<Tag>>) -> Result<Vec<Tag>> {
    let Some(tags) = tags else {
        return Ok(Vec::new());
    };
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "Tags may hold at most {MAX_TAGS} tags, got {}",
            tags.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let key = tag_key(
            &format!("Tags[{i}].Key"),
            required(&format!("Tags[{i}].Key"), &tag.key)?,
        )?;
        length(
            &format!("Tags[{i}].Value"),
            tag.value.as_deref().unwrap_or(""),
            0,
            256,
        )?;
        if !seen.insert(key) {
            return Err(ApiError::invalid(format!(
                "Tags has the key {key:?} more than once"
            )));
        }
    }
    Ok(tags
        .iter()
        .map(|t| Tag {
            key: t.key.clone(),
            value: Some(t.value.clone().unwrap_or_default()),
        })
        .collect())
}

pub fn tag_key<'a>(field: &str, key: &'a str) -> Result<&'a str> {
    length(field, key, 1, 128)?;
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::invalid(format!(
            "{field} must not start with the reserved prefix \"aws:\", got {key:?}"
        )));
    }
    Ok(key)
}

fn env_map(field: &str, map: &StringMap, max_len: usize) -> Result<()> {
    for (k, v) in map {
        let key_field = format!("{field} name {k:?}");
        length(&key_field, k, 1, max_len)?;
        if k.contains(['=', '\0']) {
            return Err(ApiError::invalid(format!(
                "{key_field} must not contain '=' or NUL"
            )));
        }
        if k.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) {
            return Err(ApiError::invalid(format!(
                "{key_field} uses the reserved prefix {RESERVED_ENV_PREFIX}"
            )));
        }
        length(&format!("{field}[{k:?}]"), v, 0, max_len)?;
        if v.contains('\0') {
            return Err(ApiError::invalid(format!(
                "{field}[{k:?}] must not contain NUL"
            )));
        }
    }
    Ok(())
}

fn secrets_map(field: &str, map: &StringMap) -> Result<()> {
    env_map(field, map, 2048)?;
    for (k, v) in map {
        length(&format!("{field}[{k:?}]"), v, 1, 2048)?;
    }
    Ok(())
}

fn port(field: &str, v: &Option<String>) -> Result<String> {
    let p = v.clone().unwrap_or_else(|| "8080".to_string());
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(ApiError::invalid(format!(
            "{field} must be a port number from 1 to 65535, got {p:?}"
        ))),
    }
}

/// An IAM role ARN (`arn:aws:iam::<account>:role/<name>`).
fn role_arn(field: &str, s: &str) -> Result<()> {
    length(field, s, 29, 1024)?;
    let ok = s.strip_prefix("arn:").and_then(|rest| {
        let (partition, rest) = rest.split_once(":iam::")?;
        let (account, role) = rest.split_once(':')?;
        let role = role
            .strip_prefix("role/service-role/")
            .or_else(|| role.strip_prefix("role/"))?;
        let partition_ok =
            ["aws", "aws-us-gov", "aws-cn", "aws-iso", "aws-iso-b"].contains(&partition);
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let role_ok = !role.is_empty()
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b));
        Some(partition_ok && account_ok && role_ok)
    });
    if ok != Some(true) {
        return Err(ApiError::invalid(format!(
            "{field} is not a valid IAM role ARN: {s:?}"
        )));
    }
    Ok(())
}

/// Validates a SourceConfiguration and fills in its defaults.
pub fn source_configuration(field: &str, src: &SourceConfiguration) -> Result<SourceConfiguration> {
    let mut out = src.clone();
    match (&src.code_repository, &src.image_repository) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(format!(
                "{field} must have either CodeRepository or ImageRepository, not both"
            )));
        }
        (None, None) => {
            return Err(ApiError::invalid(format!(
                "{field} must have either CodeRepository or ImageRepository"
            )));
        }
        (Some(code), None) => {
            out.code_repository = Some(code_repository(&format!("{field}.CodeRepository"), code)?);
        }
        (None, Some(image)) => {
            out.image_repository = Some(image_repository(
                &format!("{field}.ImageRepository"),
                image,
            )?);
        }
    }
    if let Some(auth) = &src.authentication_configuration {
        let f = format!("{field}.AuthenticationConfiguration");
        if let Some(conn) = &auth.connection_arn {
            parse_arn(
                &format!("{f}.ConnectionArn"),
                conn,
                ResourceKind::Connection,
            )?;
        }
        if let Some(role) = &auth.access_role_arn {
            role_arn(&format!("{f}.AccessRoleArn"), role)?;
        }
    }
    let public_image = src
        .image_repository
        .as_ref()
        .is_some_and(|i| i.image_repository_type.as_deref() == Some("ECR_PUBLIC"));
    if src.auto_deployments_enabled.is_none() {
        out.auto_deployments_enabled = Some(!public_image);
    }
    Ok(out)
}

fn image_repository(field: &str, image: &ImageRepository) -> Result<ImageRepository> {
    let id_field = format!("{field}.ImageIdentifier");
    let id = required(&id_field, &image.image_identifier)?;
    length(&id_field, id, 1, 1024)?;
    ImageReference::parse(id).map_err(|e| {
        ApiError::invalid(format!("{id_field} is not a valid image reference: {e}"))
    })?;
    let type_field = format!("{field}.ImageRepositoryType");
    one_of(
        &type_field,
        required(&type_field, &image.image_repository_type)?,
        &["ECR", "ECR_PUBLIC"],
    )?;
    let cfg_field = format!("{field}.ImageConfiguration");
    let cfg = image.image_configuration.clone().unwrap_or_default();
    if let Some(cmd) = &cfg.start_command {
        single_line(&format!("{cfg_field}.StartCommand"), cmd)?;
    }
    if let Some(env) = &cfg.runtime_environment_variables {
        env_map(
            &format!("{cfg_field}.RuntimeEnvironmentVariables"),
            env,
            MAX_STRING,
        )?;
    }
    if let Some(secrets) = &cfg.runtime_environment_secrets {
        secrets_map(&format!("{cfg_field}.RuntimeEnvironmentSecrets"), secrets)?;
    }
    Ok(ImageRepository {
        image_configuration: Some(ImageConfiguration {
            port: Some(port(&format!("{cfg_field}.Port"), &cfg.port)?),
            ..cfg
        }),
        ..image.clone()
    })
}

fn code_repository(field: &str, code: &CodeRepository) -> Result<CodeRepository> {
    let url_field = format!("{field}.RepositoryUrl");
    repository_url(&url_field, required(&url_field, &code.repository_url)?)?;
    let ver_field = format!("{field}.SourceCodeVersion");
    let version = required(&ver_field, &code.source_code_version)?;
    one_of(
        &format!("{ver_field}.Type"),
        required(&format!("{ver_field}.Type"), &version.kind)?,
        &["BRANCH"],
    )?;
    branch_name(
        &format!("{ver_field}.Value"),
        required(&format!("{ver_field}.Value"), &version.value)?,
    )?;
    if let Some(dir) = &code.source_directory {
        source_directory(&format!("{field}.SourceDirectory"), dir)?;
    }
    let cfg_field = format!("{field}.CodeConfiguration");
    let cfg = code
        .code_configuration
        .clone()
        .unwrap_or(CodeConfiguration {
            configuration_source: Some("REPOSITORY".into()),
            code_configuration_values: None,
        });
    let source_field = format!("{cfg_field}.ConfigurationSource");
    let source = required(&source_field, &cfg.configuration_source)?;
    one_of(&source_field, source, &["REPOSITORY", "API"])?;
    let values_field = format!("{cfg_field}.CodeConfigurationValues");
    let values = match (source.as_str(), &cfg.code_configuration_values) {
        ("API", None) => {
            return Err(ApiError::invalid(format!(
                "{values_field} is required when ConfigurationSource is API"
            )));
        }
        (_, None) => None,
        (_, Some(v)) => {
            let rt_field = format!("{values_field}.Runtime");
            one_of(&rt_field, required(&rt_field, &v.runtime)?, RUNTIMES)?;
            if let Some(cmd) = &v.build_command {
                single_line(&format!("{values_field}.BuildCommand"), cmd)?;
            }
            if let Some(cmd) = &v.start_command {
                single_line(&format!("{values_field}.StartCommand"), cmd)?;
            }
            if let Some(env) = &v.runtime_environment_variables {
                env_map(
                    &format!("{values_field}.RuntimeEnvironmentVariables"),
                    env,
                    MAX_STRING,
                )?;
            }
            if let Some(secrets) = &v.runtime_environment_secrets {
                secrets_map(
                    &format!("{values_field}.RuntimeEnvironmentSecrets"),
                    secrets,
                )?;
            }
            Some(CodeConfigurationValues {
                port: Some(port(&format!("{values_field}.Port"), &v.port)?),
                ..v.clone()
            })
        }
    };
    Ok(CodeRepository {
        code_configuration: Some(CodeConfiguration {
            configuration_source: cfg.configuration_source,
            code_configuration_values: values,
        }),
        ..code.clone()
    })
}

/// A git URL: https, http, ssh, git or file, or scp-like `user@host:path`; or a source
/// uploaded to runway's registry, `upload://sha256:<64 hex digits>` (runway's extension,
/// what `runway deploy --source` sends).
fn repository_url(field: &str, url: &str) -> Result<()> {
    length(field, url, 1, 2048)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain spaces or control characters"
        )));
    }
    if let Some(digest) = url.strip_prefix("upload://") {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ApiError::invalid(format!(
                "{field}: an uploaded source is upload://sha256:<64 lowercase hex digits>, got {url:?}"
            )));
        }
        return Ok(());
    }
    let ok = match url.split_once("://") {
        Some((scheme, rest)) => {
            ["https", "http", "ssh", "git", "file"].contains(&scheme) && rest.len() > 1
        }
        None => url.split_once(':').is_some_and(|(host, path)| {
            host.contains('@') && !host.starts_with('@') && !path.is_empty()
        }),
    };
    if !ok {
        return Err(ApiError::invalid(format!(
            "{field} must be an https://, http://, ssh://, git:// or file:// URL or user@host:path, got {url:?}"
        )));
    }
    Ok(())
}

/// A branch name as git allows it.
fn branch_name(field: &str, name: &str) -> Result<()> {
    length(field, name, 1, 255)?;
    let bad = name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        return Err(ApiError::invalid(format!(
            "{field} is not a valid git branch name: {name:?}"
        )));
    }
    Ok(())
}

/// A directory inside the repository: relative, with no `..`.
fn source_directory(field: &str, dir: &str) -> Result<()> {
    length(field, dir, 1, 4096)?;
    if dir.contains('\0') || dir.split('/').any(|c| c == "..") {
        return Err(ApiError::invalid(format!(
            "{field} must be a directory inside the repository (no '..' or NUL), got {dir:?}"
        )));
    }
    Ok(())
}

/// Normalises `1 vCPU` to `1024` and `2 GB` to `2048`, as App Runner answers them.
fn normalise_unit(field: &str, v: &str, units: &[(&str, &str)], suffix: &str) -> Result<String> {
    for (short, numeric) in units {
        if v == *numeric || v.strip_suffix(suffix).is_some_and(|n| n == *short) {
            return Ok(numeric.to_string());
        }
    }
    let allowed: Vec<String> = units
        .iter()
        .flat_map(|(s, n)| [n.to_string(), format!("{s}{suffix}")])
        .collect();
    Err(ApiError::invalid(format!(
        "{field} must be one of {}, got {v:?}",
        allowed.join(", ")
    )))
}

/// Validates an InstanceConfiguration, normalises its units and fills in the defaults
/// (1 vCPU, 2 GB).
pub fn instance_configuration(
    cfg: Option<&InstanceConfiguration>,
) -> Result<InstanceConfiguration> {
    let cfg = cfg.cloned().unwrap_or_default();
    let cpu = normalise_unit(
        "InstanceConfiguration.Cpu",
        cfg.cpu.as_deref().unwrap_or("1024"),
        &[
            ("0.25", "256"),
            ("0.5", "512"),
            ("1", "1024"),
            ("2", "2048"),
            ("4", "4096"),
        ],
        " vCPU",
    )?;
    let memory = normalise_unit(
        "InstanceConfiguration.Memory",
        cfg.memory.as_deref().unwrap_or("2048"),
        &[
            ("0.5", "512"),
            ("1", "1024"),
            ("2", "2048"),
            ("3", "3072"),
            ("4", "4096"),
            ("6", "6144"),
            ("8", "8192"),
            ("10", "10240"),
            ("12", "12288"),
        ],
        " GB",
    )?;
    let allowed = CPU_MEMORY
        .iter()
        .find(|(c, _)| *c == cpu)
        .map(|(_, m)| *m)
        .unwrap_or_default();
    if !allowed.contains(&memory.as_str()) {
        return Err(ApiError::invalid(format!(
            "InstanceConfiguration: Cpu {cpu} allows Memory {}, got {memory}",
            allowed.join(" or ")
        )));
    }
    if let Some(role) = &cfg.instance_role_arn {
        role_arn("InstanceConfiguration.InstanceRoleArn", role)?;
    }
    Ok(InstanceConfiguration {
        cpu: Some(cpu),
        memory: Some(memory),
        instance_role_arn: cfg.instance_role_arn,
    })
}

/// Validates a HealthCheckConfiguration and fills in App Runner's defaults
/// (TCP, `/`, every 5 s, 2 s timeout, 1 to pass, 5 to fail).
pub fn health_check(cfg: Option<&HealthCheckConfiguration>) -> Result<HealthCheckConfiguration> {
    let cfg = cfg.cloned().unwrap_or_default();
    let f = "HealthCheckConfiguration";
    let protocol = cfg.protocol.unwrap_or_else(|| "TCP".into());
    one_of(&format!("{f}.Protocol"), &protocol, &["TCP", "HTTP"])?;
    let path = cfg.path.unwrap_or_else(|| "/".into());
    length(&format!("{f}.Path"), &path, 1, 2048)?;
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid(format!(
            "{f}.Path must start with '/' and contain no spaces, got {path:?}"
        )));
    }
    let num = |name: &str, v: Option<i64>, default: i64| -> Result<i64> {
        let v = v.unwrap_or(default);
        range(&format!("{f}.{name}"), v, 1, 20)?;
        Ok(v)
    };
    Ok(HealthCheckConfiguration {
        protocol: Some(protocol),
        path: Some(path),
        interval: Some(num("Interval", cfg.interval, 5)?),
        timeout: Some(num("Timeout", cfg.timeout, 2)?),
        healthy_threshold: Some(num("HealthyThreshold", cfg.healthy_threshold, 1)?),
        unhealthy_threshold: Some(num("UnhealthyThreshold", cfg.unhealthy_threshold, 5)?),
    })
}

/// Validates a NetworkConfiguration and fills in the defaults (DEFAULT egress, public
/// ingress, IPv4). VPC egress needs a VPC connector, which the API checks.
pub fn network_configuration(cfg: Option<&NetworkConfiguration>) -> Result<NetworkConfiguration> {
    let cfg = cfg.cloned().unwrap_or_default();
    let f = "NetworkConfiguration";
    let egress = cfg.egress_configuration.unwrap_or_default();
    let egress_type = egress.egress_type.unwrap_or_else(|| "DEFAULT".into());
    one_of(
        &format!("{f}.EgressConfiguration.EgressType"),
        &egress_type,
        &["DEFAULT", "VPC"],
    )?;
    let connector_field = format!("{f}.EgressConfiguration.VpcConnectorArn");
    match (egress_type.as_str(), &egress.vpc_connector_arn) {
        ("VPC", None) => {
            return Err(ApiError::invalid(format!(
                "{connector_field} is required when EgressType is VPC"
            )));
        }
        ("DEFAULT", Some(_)) => {
            return Err(ApiError::invalid(format!(
                "{connector_field} is allowed only when EgressType is VPC"
            )));
        }
        (_, Some(arn)) => {
            parse_arn(&connector_field, arn, ResourceKind::VpcConnector)?;
        }
        _ => {}
    }
    let ip = cfg.ip_address_type.unwrap_or_else(|| "IPV4".into());
    one_of(&format!("{f}.IpAddressType"), &ip, &["IPV4", "DUAL_STACK"])?;
    let ingress = cfg.ingress_configuration.unwrap_or_default();
    Ok(NetworkConfiguration {
        egress_configuration: Some(EgressConfiguration {
            egress_type: Some(egress_type),
            vpc_connector_arn: egress.vpc_connector_arn,
        }),
        ingress_configuration: Some(IngressConfiguration {
            is_publicly_accessible: Some(ingress.is_publicly_accessible.unwrap_or(true)),
        }),
        ip_address_type: Some(ip),
    })
}

/// A KMS key ARN (`arn:aws:kms:<region>:<account>:key/<uuid>`).
pub fn encryption_configuration(cfg: &EncryptionConfiguration) -> Result<EncryptionConfiguration> {
    let field = "EncryptionConfiguration.KmsKey";
    let key = required(field, &cfg.kms_key)?;
    let ok = key.strip_prefix("arn:").and_then(|rest| {
        let mut parts = rest.splitn(5, ':');
        let (partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let id = resource.strip_prefix("key/")?;
        Some(
            (partition == "aws" || partition.starts_with("aws-"))
                && service == "kms"
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && crate::ids::is_uuid(id),
        )
    });
    if ok != Some(true) {
        return Err(ApiError::invalid(format!(
            "{field} is not a valid KMS key ARN: {key:?}"
        )));
    }
    Ok(cfg.clone())
}

/// The service's observability settings; the API checks that the configuration exists.
pub fn service_observability(
    cfg: &ServiceObservabilityConfiguration,
) -> Result<ServiceObservabilityConfiguration> {
    let f = "ObservabilityConfiguration";
    let enabled = *required(
        &format!("{f}.ObservabilityEnabled"),
        &cfg.observability_enabled,
    )?;
    let arn_field = format!("{f}.ObservabilityConfigurationArn");
    match (&cfg.observability_configuration_arn, enabled) {
        (None, true) => Err(ApiError::invalid(format!(
            "{arn_field} is required when ObservabilityEnabled is true"
        ))),
        (Some(arn), true) => {
            parse_arn(&arn_field, arn, ResourceKind::ObservabilityConfiguration)?;
            Ok(cfg.clone())
        }
        (Some(_), false) => Err(ApiError::invalid(format!(
            "{arn_field} is allowed only when ObservabilityEnabled is true"
        ))),
        (None, false) => Ok(cfg.clone()),
    }
}

/// The limits of an auto scaling configuration, with defaults (100, 1, 25). MinSize 0
/// (scale to zero) is a runway extension.
pub fn auto_scaling(req: &CreateAutoScalingConfigurationRequest) -> Result<(i64, i64, i64)> {
    let max_concurrency = req.max_concurrency.unwrap_or(100);
    range("MaxConcurrency", max_concurrency, 1, 200)?;
    let min_size = req.min_size.unwrap_or(1);
    range("MinSize", min_size, 0, MAX_INSTANCES)?;
    let max_size = req.max_size.unwrap_or(MAX_INSTANCES);
    range("MaxSize", max_size, 1, MAX_INSTANCES)?;
    if min_size > max_size {
        return Err(ApiError::invalid(format!(
            "MinSize ({min_size}) must not be greater than MaxSize ({max_size})"
        )));
    }
    Ok((max_concurrency, min_size, max_size))
}

/// Validates runway's HttpConfiguration (see [`crate::http`]): every member is
/// optional; those given must be within their bounds.
pub fn http_configuration(field: &str, cfg: &HttpConfiguration) -> Result<HttpConfiguration> {
    let check = |member: &str, checked: std::result::Result<(), String>| {
        checked.map_err(|m| ApiError::invalid(format!("{field}.{member} {m}")))
    };
    if let Some(p) = &cfg.instance_protocol {
        one_of(
            &format!("{field}.InstanceProtocol"),
            p,
            http::InstanceProtocol::NAMES,
        )?;
    }
    if let Some(s) = cfg.request_timeout_seconds {
        check("RequestTimeoutSeconds", http::check_request_timeout(s))?;
    }
    if let Some(s) = cfg.idle_timeout_seconds {
        check("IdleTimeoutSeconds", http::check_idle_timeout(s))?;
    }
    if let Some(b) = cfg.max_request_body_bytes {
        check("MaxRequestBodyBytes", http::check_max_request_body(b))?;
    }
    Ok(cfg.clone())
}

/// Overlays the members an UpdateService gives onto the current SourceConfiguration.
/// A repository of the other kind (image for code, or code for image) is refused.
pub fn merge_source(
    current: &SourceConfiguration,
    update: &SourceConfiguration,
) -> Result<SourceConfiguration> {
    let switching = (update.image_repository.is_some() && current.code_repository.is_some())
        || (update.code_repository.is_some() && current.image_repository.is_some());
    if switching {
        return Err(ApiError::invalid(
            "SourceConfiguration: a service cannot switch between CodeRepository and ImageRepository",
        ));
    }
    Ok(SourceConfiguration {
        code_repository: update
            .code_repository
            .clone()
            .or_else(|| current.code_repository.clone()),
        image_repository: update
            .image_repository
            .clone()
            .or_else(|| current.image_repository.clone()),
        auto_deployments_enabled: update
            .auto_deployments_enabled
            .or(current.auto_deployments_enabled),
        authentication_configuration: update
            .authentication_configuration
            .clone()
            .or_else(|| current.authentication_configuration.clone()),
    })
}

/// Overlays the members given onto the current InstanceConfiguration.
pub fn merge_instance(
    current: &InstanceConfiguration,
    update: &InstanceConfiguration,
) -> InstanceConfiguration {
    InstanceConfiguration {
        cpu: update.cpu.clone().or_else(|| current.cpu.clone()),
        memory: update.memory.clone().or_else(|| current.memory.clone()),
        instance_role_arn: update
            .instance_role_arn
            .clone()
            .or_else(|| current.instance_role_arn.clone()),
    }
}

/// Overlays the members given onto the current HealthCheckConfiguration.
pub fn merge_health(
    current: &HealthCheckConfiguration,
    update: &HealthCheckConfiguration,
) -> HealthCheckConfiguration {
    HealthCheckConfiguration {
        protocol: update.protocol.clone().or_else(|| current.protocol.clone()),
        path: update.path.clone().or_else(|| current.path.clone()),
        interval: update.interval.or(current.interval),
        timeout: update.timeout.or(current.timeout),
        healthy_threshold: update.healthy_threshold.or(current.healthy_threshold),
        unhealthy_threshold: update.unhealthy_threshold.or(current.unhealthy_threshold),
    }
}

/// The host name of a service's default URL: `<name>-<short-id>.<base-domain>`, with the
/// name made a valid lowercase DNS label.
pub fn service_host(name: &str, id: &str, base_domain: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let short: String = id.chars().take(8).collect();
    format!("{label}-{short}.{base_domain}")
}

#[cfg(test)]
mod tests;
