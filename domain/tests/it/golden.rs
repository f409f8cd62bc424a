//! Pinned bytes. Stream records and sketches outlive the code that wrote them (records sit in Kinesis for up to
//! a week, sketches in DynamoDB and S3), and the hash decides partition keys. A failure here means a format
//! change: bump the version byte (`wire::VERSION`, the HLL format byte) instead of editing these values.

use tally_domain::event::Event;
use tally_domain::hll::{hash64, Hll};
use tally_domain::wire::{encode_record, unpack};

use crate::fixtures::{event, NOW};

#[test]
fn hash64_is_pinned() {
    for (input, expect) in [
        ("", 0x7acd_bb98_b134_4213u64),
        ("a", 0x50b2_2a97_836e_2d2e),
        ("user-1", 0xde33_12ad_7d3a_d8d1),
        ("0123456789abcdef0", 0xb414_a93c_ff61_8f4a),
    ] {
        assert_eq!(hash64(input.as_bytes()), expect, "{input:?}");
    }
}

#[test]
fn hll_bytes_are_pinned() {
    let mut h = Hll::new();
    for u in ["u-1", "u-2", "u-3"] {
        h.insert(u.as_bytes());
    }
    // format 1 (sparse), precision 12, 3 registers: (367, rank 3), (+1743 = 2110, rank 2), (+376 = 2486, rank 1)
    let golden = [
        0x01, 0x0c, 0x03, 0xef, 0x02, 0x03, 0xcf, 0x0d, 0x02, 0xf8, 0x02, 0x01,
    ];
    assert_eq!(h.to_bytes(), golden);
    assert_eq!(Hll::from_bytes(&golden), Ok(h));
}

#[test]
fn wire_record_is_pinned() {
    let e1 = event("e1");
    let e2 = Event {
        id: "e2".into(),
        ..e1.clone()
    };
    let golden = concat!(
        "544c5902",         // "TLY", version 2
        "0200",             // 2 events
        "80828 8ffc268",    // zigzag varint of the base time (NOW)
        // event 1: flags (placement, user, client ts, cost, country, user agent), impression + mobile +
        // authenticated (trust code 0 in bits 6-7)
        "6f10", "026531", "00",
        "0a636d702d31", "0861642d31", "1e7075622e6578616d706c653a746f70", "08752d3432",
        "b717", "c413", "044445",
        "6c4d6f7a696c6c612f352e3020286950686f6e653b20435055206950686f6e65204f532031375f30206c696b65204d6163204f53205829",
        // event 2: the same strings, now references 0..5 into the record's string table
        "6f10", "026532", "00", "01", "03", "05", "07", "b717", "c413", "09", "0b",
        "c992fc23", // CRC-32C, little-endian
    )
    .replace(' ', "");
    let data = encode_record(&[e1.clone(), e2.clone()]);
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, golden);
    assert_eq!(unpack(&data), Ok(vec![e1.clone(), e2.clone()]));
    // The version 1 record of the same events (pinned before trust existed) still reads, as authenticated.
    let v1 = golden
        .replacen("544c5902", "544c5901", 1)
        .replace("c992fc23", "49357090");
    let v1: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(unpack(&v1), Ok(vec![e1, e2]));
    assert_eq!(NOW, 1_795_698_000_000);
}
