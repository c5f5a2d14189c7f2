//! The controller's state machines against a fake runtime, a real router (no listeners)
//! and a real store: what operations end as, what the route table serves, and that a new
//! controller on the same store finishes what an old one started.

use runway_control::{
    BoxFuture, BuiltImage, ControlConfig, Controller, ImageResolver, SecretResolver, SourceBuild,
};
use runway_model::records::*;
use runway_model::shapes::*;
use runway_model::{Timestamp, ids};
use runway_router::{Router, RouterConfig};
use runway_runtime::{
    EventKind, InstanceEvent, InstanceId, InstanceSpec, InstanceState, InstanceStatus, LogQuery,
    LogStream, Runtime, RuntimeError,
};
use runway_store::{SqliteStore, Store, Typed};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Instances are healthy at once, unless their image's digest says "bad".
#[derive(Default)]
struct FakeRuntime {
    instances: Mutex<Vec<InstanceStatus>>,
    events: Mutex<Option<tokio::sync::broadcast::Sender<InstanceEvent>>>,
    next_port: Mutex<u16>,
    /// The secret environment each instance was started with, by revision.
    secrets: Mutex<Vec<(String, Env)>>,
    /// How many stops fail next, leaving their instance stopping (as a teardown that
    /// fails does).
    failing_stops: AtomicUsize,
}

/// Environment variables.
type Env = Vec<(String, String)>;

impl FakeRuntime {
    fn sender(&self) -> tokio::sync::broadcast::Sender<InstanceEvent> {
        self.events
            .lock()
            .unwrap()
            .get_or_insert_with(|| tokio::sync::broadcast::channel(64).0)
            .clone()
    }

    /// Makes a running instance fail its health checks, as a hung app does.
    fn sicken(&self, id: &InstanceId) {
        let mut instances = self.instances.lock().unwrap();
        let i = instances.iter_mut().find(|i| &i.id == id).unwrap();
        i.state = InstanceState::Unhealthy;
        let _ = self.sender().send(InstanceEvent {
            id: id.clone(),
            service_id: i.service_id.clone(),
            revision_id: i.revision_id.clone(),
            kind: EventKind::Unhealthy {
                reason: "no answer within 1s".into(),
            },
        });
    }

    fn ids(&self) -> Vec<InstanceId> {
        self.instances
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }

    fn count(&self, revision: &str) -> usize {
        self.instances
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.revision_id == revision)
            .count()
    }
}

impl Runtime for FakeRuntime {
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<InstanceId, RuntimeError>> {
        Box::pin(async move {
            let id = InstanceId::new();
            let port = {
                let mut p = self.next_port.lock().unwrap();
                *p += 1;
                20000 + *p
            };
            self.secrets
                .lock()
                .unwrap()
                .push((spec.revision_id.clone(), spec.secrets.0.clone()));
            let state = if spec.image.digest.contains("bad") {
                InstanceState::Unhealthy
            } else {
                InstanceState::Healthy
            };
            self.instances.lock().unwrap().push(InstanceStatus {
                id: id.clone(),
                service_id: spec.service_id.clone(),
                revision_id: spec.revision_id.clone(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                state,
                restarts: 0,
                last_exit: None,
                started_at: SystemTime::now(),
            });
            let kind = if state == InstanceState::Healthy {
                EventKind::Healthy
            } else {
                EventKind::Unhealthy {
                    reason: "status 500".into(),
                }
            };
            let _ = self.sender().send(InstanceEvent {
                id: id.clone(),
                service_id: spec.service_id,
                revision_id: spec.revision_id,
                kind,
            });
            Ok(id)
        })
    }

    fn stop<'a>(
        &'a self,
        id: &'a InstanceId,
        _grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut instances = self.instances.lock().unwrap();
            let fail = self
                .failing_stops
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                if let Some(i) = instances.iter_mut().find(|i| &i.id == id) {
                    i.state = InstanceState::Stopping;
                }
                return Err(RuntimeError::Internal("cannot remove its mounts".into()));
            }
            instances.retain(|i| &i.id != id);
            Ok(())
        })
    }

    fn list(&self) -> Vec<InstanceStatus> {
        self.instances.lock().unwrap().clone()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<InstanceEvent> {
        self.sender().subscribe()
    }

    fn logs(&self, _query: LogQuery) -> BoxFuture<'_, Result<LogStream, RuntimeError>> {
        Box::pin(async {
            Err(RuntimeError::Internal(
                "the fake runtime keeps no logs".into(),
            ))
        })
    }
}

/// `good:*` resolves to a good digest, `bad:*` to one the fake runtime fails.
#[derive(Default)]
struct FakeImages {
    /// What `release` was given.
    released: Mutex<Vec<(String, ResolvedImage)>>,
}

impl ImageResolver for FakeImages {
    fn resolve<'a>(
        &'a self,
        identifier: &'a str,
        _connection_arn: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ResolvedImage, String>> {
        Box::pin(async move {
            if identifier.starts_with("missing") {
                return Err("registry.example: not found".into());
            }
            let kind = if identifier.starts_with("bad") {
                "bad"
            } else {
                "good"
            };
            Ok(ResolvedImage {
                repository: "app".into(),
                digest: format!("sha256:{kind}-{}", identifier.len()),
            })
        })
    }

    fn release<'a>(
        &'a self,
        _service: &'a ServiceRecord,
        images: Vec<(String, ResolvedImage)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.released.lock().unwrap().extend(images);
            Ok(())
        })
    }

    /// A repository URL ending in `fails` fails its build; any other builds.
    fn build<'a>(&'a self, request: SourceBuild<'a>) -> BoxFuture<'a, Result<BuiltImage, String>> {
        Box::pin(async move {
            let url = request.code.repository_url.clone().unwrap_or_default();
            if url.ends_with("fails") {
                return Err(
                    "build command failed (exit status 1): pip install -r requirements.txt\nlast log lines:\nERROR: No matching distribution".into(),
                );
            }
            Ok(BuiltImage {
                image: ResolvedImage {
                    repository: format!("{}/app", request.service.name),
                    digest: format!("sha256:good-built-{}", url.len()),
                },
                identifier: format!("registry.local/{}/app:c0ffee", request.service.name),
                port: 8000,
                env: vec![("GREETING".into(), "built".into())],
                secrets: Vec::new(),
                // As `run.network` in an apprunner.yaml would.
                http: HttpConfiguration {
                    instance_protocol: Some("H2C".into()),
                    request_timeout_seconds: Some(60),
                    ..Default::default()
                },
                summary: "python3, commit c0ffee".into(),
                notes: Vec::new(),
            })
        })
    }
}

struct World {
    images: Arc<FakeImages>,
    store: Arc<dyn Store>,
    runtime: Arc<FakeRuntime>,
    router: Router,
    service: ServiceRecord,
}

const ASC: &str =
    "arn:aws:apprunner:us-east-1:000000000000:autoscalingconfiguration/DefaultConfiguration/1/0";

fn spec(image: &str) -> ServiceSpec {
    ServiceSpec {
        source_configuration: SourceConfiguration {
            image_repository: Some(ImageRepository {
                image_identifier: Some(image.into()),
                image_repository_type: Some("ECR".into()),
                image_configuration: Some(ImageConfiguration {
                    port: Some("8080".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        },
        instance_configuration: InstanceConfiguration::default(),
        encryption_configuration: None,
        health_check_configuration: HealthCheckConfiguration::default(),
        auto_scaling_configuration_arn: ASC.into(),
        network_configuration: NetworkConfiguration::default(),
        observability_configuration: None,
        http_configuration: None,
    }
}

fn world(image: &str, min_size: i64) -> World {
    world_in(Arc::new(SqliteStore::in_memory().unwrap()), image, min_size)
}

/// A service (with a pending CreateService) in `store`, which may hold others.
fn world_in(store: Arc<dyn Store>, image: &str, min_size: i64) -> World {
    let now = Timestamp::now();
    let id = ids::new_resource_id();
    let service = ServiceRecord {
        arn: format!("arn:aws:apprunner:us-east-1:000000000000:service/app/{id}"),
        url: format!("app-{}.runway.localhost", &id[..8]),
        id,
        name: "app".into(),
        status: ServiceStatus::OperationInProgress,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        spec: spec(image),
    };
    let mut tx = store.begin().unwrap();
    tx.save(&AutoScalingRecord {
        arn: ASC.into(),
        name: "DefaultConfiguration".into(),
        revision: 1,
        max_concurrency: 100,
        min_size,
        max_size: 25,
        status: ConfigStatus::Active,
        created_at: now,
        deleted_at: None,
    })
    .unwrap();
    tx.create(&service).unwrap();
    tx.commit().unwrap();
    let mut registry = runway_telemetry::Registry::default();
    let router = Router::new(RouterConfig::default(), &mut registry).unwrap();
    let w = World {
        images: Arc::default(),
        store,
        runtime: Arc::new(FakeRuntime::default()),
        router,
        service,
    };
    w.record(OperationType::CreateService, Some(spec(image)));
    w
}

impl World {
    fn record(&self, kind: OperationType, spec: Option<ServiceSpec>) -> String {
        self.record_op(kind, spec, false)
    }

    /// Records what `Runway.UpdateServiceHttpConfiguration` records for `http`.
    fn record_http(&self, http: HttpConfiguration) -> String {
        let mut service = self.service();
        service.spec.http_configuration = Some(http);
        let spec = service.spec.clone();
        let mut tx = self.store.begin().unwrap();
        tx.save(&service).unwrap();
        tx.commit().unwrap();
        self.record_op(OperationType::UpdateService, Some(spec), true)
    }

    fn revision(&self, id: &str) -> RevisionRecord {
        self.store
            .begin()
            .unwrap()
            .load::<RevisionRecord>(id)
            .unwrap()
            .unwrap()
    }

    fn record_op(
        &self,
        kind: OperationType,
        spec: Option<ServiceSpec>,
        settings_only: bool,
    ) -> String {
        let now = Timestamp::now();
        let op = OperationRecord {
            id: ids::new_operation_id(),
            service_arn: self.service.arn.clone(),
            kind,
            status: OperationStatus::Pending,
            started_at: now,
            ended_at: None,
            updated_at: now,
            spec,
            message: None,
            redeploy: None,
            progress: None,
            settings_only,
        };
        let mut tx = self.store.begin().unwrap();
        tx.create(&op).unwrap();
        tx.commit().unwrap();
        op.id
    }

    fn controller(&self) -> Controller {
        let config = ControlConfig {
            poll_interval: Duration::from_millis(20),
            drain_timeout: Duration::from_millis(200),
            stop_grace: Duration::from_millis(10),
            replace_grace: Duration::from_millis(50),
            replace_backoff: runway_runtime::Backoff {
                initial: Duration::from_millis(600),
                max: Duration::from_secs(5),
                reset_after: Duration::from_secs(60),
            },
            ..Default::default()
        };
        Controller::new(
            self.store.clone(),
            self.runtime.clone(),
            self.router.clone(),
            self.images.clone(),
            config,
        )
    }

    fn op(&self, id: &str) -> OperationRecord {
        self.store
            .begin()
            .unwrap()
            .load::<OperationRecord>(id)
            .unwrap()
            .unwrap()
    }

    fn service(&self) -> ServiceRecord {
        self.store
            .begin()
            .unwrap()
            .load::<ServiceRecord>(&self.service.arn)
            .unwrap()
            .unwrap()
    }

    fn state(&self) -> ServiceState {
        self.store
            .begin()
            .unwrap()
            .load::<ServiceState>(&self.service.arn)
            .unwrap()
            .unwrap_or_default()
    }

    fn events(&self) -> Vec<String> {
        let q = runway_store::Query {
            parent: Some(self.service.arn.clone()),
            ..Default::default()
        };
        self.store
            .begin()
            .unwrap()
            .load_all::<EventRecord>(&q)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.message)
            .collect()
    }

    /// Waits until the operation has ended.
    async fn settle(&self, id: &str) -> OperationRecord {
        for _ in 0..500 {
            let op = self.op(id);
            if op.status.is_final() {
                return op;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "operation did not end: {:?}\nevents: {:#?}",
            self.op(id),
            self.events()
        );
    }

    fn routed_endpoints(&self, revision: &str) -> usize {
        self.router
            .stats()
            .iter()
            .find(|s| s.revision_id == revision)
            .map_or(0, |s| s.endpoints)
    }
}

/// Runs the controller's loops until the handle is aborted.
fn running(c: &Controller) -> tokio::task::JoinHandle<()> {
    let c = c.clone();
    tokio::spawn(async move { c.run(std::future::pending()).await })
}

/// The first operation of `w`'s service.
fn first_op_of(w: &World) -> String {
    let q = runway_store::Query::default();
    let tx = w.store.read().unwrap();
    let ops = tx.load_all::<OperationRecord>(&q).unwrap();
    ops.into_iter()
        .map(|(_, op)| op)
        .find(|op| op.service_arn == w.service.arn)
        .unwrap()
        .id
}

fn first_op(w: &World) -> String {
    let q = runway_store::Query::default();
    w.store
        .begin()
        .unwrap()
        .load_all::<OperationRecord>(&q)
        .unwrap()[0]
        .1
        .id
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_pause_resume_delete() {
    let w = world("good:v1", 1);
    let c = w.controller();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let c = c.clone();
        async move {
            c.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });

    let create = w.settle(&first_op(&w)).await;
    assert_eq!(
        create.status,
        OperationStatus::Succeeded,
        "{:#?}",
        w.events()
    );
    assert_eq!(w.service().status, ServiceStatus::Running);
    let rev1 = w.state().traffic[0].revision.clone();
    assert_eq!(w.runtime.count(&rev1), 1);
    assert_eq!(w.routed_endpoints(&rev1), 1);
    assert!(
        w.events()
            .iter()
            .any(|e| e.starts_with("Health check is successful")),
        "{:#?}",
        w.events()
    );

    // A good update: the new revision takes the traffic and the old one is stopped.
    let update = w.record(OperationType::UpdateService, Some(spec("good:v22")));
    assert_eq!(w.settle(&update).await.status, OperationStatus::Succeeded);
    let state = w.state();
    let rev2 = state.traffic[0].revision.clone();
    assert_ne!(rev1, rev2);
    assert_eq!(state.traffic.len(), 1);
    assert_eq!(w.runtime.count(&rev1), 0);
    assert_eq!(w.runtime.count(&rev2), 1);

    // A bad update is rolled back and the previous revision keeps serving.
    let bad = w.record(OperationType::UpdateService, Some(spec("bad:v3")));
    let bad = w.settle(&bad).await;
    assert_eq!(
        bad.status,
        OperationStatus::RollbackSucceeded,
        "{:#?}",
        w.events()
    );
    assert!(bad.message.unwrap().contains("health check failed"));
    assert_eq!(w.state().traffic[0].revision, rev2);
    assert_eq!(w.service().status, ServiceStatus::Running);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        w.runtime.instances.lock().unwrap().len(),
        1,
        "the failed revision's instances are stopped"
    );

    let pause = w.record(OperationType::PauseService, None);
    assert_eq!(w.settle(&pause).await.status, OperationStatus::Succeeded);
    assert_eq!(w.service().status, ServiceStatus::Paused);
    assert!(w.runtime.instances.lock().unwrap().is_empty());

    let resume = w.record(OperationType::ResumeService, None);
    assert_eq!(w.settle(&resume).await.status, OperationStatus::Succeeded);
    assert_eq!(w.service().status, ServiceStatus::Running);
    assert_eq!(w.runtime.count(&rev2), 1);

    let delete = w.record(OperationType::DeleteService, None);
    assert_eq!(w.settle(&delete).await.status, OperationStatus::Succeeded);
    assert_eq!(w.service().status, ServiceStatus::Deleted);
    assert!(w.runtime.instances.lock().unwrap().is_empty());
    // Its images go (no other service runs them), each with the identifier it came from.
    let mut released: Vec<String> = w
        .images
        .released
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    released.sort();
    assert_eq!(released, ["bad:v3", "good:v1", "good:v22"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(w.router.stats().iter().all(|s| s.endpoints == 0));

    let _ = stop.send(());
    run.await.unwrap();
}

/// The router process as the controller sees it through `runway server`'s client: it
/// can be down (it answers no load), one started again counts its load from zero, and it
/// can be slow to take the tables it is given (they are held until the test lets them
/// through). With a `concurrency`, the load is made up: that many requests in flight on
/// every routed revision.
#[derive(Clone)]
struct ProcessRouter {
    router: Router,
    /// Whether it runs, and since when.
    up: Arc<Mutex<(bool, std::time::Instant)>>,
    concurrency: Option<f64>,
    /// Whether tables are held, and the last one held.
    held: Arc<Mutex<(bool, Option<runway_router::RouteTable>)>>,
}

impl ProcessRouter {
    fn new(router: Router, concurrency: Option<f64>) -> ProcessRouter {
        ProcessRouter {
            router,
            up: Arc::new(Mutex::new((true, std::time::Instant::now()))),
            concurrency,
            held: Default::default(),
        }
    }

    fn hold(&self) {
        self.held.lock().unwrap().0 = true;
    }

    /// Applies the last table held, and those that come after it.
    fn release(&self) {
        let mut held = self.held.lock().unwrap();
        held.0 = false;
        if let Some(table) = held.1.take() {
            self.router.set_routes(table).unwrap();
        }
    }
}

impl runway_control::RouterPort for ProcessRouter {
    fn set_routes(
        &self,
        routes: runway_router::RouteTable,
    ) -> Result<(), runway_router::RoutesError> {
        let mut held = self.held.lock().unwrap();
        if held.0 {
            routes.validate()?;
            held.1 = Some(routes);
            Ok(())
        } else {
            self.router.set_routes(routes)
        }
    }
    fn stats(&self) -> BoxFuture<'_, Option<Vec<runway_router::RevisionStats>>> {
        let (up, since) = *self.up.lock().unwrap();
        let stats = up.then(|| {
            let mut stats = self.router.stats();
            if let Some(concurrency) = self.concurrency {
                let seconds = since.elapsed().as_secs_f64() * concurrency;
                for s in &mut stats {
                    s.concurrency_seconds = seconds;
                    s.queued_seconds = 0.0;
                }
            }
            stats
        });
        Box::pin(std::future::ready(stats))
    }
    fn instance_load<'a>(
        &'a self,
        instance_id: &'a str,
    ) -> BoxFuture<'a, runway_router::InstanceLoad> {
        Box::pin(std::future::ready(self.router.instance_load(instance_id)))
    }
    fn demand(&self) -> tokio::sync::watch::Receiver<runway_router::Demand> {
        self.router.demand()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_or_resume_ends_only_once_the_router_sends_the_revision_requests() {
    let w = world("good:v1", 1);
    let router = ProcessRouter::new(w.router.clone(), None);
    let c = Controller::new(
        w.store.clone(),
        w.runtime.clone(),
        router.clone(),
        w.images.clone(),
        ControlConfig {
            poll_interval: Duration::from_millis(20),
            stop_grace: Duration::from_millis(10),
            // Longer than the test: a router that never takes the table would hold the
            // deployment this long.
            drain_timeout: Duration::from_secs(120),
            ..Default::default()
        },
    );
    // Each operation, with the router holding the tables: its instance gets healthy but
    // the operation does not end, and it ends once the router has the table.
    let held_then_released =
        async |op: &str, serving: Option<&str>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while w.runtime.list().iter().all(|i| {
                i.state != InstanceState::Healthy || Some(i.revision_id.as_str()) == serving
            }) {
                assert!(std::time::Instant::now() < deadline, "no new instance");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                w.op(op).status,
                OperationStatus::InProgress,
                "{:#?}",
                w.events()
            );
            if let Some(old) = serving {
                assert_eq!(w.runtime.count(old), 1, "the serving revision was stopped");
                assert_eq!(w.routed_endpoints(old), 1);
            }
            router.release();
            let done = w.settle(op).await;
            assert_eq!(done.status, OperationStatus::Succeeded, "{:#?}", w.events());
            let rev = w.state().traffic[0].revision.clone();
            assert_eq!(w.routed_endpoints(&rev), 1);
            rev
        };

    router.hold();
    let run = running(&c);
    let rev1 = held_then_released(&first_op(&w), None).await;

    router.hold();
    let update = w.record(OperationType::UpdateService, Some(spec("good:v2")));
    let rev2 = held_then_released(&update, Some(&rev1)).await;
    assert_ne!(rev1, rev2);

    let pause = w.record(OperationType::PauseService, None);
    assert_eq!(w.settle(&pause).await.status, OperationStatus::Succeeded);
    router.hold();
    let resume = w.record(OperationType::ResumeService, None);
    assert_eq!(held_then_released(&resume, None).await, rev2);
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_waits_for_instances_whose_stop_failed_and_stops_them_again() {
    let w = world("good:v1", 2);
    let run = running(&w.controller());
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );
    assert_eq!(w.runtime.ids().len(), 2);
    w.runtime.failing_stops.store(3, Ordering::SeqCst);
    let delete = w.record(OperationType::DeleteService, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !w.op(&delete).status.is_final() {
        assert!(
            std::time::Instant::now() < deadline,
            "the delete did not end: {:?}",
            w.runtime.list()
        );
        let stopping = w
            .runtime
            .list()
            .iter()
            .any(|i| i.state == InstanceState::Stopping);
        if stopping {
            assert_ne!(w.service().status, ServiceStatus::Deleted);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(w.op(&delete).status, OperationStatus::Succeeded);
    assert_eq!(w.service().status, ServiceStatus::Deleted);
    assert!(w.runtime.ids().is_empty());
    assert_eq!(w.runtime.failing_stops.load(Ordering::SeqCst), 0);
    run.abort();
}

/// A service built from a code repository (`url`, branch `main`).
fn code_spec(url: &str) -> ServiceSpec {
    let mut s = spec("unused");
    s.source_configuration = SourceConfiguration {
        code_repository: Some(CodeRepository {
            repository_url: Some(url.into()),
            source_code_version: Some(SourceCodeVersion {
                kind: Some("BRANCH".into()),
                value: Some("main".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_repository_is_built_and_a_failing_build_leaves_the_service_serving() {
    let w = world("good:v1", 1);
    let run = running(&w.controller());
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );

    let build = w.record(
        OperationType::UpdateService,
        Some(code_spec("https://git.example/app")),
    );
    let op = w.settle(&build).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{:#?}", w.events());
    let built = w.state().traffic[0].revision.clone();
    let revision = w
        .store
        .begin()
        .unwrap()
        .load::<RevisionRecord>(&built)
        .unwrap()
        .unwrap();
    assert_eq!(revision.image.unwrap().repository, "app/app");
    let image = revision.spec.source_configuration.image_repository.unwrap();
    assert_eq!(
        image.image_identifier.as_deref(),
        Some("registry.local/app/app:c0ffee")
    );
    assert_eq!(
        image.image_configuration.unwrap().port.as_deref(),
        Some("8000")
    );
    let instances = w.runtime.instances.lock().unwrap().clone();
    assert!(instances.iter().all(|i| i.revision_id == built));
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Building https://git.example/app branch main"))
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Build succeeded: python3, commit c0ffee")
    );

    // A failing build ends the operation FAILED with the command; nothing else changes.
    let failing = w.record(
        OperationType::UpdateService,
        Some(code_spec("https://git.example/fails")),
    );
    let op = w.settle(&failing).await;
    assert_eq!(op.status, OperationStatus::Failed);
    let message = op.message.unwrap();
    assert!(
        message.contains("pip install -r requirements.txt"),
        "{message}"
    );
    assert!(message.contains("No matching distribution"), "{message}");
    assert_eq!(w.service().status, ServiceStatus::Running);
    assert_eq!(w.state().traffic[0].revision, built);
    assert_eq!(w.runtime.count(&built), 1);
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_never_gets_healthy_fails() {
    let w = world("bad:v1", 1);
    let run = running(&w.controller());
    let op = w.settle(&first_op(&w)).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(w.service().status, ServiceStatus::CreateFailed);
    // A new service has nothing to roll back to, and its events do not say otherwise.
    let events = w.events();
    assert!(
        !events.iter().any(|e| e.contains("rolling back")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("stopping it")),
        "{events:?}"
    );
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_had_fails_the_create_naming_it() {
    let w = world("missing:v1", 1);
    let run = running(&w.controller());
    let op = w.settle(&first_op(&w)).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert!(op.message.unwrap().contains("registry.example"));
    assert_eq!(w.service().status, ServiceStatus::CreateFailed);
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_finishes_what_an_old_one_started() {
    let w = world("good:v1", 1);
    let old = w.controller();
    let run = running(&old);
    let create = w.settle(&first_op(&w)).await;
    assert_eq!(create.status, OperationStatus::Succeeded);
    let update = w.record(OperationType::UpdateService, Some(spec("good:v2")));
    // Stop the controller as soon as the update has started its revision.
    for _ in 0..500 {
        if matches!(
            w.op(&update).progress,
            Some(Progress::Starting { .. }) | Some(Progress::Draining { .. })
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.abort();
    let _ = run.await;
    let new = w.controller();
    new.publish_routes().await.unwrap();
    let rev1 = w.state().traffic[0].revision.clone();
    assert_eq!(
        w.routed_endpoints(&rev1).max(1),
        1,
        "routes come back at once"
    );
    let run = running(&new);
    assert_eq!(w.settle(&update).await.status, OperationStatus::Succeeded);
    let rev2 = w.state().traffic[0].revision.clone();
    assert_eq!(w.runtime.count(&rev2), 1, "no duplicate instances");
    assert_eq!(w.runtime.instances.lock().unwrap().len(), 1);
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_settings_deploy_the_serving_build_again_and_a_rollback_restores_them() {
    let w = world("good:v1", 1);
    let run = running(&w.controller());
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );
    let build = w.record(
        OperationType::UpdateService,
        Some(code_spec("https://git.example/app")),
    );
    assert_eq!(w.settle(&build).await.status, OperationStatus::Succeeded);
    let built = w.revision(&w.state().traffic[0].revision);
    let settings = built.http_settings();
    assert_eq!(settings.protocol, runway_model::http::InstanceProtocol::H2c);
    assert_eq!(settings.request_timeout, Duration::from_secs(60));

    // The API's settings: the same image, no build, apprunner.yaml's protocol kept.
    let op = w.record_http(HttpConfiguration {
        request_timeout_seconds: Some(600),
        max_request_body_bytes: Some(0),
        ..Default::default()
    });
    assert_eq!(
        w.settle(&op).await.status,
        OperationStatus::Succeeded,
        "{:#?}",
        w.events()
    );
    let again = w.revision(&w.state().traffic[0].revision);
    assert_ne!(again.id, built.id);
    assert_eq!(again.image, built.image, "nothing was built or pulled");
    assert_eq!(
        again.spec.source_configuration.image_repository,
        built.spec.source_configuration.image_repository
    );
    let settings = again.http_settings();
    assert_eq!(settings.protocol, runway_model::http::InstanceProtocol::H2c);
    assert_eq!(settings.request_timeout, Duration::from_secs(600));
    assert_eq!(settings.max_request_body, None);
    let builds = w
        .events()
        .iter()
        .filter(|e| e.starts_with("Build succeeded"))
        .count();
    assert_eq!(builds, 1, "{:#?}", w.events());

    // A rollback to the built revision serves its settings again.
    let mut rollback = w.op(&op);
    rollback.id = ids::new_operation_id();
    rollback.status = OperationStatus::Pending;
    rollback.settings_only = false;
    rollback.redeploy = Some(built.id.clone());
    rollback.spec = Some(built.spec.clone());
    rollback.progress = None;
    rollback.ended_at = None;
    let mut tx = w.store.begin().unwrap();
    tx.create(&rollback).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        w.settle(&rollback.id).await.status,
        OperationStatus::Succeeded
    );
    let restored = w.revision(&w.state().traffic[0].revision);
    assert_eq!(restored.http_settings(), built.http_settings());
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_settings_on_a_service_that_serves_nothing_fail_the_operation() {
    let w = world("bad:v1", 1);
    let run = running(&w.controller());
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Failed
    );
    let op = w.record_http(HttpConfiguration {
        instance_protocol: Some("H2C".into()),
        ..Default::default()
    });
    let op = w.settle(&op).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert!(op.message.unwrap().contains("no serving revision"));
    run.abort();
}

/// References `ok:<name>` resolve to version `v<n>` of a value that changes when
/// `version` does; anything else does not resolve.
#[derive(Default)]
struct FakeSecrets {
    version: std::sync::atomic::AtomicU32,
}

impl SecretResolver for FakeSecrets {
    fn pin<'a>(
        &'a self,
        references: &'a [(String, String)],
        _kms_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<SecretPin>, String>> {
        Box::pin(async move {
            let v = self.version.load(std::sync::atomic::Ordering::SeqCst);
            references
                .iter()
                .map(|(name, reference)| match reference.strip_prefix("ok:") {
                    Some(_) => Ok(SecretPin {
                        name: name.clone(),
                        reference: reference.clone(),
                        pinned: format!("v{v}"),
                    }),
                    None => Err(format!("secret {name} does not resolve: {reference}")),
                })
                .collect()
        })
    }

    fn values<'a>(
        &'a self,
        pins: &'a [SecretPin],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, String>> {
        Box::pin(async move {
            Ok(pins
                .iter()
                .map(|p| (p.name.clone(), format!("{}@{}", p.reference, p.pinned)))
                .collect())
        })
    }
}

fn with_secrets(image: &str, secrets: &[(&str, &str)]) -> ServiceSpec {
    let mut s = spec(image);
    let config = s
        .source_configuration
        .image_repository
        .as_mut()
        .unwrap()
        .image_configuration
        .as_mut()
        .unwrap();
    config.runtime_environment_secrets = Some(
        secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_references_are_pinned_per_revision_and_one_that_does_not_resolve_fails_the_deployment()
 {
    let w = world("good:v1", 1);
    let secrets = Arc::new(FakeSecrets::default());
    let c = w.controller().with_secrets(secrets.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let c = c.clone();
        async move {
            c.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );

    let update = w.record(
        OperationType::UpdateService,
        Some(with_secrets("good:v2", &[("DB", "ok:db")])),
    );
    assert_eq!(w.settle(&update).await.status, OperationStatus::Succeeded);
    let rev2 = w.state().traffic[0].revision.clone();
    let revision = w
        .store
        .begin()
        .unwrap()
        .load::<RevisionRecord>(&rev2)
        .unwrap()
        .unwrap();
    assert_eq!(
        revision.secrets,
        [SecretPin {
            name: "DB".into(),
            reference: "ok:db".into(),
            pinned: "v0".into()
        }]
    );
    let started = |rev: &str| -> Vec<Env> {
        w.runtime
            .secrets
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == rev)
            .map(|(_, s)| s.clone())
            .collect()
    };
    assert_eq!(
        started(&rev2),
        [vec![("DB".to_string(), "ok:db@v0".to_string())]]
    );

    // A new value: the running revision keeps what it pinned; a deployment takes the new.
    secrets
        .version
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let deploy = w.record(OperationType::StartDeployment, None);
    // (StartDeployment deploys the service's own spec, which has no secrets yet.)
    assert_eq!(w.settle(&deploy).await.status, OperationStatus::Succeeded);
    let update = w.record(
        OperationType::UpdateService,
        Some(with_secrets("good:v2", &[("DB", "ok:db")])),
    );
    assert_eq!(w.settle(&update).await.status, OperationStatus::Succeeded);
    let rev4 = w.state().traffic[0].revision.clone();
    assert_eq!(
        started(&rev4),
        [vec![("DB".to_string(), "ok:db@v1".to_string())]]
    );

    // A reference that does not resolve fails the deployment, naming it; the running
    // revision keeps serving.
    let bad = w.record(
        OperationType::UpdateService,
        Some(with_secrets(
            "good:v2",
            &[("DB", "ok:db"), ("API_KEY", "missing:key")],
        )),
    );
    let bad = w.settle(&bad).await;
    assert_eq!(bad.status, OperationStatus::Failed);
    let message = bad.message.unwrap_or_default();
    assert!(
        message.contains("API_KEY") && message.contains("missing:key"),
        "{message}"
    );
    assert!(
        w.events().iter().any(|e| e.contains("missing:key")),
        "{:#?}",
        w.events()
    );
    assert_eq!(w.state().traffic[0].revision, rev4);
    assert_eq!(w.runtime.count(&rev4), 1);
    assert_eq!(w.service().status, ServiceStatus::Running);

    let _ = stop.send(());
    run.await.unwrap();
}

/// Waits until `sick` has been replaced by one instance that `rev` routes to; its id.
async fn wait_replaced(w: &World, rev: &str, sick: &InstanceId) -> InstanceId {
    for _ in 0..300 {
        let ids = w.runtime.ids();
        if ids.len() == 1 && &ids[0] != sick && w.routed_endpoints(rev) == 1 {
            return ids[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{sick} was not replaced: {:?}\n{:#?}",
        w.runtime.ids(),
        w.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_failing_its_health_checks_is_replaced_and_again_only_after_a_backoff() {
    let w = world("good:v1", 1);
    let c = w.controller();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let c = c.clone();
        async move {
            c.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );
    let rev = w.state().traffic[0].revision.clone();
    let first = w.runtime.ids()[0].clone();
    w.runtime.sicken(&first);
    let second = wait_replaced(&w, &rev, &first).await;
    let short = &first.as_str()[..12];
    // The last event is recorded once the stop has returned, after the replacement may
    // already be seen.
    for want in [
        format!("Instance {short} failed its health checks (no answer within 1s)"),
        format!("Replacing instance {short}, which fails its health checks"),
        format!("Instance {short} stopped: it was replaced"),
    ] {
        let mut tries = 0;
        while !w.events().iter().any(|e| e.starts_with(&want)) {
            tries += 1;
            assert!(tries < 300, "{want:?} in {:#?}", w.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // The replacement fails too: it is replaced again, but only after the backoff.
    let sickened = std::time::Instant::now();
    w.runtime.sicken(&second);
    let third = wait_replaced(&w, &rev, &second).await;
    assert!(
        sickened.elapsed() >= Duration::from_millis(400),
        "the second replacement waited for the backoff: {:?}",
        sickened.elapsed()
    );
    assert_ne!(third, first);
    assert_eq!(w.service().status, ServiceStatus::Running);

    let _ = stop.send(());
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_keeps_the_load_it_knew_while_the_router_process_is_down_or_restarted() {
    let w = world("good:v1", 1);
    // With MaxConcurrency 100 and 70 % utilization: 4 instances.
    let router = ProcessRouter::new(w.router.clone(), Some(250.0));
    let stable_window = Duration::from_millis(1000);
    let c = Controller::new(
        w.store.clone(),
        w.runtime.clone(),
        router.clone(),
        w.images.clone(),
        ControlConfig {
            poll_interval: Duration::from_millis(20),
            stop_grace: Duration::from_millis(10),
            drain_timeout: Duration::from_millis(100),
            scale_interval: Duration::from_millis(50),
            scaler: runway_control::autoscaler::ScalerConfig {
                stable_window,
                panic_window: Duration::from_millis(200),
                scale_to_zero_grace: stable_window,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let run = running(&c);
    assert_eq!(
        w.settle(&first_op(&w)).await.status,
        OperationStatus::Succeeded
    );
    let rev = w.state().traffic[0].revision.clone();
    let desired = || w.state().desired.get(&rev).copied().unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while desired() != 4 || w.runtime.count(&rev) != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "did not scale to 4: {}",
            desired()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The climb's panic mode ends; the load holds it at 4.
    tokio::time::sleep(stable_window * 2).await;
    assert_eq!(desired(), 4);

    // The router process is down for longer than the stable window, then a new one
    // starts, counting from zero: no load known is no reason to scale in.
    let mut fewest = u32::MAX;
    let mut watch = async |period: Duration| {
        let until = std::time::Instant::now() + period;
        while std::time::Instant::now() < until {
            fewest = fewest.min(desired());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    router.up.lock().unwrap().0 = false;
    watch(stable_window * 3).await;
    *router.up.lock().unwrap() = (true, std::time::Instant::now());
    watch(stable_window * 3).await;
    assert_eq!(fewest, 4, "scaled in while the router's load was unknown");
    assert_eq!(desired(), 4);
    run.abort();
}

/// A store whose writes take a while, counting the threads waiting to write at once.
struct SlowWrites {
    store: SqliteStore,
    waiting: AtomicUsize,
    most_waiting: AtomicUsize,
}

impl Store for SlowWrites {
    fn begin(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        self.store.begin()
    }

    fn begin_relaxed(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_waiting.fetch_max(now, Ordering::SeqCst);
        let tx = self.store.begin_relaxed();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        tx
    }

    fn read(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        self.store.read()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_deployments_at_once_wait_for_the_store_on_a_few_threads() {
    // 40 services created at once: each deployment step writes its progress, and the
    // store takes one write at a time. Before, each waiting write held a thread of its
    // own (120 threads for 200 services in bench/api).
    let store = Arc::new(SlowWrites {
        store: SqliteStore::in_memory().unwrap(),
        waiting: AtomicUsize::new(0),
        most_waiting: AtomicUsize::new(0),
    });
    let worlds: Vec<World> = (0..40)
        .map(|_| world_in(store.clone(), "good:v1", 1))
        .collect();
    let run = running(&worlds[0].controller());
    for w in &worlds {
        let op = first_op_of(w);
        assert_eq!(w.settle(&op).await.status, OperationStatus::Succeeded);
    }
    run.abort();
    let most = store.most_waiting.load(Ordering::SeqCst);
    assert!(
        most <= 4,
        "{most} of the controller's writes waited for the store on threads at once"
    );
}

/// A store that counts the documents its read transactions list that belong to one
/// service (its state, revisions and operations).
struct ReadsOf {
    store: SqliteStore,
    arn: Mutex<Option<String>>,
    read: Arc<AtomicUsize>,
}

impl Store for ReadsOf {
    fn begin(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        self.store.begin()
    }

    fn begin_relaxed(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        self.store.begin_relaxed()
    }

    fn read(&self) -> runway_store::Result<Box<dyn runway_store::Txn + '_>> {
        Ok(Box::new(CountingTxn {
            inner: self.store.read()?,
            arn: self.arn.lock().unwrap().clone(),
            read: self.read.clone(),
        }))
    }
}

struct CountingTxn<'a> {
    inner: Box<dyn runway_store::Txn + 'a>,
    arn: Option<String>,
    read: Arc<AtomicUsize>,
}

impl runway_store::Txn for CountingTxn<'_> {
    fn get(&self, kind: &str, id: &str) -> runway_store::Result<Option<runway_store::Doc>> {
        self.inner.get(kind, id)
    }

    fn list(
        &self,
        kind: &str,
        query: &runway_store::Query,
    ) -> runway_store::Result<Vec<runway_store::Doc>> {
        let docs = self.inner.list(kind, query)?;
        if let Some(arn) = &self.arn {
            let mine = docs
                .iter()
                .filter(|d| d.parent.as_ref() == Some(arn) || d.id == *arn)
                .count();
            self.read.fetch_add(mine, Ordering::SeqCst);
        }
        Ok(docs)
    }

    fn insert(
        &mut self,
        kind: &str,
        id: &str,
        index: runway_store::Index<'_>,
        body: &str,
    ) -> runway_store::Result<i64> {
        self.inner.insert(kind, id, index, body)
    }

    fn put(
        &mut self,
        kind: &str,
        id: &str,
        index: runway_store::Index<'_>,
        body: &str,
    ) -> runway_store::Result<i64> {
        self.inner.put(kind, id, index, body)
    }

    fn delete(&mut self, kind: &str, id: &str) -> runway_store::Result<bool> {
        self.inner.delete(kind, id)
    }

    fn refused_write(&self) -> bool {
        self.inner.refused_write()
    }

    fn commit(self: Box<Self>) -> runway_store::Result<()> {
        self.inner.commit()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loops_no_longer_read_what_a_deleted_service_left() {
    // A deleted service keeps its records (describe, operations, events), but the
    // controller's passes, several a second, read neither it nor what hangs off it:
    // before, every pass decoded every service, state, revision and operation ever
    // stored (bench/api: after 200 creates and deletes, most of the server's live heap
    // was such a pass in flight).
    let read = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(ReadsOf {
        store: SqliteStore::in_memory().unwrap(),
        arn: Mutex::new(None),
        read: read.clone(),
    });
    let gone = world_in(store.clone(), "good:v1", 1);
    let kept = world_in(store.clone(), "good:v2", 1);
    let run = running(&gone.controller());
    for w in [&gone, &kept] {
        assert_eq!(
            w.settle(&first_op_of(w)).await.status,
            OperationStatus::Succeeded
        );
    }
    let delete = gone.record(OperationType::DeleteService, None);
    assert_eq!(
        gone.settle(&delete).await.status,
        OperationStatus::Succeeded
    );
    *store.arn.lock().unwrap() = Some(gone.service.arn.clone());
    // The other service's life goes on: an update, and passes of every loop.
    let update = kept.record(OperationType::UpdateService, Some(spec("good:v3")));
    assert_eq!(
        kept.settle(&update).await.status,
        OperationStatus::Succeeded
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.abort();
    assert_eq!(
        read.load(Ordering::SeqCst),
        0,
        "documents of the deleted service were read"
    );
    // They are still stored.
    let tx = store.read().unwrap();
    assert!(
        tx.load::<ServiceState>(&gone.service.arn)
            .unwrap()
            .is_some()
    );
}
