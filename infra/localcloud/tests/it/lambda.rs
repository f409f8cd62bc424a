//! The Runtime API and process pool, driven through the real `lambda_runtime` in the test function.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tally_localcloud::lambda::{Function, FunctionSpec, InvokeFailure, LogSink};

/// The test function's binary (crate `tally-localcloud-testfn`), built once per test run.
pub(crate) fn testfn() -> &'static str {
    static TESTFN: OnceLock<String> = OnceLock::new();
    TESTFN.get_or_init(|| {
        let bin = crate::support::cargo_build_bins(&["tally-localcloud-testfn"]);
        bin.join("tally-localcloud-testfn").display().to_string()
    })
}

fn spec(name: &str) -> FunctionSpec {
    let mut spec = FunctionSpec::new(name, testfn());
    spec.timeout = Duration::from_secs(5);
    spec
}

async fn call(function: &Function, payload: Value) -> Result<Value, InvokeFailure> {
    let bytes = function.invoke(payload.to_string()).await?;
    Ok(serde_json::from_slice(&bytes).expect("the test function answers JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_carries_payload_context_and_every_lambda_variable() {
    let mut spec = spec("echo-fn");
    spec.memory_mb = 256;
    spec.env.insert("TALLY_STREAM_NAME".into(), "events".into());
    spec.env
        .insert("AWS_LAMBDA_FUNCTION_NAME".into(), "cannot-override".into());
    let function = Function::start(spec, &LogSink::discard());
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let out = call(&function, json!({"action": "echo", "n": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(out["payload"], json!({"action": "echo", "n": [1, 2]}));
    assert_eq!(out["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(
        out["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo-fn"
    );
    assert!(out["trace"].as_str().unwrap().starts_with("Root=1-"));
    let deadline = out["deadline"].as_u64().unwrap();
    assert!(
        deadline >= before + 4_000 && deadline <= before + 6_000,
        "deadline {deadline} vs now {before}"
    );
    let env = &out["env"];
    let check = |key: &str, expect: &str| assert_eq!(env[key], expect, "{key} in {env}");
    check("AWS_LAMBDA_FUNCTION_NAME", "echo-fn");
    check("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
    check("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    check("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/echo-fn");
    check("AWS_REGION", "us-east-1");
    check("TALLY_STREAM_NAME", "events");
    check("TZ", ":UTC");
    assert!(env["AWS_LAMBDA_RUNTIME_API"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(env["AWS_LAMBDA_LOG_STREAM_NAME"]
        .as_str()
        .unwrap()
        .contains("[$LATEST]"));
    assert!(
        env.get("HOME").is_none(),
        "the host environment leaks into the function: {env}"
    );
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instance_is_reused() {
    let function = Function::start(spec("warm-fn"), &LogSink::discard());
    let mut pids = Vec::new();
    for n in 0..5 {
        pids.push(call(&function, json!({"n": n})).await.unwrap()["pid"].clone());
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
    let stats = function.stats();
    assert_eq!(stats.instances_started, 1);
    assert_eq!(stats.cold_starts_us.len(), 1);
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_instance_and_fails_the_invocation() {
    let mut spec = spec("slow-fn");
    spec.timeout = Duration::from_millis(300);
    let function = Function::start(spec, &LogSink::discard());
    let first = call(&function, json!({})).await.unwrap()["pid"].clone();
    let started = std::time::Instant::now();
    let failure = call(&function, json!({"action": "sleep", "ms": 5000}))
        .await
        .unwrap_err();
    assert_eq!(
        failure,
        InvokeFailure::Timeout {
            after: Duration::from_millis(300)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout not enforced: {:?}",
        started.elapsed()
    );
    let after = call(&function, json!({})).await.unwrap()["pid"].clone();
    assert_ne!(first, after, "the timed-out instance must not be reused");
    assert_eq!(function.stats().timeouts, 1);
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_instance_is_replaced_and_its_invocation_fails() {
    let function = Function::start(spec("crash-fn"), &LogSink::discard());
    let first = call(&function, json!({})).await.unwrap()["pid"].clone();
    match call(&function, json!({"action": "crash"})).await {
        Err(InvokeFailure::Crashed { status }) => assert_eq!(status, "exit status 3"),
        other => panic!("expected a crash, got {other:?}"),
    }
    let after = call(&function, json!({})).await.unwrap()["pid"].clone();
    assert_ne!(first, after);
    assert_eq!(function.stats().crashes, 1);
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_error_is_reported_with_its_type() {
    let function = Function::start(spec("error-fn"), &LogSink::discard());
    match call(&function, json!({"action": "error"})).await {
        Err(InvokeFailure::Function {
            error_type,
            message,
        }) => {
            assert!(message.contains("asked to fail"), "{message}");
            assert!(!error_type.is_empty());
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    // The instance survives a function error.
    assert!(call(&function, json!({})).await.is_ok());
    assert_eq!(function.stats().instances_started, 1);
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_errors_fail_the_invocation_with_the_reason() {
    let check = |mode: &'static str, expect: &'static str| async move {
        let mut spec = spec(&format!("init-{mode}"));
        spec.env.insert("TESTFN_INIT".into(), mode.into());
        let function = Function::start(spec, &LogSink::discard());
        match call(&function, json!({})).await {
            Err(InvokeFailure::Init { message }) => {
                assert!(message.contains(expect), "{mode}: {message}")
            }
            other => panic!("{mode}: expected an init error, got {other:?}"),
        }
        function.shutdown();
    };
    check("fail", "Testfn.InitFailed: configured to fail at init").await;
    check("exit", "exit status 2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_executable_is_an_init_error_naming_it() {
    let function = Function::start(
        FunctionSpec::new("ghost", "/nonexistent/tally-ghost"),
        &LogSink::discard(),
    );
    match call(&function, json!({})).await {
        Err(InvokeFailure::Init { message }) => {
            assert!(message.contains("/nonexistent/tally-ghost"), "{message}")
        }
        other => panic!("expected an init error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_concurrency_bounds_the_pool() {
    let mut spec = spec("bounded-fn");
    spec.reserved_concurrency = Some(2);
    let function = Function::start(spec, &LogSink::discard());
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let function = function.clone();
            tokio::spawn(
                async move { call(&function, json!({"action": "sleep", "ms": 200})).await },
            )
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let stats = function.stats();
    assert_eq!(stats.peak_instances, 2, "{stats:?}");
    assert_eq!(stats.instances_started, 2, "{stats:?}");
    function.shutdown();

    let mut spec = self::spec("zero-fn");
    spec.reserved_concurrency = Some(0);
    let function = Function::start(spec, &LogSink::discard());
    assert_eq!(
        call(&function, json!({})).await.unwrap_err(),
        InvokeFailure::Throttled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_size_is_a_limit() {
    let mut spec = spec("small-fn");
    spec.memory_mb = 64;
    let function = Function::start(spec, &LogSink::discard());
    assert_eq!(
        call(&function, json!({"action": "alloc", "mb": 16}))
            .await
            .unwrap()["allocated_mb"],
        16
    );
    let over = call(&function, json!({"action": "alloc", "mb": 256})).await;
    assert!(
        matches!(
            over,
            Err(InvokeFailure::Function { .. } | InvokeFailure::Crashed { .. })
        ),
        "allocating 256 MB in a 64 MB function succeeded: {over:?}"
    );
    function.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_function_runs_at_a_lower_priority() {
    let normal = Function::start(spec("normal-fn"), &LogSink::discard());
    let mut batch = spec("batch-fn");
    batch.background = true;
    let batch = Function::start(batch, &LogSink::discard());
    let nice = |out: Value| out["nice"].as_i64().expect("nice");
    let base = nice(call(&normal, json!({"action": "nice"})).await.unwrap());
    assert_eq!(
        nice(call(&batch, json!({"action": "nice"})).await.unwrap()),
        (base + i64::from(tally_localcloud::lambda::BACKGROUND_NICE)).min(19),
        "19 is the lowest priority"
    );
    normal.shutdown();
    batch.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_is_refused() {
    let function = Function::start(spec("big-fn"), &LogSink::discard());
    let payload = vec![b' '; 6 * 1024 * 1024 + 1];
    assert_eq!(
        function.invoke(payload).await.unwrap_err(),
        InvokeFailure::PayloadTooLarge
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_prefixed_files_per_function() {
    let dir = std::env::temp_dir().join(format!("tally-lc-logs-{}", std::process::id()));
    let function = Function::start(spec("log-fn"), &LogSink::new(Some(dir.clone()), false));
    let _ = call(&function, json!({"action": "crash"})).await;
    // The pool logs the crash when it reaps the instance, which may come just after the failed invocation
    // is answered: wait for the line (bounded) before stopping the function.
    let path = dir.join("log-fn.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("exited while handling an invocation") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    function.shutdown();
    assert!(
        text.contains("exited while handling an invocation"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
