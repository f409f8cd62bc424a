//! The critical (realtime) lane: the realtime function reading the stream through an enhanced fan-out consumer
//! or the shared iterator, writing the counter cache only (the compactor writes the table), its failures to an
//! on-failure queue.

use tally_constructs::event_source::{EventSourceMapping, KinesisSource};
use tally_constructs::kinesis::{Stream, StreamConsumer, StreamConsumerProps};

use crate::context::{Context, FunctionSpec};
use crate::counter_store::CounterStore;
use crate::lane::{self, StreamLane};
use crate::{CriticalLane, LaneOptions, NameKind, StreamCapacity};

/// The lane's settings and what it reads and writes.
pub(crate) struct CriticalProps<'a> {
    /// The function's and the mapping's settings.
    pub(crate) lane: &'a LaneOptions,
    /// How it reads the stream.
    pub(crate) read: CriticalLane,
    /// The stream's capacity: a provisioned stream's `max_shards` bounds the reserved concurrency needed.
    pub(crate) capacity: StreamCapacity,
    pub(crate) events: &'a Stream,
    pub(crate) store: &'a CounterStore,
}

/// Adds the realtime function, its on-failure queue, the consumer (enhanced fan-out) and the mapping.
pub(crate) fn realtime_lane(cx: &Context<'_>, props: CriticalProps<'_>) -> StreamLane {
    let root = &cx.root;
    let function = cx.function(FunctionSpec {
        id: "Realtime",
        package: "realtime",
        lane: Some(props.lane),
        env: vec![],
        store: Some(props.store),
    });
    let failures = cx.failure_queue("RealtimeFailures", "realtime-failures");
    let source = match props.read {
        CriticalLane::EnhancedFanOut => KinesisSource::Consumer(StreamConsumer::new(
            root,
            "RealtimeConsumer",
            props.events,
            StreamConsumerProps {
                name: cx.name(NameKind::Consumer, "realtime"),
            },
        )),
        CriticalLane::SharedIterator => KinesisSource::Stream(props.events.clone()),
    };
    let scope = root.child("RealtimeLane");
    if let (StreamCapacity::Provisioned { max_shards, .. }, Some(reserved)) =
        (props.capacity, props.lane.reserved_concurrency)
    {
        if reserved < max_shards {
            scope.violation(format!(
                "realtime reserved_concurrency {reserved} is below max_shards {max_shards}: the lane needs one concurrent invocation per shard"
            ));
        }
    }
    lane::require_one_batch_per_shard(&scope, "realtime", props.lane);
    EventSourceMapping::kinesis(
        &scope,
        "Mapping",
        &function,
        &source,
        lane::mapping(props.lane, &failures),
    );
    lane::skip_design_checks(&function, props.lane);
    StreamLane { function, failures }
}

#[cfg(test)]
mod tests {
    use super::{realtime_lane, CriticalProps};
    use crate::ingest::{events_stream, EventsProps};
    use crate::testing::{
        env_names, find, has, role_actions, storage_and_store, template_of, types_of, violations_of,
    };
    use crate::{env, CriticalLane, PipelineOptions};

    fn lane(o: &PipelineOptions) -> serde_json::Value {
        template_of(o, |cx| lane_into(cx, o))
    }

    #[test]
    fn enhanced_fan_out_by_default_shared_iterator_on_request() {
        let o = PipelineOptions::default();
        let t = lane(&o);
        assert_eq!(
            types_of(&t, &["RealtimeConsumer"]),
            ["AWS::Kinesis::StreamConsumer"]
        );
        assert!(has(
            &role_actions(&t, "Realtime"),
            "kinesis:SubscribeToShard"
        ));
        let shared = PipelineOptions {
            critical_lane: CriticalLane::SharedIterator,
            ..o
        };
        let t = lane(&shared);
        assert!(types_of(&t, &["RealtimeConsumer"]).is_empty());
        assert!(!has(
            &role_actions(&t, "Realtime"),
            "kinesis:SubscribeToShard"
        ));
    }

    #[test]
    fn writes_the_cache_only() {
        let t = lane(&PipelineOptions::default());
        let actions = role_actions(&t, "Realtime");
        assert!(has(&actions, "elasticache:Connect"), "{actions:?}");
        assert!(has(&actions, "sqs:SendMessage"), "{actions:?}");
        assert!(
            !actions
                .iter()
                .any(|a| a.starts_with("dynamodb:") || a.starts_with("s3:")),
            "{actions:?}"
        );
        let names = env_names(&t, "Realtime");
        assert!(names.iter().any(|n| n == env::CACHE_ENDPOINT), "{names:?}");
        let function = find(&t, "AWS::Lambda::Function", "Realtime");
        assert!(function["Properties"]["VpcConfig"].is_object());
        assert_eq!(types_of(&t, &["RealtimeFailures"]), ["AWS::SQS::Queue"]);
    }

    #[test]
    fn one_batch_per_shard_and_one_invocation_per_shard() {
        let mut o = PipelineOptions::default();
        o.realtime.parallelization_factor = 2;
        o.realtime.reserved_concurrency = Some(1);
        let e = violations_of(&o, |cx| {
            lane_into(cx, &o);
        });
        assert!(e.contains("RealtimeLane"), "{e}");
        assert!(e.contains("parallelization_factor must be 1"), "{e}");
        assert!(e.contains("below max_shards"), "{e}");
    }

    fn lane_into(cx: &crate::context::Context<'_>, o: &PipelineOptions) {
        let events = events_stream(
            cx,
            EventsProps {
                capacity: o.stream,
                retention_hours: 24,
            },
        );
        let (_, store) = storage_and_store(cx, &events);
        realtime_lane(
            cx,
            CriticalProps {
                lane: &o.realtime,
                read: o.critical_lane,
                capacity: o.stream,
                events: &events,
                store: &store,
            },
        );
    }
}
