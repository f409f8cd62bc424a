//! Targets (the local endpoint, `moto_server`) and the `agree` driver.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use tally_localcloud_aws::aws::{serve, LocalAws};
use tally_testkit::Moto;

/// Which implementation a behaviour is talking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    Moto,
}

/// One endpoint with SDK configuration pointing at it (127.0.0.1 only, test credentials).
pub struct Target {
    pub kind: Kind,
    pub config: SdkConfig,
    pub endpoint: String,
    _moto: Option<Moto>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(server) = &self._server {
            server.abort();
        }
    }
}

impl Target {
    pub fn is_moto(&self) -> bool {
        self.kind == Kind::Moto
    }

    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    pub fn secretsmanager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.config)
    }

    /// The S3 client as the functions build it: from the shared config, no addressing override.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.config)
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await
}

/// The local endpoint, in memory, served on a free loopback port by a task of the test's runtime.
pub async fn local() -> Target {
    local_with(LocalAws::ephemeral()).await
}

pub async fn local_with(aws: Arc<LocalAws>) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(async move {
        let _ = serve(listener, aws).await;
    });
    Target {
        kind: Kind::Local,
        config: sdk_config(&endpoint).await,
        endpoint,
        _moto: None,
        _server: Some(server),
    }
}

/// A fresh `moto_server` owned by this target.
pub async fn moto() -> Target {
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .expect("moto start");
    let endpoint = moto.endpoint();
    Target {
        kind: Kind::Moto,
        config: sdk_config(&endpoint).await,
        endpoint,
        _moto: Some(moto),
        _server: None,
    }
}

/// Runs `behaviour` against the local endpoint and against moto; both observations must be equal.
pub async fn agree<T, F, Fut>(behaviour: F)
where
    T: Debug + PartialEq,
    F: Fn(Arc<Target>) -> Fut,
    Fut: Future<Output = T>,
{
    let (local, moto) = tokio::join!(local(), moto());
    let (local, moto) = (Arc::new(local), Arc::new(moto));
    let on_local = behaviour(local.clone()).await;
    let on_moto = behaviour(moto.clone()).await;
    assert_eq!(
        on_local, on_moto,
        "the local endpoint (left) and moto_server (right) disagree"
    );
}

/// The error code of a failed SDK call (`ResourceNotFoundException`, ...), or "ok". Every SDK crate shares
/// these smithy types, so one helper serves all four services.
pub fn code<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> String
where
    E: ProvideErrorMetadata + Debug,
{
    match result {
        Ok(_) => "ok".to_owned(),
        Err(SdkError::ServiceError(e)) => e.err().code().unwrap_or("no code").to_owned(),
        Err(other) => format!("not a service error: {other:?}"),
    }
}

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
