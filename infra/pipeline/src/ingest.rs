//! Ingest: the events stream (its capacity checked against the scaler's bounds) and collect, the public
//! tracking endpoint that writes to it.

use tally_constructs::kinesis::{Stream, StreamMode, StreamProps};
use tally_constructs::lambda::{Cors, Function, FunctionUrl, FunctionUrlProps, UrlAuth};
use tally_constructs::secrets::Secret;

use crate::context::{Context, FunctionSpec, ENV_PLAIN, LOGS_KEY, NO_DLQ_SYNC};
use crate::{env, NameKind, StreamCapacity};

/// The events stream's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventsProps {
    /// Capacity mode (provisioned: shards within the scaler's bounds).
    pub(crate) capacity: StreamCapacity,
    /// Retention (24..=8760 h).
    pub(crate) retention_hours: u32,
}

/// Adds the events stream, encrypted.
pub(crate) fn events_stream(cx: &Context<'_>, props: EventsProps) -> Stream {
    let mode = match props.capacity {
        StreamCapacity::Provisioned {
            initial_shards,
            min_shards,
            max_shards,
        } => {
            let scope = cx.root.child("Capacity");
            if min_shards == 0
                || min_shards > max_shards
                || !(min_shards..=max_shards).contains(&initial_shards)
            {
                scope.violation(format!(
                    "shards must satisfy 1 <= min_shards ({min_shards}) <= initial_shards ({initial_shards}) <= max_shards ({max_shards})"
                ));
            }
            if max_shards > 500 {
                scope.violation(format!("max_shards {max_shards} is above Kinesis' default quota of 500 shards per account"));
            }
            StreamMode::Provisioned {
                shards: initial_shards,
            }
        }
        StreamCapacity::OnDemand => StreamMode::OnDemand,
    };
    Stream::new(
        &cx.root,
        "Events",
        StreamProps {
            name: Some(cx.name(NameKind::Stream, "events")),
            mode,
            retention_hours: props.retention_hours,
            encrypted: true,
        },
    )
}

/// What collect writes to and reads.
pub(crate) struct CollectProps<'a> {
    /// The stream collect puts events on.
    pub(crate) events: &'a Stream,
    /// The collect keys (post keys and pixel signing keys).
    pub(crate) keys: &'a Secret,
    /// With the edge: the origin secret collect requires on every request.
    pub(crate) origin_secret: Option<&'a Secret>,
}

/// collect and its public URL.
pub(crate) struct Collect {
    pub(crate) function: Function,
    pub(crate) url: FunctionUrl,
}

/// Adds collect (outside the VPC), its grants (stream writes, the secrets' reads) and its public URL.
pub(crate) fn collect(cx: &Context<'_>, props: CollectProps<'_>) -> Collect {
    let function = cx.function(FunctionSpec {
        id: "Collect",
        package: "collect",
        lane: None,
        env: [
            (env::STREAM_NAME, props.events.name()),
            (env::COLLECT_KEYS_SECRET_ARN, props.keys.arn()),
        ]
        .into_iter()
        .chain(
            props
                .origin_secret
                .map(|secret| (env::COLLECT_ORIGIN_SECRET_ARN, secret.arn())),
        )
        .collect(),
        store: None,
    });
    props.events.grant_write(&function);
    props.keys.grant_read(&function);
    if let Some(secret) = props.origin_secret {
        secret.grant_read(&function);
    }
    let url = FunctionUrl::new(
        &cx.root,
        "CollectFunctionUrl",
        &function,
        FunctionUrlProps {
            auth: UrlAuth::None,
            cors: Some(Cors {
                allow_origins: vec!["*".into()],
                allow_methods: vec!["GET".into(), "POST".into()],
                allow_headers: vec!["content-type".into()],
                max_age_secs: 86_400,
            }),
        },
    );
    url.node().skip_check(
        "CKV_AWS_258",
        "public by design: browsers and ad servers send tracking events without credentials",
    );
    function.node().skip_check("CKV_AWS_116", NO_DLQ_SYNC);
    function.node().skip_check("CKV_AWS_173", ENV_PLAIN);
    function.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
    Collect { function, url }
}

#[cfg(test)]
mod tests {
    use super::{collect, events_stream, CollectProps, EventsProps};
    use crate::storage::{Storage, StorageProps};
    use crate::testing::{
        env_names, find, has, role_actions, template_of, types_of, violations_of,
    };
    use crate::{env, PipelineOptions, StreamCapacity};

    fn provisioned(initial_shards: u32, min_shards: u32, max_shards: u32) -> EventsProps {
        EventsProps {
            capacity: StreamCapacity::Provisioned {
                initial_shards,
                min_shards,
                max_shards,
            },
            retention_hours: 24,
        }
    }

    #[test]
    fn the_stream_is_encrypted_with_its_initial_shards() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            events_stream(cx, provisioned(3, 1, 8));
        });
        let stream = find(&t, "AWS::Kinesis::Stream", "Events");
        assert_eq!(stream["Properties"]["ShardCount"], 3);
        assert_eq!(
            stream["Properties"]["StreamModeDetails"]["StreamMode"],
            "PROVISIONED"
        );
        assert!(stream["Properties"]["StreamEncryption"].is_object());
    }

    #[test]
    fn on_demand_has_no_shard_count() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            events_stream(
                cx,
                EventsProps {
                    capacity: StreamCapacity::OnDemand,
                    retention_hours: 48,
                },
            );
        });
        let stream = find(&t, "AWS::Kinesis::Stream", "Events");
        assert!(stream["Properties"]["ShardCount"].is_null());
        assert_eq!(stream["Properties"]["RetentionPeriodHours"], 48);
    }

    #[test]
    fn shard_bounds_are_checked() {
        let o = PipelineOptions::default();
        let e = violations_of(&o, |cx| {
            events_stream(cx, provisioned(5, 1, 4));
        });
        assert!(
            e.contains("Capacity") && e.contains("initial_shards (5)"),
            "{e}"
        );
        let e = violations_of(&o, |cx| {
            events_stream(cx, provisioned(1, 1, 501));
        });
        assert!(e.contains("quota of 500"), "{e}");
    }

    #[test]
    fn collect_writes_the_stream_and_reads_its_secrets_only() {
        for edge in [false, true] {
            let o = PipelineOptions {
                edge: edge.then(Default::default),
                ..PipelineOptions::default()
            };
            let t = template_of(&o, |cx| {
                let events = events_stream(cx, provisioned(1, 1, 1));
                let storage = Storage::new(
                    cx,
                    StorageProps {
                        table_billing: o.table_billing,
                        archive_expiration_days: None,
                        origin_secret: edge,
                    },
                );
                collect(
                    cx,
                    CollectProps {
                        events: &events,
                        keys: &storage.collect_keys,
                        origin_secret: storage.origin_secret.as_ref(),
                    },
                );
            });
            let actions = role_actions(&t, "Collect");
            assert!(has(&actions, "kinesis:PutRecords"), "{actions:?}");
            assert!(
                has(&actions, "secretsmanager:GetSecretValue"),
                "{actions:?}"
            );
            assert!(
                actions.iter().all(|a| a.starts_with("kinesis:Put")
                    || a.starts_with("kinesis:Describe")
                    || a.starts_with("kinesis:ListShards")
                    || a.starts_with("secretsmanager:")
                    || a.starts_with("logs:")),
                "{actions:?}"
            );
            let mut expect = vec![env::STREAM_NAME, env::COLLECT_KEYS_SECRET_ARN];
            if edge {
                expect.push(env::COLLECT_ORIGIN_SECRET_ARN);
            }
            expect.push(env::RUST_LOG);
            assert_eq!(env_names(&t, "Collect"), expect);
            // Public, outside the VPC.
            assert_eq!(
                types_of(&t, &["CollectFunctionUrl"]),
                [
                    "AWS::Lambda::Url",
                    "AWS::Lambda::Permission",
                    "AWS::Lambda::Permission"
                ]
            );
            let function = find(&t, "AWS::Lambda::Function", "Collect");
            assert!(function["Properties"]["VpcConfig"].is_null());
        }
    }
}
