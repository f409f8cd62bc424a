//! Events and strategies shared by the test modules.

use proptest::prelude::*;
use tally_domain::event::{DeviceClass, Event, EventKind};

/// 2026-11-26T13:00:00Z.
pub const NOW: i64 = 1_795_698_000_000;

/// A valid impression; change fields with struct update syntax.
pub fn event(id: &str) -> Event {
    Event {
        id: id.to_owned(),
        kind: EventKind::Impression,
        campaign_id: "cmp-1".to_owned(),
        ad_id: "ad-1".to_owned(),
        placement_id: Some("pub.example:top".to_owned()),
        user_id: Some("u-42".to_owned()),
        client_ts_ms: Some(NOW - 1500),
        received_ms: NOW,
        cost_micros: 2_500,
        value_micros: 0,
        country: Some("DE".to_owned()),
        device: DeviceClass::Mobile,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned()),
    }
}

fn id_string(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9._:-]{{1,{max}}}")).expect("valid regex")
}

/// Any valid event, with ids drawn from small pools so that keys repeat (as in real traffic).
pub fn any_event() -> impl Strategy<Value = Event> {
    let kind = prop::sample::select(EventKind::ALL.to_vec());
    let device = prop::sample::select(DeviceClass::ALL.to_vec());
    (
        (
            id_string(64),
            kind,
            prop::sample::select(vec!["c1", "c2", "campaign.3"]),
            prop::sample::select(vec!["a1", "a2", "a3", "a4"]),
        ),
        (
            prop::option::of(id_string(64)),
            prop::option::of(proptest::string::string_regex("[!-~]{1,128}").expect("valid regex")),
            prop::option::of(-7 * 24 * 3_600_000i64..=300_000),
            -600_000i64..600_000,
        ),
        (
            0u64..=100_000_000,
            0u64..=1_000_000_000_000,
            prop::option::of(proptest::string::string_regex("[A-Z]{2}").expect("valid regex")),
            device,
            prop::option::of(proptest::string::string_regex("[ -~]{1,512}").expect("valid regex")),
        ),
    )
        .prop_map(
            |(
                (id, kind, campaign, ad),
                (placement, user, ts_delta, received_delta),
                (cost, value, country, device, ua),
            )| {
                let received_ms = NOW + received_delta;
                Event {
                    id,
                    kind,
                    campaign_id: campaign.to_owned(),
                    ad_id: ad.to_owned(),
                    placement_id: placement,
                    user_id: user,
                    client_ts_ms: ts_delta.map(|d| received_ms + d),
                    received_ms,
                    cost_micros: cost,
                    value_micros: if kind == EventKind::Conversion {
                        value
                    } else {
                        0
                    },
                    country,
                    device,
                    trust: tally_domain::event::Trust::Authenticated,
                    user_agent: ua,
                }
            },
        )
}
