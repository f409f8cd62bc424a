//! The stream encoding: what `collect` writes to Kinesis and the consumers read back.
//!
//! Our own compact, versioned, checksummed format that packs many events into one Kinesis record; the byte
//! layout and the reasons for not using the KPL aggregated-record format are in `docs/stream-encoding.md`.
//!
//! In short, a record is `"TLY" version count base_ms events… crc32c`: a 4-byte magic with the format version,
//! the event count, a base timestamp the events are delta-encoded against, the events, and a CRC-32C of
//! everything before it. Strings that repeat inside a record (campaign, ad, placement, country, user agent…)
//! are written once and referenced afterwards.

use std::collections::HashMap;

use crate::event::{check_event, DeviceClass, Event, EventKind, FieldError, Trust};

/// Kinesis' limit on one record: its data plus its partition key, 1 MiB. [`pack_request`] fills records up to it.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Magic bytes at the start of every record.
pub const MAGIC: [u8; 3] = *b"TLY";
/// The format version written by [`pack_request`]; [`unpack`] reads it and [`OLDEST_VERSION`].
///
/// Version 2 is version 1 plus the event's [`Trust`] in bits 6–7 of the kind/device byte (always 0 in
/// version 1, which is the code of [`Trust::Authenticated`]: version 1 records, written when collect took every
/// event's money, read as before).
pub const VERSION: u8 = 2;
/// The oldest format version [`unpack`] still reads.
pub const OLDEST_VERSION: u8 = 1;
const HEADER_BYTES: usize = 4 + 2; // magic + version, u16 count
const TRAILER_BYTES: usize = 4; // crc32c
/// Bytes of a record's frame around its events (header and checksum): what packing adds per record.
pub const FRAME_BYTES: usize = HEADER_BYTES + TRAILER_BYTES;

/// One Kinesis record: what goes into a `PutRecords` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Why a record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record is {0} bytes, too short to be a tally record")]
    TooShort(usize),
    #[error("record does not start with the tally magic bytes (is it from another producer?)")]
    BadMagic,
    #[error("record format version {0} is not supported (this build reads versions {OLDEST_VERSION} to {VERSION})")]
    UnsupportedVersion(u8),
    #[error("record checksum mismatch (stored {stored:08x}, computed {computed:08x}): the record is corrupt")]
    Checksum { stored: u32, computed: u32 },
    #[error("corrupt record at byte {offset}: {what}")]
    Corrupt { offset: usize, what: &'static str },
    #[error("invalid event {index} in record: {error}")]
    InvalidEvent { index: usize, error: FieldError },
}

const F_PLACEMENT: u8 = 1 << 0;
const F_USER: u8 = 1 << 1;
const F_CLIENT_TS: u8 = 1 << 2;
const F_COST: u8 = 1 << 3;
const F_VALUE: u8 = 1 << 4;
const F_COUNTRY: u8 = 1 << 5;
const F_USER_AGENT: u8 = 1 << 6;
const F_RESERVED: u8 = 1 << 7;

fn kind_code(k: EventKind) -> u8 {
    match k {
        EventKind::Impression => 0,
        EventKind::ViewableImpression => 1,
        EventKind::Click => 2,
        EventKind::Conversion => 3,
    }
}

/// Bits 6–7 of the kind/device byte (version 2).
fn trust_code(t: Trust) -> u8 {
    match t {
        Trust::Authenticated => 0,
        Trust::Signed => 1,
        Trust::Unsigned => 2,
    }
}

fn device_code(d: DeviceClass) -> u8 {
    match d {
        DeviceClass::Unknown => 0,
        DeviceClass::Desktop => 1,
        DeviceClass::Mobile => 2,
        DeviceClass::Tablet => 3,
        DeviceClass::Ctv => 4,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Primitives (also used by the HLL serialization)

/// Appends `v` as LEB128 (7 bits per byte, low first).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A bounds-checked cursor over bytes; every read fails cleanly at the end of the input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn corrupt(&self, what: &'static str) -> WireError {
        WireError::Corrupt {
            offset: self.pos,
            what,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn byte(&mut self) -> Result<u8, WireError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.corrupt("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// LEB128, at most 10 bytes, no bits beyond 64.
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(self.corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint longer than 10 bytes"))
    }

    pub(crate) fn str(&mut self, len: usize) -> Result<&'a str, WireError> {
        let b = self.bytes(len)?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("string is not UTF-8"))
    }
}

/// CRC-32C (Castagnoli), reflected, as used by iSCSI and ext4.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

/// Encodes events into one record, with a per-record string table.
struct RecordWriter<'e> {
    out: Vec<u8>,
    count: u16,
    base_ms: i64,
    table: HashMap<&'e str, u32>,
}

impl<'e> RecordWriter<'e> {
    fn new(base_ms: i64) -> Self {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0, 0]);
        put_varint(&mut out, zigzag(base_ms));
        RecordWriter {
            out,
            count: 0,
            base_ms,
            table: HashMap::new(),
        }
    }

    /// A string that may repeat: a reference when seen before, else a literal added to the table.
    fn shared_str(&mut self, s: &'e str) {
        if let Some(&i) = self.table.get(s) {
            put_varint(&mut self.out, u64::from(i) << 1 | 1);
        } else {
            let i = self.table.len() as u32;
            self.table.insert(s, i);
            put_varint(&mut self.out, (s.len() as u64) << 1);
            self.out.extend_from_slice(s.as_bytes());
        }
    }

    fn push(&mut self, e: &'e Event) {
        let mut flags = 0;
        let mut set = |present: bool, f: u8| {
            if present {
                flags |= f;
            }
        };
        set(e.placement_id.is_some(), F_PLACEMENT);
        set(e.user_id.is_some(), F_USER);
        set(e.client_ts_ms.is_some(), F_CLIENT_TS);
        set(e.cost_micros != 0, F_COST);
        set(e.value_micros != 0, F_VALUE);
        set(e.country.is_some(), F_COUNTRY);
        set(e.user_agent.is_some(), F_USER_AGENT);
        self.out.push(flags);
        self.out
            .push(kind_code(e.kind) | device_code(e.device) << 3 | trust_code(e.trust) << 6);
        put_varint(&mut self.out, e.id.len() as u64);
        self.out.extend_from_slice(e.id.as_bytes());
        put_varint(
            &mut self.out,
            zigzag(e.received_ms.wrapping_sub(self.base_ms)),
        );
        self.shared_str(&e.campaign_id);
        self.shared_str(&e.ad_id);
        if let Some(p) = &e.placement_id {
            self.shared_str(p);
        }
        if let Some(u) = &e.user_id {
            self.shared_str(u);
        }
        if let Some(ts) = e.client_ts_ms {
            put_varint(&mut self.out, zigzag(ts.wrapping_sub(e.received_ms)));
        }
        if e.cost_micros != 0 {
            put_varint(&mut self.out, e.cost_micros);
        }
        if e.value_micros != 0 {
            put_varint(&mut self.out, e.value_micros);
        }
        if let Some(c) = &e.country {
            self.shared_str(c);
        }
        if let Some(ua) = &e.user_agent {
            self.shared_str(ua);
        }
        self.count += 1;
    }

    /// Pushes `e` if the record stays within `budget` bytes (everything but the checksum); otherwise leaves
    /// the record as it was and says so.
    fn try_push(&mut self, e: &'e Event, budget: usize) -> bool {
        let (bytes, strings) = (self.out.len(), self.table.len());
        self.push(e);
        if self.out.len() <= budget {
            return true;
        }
        self.out.truncate(bytes);
        let strings = strings as u32;
        self.table.retain(|_, &mut i| i < strings);
        self.count -= 1;
        false
    }

    fn finish(mut self) -> Vec<u8> {
        self.out[4..6].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// Encodes one record holding all of `events` (no size limit). Mostly for tests and tools; `collect` uses
/// [`pack_request`].
///
/// # Panics
/// With more than 65,535 events (the count is 16 bits).
pub fn encode_record(events: &[Event]) -> Vec<u8> {
    assert!(
        events.len() <= usize::from(u16::MAX),
        "too many events for one record"
    );
    let mut w = RecordWriter::new(events.first().map_or(0, |e| e.received_ms));
    for e in events {
        w.push(e);
    }
    w.finish()
}

/// Most events in one record [`pack_request`] writes: at most 12 arguments an event in the counter store's apply
/// request (a counter hash, its two counts and index member, three counter fields, a sketch register), so a
/// record of this many always fits ElastiCache Serverless' 3,999 (`exactly_once::MAX_REQUEST_ARGS`; tested by
/// `a_full_record_of_the_costliest_events_fits_one_request`). Requests of the traffic profiles hold 25.
pub const MAX_EVENTS_PER_RECORD: usize = 256;

/// Packs one request's events into as few records as fit Kinesis' limit, all under `partition_key` (one key
/// per request: [`crate::partition::RequestKeys`]).
///
/// * Every event is in exactly one record, in order: the records hold consecutive runs of `events`, the first
///   record the first run, so record `i` holds the [`event_count`] events after those of records `0..i`.
///   Nothing is dropped, merged or reordered: an id given twice is packed twice (deduplication by id is the
///   counter store's job, `docs/counter-store.md`).
/// * Each record's data plus the key stays within [`MAX_RECORD_BYTES`] and holds at most
///   [`MAX_EVENTS_PER_RECORD`] events, so the counter store applies any record in one request (a record's
///   fence is whole: `exactly_once::Batch::split_for_requests` cuts batches between records, never inside one).
///   Each record is filled as far as the next event fits (measured on its real encoding, not an estimate), which
///   gives the fewest records when the events share a receive time, as a request's do. Typical requests (up to
///   [`MAX_EVENTS_PER_RECORD`] events) are one record.
/// * No events, no records.
pub fn pack_request(events: &[Event], partition_key: &str) -> Vec<StreamRecord> {
    pack_request_within(events, partition_key, MAX_RECORD_BYTES)
}

/// [`pack_request`] with records of at most `limit` bytes (data plus key) instead of Kinesis' limit: for tests that
/// need a request split into several records without a megabyte of events. An event that does not fit
/// `limit` on its own gets a record of its own (over the limit; with [`MAX_RECORD_BYTES`] that cannot happen:
/// an event encodes to at most about 1 KB).
pub fn pack_request_within(
    events: &[Event],
    partition_key: &str,
    limit: usize,
) -> Vec<StreamRecord> {
    let budget = limit.saturating_sub(partition_key.len() + TRAILER_BYTES);
    let mut records = Vec::new();
    let mut close = |w: RecordWriter<'_>| {
        records.push(StreamRecord {
            partition_key: partition_key.to_owned(),
            data: w.finish(),
        })
    };
    let mut writer: Option<RecordWriter<'_>> = None;
    for e in events {
        if let Some(w) = &mut writer {
            if usize::from(w.count) < MAX_EVENTS_PER_RECORD && w.try_push(e, budget) {
                continue;
            }
        }
        if let Some(full) = writer.take() {
            close(full);
        }
        let mut w = RecordWriter::new(e.received_ms);
        w.push(e);
        writer = Some(w);
    }
    if let Some(last) = writer {
        close(last);
    }
    records
}

/// Data bytes per record of the former [`pack`]: with its key it stayed within one 25 KB PUT payload unit.
pub const FORMER_RECORD_BYTES: usize = 24 * 1024;

/// The packing `collect` did before one record per request: events grouped by their former per-event key
/// ([`crate::partition::partition_key_of`], in order of first appearance), records of at most
/// [`FORMER_RECORD_BYTES`] of data. Same format; its records are what a stream written before the change
/// holds. Only the realtime and deferred test fixtures still use it (they show that such records are read);
/// `collect` uses [`pack_request`].
pub fn pack(events: &[Event]) -> Vec<StreamRecord> {
    let mut groups: Vec<(String, Vec<Event>)> = Vec::new();
    for e in events {
        let key = crate::partition::partition_key_of(&e.campaign_id, &e.id);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(e.clone()),
            None => groups.push((key, vec![e.clone()])),
        }
    }
    groups
        .iter()
        .flat_map(|(key, group)| pack_request_within(group, key, FORMER_RECORD_BYTES + key.len()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

/// Checks magic, version and checksum; returns the event count and a reader positioned after the count.
fn open(data: &[u8]) -> Result<(usize, Reader<'_>), WireError> {
    if data.len() < HEADER_BYTES + 1 + TRAILER_BYTES {
        if data.len() >= 3 && data[..3] != MAGIC {
            return Err(WireError::BadMagic);
        }
        return Err(WireError::TooShort(data.len()));
    }
    if data[..3] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if !(OLDEST_VERSION..=VERSION).contains(&data[3]) {
        return Err(WireError::UnsupportedVersion(data[3]));
    }
    let (body, trailer) = data.split_at(data.len() - TRAILER_BYTES);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32c(body);
    if stored != computed {
        return Err(WireError::Checksum { stored, computed });
    }
    let count = usize::from(u16::from_le_bytes([body[4], body[5]]));
    let mut r = Reader::new(body);
    r.pos = HEADER_BYTES;
    Ok((count, r))
}

/// Reads a record written by [`pack_request`] (or by any earlier `collect`: version 1 records read as
/// authenticated, see [`VERSION`]). Corrupt data, another version, another producer's data or an event that
/// breaks a field rule is an error naming what is wrong; never a panic.
pub fn unpack(data: &[u8]) -> Result<Vec<Event>, WireError> {
    let (count, mut r) = open(data)?;
    let base_ms = unzigzag(r.varint()?);
    // Every event takes at least 6 bytes; a count beyond that is corrupt, and capping avoids a huge allocation.
    if count > data.len() / 6 {
        return Err(r.corrupt("event count larger than the record can hold"));
    }
    let mut table: Vec<&str> = Vec::new();
    let mut events = Vec::with_capacity(count);
    for index in 0..count {
        let e = read_event(&mut r, data[3], base_ms, &mut table)?;
        check_event(&e).map_err(|error| WireError::InvalidEvent { index, error })?;
        events.push(e);
    }
    if !r.is_empty() {
        return Err(r.corrupt("bytes after the last event"));
    }
    if count == 0 {
        return Err(r.corrupt("record holds no events"));
    }
    Ok(events)
}

fn shared_str<'a>(r: &mut Reader<'a>, table: &mut Vec<&'a str>) -> Result<&'a str, WireError> {
    let tag = r.varint()?;
    if tag & 1 == 1 {
        let i =
            usize::try_from(tag >> 1).map_err(|_| r.corrupt("string reference out of range"))?;
        table
            .get(i)
            .copied()
            .ok_or_else(|| r.corrupt("string reference out of range"))
    } else {
        let len = usize::try_from(tag >> 1).map_err(|_| r.corrupt("string length out of range"))?;
        let s = r.str(len)?;
        table.push(s);
        Ok(s)
    }
}

fn read_event<'a>(
    r: &mut Reader<'a>,
    version: u8,
    base_ms: i64,
    table: &mut Vec<&'a str>,
) -> Result<Event, WireError> {
    let flags = r.byte()?;
    if flags & F_RESERVED != 0 {
        return Err(r.corrupt("reserved flag bit set"));
    }
    let kd = r.byte()?;
    let kind = match kd & 0b111 {
        0 => EventKind::Impression,
        1 => EventKind::ViewableImpression,
        2 => EventKind::Click,
        3 => EventKind::Conversion,
        _ => return Err(r.corrupt("unknown event kind code")),
    };
    let device = match (kd >> 3) & 0b111 {
        0 => DeviceClass::Unknown,
        1 => DeviceClass::Desktop,
        2 => DeviceClass::Mobile,
        3 => DeviceClass::Tablet,
        4 => DeviceClass::Ctv,
        _ => return Err(r.corrupt("unknown device class code")),
    };
    // Version 1 records have zeros here (their device code had 5 bits): authenticated.
    if version < 2 && kd >> 6 != 0 {
        return Err(r.corrupt("unknown device class code"));
    }
    let trust = match kd >> 6 {
        0 => Trust::Authenticated,
        1 => Trust::Signed,
        2 => Trust::Unsigned,
        _ => return Err(r.corrupt("unknown trust code")),
    };
    let id_len = usize::try_from(r.varint()?).map_err(|_| r.corrupt("id length out of range"))?;
    let id = r.str(id_len)?.to_owned();
    // Deltas are written with wrapping arithmetic, so reading them back wrapping is exact for every i64.
    let received_ms = base_ms.wrapping_add(unzigzag(r.varint()?));
    let campaign_id = shared_str(r, table)?.to_owned();
    let ad_id = shared_str(r, table)?.to_owned();
    let mut opt_str = |r: &mut Reader<'a>, flag: u8| -> Result<Option<String>, WireError> {
        Ok(if flags & flag != 0 {
            Some(shared_str(r, table)?.to_owned())
        } else {
            None
        })
    };
    let placement_id = opt_str(r, F_PLACEMENT)?;
    let user_id = opt_str(r, F_USER)?;
    let client_ts_ms = if flags & F_CLIENT_TS != 0 {
        Some(received_ms.wrapping_add(unzigzag(r.varint()?)))
    } else {
        None
    };
    let amount = |r: &mut Reader<'a>, flag: u8| -> Result<u64, WireError> {
        if flags & flag == 0 {
            return Ok(0);
        }
        match r.varint()? {
            0 => Err(r.corrupt("zero amount written as present")),
            v => Ok(v),
        }
    };
    let cost_micros = amount(r, F_COST)?;
    let value_micros = amount(r, F_VALUE)?;
    let country = opt_str(r, F_COUNTRY)?;
    let user_agent = opt_str(r, F_USER_AGENT)?;
    Ok(Event {
        id,
        kind,
        campaign_id,
        ad_id,
        placement_id,
        user_id,
        client_ts_ms,
        received_ms,
        cost_micros,
        value_micros,
        country,
        device,
        user_agent,
        trust,
    })
}

/// Number of events in a record after checking magic, version and checksum, without decoding them.
pub fn event_count(data: &[u8]) -> Result<usize, WireError> {
    open(data).map(|(count, _)| count)
}
