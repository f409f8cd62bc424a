//! Compaction: every minute the compactor folds closed minutes of the counter cache into one metrics item per
//! (campaign, minute); after the cache lost its data, it recomputes them from the archive (read only, its
//! events only). It reads the first record of the events stream after each lane's mark to know how far the
//! lanes have got (`ListShards`, `GetShardIterator` and `GetRecords` on that stream only).

use tally_constructs::dynamodb::Table;
use tally_constructs::dynamodb_items::ItemAction;
use tally_constructs::events::{ScheduleProps, ScheduleRule};
use tally_constructs::kinesis::Stream;
use tally_constructs::lambda::Function;
use tally_constructs::s3::Bucket;
use tally_constructs::Expr;

use crate::context::{Context, FunctionSpec, ENV_PLAIN, LOGS_KEY, SHARED_POOL};
use crate::counter_store::CounterStore;
use crate::{env, NameKind, ARCHIVE_EVENTS_PREFIX};

/// What the compactor calls on the metrics table: the readers' actions and `tally_aws::metrics_write`'s puts
/// (items, watermark, repair epoch) and updates (campaign index).
pub(crate) const COMPACTOR_TABLE_ACTIONS: [ItemAction; 4] = [
    ItemAction::GetItem,
    ItemAction::Query,
    ItemAction::PutItem,
    ItemAction::UpdateItem,
];

/// The compactor's settings and what it reads and writes.
pub(crate) struct CompactionProps<'a> {
    /// Days a campaign index row lives after the campaign's last event.
    pub(crate) campaign_index_days: u32,
    pub(crate) metrics: &'a Table,
    /// Read under `events/` only, to repair a cache that lost its data.
    pub(crate) archive: &'a Bucket,
    pub(crate) store: &'a CounterStore,
    /// Read after each lane's mark (the lanes' progress).
    pub(crate) events: &'a Stream,
}

/// Adds the compactor (in the VPC), its grants and its one-minute schedule.
pub(crate) fn compactor(cx: &Context<'_>, props: CompactionProps<'_>) -> Function {
    let days = props.campaign_index_days;
    let function = cx.function(FunctionSpec {
        id: "Compactor",
        package: "compactor",
        lane: None,
        env: vec![
            (env::METRICS_TABLE, props.metrics.name()),
            (env::ARCHIVE_BUCKET, props.archive.name()),
            (env::CAMPAIGN_INDEX_DAYS, Expr::text(days.to_string())),
            (env::STREAM_NAME, props.events.name()),
        ],
        store: Some(props.store),
    });
    if !tally_domain::compact::CAMPAIGN_INDEX_DAYS.contains(&days) {
        cx.root.child("Compactor").violation(format!(
            "campaign_index_days {} is outside {}..={}",
            days,
            tally_domain::compact::CAMPAIGN_INDEX_DAYS.start(),
            tally_domain::compact::CAMPAIGN_INDEX_DAYS.end()
        ));
    }
    props
        .metrics
        .grant_items(&function, &COMPACTOR_TABLE_ACTIONS);
    props
        .archive
        .grant_read_prefix(&function, ARCHIVE_EVENTS_PREFIX);
    props.events.grant_peek(&function);
    function.node().skip_check("CKV_AWS_116", "invoked by EventBridge, which retries; the next minute's run compacts whatever a failed run left");
    function.node().skip_check("CKV_AWS_115", SHARED_POOL);
    function.node().skip_check("CKV_AWS_173", ENV_PLAIN);
    function.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
    ScheduleRule::new(
        &cx.root,
        "CompactorSchedule",
        ScheduleProps {
            name: Some(cx.name(NameKind::Rule, "compactor")),
            schedule: "rate(1 minute)".into(),
            target: function.clone(),
        },
    );
    function
}

#[cfg(test)]
mod tests {
    use super::{compactor, CompactionProps};
    use crate::testing::{
        env_names, events_of, find, role_actions, storage_and_store, template_of, violations_of,
    };
    use crate::{env, PipelineOptions};

    fn add(cx: &crate::context::Context<'_>, days: u32) {
        let events = events_of(cx);
        let (storage, store) = storage_and_store(cx, &events);
        compactor(
            cx,
            CompactionProps {
                campaign_index_days: days,
                metrics: &storage.metrics,
                archive: &storage.archive,
                store: &store,
                events: &events,
            },
        );
    }

    #[test]
    fn writes_the_table_reads_the_archive_every_minute() {
        let t = template_of(&PipelineOptions::default(), |cx| add(cx, 35));
        let actions = role_actions(&t, "Compactor");
        let table: Vec<&String> = actions
            .iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        assert_eq!(
            table,
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem"
            ]
        );
        assert!(actions.contains("s3:GetObject") && actions.contains("s3:ListBucket"));
        assert!(!actions.contains("s3:PutObject"), "{actions:?}");
        // The lanes' progress: single records of the stream, nothing an event source mapping needs.
        let stream: Vec<&String> = actions
            .iter()
            .filter(|a| a.starts_with("kinesis:"))
            .collect();
        assert_eq!(
            stream,
            [
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards"
            ]
        );
        let rule = find(&t, "AWS::Events::Rule", "CompactorSchedule");
        assert_eq!(rule["Properties"]["ScheduleExpression"], "rate(1 minute)");
        let names = env_names(&t, "Compactor");
        assert_eq!(
            names[..4],
            [
                env::METRICS_TABLE,
                env::ARCHIVE_BUCKET,
                env::CAMPAIGN_INDEX_DAYS,
                env::STREAM_NAME
            ]
        );
    }

    #[test]
    fn the_index_days_are_checked() {
        let e = violations_of(&PipelineOptions::default(), |cx| add(cx, 0));
        assert!(
            e.contains("Compactor") && e.contains("campaign_index_days 0"),
            "{e}"
        );
    }
}
