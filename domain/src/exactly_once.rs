//! Exactly-once counting against the counter store: the claim, fence and apply decisions, as pure functions.
//!
//! Kinesis and Lambda deliver at least once (retries, bisected halves, duplicate invocations, redelivery after
//! a crash), and clients resend events with the same id. A batch of one shard is applied in two steps, and
//! every decision in them is made here, from plain values:
//!
//! 1. **Claims.** Every distinct event id of the batch is claimed in the dedup store with the identity of the
//!    record that holds its first occurrence in the batch ([`Batch::claims`]: `SET <key> <shard>:<seq> NX GET
//!    EX <window>`, pipelined; the replies go to [`plan_apply`] as they are). An occurrence counts only if the
//!    claim names *its* record ([`decide_claim`]): no claim yet ([`ClaimOutcome::Fresh`]) or one naming this
//!    record ([`ClaimOutcome::Ours`]: a retry after a crash between claim and apply, or a duplicate
//!    invocation). A claim naming another record makes it a [`ClaimOutcome::Duplicate`]. The same id twice in
//!    one record counts once (the first occurrence).
//! 2. **Fence and increments, in one atomic step in the shard's hash slot.** The shard has one mark: the last
//!    record applied ([`Position::mark`]). The batch is compared with it ([`decide_fence`]): below the first
//!    record → apply all; at or past the last → skip; inside → apply the records after the mark only.
//!    [`plan_apply`] turns that into counter increments and the new mark ([`ApplyPlan`]); the step checks that
//!    the mark is still the one planned on, adds the increments and moves the mark, atomically (a script;
//!    [`ApplyPlan::script_keys`], [`ApplyPlan::script_args`]). If the mark moved (a duplicate invocation got
//!    there first), the step changes nothing and returns the current mark, and the caller plans again.
//!
//! The store's semantics are pinned by [`crate::store_model::MemoryStore`], the executable reference the
//! property tests run every interleaving against. The argument why the counts are exact, and what the dedup
//! window promises, is in `docs/counter-store.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::event::{Event, EventKind};
use crate::hll::{hash64, register_of};
use crate::rollup::minute_of;
use crate::store_keys::{
    claim_key, counter_field, counter_key, hash_slot, index_key, mark_key, user_field, Counter,
    StoreLane,
};

/// Longest Kinesis shard id (AWS: 1–128 characters).
pub const MAX_SHARD_ID_LEN: usize = 128;
/// Longest sequence number accepted (AWS documents up to 128 digits; the mark's length prefix has 3 digits).
pub const MAX_SEQUENCE_DIGITS: usize = 999;

/// Shortens hostile input before it goes into an error message.
pub(crate) fn preview(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Why a shard id, sequence number, mark or claim value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("invalid kinesis shard id {value:?}: {rule}")]
    ShardId { value: String, rule: &'static str },
    #[error("invalid kinesis sequence number {value:?}: {rule}")]
    SequenceNumber { value: String, rule: &'static str },
    #[error("invalid fence mark {value:?}: {rule} (the mark key holds 3 digits of length, then the digits)")]
    Mark { value: String, rule: &'static str },
    #[error("invalid claim value {value:?}: {rule} (a claim holds <shard number>!<base-62 sequence number>, or <shard id>:<sequence number>)")]
    ClaimValue { value: String, rule: &'static str },
}

/// A record's place in the stream: its shard and its sequence number.
///
/// Ordered by shard, then by the sequence number *as a number* (sequence numbers are canonical decimal strings
/// of any length, so a shorter one is smaller). Only positions of the same shard are comparable in any useful
/// sense; [`decide_fence`] refuses to compare across shards.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Position {
    shard: String,
    sequence: String,
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.shard, self.sequence)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.shard, self.sequence)
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.shard
            .cmp(&other.shard)
            .then_with(|| self.sequence.len().cmp(&other.sequence.len()))
            .then_with(|| self.sequence.cmp(&other.sequence))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The prefix of the shard ids Kinesis gives (`shardId-000000000003`: the prefix and 12 digits).
const KINESIS_SHARD_PREFIX: &str = "shardId-";
/// Digits of a Kinesis shard id's number.
const KINESIS_SHARD_DIGITS: usize = 12;
/// The digits of the compact claim's sequence number, in value order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The most base-62 digits a sequence number of [`MAX_SEQUENCE_DIGITS`] decimal digits needs.
const MAX_BASE62_DIGITS: usize = 558;

/// The number of a shard id Kinesis gives (`shardId-` and 12 digits), `None` for any other id.
fn kinesis_shard_number(shard: &str) -> Option<u64> {
    let digits = shard.strip_prefix(KINESIS_SHARD_PREFIX)?;
    if digits.len() != KINESIS_SHARD_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Decimal digits per limb of [`decimal_to_base62`]'s big number.
const DECIMAL_LIMB_DIGITS: usize = 9;
/// 10^9, a decimal limb's base.
const DECIMAL_LIMB: u64 = 1_000_000_000;
/// Base-62 digits per division step of [`decimal_to_base62`].
const BASE62_CHUNK_DIGITS: usize = 5;
/// 62^5 (< 10^9, so a step's partial remainder times a limb's base stays far below `u64::MAX`).
const BASE62_CHUNK: u64 = 916_132_832;

/// A canonical decimal number (as [`check_sequence_number`] accepts) in base 62, most significant digit first.
/// Every claim is one call (a 56-digit Kinesis sequence number): the number is held in limbs of nine decimal
/// digits and divided by 62^5 per step, five base-62 digits at a time.
fn decimal_to_base62(decimal: &str) -> String {
    let bytes = decimal.as_bytes();
    let mut limbs: Vec<u64> = Vec::with_capacity(bytes.len() / DECIMAL_LIMB_DIGITS + 1);
    let head = bytes.len() % DECIMAL_LIMB_DIGITS;
    let mut at = 0;
    for len in std::iter::once(head)
        .filter(|&h| h > 0)
        .chain(std::iter::repeat_n(
            DECIMAL_LIMB_DIGITS,
            bytes.len() / DECIMAL_LIMB_DIGITS,
        ))
    {
        limbs.push(
            bytes[at..at + len]
                .iter()
                .fold(0, |n, b| n * 10 + u64::from(b.wrapping_sub(b'0'))),
        );
        at += len;
    }
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    while limbs.first().is_some_and(|&l| l == 0) {
        limbs.remove(0);
    }
    while !limbs.is_empty() {
        let mut remainder = 0u64;
        for limb in &mut limbs {
            let current = remainder * DECIMAL_LIMB + *limb;
            *limb = current / BASE62_CHUNK;
            remainder = current % BASE62_CHUNK;
        }
        for _ in 0..BASE62_CHUNK_DIGITS {
            out.push(BASE62[(remainder % 62) as usize]);
            remainder /= 62;
        }
        let leading = limbs.iter().take_while(|&&l| l == 0).count();
        limbs.drain(..leading);
    }
    while out.len() > 1 && out.last() == Some(&b'0') {
        out.pop();
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A base-62 number ([`decimal_to_base62`]'s digits) in decimal; `None` for a character outside them. The
/// decimal number is held in limbs of nine digits, least significant first.
fn base62_to_decimal(text: &str) -> Option<String> {
    let mut limbs: Vec<u64> = vec![0];
    for b in text.bytes() {
        let mut carry = base62_digit(b)?;
        for limb in &mut limbs {
            let current = *limb * 62 + carry;
            *limb = current % DECIMAL_LIMB;
            carry = current / DECIMAL_LIMB;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = String::with_capacity(limbs.len() * DECIMAL_LIMB_DIGITS);
    let mut rest = limbs.iter().rev();
    if let Some(top) = rest.next() {
        out.push_str(&top.to_string());
    }
    for limb in rest {
        out.push_str(&format!("{limb:09}"));
    }
    Some(out)
}

/// A base-62 digit's value ([`BASE62`]), `None` for any other byte.
fn base62_digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'A'..=b'Z' => Some(u64::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u64::from(b - b'a') + 36),
        _ => None,
    }
}

/// `<shard number>!<sequence in base 62>` back to a position; refuses what [`Position::claim_value`] cannot
/// produce (leading zeros, other characters, a number beyond 12 digits).
fn from_compact_claim(
    value: &str,
    number: &str,
    sequence: &str,
) -> Result<Position, PositionError> {
    let bad = |rule| PositionError::ClaimValue {
        value: preview(value),
        rule,
    };
    let canonical = |t: &str| !t.is_empty() && (t.len() == 1 || !t.starts_with('0'));
    if !canonical(number)
        || number.len() > KINESIS_SHARD_DIGITS
        || !number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("shard number not 1 to 12 digits without leading zeros"));
    }
    if !canonical(sequence) || sequence.len() > MAX_BASE62_DIGITS {
        return Err(bad("empty, too long or zero-led base-62 sequence number"));
    }
    let decimal = base62_to_decimal(sequence)
        .ok_or_else(|| bad("sequence number with characters other than base-62 digits"))?;
    let shard = format!(
        "{KINESIS_SHARD_PREFIX}{number:0>width$}",
        width = KINESIS_SHARD_DIGITS
    );
    Position::new(&shard, &decimal).map_err(|_| bad("sequence number longer than 999 digits"))
}

/// Kinesis' shard id rule: 1..=128 characters of `[A-Za-z0-9_.-]`.
pub fn check_shard_id(shard: &str) -> Result<(), PositionError> {
    let rule = if shard.is_empty() {
        Some("empty")
    } else if shard.len() > MAX_SHARD_ID_LEN {
        Some("longer than 128 characters")
    } else if !shard
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Some("only letters, digits, '_', '.' and '-' are allowed")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(PositionError::ShardId {
            value: preview(shard),
            rule,
        }),
        None => Ok(()),
    }
}

/// A canonical decimal number (no sign, no leading zero) of at most [`MAX_SEQUENCE_DIGITS`] digits.
pub fn check_sequence_number(sequence: &str) -> Result<(), PositionError> {
    let rule = if sequence.is_empty() {
        Some("empty")
    } else if sequence.len() > MAX_SEQUENCE_DIGITS {
        Some("longer than 999 digits")
    } else if !sequence.bytes().all(|b| b.is_ascii_digit()) {
        Some("only decimal digits are allowed")
    } else if sequence.len() > 1 && sequence.starts_with('0') {
        Some("leading zeros are not allowed")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(PositionError::SequenceNumber {
            value: preview(sequence),
            rule,
        }),
        None => Ok(()),
    }
}

impl Position {
    /// Validates both parts ([`check_shard_id`], [`check_sequence_number`]).
    pub fn new(shard: &str, sequence: &str) -> Result<Position, PositionError> {
        check_shard_id(shard)?;
        check_sequence_number(sequence)?;
        Ok(Position {
            shard: shard.to_owned(),
            sequence: sequence.to_owned(),
        })
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// The sequence number as Kinesis wrote it.
    pub fn sequence(&self) -> &str {
        &self.sequence
    }

    /// The stored form of the sequence number: three digits of length, then the digits, so that comparing
    /// two marks as strings compares the numbers (without padding every mark to the longest width).
    pub fn mark(&self) -> String {
        format!("{:03}{}", self.sequence.len(), self.sequence)
    }

    /// Reads a stored mark back (the shard is the key's). Refuses anything [`Position::mark`] cannot produce.
    pub fn from_mark(shard: &str, mark: &str) -> Result<Position, PositionError> {
        let bad = |rule| PositionError::Mark {
            value: preview(mark),
            rule,
        };
        if mark.len() < 4 {
            return Err(bad("shorter than 4 characters"));
        }
        if !mark.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("only decimal digits are allowed"));
        }
        let digits = &mark[3..];
        if mark[..3].parse::<usize>().ok() != Some(digits.len()) {
            return Err(bad("the length prefix does not match the digits"));
        }
        Position::new(shard, digits).map_err(|e| match e {
            PositionError::SequenceNumber { rule, .. } => bad(rule),
            other => other,
        })
    }

    /// The value a claim holds, short because the dedup window holds one per event (docs/counter-store.md,
    /// "What the claims cost"): for Kinesis' own shard ids (`shardId-` and 12 digits) `<shard number>!<sequence
    /// number in base 62>` (`3!1fVuy…`, 34 bytes for a 56-digit sequence number instead of 77, short enough for
    /// the server to store it with its object header); for any other shard id `<shard>:<sequence>` (`:` is not
    /// a shard id character, so it splits once). Both read back with [`Position::from_claim_value`].
    pub fn claim_value(&self) -> String {
        match kinesis_shard_number(&self.shard) {
            Some(n) => format!("{n}!{}", decimal_to_base62(&self.sequence)),
            None => format!("{}:{}", self.shard, self.sequence),
        }
    }

    /// Reads a claim value back. Refuses anything [`Position::claim_value`] cannot produce.
    pub fn from_claim_value(value: &str) -> Result<Position, PositionError> {
        if let Some((number, sequence)) = value.split_once('!') {
            return from_compact_claim(value, number, sequence);
        }
        let Some((shard, sequence)) = value.split_once(':') else {
            return Err(PositionError::ClaimValue {
                value: preview(value),
                rule: "no ':' between shard id and sequence number",
            });
        };
        Position::new(shard, sequence).map_err(|e| {
            let rule = match e {
                PositionError::ShardId { rule, .. } => match rule {
                    "empty" => "empty shard id",
                    "longer than 128 characters" => "shard id longer than 128 characters",
                    _ => "shard id with characters other than letters, digits, '_', '.' and '-'",
                },
                PositionError::SequenceNumber { rule, .. } => match rule {
                    "empty" => "empty sequence number",
                    "longer than 999 digits" => "sequence number longer than 999 digits",
                    "leading zeros are not allowed" => "sequence number with leading zeros",
                    _ => "sequence number with characters other than digits",
                },
                _ => "unreadable",
            };
            PositionError::ClaimValue {
                value: preview(value),
                rule,
            }
        })
    }
}

/// Who holds a claim that is not ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Another record (of this shard or another).
    Record(Position),
    /// A value [`Position::claim_value`] cannot have written (shortened for the log): a bug or a foreign writer
    /// in the `dedup:` namespace. Not counted: that never counts an event twice, and the caller reports it.
    Unreadable(String),
}

/// What a claim means for one occurrence of an event id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Nobody had claimed the id; this record has now claimed it. Counts.
    Fresh,
    /// The claim already names this record: a retry after a crash between claim and apply, a redelivery, a
    /// duplicate invocation, or the other lane got here first. Counts (unless the fence says the record was
    /// applied already).
    Ours,
    /// Another record claimed the id first. Does not count.
    Duplicate { owner: Owner },
}

impl ClaimOutcome {
    /// Whether the occurrence counts (subject to the fence).
    pub fn counts(&self) -> bool {
        matches!(self, ClaimOutcome::Fresh | ClaimOutcome::Ours)
    }
}

/// The claim decision: `existing` is what `SET … NX GET` returned (`None`: the key did not exist and now
/// holds this record's claim).
pub fn decide_claim(existing: Option<&str>, this_record: &Position) -> ClaimOutcome {
    let Some(value) = existing else {
        return ClaimOutcome::Fresh;
    };
    match Position::from_claim_value(value) {
        Ok(owner) if owner == *this_record => ClaimOutcome::Ours,
        Ok(owner) => ClaimOutcome::Duplicate {
            owner: Owner::Record(owner),
        },
        Err(_) => ClaimOutcome::Duplicate {
            owner: Owner::Unreadable(preview(value)),
        },
    }
}

/// Why two positions could not be fenced against each other.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    #[error("batch of shard {batch} fenced with the mark of shard {mark}: the mark key belongs to another shard")]
    OtherShard { batch: String, mark: String },
    #[error("batch runs from {first} to {last}: a batch holds records of one shard")]
    MixedShards { first: Position, last: Position },
    #[error("batch runs from {first} to {last}: the first record must not be after the last")]
    Reversed { first: Position, last: Position },
}

/// What the fence says about a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceDecision {
    /// No record of the batch is applied yet (no mark, or the mark is below the first record).
    Apply,
    /// The records up to and including this mark are applied (an earlier, shorter delivery); apply the rest.
    ApplyAfter(Position),
    /// Every record of the batch is applied (the mark is at or past the last record).
    Skip,
}

impl FenceDecision {
    /// Whether a record at `position` is still to be applied.
    pub fn applies(&self, position: &Position) -> bool {
        match self {
            FenceDecision::Apply => true,
            FenceDecision::ApplyAfter(mark) => position > mark,
            FenceDecision::Skip => false,
        }
    }
}

/// The fence decision for a batch `first..=last` of one shard against the shard's mark.
pub fn decide_fence(
    mark: Option<&Position>,
    first: &Position,
    last: &Position,
) -> Result<FenceDecision, FenceError> {
    if first.shard != last.shard {
        return Err(FenceError::MixedShards {
            first: first.clone(),
            last: last.clone(),
        });
    }
    if first > last {
        return Err(FenceError::Reversed {
            first: first.clone(),
            last: last.clone(),
        });
    }
    let Some(mark) = mark else {
        return Ok(FenceDecision::Apply);
    };
    if mark.shard != first.shard {
        return Err(FenceError::OtherShard {
            batch: first.shard.clone(),
            mark: mark.shard.clone(),
        });
    }
    Ok(if mark < first {
        FenceDecision::Apply
    } else if mark >= last {
        FenceDecision::Skip
    } else {
        FenceDecision::ApplyAfter(mark.clone())
    })
}

/// Why a record could not join a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error(
        "record {index} is from shard {got} in a batch of shard {want}: a batch holds one shard"
    )]
    OtherShard {
        index: usize,
        got: String,
        want: String,
    },
    #[error("record {index} ({got}) does not follow the previous record ({previous}): sequence numbers must increase")]
    NotIncreasing {
        index: usize,
        got: Position,
        previous: Position,
    },
}

/// One claim to make for a batch: `SET <key> <value> NX GET EX <window>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// [`claim_key`] of the event id.
    pub key: String,
    /// [`Position::claim_value`] of the record holding the id's first occurrence in the batch.
    pub value: String,
    /// Index of that record in the batch.
    pub record: usize,
}

/// An event of a batch with what the claim step needs to know about it.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    record: usize,
    /// Index into the batch's claims.
    claim: usize,
    /// Whether this is the first occurrence of its id within its record (later ones never count).
    first_in_record: bool,
    event: Event,
}

/// The events of one batch of one shard, each with its record, in stream order; and the claims they need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    records: Vec<Position>,
    entries: Vec<Entry>,
    claims: Vec<ClaimRequest>,
    claim_of_key: HashMap<String, usize>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Appends a record's events; the record must follow the previous one in the same shard. A record may
    /// hold no events (nothing decodable): it still moves the mark.
    pub fn push_record(
        &mut self,
        position: Position,
        events: Vec<Event>,
    ) -> Result<(), BatchError> {
        let index = self.records.len();
        if let Some(previous) = self.records.last() {
            if previous.shard != position.shard {
                return Err(BatchError::OtherShard {
                    index,
                    got: position.shard,
                    want: previous.shard.clone(),
                });
            }
            if *previous >= position {
                return Err(BatchError::NotIncreasing {
                    index,
                    got: position,
                    previous: previous.clone(),
                });
            }
        }
        let mut seen_in_record: BTreeSet<usize> = BTreeSet::new();
        for event in events {
            let key = claim_key(&event.id);
            let claim = match self.claim_of_key.get(&key) {
                Some(&c) => c,
                None => {
                    let c = self.claims.len();
                    self.claims.push(ClaimRequest {
                        key: key.clone(),
                        value: position.claim_value(),
                        record: index,
                    });
                    self.claim_of_key.insert(key, c);
                    c
                }
            };
            self.entries.push(Entry {
                record: index,
                claim,
                first_in_record: seen_in_record.insert(claim),
                event,
            });
        }
        self.records.push(position);
        Ok(())
    }

    /// The shard, `None` for a batch without records.
    pub fn shard(&self) -> Option<&str> {
        self.records.first().map(|p| p.shard.as_str())
    }

    /// The record positions, increasing.
    pub fn records(&self) -> &[Position] {
        &self.records
    }

    pub fn first(&self) -> Option<&Position> {
        self.records.first()
    }

    pub fn last(&self) -> Option<&Position> {
        self.records.last()
    }

    /// The events with the position of their record, in stream order.
    pub fn events(&self) -> impl Iterator<Item = (&Position, &Event)> {
        self.entries
            .iter()
            .map(|e| (&self.records[e.record], &e.event))
    }

    /// Events in the batch (duplicates included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One claim per distinct event id, in order of first occurrence. Send them all (pipelined, any order:
    /// they are independent keys), and pass the replies to [`plan_apply`] in this order.
    pub fn claims(&self) -> &[ClaimRequest] {
        &self.claims
    }

    /// The batch cut into consecutive runs of whole records, each small enough that its atomic step fits one
    /// request of at most `max_args` arguments ([`MAX_REQUEST_ARGS`] on ElastiCache Serverless) however the
    /// claims answer and wherever the mark is. Each run is applied as a batch of its own (claims, fence,
    /// script), exactly as if the mapping had delivered the smaller batches: the fence moves run by run, so a
    /// crash between two runs is a retry of the rest. Most batches are one run (the batch itself).
    ///
    /// The bound counts every first occurrence of the run's records (the keys, fields and registers
    /// [`plan_apply`] would make if every claim were fresh and no mark stood, as sets, so records that share a
    /// campaign or a register fill the run no further): real replies, a mark and the lane's filter only leave
    /// events out.
    /// A record that alone needs more than `max_args` is a run of its own (collect packs at most
    /// [`crate::wire::MAX_EVENTS_PER_RECORD`] events in a record, which always fit: tested).
    pub fn split_for_requests(&self, lane: StoreLane, max_args: usize) -> Vec<Batch> {
        if self.fits_one_request(lane, max_args) {
            return vec![self.clone()];
        }
        let mut per_record: Vec<Vec<&Entry>> = vec![Vec::new(); self.records.len()];
        for entry in &self.entries {
            per_record[entry.record].push(entry);
        }
        let mut runs = Vec::new();
        let mut run = Batch::new();
        let mut size = RunArgs::default();
        for (position, entries) in self.records.iter().zip(per_record) {
            let added = size.add(lane, &entries);
            if !run.is_empty_of_records() && size.args() > max_args {
                size.remove(added);
                runs.push(std::mem::take(&mut run));
                size = RunArgs::default();
                size.add(lane, &entries);
            }
            let events = entries.iter().map(|e| e.event.clone()).collect();
            // Positions come from a valid batch: increasing, one shard.
            let pushed = run.push_record(position.clone(), events);
            debug_assert!(pushed.is_ok());
        }
        if !run.is_empty_of_records() {
            runs.push(run);
        }
        runs
    }

    /// Whether the batch is applied whole: one record, or its request fits `max_args` however the claims
    /// answer ([`Batch::split_for_requests`] returns it as its only run).
    pub fn fits_one_request(&self, lane: StoreLane, max_args: usize) -> bool {
        self.records.len() <= 1 || worst_case_request_args(lane, self) <= max_args
    }

    fn is_empty_of_records(&self) -> bool {
        self.records.is_empty()
    }
}

/// The most arguments ElastiCache Serverless takes in one request (the command's name included): "clients
/// cannot issue a request with more than 3,999 arguments" (ElastiCache, "Valkey and Redis OSS configuration
/// and limits", serverless caches). The apply script's `EVALSHA` is split to fit ([`Batch::split_for_requests`]).
pub const MAX_REQUEST_ARGS: usize = 3_999;

/// Arguments of every apply request whatever it holds: `EVALSHA`, the digest, the key count, the mark's key and
/// the five fixed `ARGV` entries.
const FIXED_REQUEST_ARGS: usize = 3 + 1 + 5;

/// What a run's request would hold if every first occurrence in its records counted, kept as the records are
/// added (the keys, fields and registers `plan_apply` would make, as sets: records that share them cost nothing
/// more). An upper bound of the real plan's [`ApplyPlan::request_args`]: duplicates across records, the mark and
/// the lane's filter only leave events out.
#[derive(Default)]
struct RunArgs {
    hashes: HashSet<(String, i64)>,
    minutes: HashSet<i64>,
    fields: HashSet<(String, i64, String, Counter)>,
    registers: HashSet<(String, i64, String, u16)>,
}

/// What one [`RunArgs::add`] inserted, to take it back.
#[derive(Default)]
struct Added {
    hashes: Vec<(String, i64)>,
    minutes: Vec<i64>,
    fields: Vec<(String, i64, String, Counter)>,
    registers: Vec<(String, i64, String, u16)>,
}

impl RunArgs {
    fn args(&self) -> usize {
        FIXED_REQUEST_ARGS
            + 4 * self.hashes.len()
            + 2 * self.minutes.len()
            + 2 * self.fields.len()
            + 2 * self.registers.len()
    }

    fn add(&mut self, lane: StoreLane, entries: &[&Entry]) -> Added {
        let mut added = Added::default();
        for entry in entries.iter().filter(|e| e.first_in_record) {
            let e = &entry.event;
            let minute = minute_of(e.received_ms);
            let hash = (e.campaign_id.clone(), minute);
            if self.hashes.insert(hash.clone()) {
                added.hashes.push(hash);
            }
            if self.minutes.insert(minute) {
                added.minutes.push(minute);
            }
            let mut tally = Tally::default();
            tally.add(e);
            for counter in Counter::ALL.into_iter().filter(|c| tally.get(*c) > 0) {
                let field = (e.campaign_id.clone(), minute, e.ad_id.clone(), counter);
                if self.fields.insert(field.clone()) {
                    added.fields.push(field);
                }
            }
            if let (true, Some(user)) = (keeps_users(lane), e.user_id.as_deref()) {
                let (register, _) = register_of(hash64(user.as_bytes()));
                let key = (e.campaign_id.clone(), minute, e.ad_id.clone(), register);
                if self.registers.insert(key.clone()) {
                    added.registers.push(key);
                }
            }
        }
        added
    }

    fn remove(&mut self, added: Added) {
        for k in added.hashes {
            self.hashes.remove(&k);
        }
        for k in added.minutes {
            self.minutes.remove(&k);
        }
        for k in added.fields {
            self.fields.remove(&k);
        }
        for k in added.registers {
            self.registers.remove(&k);
        }
    }
}

/// Arguments of the request that would apply `batch` if every claim were fresh and no mark stood (the bound of
/// [`Batch::split_for_requests`]).
fn worst_case_request_args(lane: StoreLane, batch: &Batch) -> usize {
    let fresh = vec![None; batch.claims.len()];
    match plan_apply(lane, batch, &fresh, None, |_| true) {
        Ok(plan) => plan.request_args(),
        // Only a reply count mismatch fails, and `fresh` has one per claim.
        Err(_) => usize::MAX,
    }
}

/// The six additive counters of a (campaign, ad, minute) (unique users are the deferred lane's sketches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tally {
    pub impressions: u64,
    pub viewable: u64,
    pub clicks: u64,
    pub conversions: u64,
    pub spend_micros: u64,
    pub value_micros: u64,
}

impl Tally {
    /// Counts one event (saturating; per event the money fields are bounded by the field rules).
    pub fn add(&mut self, e: &Event) {
        let slot = match e.kind {
            EventKind::Impression => &mut self.impressions,
            EventKind::ViewableImpression => &mut self.viewable,
            EventKind::Click => &mut self.clicks,
            EventKind::Conversion => &mut self.conversions,
        };
        *slot = slot.saturating_add(1);
        self.spend_micros = self.spend_micros.saturating_add(e.cost_micros);
        self.value_micros = self.value_micros.saturating_add(e.value_micros);
    }

    pub fn merge(&mut self, other: &Tally) {
        for c in Counter::ALL {
            self.set(c, self.get(c).saturating_add(other.get(c)));
        }
    }

    pub fn get(&self, counter: Counter) -> u64 {
        match counter {
            Counter::Impressions => self.impressions,
            Counter::Viewable => self.viewable,
            Counter::Clicks => self.clicks,
            Counter::Conversions => self.conversions,
            Counter::SpendMicros => self.spend_micros,
            Counter::ValueMicros => self.value_micros,
        }
    }

    pub fn set(&mut self, counter: Counter, value: u64) {
        match counter {
            Counter::Impressions => self.impressions = value,
            Counter::Viewable => self.viewable = value,
            Counter::Clicks => self.clicks = value,
            Counter::Conversions => self.conversions = value,
            Counter::SpendMicros => self.spend_micros = value,
            Counter::ValueMicros => self.value_micros = value,
        }
    }

    /// Events counted.
    pub fn events(&self) -> u64 {
        self.impressions
            .saturating_add(self.viewable)
            .saturating_add(self.clicks)
            .saturating_add(self.conversions)
    }

    pub fn is_zero(&self) -> bool {
        *self == Tally::default()
    }
}

/// Why a plan could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{got} claim replies for {want} claims: pass one reply per Batch::claims() entry, in order"
    )]
    ClaimReplies { got: usize, want: usize },
    #[error(transparent)]
    Fence(#[from] FenceError),
}

/// What a plan did with the batch's events (for logs and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Events in the batch.
    pub events: usize,
    /// Counted by this plan.
    pub counted: usize,
    /// In records the fence says are applied already.
    pub already_applied: usize,
    /// Claimed first by another record (of any shard).
    pub duplicates: usize,
    /// The same id again within one record.
    pub repeats: usize,
    /// Claims whose value could not be read (counted as duplicates too): should be zero.
    pub unreadable_claims: usize,
    /// Claimed by this record but left out by the lane's filter (the settled lane's invalid traffic).
    pub filtered: usize,
    /// Counted occurrences whose claim already named this record (retries, redeliveries, the other lane).
    pub retried: usize,
}

impl ApplyStats {
    /// Adds another plan's figures (the runs of one batch: [`Batch::split_for_requests`]).
    pub fn add(&mut self, other: &ApplyStats) {
        self.events += other.events;
        self.counted += other.counted;
        self.already_applied += other.already_applied;
        self.duplicates += other.duplicates;
        self.repeats += other.repeats;
        self.unreadable_claims += other.unreadable_claims;
        self.filtered += other.filtered;
        self.retried += other.retried;
    }
}

/// The atomic step for one batch of one shard: check the mark, add the increments, move the mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyPlan {
    pub lane: StoreLane,
    pub shard: String,
    pub fence: FenceDecision,
    /// The mark the plan was made against: the step applies only if the stored mark is still this.
    pub expected_mark: Option<Position>,
    /// The batch's last record; `None` when there is nothing to do (the fence said skip, or an empty batch).
    pub new_mark: Option<Position>,
    /// Increments per (campaign, minute), then per ad. Only non-zero tallies.
    pub increments: BTreeMap<(String, i64), BTreeMap<String, Tally>>,
    /// The settled lane's unique-user registers per (campaign, minute), then per ad: the highest rank the
    /// batch's counted events with a user id offer each register ([`register_of`] of the user id's
    /// [`hash64`], the sketch's own hashing), pre-merged so the script gets one (register, rank) per distinct
    /// register. Empty for the realtime lane. Every key is also a key of `increments`.
    pub users: BTreeMap<(String, i64), BTreeMap<String, Registers>>,
    pub stats: ApplyStats,
}

/// One ad's sketch registers as the script max-merges them: register index → rank.
pub type Registers = BTreeMap<u16, u8>;

/// Whether a lane keeps unique-user registers: the settled lane (the realtime lane's users are the settled
/// lane's estimate for the same bucket).
pub fn keeps_users(lane: StoreLane) -> bool {
    lane == StoreLane::Settled
}

/// The reply of the atomic step, as [`ApplyPlan::read_reply`] makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepReply {
    /// Increments added, mark moved.
    Applied,
    /// The mark was not the expected one: nothing changed; plan again against this mark.
    Conflict { current: Option<Position> },
}

impl ApplyPlan {
    /// Whether the step can be left out (nothing to add, no mark to move).
    pub fn is_noop(&self) -> bool {
        self.new_mark.is_none()
    }

    /// The keys the step touches, for the script's `KEYS`: the mark, then one counter hash per (campaign,
    /// minute), then one index set per minute. All carry the tag `{<lane>:<shard>}`: one hash slot.
    pub fn script_keys(&self) -> Vec<String> {
        let mut keys = vec![mark_key(self.lane, &self.shard)];
        keys.extend(
            self.hashes().map(|((campaign, minute), _)| {
                counter_key(self.lane, &self.shard, campaign, *minute)
            }),
        );
        keys.extend(
            self.minutes()
                .into_iter()
                .map(|m| index_key(self.lane, &self.shard, m)),
        );
        keys
    }

    /// The hash slot of every key in [`ApplyPlan::script_keys`].
    pub fn slot(&self) -> u16 {
        hash_slot(mark_key(self.lane, &self.shard).as_bytes())
    }

    fn minutes(&self) -> BTreeSet<i64> {
        self.increments.keys().map(|(_, m)| *m).collect()
    }

    /// The counter hashes in the script's order: by minute, then campaign — so the hashes of one minute are
    /// consecutive and in the order its index set lists their campaigns (the script pairs them by position).
    fn hashes(&self) -> impl Iterator<Item = (&(String, i64), &BTreeMap<String, Tally>)> {
        let mut hashes: Vec<_> = self.increments.iter().collect();
        hashes.sort_by(|((c1, m1), _), ((c2, m2), _)| m1.cmp(m2).then_with(|| c1.cmp(c2)));
        hashes.into_iter()
    }

    /// Arguments of the `EVALSHA` request that runs this plan (`EVALSHA`, digest, key count, [`Self::script_keys`],
    /// [`Self::script_args`]), counted without building them; at most [`MAX_REQUEST_ARGS`] on ElastiCache
    /// Serverless.
    pub fn request_args(&self) -> usize {
        let hashes = self.increments.len();
        let minutes = self.minutes().len();
        let fields: usize = self
            .increments
            .values()
            .flat_map(BTreeMap::values)
            .map(|t| Counter::ALL.iter().filter(|c| t.get(**c) > 0).count())
            .sum();
        let registers: usize = self
            .increments
            .keys()
            .filter_map(|key| self.users.get(key))
            .flat_map(BTreeMap::values)
            .map(BTreeMap::len)
            .sum();
        // Keys: mark, hashes, index sets. ARGV: 5 fixed; per hash n, m and their pairs; per index set its
        // count and one member per hash of that minute.
        FIXED_REQUEST_ARGS
            + hashes
            + minutes
            + 2 * hashes
            + 2 * fields
            + 2 * registers
            + minutes
            + hashes
    }

    /// The script's `ARGV`, all strings:
    ///
    /// ```text
    /// [1] expected mark ("" = no mark yet)     [2] new mark      [3] TTL of counter and index keys, seconds
    /// [4] C = counter hashes (KEYS[2..=C+1], by minute, then campaign)
    /// [5] I = index sets (KEYS[C+2..=C+I+1], one per minute, in order)
    /// per counter hash, in KEYS order: n, then n pairs (field, increment), then m, then m pairs
    ///   (register field, rank)
    /// per index set, in KEYS order: n, then n campaign ids — those of the set's n hashes, in KEYS order
    /// ```
    ///
    /// The script checks every argument, then: if `GET KEYS[1]` (nil as "") differs from `ARGV[1]`, return
    /// `{0, current}` and change nothing; else `HINCRBY` every pair, raise every register field to its rank if
    /// it is lower (`HGET`, then `HSET` when the rank is higher: a maximum, so applying it again changes
    /// nothing); for a *new* hash — its first `HINCRBY` returned exactly the increment, or it has no field —
    /// `EXPIRE hash ttl NX` (when ttl > 0) and `SADD` its campaign to its minute's set, then `EXPIRE set ttl`
    /// once per set that listed a new hash; `SET KEYS[1] ARGV[2]`, return `{1}`. A hash whose first field
    /// existed was created, expired and listed by an earlier step. [`crate::store_model::MemoryStore::apply_atomic`]
    /// is the reference. Increments fit `HINCRBY`'s signed 64 bits: per event at most 10¹² value micros.
    pub fn script_args(&self, ttl_secs: u64) -> Vec<String> {
        let mut args = vec![
            self.expected_mark
                .as_ref()
                .map(Position::mark)
                .unwrap_or_default(),
            self.new_mark
                .as_ref()
                .map(Position::mark)
                .unwrap_or_default(),
            ttl_secs.to_string(),
            self.increments.len().to_string(),
            self.minutes().len().to_string(),
        ];
        let none = BTreeMap::new();
        for (key, ads) in self.hashes() {
            let fields: Vec<(String, u64)> = ads
                .iter()
                .flat_map(|(ad, tally)| {
                    Counter::ALL
                        .into_iter()
                        .filter(|c| tally.get(*c) > 0)
                        .map(|c| (counter_field(ad, c), tally.get(c)))
                })
                .collect();
            args.push(fields.len().to_string());
            for (field, by) in fields {
                args.push(field);
                args.push(by.to_string());
            }
            let users = self.users.get(key).unwrap_or(&none);
            args.push(users.values().map(BTreeMap::len).sum::<usize>().to_string());
            for (ad, registers) in users {
                for (register, rank) in registers {
                    args.push(user_field(ad, *register));
                    args.push(rank.to_string());
                }
            }
        }
        for minute in self.minutes() {
            let campaigns: Vec<&String> = self
                .increments
                .keys()
                .filter(|(_, m)| *m == minute)
                .map(|(c, _)| c)
                .collect();
            args.push(campaigns.len().to_string());
            args.extend(campaigns.into_iter().cloned());
        }
        args
    }

    /// Reads the step's reply: `applied` true, or false with the current stored mark (`None`: no mark).
    pub fn read_reply(
        &self,
        applied: bool,
        current: Option<&str>,
    ) -> Result<StepReply, PositionError> {
        if applied {
            return Ok(StepReply::Applied);
        }
        let current = match current {
            None | Some("") => None,
            Some(m) => Some(Position::from_mark(&self.shard, m)?),
        };
        Ok(StepReply::Conflict { current })
    }

    /// Every counted event, summed: per (campaign, ad, minute).
    pub fn tallies(&self) -> impl Iterator<Item = ((&str, &str, i64), &Tally)> {
        self.increments
            .iter()
            .flat_map(|((campaign, minute), ads)| {
                ads.iter()
                    .map(move |(ad, t)| ((campaign.as_str(), ad.as_str(), *minute), t))
            })
    }
}

/// Plans the atomic step of a batch.
///
/// * `replies`: what `SET <key> <value> NX GET` returned for each of [`Batch::claims`], in order (`None` for
///   nil: the claim is now this batch's).
/// * `mark`: the shard's stored mark as read (or as returned by a conflict).
/// * `keep`: the lane's filter — every event for the realtime lane, the valid ones for the settled lane. It is
///   asked only about occurrences the claims let count, so both lanes agree on which occurrence of an id is
///   the one (the settled counts are the valid subset of the realtime counts).
///
/// What the claim says about one occurrence: the reply, or — when the key was free — the claim this batch just
/// made for the id's first occurrence (so a later record of the batch holding the id is its duplicate).
fn claim_outcome(batch: &Batch, replies: &[Option<String>], entry: &Entry) -> ClaimOutcome {
    let position = &batch.records[entry.record];
    let request = &batch.claims[entry.claim];
    match (&replies[entry.claim], entry.record == request.record) {
        (None, true) => ClaimOutcome::Fresh,
        (None, false) => decide_claim(Some(&request.value), position),
        (Some(existing), _) => decide_claim(Some(existing), position),
    }
}

/// Per event of `batch` (in [`Batch::events`] order): whether this occurrence is the one its id counts by — the
/// first of the id in its record, and the claim names its record. Unlike [`plan_apply`] it ignores the fence:
/// a store that keeps its own fencing (the settled lane's table rows) asks which occurrences are its to count,
/// and the answer is the same on every delivery while the claims live.
pub fn owned_occurrences(
    batch: &Batch,
    replies: &[Option<String>],
) -> Result<Vec<bool>, PlanError> {
    if replies.len() != batch.claims.len() {
        return Err(PlanError::ClaimReplies {
            got: replies.len(),
            want: batch.claims.len(),
        });
    }
    Ok(batch
        .entries
        .iter()
        .map(|entry| entry.first_in_record && claim_outcome(batch, replies, entry).counts())
        .collect())
}

/// An occurrence counts when its record is past the mark, it is the first of its id in its record, and the
/// claim names its record: the reply, or the batch's own claim when the reply was nil.
pub fn plan_apply(
    lane: StoreLane,
    batch: &Batch,
    replies: &[Option<String>],
    mark: Option<&Position>,
    mut keep: impl FnMut(&Event) -> bool,
) -> Result<ApplyPlan, PlanError> {
    if replies.len() != batch.claims.len() {
        return Err(PlanError::ClaimReplies {
            got: replies.len(),
            want: batch.claims.len(),
        });
    }
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(ApplyPlan {
            lane,
            shard: mark.map(|m| m.shard.clone()).unwrap_or_default(),
            fence: FenceDecision::Skip,
            expected_mark: mark.cloned(),
            new_mark: None,
            increments: BTreeMap::new(),
            users: BTreeMap::new(),
            stats: ApplyStats::default(),
        });
    };
    let fence = decide_fence(mark, first, last)?;
    let mut stats = ApplyStats {
        events: batch.len(),
        ..ApplyStats::default()
    };
    let mut increments: BTreeMap<(String, i64), BTreeMap<String, Tally>> = BTreeMap::new();
    let mut users: BTreeMap<(String, i64), BTreeMap<String, Registers>> = BTreeMap::new();
    for entry in &batch.entries {
        let position = &batch.records[entry.record];
        if !fence.applies(position) {
            stats.already_applied += 1;
            continue;
        }
        if !entry.first_in_record {
            stats.repeats += 1;
            continue;
        }
        match claim_outcome(batch, replies, entry) {
            ClaimOutcome::Duplicate { owner } => {
                stats.duplicates += 1;
                if matches!(owner, Owner::Unreadable(_)) {
                    stats.unreadable_claims += 1;
                }
                continue;
            }
            ClaimOutcome::Ours => stats.retried += 1,
            ClaimOutcome::Fresh => {}
        }
        let e = &entry.event;
        if !keep(e) {
            stats.filtered += 1;
            continue;
        }
        stats.counted += 1;
        let minute = minute_of(e.received_ms);
        // Look up before inserting: most events hit a key that exists.
        let ads = match increments.get_mut(&(e.campaign_id.clone(), minute)) {
            Some(ads) => ads,
            None => increments
                .entry((e.campaign_id.clone(), minute))
                .or_default(),
        };
        match ads.get_mut(&e.ad_id) {
            Some(t) => t.add(e),
            None => ads.entry(e.ad_id.clone()).or_default().add(e),
        }
        if let (true, Some(user)) = (keeps_users(lane), e.user_id.as_deref()) {
            raise_register(&mut users, e, minute, user);
        }
    }
    let new_mark = match fence {
        FenceDecision::Skip => None,
        _ => Some(last.clone()),
    };
    Ok(ApplyPlan {
        lane,
        shard: first.shard.clone(),
        fence,
        expected_mark: mark.cloned(),
        new_mark,
        increments,
        users,
        stats,
    })
}

/// Offers a counted event's user to its (campaign, minute, ad) registers: the register keeps the higher rank.
fn raise_register(
    users: &mut BTreeMap<(String, i64), BTreeMap<String, Registers>>,
    e: &Event,
    minute: i64,
    user: &str,
) {
    let (register, rank) = register_of(hash64(user.as_bytes()));
    let ads = users.entry((e.campaign_id.clone(), minute)).or_default();
    let registers = match ads.get_mut(&e.ad_id) {
        Some(r) => r,
        None => ads.entry(e.ad_id.clone()).or_default(),
    };
    let slot = registers.entry(register).or_insert(rank);
    *slot = (*slot).max(rank);
}

/// How long a claim lives: the dedup window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DedupWindow {
    secs: u64,
}

/// Why a dedup window was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dedup window of {secs} s is out of range: give {MIN_WINDOW_SECS}..={MAX_WINDOW_SECS} seconds ({rule})")]
pub struct WindowError {
    pub secs: u64,
    pub rule: &'static str,
}

/// The default window: one hour.
pub const DEFAULT_WINDOW_SECS: u64 = 3_600;
/// The shortest window: Lambda's longest timeout, so a claim outlives the invocation that made it.
pub const MIN_WINDOW_SECS: u64 = 15 * 60;
/// The longest window: Kinesis' default retention is one day and memory grows with the window (about 100
/// bytes per id); a week is far beyond any client's retry horizon.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3_600;

impl DedupWindow {
    pub fn from_secs(secs: u64) -> Result<DedupWindow, WindowError> {
        if secs < MIN_WINDOW_SECS {
            return Err(WindowError {
                secs,
                rule: "shorter than Lambda's 15-minute maximum timeout, a claim could expire under its own invocation",
            });
        }
        if secs > MAX_WINDOW_SECS {
            return Err(WindowError {
                secs,
                rule: "longer than a week; memory grows with the window",
            });
        }
        Ok(DedupWindow { secs })
    }

    /// The `EX` of the claims.
    pub fn secs(self) -> u64 {
        self.secs
    }
}

impl Default for DedupWindow {
    fn default() -> Self {
        DedupWindow {
            secs: DEFAULT_WINDOW_SECS,
        }
    }
}

#[cfg(test)]
mod base62_tests {
    use super::*;
    use proptest::prelude::*;

    /// Digit-by-digit long division: slow, obviously right; what the limbs must agree with.
    fn oracle_to_base62(decimal: &str) -> String {
        let mut digits: Vec<u32> = decimal.bytes().map(|b| u32::from(b - b'0')).collect();
        let mut out = Vec::new();
        while digits.iter().any(|&d| d != 0) {
            let mut remainder = 0;
            for d in &mut digits {
                let current = remainder * 10 + *d;
                *d = current / 62;
                remainder = current % 62;
            }
            out.push(BASE62[remainder as usize]);
        }
        if out.is_empty() {
            out.push(b'0');
        }
        out.reverse();
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn by_hand() {
        for (decimal, base62) in [
            ("0", "0"),
            ("61", "z"),
            ("62", "10"),
            ("916132831", "zzzzz"),
            ("916132832", "100000"),
            ("1000000000", "15ftgG"),
        ] {
            assert_eq!(decimal_to_base62(decimal), base62, "{decimal}");
            assert_eq!(
                base62_to_decimal(base62).as_deref(),
                Some(decimal),
                "{base62}"
            );
        }
        assert_eq!(base62_to_decimal("a-b"), None);
        assert_eq!(base62_to_decimal("é"), None);
    }

    proptest! {
        #[test]
        fn limbs_agree_with_long_division_and_round_trip(
            first in 1u8..=9,
            rest in proptest::collection::vec(0u8..=9, 0..120),
        ) {
            let decimal: String = std::iter::once(first)
                .chain(rest)
                .map(|d| char::from(b'0' + d))
                .collect();
            let base62 = decimal_to_base62(&decimal);
            prop_assert_eq!(&base62, &oracle_to_base62(&decimal));
            prop_assert_eq!(base62_to_decimal(&base62), Some(decimal));
        }
    }
}
