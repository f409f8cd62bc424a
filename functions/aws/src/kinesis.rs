//! Writing to Kinesis: `PutRecords` with resends of the records that failed individually.
//!
//! `PutRecords` is not atomic: under throttling some records of a request fail
//! (`ProvisionedThroughputExceededException`, `InternalFailure`) while the others are written. The caller must
//! resend exactly the failed ones. [`put_records_with_retry`] does, with bounded exponential backoff and
//! jitter, and answers which records could still not be written, so that nothing is ever reported accepted
//! that was not written.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tally_domain::wire::StreamRecord;

use crate::error::{is_retryable, sdk_message};
use crate::Error;

/// Records per `PutRecords` request (AWS limit).
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Bytes (data plus partition keys) per `PutRecords` request (AWS limit: 5 MiB).
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// Bytes of data plus partition key per record (AWS limit: 1 MiB): the limit the domain packs records within,
/// one constant for both.
pub use tally_domain::wire::MAX_RECORD_BYTES;
/// Characters per partition key (AWS limit).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Rounds in total, the first send included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second round; doubled each round.
    pub base_delay: Duration,
    /// Backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five rounds, 25 ms doubling to at most 400 ms: under a second of waiting in the worst case, which an HTTP
    /// client of `collect` can afford.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(400),
        }
    }
}

impl RetryPolicy {
    /// The pause before round `round` (1-based, so round 2 is the first retry): the exponential delay capped at
    /// `max_delay`, of which the upper half is random ("equal jitter"), so that writers throttled together do
    /// not retry together.
    pub fn backoff(&self, round: u32) -> Duration {
        let exp = round.saturating_sub(2).min(20);
        let full = self.base_delay.saturating_mul(1 << exp).min(self.max_delay);
        let half = full / 2;
        let jitter = fastrand::u64(0..=u64::try_from(half.as_micros()).unwrap_or(u64::MAX));
        half + Duration::from_micros(jitter)
    }
}

/// What [`put_records_with_retry`] achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Indices (into the input) of the records that could not be written, ascending. Empty: all written.
    pub failed: Vec<usize>,
    /// Rounds used.
    pub attempts: u32,
    /// The last per-record or request error seen for the failed records, for logs.
    pub last_error: Option<String>,
}

/// Writes `records` to `stream`, resending individually failed records for up to `policy.max_attempts`
/// rounds. Requests respect the 500-record and 5 MiB limits.
///
/// Errors: a record Kinesis can never accept ([`Error::InvalidRecord`], nothing sent), or a request error that
/// retrying cannot fix (unknown stream, access denied: [`Error::Kinesis`]). Throttling that outlasts the
/// policy is not an error: those records are in [`PutOutcome::failed`].
pub async fn put_records_with_retry(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[StreamRecord],
    policy: RetryPolicy,
) -> Result<PutOutcome, Error> {
    validate(records)?;
    retry_rounds(records, policy, |indices| {
        send_round(client, stream, records, indices)
    })
    .await
}

fn validate(records: &[StreamRecord]) -> Result<(), Error> {
    for (index, record) in records.iter().enumerate() {
        let chars = record.partition_key.chars().count();
        let rule = if chars == 0 {
            Some("partition key is empty".to_owned())
        } else if chars > MAX_PARTITION_KEY_CHARS {
            Some(format!(
                "partition key is longer than {MAX_PARTITION_KEY_CHARS} characters"
            ))
        } else if record.data.len() + record.partition_key.len() > MAX_RECORD_BYTES {
            Some(format!(
                "data and partition key are larger than {MAX_RECORD_BYTES} bytes"
            ))
        } else {
            None
        };
        if let Some(rule) = rule {
            return Err(Error::InvalidRecord { index, rule });
        }
    }
    Ok(())
}

/// The result of sending some records once: for each index sent, `None` when written or the error code.
type RoundResult = Result<Vec<(usize, Option<String>)>, Error>;

/// The retry loop, apart from the transport so that it can be exercised on scripted failures.
async fn retry_rounds<F, Fut>(
    records: &[StreamRecord],
    policy: RetryPolicy,
    mut send: F,
) -> Result<PutOutcome, Error>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = RoundResult>,
{
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut outcome = PutOutcome::default();
    let max_attempts = policy.max_attempts.max(1);
    while !pending.is_empty() && outcome.attempts < max_attempts {
        outcome.attempts += 1;
        if outcome.attempts > 1 {
            tokio::time::sleep(policy.backoff(outcome.attempts)).await;
        }
        let mut still = Vec::new();
        for chunk in chunks(records, &pending) {
            match send(chunk.clone()).await {
                Ok(results) => {
                    for (index, error) in results {
                        if let Some(error) = error {
                            outcome.last_error = Some(error);
                            still.push(index);
                        }
                    }
                }
                Err(error) if error.is_retryable() => {
                    outcome.last_error = Some(error.to_string());
                    still.extend(chunk);
                }
                Err(error) => return Err(error),
            }
        }
        still.sort_unstable();
        pending = still;
    }
    outcome.failed = pending;
    if outcome.failed.is_empty() {
        outcome.last_error = None;
    }
    Ok(outcome)
}

/// Splits `indices` into request-sized groups, in order.
fn chunks(records: &[StreamRecord], indices: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for &index in indices {
        let size = records[index].data.len() + records[index].partition_key.len();
        if !current.is_empty()
            && (current.len() == MAX_RECORDS_PER_REQUEST || bytes + size > MAX_BYTES_PER_REQUEST)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(index);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

async fn send_round(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[StreamRecord],
    indices: Vec<usize>,
) -> RoundResult {
    let entries = indices
        .iter()
        .map(|&i| {
            PutRecordsRequestEntry::builder()
                .partition_key(&records[i].partition_key)
                .data(Blob::new(records[i].data.clone()))
                .build()
                .map_err(|error| Error::InvalidRecord {
                    index: i,
                    rule: error.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .map_err(|err| Error::Kinesis {
            op: "PutRecords",
            stream: stream.to_owned(),
            retryable: is_retryable(&err),
            message: sdk_message(&err),
        })?;
    let results = output.records;
    if results.len() != indices.len() {
        // A response that does not line up with the request cannot tell what was written: treat the whole
        // request as failed and resend (duplicates are absorbed downstream by the event ids).
        return Ok(indices
            .into_iter()
            .map(|i| (i, Some("response did not match the request".to_owned())))
            .collect());
    }
    Ok(indices
        .into_iter()
        .zip(results)
        .map(|(index, result)| {
            let error = result.error_code.map(|code| match result.error_message {
                Some(message) => format!("{code}: {message}"),
                None => code,
            });
            (index, error)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    fn record(key: &str, bytes: usize) -> StreamRecord {
        StreamRecord {
            partition_key: key.to_owned(),
            data: vec![7; bytes],
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    /// A scripted transport: `script[round]` lists the indices that fail in that round ("*" fails the whole
    /// request with a throttling error, "!" with a non-retryable one).
    fn check(n: usize, script: &[&str], expect_failed: &[usize], expect_attempts: u32) {
        let records: Vec<_> = (0..n).map(|i| record(&format!("k{i}"), 10)).collect();
        let rounds = RefCell::new(
            script
                .iter()
                .map(|s| s.to_string())
                .collect::<VecDeque<_>>(),
        );
        let sent = RefCell::new(Vec::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let outcome = runtime.block_on(retry_rounds(&records, fast(), |indices| {
            sent.borrow_mut().push(indices.clone());
            let spec = rounds.borrow_mut().pop_front().unwrap_or_default();
            async move {
                match spec.as_str() {
                    "*" => Err(Error::Kinesis {
                        op: "PutRecords",
                        stream: "s".into(),
                        message: "ProvisionedThroughputExceededException: slow down".into(),
                        retryable: true,
                    }),
                    "!" => Err(Error::Kinesis {
                        op: "PutRecords",
                        stream: "s".into(),
                        message: "ResourceNotFoundException: no stream".into(),
                        retryable: false,
                    }),
                    spec => {
                        let failing: Vec<usize> = spec
                            .split(',')
                            .filter_map(|s| s.trim().parse().ok())
                            .collect();
                        Ok(indices
                            .into_iter()
                            .map(|i| {
                                (
                                    i,
                                    failing
                                        .contains(&i)
                                        .then(|| "ProvisionedThroughputExceededException".into()),
                                )
                            })
                            .collect())
                    }
                }
            }
        }));
        match outcome {
            Ok(outcome) => {
                assert_eq!(
                    outcome.failed,
                    expect_failed,
                    "failed, script {script:?}, sent {:?}",
                    sent.borrow()
                );
                assert_eq!(
                    outcome.attempts, expect_attempts,
                    "attempts, script {script:?}"
                );
                assert_eq!(outcome.last_error.is_some(), !expect_failed.is_empty());
                // Every round after the first resends exactly what failed before.
                let sent = sent.borrow();
                for pair in sent.windows(2) {
                    assert!(
                        pair[1].iter().all(|i| pair[0].contains(i)),
                        "resent something that was written: {sent:?}"
                    );
                }
            }
            Err(error) => assert_eq!(expect_attempts, 0, "unexpected error {error}"),
        }
    }

    #[test]
    fn retry_rounds_resend_exactly_the_failed_records() {
        check(3, &[""], &[], 1);
        check(3, &["1", ""], &[], 2);
        check(3, &["0,2", "2", ""], &[], 3);
        check(3, &["0,1,2", "0,1,2", "0,1,2", "0,1,2"], &[0, 1, 2], 4);
        check(3, &["1", "1", "1", "1", ""], &[1], 4);
        check(3, &["*", ""], &[], 2);
        check(3, &["*", "*", "*", "*"], &[0, 1, 2], 4);
        check(3, &["!"], &[], 0);
        check(3, &["2", "!"], &[], 0);
        check(0, &[], &[], 0);
    }

    #[test]
    fn chunks_respect_request_limits() {
        let many: Vec<_> = (0..1201).map(|i| record(&format!("k{i}"), 1)).collect();
        let all: Vec<usize> = (0..many.len()).collect();
        let sizes: Vec<usize> = chunks(&many, &all).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 201]);
        let big: Vec<_> = (0..12)
            .map(|i| record(&format!("k{i}"), 1_000_000))
            .collect();
        let all: Vec<usize> = (0..big.len()).collect();
        let sizes: Vec<usize> = chunks(&big, &all).iter().map(Vec::len).collect();
        assert_eq!(sizes, [5, 5, 2]);
        assert_eq!(chunks(&big, &[3, 7]), vec![vec![3, 7]]);
    }

    fn check_invalid(rec: StreamRecord, expect: &str) {
        let got = validate(&[record("ok", 1), rec]).map_err(|e| e.to_string());
        assert_eq!(got, Err(expect.to_owned()));
    }

    #[test]
    fn invalid_records_are_refused_before_sending() {
        check_invalid(
            record("", 1),
            "record 1 cannot be written to kinesis: partition key is empty",
        );
        check_invalid(
            record(&"k".repeat(257), 1),
            "record 1 cannot be written to kinesis: partition key is longer than 256 characters",
        );
        check_invalid(
            record("k", MAX_RECORD_BYTES),
            "record 1 cannot be written to kinesis: data and partition key are larger than 1048576 bytes",
        );
        assert!(validate(&[record(&"é".repeat(256), MAX_RECORD_BYTES - 512)]).is_ok());
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        };
        for round in 2..40 {
            let full = Duration::from_millis(10 * (1u64 << (round - 2).min(20)))
                .min(Duration::from_millis(100));
            for _ in 0..20 {
                let d = policy.backoff(round);
                assert!(
                    d >= full / 2 && d <= full,
                    "round {round}: {d:?} outside {full:?}/2..={full:?}"
                );
            }
        }
    }
}
