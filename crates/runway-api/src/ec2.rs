//! runway's EC2 subset: the private networks users own, in EC2's terms (VPCs, subnets,
//! security groups, App Runner's interface endpoints, the network interfaces runway holds
//! in subnets), so that `aws ec2 ...` and the SDKs manage them unchanged.
//!
//! EC2 speaks the query protocol: `POST /` with a form-encoded body (`Action=CreateVpc&
//! Version=2016-11-15&...`, lists as `Name.1`, `Name.2`, structures as `Name.1.Member`),
//! signed with SigV4 for the service `ec2`, answered in XML (`<CreateVpcResponse>`), and
//! errors as `<Response><Errors><Error><Code>`. Each action runs in one store
//! transaction, like App Runner's operations: a failed call changes nothing. Only records
//! change here; `runway-net` makes them real on the host.

mod endpoints;
mod groups;
mod params;
mod subnets;
mod vpcs;
mod xml;

use crate::ops::Ctx;
use crate::{Api, protocol};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use params::Params;
use runway_model::Timestamp;
use runway_store::{StoreError, Txn};
use std::time::Instant;
use xml::Xml;

/// The namespace of EC2's answers (the API version botocore speaks).
const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// An EC2 error answer: its code (`InvalidSubnetID.NotFound`) and a message naming what
/// is wrong.
#[derive(Debug)]
pub(crate) struct Ec2Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Ec2Error {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Ec2Error {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// `InvalidParameterValue`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Ec2Error::new("InvalidParameterValue", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Ec2Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: message.into(),
        }
    }
}

impl From<StoreError> for Ec2Error {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Ec2Error::internal(
            "runway's state store failed; the request changed nothing and may be retried",
        )
    }
}

type Result<T, E = Ec2Error> = std::result::Result<T, E>;

/// An action: reads its parameters, changes records, writes its answer's members.
type Action = fn(&mut dyn Txn, &Ctx<'_>, &Params, &mut Xml) -> Result<()>;

/// Every action, whether it changes anything, and its handler. The names are also the
/// metrics' operation labels.
const ACTIONS: &[(&str, bool, Action)] = &[
    ("CreateVpc", true, vpcs::create),
    ("DescribeVpcs", false, vpcs::describe),
    ("DeleteVpc", true, vpcs::delete),
    ("CreateSubnet", true, subnets::create),
    ("DescribeSubnets", false, subnets::describe),
    ("DeleteSubnet", true, subnets::delete),
    ("CreateSecurityGroup", true, groups::create),
    ("DescribeSecurityGroups", false, groups::describe),
    ("DeleteSecurityGroup", true, groups::delete),
    (
        "AuthorizeSecurityGroupEgress",
        true,
        groups::authorize_egress,
    ),
    (
        "AuthorizeSecurityGroupIngress",
        true,
        groups::authorize_ingress,
    ),
    ("RevokeSecurityGroupEgress", true, groups::revoke_egress),
    ("RevokeSecurityGroupIngress", true, groups::revoke_ingress),
    ("DescribeSecurityGroupRules", false, groups::describe_rules),
    ("CreateVpcEndpoint", true, endpoints::create),
    ("DescribeVpcEndpoints", false, endpoints::describe),
    ("DeleteVpcEndpoints", true, endpoints::delete),
    (
        "DescribeNetworkInterfaces",
        false,
        endpoints::describe_interfaces,
    ),
    ("CreateTags", true, vpcs::create_tags),
    ("DeleteTags", true, vpcs::delete_tags),
];

/// Whether a request is for the query protocol (a form, not App Runner's JSON).
pub(crate) fn is_query(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

/// Answers one EC2 request.
pub(crate) async fn handle(api: &Api, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut operation = "ec2";
    let (parts, body) = request.into_parts();
    let result: Result<String> = async {
        let body: Bytes = axum::body::to_bytes(body, protocol::MAX_BODY)
            .await
            .map_err(|_| {
                Ec2Error::invalid(format!(
                    "the request body is larger than {} bytes",
                    protocol::MAX_BODY
                ))
            })?;
        protocol::authenticate(api, &parts, body.clone(), "ec2")
            .await
            .map_err(|fault| Ec2Error {
                status: fault.status,
                code: "AuthFailure",
                message: fault.message,
            })?;
        let params = Params::parse(parts.uri.query(), &body)?;
        let action = params
            .get("Action")
            .ok_or_else(|| Ec2Error::new("MissingAction", "The request must contain the parameter Action"))?;
        let (name, mutating, handler) = ACTIONS
            .iter()
            .find(|(name, _, _)| *name == action)
            .copied()
            .ok_or_else(|| {
                Ec2Error::new(
                    "InvalidAction",
                    format!("The action {action} is not valid for this web service (runway implements {})", ACTIONS.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")),
                )
            })?;
        operation = name;
        let output = run(api, name, handler, params, request_id.clone()).await?;
        if mutating {
            api.changed();
        }
        Ok(output)
    }
    .await;
    let (status, outcome, body) = match result {
        Ok(body) => (StatusCode::OK, "ok", body),
        Err(e) => {
            let mut x = Xml::default();
            x.open("Response");
            x.open("Errors");
            x.open("Error");
            x.text("Code", e.code);
            x.text("Message", &e.message);
            x.close("Error");
            x.close("Errors");
            x.text("RequestID", &request_id);
            x.close("Response");
            (e.status, e.code, x.finish())
        }
    };
    api.inner
        .metrics
        .observe(operation, outcome, started.elapsed().as_secs_f64());
    tracing::info!(
        %request_id,
        operation,
        status = status.as_u16(),
        result = outcome,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "api"
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// Runs `handler` in one transaction on a blocking thread and wraps its answer in
/// `<{name}Response>`.
async fn run(
    api: &Api,
    name: &'static str,
    handler: Action,
    params: Params,
    request_id: String,
) -> Result<String> {
    let api = api.clone();
    tokio::task::spawn_blocking(move || {
        let inner = &api.inner;
        let mut tx = inner.store.begin()?;
        let ctx = Ctx {
            config: &inner.config,
            master: &inner.master,
            now: Timestamp::now(),
        };
        let mut x = Xml::default();
        x.open_ns(&format!("{name}Response"), XMLNS);
        x.text("requestId", &request_id);
        handler(&mut *tx, &ctx, &params, &mut x)?;
        x.close(&format!("{name}Response"));
        tx.commit()?;
        Ok(x.finish())
    })
    .await
    .unwrap_or_else(|e| Err(Ec2Error::internal(format!("the action failed to run: {e}"))))
}

/// Parses `body` as a request's form and reads it every way an action may (for the fuzz
/// target): nothing a client sends may make that panic.
pub(crate) fn read_all(body: &[u8]) {
    let Ok(p) = Params::parse(None, body) else {
        return;
    };
    for name in ["IpPermissions", "TagSpecification", "Filter", "SubnetId"] {
        for item in p.items(name) {
            let _ = item.items("IpRanges");
            let _ = item.list("Value");
            let _ = item.int("FromPort");
            let _ = params::tag_list(&item, "Tag");
        }
    }
    let _ = p.filters();
    let _ = p.tag_specifications("subnet");
    let _ = p.bool("PrivateDnsEnabled");
    let _ = params::page((0..10).collect::<Vec<u32>>(), &p);
}

/// The tag set of a resource, as `<tagSet>`.
fn tag_set(x: &mut Xml, tags: &[runway_model::shapes::Tag]) {
    x.list("tagSet", tags, |x, t| {
        x.text("key", t.key.as_deref().unwrap_or(""));
        x.text("value", t.value.as_deref().unwrap_or(""));
    });
}

/// The availability zone every subnet is in: this host.
fn zone(ctx: &Ctx<'_>) -> String {
    format!("{}a", ctx.config.region)
}

/// Whether the resource passes a `tag:<key>` or `tag-key` filter.
fn tags_match(tags: &[runway_model::shapes::Tag], filter: &str, values: &[String]) -> Option<bool> {
    if let Some(key) = filter.strip_prefix("tag:") {
        return Some(tags.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && values
                    .iter()
                    .any(|v| params::glob(v, t.value.as_deref().unwrap_or("")))
        }));
    }
    if filter == "tag-key" {
        return Some(tags.iter().any(|t| {
            values
                .iter()
                .any(|v| params::glob(v, t.key.as_deref().unwrap_or("")))
        }));
    }
    None
}

#[cfg(test)]
mod tests;
