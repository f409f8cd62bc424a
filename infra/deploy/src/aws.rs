//! The AWS clients, built once from the standard configuration, and the mapping of SDK errors to [`Error`].

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};

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
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| Error::Aws {
                operation: "loading the AWS configuration",
                message: "no region configured; set AWS_REGION or a profile's region".to_owned(),
            })?;
        // S3 on a custom endpoint (moto, MinIO, LocalStack) needs path-style addressing; on AWS it is harmless
        // for the bucket names we use.
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        Ok(Clients {
            cfn: aws_sdk_cloudformation::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sts: aws_sdk_sts::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            region,
            poll: Duration::from_secs(2),
        })
    }
}

/// Maps an SDK error to [`Error::Aws`] with the service's code and message (or the whole error chain).
pub(crate) fn err<E>(operation: &'static str) -> impl FnOnce(E) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |error| {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&error).to_string(),
        };
        Error::Aws { operation, message }
    }
}

/// The error code of an SDK error, if the service sent one.
pub(crate) fn code<E: ProvideErrorMetadata>(error: &E) -> Option<&str> {
    error.code()
}
