//! The claim, fence and apply decisions, case by case; the store model's script; the dedup window.

use tally_domain::event::{Event, EventKind};
use tally_domain::exactly_once::{
    decide_claim, decide_fence, owned_occurrences, plan_apply, Batch, BatchError, ClaimOutcome,
    DedupWindow, FenceDecision, FenceError, Owner, PlanError, Position, StepReply, Tally,
    DEFAULT_WINDOW_SECS, MAX_WINDOW_SECS, MIN_WINDOW_SECS,
};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{claim_key, counter_key, index_key, mark_key, StoreLane};
use tally_domain::store_model::{total, MemoryStore, ScriptReply, StoreError};

use crate::fixtures::{event, NOW};

const RT: StoreLane = StoreLane::Realtime;
const ST: StoreLane = StoreLane::Settled;

fn pos(shard: &str, seq: &str) -> Position {
    Position::new(shard, seq).unwrap_or_else(|e| panic!("{e}"))
}

fn ev(id: &str, kind: EventKind, cost: u64) -> Event {
    Event {
        kind,
        cost_micros: cost,
        value_micros: if kind == EventKind::Conversion { 7 } else { 0 },
        ..event(id)
    }
}

fn imp(id: &str) -> Event {
    ev(id, EventKind::Impression, 10)
}

fn batch(records: &[(&Position, Vec<Event>)]) -> Batch {
    let mut b = Batch::new();
    for (p, events) in records {
        b.push_record((*p).clone(), events.clone())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    b
}

#[track_caller]
fn check_position(shard: &str, seq: &str, expect: Result<&str, &str>) {
    let got = Position::new(shard, seq)
        .map(|p| p.mark())
        .map_err(|e| e.to_string());
    assert_eq!(
        got.as_deref().map_err(String::as_str),
        expect,
        "{shard} {seq}"
    );
}

#[test]
fn positions_validate_like_kinesis() {
    check_position("shardId-000000000000", "0", Ok("0010"));
    check_position("shardId-000000000000", "7", Ok("0017"));
    check_position(
        "shardId-000000000000",
        "49590338271490256608559692538361571095921575989136588898",
        Ok("05649590338271490256608559692538361571095921575989136588898"),
    );
    check_position(
        "s",
        &"9".repeat(999),
        Ok(&format!("999{}", "9".repeat(999))),
    );
    check_position("", "1", Err("invalid kinesis shard id \"\": empty"));
    check_position(
        "shard#1",
        "1",
        Err("invalid kinesis shard id \"shard#1\": only letters, digits, '_', '.' and '-' are allowed"),
    );
    check_position(
        "shard:1",
        "1",
        Err("invalid kinesis shard id \"shard:1\": only letters, digits, '_', '.' and '-' are allowed"),
    );
    check_position(
        "{rt}",
        "1",
        Err(
            "invalid kinesis shard id \"{rt}\": only letters, digits, '_', '.' and '-' are allowed",
        ),
    );
    check_position(
        &"s".repeat(129),
        "1",
        Err(&format!(
            "invalid kinesis shard id \"{}… (129 bytes)\": longer than 128 characters",
            "s".repeat(64)
        )),
    );
    check_position("s", "", Err("invalid kinesis sequence number \"\": empty"));
    check_position(
        "s",
        "-1",
        Err("invalid kinesis sequence number \"-1\": only decimal digits are allowed"),
    );
    check_position(
        "s",
        "١",
        Err("invalid kinesis sequence number \"١\": only decimal digits are allowed"),
    );
    check_position(
        "s",
        "007",
        Err("invalid kinesis sequence number \"007\": leading zeros are not allowed"),
    );
    // An absurd length is refused before anything looks at the digits, and the message stays short.
    let huge = "1".repeat(1 << 20);
    let err = Position::new("s", &huge)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err(format!(
            "invalid kinesis sequence number \"{}… (1048576 bytes)\": longer than 999 digits",
            "1".repeat(64)
        ))
    );
}

#[test]
fn positions_order_like_numbers_within_a_shard() {
    let seqs = [
        "0",
        "1",
        "2",
        "9",
        "10",
        "11",
        "99",
        "100",
        "101",
        "999",
        "1000",
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692538361571095921575989136588899",
        "149590338271490256608559692538361571095921575989136588898",
    ];
    for (i, a) in seqs.iter().enumerate() {
        for (j, b) in seqs.iter().enumerate() {
            let (pa, pb) = (pos("s", a), pos("s", b));
            assert_eq!(pa.cmp(&pb), i.cmp(&j), "{a} vs {b}");
            assert_eq!(pa.mark().cmp(&pb.mark()), i.cmp(&j), "marks {a} vs {b}");
            assert_eq!(Position::from_mark("s", &pa.mark()), Ok(pa.clone()));
            assert_eq!(Position::from_claim_value(&pa.claim_value()), Ok(pa));
        }
    }
}

#[test]
fn marks_refuse_what_they_cannot_be() {
    for (mark, rule) in [
        ("", "shorter than 4 characters"),
        ("001", "shorter than 4 characters"),
        ("0011x", "only decimal digits are allowed"),
        ("00212 ", "only decimal digits are allowed"),
        ("002123", "the length prefix does not match the digits"),
        ("1000", "the length prefix does not match the digits"),
        ("003012", "leading zeros are not allowed"),
        ("-011", "only decimal digits are allowed"),
    ] {
        let got = Position::from_mark("s", mark).map_err(|e| e.to_string());
        assert_eq!(
            got,
            Err(format!(
                "invalid fence mark {mark:?}: {rule} (the mark key holds 3 digits of length, then the digits)"
            )),
            "{mark}"
        );
    }
    assert_eq!(
        Position::from_mark("bad shard", "0011").map_err(|e| e.to_string()),
        Err("invalid kinesis shard id \"bad shard\": only letters, digits, '_', '.' and '-' are allowed".to_owned())
    );
}

#[test]
fn claim_values_refuse_hostile_input() {
    for (value, rule) in [
        ("", "no ':' between shard id and sequence number"),
        ("shardId-1", "no ':' between shard id and sequence number"),
        (":", "empty shard id"),
        (":1", "empty shard id"),
        ("s:", "empty sequence number"),
        ("s:01", "sequence number with leading zeros"),
        ("s:1:2", "sequence number with characters other than digits"),
        ("s:1 ", "sequence number with characters other than digits"),
        (
            "ş:1",
            "shard id with characters other than letters, digits, '_', '.' and '-'",
        ),
        (
            "s#1:1",
            "shard id with characters other than letters, digits, '_', '.' and '-'",
        ),
    ] {
        let got = Position::from_claim_value(value).map_err(|e| e.to_string());
        assert_eq!(
            got,
            Err(format!(
                "invalid claim value {value:?}: {rule} (a claim holds <shard number>!<base-62 sequence number>, or <shard id>:<sequence number>)"
            )),
            "{value}"
        );
    }
    let long_shard = format!("{}:1", "s".repeat(129));
    assert!(Position::from_claim_value(&long_shard)
        .map_err(|e| e.to_string())
        .is_err_and(|e| e.contains("shard id longer than 128 characters")));
    let long_seq = format!("s:{}", "1".repeat(1000));
    assert!(Position::from_claim_value(&long_seq)
        .map_err(|e| e.to_string())
        .is_err_and(|e| e.contains("sequence number longer than 999 digits") && e.len() < 300));
}

/// Kinesis' own shard ids get the compact claim: the shard's number, `!`, the sequence number in base 62;
/// other shard ids keep `<shard>:<sequence>`. Both read back to the same position.
#[test]
fn compact_claim_values() {
    let seq = "49590338271490256608559692538361571095921575989136588898";
    let p = pos("shardId-000000000003", seq);
    let value = p.claim_value();
    assert!(value.starts_with("3!"), "{value}");
    assert_eq!(value.len(), 2 + 32, "{value}");
    assert_eq!(Position::from_claim_value(&value), Ok(p.clone()));
    // What an earlier release wrote reads back the same: a retry across a deploy is still `Ours`.
    let legacy = format!("shardId-000000000003:{seq}");
    assert_eq!(Position::from_claim_value(&legacy), Ok(p.clone()));
    assert_eq!(decide_claim(Some(&legacy), &p), ClaimOutcome::Ours);
    for (shard, sequence, expect) in [
        ("shardId-000000000000", "0", "0!0"),
        ("shardId-000000000000", "61", "0!z"),
        ("shardId-000000000000", "62", "0!10"),
        ("shardId-999999999999", "3843", "999999999999!zz"),
        ("shardId-1", "62", "shardId-1:62"),
        ("s", "7", "s:7"),
    ] {
        let p = pos(shard, sequence);
        assert_eq!(p.claim_value(), expect);
        assert_eq!(Position::from_claim_value(expect), Ok(p));
    }
    for (value, rule) in [
        (
            "!1",
            "shard number not 1 to 12 digits without leading zeros",
        ),
        (
            "03!1",
            "shard number not 1 to 12 digits without leading zeros",
        ),
        (
            "1234567890123!1",
            "shard number not 1 to 12 digits without leading zeros",
        ),
        (
            "x!1",
            "shard number not 1 to 12 digits without leading zeros",
        ),
        ("3!", "empty, too long or zero-led base-62 sequence number"),
        (
            "3!01",
            "empty, too long or zero-led base-62 sequence number",
        ),
        (
            "3!1-",
            "sequence number with characters other than base-62 digits",
        ),
        (
            "3!1!2",
            "sequence number with characters other than base-62 digits",
        ),
    ] {
        let got = Position::from_claim_value(value).map_err(|e| e.to_string());
        assert!(
            got.as_ref().is_err_and(|e| e.contains(rule)),
            "{value}: {got:?}"
        );
    }
    let long = format!("3!{}", "z".repeat(558));
    assert!(Position::from_claim_value(&long)
        .map_err(|e| e.to_string())
        .is_err_and(|e| e.contains("longer than 999 digits") && e.len() < 300));
}

#[test]
fn claim_decisions() {
    let me = pos("shardId-1", "42");
    let cases: Vec<(Option<&str>, ClaimOutcome)> = vec![
        (None, ClaimOutcome::Fresh),
        (Some("shardId-1:42"), ClaimOutcome::Ours),
        (
            Some("shardId-1:41"),
            ClaimOutcome::Duplicate {
                owner: Owner::Record(pos("shardId-1", "41")),
            },
        ),
        (
            Some("shardId-2:42"),
            ClaimOutcome::Duplicate {
                owner: Owner::Record(pos("shardId-2", "42")),
            },
        ),
        // Not the same record however close it looks: a claim is compared as a position.
        (
            Some("shardId-1:042"),
            ClaimOutcome::Duplicate {
                owner: Owner::Unreadable("shardId-1:042".to_owned()),
            },
        ),
        (
            Some(""),
            ClaimOutcome::Duplicate {
                owner: Owner::Unreadable(String::new()),
            },
        ),
        (
            Some("garbage"),
            ClaimOutcome::Duplicate {
                owner: Owner::Unreadable("garbage".to_owned()),
            },
        ),
    ];
    for (existing, expect) in cases {
        let got = decide_claim(existing, &me);
        assert_eq!(
            got.counts(),
            matches!(expect, ClaimOutcome::Fresh | ClaimOutcome::Ours)
        );
        assert_eq!(got, expect, "{existing:?}");
    }
    let huge = "x".repeat(100_000);
    match decide_claim(Some(&huge), &me) {
        ClaimOutcome::Duplicate {
            owner: Owner::Unreadable(shown),
        } => assert!(shown.len() < 100, "{}", shown.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fence_decisions() {
    let (a, b, c) = (pos("s", "10"), pos("s", "20"), pos("s", "30"));
    let cases: Vec<(Option<&str>, FenceDecision)> = vec![
        (None, FenceDecision::Apply),
        (Some("9"), FenceDecision::Apply),
        (Some("10"), FenceDecision::ApplyAfter(a.clone())),
        (Some("15"), FenceDecision::ApplyAfter(pos("s", "15"))),
        (Some("20"), FenceDecision::ApplyAfter(b.clone())),
        (Some("29"), FenceDecision::ApplyAfter(pos("s", "29"))),
        (Some("30"), FenceDecision::Skip),
        (Some("1000"), FenceDecision::Skip),
    ];
    for (mark, expect) in cases {
        let mark = mark.map(|m| pos("s", m));
        assert_eq!(decide_fence(mark.as_ref(), &a, &c), Ok(expect), "{mark:?}");
    }
    // A one-record batch: below, at, past.
    assert_eq!(decide_fence(Some(&a), &b, &b), Ok(FenceDecision::Apply));
    assert_eq!(decide_fence(Some(&b), &b, &b), Ok(FenceDecision::Skip));
    assert_eq!(decide_fence(Some(&c), &b, &b), Ok(FenceDecision::Skip));
    // Refusals.
    let other = pos("t", "1");
    assert_eq!(
        decide_fence(Some(&other), &a, &c).map_err(|e| e.to_string()),
        Err("batch of shard s fenced with the mark of shard t: the mark key belongs to another shard".to_owned())
    );
    assert_eq!(
        decide_fence(None, &a, &other).map_err(|e| e.to_string()),
        Err("batch runs from s:10 to t:1: a batch holds records of one shard".to_owned())
    );
    assert!(matches!(
        decide_fence(None, &c, &a),
        Err(FenceError::Reversed { .. })
    ));
    // What `applies` says per record.
    let inside = FenceDecision::ApplyAfter(b.clone());
    assert_eq!(
        [&a, &b, &c].map(|p| inside.applies(p)),
        [false, false, true]
    );
    assert_eq!(
        [&a, &c].map(|p| FenceDecision::Apply.applies(p)),
        [true, true]
    );
    assert_eq!(
        [&a, &c].map(|p| FenceDecision::Skip.applies(p)),
        [false, false]
    );
}

#[test]
fn batches_hold_one_shard_in_order() {
    let mut b = Batch::new();
    b.push_record(pos("s", "5"), vec![imp("e1")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.push_record(pos("s", "5"), vec![]),
        Err(BatchError::NotIncreasing {
            index: 1,
            got: pos("s", "5"),
            previous: pos("s", "5"),
        })
    );
    assert_eq!(
        b.push_record(pos("s", "4"), vec![]).map_err(|e| e.to_string()),
        Err("record 1 (s:4) does not follow the previous record (s:5): sequence numbers must increase".to_owned())
    );
    assert_eq!(
        b.push_record(pos("t", "6"), vec![])
            .map_err(|e| e.to_string()),
        Err("record 1 is from shard t in a batch of shard s: a batch holds one shard".to_owned())
    );
    b.push_record(pos("s", "10"), vec![])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.records().len(), 2);
    assert_eq!(b.len(), 1);
}

#[test]
fn claims_one_per_distinct_id_naming_its_first_record() {
    let (r1, r2, r3) = (pos("s", "1"), pos("s", "2"), pos("s", "3"));
    let b = batch(&[
        (&r1, vec![imp("x"), imp("y"), imp("x")]),
        (&r2, vec![imp("y"), imp("z")]),
        (&r3, vec![]),
    ]);
    let got: Vec<(String, String, usize)> = b
        .claims()
        .iter()
        .map(|c| (c.key.clone(), c.value.clone(), c.record))
        .collect();
    assert_eq!(
        got,
        vec![
            (claim_key("x"), "s:1".to_owned(), 0),
            (claim_key("y"), "s:1".to_owned(), 0),
            (claim_key("z"), "s:2".to_owned(), 1),
        ]
    );
}

/// Plans a batch against replies and a mark; returns (counted impressions per id-less total, stats).
fn plan(
    b: &Batch,
    replies: &[Option<&str>],
    mark: Option<&Position>,
) -> tally_domain::exactly_once::ApplyPlan {
    let replies: Vec<Option<String>> = replies.iter().map(|r| r.map(str::to_owned)).collect();
    plan_apply(RT, b, &replies, mark, |_| true).unwrap_or_else(|e| panic!("{e}"))
}

fn counted(p: &tally_domain::exactly_once::ApplyPlan) -> u64 {
    p.tallies().map(|(_, t)| t.events()).sum()
}

#[test]
fn plan_counts_each_claimed_id_once_past_the_mark() {
    let (r1, r2, r3) = (pos("s", "1"), pos("s", "2"), pos("s", "3"));
    // x twice in r1 (one body), y in r1 and r2 (a resend within the batch), z in r3.
    let b = batch(&[
        (&r1, vec![imp("x"), imp("y"), imp("x")]),
        (&r2, vec![imp("y")]),
        (&r3, vec![imp("z")]),
    ]);
    // (replies for x, y, z; mark) → (counted, new mark, stats summary)
    type Case<'a> = (
        [Option<&'a str>; 3],
        Option<&'a Position>,
        u64,
        Option<&'a Position>,
    );
    let cases: Vec<Case> = vec![
        // First delivery: every id fresh; x once, y once (r1's), z once.
        ([None, None, None], None, 3, Some(&r3)),
        // Retry after a crash between claim and apply: the claims name our records.
        ([Some("s:1"), Some("s:1"), Some("s:3")], None, 3, Some(&r3)),
        // Retry after the whole batch was applied: skip.
        ([Some("s:1"), Some("s:1"), Some("s:3")], Some(&r3), 0, None),
        // A shorter delivery applied r1 before: only r3's z remains (y in r2 is r1's duplicate).
        (
            [Some("s:1"), Some("s:1"), Some("s:3")],
            Some(&r1),
            1,
            Some(&r3),
        ),
        // Another shard claimed y and z first: only x counts.
        ([None, Some("t:9"), Some("t:9")], None, 1, Some(&r3)),
        // Claim of y names r2 (it expired and r2 claimed it, e.g. in a stale invocation): r2's y counts.
        ([None, Some("s:2"), None], None, 3, Some(&r3)),
        // An unreadable claim never counts.
        ([Some("junk"), None, None], None, 2, Some(&r3)),
    ];
    for (i, (replies, mark, expect, new_mark)) in cases.into_iter().enumerate() {
        let p = plan(&b, &replies, mark);
        assert_eq!(counted(&p), expect, "case {i}");
        assert_eq!(p.new_mark.as_ref(), new_mark, "case {i}");
        assert_eq!(p.stats.counted as u64, expect, "case {i}");
        assert_eq!(
            p.stats.counted
                + p.stats.already_applied
                + p.stats.duplicates
                + p.stats.repeats
                + p.stats.filtered,
            p.stats.events,
            "case {i}: every event accounted for"
        );
    }
    let p = plan(&b, &[Some("junk"), None, None], None);
    assert_eq!(p.stats.unreadable_claims, 1);
    let p = plan(&b, &[Some("s:1"), Some("s:1"), None], None);
    assert_eq!(p.stats.retried, 2);
    assert_eq!(p.stats.repeats, 1);
    assert_eq!(p.stats.duplicates, 1);
}

#[test]
fn owned_occurrences_are_the_plans_counted_ones_without_the_fence() {
    let (r1, r2, r3) = (pos("s", "1"), pos("s", "2"), pos("s", "3"));
    let b = batch(&[
        (&r1, vec![imp("x"), imp("y"), imp("x")]),
        (&r2, vec![imp("y")]),
        (&r3, vec![imp("z")]),
    ]);
    let owned = |replies: [Option<&str>; 3]| {
        let replies: Vec<Option<String>> = replies.iter().map(|r| r.map(str::to_owned)).collect();
        owned_occurrences(&b, &replies).unwrap_or_else(|e| panic!("{e}"))
    };
    // Events in order: r1 x, r1 y, r1 x (repeat), r2 y (resend), r3 z.
    assert_eq!(owned([None, None, None]), [true, true, false, false, true]);
    // The same on a retry (the claims name our records), whatever the fence would say.
    assert_eq!(
        owned([Some("s:1"), Some("s:1"), Some("s:3")]),
        [true, true, false, false, true]
    );
    // Other shards own y and z; an unreadable claim owns nothing.
    assert_eq!(
        owned([None, Some("t:9"), Some("junk")]),
        [true, false, false, false, false]
    );
    // y's claim names r2: r2's occurrence is the one.
    assert_eq!(
        owned([None, Some("s:2"), None]),
        [true, false, false, true, true]
    );
    // With no mark and keep-all, the plan counts exactly the owned occurrences.
    for replies in [
        [None, None, None],
        [None, Some("t:9"), Some("junk")],
        [None, Some("s:2"), None],
    ] {
        let n = owned(replies).iter().filter(|o| **o).count() as u64;
        assert_eq!(counted(&plan(&b, &replies, None)), n, "{replies:?}");
    }
    let err = owned_occurrences(&b, &[None]).expect_err("misaligned");
    assert!(err.to_string().contains("1"), "{err}");
}

#[test]
fn plan_refuses_misaligned_replies_and_foreign_marks() {
    let r1 = pos("s", "1");
    let b = batch(&[(&r1, vec![imp("x")])]);
    assert_eq!(
        plan_apply(RT, &b, &[], None, |_| true).map_err(|e| e.to_string()),
        Err(
            "0 claim replies for 1 claims: pass one reply per Batch::claims() entry, in order"
                .to_owned()
        )
    );
    assert!(matches!(
        plan_apply(RT, &b, &[None], Some(&pos("t", "1")), |_| true),
        Err(PlanError::Fence(FenceError::OtherShard { .. }))
    ));
    let empty =
        plan_apply(RT, &Batch::new(), &[], None, |_| true).unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_noop());
}

#[test]
fn plan_sums_every_kind_and_money_field_per_campaign_ad_minute() {
    let r1 = pos("s", "1");
    let later = NOW + 60_000;
    let b = batch(&[(
        &r1,
        vec![
            ev("a", EventKind::Impression, 100),
            ev("b", EventKind::ViewableImpression, 0),
            ev("c", EventKind::Click, 5),
            ev("d", EventKind::Conversion, 0),
            Event {
                ad_id: "ad-2".to_owned(),
                ..ev("e", EventKind::Impression, 1)
            },
            Event {
                received_ms: later,
                ..ev("f", EventKind::Impression, 1)
            },
        ],
    )]);
    let p = plan(&b, &[None; 6], None);
    let m = minute_of(NOW);
    let got: Vec<((String, String, i64), Tally)> = p
        .tallies()
        .map(|((c, a, m), t)| ((c.to_owned(), a.to_owned(), m), *t))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ("cmp-1".to_owned(), "ad-1".to_owned(), m),
                Tally {
                    impressions: 1,
                    viewable: 1,
                    clicks: 1,
                    conversions: 1,
                    spend_micros: 105,
                    value_micros: 7,
                }
            ),
            (
                ("cmp-1".to_owned(), "ad-2".to_owned(), m),
                Tally {
                    impressions: 1,
                    spend_micros: 1,
                    ..Tally::default()
                }
            ),
            (
                ("cmp-1".to_owned(), "ad-1".to_owned(), m + 1),
                Tally {
                    impressions: 1,
                    spend_micros: 1,
                    ..Tally::default()
                }
            ),
        ]
    );
    // The script's keys and arguments, exactly.
    assert_eq!(
        p.script_keys(),
        vec![
            mark_key(RT, "s"),
            counter_key(RT, "s", "cmp-1", m),
            counter_key(RT, "s", "cmp-1", m + 1),
            index_key(RT, "s", m),
            index_key(RT, "s", m + 1),
        ]
    );
    let args = p.script_args(172_800);
    let expect: Vec<String> = [
        "",
        "0011",
        "172800",
        "2",
        "2", //
        "8",
        "ad-1#imp",
        "1",
        "ad-1#view",
        "1",
        "ad-1#click",
        "1",
        "ad-1#conv",
        "1",
        "ad-1#spend",
        "105",
        "ad-1#value",
        "7",
        "ad-2#imp",
        "1",
        "ad-2#spend",
        "1",
        "0", // no registers in the realtime lane
        "2",
        "ad-1#imp",
        "1",
        "ad-1#spend",
        "1",
        "0", //
        "1",
        "cmp-1", //
        "1",
        "cmp-1",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(args, expect);
}

#[test]
fn settled_counts_the_valid_subset_of_the_same_occurrences() {
    let (r1, r2) = (pos("s", "1"), pos("s", "2"));
    // y's first occurrence is invalid (a click burst, say); a later copy of y with other content is valid.
    // The realtime lane counts the first; the settled lane must not fall back to the second.
    let b = batch(&[
        (&r1, vec![imp("x"), ev("y", EventKind::Click, 0)]),
        (&r2, vec![imp("y")]),
    ]);
    let valid = |e: &Event| e.kind != EventKind::Click;
    let mut store = MemoryStore::new();
    let w = DedupWindow::default();
    store
        .process(RT, &b, w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    let p = store
        .process(ST, &b, w, 0, valid)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stats.filtered, 1);
    assert_eq!(
        p.stats.retried, 2,
        "both claims were made by the realtime lane"
    );
    let (rt, _) = store.counters(RT);
    let (st, _) = store.counters(ST);
    assert_eq!((total(&rt).impressions, total(&rt).clicks), (1, 1));
    assert_eq!((total(&st).impressions, total(&st).clicks), (1, 0));
}

#[test]
fn windows() {
    assert_eq!(DedupWindow::default().secs(), DEFAULT_WINDOW_SECS);
    assert_eq!(DEFAULT_WINDOW_SECS, 3_600);
    assert!(DedupWindow::from_secs(MIN_WINDOW_SECS).is_ok());
    assert!(DedupWindow::from_secs(MAX_WINDOW_SECS).is_ok());
    assert_eq!(
        DedupWindow::from_secs(60).map_err(|e| e.to_string()),
        Err("dedup window of 60 s is out of range: give 900..=604800 seconds (shorter than Lambda's 15-minute maximum timeout, a claim could expire under its own invocation)".to_owned())
    );
    assert!(DedupWindow::from_secs(MAX_WINDOW_SECS + 1).is_err());
    assert!(DedupWindow::from_secs(0).is_err());
}

fn one(shard: &str, seq: &str, events: Vec<Event>) -> Batch {
    batch(&[(&pos(shard, seq), events)])
}

fn impressions(store: &MemoryStore, lane: StoreLane) -> u64 {
    store.counters(lane).0.values().map(|t| t.impressions).sum()
}

/// The window's promise, exactly: a duplicate whose claim is attempted while the first claim lives is not
/// counted; one attempted after it expired counts again. A retry of an applied record is fenced whatever
/// the claims say.
#[test]
fn the_window_promises_exactly_this() {
    let w = DedupWindow::from_secs(MIN_WINDOW_SECS).unwrap_or_else(|e| panic!("{e}"));
    let ms = w.secs() * 1000;
    let mut store = MemoryStore::new();
    let run = |store: &mut MemoryStore, b: &Batch| {
        store
            .process(RT, b, w, 0, |_| true)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    run(&mut store, &one("a", "1", vec![imp("x")]));
    assert_eq!(impressions(&store, RT), 1);
    // The last millisecond of the window: still a duplicate.
    store.advance_ms(ms);
    run(&mut store, &one("b", "1", vec![imp("x")]));
    assert_eq!(impressions(&store, RT), 1);
    // One millisecond later the claim is gone: the resend counts again (the documented limit).
    store.advance_ms(1);
    assert!(!store.exists(&claim_key("x")));
    run(&mut store, &one("b", "2", vec![imp("x")]));
    assert_eq!(impressions(&store, RT), 2);
    // A redelivery of a.1 long after its claim expired: the claim now names b.2, and the fence of shard a
    // skips it anyway.
    store.advance_ms(2 * ms);
    let p = run(&mut store, &one("a", "1", vec![imp("x")]));
    assert!(p.is_noop());
    assert_eq!(impressions(&store, RT), 2);
}

#[test]
fn crash_between_claim_and_apply_then_redelivery() {
    let w = DedupWindow::default();
    let mut store = MemoryStore::new();
    let b = one("a", "1", vec![imp("x"), imp("y")]);
    // Claims land, the function dies before the atomic step.
    store
        .claim_many(b.claims(), w)
        .unwrap_or_else(|e| panic!("{e}"));
    // A resend of x in another shard meanwhile: the claim names a.1, so it is a duplicate.
    let dup = store
        .process(RT, &one("c", "7", vec![imp("x")]), w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dup.stats.duplicates, 1);
    // Redelivery: both claims are ours.
    let p = store
        .process(RT, &b, w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.stats.retried, p.stats.counted), (2, 2));
    assert_eq!(impressions(&store, RT), 2);
    // The honest limit: if the claim expires before the redelivery and a resend claims it first, the resend
    // is the one counted — still once.
    let b2 = one("a", "2", vec![imp("z")]);
    store
        .claim_many(b2.claims(), w)
        .unwrap_or_else(|e| panic!("{e}"));
    store.advance_ms(w.secs() * 1000 + 1);
    store
        .process(RT, &one("c", "8", vec![imp("z")]), w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    let p = store
        .process(RT, &b2, w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stats.duplicates, 1);
    assert_eq!(impressions(&store, RT), 3);
}

#[test]
fn the_script_model_is_all_or_nothing_and_single_slot() {
    let w = DedupWindow::default();
    let mut store = MemoryStore::new();
    let b = one("s", "1", vec![imp("x")]);
    let replies = store
        .claim_many(b.claims(), w)
        .unwrap_or_else(|e| panic!("{e}"));
    let p = plan_apply(RT, &b, &replies, None, |_| true).unwrap_or_else(|e| panic!("{e}"));
    let (keys, args) = (p.script_keys(), p.script_args(60));

    // Keys of two slots: CROSSSLOT, nothing written.
    let mut cross = keys.clone();
    cross.push(counter_key(RT, "other", "cmp-1", 1));
    assert!(matches!(
        store.apply_atomic(&cross, &args),
        Err(StoreError::CrossSlot { .. })
    ));
    // Truncated or padded arguments.
    for bad in [
        &args[..args.len() - 1],
        &[args.clone(), vec!["x".to_owned()]].concat()[..],
    ] {
        assert!(matches!(
            store.apply_atomic(&keys, bad),
            Err(StoreError::BadArgs(_))
        ));
    }
    let mut not_a_number = args.clone();
    assert_eq!(not_a_number[6], "ad-1#imp");
    not_a_number[7] = "1e3".to_owned();
    assert!(matches!(
        store.apply_atomic(&keys, &not_a_number),
        Err(StoreError::BadArgs(_))
    ));
    assert!(!store.exists(&keys[0]) && !store.exists(&keys[1]));

    // A mark that is not the expected one: conflict with the current mark, nothing written.
    store.set(&mark_key(RT, "s"), "0010");
    assert_eq!(
        store.apply_atomic(&keys, &args),
        Ok(ScriptReply::Conflict(Some("0010".to_owned())))
    );
    assert_eq!(
        store.step(&p, 60),
        Ok(StepReply::Conflict {
            current: Some(pos("s", "0"))
        })
    );
    assert!(!store.exists(&keys[1]));

    // A corrupt mark fails the batch with a clear error instead of guessing.
    store.set(&mark_key(RT, "s"), "garbage");
    assert_eq!(
        store.process(RT, &b, w, 0, |_| true).map_err(|e| e.to_string()),
        Err("invalid fence mark \"garbage\": only decimal digits are allowed (the mark key holds 3 digits of length, then the digits)".to_owned())
    );
    // The wrong type at a counter key: WRONGTYPE, nothing written (the mark included).
    let mut store = MemoryStore::new();
    store.set(&keys[1], "not a hash");
    assert!(matches!(
        store.apply_atomic(&keys, &args),
        Err(StoreError::WrongType { .. })
    ));
    assert!(!store.exists(&keys[0]));

    // The happy path sets the TTL on counter and index keys, not on the mark.
    let mut store = MemoryStore::new();
    assert_eq!(store.apply_atomic(&keys, &args), Ok(ScriptReply::Applied));
    store.advance_ms(60_001);
    assert!(store.exists(&keys[0]));
    assert!(!store.exists(&keys[1]) && !store.exists(&keys[2]));
}

#[test]
fn an_unreadable_claim_is_reported_not_counted() {
    let w = DedupWindow::default();
    let mut store = MemoryStore::new();
    store.set(&claim_key("x"), "not a claim");
    let p = store
        .process(RT, &one("s", "1", vec![imp("x"), imp("y")]), w, 0, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.stats.unreadable_claims, p.stats.counted), (1, 1));
    // A claim key holding another type is an error, not a guess.
    let mut store = MemoryStore::new();
    let set_key = index_key(RT, "s", 1);
    store
        .apply_atomic(
            &[
                mark_key(RT, "s"),
                counter_key(RT, "s", "c", 1),
                set_key.clone(),
            ],
            &["", "0011", "0", "1", "1", "1", "a#imp", "1", "0", "1", "c"].map(str::to_owned),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.set_nx_get(&set_key, "v", 1),
        Err(StoreError::WrongType { .. })
    ));
}

mod laws {
    use proptest::prelude::*;
    use tally_domain::exactly_once::{decide_claim, ClaimOutcome, Position};
    use tally_domain::store_keys::{
        counter_key, hash_slot, index_key, mark_key, parse_counter_key, shard_tag, StoreLane,
    };

    fn shard_id() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9_.-]{1,128}").expect("valid regex")
    }

    fn id() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9._:-]{1,64}").expect("valid regex")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the ids, every key of a shard's atomic step is in the shard's slot, and counter keys
        /// read back.
        #[test]
        fn shard_keys_share_one_slot(shard in shard_id(), campaign in id(), minute in any::<i64>(), settled in any::<bool>()) {
            let lane = if settled { StoreLane::Settled } else { StoreLane::Realtime };
            let slot = hash_slot(shard_tag(lane, &shard).as_bytes());
            prop_assert_eq!(hash_slot(mark_key(lane, &shard).as_bytes()), slot);
            prop_assert_eq!(hash_slot(index_key(lane, &shard, minute).as_bytes()), slot);
            let key = counter_key(lane, &shard, &campaign, minute);
            prop_assert_eq!(hash_slot(key.as_bytes()), slot);
            prop_assert_eq!(parse_counter_key(&key), Some((lane, shard.as_str(), campaign.as_str(), minute)));
        }

        /// Marks order like the numbers; marks and claim values read back; a claim is ours only for the very
        /// record it names.
        #[test]
        fn positions_round_trip_and_order(a in any::<u128>(), b in any::<u128>(), shard in shard_id(), other in shard_id()) {
            let (pa, pb) = (
                Position::new(&shard, &a.to_string()).expect("valid"),
                Position::new(&shard, &b.to_string()).expect("valid"),
            );
            prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            prop_assert_eq!(pa.mark().cmp(&pb.mark()), a.cmp(&b));
            prop_assert_eq!(Position::from_mark(&shard, &pa.mark()), Ok(pa.clone()));
            prop_assert_eq!(Position::from_claim_value(&pa.claim_value()), Ok(pa.clone()));
            let mine = decide_claim(Some(&pa.claim_value()), &pb);
            prop_assert_eq!(mine == ClaimOutcome::Ours, a == b);
            let po = Position::new(&other, &a.to_string()).expect("valid");
            prop_assert_eq!(decide_claim(Some(&po.claim_value()), &pa) == ClaimOutcome::Ours, other == shard);
        }

        /// Arbitrary stored strings never panic the readers and never read as ours unless they are exactly
        /// our claim value.
        #[test]
        fn hostile_values_never_panic(value in ".{0,300}", shard in shard_id()) {
            let me = Position::new(&shard, "12345").expect("valid");
            let outcome = decide_claim(Some(&value), &me);
            prop_assert_eq!(outcome == ClaimOutcome::Ours, value == me.claim_value());
            let _ = Position::from_mark(&shard, &value);
        }
    }
}
