//! The price table: `xtask/prices/us-east-1.toml` compiled in, or the file `--prices FILE` names.

use anyhow::{bail, Context};
use serde::Deserialize;

/// The shipped table.
pub const DEFAULT: &str = include_str!("../../prices/us-east-1.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub region: String,
    pub as_of: String,
    pub kinesis: Kinesis,
    pub lambda: Lambda,
    pub dynamodb: DynamoDb,
    pub s3: S3,
    pub sqs: Sqs,
    pub cloudwatch: CloudWatch,
    pub secrets_manager: SecretsManager,
    pub elasticache: ElastiCache,
    pub vpc: Vpc,
    pub cloudfront: CloudFront,
    pub waf: Waf,
    pub budgets: Budgets,
}

/// CloudFront (the optional edge in front of collect).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFront {
    pub https_requests_per_ten_thousand: f64,
    pub data_out_gb: f64,
    pub origin_gb: f64,
}

/// AWS WAF (the edge's web ACL).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    pub web_acl_month: f64,
    pub rule_month: f64,
    pub requests_per_million: f64,
}

/// AWS Budgets (the first two of an account are free).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub budget_day: f64,
}

/// ElastiCache Serverless for Valkey.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElastiCache {
    pub valkey_ecpu_per_million: f64,
    pub valkey_gb_hour: f64,
}

/// VPC interface endpoints (PrivateLink); gateway endpoints are free.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub interface_endpoint_az_hour: f64,
    pub interface_endpoint_gb: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kinesis {
    pub shard_hour: f64,
    pub put_payload_units_per_million: f64,
    pub extended_retention_shard_hour: f64,
    pub efo_consumer_shard_hour: f64,
    pub efo_gb: f64,
    pub on_demand_stream_hour: f64,
    pub on_demand_gb_in: f64,
    pub on_demand_gb_out: f64,
    pub on_demand_efo_gb: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lambda {
    pub arm64_gb_second: f64,
    pub x86_64_gb_second: f64,
    pub requests_per_million: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDb {
    pub write_request_units_per_million: f64,
    pub read_request_units_per_million: f64,
    pub provisioned_wcu_hour: f64,
    pub provisioned_rcu_hour: f64,
    pub storage_gb_month: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    pub put_per_thousand: f64,
    pub get_per_thousand: f64,
    pub storage_gb_month: f64,
    pub standard_ia_gb_month: f64,
    pub glacier_ir_gb_month: f64,
    pub glacier_flexible_gb_month: f64,
    pub transition_ia_per_thousand: f64,
    pub transition_glacier_per_thousand: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sqs {
    pub requests_per_million: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatch {
    pub logs_ingestion_gb: f64,
    pub logs_storage_gb_month: f64,
    pub metric_month: f64,
    pub alarm_month: f64,
    pub get_metric_data_per_thousand: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManager {
    pub secret_month: f64,
    pub api_calls_per_ten_thousand: f64,
}

impl Prices {
    /// Parses a table and checks every price is a finite number >= 0.
    pub fn parse(text: &str) -> anyhow::Result<Prices> {
        let prices: Prices = toml::from_str(text)
            .context("not a valid price table (format: xtask/prices/us-east-1.toml)")?;
        for (key, n) in prices.entries() {
            if !n.is_finite() || n < 0.0 {
                bail!("{key}: {n} is not a price (a finite number >= 0 in USD)");
            }
        }
        if prices.region.trim().is_empty() {
            bail!("region: must not be empty");
        }
        if prices.as_of.trim().is_empty() {
            bail!("as_of: must not be empty (the date of the list prices)");
        }
        Ok(prices)
    }

    pub fn shipped() -> anyhow::Result<Prices> {
        Prices::parse(DEFAULT).context("the shipped price table xtask/prices/us-east-1.toml")
    }

    /// `--prices FILE` (the whole table replaced), or the shipped table without one.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Prices> {
        let Some(path) = path else {
            return Prices::shipped();
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("while reading the price table {}", path.display()))?;
        Prices::parse(&text).with_context(|| format!("in price table {}", path.display()))
    }
}

impl Prices {
    /// Every price with its key, for checks and for the report.
    pub fn entries(&self) -> [(&'static str, f64); 44] {
        let p = self;
        let k = &p.kinesis;
        [
            ("kinesis.shard_hour", k.shard_hour),
            (
                "kinesis.put_payload_units_per_million",
                k.put_payload_units_per_million,
            ),
            (
                "kinesis.extended_retention_shard_hour",
                k.extended_retention_shard_hour,
            ),
            ("kinesis.efo_consumer_shard_hour", k.efo_consumer_shard_hour),
            ("kinesis.efo_gb", k.efo_gb),
            ("kinesis.on_demand_stream_hour", k.on_demand_stream_hour),
            ("kinesis.on_demand_gb_in", k.on_demand_gb_in),
            ("kinesis.on_demand_gb_out", k.on_demand_gb_out),
            ("kinesis.on_demand_efo_gb", k.on_demand_efo_gb),
            ("lambda.arm64_gb_second", p.lambda.arm64_gb_second),
            ("lambda.x86_64_gb_second", p.lambda.x86_64_gb_second),
            ("lambda.requests_per_million", p.lambda.requests_per_million),
            (
                "dynamodb.write_request_units_per_million",
                p.dynamodb.write_request_units_per_million,
            ),
            (
                "dynamodb.read_request_units_per_million",
                p.dynamodb.read_request_units_per_million,
            ),
            (
                "dynamodb.provisioned_wcu_hour",
                p.dynamodb.provisioned_wcu_hour,
            ),
            (
                "dynamodb.provisioned_rcu_hour",
                p.dynamodb.provisioned_rcu_hour,
            ),
            ("dynamodb.storage_gb_month", p.dynamodb.storage_gb_month),
            ("s3.put_per_thousand", p.s3.put_per_thousand),
            ("s3.get_per_thousand", p.s3.get_per_thousand),
            ("s3.storage_gb_month", p.s3.storage_gb_month),
            ("s3.standard_ia_gb_month", p.s3.standard_ia_gb_month),
            ("s3.glacier_ir_gb_month", p.s3.glacier_ir_gb_month),
            (
                "s3.glacier_flexible_gb_month",
                p.s3.glacier_flexible_gb_month,
            ),
            (
                "s3.transition_ia_per_thousand",
                p.s3.transition_ia_per_thousand,
            ),
            (
                "s3.transition_glacier_per_thousand",
                p.s3.transition_glacier_per_thousand,
            ),
            ("sqs.requests_per_million", p.sqs.requests_per_million),
            (
                "cloudwatch.logs_ingestion_gb",
                p.cloudwatch.logs_ingestion_gb,
            ),
            (
                "cloudwatch.logs_storage_gb_month",
                p.cloudwatch.logs_storage_gb_month,
            ),
            ("cloudwatch.metric_month", p.cloudwatch.metric_month),
            ("cloudwatch.alarm_month", p.cloudwatch.alarm_month),
            (
                "cloudwatch.get_metric_data_per_thousand",
                p.cloudwatch.get_metric_data_per_thousand,
            ),
            (
                "secrets_manager.secret_month",
                p.secrets_manager.secret_month,
            ),
            (
                "secrets_manager.api_calls_per_ten_thousand",
                p.secrets_manager.api_calls_per_ten_thousand,
            ),
            (
                "elasticache.valkey_ecpu_per_million",
                p.elasticache.valkey_ecpu_per_million,
            ),
            ("elasticache.valkey_gb_hour", p.elasticache.valkey_gb_hour),
            (
                "vpc.interface_endpoint_az_hour",
                p.vpc.interface_endpoint_az_hour,
            ),
            ("vpc.interface_endpoint_gb", p.vpc.interface_endpoint_gb),
            (
                "cloudfront.https_requests_per_ten_thousand",
                p.cloudfront.https_requests_per_ten_thousand,
            ),
            ("cloudfront.data_out_gb", p.cloudfront.data_out_gb),
            ("cloudfront.origin_gb", p.cloudfront.origin_gb),
            ("waf.web_acl_month", p.waf.web_acl_month),
            ("waf.rule_month", p.waf.rule_month),
            ("waf.requests_per_million", p.waf.requests_per_million),
            ("budgets.budget_day", p.budgets.budget_day),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses() {
        let p = Prices::shipped().expect("shipped table");
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.kinesis.shard_hour, 0.015);
        assert_eq!(p.lambda.arm64_gb_second, 0.0000133334);
        assert_eq!(p.dynamodb.write_request_units_per_million, 0.625);
        assert_eq!(p.elasticache.valkey_ecpu_per_million, 0.0023);
        assert_eq!(p.elasticache.valkey_gb_hour, 0.084);
        assert_eq!(p.vpc.interface_endpoint_az_hour, 0.01);
        assert_eq!(p.cloudfront.https_requests_per_ten_thousand, 0.01);
        assert_eq!(p.waf.web_acl_month, 5.0);
        assert_eq!(p.budgets.budget_day, 0.02);
    }

    #[track_caller]
    fn check_err(from: &str, to: &str, expect: &str) {
        assert!(DEFAULT.contains(from), "fixture: {from}");
        let text = DEFAULT.replacen(from, to, 1);
        let err = format!("{:#}", Prices::parse(&text).expect_err("must fail"));
        assert!(err.contains(expect), "expected `{expect}` in `{err}`");
    }

    #[test]
    fn hostile_tables() {
        check_err(
            "shard_hour = 0.015 ",
            "shard_hour = -0.015 ",
            "kinesis.shard_hour: -0.015 is not a price",
        );
        check_err(
            "shard_hour = 0.015 ",
            "shard_hour = nan ",
            "kinesis.shard_hour: NaN is not a price",
        );
        check_err(
            "alarm_month = 0.10",
            "alarm_month = inf",
            "cloudwatch.alarm_month: inf",
        );
        check_err(
            "alarm_month = 0.10",
            "alarm_month = \"ten cents\"",
            "not a valid price table",
        );
        check_err(
            "[sqs]\nrequests_per_million = 0.40",
            "[sqs]",
            "missing field `requests_per_million`",
        );
        check_err("[sqs]", "[sqs]\nfifo = 1.0", "unknown field `fifo`");
        check_err(
            "as_of = \"2025-11-01\"",
            "as_of = \"\"",
            "as_of: must not be empty",
        );
        check_err("region", "regio", "unknown field");
        check_err(
            "valkey_gb_hour = 0.084",
            "valkey_gb_hour = -1",
            "elasticache.valkey_gb_hour: -1 is not a price",
        );
        check_err(
            "requests_per_million = 0.60",
            "requests_per_million = -0.6",
            "waf.requests_per_million: -0.6 is not a price",
        );
        check_err(
            "[budgets]\nbudget_day = 0.02",
            "[budgets]",
            "missing field `budget_day`",
        );
        check_err(
            "[vpc]\ninterface_endpoint_az_hour = 0.01",
            "[vpc]",
            "missing field `interface_endpoint_az_hour`",
        );
    }
}
