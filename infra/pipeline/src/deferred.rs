//! The deferred lane: the later, better lane. The deferred function reads the stream through the shared
//! iterator, archives every event under `events/` and settles the counts in the counter cache.

use tally_constructs::event_source::{EventSourceMapping, KinesisSource};
use tally_constructs::kinesis::Stream;
use tally_constructs::s3::Bucket;
use tally_constructs::Expr;

use crate::context::{Context, FunctionSpec};
use crate::counter_store::CounterStore;
use crate::lane::{self, StreamLane};
use crate::{env, LaneOptions, ARCHIVE_EVENTS_PREFIX};

/// The lane's settings and what it reads and writes.
pub(crate) struct DeferredProps<'a> {
    /// The function's and the mapping's settings.
    pub(crate) lane: &'a LaneOptions,
    /// Leave unsigned events out of the settled counts.
    pub(crate) exclude_unsigned: bool,
    pub(crate) events: &'a Stream,
    /// Where it archives events (under `events/` only).
    pub(crate) archive: &'a Bucket,
    pub(crate) store: &'a CounterStore,
}

/// Adds the deferred function, its archive grant, its on-failure queue and its mapping.
pub(crate) fn deferred_lane(cx: &Context<'_>, props: DeferredProps<'_>) -> StreamLane {
    let function = cx.function(FunctionSpec {
        id: "Deferred",
        package: "deferred",
        lane: Some(props.lane),
        env: [(env::ARCHIVE_BUCKET, props.archive.name())]
            .into_iter()
            .chain(
                props
                    .exclude_unsigned
                    .then(|| (env::SETTLED_UNSIGNED, Expr::text("exclude"))),
            )
            .collect(),
        store: Some(props.store),
    });
    // It only ever writes new archive objects (`PutObject` with `If-None-Match`), under `events/`.
    props
        .archive
        .grant_put_prefix(&function, ARCHIVE_EVENTS_PREFIX);
    let failures = cx.failure_queue("DeferredFailures", "deferred-failures");
    let scope = cx.root.child("DeferredLane");
    lane::require_one_batch_per_shard(&scope, "deferred", props.lane);
    EventSourceMapping::kinesis(
        &scope,
        "Mapping",
        &function,
        &KinesisSource::Stream(props.events.clone()),
        lane::mapping(props.lane, &failures),
    );
    lane::skip_design_checks(&function, props.lane);
    StreamLane { function, failures }
}

#[cfg(test)]
mod tests {
    use super::{deferred_lane, DeferredProps};
    use crate::ingest::{events_stream, EventsProps};
    use crate::testing::{env_names, role_actions, storage_and_store, template_of, violations_of};
    use crate::{env, PipelineOptions};

    fn lane_into(cx: &crate::context::Context<'_>, o: &PipelineOptions) {
        let events = events_stream(
            cx,
            EventsProps {
                capacity: o.stream,
                retention_hours: 24,
            },
        );
        let (storage, store) = storage_and_store(cx, &events);
        deferred_lane(
            cx,
            DeferredProps {
                lane: &o.deferred,
                exclude_unsigned: o.exclude_unsigned,
                events: &events,
                archive: &storage.archive,
                store: &store,
            },
        );
    }

    #[test]
    fn archives_and_settles_in_the_cache() {
        let o = PipelineOptions::default();
        let t = template_of(&o, |cx| lane_into(cx, &o));
        let actions = role_actions(&t, "Deferred");
        for action in [
            "s3:PutObject",
            "elasticache:Connect",
            "sqs:SendMessage",
            "kinesis:GetRecords",
        ] {
            assert!(actions.contains(action), "{action}: {actions:?}");
        }
        assert!(!actions.contains("s3:GetObject"), "{actions:?}");
        assert!(
            !actions.iter().any(|a| a.starts_with("dynamodb:")),
            "{actions:?}"
        );
        let names = env_names(&t, "Deferred");
        assert_eq!(names[0], env::ARCHIVE_BUCKET);
        assert!(!names.iter().any(|n| n == env::SETTLED_UNSIGNED));
    }

    #[test]
    fn unsigned_events_are_excluded_on_request() {
        let o = PipelineOptions {
            exclude_unsigned: true,
            ..PipelineOptions::default()
        };
        let t = template_of(&o, |cx| lane_into(cx, &o));
        assert!(env_names(&t, "Deferred")
            .iter()
            .any(|n| n == env::SETTLED_UNSIGNED));
    }

    #[test]
    fn one_batch_per_shard() {
        let mut o = PipelineOptions::default();
        o.deferred.parallelization_factor = 3;
        let e = violations_of(&o, |cx| lane_into(cx, &o));
        assert!(e.contains("DeferredLane") && e.contains("not 3"), "{e}");
    }
}
