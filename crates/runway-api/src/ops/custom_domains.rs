//! AssociateCustomDomain, DescribeCustomDomains and DisassociateCustomDomain.
//!
//! An association is recorded here with its validation records (CNAME records the user
//! adds so that `_acme-challenge.<name>` points into runway's validation zone) and status
//! CREATING; the certificate issuer (runway-certs) takes it from there, and the
//! controller routes the domain once it is ACTIVE. Disassociating marks it DELETING for
//! the issuer to remove its certificate and record.

use super::shared::{load_service, require_changeable};
use super::{Ctx, OpResult, page};
use runway_model::domains::{self, DomainRecord, DomainStatus, MAX_DOMAINS_PER_SERVICE};
use runway_model::records::{EventRecord, ServiceRecord};
use runway_model::shapes::*;
use runway_model::{ApiError, ids};
use runway_store::{Query, Txn, Typed};

fn wire(record: &DomainRecord) -> CustomDomain {
    CustomDomain {
        domain_name: Some(record.domain.clone()),
        enable_www_subdomain: Some(record.www),
        certificate_validation_records: Some(
            record
                .validation_records
                .iter()
                .map(|v| CertificateValidationRecord {
                    name: Some(v.name.clone()),
                    r#type: Some("CNAME".into()),
                    value: Some(v.value.clone()),
                    status: Some(v.status.to_string()),
                })
                .collect(),
        ),
        status: Some(record.status.to_string()),
    }
}

fn answer(service: &ServiceRecord, record: &DomainRecord) -> CustomDomainResponse {
    CustomDomainResponse {
        dns_target: Some(service.url.clone()),
        service_arn: Some(service.arn.clone()),
        custom_domain: Some(wire(record)),
        vpc_dns_targets: Some(Vec::new()),
    }
}

/// The domains associated with `service_arn`, in association order.
fn of_service(tx: &dyn Txn, service_arn: &str) -> OpResult<Vec<(i64, DomainRecord)>> {
    let query = Query {
        parent: Some(service_arn.to_string()),
        ..Default::default()
    };
    Ok(tx.load_all::<DomainRecord>(&query)?)
}

fn event(tx: &mut dyn Txn, ctx: &Ctx<'_>, service_arn: &str, message: String) -> OpResult<()> {
    tx.create(&EventRecord {
        id: ids::new_operation_id(),
        service_arn: service_arn.to_string(),
        time: ctx.now,
        operation_id: None,
        message,
    })?;
    Ok(())
}

pub(crate) fn associate(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: AssociateCustomDomainRequest,
) -> OpResult<CustomDomainResponse> {
    // AssociateCustomDomain answers InvalidRequestException for a service that does not
    // exist: ResourceNotFoundException is not among its errors in App Runner's model.
    let service = load_service(&*tx, &req.service_arn).map_err(|e| match e {
        super::OpError::Api(e) => ApiError::invalid(format!("ServiceArn: {}", e.message)).into(),
        other => other,
    })?;
    require_changeable(&*tx, &service)?;
    let field = "DomainName";
    let given = req
        .domain_name
        .as_deref()
        .ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    let domain = domains::domain_name(field, given, &ctx.config.base_domain)?;
    let wildcard = domain.starts_with("*.");
    let www = match req.enable_www_subdomain {
        Some(true) if wildcard => {
            return Err(ApiError::invalid(format!(
                "EnableWWWSubdomain: {domain} is a wildcard, which already covers www; \
                 set EnableWWWSubdomain to false"
            ))
            .into());
        }
        Some(www) => www,
        // App Runner's default is true, except that a wildcard cannot have it.
        None => !wildcard,
    };
    let mut names = vec![domain.clone()];
    if www {
        names.push(format!("www.{domain}"));
    }
    let mut mine = 0;
    for (_, other) in tx.load_all::<DomainRecord>(&Query::default())? {
        let Some(owner) = other.service_arn.as_deref() else {
            continue;
        };
        if owner == service.arn {
            mine += 1;
        }
        let Some(taken) = other.names().into_iter().find(|n| names.contains(n)) else {
            continue;
        };
        if other.status == DomainStatus::Deleting {
            return Err(ApiError::invalid_state(format!(
                "{field}: {taken} is being disassociated from service {owner}; \
                 associate it again once that is done"
            ))
            .into());
        }
        let whose = if owner == service.arn {
            "this service".to_string()
        } else {
            format!("service {owner}")
        };
        return Err(ApiError::invalid(format!(
            "{field}: {taken} is already associated with {whose}"
        ))
        .into());
    }
    if mine >= MAX_DOMAINS_PER_SERVICE {
        return Err(ApiError::invalid(format!(
            "{field}: service {} already has {mine} custom domains, the quota of \
             {MAX_DOMAINS_PER_SERVICE} per service; disassociate one first",
            service.arn
        ))
        .into());
    }
    let record = DomainRecord {
        validation_records: domains::validation_records(&names, &ctx.config.base_domain, || {
            *uuid::Uuid::new_v4().as_bytes()
        }),
        domain,
        service_arn: Some(service.arn.clone()),
        www,
        status: DomainStatus::Creating,
        created_at: ctx.now,
        updated_at: ctx.now,
        message: None,
        certificate: None,
        order: None,
        failures: 0,
        retry_at: None,
        failed_kind: None,
    };
    tx.create(&record)?;
    event(
        tx,
        ctx,
        &service.arn,
        format!(
            "Custom domain {} associated: add its validation records and a CNAME to {} \
             to your DNS",
            record.domain, service.url
        ),
    )?;
    Ok(answer(&service, &record))
}

/// DescribeCustomDomains' largest page.
const MAX_PAGE: i64 = 5;

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: DescribeCustomDomainsRequest,
) -> OpResult<DescribeCustomDomainsResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let all = of_service(&*tx, &service.arn)?;
    // Without MaxResults, every domain in one answer (App Runner's documented behaviour).
    let max = match req.max_results {
        None => all.len().max(1),
        Some(_) => runway_model::validate::max_results(req.max_results, MAX_PAGE)?,
    };
    let (items, next) = page(all, req.next_token.as_deref(), max)?;
    Ok(DescribeCustomDomainsResponse {
        dns_target: Some(service.url.clone()),
        service_arn: Some(service.arn.clone()),
        custom_domains: Some(items.iter().map(wire).collect()),
        vpc_dns_targets: Some(Vec::new()),
        next_token: next,
    })
}

pub(crate) fn disassociate(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: DisassociateCustomDomainRequest,
) -> OpResult<CustomDomainResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let field = "DomainName";
    let given = req
        .domain_name
        .as_deref()
        .ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    if given.is_empty()
        || given.len() > 255
        || !given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'.' || b == b'-')
    {
        return Err(ApiError::invalid(format!("{field}: {given:?} is not a domain name")).into());
    }
    let domain = given.to_ascii_lowercase();
    let mut record = tx
        .load::<DomainRecord>(&domain)?
        .filter(|r| r.service_arn.as_deref() == Some(service.arn.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Custom domain {domain} is not associated with service {}",
                service.arn
            ))
        })?;
    if record.status == DomainStatus::Deleting {
        return Err(ApiError::invalid_state(format!(
            "Custom domain {domain} is already being disassociated"
        ))
        .into());
    }
    record.status = DomainStatus::Deleting;
    record.updated_at = ctx.now;
    tx.save(&record)?;
    event(
        tx,
        ctx,
        &service.arn,
        format!("Custom domain {domain} is being disassociated"),
    )?;
    Ok(answer(&service, &record))
}
