//! The unique-user sketch: accuracy, representation and serialization.

use tally_domain::hll::{Hll, HllError};

fn sketch(range: std::ops::Range<u64>) -> Hll {
    let mut h = Hll::new();
    for i in range {
        h.insert(format!("user-{i}").as_bytes());
    }
    h
}

#[test]
fn estimates_within_error() {
    // Standard error at precision 12 is 1.6 %; allow 4 standard errors at every size.
    for n in [0u64, 1, 2, 10, 100, 1_000, 3_000, 10_000, 50_000, 200_000] {
        let est = sketch(0..n).estimate() as f64;
        let err = if n == 0 {
            est
        } else {
            (est - n as f64).abs() / n as f64
        };
        let allowed = if n < 100 { 0.02 } else { 0.065 };
        assert!(err <= allowed, "n={n}: estimate {est} off by {err:.4}");
    }
    // Duplicates do not count.
    let mut h = sketch(0..1000);
    let before = h.estimate();
    for i in 0..1000 {
        h.insert(format!("user-{i}").as_bytes());
    }
    assert_eq!(h.estimate(), before);
}

#[test]
fn merge_is_union() {
    let mut a = sketch(0..30_000);
    let b = sketch(20_000..50_000);
    a.merge(&b);
    assert_eq!(a, sketch(0..50_000));
    let mut small = sketch(0..10);
    small.merge(&sketch(0..20_000));
    assert_eq!(small, sketch(0..20_000));
}

#[test]
fn serialization_round_trips_and_is_compact() {
    for n in [0u64, 1, 50, 700, 1_200, 5_000, 100_000] {
        let h = sketch(0..n);
        let bytes = h.to_bytes();
        assert_eq!(Hll::from_bytes(&bytes).as_ref(), Ok(&h), "n={n}");
        assert!(bytes.len() <= 2 + 3072, "n={n}: {} bytes", bytes.len());
    }
    assert_eq!(Hll::new().to_bytes(), vec![1, 12, 0]);
    assert!(sketch(0..100).to_bytes().len() < 400);
    // The representation follows the registers: the same users give the same bytes however they were merged.
    let mut merged = sketch(0..600);
    merged.merge(&sketch(600..5_000));
    assert_eq!(merged.to_bytes(), sketch(0..5_000).to_bytes());
}

#[test]
fn hostile_bytes() {
    let check = |b: &[u8], expect: Result<(), HllError>| {
        assert_eq!(Hll::from_bytes(b).map(|_| ()), expect, "{b:?}")
    };
    check(&[], Err(HllError::Truncated));
    check(&[1], Err(HllError::Truncated));
    check(&[3, 12, 0], Err(HllError::UnknownFormat(3)));
    check(&[1, 14, 0], Err(HllError::Precision(14)));
    check(&[1, 12, 0], Ok(()));
    check(&[1, 12, 0, 0], Err(HllError::Corrupt("trailing bytes")));
    check(&[1, 12, 1], Err(HllError::Truncated));
    check(&[1, 12, 1, 5, 3], Ok(()));
    check(
        &[1, 12, 1, 5, 0],
        Err(HllError::Corrupt("register rank out of range")),
    );
    check(
        &[1, 12, 1, 5, 54],
        Err(HllError::Corrupt("register rank out of range")),
    );
    check(
        &[1, 12, 2, 5, 1, 0, 1],
        Err(HllError::Corrupt("register indexes not increasing")),
    );
    check(
        &[1, 12, 1, 0x80, 0x20, 1],
        Err(HllError::Corrupt("register index out of range")),
    );
    check(
        &[1, 12, 0xff, 0xff, 0x03],
        Err(HllError::Corrupt("more entries than registers")),
    );
    check(
        &[
            1, 12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        Err(HllError::Truncated),
    );
    let mut dense = vec![2, 12];
    dense.extend(vec![0u8; 3072]);
    check(&dense, Ok(()));
    check(&dense[..100], Err(HllError::Truncated));
    let mut long = dense.clone();
    long.push(0);
    check(&long, Err(HllError::Corrupt("trailing bytes")));
    let mut high = dense.clone();
    high[2] = 63; // register 0 = 63, above the highest rank 53
    check(
        &high,
        Err(HllError::Corrupt("register above the highest rank")),
    );
    assert_eq!(
        HllError::Precision(14).to_string(),
        "sketch precision 14 is not supported, only 12"
    );
}
