//! The certificate issuer (ACM's job): it takes every domain the store holds from
//! association to a served certificate, renews it, and removes it when disassociated.
//!
//! Each domain is a resumable state machine in the store (as the controller's
//! deployments are): an ACME order's URL is recorded as soon as the CA created it, the
//! challenges runway answers before it tells the CA to check them, and the certificate's
//! private key (sealed) before the CSR is sent. Killed at any point, the issuer resumes
//! the same order after a restart: it republishes the answers, asks the CA where the
//! order stands, and carries on. The CA is asked only once the DNS records a challenge
//! needs are visible to runway's own lookups, and failed attempts back off, so the CA's
//! rate limits are respected.

use crate::acme::{self, AcmeConfig};
use crate::challenges::{Challenges, OrderAnswers, dns_value};
use crate::lookup::Lookup;
use crate::metrics::CertMetrics;
use crate::{CertStore, CertsError, Result};
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeStatus, ChallengeType,
    Identifier, NewOrder, Order, OrderStatus,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use runway_model::Timestamp;
use runway_model::domains::{
    ChallengeKind, DomainRecord, DomainStatus, IssuedCertificate, OrderProgress, OrderStep,
    PendingChallenge, ValidationStatus, challenge_name,
};
use runway_model::records::{EventRecord, ServiceRecord};
use runway_secrets::MasterKey;
use runway_store::{Query, Store, Typed};
use runway_telemetry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a new domain may wait for its first certificate before it fails (ACM's 72
/// hours for DNS validation).
const VALIDATION_DEADLINE: Duration = Duration::from_secs(72 * 3600);
/// The longest wait between attempts that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The least wait after the CA said runway is over a rate limit.
const RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(3600);
/// How often an order in flight is polled.
const ORDER_POLL: Duration = Duration::from_secs(1);
/// How long one call to the CA may take.
const CA_TIMEOUT: Duration = Duration::from_secs(60);

/// Takes domains from association to a served, renewed certificate; cheap to clone.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("directory", &self.inner.config.directory_url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: AcmeConfig,
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    certs: CertStore,
    challenges: Arc<Challenges>,
    lookup: Lookup,
    metrics: CertMetrics,
    base_domain: String,
    account: tokio::sync::Mutex<Option<Account>>,
    wake: Notify,
    /// When each waiting domain's DNS records were last looked up.
    checked: Mutex<HashMap<String, Instant>>,
    on_change: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Why an attempt stopped: the CA (or the network) failed it, or the domain changed
/// under it (disassociated) and the work is dropped.
#[derive(Debug)]
enum Stop {
    Failed {
        reason: String,
        /// The CA's problem type, when it gave one.
        problem: Option<String>,
        /// The identifiers whose validation failed.
        invalid: Vec<String>,
    },
    Gone,
    Fault(CertsError),
}

impl From<CertsError> for Stop {
    fn from(e: CertsError) -> Self {
        Stop::Fault(e)
    }
}

impl From<runway_store::StoreError> for Stop {
    fn from(e: runway_store::StoreError) -> Self {
        Stop::Fault(e.into())
    }
}

fn ca_failure(context: &str, e: instant_acme::Error) -> Stop {
    let problem = match &e {
        instant_acme::Error::Api(p) => p.r#type.clone(),
        _ => None,
    };
    Stop::Failed {
        reason: format!("{context}: {e}"),
        problem,
        invalid: Vec::new(),
    }
}

async fn with_timeout<T>(
    context: &str,
    call: impl Future<Output = std::result::Result<T, instant_acme::Error>>,
) -> std::result::Result<T, Stop> {
    match tokio::time::timeout(CA_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| ca_failure(context, e)),
        Err(_) => Err(Stop::Failed {
            reason: format!("{context}: the ACME CA did not answer within {CA_TIMEOUT:?}"),
            problem: None,
            invalid: Vec::new(),
        }),
    }
}

fn kind_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

fn after(now: Timestamp, wait: Duration) -> Timestamp {
    Timestamp::from_millis(now.millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

/// The answers runway serves for `challenges`.
fn answers(challenges: &[PendingChallenge]) -> OrderAnswers {
    let mut out = OrderAnswers::default();
    for c in challenges {
        match c.kind {
            ChallengeKind::Http01 => out.http.push((
                c.identifier.clone(),
                c.token.clone(),
                c.key_authorization.clone(),
            )),
            ChallengeKind::TlsAlpn01 => out
                .alpn
                .push((c.identifier.clone(), c.key_authorization.clone())),
            ChallengeKind::Dns01 => {
                if let Some(name) = &c.txt_name {
                    out.txt
                        .push((name.clone(), dns_value(&c.key_authorization)));
                }
            }
        }
    }
    out
}

impl Issuer {
    /// An issuer for the domains in `store`, answering challenges through `challenges`
    /// and serving certificates through `certs`; registers its metrics in `registry`.
    pub fn new(
        config: AcmeConfig,
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        certs: CertStore,
        challenges: Arc<Challenges>,
        registry: &mut Registry,
    ) -> Result<Self> {
        let lookup = Lookup::new(config.resolver).map_err(CertsError::Acme)?;
        Ok(Issuer {
            inner: Arc::new(Inner {
                base_domain: certs.inner.base_domain.clone(),
                config,
                store,
                master,
                certs,
                challenges,
                lookup,
                metrics: CertMetrics::register(registry),
                account: tokio::sync::Mutex::new(None),
                wake: Notify::new(),
                checked: Mutex::new(HashMap::new()),
                on_change: None,
            }),
        })
    }

    /// Calls `f` after a pass that changed a domain (routes and pages depend on it).
    /// Only before [`Issuer::run`]: it takes the issuer's only handle.
    pub fn on_change(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.on_change = Some(Arc::new(f));
        }
        self
    }

    /// Asks for a pass now (after an association or a disassociation).
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Issues, renews and removes certificates until `shutdown` completes.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        if let Err(e) = self.restore().await {
            tracing::error!(error = %e, "the certificate issuer cannot start");
        }
        loop {
            let busy = match self.pass().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "certificate pass failed; retrying");
                    false
                }
            };
            let wait = if busy {
                ORDER_POLL
            } else {
                self.inner.config.check_interval.min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Before the first pass: the base domain's record (when its certificate comes from
    /// the CA) and the answers of orders a previous run left in flight. Call it before the
    /// DNS server answers (as [`Issuer::run`] does again, harmlessly): a CA that checks an
    /// order placed before a restart must find its answer, not a name that does not exist.
    pub async fn restore(&self) -> Result<()> {
        let inner = &self.inner;
        let mut tx = inner.store.begin()?;
        if inner.config.base_domain && tx.load::<DomainRecord>(&inner.base_domain)?.is_none() {
            let now = Timestamp::now();
            tx.create(&DomainRecord {
                domain: inner.base_domain.clone(),
                service_arn: None,
                www: false,
                status: DomainStatus::Creating,
                validation_records: Vec::new(),
                created_at: now,
                updated_at: now,
                message: None,
                certificate: None,
                order: None,
                failures: 0,
                retry_at: None,
                failed_kind: None,
            })?;
        }
        let records = tx.load_all::<DomainRecord>(&Query::default())?;
        tx.commit()?;
        for (_, record) in records {
            if let Some(OrderProgress {
                step: OrderStep::Answered { challenges },
                ..
            }) = &record.order
            {
                inner
                    .challenges
                    .set(&record.domain, answers(challenges))
                    .map_err(CertsError::Acme)?;
            }
        }
        Ok(())
    }

    /// One look at every domain; whether an order is in flight (to poll again soon).
    async fn pass(&self) -> Result<bool> {
        let (records, services) = {
            let tx = self.inner.store.begin()?;
            let records = tx.load_all::<DomainRecord>(&Query::default())?;
            // Services that are not deleted: a domain of any other is no longer served.
            let services: HashMap<String, ServiceRecord> = tx
                .load_all::<ServiceRecord>(&Query {
                    current: true,
                    ..Query::default()
                })?
                .into_iter()
                .map(|(_, s)| (s.arn.clone(), s))
                .collect();
            (records, services)
        };
        let mut busy = false;
        let mut changed = false;
        for (_, record) in records {
            if let Some(cert) = &record.certificate {
                // Also after a restart, for certificates an earlier run issued.
                self.inner.metrics.served(
                    &record.domain,
                    cert.not_after.seconds(),
                    cert.renew_at.seconds(),
                );
            }
            let before = (record.status, record.certificate.clone());
            let live = match &record.service_arn {
                None => true,
                Some(arn) => services.contains_key(arn),
            };
            let after = self.advance(record, live).await;
            match after {
                Ok(Some(r)) => {
                    busy |= r.order.is_some();
                    changed |= (r.status, r.certificate) != before;
                }
                Ok(None) => changed = true,
                Err(e) => tracing::warn!(error = %e, "certificate work failed; retrying"),
            }
        }
        if changed && let Some(f) = &self.inner.on_change {
            f();
        }
        Ok(busy)
    }

    /// Moves one domain along; the record as it is now (`None`: removed).
    async fn advance(&self, mut record: DomainRecord, live: bool) -> Result<Option<DomainRecord>> {
        let now = Timestamp::now();
        if !live && record.status != DomainStatus::Deleting {
            // The service is gone: its domains go with it.
            record.status = DomainStatus::Deleting;
            record.updated_at = now;
            self.save(&record)?;
        }
        match record.status {
            DomainStatus::Deleting | DomainStatus::DeleteFailed => {
                return self.delete(record).map(|_| None);
            }
            DomainStatus::CreateFailed => return Ok(Some(record)),
            DomainStatus::Creating => {
                record.status = DomainStatus::PendingCertificateDnsValidation;
                record.updated_at = now;
                self.save(&record)?;
            }
            _ => {}
        }
        if record.status != DomainStatus::Active && record.certificate.is_none() {
            self.inner.certs.serve_placeholder(&record.names())?;
        }
        if record.order.is_some() {
            return self.continue_order(record).await;
        }
        let due = match &record.certificate {
            None => true,
            Some(cert) => now >= cert.renew_at,
        };
        if !due || record.retry_at.is_some_and(|t| now < t) {
            return Ok(Some(record));
        }
        // The base domain keeps trying: its record is runway's own, not a user's request.
        if record.certificate.is_none()
            && record.service_arn.is_some()
            && now.millis() - record.created_at.millis()
                > i64::try_from(VALIDATION_DEADLINE.as_millis()).unwrap_or(i64::MAX)
        {
            record.status = DomainStatus::CreateFailed;
            record.message = Some(format!(
                "no certificate within {} hours: the validation records were not found",
                VALIDATION_DEADLINE.as_secs() / 3600
            ));
            record.updated_at = now;
            self.save(&record)?;
            self.event(
                &record,
                format!(
                    "Custom domain {} failed: {}",
                    record.domain,
                    record.message.as_deref().unwrap_or_default()
                ),
            )?;
            return Ok(Some(record));
        }
        self.start_order(record).await
    }

    /// Saves `record` unless the API disassociated it meanwhile (then the caller's work
    /// is dropped): a read and a write in one transaction.
    fn save(&self, record: &DomainRecord) -> Result<bool> {
        let mut tx = self.inner.store.begin()?;
        let current = tx.load::<DomainRecord>(&record.domain)?;
        let gone = match &current {
            None => true,
            Some(c) => {
                c.status == DomainStatus::Deleting && record.status != DomainStatus::Deleting
            }
        };
        if gone {
            return Ok(false);
        }
        tx.save(record)?;
        tx.commit()?;
        Ok(true)
    }

    fn event(&self, record: &DomainRecord, message: String) -> Result<()> {
        tracing::info!(domain = %record.domain, "{message}");
        let Some(service_arn) = &record.service_arn else {
            return Ok(());
        };
        let mut tx = self.inner.store.begin()?;
        tx.create(&EventRecord {
            id: runway_model::ids::new_operation_id(),
            service_arn: service_arn.clone(),
            time: Timestamp::now(),
            operation_id: None,
            message,
        })?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, mut record: DomainRecord) -> Result<()> {
        let inner = &self.inner;
        let removed = inner
            .challenges
            .clear(&record.domain)
            .map_err(CertsError::Acme)
            .and_then(|()| inner.certs.remove_certificate(&record.names()));
        if let Err(e) = removed {
            record.status = DomainStatus::DeleteFailed;
            record.message = Some(format!("cannot remove the certificate: {e}"));
            record.updated_at = Timestamp::now();
            let mut tx = inner.store.begin()?;
            tx.save(&record)?;
            tx.commit()?;
            return Err(e);
        }
        inner.metrics.forget(&record.domain);
        inner
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&record.domain);
        let mut tx = inner.store.begin()?;
        tx.remove::<DomainRecord>(&record.domain)?;
        tx.commit()?;
        self.event(
            &record,
            format!("Custom domain {} disassociated", record.domain),
        )?;
        Ok(())
    }

    fn forget_account(&self) {
        let inner = &self.inner;
        if let Ok(mut account) = inner.account.try_lock() {
            *account = None;
        }
        let forgotten = inner.store.begin().and_then(|mut tx| {
            tx.remove::<acme::AcmeAccountRecord>(&inner.config.directory_url)?;
            tx.commit()
        });
        if let Err(e) = forgotten {
            tracing::warn!(error = %e, "cannot forget the ACME account");
        }
    }

    async fn account(&self) -> std::result::Result<Account, Stop> {
        let mut account = self.inner.account.lock().await;
        if let Some(account) = account.as_ref() {
            return Ok(account.clone());
        }
        let inner = &self.inner;
        let created = tokio::time::timeout(
            CA_TIMEOUT,
            acme::account(&inner.config, &*inner.store, &inner.master),
        )
        .await
        .map_err(|_| Stop::Failed {
            reason: format!(
                "the ACME CA at {} did not answer within {CA_TIMEOUT:?}",
                inner.config.directory_url
            ),
            problem: None,
            invalid: Vec::new(),
        })?
        .map_err(|e| Stop::Failed {
            reason: e.to_string(),
            problem: None,
            invalid: Vec::new(),
        })?;
        *account = Some(created.clone());
        Ok(created)
    }

    /// The challenge type to use for `record` now, if its DNS allows one: DNS-01 once
    /// every validation CNAME is in place, HTTP-01 or TLS-ALPN-01 once every name points
    /// at runway; the type that failed last is tried last. Looks at most once per check
    /// interval.
    async fn choose(&self, record: &DomainRecord) -> Option<ChallengeKind> {
        let inner = &self.inner;
        if record.service_arn.is_none() {
            // runway's own zone: the TXT records are its own to serve.
            return inner
                .challenges
                .serves_dns()
                .then_some(ChallengeKind::Dns01);
        }
        {
            let mut checked = inner.checked.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if checked
                .get(&record.domain)
                .is_some_and(|t| now.duration_since(*t) < inner.config.check_interval)
            {
                return None;
            }
            checked.insert(record.domain.clone(), now);
        }
        let mut kinds = inner.config.challenges.clone();
        if let Some(failed) = record.failed_kind
            && let Some(i) = kinds.iter().position(|k| *k == failed)
        {
            let k = kinds.remove(i);
            kinds.push(k);
        }
        let wildcard = record.domain.starts_with("*.");
        for kind in kinds {
            let possible = match kind {
                ChallengeKind::Dns01 => {
                    inner.challenges.serves_dns() && self.delegated(record).await
                }
                ChallengeKind::Http01 | ChallengeKind::TlsAlpn01 => {
                    !wildcard && self.points_here(record).await
                }
            };
            if possible {
                return Some(kind);
            }
        }
        None
    }

    /// Whether every validation CNAME points where it should.
    async fn delegated(&self, record: &DomainRecord) -> bool {
        for v in &record.validation_records {
            let targets = self.inner.lookup.cname(&v.name).await;
            if !targets.iter().any(|t| t.eq_ignore_ascii_case(&v.value)) {
                return false;
            }
        }
        !record.validation_records.is_empty()
    }

    /// Whether every name resolves to runway's public addresses only.
    async fn points_here(&self, record: &DomainRecord) -> bool {
        let public = &self.inner.config.public_addresses;
        if public.is_empty() {
            return false;
        }
        for name in record.names() {
            let found = self.inner.lookup.addresses(&name).await;
            if found.is_empty() || !found.iter().all(|a| public.contains(a)) {
                return false;
            }
        }
        true
    }

    async fn start_order(&self, mut record: DomainRecord) -> Result<Option<DomainRecord>> {
        let Some(kind) = self.choose(&record).await else {
            let waiting = format!(
                "waiting for the validation records{}",
                if record.domain.starts_with("*.") {
                    String::new()
                } else {
                    format!(" or for {} to point at runway", record.domain)
                }
            );
            if record.certificate.is_none() && record.message.as_deref() != Some(&waiting) {
                // Not a failure: the user has not created the records yet.
                if record.failures == 0 {
                    record.message = Some(waiting);
                    self.save(&record)?;
                }
            }
            return Ok(Some(record));
        };
        let renewal = record.certificate.is_some();
        let placed = async {
            let account = self.account().await?;
            let identifiers: Vec<Identifier> =
                record.names().into_iter().map(Identifier::Dns).collect();
            let replaces = record
                .certificate
                .as_ref()
                .and_then(|c| c.ari_id.as_deref())
                .and_then(ari_identifier);
            let mut new_order = NewOrder::new(&identifiers);
            if let Some(replaces) = replaces {
                new_order = new_order.replaces(replaces);
            }
            let order =
                match with_timeout("cannot place an order", account.new_order(&new_order)).await {
                    // A CA without ARI refuses `replaces`: order without it.
                    Err(_) if new_order_has_replaces(&record) => {
                        with_timeout(
                            "cannot place an order",
                            account.new_order(&NewOrder::new(&identifiers)),
                        )
                        .await?
                    }
                    other => other?,
                };
            Ok::<_, Stop>(order.url().to_string())
        }
        .await;
        let url = match placed {
            Ok(url) => url,
            Err(stop) => return self.stopped(record, kind, renewal, stop),
        };
        tracing::info!(domain = %record.domain, %kind, renewal, "placed an ACME order");
        record.order = Some(OrderProgress {
            url,
            kind,
            renewal,
            started_at: Timestamp::now(),
            step: OrderStep::Placed,
        });
        record.message = None;
        record.updated_at = Timestamp::now();
        if !self.save(&record)? {
            return Ok(None);
        }
        self.continue_order(record).await
    }

    /// Takes the order in flight one step further.
    async fn continue_order(&self, record: DomainRecord) -> Result<Option<DomainRecord>> {
        let Some(progress) = record.order.clone() else {
            return Ok(Some(record));
        };
        let result = async {
            let account = self.account().await?;
            let mut order =
                with_timeout("cannot read the order", account.order(progress.url.clone())).await?;
            let status = with_timeout("cannot read the order", order.refresh())
                .await?
                .status;
            match (&progress.step, status) {
                (_, OrderStatus::Invalid) => Err(self.why_invalid(&mut order).await),
                (OrderStep::Placed, OrderStatus::Pending) => {
                    self.answer(record.clone(), &progress, &mut order).await
                }
                (OrderStep::Answered { challenges }, OrderStatus::Pending) => {
                    // Published already, unless a restart or a failure came between.
                    self.inner
                        .challenges
                        .set(&record.domain, answers(challenges))
                        .map_err(|e| Stop::Fault(CertsError::Acme(e)))?;
                    self.ready(&mut order, progress.kind).await?;
                    Ok(record.clone())
                }
                (OrderStep::Placed | OrderStep::Answered { .. }, OrderStatus::Ready) => {
                    self.finalizing(record.clone()).await
                }
                (OrderStep::Finalizing { key_sealed }, OrderStatus::Ready) => {
                    let key = self.open_key(&record.domain, key_sealed)?;
                    let csr = csr(&record.names(), &key)?;
                    with_timeout("cannot finalize the order", order.finalize_csr(&csr)).await?;
                    Ok(record.clone())
                }
                (OrderStep::Finalizing { .. }, OrderStatus::Processing) => Ok(record.clone()),
                (OrderStep::Finalizing { key_sealed }, OrderStatus::Valid) => {
                    let chain =
                        with_timeout("cannot download the certificate", order.certificate())
                            .await?
                            .ok_or_else(|| Stop::Failed {
                                reason: "the CA's valid order holds no certificate".into(),
                                problem: None,
                                invalid: Vec::new(),
                            })?;
                    let key = self.open_key(&record.domain, key_sealed)?;
                    self.install(record.clone(), &account, &chain, &key).await
                }
                (step, status) => Err(Stop::Failed {
                    reason: format!(
                        "the order is {status:?} where runway expected it to be at {step:?}"
                    ),
                    problem: None,
                    invalid: Vec::new(),
                }),
            }
        }
        .await;
        match result {
            Ok(record) => Ok(Some(record)),
            Err(stop) => self.stopped(record, progress.kind, progress.renewal, stop),
        }
    }

    /// Records the answers to the order's pending challenges, publishes them, and tells
    /// the CA to check.
    async fn answer(
        &self,
        mut record: DomainRecord,
        progress: &OrderProgress,
        order: &mut Order,
    ) -> std::result::Result<DomainRecord, Stop> {
        let kind = progress.kind;
        let mut pending = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| ca_failure("cannot read an authorization", e))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(Stop::Failed {
                        reason: format!("an authorization is {other:?}"),
                        problem: None,
                        invalid: Vec::new(),
                    });
                }
            }
            let identifier = authorization.identifier().to_string();
            let Some(challenge) = authorization.challenge(kind_type(kind)) else {
                return Err(Stop::Failed {
                    reason: format!("the CA offers no {kind} challenge for {identifier}"),
                    problem: None,
                    invalid: vec![identifier],
                });
            };
            let txt_name = match kind {
                ChallengeKind::Dns01 if record.service_arn.is_none() => {
                    Some(challenge_name(&identifier))
                }
                ChallengeKind::Dns01 => record
                    .validation_records
                    .iter()
                    .find(|v| v.identifier == identifier)
                    .map(|v| v.txt_name().to_string()),
                _ => None,
            };
            pending.push(PendingChallenge {
                key_authorization: challenge.key_authorization().as_str().to_string(),
                identifier,
                kind,
                url: challenge.url.clone(),
                token: challenge.token.clone(),
                txt_name,
            });
        }
        record.order = Some(OrderProgress {
            step: OrderStep::Answered {
                challenges: pending.clone(),
            },
            ..progress.clone()
        });
        record.updated_at = Timestamp::now();
        if !self.save(&record)? {
            return Err(Stop::Gone);
        }
        self.inner
            .challenges
            .set(&record.domain, answers(&pending))
            .map_err(|e| Stop::Fault(CertsError::Acme(e)))?;
        self.ready(order, kind).await?;
        Ok(record)
    }

    /// Tells the CA to check every challenge of `kind` it has not started on.
    async fn ready(&self, order: &mut Order, kind: ChallengeKind) -> std::result::Result<(), Stop> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| ca_failure("cannot read an authorization", e))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authorization.challenge(kind_type(kind))
                && challenge.status == ChallengeStatus::Pending
            {
                with_timeout("cannot start a validation", challenge.set_ready()).await?;
            }
        }
        Ok(())
    }

    /// The reason an invalid order failed, from its failed challenges.
    async fn why_invalid(&self, order: &mut Order) -> Stop {
        let mut reasons = Vec::new();
        let mut invalid = Vec::new();
        let mut problem = order.state().error.as_ref().and_then(|p| p.r#type.clone());
        if let Some(p) = &order.state().error {
            reasons.push(p.to_string());
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(authorization)) = authorizations.next().await {
            if authorization.status != AuthorizationStatus::Invalid {
                continue;
            }
            let identifier = authorization.identifier().to_string();
            for challenge in &authorization.challenges {
                if let Some(error) = &challenge.error {
                    reasons.push(format!(
                        "{identifier}: {}",
                        error.detail.as_deref().unwrap_or("invalid")
                    ));
                    problem = problem.or_else(|| error.r#type.clone());
                }
            }
            invalid.push(identifier);
        }
        Stop::Failed {
            reason: if reasons.is_empty() {
                "the CA marked the order invalid".into()
            } else {
                reasons.join("; ")
            },
            problem,
            invalid,
        }
    }

    fn open_key(&self, domain: &str, sealed: &str) -> std::result::Result<String, Stop> {
        let plain = self
            .inner
            .master
            .open(&key_context(domain), sealed)
            .map_err(|e| Stop::Fault(e.into()))?;
        String::from_utf8(plain).map_err(|_| {
            Stop::Fault(CertsError::Corrupt {
                path: format!("domain {domain}"),
                reason: "the sealed key is not PEM text".into(),
            })
        })
    }

    /// Every name is validated: records a new key (sealed) before the CSR goes out.
    async fn finalizing(
        &self,
        mut record: DomainRecord,
    ) -> std::result::Result<DomainRecord, Stop> {
        let key = KeyPair::generate().map_err(|e| Stop::Fault(e.into()))?;
        let key_sealed = self
            .inner
            .master
            .seal(&key_context(&record.domain), key.serialize_pem().as_bytes())
            .map_err(|e| Stop::Fault(e.into()))?;
        let Some(progress) = record.order.clone() else {
            return Ok(record);
        };
        if let OrderStep::Answered { challenges } = &progress.step {
            for v in &mut record.validation_records {
                if challenges
                    .iter()
                    .any(|c| c.identifier == v.identifier && c.kind == ChallengeKind::Dns01)
                {
                    v.status = ValidationStatus::Success;
                }
            }
        }
        if !progress.renewal {
            record.status = DomainStatus::BindingCertificate;
        }
        record.order = Some(OrderProgress {
            step: OrderStep::Finalizing { key_sealed },
            ..progress
        });
        record.updated_at = Timestamp::now();
        if !self.save(&record)? {
            return Err(Stop::Gone);
        }
        let _ = self.inner.challenges.clear(&record.domain);
        Ok(record)
    }

    /// Serves and records the certificate the CA issued.
    async fn install(
        &self,
        mut record: DomainRecord,
        account: &Account,
        chain: &str,
        key: &str,
    ) -> std::result::Result<DomainRecord, Stop> {
        let inner = &self.inner;
        let names = record.names();
        let leaf = inner.certs.save_certificate(&names, chain, key)?;
        let lifetime = (leaf.not_after - leaf.not_before).max(0);
        let mut renew_at = leaf.not_before + lifetime * 2 / 3;
        if let Some(id) = &leaf.ari_id
            && let Some(id) = ari_identifier(id)
            && let Ok(Ok((info, _))) =
                tokio::time::timeout(CA_TIMEOUT, account.renewal_info(&id)).await
        {
            let start = info.suggested_window.start.unix_timestamp();
            let end = info.suggested_window.end.unix_timestamp().max(start);
            // A point in the CA's window chosen per certificate, so renewals spread out.
            let spread = leaf.serial.bytes().map(i64::from).sum::<i64>() % (end - start + 1);
            renew_at = start + spread;
        }
        let renewal = record.certificate.is_some();
        let renewals = record
            .certificate
            .as_ref()
            .map_or(0, |c| c.renewals + u32::from(renewal));
        record.certificate = Some(IssuedCertificate {
            serial: leaf.serial.clone(),
            not_before: Timestamp::from_millis(leaf.not_before * 1000),
            not_after: Timestamp::from_millis(leaf.not_after * 1000),
            renew_at: Timestamp::from_millis(renew_at * 1000),
            renewals,
            ari_id: leaf.ari_id.clone(),
        });
        record.status = DomainStatus::Active;
        record.order = None;
        record.failures = 0;
        record.retry_at = None;
        record.failed_kind = None;
        record.message = None;
        record.updated_at = Timestamp::now();
        if !self.save(&record)? {
            return Err(Stop::Gone);
        }
        inner
            .metrics
            .issued
            .get_or_create(&CertMetrics::kind(renewal))
            .inc();
        inner
            .metrics
            .served(&record.domain, leaf.not_after, renew_at);
        let expires = time::OffsetDateTime::from_unix_timestamp(leaf.not_after)
            .map(|t| t.to_string())
            .unwrap_or_default();
        self.event(
            &record,
            format!(
                "Certificate for {} {} by the ACME CA (serial {}, expires {expires})",
                names.join(", "),
                if renewal { "renewed" } else { "issued" },
                leaf.serial
            ),
        )?;
        Ok(record)
    }

    /// Ends an attempt that stopped: a failure backs off and is recorded; a domain that
    /// is gone is left to the next pass.
    fn stopped(
        &self,
        mut record: DomainRecord,
        kind: ChallengeKind,
        renewal: bool,
        stop: Stop,
    ) -> Result<Option<DomainRecord>> {
        let (reason, problem, invalid) = match stop {
            Stop::Gone => return Ok(None),
            Stop::Fault(e) => return Err(e),
            Stop::Failed {
                reason,
                problem,
                invalid,
            } => (reason, problem, invalid),
        };
        let inner = &self.inner;
        let _ = inner.challenges.clear(&record.domain);
        let problem = problem.unwrap_or_default();
        if problem.ends_with(":accountDoesNotExist") {
            // The CA no longer knows runway's account (a CA reset, a test CA restarted):
            // the next attempt registers a new one.
            self.forget_account();
        }
        let now = Timestamp::now();
        record.failures += 1;
        let exponent = record.failures.saturating_sub(1).min(16);
        let mut wait = inner
            .config
            .check_interval
            .saturating_mul(1 << exponent)
            .min(MAX_BACKOFF);
        if problem.ends_with(":rateLimited") {
            wait = wait.max(RATE_LIMITED_BACKOFF);
        }
        record.retry_at = Some(after(now, wait));
        record.failed_kind = Some(kind);
        record.order = None;
        if kind == ChallengeKind::Dns01 {
            for v in &mut record.validation_records {
                if invalid.contains(&v.identifier) {
                    v.status = ValidationStatus::Failed;
                }
            }
        }
        if record.status == DomainStatus::BindingCertificate {
            record.status = DomainStatus::PendingCertificateDnsValidation;
        }
        let refused =
            problem.ends_with(":rejectedIdentifier") || problem.ends_with(":unsupportedIdentifier");
        if refused && record.certificate.is_none() {
            record.status = DomainStatus::CreateFailed;
        }
        record.message = Some(reason.clone());
        record.updated_at = now;
        if !self.save(&record)? {
            return Ok(None);
        }
        inner
            .metrics
            .failures
            .get_or_create(&CertMetrics::kind(renewal))
            .inc();
        self.event(
            &record,
            format!(
                "Certificate for {} not {} ({kind}): {reason}; {}",
                record.domain,
                if renewal { "renewed" } else { "issued" },
                if record.status == DomainStatus::CreateFailed {
                    "the domain failed".to_string()
                } else {
                    format!("trying again in {} s", wait.as_secs())
                }
            ),
        )?;
        Ok(Some(record))
    }
}

/// The ARI identifier stored as `aki.serial` (RFC 9773 4.1).
fn ari_identifier(id: &str) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = id.split_once('.')?;
    Some(CertificateIdentifier {
        authority_key_identifier: aki.to_string().into(),
        serial: serial.to_string().into(),
    })
}

fn new_order_has_replaces(record: &DomainRecord) -> bool {
    record
        .certificate
        .as_ref()
        .is_some_and(|c| c.ari_id.is_some())
}

/// The seal context of a domain's pending certificate key.
fn key_context(domain: &str) -> String {
    format!("runway-certs:order-key:{domain}")
}

/// A CSR for `names` signed by `key_pem`.
fn csr(names: &[String], key_pem: &str) -> std::result::Result<Vec<u8>, Stop> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| Stop::Fault(e.into()))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| Stop::Fault(e.into()))?;
    params.distinguished_name = DistinguishedName::new();
    let request = params
        .serialize_request(&key)
        .map_err(|e| Stop::Fault(e.into()))?;
    Ok(request.der().to_vec())
}
