//! Private networking end to end: users' networks through the AWS CLI's `ec2` commands,
//! VPC connectors and VPC ingress connections through `apprunner`, with their errors; an
//! app built from source that queries PostgreSQL (in a namespace on a user subnet) with
//! psycopg through a connector, and cannot without one or once the rule is revoked; a
//! private service that answers a client inside its VPC and not on the public listener,
//! also while the server is killed and after it restarts (the router process holds the
//! endpoint's listener, and stops that of an endpoint deleted meanwhile); dual stack
//! (IPv6 clients, and instances that reach the internet over IPv6); and isolation
//! between services and from the host's ports that holds whatever networks they join.

use crate::deploy::{create_testapp, get, wait_op};
use crate::harness::{Aws, Server, assert_ok};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What `v` holds at `path`: member names, or indexes into arrays.
fn at_path<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, p| match p.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*p],
    })
}

/// The id a `create-*` answer carries at `path` (`Vpc.VpcId`).
fn id(v: &Value, path: &[&str]) -> String {
    let v = at_path(v, path);
    v.as_str()
        .unwrap_or_else(|| panic!("no {path:?} in {v}"))
        .to_string()
}

/// The error code of a failed CLI call, checking its message names `mentions`.
#[track_caller]
fn err(out: Aws, mentions: &str) -> String {
    let (kind, message) = out.err();
    assert!(
        message.contains(mentions),
        "{kind}: {message:?} should mention {mentions:?}"
    );
    kind
}

#[test]
fn networks_connectors_and_ingress_connections_through_the_aws_cli_with_their_errors() {
    let server = Server::api_only();
    let vpc = id(
        &server
            .ec2(&["create-vpc", "--cidr-block", "10.30.0.0/16"])
            .ok(),
        &["Vpc", "VpcId"],
    );
    let created = server
        .ec2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.30.1.0/24",
        ])
        .ok();
    let subnet = id(&created, &["Subnet", "SubnetId"]);
    assert_eq!(
        created["Subnet"]["State"], "pending",
        "no network loop runs here"
    );
    assert_eq!(created["Subnet"]["AvailableIpAddressCount"], 251);
    let listed = server
        .ec2(&[
            "describe-subnets",
            "--filters",
            &format!("Name=vpc-id,Values={vpc}"),
        ])
        .ok();
    let bridge = listed["Subnets"][0]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Key"] == "runway:interface")
        .expect("the subnet's interface tag")["Value"]
        .clone();
    assert!(bridge.as_str().unwrap().starts_with("rs"), "{bridge}");

    // A security group of another network, for the bad input below.
    let other_vpc = id(
        &server
            .ec2(&["create-vpc", "--cidr-block", "10.31.0.0/16"])
            .ok(),
        &["Vpc", "VpcId"],
    );
    let group_in = |vpc: &str| {
        id(
            &server
                .ec2(&[
                    "create-security-group",
                    "--group-name",
                    "db",
                    "--description",
                    "database access",
                    "--vpc-id",
                    vpc,
                ])
                .ok(),
            &["GroupId"],
        )
    };
    let (group, other_group) = (group_in(&vpc), group_in(&other_vpc));
    let added = server
        .ec2(&[
            "authorize-security-group-egress",
            "--group-id",
            &group,
            "--ip-permissions",
            "IpProtocol=tcp,FromPort=5432,ToPort=5432,IpRanges=[{CidrIp=10.30.1.0/24,Description=postgres}]",
        ])
        .ok();
    assert_eq!(added["SecurityGroupRules"][0]["CidrIpv4"], "10.30.1.0/24");
    let ingress_rule = server
        .ec2(&[
            "authorize-security-group-ingress",
            "--group-id",
            &group,
            "--protocol",
            "tcp",
            "--port",
            "443",
            "--cidr",
            "10.30.1.0/24",
        ])
        .ok();
    let ingress_rule = id(
        &ingress_rule["SecurityGroupRules"][0],
        &["SecurityGroupRuleId"],
    );
    let rules = server
        .ec2(&[
            "describe-security-group-rules",
            "--filters",
            &format!("Name=group-id,Values={group}"),
        ])
        .ok();
    assert_eq!(
        rules["SecurityGroupRules"].as_array().unwrap().len(),
        3,
        "everything out (as EC2 starts a group), 5432 out, 443 in: {rules}"
    );
    let revoked = server
        .ec2(&[
            "revoke-security-group-ingress",
            "--group-id",
            &group,
            "--security-group-rule-ids",
            &ingress_rule,
        ])
        .ok();
    assert_eq!(revoked["Return"], true);
    let described = server
        .ec2(&["describe-security-groups", "--group-ids", &group])
        .ok();
    assert_eq!(described["SecurityGroups"][0]["IpPermissions"], json!([]));
    assert_eq!(
        described["SecurityGroups"][0]["IpPermissionsEgress"][1]["FromPort"],
        5432
    );

    // Connectors: an unknown subnet, a group of another network.
    for (subnet, group, mentions) in [
        ("subnet-00000000", group.as_str(), "subnet-00000000"),
        (subnet.as_str(), other_group.as_str(), "belongs to"),
    ] {
        let bad = server.aws(&[
            "create-vpc-connector",
            "--vpc-connector-name",
            "dbconn",
            "--subnets",
            subnet,
            "--security-groups",
            group,
        ]);
        assert_eq!(err(bad, mentions), "InvalidRequestException");
    }
    let connector = server
        .aws(&[
            "create-vpc-connector",
            "--vpc-connector-name",
            "dbconn",
            "--subnets",
            &subnet,
            "--security-groups",
            &group,
            "--tags",
            "Key=team,Value=data",
        ])
        .ok()["VpcConnector"]
        .clone();
    assert_eq!(connector["Status"], "ACTIVE");
    assert_eq!(connector["VpcConnectorRevision"], 1);
    let connector_arn = id(&connector, &["VpcConnectorArn"]);
    let described = server
        .aws(&[
            "describe-vpc-connector",
            "--vpc-connector-arn",
            &connector_arn,
        ])
        .ok();
    assert_eq!(described["VpcConnector"]["Subnets"], json!([subnet]));
    let listed = server.aws(&["list-vpc-connectors"]).ok();
    assert_eq!(
        listed["VpcConnectors"].as_array().unwrap().len(),
        1,
        "the bad calls made nothing: {listed}"
    );
    let interfaces = server.ec2(&["describe-network-interfaces"]).ok();
    assert_eq!(
        interfaces["NetworkInterfaces"][0]["PrivateIpAddress"], "10.30.1.254",
        "the connector's address in its subnet: {interfaces}"
    );

    // A private service using the connector; deleting the connector it uses is refused.
    let network = json!({
        "EgressConfiguration": { "EgressType": "VPC", "VpcConnectorArn": connector_arn },
        "IngressConfiguration": { "IsPubliclyAccessible": false }
    });
    let service = server
        .aws(&[
            "create-service",
            "--service-name",
            "private-app",
            "--source-configuration",
            r#"{"ImageRepository": {"ImageIdentifier": "127.0.0.1:5000/app:v1", "ImageRepositoryType": "ECR"}}"#,
            "--network-configuration",
            &network.to_string(),
        ])
        .ok()["Service"]
        .clone();
    let service_arn = id(&service, &["ServiceArn"]);
    for part in ["EgressConfiguration", "IngressConfiguration"] {
        assert_eq!(service["NetworkConfiguration"][part], network[part]);
    }
    let in_use = server.aws(&[
        "delete-vpc-connector",
        "--vpc-connector-arn",
        &connector_arn,
    ]);
    assert_eq!(err(in_use, "private-app"), "InvalidRequestException");

    // An interface endpoint and an ingress connection.
    let endpoint = server
        .ec2(&[
            "create-vpc-endpoint",
            "--vpc-id",
            &vpc,
            "--vpc-endpoint-type",
            "Interface",
            "--service-name",
            "com.amazonaws.us-east-1.apprunner.requests",
            "--subnet-ids",
            &subnet,
            "--security-group-ids",
            &group,
        ])
        .ok()["VpcEndpoint"]
        .clone();
    assert_eq!(endpoint["State"], "pending");
    let endpoint_id = id(&endpoint, &["VpcEndpointId"]);
    let endpoints = server
        .ec2(&["describe-vpc-endpoints", "--vpc-endpoint-ids", &endpoint_id])
        .ok();
    assert_eq!(
        endpoints["VpcEndpoints"][0]["Groups"][0]["GroupId"],
        group.as_str()
    );
    let config = format!("VpcId={vpc},VpcEndpointId={endpoint_id}");
    let connection = server
        .aws(&[
            "create-vpc-ingress-connection",
            "--service-arn",
            &service_arn,
            "--vpc-ingress-connection-name",
            "private-in",
            "--ingress-vpc-configuration",
            &config,
        ])
        .ok()["VpcIngressConnection"]
        .clone();
    assert_eq!(connection["Status"], "PENDING_CREATION");
    assert_eq!(connection["DomainName"], service["ServiceUrl"]);
    assert_eq!(connection["AccountId"], "000000000000");
    let connection_arn = id(&connection, &["VpcIngressConnectionArn"]);
    let described = server
        .aws(&[
            "describe-vpc-ingress-connection",
            "--vpc-ingress-connection-arn",
            &connection_arn,
        ])
        .ok();
    assert_eq!(
        described["VpcIngressConnection"]["IngressVpcConfiguration"]["VpcEndpointId"],
        endpoint_id.as_str()
    );
    let listed = server
        .aws(&[
            "list-vpc-ingress-connections",
            "--filter",
            &format!("ServiceArn={service_arn}"),
        ])
        .ok();
    assert_eq!(
        listed["VpcIngressConnectionSummaryList"],
        json!([{"VpcIngressConnectionArn": connection_arn, "ServiceArn": service_arn}])
    );
    // Until the router serves it, it can be neither updated nor deleted (as in App Runner).
    let update = server.aws(&[
        "update-vpc-ingress-connection",
        "--vpc-ingress-connection-arn",
        &connection_arn,
        "--ingress-vpc-configuration",
        &config,
    ]);
    assert_eq!(err(update, "PENDING_CREATION"), "InvalidStateException");
    let delete = server.aws(&[
        "delete-vpc-ingress-connection",
        "--vpc-ingress-connection-arn",
        &connection_arn,
    ]);
    assert_eq!(err(delete, "PENDING_CREATION"), "InvalidStateException");

    // The rest of the bad input, with boto3 (one process, many calls).
    server.boto3("networks.py");

    // The same resources with `runway networks`.
    let runway = |args: &[&str]| {
        let out = server.runway().arg("networks").args(args).output().unwrap();
        assert_ok(&out, &format!("runway networks {args:?}"))
            .trim()
            .to_string()
    };
    let vpc = runway(&["create", "10.50.0.0/16", "--name", "lab"]);
    assert!(vpc.starts_with("vpc-"), "{vpc}");
    let created = runway(&["subnet", &vpc, "10.50.1.0/24", "--interface", "lab0"]);
    let subnet = created.split_whitespace().next().unwrap().to_string();
    assert!(created.contains("on lab0 (pending"), "{created}");
    let group = runway(&["group", &vpc, "web"]);
    let rule = runway(&[
        "allow",
        &group,
        "ingress",
        "--cidr",
        "10.50.1.0/24",
        "--port",
        "443",
    ]);
    assert!(rule.starts_with("sgr-"), "{rule}");
    let connector = runway(&[
        "connector",
        "lab-conn",
        "--subnet",
        &subnet,
        "--group",
        &group,
    ]);
    let endpoint = runway(&["endpoint", &vpc, "--subnet", &subnet, "--group", &group]);
    let listed = runway(&["ls"]);
    for expected in [
        format!("{vpc}  10.50.0.0/16"),
        format!("{subnet}  {vpc}  10.50.1.0/24  lab0"),
        "tcp 443 10.50.1.0/24".to_string(),
        endpoint.clone(),
        "lab-conn".to_string(),
    ] {
        assert!(listed.contains(&expected), "{expected:?} not in\n{listed}");
    }
    let out = server
        .runway()
        .args(["networks", "rm", &subnet])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DependencyViolation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runway(&["revoke", &group, "ingress", &rule]);
    runway(&["rm", &endpoint, &connector, &subnet, &group, &vpc]);
    let listed = runway(&["ls", "--output", "json"]);
    assert!(!listed.contains(&vpc), "{listed}");
}

/// A subnet `10.<a>.<b>.0/24` in VPC `10.<a>.0.0/16`, and an "internet" `198.18.<b>.0/24`,
/// that no route of this host overlaps (tests run in parallel, and servers' bridges come
/// and go).
fn free_subnet() -> (String, String, [u8; 2]) {
    let routes = Command::new("ip")
        .args(["-4", "-o", "route"])
        .output()
        .unwrap();
    let taken: Vec<runway_model::Subnet> = String::from_utf8_lossy(&routes.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|dst| {
            let (addr, prefix) = dst.split_once('/').unwrap_or((dst, "32"));
            runway_model::Subnet::covering(addr.parse().ok()?, prefix.parse().ok()?)
        })
        .collect();
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    for i in 0..200u32 {
        let n = seed.wrapping_add(i.wrapping_mul(7919));
        let (a, b) = (244 + (n % 8) as u8, (n / 8 % 256) as u8);
        let subnet: runway_model::Subnet = format!("10.{a}.{b}.0/24").parse().unwrap();
        let wan: runway_model::Subnet = format!("198.18.{b}.0/24").parse().unwrap();
        if !taken
            .iter()
            .any(|t| t.overlaps(&subnet) || t.overlaps(&wan))
        {
            return (format!("10.{a}.0.0/16"), subnet.to_string(), [a, b]);
        }
    }
    panic!("no free subnet in 10.244.0.0/13");
}

/// An "internet" for one server: a namespace behind a veth from the host (198.18.<b>.1,
/// and .7 for a static egress address; fd52:7e5a:<b>::1 over IPv6) whose servers at .2
/// and ::2, port 9000, answer every connection with the address it came from. Removed
/// when dropped.
struct Wan {
    veth: String,
    ns: String,
    server: Child,
}

impl Wan {
    fn start(server: &Server, b: u8) -> Wan {
        let ns = format!("runway-{}-wan", server.bridge);
        let veth = format!("{}w", server.bridge);
        run(Command::new("ip").args(["netns", "add", &ns]));
        let wan = |server| Wan {
            veth: veth.clone(),
            ns: ns.clone(),
            server,
        };
        run(Command::new("ip").args([
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]));
        for addr in [1, 7] {
            run(Command::new("ip").args([
                "addr",
                "add",
                &format!("198.18.{b}.{addr}/24"),
                "dev",
                &veth,
            ]));
        }
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}1/64", wan6_prefix(b)),
            "dev",
            &veth,
            "nodad",
        ]));
        run(Command::new("ip").args(["link", "set", &veth, "up"]));
        run(Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("198.18.{b}.2/24"),
            "dev",
            "eth0",
        ]));
        run(Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}2/64", wan6_prefix(b)),
            "dev",
            "eth0",
            "nodad",
        ]));
        run(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg(format!(
                "import socket, threading\n\
                 def serve(family, addr):\n\
                 \x20   s = socket.socket(family)\n\
                 \x20   s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 \x20   s.bind((addr, 9000))\n\
                 \x20   s.listen()\n\
                 \x20   while True:\n\
                 \x20       c, peer = s.accept()\n\
                 \x20       c.sendall(peer[0].encode() + b'\\n')\n\
                 \x20       c.close()\n\
                 threading.Thread(target=serve, args=(socket.AF_INET6, '{}2'), daemon=True).start()\n\
                 serve(socket.AF_INET, '198.18.{b}.2')\n",
                wan6_prefix(b)
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wan(child)
    }
}

/// The IPv6 network of [`Wan`] `b`, up to its last group (`fd52:7e5a:<b>::`).
fn wan6_prefix(b: u8) -> String {
    format!("fd52:7e5a:{b:x}::")
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A network namespace with one leg on a bridge, removed when dropped (and by the
/// server's purge, since it carries the server's bridge in its name).
struct Namespace {
    name: String,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert_ok(&out, &format!("{cmd:?}"));
    out
}

impl Namespace {
    fn on(server: &Server, bridge: &str, suffix: &str, addr: &str) -> Namespace {
        let name = format!("runway-{}-{suffix}", server.bridge);
        let veth = format!("{}{suffix}", server.bridge);
        let ns = Namespace { name: name.clone() };
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args([
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]));
        run(Command::new("ip").args(["link", "set", &veth, "master", bridge, "up"]));
        run(Command::new("ip").args(["-n", &name, "addr", "add", addr, "dev", "eth0"]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "eth0", "up"]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        ns
    }

    /// `cmd` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// `curl` from inside the namespace to the service `host` at `addr`:443, trusting
    /// runway's CA; (status, body), status 0 when nothing answered.
    fn https_get(&self, server: &Server, host: &str, addr: &str) -> (u16, String) {
        let out = self
            .command("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--max-time", "5"])
            .arg("--cacert")
            .arg(server.data_dir().join("certs/ca.pem"))
            .args(["--resolve", &format!("{host}:443:{addr}")])
            .arg(format!("https://{host}/"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// PostgreSQL (Debian's) serving in a namespace, stopped and removed when dropped.
struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
}

const PG_PASSWORD: &str = "pets-secret";

impl Postgres {
    /// Starts a cluster listening on `addr`:5432 inside `ns`, with a role `app` (password
    /// [`PG_PASSWORD`], allowed from `clients`) owning a database `pets` with two rows.
    fn start(ns: &Namespace, addr: &str, clients: &str) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .max()
            .expect("a PostgreSQL version");
        let dir = tempfile::Builder::new()
            .prefix("runway-pg-")
            .tempdir()
            .unwrap();
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path()));
        let data = dir.path().join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
                "-D",
            ])
            .arg(&data));
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str(&format!("host all all {clients} scram-sha-256\n"));
        std::fs::write(&hba, rules).unwrap();
        let child = ns
            .command("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", &format!("listen_addresses={addr}")])
            .args([
                "-c",
                &format!("unix_socket_directories={}", dir.path().display()),
            ])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres { child, dir };
        let psql = |db: &str, user: &str, sql: &str| {
            Command::new(bin.join("psql"))
                .args(["-h"])
                .arg(pg.dir.path())
                .args(["-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql])
                .output()
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !psql("postgres", "postgres", "SELECT 1").status.success() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        for (db, user, sql) in [
            (
                "postgres",
                "postgres",
                format!("CREATE ROLE app LOGIN PASSWORD '{PG_PASSWORD}'"),
            ),
            (
                "postgres",
                "postgres",
                "CREATE DATABASE pets OWNER app".to_string(),
            ),
            (
                "pets",
                "app",
                "CREATE TABLE pets (name text); INSERT INTO pets VALUES ('rex'), ('tom')".into(),
            ),
        ] {
            assert_ok(&psql(db, user, &sql), &sql);
        }
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // `ip netns exec` runs runuser, which runs postgres: stop the postmaster itself.
        let pid_file = self.dir.path().join("data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
        {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `describe` until `field` of its answer is `want`.
/// A private service (`hidden`, not publicly accessible) in `vpc`, served through an
/// interface endpoint in `subnet` to `client` alone (a security group admitting it on
/// 443), and its VPC ingress connection (`hidden-in`).
struct Private {
    endpoint: String,
    endpoint_ip: String,
    arn: String,
    host: String,
    connection: String,
}

/// An interface endpoint for App Runner requests in `subnet` with security group
/// `group`, once available: its id and its address.
fn interface_endpoint(server: &Server, vpc: &str, subnet: &str, group: &str) -> (String, String) {
    let endpoint = id(
        &server
            .ec2(&[
                "create-vpc-endpoint",
                "--vpc-id",
                vpc,
                "--vpc-endpoint-type",
                "Interface",
                "--service-name",
                "com.amazonaws.us-east-1.apprunner.requests",
                "--subnet-ids",
                subnet,
                "--security-group-ids",
                group,
            ])
            .ok()["VpcEndpoint"],
        &["VpcEndpointId"],
    );
    let described = wait_for(
        "the endpoint",
        "available",
        || {
            server
                .ec2(&["describe-vpc-endpoints", "--vpc-endpoint-ids", &endpoint])
                .ok()
        },
        &["VpcEndpoints", "0", "State"],
    );
    let eni = id(&described["VpcEndpoints"][0]["NetworkInterfaceIds"], &["0"]);
    let ip = id(
        &server
            .ec2(&[
                "describe-network-interfaces",
                "--network-interface-ids",
                &eni,
            ])
            .ok()["NetworkInterfaces"][0],
        &["PrivateIpAddress"],
    );
    (endpoint, ip)
}

fn private_service(server: &Server, vpc: &str, subnet: &str, client: &str) -> Private {
    let clients = id(
        &server
            .ec2(&[
                "create-security-group",
                "--group-name",
                "clients",
                "--description",
                "who may call private services",
                "--vpc-id",
                vpc,
            ])
            .ok(),
        &["GroupId"],
    );
    server
        .ec2(&[
            "authorize-security-group-ingress",
            "--group-id",
            &clients,
            "--protocol",
            "tcp",
            "--port",
            "443",
            "--cidr",
            &format!("{client}/32"),
        ])
        .ok();
    let (endpoint, endpoint_ip) = interface_endpoint(server, vpc, subnet, &clients);
    let (hidden_arn, hidden_host) = create_testapp(
        server,
        "hidden",
        json!({}),
        json!({ "NetworkConfiguration": { "IngressConfiguration": { "IsPubliclyAccessible": false } } }),
    );
    let connection = id(
        &server
            .aws(&[
                "create-vpc-ingress-connection",
                "--service-arn",
                &hidden_arn,
                "--vpc-ingress-connection-name",
                "hidden-in",
                "--ingress-vpc-configuration",
                &format!("VpcId={vpc},VpcEndpointId={endpoint}"),
            ])
            .ok()["VpcIngressConnection"],
        &["VpcIngressConnectionArn"],
    );
    Private {
        endpoint,
        endpoint_ip,
        arn: hidden_arn,
        host: hidden_host,
        connection,
    }
}

fn wait_for(what: &str, want: &str, describe: impl Fn() -> Value, field: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = describe();
        if at_path(&v, field) == want {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} is not {want}: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `curl` to the router's HTTPS listener over IPv6 (`[::1]`) for `host`.
fn https_v6(server: &Server, host: &str, path: &str) -> (u16, String) {
    let port = server.https.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--max-time", "10"])
        .arg("--cacert")
        .arg(server.data_dir().join("certs/ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:[::1]")])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The query app's answer to `path` (status and body).
fn ask(server: &Server, host: &str, path: &str) -> (u16, String) {
    get(server, host, path)
}

fn query_path(dsn: &str, sql: &str) -> String {
    let q = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("/query?dsn={}&sql={}", q(dsn), q(sql))
}

#[test]
fn apps_reach_a_database_through_a_connector_and_private_services_answer_inside_their_vpc() {
    let (vpc_cidr, cidr, [a, b]) = free_subnet();
    let at = |last: u8| format!("10.{a}.{b}.{last}");
    let static_egress = format!("198.18.{b}.7");
    let server = Server::start_with(&[
        "--runtime-image",
        "python3=runtimes/python3:latest",
        "--egress-address",
        &static_egress,
        // Dual-stack instances.
        "--ipv6-subnet",
        &format!("fd52:7e59:{a:x}{b:02x}::/64"),
        // A dual-stack listener, for IPv6 clients.
        "--https-listen",
        "[::]:0",
    ]);
    crate::source::import_base(&server, "python3");
    let _wan = Wan::start(&server, b);
    let outside = format!("/tcp?addr=198.18.{b}.2:9000");
    let outside6 = format!("/tcp?addr={}2:9000", wan6_prefix(b));

    // The network: a VPC, a subnet on a bridge runway makes, a group that lets only
    // PostgreSQL and the "internet" server out, a connector with a static outbound
    // address.
    let vpc = id(
        &server.ec2(&["create-vpc", "--cidr-block", &vpc_cidr]).ok(),
        &["Vpc", "VpcId"],
    );
    let subnet = id(
        &server
            .ec2(&["create-subnet", "--vpc-id", &vpc, "--cidr-block", &cidr])
            .ok(),
        &["Subnet", "SubnetId"],
    );
    let described = wait_for(
        "the subnet",
        "available",
        || {
            server
                .ec2(&["describe-subnets", "--subnet-ids", &subnet])
                .ok()
        },
        &["Subnets", "0", "State"],
    );
    let bridge = described["Subnets"][0]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Key"] == "runway:interface")
        .unwrap()["Value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    let group = id(
        &server
            .ec2(&[
                "create-security-group",
                "--group-name",
                "pg",
                "--description",
                "PostgreSQL only",
                "--vpc-id",
                &vpc,
            ])
            .ok(),
        &["GroupId"],
    );
    let all_out = server
        .ec2(&[
            "describe-security-group-rules",
            "--filters",
            &format!("Name=group-id,Values={group}"),
        ])
        .ok();
    let all_out = id(&all_out["SecurityGroupRules"][0], &["SecurityGroupRuleId"]);
    server
        .ec2(&[
            "revoke-security-group-egress",
            "--group-id",
            &group,
            "--security-group-rule-ids",
            &all_out,
        ])
        .ok();
    let pg_rule = server
        .ec2(&[
            "authorize-security-group-egress",
            "--group-id",
            &group,
            "--ip-permissions",
            &format!("IpProtocol=tcp,FromPort=5432,ToPort=5432,IpRanges=[{{CidrIp={cidr}}}]"),
        ])
        .ok();
    let pg_rule = id(&pg_rule["SecurityGroupRules"][0], &["SecurityGroupRuleId"]);
    server
        .ec2(&[
            "authorize-security-group-egress",
            "--group-id",
            &group,
            "--ip-permissions",
            &format!(
                "IpProtocol=tcp,FromPort=9000,ToPort=9000,IpRanges=[{{CidrIp=198.18.{b}.2/32}}]"
            ),
        ])
        .ok();
    let connector = id(
        &server
            .aws(&[
                "create-vpc-connector",
                "--vpc-connector-name",
                "pets-db",
                "--subnets",
                &subnet,
                "--security-groups",
                &group,
                "--tags",
                &format!("Key=runway:egress-address,Value={static_egress}"),
            ])
            .ok()["VpcConnector"],
        &["VpcConnectorArn"],
    );

    // PostgreSQL in the subnet.
    let db_ns = Namespace::on(&server, &bridge, "db", &format!("{}/24", at(10)));
    let _pg = Postgres::start(&db_ns, &at(10), &cidr);
    let dsn = format!(
        "host={} port=5432 dbname=pets user=app password={PG_PASSWORD}",
        at(10)
    );
    let pets = query_path(&dsn, "SELECT name FROM pets ORDER BY name");

    // The app, built from source, with default egress: it cannot reach the database.
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("pgquery");
    crate::source::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/apps/pgquery"),
        &source,
    );
    let out = server
        .runway()
        .args(["deploy", "--name", "pets", "--source"])
        .arg(&source)
        .output()
        .unwrap();
    let stdout = assert_ok(&out, "runway deploy --source (psycopg from PyPI)");
    assert!(stdout.contains("Successfully installed"), "{stdout}");
    let services = server.aws(&["list-services"]).ok();
    let arn = id(&services["ServiceSummaryList"][0], &["ServiceArn"]);
    let host = id(&services["ServiceSummaryList"][0], &["ServiceUrl"]);
    let (status, body) = ask(&server, &host, &pets);
    assert_eq!(
        status, 502,
        "default egress must not reach the subnet: {body}"
    );

    assert_eq!(
        https_v6(&server, &host, "/healthz").0,
        404,
        "an IPv4 service does not answer IPv6 clients"
    );
    let (status, body) = ask(&server, &host, &outside6);
    assert_eq!(
        status, 502,
        "an IPv4 service's instances have no IPv6: {body}"
    );

    // Dual stack: IPv6 clients are served, and instances reach the internet over IPv6
    // (from the host's address).
    let op = server.boto3_with(
        "vpc_egress.py",
        &[("SERVICE_ARN", &arn), ("CONNECTOR_ARN", "")],
    );
    assert_eq!(wait_op(&server, &arn, op.trim()), "SUCCEEDED");
    assert_eq!(
        https_v6(&server, &host, "/healthz"),
        (200, "ok".to_string()),
        "a dual-stack service answers IPv6 clients"
    );
    // The app prints the address in its canonical form ("fd52:7e5a::1" when b is 0).
    let wan6_host: std::net::Ipv6Addr = format!("{}1", wan6_prefix(b)).parse().unwrap();
    assert_eq!(
        ask(&server, &host, &outside6),
        (200, format!("open: {wan6_host}"))
    );
    let (status, body) = ask(&server, &host, &pets);
    assert_eq!(status, 502, "still no way into the subnet: {body}");
    // Nor the host's ports over IPv6, at its address on the instances' bridge or
    // elsewhere (runway-net's network test proves other services' instances out of
    // reach over IPv6 too).
    let host_port = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = host_port.local_addr().unwrap().port();
    for target in [
        format!("fd52:7e59:{a:x}{b:02x}::1:{port}"),
        format!("{}1:{port}", wan6_prefix(b)),
    ] {
        let (status, body) = ask(&server, &host, &format!("/tcp?addr={target}"));
        assert_eq!(
            status, 502,
            "the instance reached the host at {target}: {body}"
        );
    }
    drop(host_port);
    // Nor another dual-stack service's instance, nor it this one, over IPv6, though
    // both listen there.
    let ipv6: runway_net::Ipv6Subnet = format!("fd52:7e59:{a:x}{b:02x}::/64").parse().unwrap();
    let out = server
        .runway()
        .args(["deploy", "--name", "neighbour", "--source"])
        .arg(&source)
        .output()
        .unwrap();
    assert_ok(&out, "runway deploy --source (a second service)");
    let services = server.aws(&["list-services"]).ok();
    let neighbour = services["ServiceSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ServiceName"] == "neighbour")
        .unwrap()
        .clone();
    let (neighbour_arn, neighbour_host) = (
        id(&neighbour, &["ServiceArn"]),
        id(&neighbour, &["ServiceUrl"]),
    );
    let op = server.boto3_with(
        "vpc_egress.py",
        &[("SERVICE_ARN", &neighbour_arn), ("CONNECTOR_ARN", "")],
    );
    assert_eq!(wait_op(&server, &neighbour_arn, op.trim()), "SUCCEEDED");
    let address6 = |arn: &str| {
        let instances =
            crate::deploy::extension(&server, "ListInstances", json!({ "ServiceArn": arn }));
        let healthy = instances["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["State"] == "healthy")
            .unwrap_or_else(|| panic!("no healthy instance of {arn}: {instances}"));
        let address: std::net::SocketAddr = id(healthy, &["Address"]).parse().unwrap();
        let std::net::IpAddr::V4(v4) = address.ip() else {
            panic!("{address} is not an IPv4 address");
        };
        std::net::SocketAddr::from((ipv6.address_of(v4), address.port()))
    };
    for (from, to) in [
        (&host, address6(&neighbour_arn)),
        (&neighbour_host, address6(&arn)),
    ] {
        assert!(
            std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok(),
            "the probe works: the host reaches {to}"
        );
        let (status, body) = ask(
            &server,
            from,
            &format!("/tcp?addr={}:{}", to.ip(), to.port()),
        );
        assert_eq!(
            status, 502,
            "{from} reached another service at {to}: {body}"
        );
    }
    let (status, body) = ask(&server, &neighbour_host, &outside6);
    assert_eq!(
        status, 200,
        "the neighbour reaches the internet over IPv6: {body}"
    );

    // Switching to the connector is a deployment that drops no request.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = {
        let (stop, https, ca, host) = (
            stop.clone(),
            server.https.rsplit(':').next().unwrap().to_string(),
            server.data_dir().join("certs/ca.pem"),
            host.clone(),
        );
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "10",
                    ])
                    .arg("--cacert")
                    .arg(&ca)
                    .args(["--resolve", &format!("{host}:{https}:127.0.0.1")])
                    .arg(format!("https://{host}:{https}/healthz"))
                    .output()
                    .unwrap();
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                if code != "200" {
                    failed.push(code);
                }
            }
            failed
        })
    };
    let op = server.boto3_with(
        "vpc_egress.py",
        &[("SERVICE_ARN", &arn), ("CONNECTOR_ARN", &connector)],
    );
    assert_eq!(wait_op(&server, &arn, op.trim()), "SUCCEEDED");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        failures.join().unwrap(),
        Vec::<String>::new(),
        "requests failed during the switch"
    );
    let (status, body) = ask(&server, &host, &pets);
    assert_eq!((status, body.as_str()), (200, r#"[["rex"], ["tom"]]"#));
    assert_eq!(
        https_v6(&server, &host, "/healthz"),
        (200, "ok".to_string()),
        "still dual stack for clients"
    );
    let (status, body) = ask(&server, &host, &outside6);
    assert_eq!(
        status, 502,
        "a connector's instances are IPv4 only, as App Runner's VPC egress: {body}"
    );
    // Static outbound addresses: the connector's in its subnet, its egress address outside.
    let seen = query_path(&dsn, "SELECT host(inet_client_addr())");
    assert_eq!(
        ask(&server, &host, &seen),
        (200, format!(r#"[["{}"]]"#, at(254)))
    );
    assert_eq!(
        ask(&server, &host, &outside),
        (200, format!("open: {static_egress}"))
    );

    // A private service, served through an interface endpoint to one client address.
    let Private {
        endpoint,
        endpoint_ip,
        arn: hidden_arn,
        host: hidden_host,
        connection,
    } = private_service(&server, &vpc, &subnet, &at(20));
    let describe_connection = || {
        server
            .aws(&[
                "describe-vpc-ingress-connection",
                "--vpc-ingress-connection-arn",
                &connection,
            ])
            .ok()
    };
    wait_for(
        "the ingress connection",
        "AVAILABLE",
        describe_connection,
        &["VpcIngressConnection", "Status"],
    );
    let client = Namespace::on(&server, &bridge, "cl", &format!("{}/24", at(20)));
    let stranger = Namespace::on(&server, &bridge, "st", &format!("{}/24", at(21)));
    let (status, body) = client.https_get(&server, &hidden_host, &endpoint_ip);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("hello from runway-testapp"), "{body}");
    assert_eq!(
        get(&server, &hidden_host, "/").0,
        404,
        "a private service is not on the public listener"
    );
    assert_eq!(
        client.https_get(&server, &host, &endpoint_ip).0,
        404,
        "a public service is not served at the endpoint"
    );
    assert_eq!(
        stranger.https_get(&server, &hidden_host, &endpoint_ip).0,
        0,
        "the endpoint's group lets only {} in",
        at(20)
    );

    // Isolation, whatever networks instances join: the connector's instance reaches
    // neither another service's instance nor any of the host's addresses.
    let instances = crate::deploy::extension(
        &server,
        "ListInstances",
        json!({ "ServiceArn": hidden_arn }),
    );
    let hidden_instance = instances["Instances"][0]["Address"]
        .as_str()
        .unwrap()
        .to_string();
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_port.local_addr().unwrap().port();
    let runway_gateway = {
        let s: runway_model::Subnet = server.subnet.parse().unwrap();
        s.gateway().to_string()
    };
    for target in [
        hidden_instance,
        format!("{runway_gateway}:{port}"),
        format!("{}:{port}", at(1)),
        format!("{endpoint_ip}:443"),
    ] {
        let (status, body) = ask(&server, &host, &format!("/tcp?addr={target}"));
        assert_eq!(
            status, 502,
            "the connector's instance reached {target}: {body}"
        );
    }
    let (status, body) = ask(&server, &host, &format!("/tcp?addr={}:5432", at(10)));
    assert_eq!(
        (status, body.as_str()),
        (200, "open"),
        "the probe itself works"
    );
    drop(host_port);

    // Revoking the rule closes the way.
    server
        .ec2(&[
            "revoke-security-group-egress",
            "--group-id",
            &group,
            "--security-group-rule-ids",
            &pg_rule,
        ])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = ask(&server, &host, &pets);
        if status == 502 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked rule still lets the app through"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // An update goes through PENDING_UPDATE back to AVAILABLE, served all along.
    let updated = server
        .aws(&[
            "update-vpc-ingress-connection",
            "--vpc-ingress-connection-arn",
            &connection,
            "--ingress-vpc-configuration",
            &format!("VpcId={vpc},VpcEndpointId={endpoint}"),
        ])
        .ok();
    assert_eq!(updated["VpcIngressConnection"]["Status"], "PENDING_UPDATE");
    wait_for(
        "the updated ingress connection",
        "AVAILABLE",
        describe_connection,
        &["VpcIngressConnection", "Status"],
    );
    assert_eq!(client.https_get(&server, &hidden_host, &endpoint_ip).0, 200);

    // A deleted ingress connection is served no more.
    server
        .aws(&[
            "delete-vpc-ingress-connection",
            "--vpc-ingress-connection-arn",
            &connection,
        ])
        .ok();
    wait_for(
        "the ingress connection",
        "DELETED",
        describe_connection,
        &["VpcIngressConnection", "Status"],
    );
    assert_eq!(client.https_get(&server, &hidden_host, &endpoint_ip).0, 404);
}

/// A VPC with a subnet (`cidr`, on a bridge runway creates) and a private service
/// served at an endpoint there to clients at `client`, its ingress connection AVAILABLE.
struct InVpc {
    vpc: String,
    subnet: String,
    /// The subnet's bridge.
    bridge: String,
    private: Private,
}

fn private_service_in_a_new_vpc(
    server: &Server,
    vpc_cidr: &str,
    cidr: &str,
    client: &str,
) -> InVpc {
    let vpc = id(
        &server.ec2(&["create-vpc", "--cidr-block", vpc_cidr]).ok(),
        &["Vpc", "VpcId"],
    );
    let subnet = id(
        &server
            .ec2(&["create-subnet", "--vpc-id", &vpc, "--cidr-block", cidr])
            .ok(),
        &["Subnet", "SubnetId"],
    );
    let described = wait_for(
        "the subnet",
        "available",
        || {
            server
                .ec2(&["describe-subnets", "--subnet-ids", &subnet])
                .ok()
        },
        &["Subnets", "0", "State"],
    );
    let bridge = described["Subnets"][0]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Key"] == "runway:interface")
        .unwrap()["Value"]
        .as_str()
        .unwrap()
        .to_string();
    let private = private_service(server, &vpc, &subnet, client);
    let connection = private.connection.clone();
    wait_for(
        "the ingress connection",
        "AVAILABLE",
        || {
            server
                .aws(&[
                    "describe-vpc-ingress-connection",
                    "--vpc-ingress-connection-arn",
                    &connection,
                ])
                .ok()
        },
        &["VpcIngressConnection", "Status"],
    );
    InVpc {
        vpc,
        subnet,
        bridge,
        private,
    }
}

#[test]
fn a_private_service_is_served_at_its_endpoint_by_the_router_process_across_a_server_kill() {
    let (vpc_cidr, cidr, [a, b]) = free_subnet();
    let at = |last: u8| format!("10.{a}.{b}.{last}");
    let mut server = Server::start();
    let InVpc {
        bridge,
        private:
            Private {
                endpoint_ip,
                host: hidden_host,
                ..
            },
        ..
    } = private_service_in_a_new_vpc(&server, &vpc_cidr, &cidr, &at(20));
    let client = Namespace::on(&server, &bridge, "cl", &format!("{}/24", at(20)));
    let (status, body) = client.https_get(&server, &hidden_host, &endpoint_ip);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&server, &hidden_host, "/").0,
        404,
        "a private service is not on the public listener"
    );
    // The private listener lives in the router process: it serves while the server is
    // down, and the next server adopts it.
    server.kill();
    let (status, body) = client.https_get(&server, &hidden_host, &endpoint_ip);
    assert_eq!(status, 200, "served while the server is down: {body}");
    server.relaunch();
    // A starting server removes namespaces named like its own leftovers: the client's too.
    drop(client);
    let client = Namespace::on(&server, &bridge, "cl", &format!("{}/24", at(20)));
    let (status, body) = client.https_get(&server, &hidden_host, &endpoint_ip);
    assert_eq!(status, 200, "served after the restart: {body}");
    assert_eq!(get(&server, &hidden_host, "/").0, 404);

    // A server started with other router settings has a new router process take the
    // private listener over with the public ones it keeps.
    let router = server.router_pid().expect("a router process runs");
    drop(client);
    server.restart_with(&["--http-listen", "127.0.0.2:0"]);
    assert_ne!(
        server.router_pid(),
        Some(router),
        "the router process was replaced"
    );
    let client = Namespace::on(&server, &bridge, "cl", &format!("{}/24", at(20)));
    let (status, body) = client.https_get(&server, &hidden_host, &endpoint_ip);
    assert_eq!(status, 200, "served after the router's replacement: {body}");
    let router_log =
        std::fs::read_to_string(server.data_dir().join("logs/router.log")).unwrap_or_default();
    // Handed over, not bound again: only the public HTTP listener was dropped.
    assert_eq!(
        router_log.matches("private listener started").count(),
        1,
        "{router_log}"
    );
    assert_eq!(
        router_log
            .matches("closing a listener the new settings drop")
            .count(),
        1,
        "{router_log}"
    );
}

/// Whether something listens on TCP `ip`:443 in this (the router process's) namespace.
fn listens_on_443(ip: &str) -> bool {
    let out = Command::new("ss").args(["-Hltn"]).output().unwrap();
    let want = format!("{ip}:443");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(3) == Some(want.as_str()))
}

/// Waits up to 30 s for `listens_on_443(ip)` to be `want`.
fn wait_listening(ip: &str, want: bool, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while listens_on_443(ip) != want {
        assert!(
            Instant::now() < deadline,
            "{ip}:443 listening should be {want}:\n{}\n{}",
            server.log(),
            std::fs::read_to_string(server.data_dir().join("logs/router.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_endpoint_deleted_while_no_server_runs_loses_its_listener_at_the_next_start() {
    endpoint_deleted_while_no_server_runs(false);
}

#[test]
fn an_endpoint_deleted_while_no_server_runs_loses_its_listener_also_after_a_router_restart() {
    endpoint_deleted_while_no_server_runs(true);
}

/// An endpoint deleted while no server runs: the router process serves on with its
/// listener until the next server starts, which stops it (and keeps the other
/// endpoint's); with `restart_router`, a new router process takes the listener over in
/// between (`runway restart-router` while no server runs).
fn endpoint_deleted_while_no_server_runs(restart_router: bool) {
    let (vpc_cidr, cidr, [a, b]) = free_subnet();
    let at = |last: u8| format!("10.{a}.{b}.{last}");
    let mut server = Server::start();
    // An endpoint that stays, serving a private service...
    let InVpc {
        vpc,
        subnet,
        bridge,
        private:
            Private {
                endpoint_ip: kept_ip,
                host: hidden_host,
                ..
            },
    } = private_service_in_a_new_vpc(&server, &vpc_cidr, &cidr, &at(20));
    // ... and one that goes while no server runs.
    let group = id(
        &server
            .ec2(&[
                "create-security-group",
                "--group-name",
                "others",
                "--description",
                "callers of the endpoint that goes",
                "--vpc-id",
                &vpc,
            ])
            .ok(),
        &["GroupId"],
    );
    let (gone, gone_ip) = interface_endpoint(&server, &vpc, &subnet, &group);
    assert_ne!(gone_ip, kept_ip);
    wait_listening(&kept_ip, true, &server);
    wait_listening(&gone_ip, true, &server);

    // The endpoint goes while no server runs. No user command does that without a
    // server, so the store is changed as DeleteVpcEndpoints does (its interfaces
    // released, its record removed): a server killed right after such a delete, before
    // its network loop ran, leaves the same.
    let router = server.router_pid().expect("a router process runs");
    server.kill();
    {
        use runway_model::network::{InterfaceOwner, NetworkInterfaceRecord, VpcEndpointRecord};
        use runway_store::{Query, Store, Typed};
        let store = runway_store::SqliteStore::open(&server.data_dir().join("state.db")).unwrap();
        let mut tx = store.begin().unwrap();
        let owner = InterfaceOwner::Endpoint { id: gone.clone() };
        for (_, i) in tx
            .load_all::<NetworkInterfaceRecord>(&Query::default())
            .unwrap()
        {
            if i.owner == owner {
                assert!(tx.remove::<NetworkInterfaceRecord>(&i.id).unwrap());
            }
        }
        assert!(tx.remove::<VpcEndpointRecord>(&gone).unwrap());
        tx.commit().unwrap();
    }
    assert!(
        listens_on_443(&gone_ip),
        "the router process serves on while no server runs"
    );
    let router = if restart_router {
        server.restart_router();
        let new = server.router_pid().expect("a router process runs");
        assert_ne!(new, router, "a new router process took over");
        // Nobody told it the endpoint went: it takes the listener over with the rest.
        assert!(listens_on_443(&gone_ip));
        new
    } else {
        router
    };

    server.relaunch();
    assert_eq!(
        server.router_pid(),
        Some(router),
        "the running router process was adopted, not replaced"
    );
    wait_listening(&gone_ip, false, &server);
    let router_log =
        std::fs::read_to_string(server.data_dir().join("logs/router.log")).unwrap_or_default();
    assert!(
        router_log.contains("its address is no longer private"),
        "{router_log}"
    );
    // The endpoint that stays is served on, by the listener it had.
    assert!(listens_on_443(&kept_ip));
    let client = Namespace::on(&server, &bridge, "cl", &format!("{}/24", at(20)));
    let (status, body) = client.https_get(&server, &hidden_host, &kept_ip);
    assert_eq!(status, 200, "the endpoint that stays serves: {body}");
    // Nothing answers at the address of the one gone.
    let (status, body) = client.https_get(&server, &hidden_host, &gone_ip);
    assert_eq!(status, 0, "nothing serves at {gone_ip}: {body}");
    assert_eq!(
        router_log.matches("private listener started").count(),
        2,
        "no listener was started again: {router_log}"
    );
}
