//! Mistakes are synth errors naming the construct path and the rule (data-driven: one line per rule).

use tally_constructs::cloudwatch::{Alarm, AlarmProps, Comparison, Statistic};
use tally_constructs::dynamodb::{
    AttributeType, AutoScaling, Billing, CapacityRange, Table, TableProps,
};
use tally_constructs::event_source::{
    EventSourceMapping, KinesisProps, KinesisSource, SqsProps, StartingPosition,
};
use tally_constructs::events::{ScheduleProps, ScheduleRule};
use tally_constructs::kinesis::{
    Stream, StreamConsumer, StreamConsumerProps, StreamMode, StreamProps,
};
use tally_constructs::lambda::{
    ApplicationLogLevel, Code, Cors, Function, FunctionProps, FunctionUrl, FunctionUrlProps,
    LogFormat, Logging, SystemLogLevel, UrlAuth,
};
use tally_constructs::s3::{Bucket, BucketProps, LifecycleRule, StorageClass};
use tally_constructs::secrets::{Secret, SecretProps};
use tally_constructs::sns::{Topic, TopicProps};
use tally_constructs::sqs::{DeadLetter, Queue, QueueProps};
use tally_constructs::{Expr, Name, NameKind, Scope, Stack, Stage};

use super::{check, function, synth, synth_error};

/// Builds an app with `build` and expects it to synthesize.
fn check_ok(build: impl FnOnce(&Stack, &Scope)) {
    let stack = Stack::new("app");
    build(&stack, &stack.root());
    synth(&stack);
}

fn kinesis(s: &Stack, r: &Scope, props: KinesisProps) {
    let f = function(s, r, "F");
    let stream = Stream::new(r, "S", StreamProps::default());
    EventSourceMapping::kinesis(r, "M", &f, &KinesisSource::Stream(stream), props);
}

fn k(change: impl FnOnce(&mut KinesisProps)) -> KinesisProps {
    let mut props = KinesisProps {
        bisect_batch_on_function_error: true,
        max_retry_attempts: 2,
        ..KinesisProps::default()
    };
    change(&mut props);
    props
}

#[test]
fn kinesis_mapping_ranges() {
    check(
        |s, r| kinesis(s, r, k(|p| p.batch_size = 20_000)),
        "app/M: batch_size 20000 is outside 1..=10000 (Kinesis BatchSize)",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.batch_size = 0)),
        "app/M: batch_size 0 is outside 1..=10000",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_batching_window_secs = 301)),
        "app/M: max_batching_window_secs 301 is outside 0..=300",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.parallelization_factor = 0)),
        "app/M: parallelization_factor 0 is outside 1..=10",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.parallelization_factor = 11)),
        "app/M: parallelization_factor 11 is outside 1..=10",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_retry_attempts = -2)),
        "app/M: max_retry_attempts -2 is outside -1 (infinite) or 0..=10000",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_retry_attempts = 10_001)),
        "app/M: max_retry_attempts 10001 is outside",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_record_age_secs = 0)),
        "app/M: max_record_age_secs 0 is outside -1 (no limit) or 60..=604800",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_record_age_secs = 59)),
        "app/M: max_record_age_secs 59 is outside",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_record_age_secs = 604_801)),
        "app/M: max_record_age_secs 604801 is outside",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.tumbling_window_secs = 901)),
        "app/M: tumbling_window_secs 901 is outside 0..=900",
    );
    check(
        |s, r| {
            kinesis(
                s,
                r,
                k(|p| p.starting_position = StartingPosition::AtTimestamp(0)),
            )
        },
        "app/M: starting_position AtTimestamp(0) is not a time",
    );
    check(
        |s, r| kinesis(s, r, k(|p| p.max_retry_attempts = -1)),
        "app/M: bisect_batch_on_function_error with unbounded retries and record age retries a poison record until it expires",
    );
}

#[test]
fn kinesis_mapping_bounds_are_accepted() {
    check_ok(|s, r| kinesis(s, r, k(|p| p.batch_size = 10_000)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.batch_size = 1)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.max_batching_window_secs = 300)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.parallelization_factor = 10)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.max_retry_attempts = 10_000)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.max_record_age_secs = 60)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.max_record_age_secs = 604_800)));
    check_ok(|s, r| kinesis(s, r, k(|p| p.tumbling_window_secs = 900)));
    check_ok(|s, r| {
        kinesis(
            s,
            r,
            k(|p| p.starting_position = StartingPosition::AtTimestamp(1_700_000_000)),
        )
    });
    check_ok(|s, r| kinesis(s, r, KinesisProps::default()));
}

#[test]
fn enhanced_fan_out_mapping_reads_the_consumer() {
    let stack = Stack::new("app");
    let r = stack.root();
    let f = function(&stack, &r, "F");
    let stream = Stream::new(&r, "S", StreamProps::default());
    let consumer = StreamConsumer::new(
        &r,
        "C",
        &stream,
        StreamConsumerProps {
            name: Name::literal("realtime"),
        },
    );
    EventSourceMapping::kinesis(
        &r,
        "M",
        &f,
        &KinesisSource::Consumer(consumer.clone()),
        KinesisProps::default(),
    );
    let t = synth(&stack).to_string();
    assert!(t.contains(&format!(
        "[\"{}\",\"ConsumerARN\"]",
        consumer.node().logical_id()
    )));
    assert!(t.contains("kinesis:SubscribeToShard"));
}

fn sqs(s: &Stack, r: &Scope, fifo: bool, props: SqsProps) {
    let f = function(s, r, "F");
    let queue = Queue::new(
        r,
        "Q",
        QueueProps {
            fifo,
            ..QueueProps::default()
        },
    );
    EventSourceMapping::sqs(r, "M", &f, &queue, props);
}

#[test]
fn sqs_mapping_ranges() {
    let q = |change: fn(&mut SqsProps)| {
        let mut props = SqsProps::default();
        change(&mut props);
        props
    };
    check(
        |s, r| sqs(s, r, false, q(|p| p.batch_size = 20_000)),
        "app/M: batch_size 20000 is outside 1..=10000 (SQS BatchSize)",
    );
    check(
        |s, r| sqs(s, r, true, q(|p| p.batch_size = 11)),
        "app/M: batch_size 11 is outside 1..=10 (SQS BatchSize for a FIFO queue)",
    );
    check(
        |s, r| sqs(s, r, false, q(|p| p.batch_size = 100)),
        "app/M: batch_size 100 above 10 needs max_batching_window_secs of at least 1",
    );
    check(
        |s, r| sqs(s, r, false, q(|p| p.max_batching_window_secs = 301)),
        "app/M: max_batching_window_secs 301 is outside 0..=300",
    );
    check(
        |s, r| sqs(s, r, false, q(|p| p.max_concurrency = Some(1))),
        "app/M: max_concurrency 1 is outside 2..=1000",
    );
    check(
        |s, r| sqs(s, r, false, q(|p| p.max_concurrency = Some(1001))),
        "app/M: max_concurrency 1001 is outside 2..=1000",
    );
    check_ok(|s, r| {
        sqs(
            s,
            r,
            false,
            q(|p| {
                p.batch_size = 100;
                p.max_batching_window_secs = 1;
                p.max_concurrency = Some(2);
            }),
        )
    });
}

fn code(s: &Stack) -> Option<Code> {
    Some(Code::s3(
        s.string_parameter("B", "b").value(),
        s.string_parameter("K", "k").value(),
    ))
}

#[test]
fn function_rules() {
    let f = |s: &Stack, r: &Scope, change: fn(&mut FunctionProps)| {
        let mut props = FunctionProps {
            code: code(s),
            ..FunctionProps::default()
        };
        change(&mut props);
        Function::new(r, "Collect", props);
    };
    check(
        |_, r| {
            Function::new(r, "Collect", FunctionProps::default());
        },
        "app/Collect: function has no code: set `code`",
    );
    check(
        |_, r| {
            Function::new(
                r,
                "Collect",
                FunctionProps {
                    code: Some(Code::s3(Expr::text(""), Expr::text("k"))),
                    ..FunctionProps::default()
                },
            );
        },
        "app/Collect: code bucket is empty",
    );
    check(
        |s, r| f(s, r, |p| p.memory_mb = 127),
        "app/Collect: memory_mb 127 is outside 128..=10240",
    );
    check(
        |s, r| f(s, r, |p| p.memory_mb = 10_241),
        "app/Collect: memory_mb 10241 is outside 128..=10240",
    );
    check(
        |s, r| f(s, r, |p| p.timeout_secs = 0),
        "app/Collect: timeout_secs 0 is outside 1..=900",
    );
    check(
        |s, r| f(s, r, |p| p.timeout_secs = 901),
        "app/Collect: timeout_secs 901 is outside 1..=900",
    );
    check(
        |s, r| f(s, r, |p| p.log_retention_days = 2),
        "app/Collect: log_retention_days 2 is not one CloudWatch Logs accepts",
    );
    check(
        |s, r| f(s, r, |p| p.reserved_concurrency = Some(10_001)),
        "app/Collect: reserved_concurrency 10001 is above 10000",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.environment = vec![("AWS_REGION".into(), Expr::text("x"))]
            })
        },
        "app/Collect: environment variable `AWS_REGION` is reserved by Lambda",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.environment = vec![("1X".into(), Expr::text("x"))]
            })
        },
        "app/Collect: environment variable `1X` has an invalid name",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.environment = vec![("A-B".into(), Expr::text("x"))]
            })
        },
        "environment variable `A-B` has an invalid name",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.environment = vec![("A\nB".into(), Expr::text("x"))]
            })
        },
        "environment variable `A\\nB` has an invalid name",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.environment = vec![("A".into(), Expr::text("x")), ("A".into(), Expr::text("y"))]
            })
        },
        "app/Collect: environment variable `A` is set twice",
    );
    check(
        |s, r| {
            f(s, r, |p| {
                p.function_name = Some(Name::literal(&"f".repeat(65)))
            })
        },
        "app/Collect: name `ffff",
    );
    check(
        |s, r| f(s, r, |p| p.function_name = Some(Name::literal("has space"))),
        "is not a valid Function name",
    );
    check(
        |s, r| f(s, r, |p| p.role_name = Some(Name::literal(&"r".repeat(65)))),
        "app/Collect/Role: name `rrrr",
    );
    check_ok(|s, r| {
        f(s, r, |p| {
            p.function_name =
                Some(Stage::new("feature/ÜBER_new--thing").name(NameKind::Function, "collect"))
        })
    });
}

#[test]
fn logging_levels_need_json() {
    let f = |s: &Stack, r: &Scope, logging: Logging| {
        Function::new(
            r,
            "Collect",
            FunctionProps {
                code: code(s),
                logging,
                ..FunctionProps::default()
            },
        );
    };
    let text_with = |application_level, system_level| Logging {
        format: LogFormat::Text,
        application_level,
        system_level,
    };
    check(
        |s, r| f(s, r, text_with(None, Some(SystemLogLevel::Warn))),
        "app/Collect: logging: application_level and system_level filter JSON logs only; set format LogFormat::Json",
    );
    check(
        |s, r| f(s, r, text_with(Some(ApplicationLogLevel::Error), None)),
        "app/Collect: logging: application_level and system_level filter JSON logs only",
    );
    check_ok(|s, r| f(s, r, Logging::json_without_platform_lines()));
    check_ok(|s, r| f(s, r, Logging::text()));
}

/// The template's `LoggingConfig` for each option: the levels only with JSON, the log group always.
#[test]
fn logging_config_in_the_template() {
    let config = |logging: Logging| {
        let stack = Stack::new("app");
        let r = stack.root();
        Function::new(
            &r,
            "Collect",
            FunctionProps {
                code: code(&stack),
                logging,
                ..FunctionProps::default()
            },
        );
        let template = synth(&stack);
        let resources = template["Resources"].as_object().expect("resources");
        let (_, function) = resources
            .iter()
            .find(|(_, r)| r["Type"] == "AWS::Lambda::Function")
            .expect("a function");
        function["Properties"]["LoggingConfig"].clone()
    };
    let quiet = config(Logging::json_without_platform_lines());
    assert_eq!(quiet["LogFormat"], "JSON");
    assert_eq!(quiet["ApplicationLogLevel"], "INFO");
    assert_eq!(quiet["SystemLogLevel"], "WARN");
    assert!(quiet["LogGroup"]["Ref"].is_string(), "{quiet}");
    let text = config(Logging::text());
    assert_eq!(text["LogFormat"], "Text");
    assert!(text.get("SystemLogLevel").is_none(), "{text}");
    assert!(text.get("ApplicationLogLevel").is_none(), "{text}");
}

#[test]
fn function_url_rules() {
    let url = |s: &Stack, r: &Scope, cors: Cors| {
        let f = function(s, r, "F");
        FunctionUrl::new(
            r,
            "Url",
            &f,
            FunctionUrlProps {
                auth: UrlAuth::None,
                cors: Some(cors),
            },
        );
    };
    let cors = |origins: Vec<String>, max_age_secs| Cors {
        allow_origins: origins,
        allow_methods: vec!["GET".into()],
        allow_headers: vec![],
        max_age_secs,
    };
    check(
        |s, r| url(s, r, cors(vec![], 10)),
        "app/Url: cors allow_origins is empty",
    );
    check(
        |s, r| url(s, r, cors(vec!["*".into()], 86_401)),
        "app/Url: cors max_age_secs 86401 is above 86400",
    );
    check_ok(|s, r| url(s, r, cors(vec!["*".into()], 86_400)));
}

#[test]
fn stream_rules() {
    let stream = |r: &Scope, mode, retention_hours| {
        Stream::new(
            r,
            "Events",
            StreamProps {
                name: None,
                mode,
                retention_hours,
                encrypted: true,
            },
        );
    };
    check(
        |_, r| stream(r, StreamMode::Provisioned { shards: 0 }, 24),
        "app/Events: shards 0 is outside 1..=500",
    );
    check(
        |_, r| stream(r, StreamMode::Provisioned { shards: 501 }, 24),
        "app/Events: shards 501 is outside 1..=500",
    );
    check(
        |_, r| stream(r, StreamMode::OnDemand, 23),
        "app/Events: retention_hours 23 is outside 24..=8760",
    );
    check(
        |_, r| stream(r, StreamMode::OnDemand, 8761),
        "app/Events: retention_hours 8761 is outside 24..=8760",
    );
    check(
        |_, r| {
            Stream::new(
                r,
                "Events",
                StreamProps {
                    name: Some(Name::literal("a/b")),
                    ..StreamProps::default()
                },
            );
        },
        "app/Events: name `a/b` is not a valid Stream name",
    );
    check_ok(|_, r| stream(r, StreamMode::OnDemand, 8760));
}

#[test]
fn queue_rules() {
    let queue = |r: &Scope, change: fn(&mut QueueProps)| {
        let mut props = QueueProps::default();
        change(&mut props);
        Queue::new(r, "Q", props);
    };
    check(
        |_, r| queue(r, |p| p.retention_secs = 59),
        "app/Q: retention_secs 59 is outside 60..=1209600",
    );
    check(
        |_, r| queue(r, |p| p.retention_secs = 1_209_601),
        "app/Q: retention_secs 1209601 is outside",
    );
    check(
        |_, r| queue(r, |p| p.visibility_timeout_secs = 43_201),
        "app/Q: visibility_timeout_secs 43201 is outside 0..=43200",
    );
    check(
        |_, r| queue(r, |p| p.name = Some(Name::literal(&"q".repeat(81)))),
        "app/Q: queue name `qqqq",
    );
    check(
        |_, r| {
            let p = QueueProps {
                name: Some(Name::literal(&"q".repeat(76))),
                fifo: true,
                ..QueueProps::default()
            };
            Queue::new(r, "Q", p);
        },
        "at most 80 characters (with `.fifo`)",
    );
    check(
        |_, r| {
            let dlq = Queue::new(r, "Dlq", QueueProps::default());
            Queue::new(
                r,
                "Q",
                QueueProps {
                    dead_letter: Some(DeadLetter {
                        queue: dlq,
                        max_receive_count: 0,
                    }),
                    ..QueueProps::default()
                },
            );
        },
        "app/Q: dead_letter max_receive_count 0 is outside 1..=1000",
    );
    check(
        |_, r| {
            let dlq = Queue::new(r, "Dlq", QueueProps::default());
            Queue::new(
                r,
                "Q",
                QueueProps {
                    fifo: true,
                    dead_letter: Some(DeadLetter {
                        queue: dlq,
                        max_receive_count: 5,
                    }),
                    ..QueueProps::default()
                },
            );
        },
        "app/Q: a dead-letter queue must be FIFO exactly when its source queue is",
    );
    check_ok(|_, r| {
        let dlq = Queue::new(r, "Dlq", QueueProps::default());
        Queue::new(
            r,
            "Q",
            QueueProps {
                dead_letter: Some(DeadLetter {
                    queue: dlq,
                    max_receive_count: 5,
                }),
                ..QueueProps::default()
            },
        );
    });
}

#[test]
fn table_rules() {
    let table = |r: &Scope, pk: &str, sk: Option<&str>, ttl: Option<&str>| {
        Table::new(
            r,
            "T",
            TableProps {
                name: None,
                partition_key: (pk.into(), AttributeType::String),
                sort_key: sk.map(|s| (s.into(), AttributeType::Number)),
                ttl_attribute: ttl.map(Into::into),
                point_in_time_recovery: true,
                billing: Billing::OnDemand,
            },
        );
    };
    check(
        |_, r| table(r, "", None, None),
        "app/T: key attribute name `` must be 1..=255 bytes",
    );
    check(
        |_, r| table(r, "pk", Some("pk"), None),
        "app/T: sort key `pk` is also the partition key",
    );
    check(
        |_, r| table(r, "pk", None, Some("")),
        "app/T: ttl attribute name `` must be 1..=255 bytes",
    );
    check(
        |_, r| {
            Table::new(
                r,
                "T",
                TableProps {
                    name: Some(Name::literal("ab")),
                    partition_key: ("pk".into(), AttributeType::Binary),
                    sort_key: None,
                    ttl_attribute: None,
                    point_in_time_recovery: false,
                    billing: Billing::OnDemand,
                },
            );
        },
        "app/T: name `ab` is not a valid Table name",
    );
    check_ok(|_, r| table(r, "pk", Some("sk"), Some("expires_at")));
}

#[test]
fn table_auto_scaling_rules() {
    let table = |r: &Scope, write: (u32, u32), read: (u32, u32), target: u32| {
        let range = |(min, max)| CapacityRange { min, max };
        Table::new(
            r,
            "T",
            TableProps {
                name: None,
                partition_key: ("pk".into(), AttributeType::String),
                sort_key: None,
                ttl_attribute: None,
                point_in_time_recovery: true,
                billing: Billing::Provisioned(AutoScaling {
                    write: range(write),
                    read: range(read),
                    target_utilization_percent: target,
                }),
            },
        );
    };
    check(
        |_, r| table(r, (0, 10), (5, 10), 70),
        "app/T: write capacity minimum is 0: a provisioned table needs at least 1 unit; give min >= 1",
    );
    check(
        |_, r| table(r, (5, 10), (11, 10), 70),
        "app/T: read capacity minimum 11 is above its maximum 10; give min <= max",
    );
    check(
        |_, r| table(r, (5, 40_001), (5, 10), 70),
        "app/T: write capacity maximum 40001 is above DynamoDB's default per-table quota of 40000 units",
    );
    check(
        |_, r| table(r, (5, 10), (5, 10), 19),
        "app/T: target utilization 19 % is outside 20..=90 %",
    );
    check(
        |_, r| table(r, (5, 10), (5, 10), 91),
        "app/T: target utilization 91 % is outside 20..=90 %",
    );
    check_ok(|_, r| table(r, (1, 1), (1, 40_000), 20));
    check_ok(|_, r| table(r, (5, 4_000), (5, 4_000), 90));
}

#[test]
fn bucket_rules() {
    let rule =
        |transitions: Vec<(u32, StorageClass)>, expiration_days: Option<u32>| LifecycleRule {
            id: "r".into(),
            prefix: None,
            transitions,
            expiration_days,
            noncurrent_expiration_days: None,
            abort_incomplete_multipart_days: None,
        };
    let bucket = |r: &Scope, rules: Vec<LifecycleRule>| {
        Bucket::new(
            r,
            "B",
            BucketProps {
                name: None,
                versioned: true,
                lifecycle: rules,
            },
        );
    };
    check(
        |_, r| {
            bucket(
                r,
                vec![rule(vec![(10, StorageClass::InfrequentAccess)], None)],
            )
        },
        "app/B: lifecycle rule `r`: a transition to STANDARD_IA needs at least 30 days, not 10",
    );
    check(
        |_, r| {
            bucket(
                r,
                vec![rule(
                    vec![(90, StorageClass::Glacier), (60, StorageClass::DeepArchive)],
                    None,
                )],
            )
        },
        "app/B: lifecycle rule `r`: transitions must be in increasing days",
    );
    check(|_, r| bucket(r, vec![rule(vec![(90, StorageClass::Glacier)], Some(30))]), "app/B: lifecycle rule `r`: expiration after 30 days must be positive and after the last transition (90)");
    check(
        |_, r| bucket(r, vec![rule(vec![], None)]),
        "app/B: lifecycle rule `r` has no action",
    );
    check(
        |_, r| {
            bucket(
                r,
                vec![LifecycleRule {
                    id: String::new(),
                    ..rule(vec![], Some(1))
                }],
            )
        },
        "app/B: lifecycle rule id `` must be 1..=255 characters",
    );
    check(
        |_, r| {
            Bucket::new(
                r,
                "B",
                BucketProps {
                    name: Some(Name::literal("Upper-Case")),
                    ..BucketProps::default()
                },
            );
        },
        "app/B: name `Upper-Case` is not a valid Bucket name",
    );
    check_ok(|_, r| {
        bucket(
            r,
            vec![rule(
                vec![
                    (30, StorageClass::InfrequentAccess),
                    (90, StorageClass::GlacierInstantRetrieval),
                ],
                Some(400),
            )],
        )
    });
}

#[test]
fn alarm_rules() {
    let alarm = |r: &Scope, change: fn(&mut AlarmProps)| {
        let mut props = AlarmProps {
            name: None,
            description: "d".into(),
            namespace: "AWS/Lambda".into(),
            metric: "Errors".into(),
            dimensions: vec![],
            statistic: Statistic::Sum,
            period_secs: 60,
            evaluation_periods: 5,
            datapoints_to_alarm: 5,
            threshold: 0.0,
            comparison: Comparison::GreaterThan,
            actions: vec![],
        };
        change(&mut props);
        Alarm::new(r, "A", props);
    };
    check(
        |_, r| alarm(r, |p| p.period_secs = 45),
        "app/A: period_secs 45 must be 10, 30 or a multiple of 60",
    );
    check(
        |_, r| alarm(r, |p| p.period_secs = 90),
        "app/A: period_secs 90 must be 10, 30 or a multiple of 60",
    );
    check(
        |_, r| alarm(r, |p| p.evaluation_periods = 0),
        "app/A: evaluation_periods 0 × period_secs 60 must be at least one period",
    );
    check(
        |_, r| alarm(r, |p| p.evaluation_periods = 1441),
        "app/A: evaluation_periods 1441 × period_secs 60",
    );
    check(
        |_, r| alarm(r, |p| p.datapoints_to_alarm = 6),
        "app/A: datapoints_to_alarm 6 must be within 1..=evaluation_periods (5)",
    );
    check(
        |_, r| alarm(r, |p| p.threshold = f64::NAN),
        "app/A: threshold must be a finite number",
    );
    check(
        |_, r| alarm(r, |p| p.metric = String::new()),
        "app/A: namespace and metric must not be empty",
    );
    check_ok(|_, r| alarm(r, |p| p.period_secs = 10));
}

#[test]
fn topic_secret_and_schedule_rules() {
    check(
        |_, r| {
            let t = Topic::new(r, "T", TopicProps::default());
            t.subscribe_email(r, "Mail", "not-an-address");
        },
        "app/Mail: `not-an-address` is not an e-mail address",
    );
    check(
        |_, r| {
            Topic::new(
                r,
                "T",
                TopicProps {
                    name: None,
                    display_name: Some("x".repeat(101)),
                },
            );
        },
        "app/T: display_name is longer than 100 characters",
    );
    check(
        |_, r| {
            Secret::new(
                r,
                "S",
                SecretProps {
                    name: None,
                    description: "d".into(),
                    length: 8,
                },
            );
        },
        "app/S: length 8 is outside 16..=4096",
    );
    check(
        |s, r| {
            let target = function(s, r, "F");
            ScheduleRule::new(
                r,
                "Every",
                ScheduleProps {
                    name: None,
                    schedule: "every 5 minutes".into(),
                    target,
                },
            );
        },
        "app/Every: schedule `every 5 minutes` is not an EventBridge schedule expression",
    );
    check_ok(|s, r| {
        let target = function(s, r, "F");
        ScheduleRule::new(
            r,
            "Every",
            ScheduleProps {
                name: None,
                schedule: "rate(5 minutes)".into(),
                target,
            },
        );
    });
}

#[test]
fn construct_tree_rules() {
    check(
        |_, r| {
            Queue::new(r, "Q", QueueProps::default());
            Queue::new(r, "Q", QueueProps::default());
        },
        "app: construct id `Q` is used twice in this scope",
    );
    check(
        |_, r| {
            Queue::new(r, "my-queue", QueueProps::default());
        },
        "app: construct id `my-queue` is invalid",
    );
    check(
        |_, r| {
            Queue::new(&r.child("Lane"), "", QueueProps::default());
        },
        "app/Lane: construct id `` is invalid",
    );
    check(
        |s, _| {
            s.string_parameter("P", "p");
            s.output("P", "clash", &Expr::text("x"));
        },
        "app: construct id `P` is used twice in this scope",
    );
    check(
        |_, r| {
            let q = Queue::new(r, "Q", QueueProps::default());
            q.node().skip_check("CKV_AWS_1", " ");
        },
        "app/Q: checkov skip `CKV_AWS_1` has no reason",
    );
    let error = synth_error(&Stack::new("9-lives"));
    assert!(error.contains("stack name `9-lives` is invalid"), "{error}");
}

#[test]
fn edge_origin_secret_rules() {
    use tally_constructs::edge::{Edge, EdgeProps, OriginSecret};
    let edge = |s: &Stack, r: &Scope, header: &str| {
        let f = function(s, r, "F");
        let url = FunctionUrl::new(
            r,
            "Url",
            &f,
            FunctionUrlProps {
                auth: UrlAuth::None,
                cors: None,
            },
        );
        let secret = Secret::new(
            r,
            "Origin",
            SecretProps {
                name: None,
                description: "origin".into(),
                length: 48,
            },
        );
        Edge::new(
            r,
            "Edge",
            &url,
            EdgeProps {
                requests_per_five_minutes: 100,
                comment: "c".into(),
                origin_secret: Some(OriginSecret {
                    header: header.into(),
                    secret_id: secret.arn(),
                }),
            },
        );
    };
    check(
        |s, r| edge(s, r, "X-Tally"),
        "app/Edge: origin header \"X-Tally\" must be lower-case letters, digits and '-'",
    );
    check(
        |s, r| edge(s, r, "x-amz-origin"),
        "app/Edge: origin header \"x-amz-origin\" starts with \"x-amz-\", which CloudFront reserves",
    );
    check_ok(|s, r| edge(s, r, "x-tally-origin"));
    // The header's value is a dynamic reference to the secret, never its value.
    let stack = Stack::new("app");
    edge(&stack, &stack.root(), "x-tally-origin");
    let template = synth(&stack);
    let resources = template["Resources"].as_object().expect("resources");
    let (secret_id, _) = resources
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::SecretsManager::Secret")
        .expect("the secret");
    let (_, distribution) = resources
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::CloudFront::Distribution")
        .expect("the distribution");
    assert_eq!(
        distribution["Properties"]["DistributionConfig"]["Origins"][0]["OriginCustomHeaders"],
        serde_json::json!([{
            "HeaderName": "x-tally-origin",
            "HeaderValue": {"Fn::Sub": format!("{{{{resolve:secretsmanager:${{{secret_id}}}:SecretString}}}}")},
        }])
    );
}
