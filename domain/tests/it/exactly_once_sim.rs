//! Property tests of exactly-once counting: Lambda's delivery simulated step by step against the store model.
//!
//! A stream of a few shards holds records of events whose ids come from a small pool, so ids repeat within a
//! record (one body), across records (a client's resend) and across shards. Both lanes consume it: invocations
//! start at their lane's checkpoint with any batch size (a re-cut or bisected retry is a smaller batch at the
//! same checkpoint), run their steps — claims in chunks, the mark read (before or after the claims), the atomic
//! step, conflicts and re-plans, the return to Lambda — interleaved with each other in any order (duplicate
//! and stale invocations), crash between any two steps (before, between and after the claims, after the step
//! but before returning), report a partial batch failure at any record, and time passes (within the window).
//! Finally Lambda redelivers whatever is not checkpointed. Then:
//!
//! * every event id is counted exactly once in the realtime lane, as the record its claim names holds it
//!   (first claim wins), per campaign, ad, minute and every counter;
//! * the settled lane holds exactly the valid subset of those same occurrences;
//! * when resends carry the same content (the client retry case), the realtime counters equal the rollup of
//!   the distinct ids — an oracle that does not look at the store.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tally_domain::event::{Event, EventKind};
use tally_domain::exactly_once::{plan_apply, Batch, DedupWindow, Position, StepReply, Tally};
use tally_domain::hll::Hll;
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{claim_key, StoreLane};
use tally_domain::store_model::MemoryStore;

use crate::fixtures::{event, NOW};

const POOL: u8 = 12;
const TTL_SECS: u64 = 0;

fn shard_id(shard: usize) -> String {
    format!("shardId-{shard:012}")
}

/// Sequence numbers cross a digit-count boundary (95, 98, 101, …) so the numeric order is exercised.
fn seq(record: usize) -> String {
    (95 + 3 * record).to_string()
}

fn position(shard: usize, record: usize) -> Position {
    Position::new(&shard_id(shard), &seq(record)).expect("valid position")
}

/// (shard, record) from a position this test wrote.
fn locate(p: &Position) -> (usize, usize) {
    let shard = p.shard()["shardId-".len()..]
        .parse::<usize>()
        .expect("test shard id");
    let n = p.sequence().parse::<usize>().expect("test sequence");
    (shard, (n - 95) / 3)
}

/// The event a record carries for an id. With `conflicting`, resends differ in content (kind, ad, minute,
/// money) by where they are, so the test can tell which occurrence was counted.
fn content(id: u8, shard: usize, record: usize, conflicting: bool) -> Event {
    let salt = if conflicting { shard * 7 + record } else { 0 };
    let n = usize::from(id) + salt;
    let kind = EventKind::ALL[n % 4];
    Event {
        kind,
        campaign_id: format!("c{}", id % 3),
        ad_id: format!("a{}", n % 2),
        received_ms: NOW + ((n % 3) as i64) * 60_000,
        cost_micros: 10 * n as u64,
        value_micros: if kind == EventKind::Conversion {
            1_000 + n as u64
        } else {
            0
        },
        user_id: (n % 5 != 0).then(|| format!("u{}", n % 7)),
        ..event(&format!("e{id}"))
    }
}

/// The settled lane's filter: a deterministic verdict on the content.
fn valid(e: &Event) -> bool {
    !matches!(e.cost_micros % 3, 0)
}

type Stream = Vec<Vec<Vec<u8>>>;

#[derive(Clone, Debug)]
enum Action {
    Start {
        settled: bool,
        shard: usize,
        size: usize,
        /// The record index (in the batch) the function reports as failed; `None`: success.
        report_at: Option<usize>,
        mark_first: bool,
    },
    Step {
        which: usize,
        claims: usize,
    },
    Crash {
        which: usize,
    },
    Advance {
        secs: u64,
    },
}

#[derive(Debug)]
enum Phase {
    Running,
    /// The atomic step succeeded (or there was nothing to do); Lambda has not heard back yet.
    Returning,
}

#[derive(Debug)]
struct Invocation {
    lane: usize,
    shard: usize,
    start: usize,
    /// Records checkpointed when it returns.
    done: usize,
    batch: Batch,
    replies: Vec<Option<String>>,
    mark: Option<Option<Position>>,
    mark_first: bool,
    phase: Phase,
}

const LANES: [StoreLane; 2] = [StoreLane::Realtime, StoreLane::Settled];

struct Sim<'a> {
    stream: &'a Stream,
    conflicting: bool,
    store: MemoryStore,
    window: DedupWindow,
    /// Per lane, per shard: the first record not checkpointed.
    checkpoint: [Vec<usize>; 2],
    inflight: Vec<Invocation>,
}

impl<'a> Sim<'a> {
    fn new(stream: &'a Stream, conflicting: bool) -> Sim<'a> {
        Sim {
            stream,
            conflicting,
            store: MemoryStore::new(),
            window: DedupWindow::default(),
            checkpoint: [vec![0; stream.len()], vec![0; stream.len()]],
            inflight: Vec::new(),
        }
    }

    fn batch(&self, shard: usize, from: usize, to: usize) -> Batch {
        let mut b = Batch::new();
        for record in from..to {
            let events = self.stream[shard][record]
                .iter()
                .map(|&id| content(id, shard, record, self.conflicting))
                .collect();
            b.push_record(position(shard, record), events)
                .expect("records in order");
        }
        b
    }

    fn keep(lane: usize) -> fn(&Event) -> bool {
        if lane == 0 {
            |_| true
        } else {
            valid
        }
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Start {
                settled,
                shard,
                size,
                report_at,
                mark_first,
            } => {
                let lane = usize::from(settled);
                let shard = shard % self.stream.len();
                let start = self.checkpoint[lane][shard];
                let end = (start + size).min(self.stream[shard].len());
                if start == end {
                    return;
                }
                let done = report_at.map_or(end - start, |r| r.min(end - start));
                self.inflight.push(Invocation {
                    lane,
                    shard,
                    start,
                    done,
                    batch: self.batch(shard, start, end),
                    replies: Vec::new(),
                    mark: None,
                    mark_first,
                    phase: Phase::Running,
                });
            }
            Action::Step { which, claims } => {
                if self.inflight.is_empty() {
                    return;
                }
                let i = which % self.inflight.len();
                if self.step(i, claims) {
                    let inv = self.inflight.remove(i);
                    let cp = &mut self.checkpoint[inv.lane][inv.shard];
                    *cp = (*cp).max(inv.start + inv.done);
                }
            }
            Action::Crash { which } => {
                if !self.inflight.is_empty() {
                    let i = which % self.inflight.len();
                    self.inflight.remove(i);
                }
            }
            Action::Advance { secs } => self.store.advance_ms(secs * 1000),
        }
    }

    /// One step of invocation `i`; true when it has returned to Lambda.
    fn step(&mut self, i: usize, chunk: usize) -> bool {
        let window = self.window;
        let inv = &mut self.inflight[i];
        let lane = LANES[inv.lane];
        if matches!(inv.phase, Phase::Returning) {
            return true;
        }
        let shard = shard_id(inv.shard);
        let read_mark = |store: &mut MemoryStore| store.read_mark(lane, &shard).expect("mark");
        if inv.mark_first && inv.mark.is_none() {
            inv.mark = Some(read_mark(&mut self.store));
            return false;
        }
        let claims = inv.batch.claims();
        if inv.replies.len() < claims.len() {
            let to = (inv.replies.len() + chunk.max(1)).min(claims.len());
            let more = self
                .store
                .claim_many(&claims[inv.replies.len()..to], window)
                .expect("claims");
            inv.replies.extend(more);
            return false;
        }
        let Some(mark) = inv.mark.clone() else {
            inv.mark = Some(read_mark(&mut self.store));
            return false;
        };
        let plan = plan_apply(
            lane,
            &inv.batch,
            &inv.replies,
            mark.as_ref(),
            Sim::keep(inv.lane),
        )
        .expect("plan");
        assert_eq!(plan.stats.unreadable_claims, 0);
        if plan.is_noop() {
            inv.phase = Phase::Returning;
            return false;
        }
        match self.store.step(&plan, TTL_SECS).expect("atomic step") {
            StepReply::Applied => inv.phase = Phase::Returning,
            StepReply::Conflict { current } => {
                assert_ne!(current, mark, "a conflict reports a moved mark");
                inv.mark = Some(current);
            }
        }
        false
    }

    /// Lambda gives up on every invocation in flight and redelivers from the checkpoints, in batches of 3.
    fn drain(&mut self) {
        self.inflight.clear();
        for (lane, store_lane) in LANES.into_iter().enumerate() {
            for shard in 0..self.stream.len() {
                while self.checkpoint[lane][shard] < self.stream[shard].len() {
                    let start = self.checkpoint[lane][shard];
                    let end = (start + 3).min(self.stream[shard].len());
                    let b = self.batch(shard, start, end);
                    self.store
                        .process(store_lane, &b, self.window, TTL_SECS, Sim::keep(lane))
                        .expect("redelivery");
                    self.checkpoint[lane][shard] = end;
                }
            }
        }
    }
}

type Counts = BTreeMap<(String, String, i64), Tally>;

fn add(counts: &mut Counts, e: &Event) {
    counts
        .entry((
            e.campaign_id.clone(),
            e.ad_id.clone(),
            minute_of(e.received_ms),
        ))
        .or_default()
        .add(e);
}

fn run(stream: &Stream, actions: &[Action], conflicting: bool) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(stream, conflicting);
    for a in actions {
        sim.act(a);
    }
    sim.drain();

    // The winners: for each id, the record its claim names, and that record's first occurrence of the id.
    let ids: BTreeSet<u8> = stream.iter().flatten().flatten().copied().collect();
    let (mut want_rt, mut want_st) = (Counts::new(), Counts::new());
    let mut want_users: BTreeMap<(String, String, i64), Hll> = BTreeMap::new();
    for &id in &ids {
        let claim = sim
            .store
            .peek(&claim_key(&format!("e{id}")))
            .expect("string")
            .expect("every id is claimed");
        let owner = Position::from_claim_value(&claim).expect("readable claim");
        let (shard, record) = locate(&owner);
        prop_assert!(
            stream[shard][record].contains(&id),
            "claim of e{id} names {owner}, which does not hold it"
        );
        let e = content(id, shard, record, conflicting);
        add(&mut want_rt, &e);
        if valid(&e) {
            add(&mut want_st, &e);
            if let Some(u) = &e.user_id {
                want_users
                    .entry((
                        e.campaign_id.clone(),
                        e.ad_id.clone(),
                        minute_of(e.received_ms),
                    ))
                    .or_default()
                    .insert(u.as_bytes());
            }
        }
    }
    // Unique users: the settled lane's registers, max-merged by every delivery, equal the sketch of the
    // counted valid occurrences' users whatever the order, replays and crashes (and so does the estimate).
    let users = sim.store.users(StoreLane::Settled);
    prop_assert_eq!(&users, &want_users, "settled registers");
    for (key, h) in &users {
        prop_assert_eq!(h.estimate(), want_users[key].estimate());
    }
    prop_assert!(
        sim.store.users(StoreLane::Realtime).is_empty(),
        "realtime keeps no registers"
    );
    let (rt, unknown_rt) = sim.store.counters(StoreLane::Realtime);
    let (st, unknown_st) = sim.store.counters(StoreLane::Settled);
    prop_assert_eq!((unknown_rt, unknown_st), (0, 0));
    prop_assert_eq!(&rt, &want_rt, "realtime counts");
    prop_assert_eq!(&st, &want_st, "settled counts");
    let events: u64 = rt.values().map(Tally::events).sum();
    prop_assert_eq!(events, ids.len() as u64, "each id once");
    if !conflicting {
        // Oracle without the store: the rollup of the distinct ids.
        let mut oracle = Counts::new();
        for &id in &ids {
            add(&mut oracle, &content(id, 0, 0, false));
        }
        prop_assert_eq!(&rt, &oracle);
    }
    Ok(())
}

fn stream() -> impl Strategy<Value = Stream> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(0u8..POOL, 0..=4), 1..=7),
        1..=3,
    )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (any::<bool>(), 0usize..3, 1usize..=5, prop::option::weighted(0.3, 0usize..=5), any::<bool>())
            .prop_map(|(settled, shard, size, report_at, mark_first)| Action::Start {
                settled,
                shard,
                size,
                report_at,
                mark_first,
            }),
        8 => (any::<usize>(), 1usize..=3).prop_map(|(which, claims)| Action::Step { which, claims }),
        1 => any::<usize>().prop_map(|which| Action::Crash { which }),
        1 => (0u64..=30).prop_map(|secs| Action::Advance { secs }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resends_with_the_same_content_are_counted_once(
        stream in stream(),
        actions in prop::collection::vec(action(), 0..80),
    ) {
        run(&stream, &actions, false)?;
    }

    #[test]
    fn first_claim_wins_when_resends_differ(
        stream in stream(),
        actions in prop::collection::vec(action(), 0..80),
    ) {
        run(&stream, &actions, true)?;
    }
}

/// The simulation does reach the interesting states (so the properties above are not vacuous): conflicts,
/// retried claims, duplicates, repeats and partial-prefix applications all happen in a fixed schedule.
#[test]
fn the_simulation_reaches_the_hard_cases() {
    let stream: Stream = vec![
        vec![vec![1, 1, 2], vec![2, 3], vec![4]],
        vec![vec![3, 5], vec![1]],
    ];
    let mut sim = Sim::new(&stream, false);
    let start = |settled, shard, size| Action::Start {
        settled,
        shard,
        size,
        report_at: None,
        mark_first: false,
    };
    let step = |which| Action::Step { which, claims: 3 };
    // Two duplicate invocations of shard 0's whole batch, interleaved; a crash of a third after its claims;
    // shard 1 in between.
    for a in [
        start(false, 0, 3),
        start(false, 0, 3),
        step(0), // claims 1, 2, 3
        step(1), // the same claims: ours
        step(0), // claim 4
        step(1),
        step(0), // mark: none
        step(1), // mark: none
        step(0), // applies
        step(1), // conflict: the mark moved
        step(1), // re-plan: skip
        step(1), // returns
        step(0), // returns
        start(false, 1, 1),
        step(0), // claims 3 (shard 0 has it), 5
        step(0), // mark
        step(0), // applies, then dies before returning
        Action::Crash { which: 0 },
    ] {
        sim.act(&a);
    }
    assert_eq!(sim.store.commands.conflicts, 1);
    assert_eq!(sim.checkpoint[0], vec![3, 0]);
    sim.drain();
    let (rt, _) = sim.store.counters(StoreLane::Realtime);
    let events: u64 = rt.values().map(Tally::events).sum();
    assert_eq!(events, 5, "ids 1..=5 once each");
    run(&stream, &[], false).expect("drain alone is exact");
}
