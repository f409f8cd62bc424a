//! What the two stream lanes (critical and deferred) share: their mapping's settings and the one-batch-per-shard
//! rule.

use tally_constructs::event_source::{KinesisProps, StartingPosition};
use tally_constructs::lambda::Function;
use tally_constructs::sqs::Queue;
use tally_constructs::Scope;

use crate::context::{ENV_PLAIN, LOGS_KEY, NO_DLQ_STREAM, SHARED_POOL};
use crate::LaneOptions;

/// A lane's function and its on-failure queue (what the alarms and the outputs name).
pub(crate) struct StreamLane {
    pub(crate) function: Function,
    pub(crate) failures: Queue,
}

/// A lane's event source mapping: from the trim horizon, bisecting failed batches, reporting item failures,
/// discarded ranges to `failures`.
pub(crate) fn mapping(lane: &LaneOptions, failures: &Queue) -> KinesisProps {
    KinesisProps {
        batch_size: lane.batch_size,
        max_batching_window_secs: lane.batching_window_secs,
        starting_position: StartingPosition::TrimHorizon,
        parallelization_factor: lane.parallelization_factor,
        bisect_batch_on_function_error: true,
        max_retry_attempts: lane.max_retry_attempts,
        max_record_age_secs: lane.max_record_age_secs,
        report_batch_item_failures: true,
        on_failure: Some(failures.clone()),
        tumbling_window_secs: 0,
        enabled: true,
    }
}

/// Both lanes apply counters with per-shard fencing (`tally_aws::metrics`), which is exact only while a shard has
/// one batch in flight: a `ParallelizationFactor` above 1 would let two batches of one shard race on a row.
pub(crate) fn require_one_batch_per_shard(scope: &Scope, lane: &str, settings: &LaneOptions) {
    if settings.parallelization_factor != 1 {
        scope.violation(format!(
            "{lane} parallelization_factor must be 1, not {}: the exactly-once fencing is per shard and needs one batch in flight per shard",
            settings.parallelization_factor
        ));
    }
}

/// checkov's findings on a lane's function that are design decisions.
pub(crate) fn skip_design_checks(function: &Function, lane: &LaneOptions) {
    function.node().skip_check("CKV_AWS_116", NO_DLQ_STREAM);
    function.node().skip_check("CKV_AWS_173", ENV_PLAIN);
    function.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
    if lane.reserved_concurrency.is_none() {
        function.node().skip_check("CKV_AWS_115", SHARED_POOL);
    }
}

#[cfg(test)]
mod tests {
    use super::require_one_batch_per_shard;
    use crate::testing::{template_of, violations_of};
    use crate::PipelineOptions;

    #[test]
    fn one_batch_in_flight_per_shard() {
        let o = PipelineOptions::default();
        template_of(&o, |cx| {
            require_one_batch_per_shard(&cx.root.child("Lane"), "realtime", &o.realtime)
        });
        let mut two = o.realtime;
        two.parallelization_factor = 2;
        let e = violations_of(&o, |cx| {
            require_one_batch_per_shard(&cx.root.child("Lane"), "realtime", &two)
        });
        assert!(
            e.contains("Lane") && e.contains("realtime parallelization_factor must be 1, not 2"),
            "{e}"
        );
    }
}
