//! Traffic the way the code sees it: requests generated from the profile, packed by the real
//! `tally_domain::wire::pack_request` (one record per request, as `collect` writes them, under a key from
//! `tally_domain::partition::RequestKeys`), and routed to shards by Kinesis' rule
//! (`tally_domain::partition::shard_of`: MD5 of the partition key → 128-bit hash key → the shard whose
//! hash-key range holds it; a stream's shards split the hash space evenly).
//!
//! Requests come from `tally_traffic`'s generator, the one the load test sends. [`event`] samples single
//! events of a given campaign for the counter-row model, shaped like the generator's (kind shares, ads, users).

use tally_domain::event::{DeviceClass, Event, EventKind};
pub use tally_domain::partition::shard_of;
use tally_domain::partition::RequestKeys;
use tally_domain::wire::{pack_request, unpack};
use tally_traffic::Profile;

/// Receive time of the sampled events (any fixed instant: the model is time-invariant).
pub const SAMPLE_MS: i64 = 1_764_547_200_000;
/// Seed of every sample: `plan` is deterministic.
pub const SEED: u64 = 0x7a11_7a11;
/// Events packed to measure packing: enough for ±1 % on events per record, small enough to stay fast.
pub const PACKING_SAMPLE_EVENTS: usize = 20_000;

/// The pool of users of `profile`.
pub fn users(profile: &Profile) -> u32 {
    profile.users
}

/// Campaign sizes: the load test's Zipf distribution.
pub use tally_traffic::generate::Zipf;

/// The campaign id of a rank (the generator's naming).
pub fn campaign_id(rank: usize) -> String {
    tally_traffic::Generator::campaign_id(rank)
}

/// An event of campaign `rank` shaped like the generator's (ids, names, money, optional fields).
pub fn event(
    rng: &mut fastrand::Rng,
    profile: &Profile,
    rank: usize,
    id: String,
    received_ms: i64,
    pixel: bool,
) -> Event {
    let kind = {
        let mut u = rng.f64();
        let mut pick = EventKind::Conversion;
        for (k, share) in EventKind::ALL.iter().zip(profile.kinds) {
            if u < share {
                pick = *k;
                break;
            }
            u -= share;
        }
        pick
    };
    let (cost_micros, value_micros) = match kind {
        EventKind::Impression => (rng.u64(500..12_000), 0),
        EventKind::ViewableImpression => (0, 0),
        EventKind::Click => (rng.u64(100_000..3_000_000), 0),
        EventKind::Conversion => (0, rng.u64(5_000_000..250_000_000)),
    };
    let ad = rng.u32(0..profile.ads_per_campaign.max(1));
    Event {
        id,
        kind,
        campaign_id: campaign_id(rank),
        ad_id: format!("ad-{rank}-{ad}"),
        placement_id: Some(format!("pub-{}", rng.u32(0..500))),
        user_id: Some(format!("u{:08}", rng.u32(0..users(profile)))),
        client_ts_ms: Some(received_ms),
        received_ms,
        cost_micros,
        value_micros,
        country: Some(["US", "GB", "DE", "FR", "JP", "BR", "IN", "CA"][rng.usize(0..8)].to_owned()),
        device: [DeviceClass::Mobile, DeviceClass::Desktop, DeviceClass::Tablet][rng.usize(0..3)],
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: pixel.then(|| {
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".to_owned()
        }),
    }
}

/// Requests of `profile` holding about `events` events in all: the load test's generator
/// (`tally_traffic::Generator`), so the model packs exactly the requests the load test sends.
pub fn requests(profile: &Profile, seed: u64, events: usize) -> Vec<Vec<Event>> {
    let mut generator = tally_traffic::Generator::new(profile, seed);
    let mut out = Vec::new();
    while (generator.events() as usize) < events {
        out.push(generator.next_request(SAMPLE_MS).events);
    }
    out
}

/// What `collect` makes of the profile's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Packing {
    /// Events sampled.
    pub events: usize,
    pub requests: usize,
    pub records: usize,
    pub events_per_record: f64,
    /// Bytes of a record as Kinesis bills it (data + partition key), padded to the profile's `event_bytes`
    /// when the sampled events encode smaller (see [`Packing::padding_per_event`]).
    pub bytes_per_record: f64,
    /// Mean PUT payload units (25 KB) per record.
    pub put_units_per_record: f64,
    /// Mean KB per record as on-demand bills ingress (1 KB rounding).
    pub on_demand_kb_per_record: f64,
    /// Bytes one sampled event takes in the stream encoding, on average.
    pub encoded_bytes_per_event: f64,
    /// Bytes added per event to reach the profile's `event_bytes` (0 when the encoding is larger).
    pub padding_per_event: f64,
    /// Archived bytes per event: the sampled events enriched (`tally_domain::enrich::enrich_batch`) and
    /// written as the deferred lane writes them (`tally_domain::archive`, gzip NDJSON) in objects of
    /// [`ARCHIVE_OBJECT_EVENTS`] events.
    pub archive_bytes_per_event: f64,
}

/// Events per archive object when measuring the compression: a deferred batch holds thousands of events
/// (daily-curve: about 50,000 at the peak); gzip's 32 KB window makes the ratio flat beyond a few hundred lines.
pub const ARCHIVE_OBJECT_EVENTS: usize = 2_000;

/// Packs about `events` sampled events request by request with the real `pack_request`.
pub fn packing(profile: &Profile, events: usize) -> Packing {
    let requests = requests(profile, SEED, events);
    let (mut records, mut n_events, mut data_bytes) = (0usize, 0usize, 0u64);
    let mut sizes = Vec::new();
    // Keys are random to Kinesis but always `REQUEST_KEY_LEN` characters: sizes do not depend on the secret.
    let keys = RequestKeys::with_secret(u128::from(SEED).to_le_bytes());
    for request in &requests {
        for record in pack_request(request, &keys.next_key()) {
            let count = unpack(&record.data).map_or(0, |events| events.len());
            records += 1;
            n_events += count;
            data_bytes += record.data.len() as u64;
            sizes.push((record.data.len() + record.partition_key.len(), count));
        }
    }
    let encoded = data_bytes as f64 / n_events.max(1) as f64;
    let padding = (f64::from(profile.event_bytes) - encoded).max(0.0);
    let (mut bytes, mut put, mut kb) = (0.0, 0.0, 0.0);
    for &(size, count) in &sizes {
        let padded = size as f64 + padding * count as f64;
        bytes += padded;
        put += tally_billing::kinesis::put_payload_units(padded.ceil() as u64) as f64;
        kb += tally_billing::kinesis::on_demand_kb(padded.ceil() as u64) as f64;
    }
    let r = records.max(1) as f64;
    let sampled: Vec<Event> = requests.iter().flatten().cloned().collect();
    let enriched =
        tally_domain::enrich::enrich_batch(&sampled, &tally_domain::enrich::RateLimits::default());
    Packing {
        events: n_events,
        requests: requests.len(),
        records,
        events_per_record: n_events as f64 / r,
        bytes_per_record: bytes / r,
        put_units_per_record: put / r,
        on_demand_kb_per_record: kb / r,
        encoded_bytes_per_event: encoded,
        padding_per_event: padding,
        archive_bytes_per_event: tally_domain::archive::bytes_per_event(
            &enriched,
            ARCHIVE_OBJECT_EVENTS,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(campaigns: u32, per_request: f64) -> Profile {
        let mut p = Profile::flat(1000.0, 300).expect("profile");
        p.campaigns = campaigns;
        p.events_per_request = per_request;
        p
    }

    #[test]
    fn a_request_is_one_record() {
        // 25 events over 2,000 Zipf campaigns: one record per request, whatever the mix.
        let p = packing(&profile(2000, 25.0), 5_000);
        assert_eq!(p.records, p.requests);
        assert!(
            (20.0..30.0).contains(&p.events_per_record),
            "{}",
            p.events_per_record
        );
        let one = packing(&profile(1, 25.0), 5_000);
        assert_eq!(one.records, one.requests);
        // Pixels: one event per record.
        let pixels = packing(&profile(40, 1.0), 2_000);
        assert_eq!(pixels.events_per_record, 1.0);
        assert_eq!(pixels.put_units_per_record, 1.0);
        // Archived: enriched JSON lines, gzip; far less than the stream's 300 bytes an event.
        assert!(
            (10.0..150.0).contains(&p.archive_bytes_per_event),
            "{}",
            p.archive_bytes_per_event
        );
        // Padded to the profile's 300 bytes per event.
        assert!(
            pixels.bytes_per_record >= 300.0,
            "{}",
            pixels.bytes_per_record
        );
    }
}
