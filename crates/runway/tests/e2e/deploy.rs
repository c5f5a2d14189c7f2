//! Deployments end to end: an image pushed with skopeo, deployed through the API, served
//! by the router over HTTPS from a real container.

use crate::harness::{Server, assert_ok};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// Pushes the test app, packed as an OCI image, to the server's registry as `repo:tag`.
pub fn push_testapp(server: &Server, target: &str) {
    let dir = tempfile::tempdir().unwrap();
    runway_runtime::test_util::testapp_image(dir.path());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("oci:{}:testapp", dir.path().display()))
        .arg(format!("docker://{}/{target}", server.registry_host()))
        .output()
        .expect("run skopeo");
    assert_ok(&out, "skopeo copy");
}

/// Waits until the service's status is `want` (or fails naming what it is).
pub fn wait_status(server: &Server, arn: &str, want: &str) -> Value {
    wait_status_within(server, arn, want, Duration::from_secs(120))
}

/// Waits up to `limit` for the service to reach `want`; panics with its events and the
/// server's log if it does not.
pub fn wait_status_within(server: &Server, arn: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let service =
            server.aws(&["describe-service", "--service-arn", arn]).ok()["Service"].clone();
        if service["Status"] == want {
            return service;
        }
        if Instant::now() > deadline {
            let events = server
                .runway()
                .args(["events", service["ServiceName"].as_str().unwrap()])
                .output()
                .unwrap();
            panic!(
                "service is {} not {want}\nevents:\n{}\nlog:\n{}",
                service["Status"],
                String::from_utf8_lossy(&events.stdout),
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `curl` through the router's HTTPS listener for `host`, trusting runway's CA; returns
/// (status, body).
pub fn get(server: &Server, host: &str, path: &str) -> (u16, String) {
    let port = server.https.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--max-time", "30"])
        .arg("--cacert")
        .arg(server.data_dir().join("certs/ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match status.trim().parse() {
        Ok(status) if status > 0 => (status, body.to_string()),
        _ => (
            0,
            format!("curl failed: {}", String::from_utf8_lossy(&out.stderr)),
        ),
    }
}

#[test]
fn an_image_pushed_and_deployed_is_served_over_https() {
    let server = Server::start();
    push_testapp(&server, "hello:v1");
    let input = json!({
        "ServiceName": "hello",
        "SourceConfiguration": {
            "ImageRepository": {
                "ImageIdentifier": format!("{}/hello:v1", server.registry_host()),
                "ImageRepositoryType": "ECR",
                "ImageConfiguration": { "Port": "8080", "RuntimeEnvironmentVariables": { "GREETING": "hi there" } }
            }
        },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1 }
    });
    let created = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok();
    let arn = created["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(&server, &arn, "RUNNING");
    let host = service["ServiceUrl"].as_str().unwrap();

    let (status, body) = get(&server, host, "/env");
    assert_eq!(status, 200, "{body}");
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["GREETING"], "hi there");
    assert_eq!(env["PORT"], "8080");
    // As on App Runner, the instance knows its region (the service ARN's) for AWS SDKs.
    let region = arn.split(':').nth(3).unwrap();
    assert_eq!(env["AWS_REGION"], region);
    assert_eq!(env["AWS_DEFAULT_REGION"], region);

    let ops = server.aws(&["list-operations", "--service-arn", &arn]).ok();
    assert_eq!(ops["OperationSummaryList"][0]["Status"], "SUCCEEDED");
    assert!(ops["OperationSummaryList"][0]["EndedAt"].is_string());

    // Plain HTTP is redirected to HTTPS.
    let port = server.http.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("http://{host}:{port}/env"))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("308 https://"), "{answer}");

    let (status, _) = get(&server, "nobody.runway.localhost", "/");
    assert_eq!(status, 404);
}

/// Calls one of runway's extension operations.
pub fn extension(server: &Server, operation: &str, body: Value) -> Value {
    let body = body.to_string();
    let (status, out) = server.raw(crate::harness::RawRequest {
        operation,
        prefix: "Runway",
        body: &body,
        ..Default::default()
    });
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

fn image_input(server: &Server, repo: &str, env: Value) -> Value {
    json!({
        "ImageIdentifier": format!("{}/{repo}:v1", server.registry_host()),
        "ImageRepositoryType": "ECR",
        "ImageConfiguration": { "Port": "8080", "RuntimeEnvironmentVariables": env }
    })
}

/// Creates a service running the test app with `env`, waits until it runs; returns its
/// ARN and host.
pub fn create_testapp(server: &Server, name: &str, env: Value, extra: Value) -> (String, String) {
    push_testapp(server, &format!("{name}:v1"));
    let mut input = json!({
        "ServiceName": name,
        "SourceConfiguration": { "ImageRepository": image_input(server, name, env) },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1, "Timeout": 1 }
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        input[k] = v;
    }
    let created = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok();
    let arn = created["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(server, &arn, "RUNNING");
    (arn, service["ServiceUrl"].as_str().unwrap().to_string())
}

/// Deploys the test app with new environment variables; returns the operation id.
pub fn update_env(server: &Server, arn: &str, name: &str, env: Value) -> String {
    let source = json!({ "ImageRepository": image_input(server, name, env) });
    let out = server
        .aws(&[
            "update-service",
            "--service-arn",
            arn,
            "--source-configuration",
            &source.to_string(),
        ])
        .ok();
    out["OperationId"].as_str().unwrap().to_string()
}

/// Waits until operation `id` has ended and returns its status.
pub fn wait_op(server: &Server, arn: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ops = server.aws(&["list-operations", "--service-arn", arn]).ok();
        let op = ops["OperationSummaryList"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["Id"] == id)
            .cloned()
            .expect("the operation is listed");
        let status = op["Status"].as_str().unwrap().to_string();
        if !["PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS"].contains(&status.as_str()) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "operation {id} is still {status}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn greeting(server: &Server, host: &str) -> String {
    let (status, body) = get(server, host, "/env");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["GREETING"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Service `name`'s instances as `runway instances ls` shows them, once there are `n`
/// (stopping ones are shown until their container is gone).
fn wait_instances(server: &Server, name: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server.runway_out(&["instances", "ls", name, "-o", "json"]);
        let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
        if listed.len() == n {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never had {n} instances: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether something answers HTTP at `address` (an instance's own, not the router's).
fn answers(address: &str) -> bool {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "2"])
        .arg(format!("http://{address}/"))
        .status()
        .unwrap()
        .success()
}

#[test]
fn updates_switch_without_dropping_a_request_and_bad_revisions_roll_back() {
    let server = Server::start();
    let (arn, host) = create_testapp(&server, "steady", json!({ "GREETING": "one" }), json!({}));
    assert_eq!(greeting(&server, &host), "one");

    // A steady request loop across the update: not one request may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (stop, host, https, ca) = (
            stop.clone(),
            host.clone(),
            server.https.clone(),
            server.data_dir().join("certs/ca.pem"),
        );
        std::thread::spawn(move || {
            let port = https.rsplit(':').next().unwrap().to_string();
            let (mut ok, mut failed, mut seen_two) = (0, Vec::new(), false);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args(["-s", "-w", "\n%{http_code}", "--max-time", "10", "--cacert"])
                    .arg(&ca)
                    .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                    .arg(format!("https://{host}:{port}/env"))
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.ends_with("\n200") {
                    ok += 1;
                    seen_two |= text.contains("\"two\"");
                } else {
                    failed.push(text);
                }
            }
            (ok, failed, seen_two)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let op = update_env(&server, &arn, "steady", json!({ "GREETING": "two" }));
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, seen_two) = looper.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the update: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(
        ok > 10 && seen_two,
        "the loop ran ({ok} requests) and saw the new revision"
    );
    assert_eq!(greeting(&server, &host), "two");

    // A revision that never gets healthy is rolled back; the previous one keeps serving.
    let op = update_env(
        &server,
        &arn,
        "steady",
        json!({ "GREETING": "three", "UNHEALTHY": "1" }),
    );
    assert_eq!(wait_op(&server, &arn, &op), "ROLLBACK_SUCCEEDED");
    assert_eq!(greeting(&server, &host), "two");
    assert_eq!(wait_status(&server, &arn, "RUNNING")["Status"], "RUNNING");

    // Rolling back redeploys the revision before the serving one, without rebuilding.
    let out = server.runway_out(&["rollback", "steady", "-o", "json"]);
    let op = serde_json::from_str::<Value>(&out).unwrap()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(greeting(&server, &host), "one");

    let revisions = extension(&server, "ListRevisions", json!({ "ServiceArn": arn }));
    let statuses: Vec<&str> = revisions["Revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["SERVING", "FAILED", "RETIRED", "RETIRED"],
        "{revisions}"
    );

    let events = server.runway_out(&["events", "steady"]);
    assert!(events.contains("Health check is successful"), "{events}");
    assert!(events.contains("Rolled back"), "{events}");
    let logs = server.runway_out(&["logs", "steady"]);
    assert!(!logs.trim().is_empty(), "the instances' output is readable");
    // Only the serving revision runs, once the failed one's instance has stopped.
    wait_instances(&server, "steady", 1);
}

#[test]
fn traffic_splits_by_percent_and_tags_name_revisions() {
    let server = Server::start();
    let (arn, host) = create_testapp(&server, "split", json!({ "GREETING": "a" }), json!({}));
    let op = update_env(&server, &arn, "split", json!({ "GREETING": "b" }));
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    let revisions = extension(&server, "ListRevisions", json!({ "ServiceArn": arn }));
    let ids: Vec<String> = revisions["Revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RevisionId"].as_str().unwrap().to_string())
        .collect();
    let (b, a) = (&ids[0], &ids[1]);
    server.runway_out(&[
        "traffic",
        "split",
        &format!("{a}=50:blue"),
        &format!("{b}=50:green"),
    ]);

    // One curl, one thousand requests: count which revision answered each.
    let port = server.https.rsplit(':').next().unwrap();
    let url = format!("https://{host}:{port}/env");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--cacert"])
        .arg(server.data_dir().join("certs/ca.pem"));
    cmd.args(["--resolve", &format!("{host}:{port}:127.0.0.1")]);
    for _ in 0..1000 {
        cmd.arg(&url);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (count_a, count_b) = (
        text.matches("\"GREETING\":\"a\"").count(),
        text.matches("\"GREETING\":\"b\"").count(),
    );
    assert_eq!(count_a + count_b, 1000, "every request answered");
    assert!(
        (400..=600).contains(&count_a),
        "a 50/50 split gave {count_a} / {count_b}"
    );

    assert_eq!(greeting(&server, &format!("blue---{host}")), "a");
    assert_eq!(greeting(&server, &format!("green---{host}")), "b");
}

#[test]
fn pause_resume_and_delete() {
    let server = Server::start();
    let (arn, host) = create_testapp(
        &server,
        "pausable",
        json!({ "GREETING": "hello" }),
        json!({}),
    );
    // The test app sets no handler for SIGTERM (as many apps do), so its instances run
    // on for the whole stop grace period: a pause or delete ends only after that.
    let address = |server: &Server| {
        wait_instances(server, "pausable", 1)[0]["Address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before_pause = address(&server);
    let op = server.aws(&["pause-service", "--service-arn", &arn]).ok()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(wait_status(&server, &arn, "PAUSED")["Status"], "PAUSED");
    assert!(!answers(&before_pause), "paused while its instance runs");
    let (status, body) = get(&server, &host, "/env");
    assert_eq!(status, 503, "{body}");

    let op = server.aws(&["resume-service", "--service-arn", &arn]).ok()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    wait_status(&server, &arn, "RUNNING");
    assert_eq!(greeting(&server, &host), "hello");

    let before_delete = address(&server);
    let op = server.aws(&["delete-service", "--service-arn", &arn]).ok()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    let service = server
        .aws(&["describe-service", "--service-arn", &arn])
        .ok();
    assert_eq!(service["Service"]["Status"], "DELETED");
    assert!(!answers(&before_delete), "deleted while its instance runs");
    assert!(service["Service"]["DeletedAt"].is_string());
    let (status, _) = get(&server, &host, "/env");
    assert_eq!(status, 404);
    let listed = server.aws(&["list-services"]).ok();
    assert_eq!(listed["ServiceSummaryList"], json!([]));
}

fn desired(server: &Server, arn: &str) -> i64 {
    let revisions = extension(server, "ListRevisions", json!({ "ServiceArn": arn }));
    revisions["Revisions"][0]["DesiredInstances"]
        .as_i64()
        .unwrap_or(0)
}

fn wait_desired(server: &Server, arn: &str, what: &str, ok: impl Fn(i64) -> bool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = desired(server, arn);
        if ok(n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "instances never became {what} (now {n}):\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Creates an auto scaling configuration through the raw API (MinSize 0 is runway's
/// extension, which the AWS CLI's own checks refuse).
fn scaling_config(server: &Server, name: &str, max_concurrency: u32, min: u32, max: u32) -> String {
    let body = json!({ "AutoScalingConfigurationName": name, "MaxConcurrency": max_concurrency, "MinSize": min, "MaxSize": max })
        .to_string();
    let (status, out) = server.raw(crate::harness::RawRequest {
        operation: "CreateAutoScalingConfiguration",
        body: &body,
        ..Default::default()
    });
    assert_eq!(status, 200, "{out}");
    out["AutoScalingConfiguration"]["AutoScalingConfigurationArn"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn load_scales_out_and_back_in() {
    let server = Server::start_with(&[
        "--autoscale-stable-window",
        "6",
        "--autoscale-panic-window",
        "2",
        "--drain-timeout",
        "2",
    ]);
    let asc = scaling_config(&server, "tight", 2, 1, 4);
    let (arn, host) = create_testapp(
        &server,
        "busy",
        json!({}),
        json!({ "AutoScalingConfigurationArn": asc }),
    );
    assert_eq!(desired(&server, &arn), 1);

    // Eight requests at a time, each holding its instance for a second: four times what
    // one instance takes (MaxConcurrency 2).
    let port = server.https.rsplit(':').next().unwrap().to_string();
    let load = |seconds: u64| {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (host, port, ca) = (
                    host.clone(),
                    port.clone(),
                    server.data_dir().join("certs/ca.pem"),
                );
                std::thread::spawn(move || {
                    let mut failed = 0;
                    while Instant::now() < deadline {
                        let out = Command::new("curl")
                            .args([
                                "-s",
                                "-o",
                                "/dev/null",
                                "-w",
                                "%{http_code}",
                                "--max-time",
                                "60",
                                "--cacert",
                            ])
                            .arg(&ca)
                            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                            .arg(format!("https://{host}:{port}/sleep?ms=1000"))
                            .output()
                            .unwrap();
                        failed += usize::from(String::from_utf8_lossy(&out.stdout) != "200");
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    };
    let failed = std::thread::scope(|s| {
        let loader = s.spawn(|| load(15));
        let scaled = wait_desired(&server, &arn, "more than one", |n| n > 1);
        assert!(scaled <= 4, "MaxSize bounds it: {scaled}");
        loader.join().unwrap()
    });
    assert_eq!(failed, 0, "requests wait in the queue rather than fail");
    // Idle again: back to MinSize once the stable window has passed.
    wait_desired(&server, &arn, "one again", |n| n == 1);
    // The scaled-in instances are stopped.
    wait_instances(&server, "busy", 1);
}

#[test]
fn an_idle_service_scales_to_zero_and_a_request_wakes_it() {
    let server = Server::start_with(&[
        "--autoscale-stable-window",
        "4",
        "--scale-to-zero-grace",
        "3",
    ]);
    let asc = scaling_config(&server, "sleepy", 10, 0, 2);
    let (arn, host) = create_testapp(
        &server,
        "sleepy",
        json!({ "GREETING": "awake" }),
        json!({ "AutoScalingConfigurationArn": asc }),
    );
    wait_desired(&server, &arn, "zero", |n| n == 0);
    // The last instance is stopped.
    wait_instances(&server, "sleepy", 0);
    // The request waits in the router's queue while an instance starts.
    assert_eq!(greeting(&server, &host), "awake");
    assert!(desired(&server, &arn) >= 1);
}

#[test]
fn apps_outlive_a_killed_server_and_deployments_finish_after_restart() {
    let mut server = Server::start();
    let (arn, host) = create_testapp(
        &server,
        "sturdy",
        json!({ "GREETING": "before" }),
        json!({}),
    );
    let before = server.runway_out(&["instances", "ls", "sturdy", "-o", "json"]);
    let before: Value = serde_json::from_str(&before).unwrap();
    let address = before[0]["Address"].as_str().unwrap().to_string();

    // Kill -9 in the middle of a deployment.
    let op = update_env(&server, &arn, "sturdy", json!({ "GREETING": "after" }));
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    // The instance keeps serving while runway is down.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://{address}/env"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("before"),
        "the app died with runway"
    );

    server.relaunch();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(greeting(&server, &host), "after");
    // No instance duplicated or orphaned, once the old revision's has stopped.
    let after = wait_instances(&server, "sturdy", 1);
    assert_eq!(after[0]["Restarts"], 0);
}

#[test]
fn images_from_another_registry_are_pulled_through_once() {
    let upstream = Server::api_only();
    push_testapp(&upstream, "public/app:v1");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-d",
            r#"{"enabled": true}"#,
        ])
        .args(["-u", &upstream.creds()])
        .arg(format!(
            "{}/runway/v1/repositories/public/app/anonymous-pull",
            upstream.registry
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    let server = Server::start();
    let input = json!({
        "ServiceName": "pulled",
        "SourceConfiguration": { "ImageRepository": {
            "ImageIdentifier": format!("{}/public/app:v1", upstream.registry_host()),
            "ImageRepositoryType": "ECR_PUBLIC"
        }}
    });
    let arn = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok()["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(&server, &arn, "RUNNING");
    let (status, _) = get(&server, service["ServiceUrl"].as_str().unwrap(), "/healthz");
    assert_eq!(status, 200);
    let repositories = server.runway_out(&["registry", "ls"]);
    assert!(
        repositories.contains("public/app"),
        "the image was copied into runway's registry: {repositories}"
    );

    // An upstream that cannot be reached fails the create, naming the registry.
    let input = json!({
        "ServiceName": "unreachable",
        "SourceConfiguration": { "ImageRepository": {
            "ImageIdentifier": "127.0.0.1:9/nothing/here:v1",
            "ImageRepositoryType": "ECR_PUBLIC"
        }}
    });
    let arn = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok()["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, &arn, "CREATE_FAILED");
    let events = server.runway_out(&["events", "unreachable"]);
    assert!(events.contains("127.0.0.1:9"), "{events}");
}

#[test]
fn private_upstream_images_are_pulled_with_a_connections_credentials() {
    let upstream = Server::api_only();
    push_testapp(&upstream, "private/app:v1");
    let server = Server::start();
    let create = |name: &str, connection: Option<&str>| {
        let mut input = json!({
            "ServiceName": name,
            "SourceConfiguration": { "ImageRepository": {
                "ImageIdentifier": format!("{}/private/app:v1", upstream.registry_host()),
                "ImageRepositoryType": "ECR"
            }}
        });
        if let Some(arn) = connection {
            input["SourceConfiguration"]["AuthenticationConfiguration"] =
                json!({ "ConnectionArn": arn });
        }
        server
            .aws(&["create-service", "--cli-input-json", &input.to_string()])
            .ok()["Service"]["ServiceArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Without credentials the upstream refuses, and the create fails naming it.
    let arn = create("anonymous", None);
    wait_status(&server, &arn, "CREATE_FAILED");
    let ops = server.aws(&["list-operations", "--service-arn", &arn]).ok();
    let events = server.runway_out(&["events", "anonymous"]);
    assert!(events.contains(upstream.registry_host()), "{events}\n{ops}");

    // A connection with the upstream's user name and password pulls it.
    let connection = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "upstream",
            "--provider-type",
            "REGISTRY",
        ])
        .ok()["Connection"]["ConnectionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let (user, password) = upstream
        .creds()
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), &password).unwrap();
    server.runway_out(&[
        "connections",
        "credentials",
        "upstream",
        "--username",
        &user,
        "--token-file",
        dir.path().join("password").to_str().unwrap(),
    ]);
    let arn = create("withcreds", Some(&connection));
    let service = wait_status(&server, &arn, "RUNNING");
    let (status, _) = get(&server, service["ServiceUrl"].as_str().unwrap(), "/healthz");
    assert_eq!(status, 200);
}
