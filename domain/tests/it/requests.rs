//! The counter store's requests fit ElastiCache Serverless' limit of 3,999 arguments: a record collect packs
//! always fits, a larger batch is cut between records, and applying the runs one after another counts exactly
//! what applying the batch whole does.

use proptest::prelude::*;
use tally_domain::event::{Event, EventKind};
use tally_domain::exactly_once::{plan_apply, Batch, DedupWindow, Position, MAX_REQUEST_ARGS};
use tally_domain::store_keys::StoreLane;
use tally_domain::store_model::MemoryStore;
use tally_domain::wire::{self, MAX_EVENTS_PER_RECORD};

use crate::fixtures::{any_event, event, NOW};

const LANES: [StoreLane; 2] = [StoreLane::Realtime, StoreLane::Settled];

/// The event that costs the apply request most: a campaign of its own (a new hash, its counts and an index
/// member), three counter fields (a conversion with spend and value) and a user (a sketch register).
fn costliest(i: usize) -> Event {
    Event {
        id: format!("evt-{i}"),
        kind: EventKind::Conversion,
        campaign_id: format!("cmp-{i}"),
        ad_id: format!("ad-{i}"),
        user_id: Some(format!("user-{i}")),
        cost_micros: 1_000,
        value_micros: 5_000,
        ..event("x")
    }
}

fn batch_of(records: Vec<Vec<Event>>) -> Batch {
    let mut b = Batch::new();
    for (i, events) in records.into_iter().enumerate() {
        let position = Position::new("shardId-000000000000", &(i + 1).to_string()).expect("valid");
        b.push_record(position, events).expect("increasing");
    }
    b
}

fn fresh_request_args(lane: StoreLane, b: &Batch) -> usize {
    let fresh = vec![None; b.claims().len()];
    plan_apply(lane, b, &fresh, None, |_| true)
        .expect("plan")
        .request_args()
}

#[test]
fn a_full_record_of_the_costliest_events_fits_one_request() {
    let events: Vec<Event> = (0..MAX_EVENTS_PER_RECORD).map(costliest).collect();
    let records = wire::pack_request(&events, "key");
    assert_eq!(
        records.len(),
        1,
        "one record holds {MAX_EVENTS_PER_RECORD} events"
    );
    let b = batch_of(vec![events]);
    for lane in LANES {
        let args = fresh_request_args(lane, &b);
        assert!(
            args <= MAX_REQUEST_ARGS,
            "{lane:?}: {args} arguments for a full record"
        );
    }
    // The bound is not loose: twice the events would not fit the settled lane's request.
    let twice = batch_of(vec![(0..2 * MAX_EVENTS_PER_RECORD)
        .map(costliest)
        .collect()]);
    assert!(fresh_request_args(StoreLane::Settled, &twice) > MAX_REQUEST_ARGS);
}

#[test]
fn collect_packs_a_body_of_a_thousand_events_in_records_that_each_fit() {
    let events: Vec<Event> = (0..1_000).map(costliest).collect();
    let records = wire::pack_request(&events, "key");
    assert_eq!(records.len(), 4, "1,000 events in records of at most 256");
    let mut seen = 0;
    for record in &records {
        let decoded = wire::unpack(&record.data).expect("decodes");
        assert!(decoded.len() <= MAX_EVENTS_PER_RECORD);
        seen += decoded.len();
        let b = batch_of(vec![decoded]);
        assert!(fresh_request_args(StoreLane::Settled, &b) <= MAX_REQUEST_ARGS);
    }
    assert_eq!(seen, 1_000, "nothing dropped");
}

#[test]
fn the_counted_arguments_are_the_arguments_sent() {
    let records: Vec<Vec<Event>> = (0..40)
        .map(|r| (0..25).map(|i| costliest(r * 7 + i % 9)).collect())
        .collect();
    let b = batch_of(records);
    for lane in LANES {
        let fresh = vec![None; b.claims().len()];
        let plan = plan_apply(lane, &b, &fresh, None, |_| true).expect("plan");
        assert_eq!(
            plan.request_args(),
            3 + plan.script_keys().len() + plan.script_args(60).len(),
            "{lane:?}"
        );
    }
}

#[test]
fn a_small_batch_is_one_run_and_a_large_one_is_cut_between_records() {
    let small = batch_of(vec![vec![costliest(1)], vec![costliest(2)]]);
    assert_eq!(
        small.split_for_requests(StoreLane::Settled, MAX_REQUEST_ARGS),
        vec![small.clone()]
    );
    // 2,000 records of 25 events over 2,000 campaigns: the deferred lane's batch at 10,000 events/s.
    let large = batch_of(
        (0..2_000)
            .map(|r| (0..25).map(|i| costliest((r * 25 + i) % 2_000)).collect())
            .collect(),
    );
    let runs = large.split_for_requests(StoreLane::Settled, MAX_REQUEST_ARGS);
    assert!(runs.len() > 10, "{} runs", runs.len());
    let records: Vec<Position> = runs.iter().flat_map(|r| r.records().to_vec()).collect();
    assert_eq!(records, large.records(), "every record once, in order");
    for run in &runs {
        assert!(fresh_request_args(StoreLane::Settled, run) <= MAX_REQUEST_ARGS);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the events and the limit, the runs are the batch's records in order, every run of more than
    /// one record fits the limit, and applying the runs one after another (twice: a redelivery) counts what
    /// applying the batch whole counts, in both lanes.
    #[test]
    fn runs_count_what_the_whole_batch_counts(
        records in prop::collection::vec(prop::collection::vec(any_event(), 0..12), 1..24),
        limit in 20usize..400,
    ) {
        let records: Vec<Vec<Event>> = records
            .into_iter()
            .map(|r| r.into_iter().map(|e| Event { received_ms: NOW, ..e }).collect())
            .collect();
        let b = batch_of(records);
        let w = DedupWindow::default();
        for lane in LANES {
            let runs = b.split_for_requests(lane, limit);
            let records: Vec<Position> = runs.iter().flat_map(|r| r.records().to_vec()).collect();
            prop_assert_eq!(&records[..], b.records());
            for run in &runs {
                if run.records().len() > 1 {
                    prop_assert!(fresh_request_args(lane, run) <= limit);
                }
            }
            let valid = |e: &Event| e.kind != EventKind::Click;
            let mut whole = MemoryStore::new();
            whole.process(lane, &b, w, 0, valid).expect("whole");
            let mut cut = MemoryStore::new();
            for _ in 0..2 {
                for run in &runs {
                    cut.process(lane, run, w, 0, valid).expect("run");
                }
            }
            prop_assert_eq!(whole.counters(lane), cut.counters(lane));
            prop_assert_eq!(whole.users(lane), cut.users(lane));
        }
    }
}
