//! A discarded range read back from the stream, for `cargo xtask redrive` (no function reads a stream itself:
//! their event source mappings do). Apart from [`crate::redrive`], which the deferred lane uses, so that the
//! lane's role is not derived to need `GetShardIterator`/`GetRecords` (`infra/pipeline/tests/it/least_privilege.rs`).

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use tally_domain::redrive::seq_lt;

/// The records of `shard` of the stream named `stream` from `start` up to `end` (sequence numbers), in order, as `(sequence, data)`: one
/// `GetShardIterator` at `start`, then `GetRecords` until a record past `end`, the end of the shard, or an
/// empty page at the tip. `Err` carries the service's words when there is no iterator (the shard or the
/// sequence number is gone); a trimmed start shows as a first record after `start`.
pub async fn fetch_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await
        .map_err(service_words)?;
    let mut next = iterator.shard_iterator().map(str::to_owned);
    let mut out = Vec::new();
    while let Some(it) = next.take() {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1_000)
            .send()
            .await
            .map_err(service_words)?;
        for record in page.records() {
            let sequence = record.sequence_number();
            if seq_lt(end, sequence) {
                return Ok(out);
            }
            out.push((sequence.to_owned(), record.data().as_ref().to_vec()));
        }
        let at_tip = page.records().is_empty() && page.millis_behind_latest().unwrap_or(0) == 0;
        if !at_tip {
            next = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

/// The service's code and message of a failed call, or the SDK's account of it when the answer had none.
fn service_words<E: ProvideErrorMetadata + std::error::Error + 'static>(e: E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
    }
}
