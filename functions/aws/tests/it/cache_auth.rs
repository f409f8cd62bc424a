//! The ElastiCache IAM token against an independent SigV4 implementation: botocore (installed with
//! `moto[server]`), signing the same presigned `connect` request at the same instant with the same keys.

use std::process::Command;
use std::time::{Duration, SystemTime};

use tally_aws::cache_auth::iam_token;

const BOTOCORE: &str = r#"
import datetime, sys
from unittest import mock
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
cache, user, region, token, epoch = sys.argv[1:6]
req = AWSRequest(method='GET', url=f'http://{cache}/?Action=connect&User={user}&ResourceType=ServerlessCache')
creds = Credentials('AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', token or None)
auth = SigV4QueryAuth(creds, 'elasticache', region, expires=900)
fixed = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
class D(datetime.datetime):
    @classmethod
    def utcnow(cls): return fixed.replace(tzinfo=None)
    @classmethod
    def now(cls, tz=None): return fixed
with mock.patch('botocore.auth.datetime.datetime', D):
    auth.add_auth(req)
print(req.url)
"#;

fn botocore(cache: &str, user: &str, region: &str, token: &str, epoch: u64) -> String {
    let out = Command::new("python3")
        .args(["-c", BOTOCORE, cache, user, region, token, &epoch.to_string()])
        .output()
        .expect("python3 runs (botocore comes with `pip install 'moto[server]'`, which .ci/run installs)");
    assert!(
        out.status.success(),
        "botocore failed (install it with `pip install 'moto[server]'`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The query parameters, sorted (the two signers may order them differently).
fn params(url: &str) -> Vec<String> {
    let query = url.split_once('?').expect("a query").1;
    let mut p: Vec<String> = query.split('&').map(str::to_owned).collect();
    p.sort();
    p
}

#[test]
fn iam_token_agrees_with_botocore() {
    for (cache, user, region, token, epoch) in [
        (
            "tally-main-cache",
            "tally-main-fn",
            "us-east-1",
            "",
            1_796_535_000u64,
        ),
        (
            "tally-pr-42-cache",
            "tally-pr-42-functions",
            "eu-west-3",
            "FwoGZXIvYXdzEJr//////////wEaDH+session/token==",
            1_800_000_123,
        ),
    ] {
        let creds = aws_sdk_dynamodb::config::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            (!token.is_empty()).then(|| token.to_owned()),
            None,
            "test",
        );
        let ours = iam_token(
            cache,
            user,
            region,
            &creds,
            SystemTime::UNIX_EPOCH + Duration::from_secs(epoch),
        )
        .expect("token");
        let theirs = botocore(cache, user, region, token, epoch);
        let theirs = theirs.strip_prefix("http://").expect("http url");
        assert_eq!(
            ours.split_once('?').map(|p| p.0),
            theirs.split_once('?').map(|p| p.0)
        );
        assert_eq!(
            params(&ours),
            params(theirs),
            "ours: {ours}\nbotocore: {theirs}"
        );
    }
}
