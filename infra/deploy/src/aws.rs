//! The AWS clients, built once from the standard configuration, and the mapping of SDK errors to [`Error`].

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::Error;

/// Every client the deploy workflow uses, sharing one configuration (credentials, region, endpoint).
#[derive(Debug, Clone)]
pub struct Clients {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub region: String,
    /// How often to poll CloudFormation while it works.
    pub poll: Duration,
}

impl Clients {
    /// From the standard AWS configuration: profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`, SSO, instance roles.
    pub async fn from_env() -> Result<Clients, Error> {
        let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
        Clients::from_config(&config)
    }

    /// From an explicit configuration (tests build one per endpoint).
    pub fn from_config(config: &aws_config::SdkConfig) -> Result<Clients, Error> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| Error::Aws {
                operation: "loading the AWS configuration",
                message: "no region configured; set AWS_REGION or a profile's region".to_owned(),
            })?;
        // S3 on a custom endpoint (MinIO, moto, a proxy) needs path-style addressing; on AWS it is harmless
        // for the bucket names we use.
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build();
        Ok(Clients {
            cfn: aws_sdk_cloudformation::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sts: aws_sdk_sts::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            kinesis: aws_sdk_kinesis::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            region,
            poll: Duration::from_secs(2),
        })
    }
}

/// Maps an SDK error to [`Error::Aws`] with the service's code and message. When the answer could not be
/// parsed as the service's error (an endpoint that answers in another protocol), the HTTP status, the
/// `x-amzn-errortype` header and the start of the body stand in for them.
pub(crate) fn err<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |error| {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => match error.raw_response() {
                Some(raw) => {
                    let kind = raw
                        .headers()
                        .get("x-amzn-errortype")
                        .unwrap_or("unknown error");
                    let body = raw
                        .body()
                        .bytes()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    format!("{kind} (HTTP {}): {body}", raw.status().as_u16())
                }
                None => DisplayErrorContext(&error).to_string(),
            },
        };
        Error::Aws { operation, message }
    }
}

/// The error code of an SDK error, if the service sent one.
pub(crate) fn code<E: ProvideErrorMetadata>(error: &E) -> Option<&str> {
    error.code()
}
