//! Dashboard sessions: what the `__Host-tally_session` cookie carries and how it is checked. Pure functions of
//! their inputs (keys, clock, random id); the handler in the crate root does the I/O.
//!
//! A session is `v1.<issued>.<expires>.<id>.<mac>`: issued-at and expiry in unix seconds, a random 128-bit id
//! (hex) and the HMAC-SHA256 of `v1.<issued>.<expires>.<id>` (base64url, no padding). It never holds the token.
//!
//! **The key** is derived from the API token: `HMAC-SHA256(key = token, "tally-query session key v1")`. Sessions
//! are signed with the current token's key and accepted under the current and the previous token's keys, so a
//! rotation keeps sessions alive while the old token is `AWSPREVIOUS`, and the next rotation (which drops it)
//! ends them. No second secret to provision or rotate; the price is that ending every session means rotating
//! the token twice.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// How long a session lasts, seconds (12 hours).
pub const SESSION_SECS: i64 = 12 * 3600;
/// How far a session's issued-at may lie in the future (clock differences between instances), seconds.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// The format tag at the start of every session.
const VERSION: &str = "v1";
/// What the token is keyed over to give the session key.
const KEY_LABEL: &[u8] = b"tally-query session key v1";
/// Longest session value accepted (a real one is about 90 characters).
const MAX_CHARS: usize = 256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// A key that signs and checks sessions.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    /// The session key of an API token.
    pub fn of_token(token: &str) -> SessionKey {
        SessionKey(hmac_sha256(token.as_bytes(), KEY_LABEL))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Unix seconds.
    pub issued: i64,
    /// Unix seconds; the session is valid before this.
    pub expires: i64,
    /// 32 hex digits.
    pub id: String,
}

/// Why a session value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `v1.<issued>.<expires>.<id>.<mac>`, or a lifetime longer than [`SESSION_SECS`].
    Malformed,
    /// The MAC matches none of the keys (forged, or signed by a token no longer accepted).
    BadSignature,
    /// Past its expiry.
    Expired,
    /// Issued later than now plus [`CLOCK_SKEW_SECS`].
    FromTheFuture,
}

/// A new session issued at `now_ms`, valid for [`SESSION_SECS`], with the random `id`, signed by `key`: the
/// cookie value.
pub fn issue(key: &SessionKey, now_ms: i64, id: [u8; 16]) -> String {
    let issued = now_ms.div_euclid(1000);
    let payload = format!(
        "{VERSION}.{issued}.{}.{}",
        issued + SESSION_SECS,
        hex::encode(id)
    );
    let mut mac = key.mac();
    mac.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{tag}")
}

/// Checks a cookie value at `now_ms` against `keys` (current first): the session, or why it was refused. The
/// MAC is checked (in constant time) before anything in the payload is trusted.
pub fn check(keys: &[SessionKey], value: &str, now_ms: i64) -> Result<Session, Refused> {
    if value.len() > MAX_CHARS {
        return Err(Refused::Malformed);
    }
    let (payload, tag) = value.rsplit_once('.').ok_or(Refused::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| Refused::Malformed)?;
    let signed = keys.iter().any(|key| {
        let mut mac = key.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).is_ok()
    });
    if !signed {
        return Err(Refused::BadSignature);
    }
    let session = parse_payload(payload)?;
    let now = now_ms.div_euclid(1000);
    if session.issued > now + CLOCK_SKEW_SECS {
        return Err(Refused::FromTheFuture);
    }
    if now >= session.expires {
        return Err(Refused::Expired);
    }
    Ok(session)
}

/// `v1.<issued>.<expires>.<id>` with a lifetime of at most [`SESSION_SECS`].
fn parse_payload(payload: &str) -> Result<Session, Refused> {
    let mut parts = payload.split('.');
    let (Some(VERSION), Some(issued), Some(expires), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refused::Malformed);
    };
    let number = |s: &str| s.parse::<i64>().map_err(|_| Refused::Malformed);
    let (issued, expires) = (number(issued)?, number(expires)?);
    let lifetime = expires.checked_sub(issued).ok_or(Refused::Malformed)?;
    if !(1..=SESSION_SECS).contains(&lifetime)
        || id.len() != 32
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Refused::Malformed);
    }
    Ok(Session {
        issued,
        expires,
        id: id.to_owned(),
    })
}

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// 16 random bytes from the operating system: a session id.
pub fn random_id() -> Result<[u8; 16], String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| format!("the system random source failed: {e}"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_795_699_845_000;
    const ID: [u8; 16] = [7; 16];

    fn key(token: &str) -> SessionKey {
        SessionKey::of_token(token)
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_session_holds_times_and_id_but_not_the_token() {
        let token = "s3cr3t-t0ken-0123456789abcdef";
        let value = issue(&key(token), NOW_MS, ID);
        assert!(!value.contains(token), "{value}");
        let session = check(&[key(token)], &value, NOW_MS).expect("valid");
        assert_eq!(session.issued, NOW_MS / 1000);
        assert_eq!(session.expires, NOW_MS / 1000 + SESSION_SECS);
        assert_eq!(session.id, "07".repeat(16));
        assert!(
            value.starts_with(&format!("v1.{}.", NOW_MS / 1000)),
            "{value}"
        );
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "cookie-safe characters only: {value}"
        );
    }

    #[test]
    fn expiry_is_checked_by_the_server() {
        let k = key("token-a-0123456789");
        let value = issue(&k, NOW_MS, ID);
        let end = NOW_MS + SESSION_SECS * 1000;
        assert!(check(std::slice::from_ref(&k), &value, end - 1000).is_ok());
        assert_eq!(
            check(std::slice::from_ref(&k), &value, end),
            Err(Refused::Expired)
        );
        assert_eq!(
            check(&[k], &value, NOW_MS - (CLOCK_SKEW_SECS + 1) * 1000),
            Err(Refused::FromTheFuture)
        );
    }

    #[test]
    fn forged_or_foreign_sessions_are_refused() {
        let (a, b) = (key("token-a-0123456789"), key("token-b-0123456789"));
        let value = issue(&a, NOW_MS, ID);
        assert_eq!(
            check(std::slice::from_ref(&b), &value, NOW_MS),
            Err(Refused::BadSignature)
        );
        // The previous token's key still admits it.
        assert!(check(&[b.clone(), a.clone()], &value, NOW_MS).is_ok());
        // A longer expiry with the old MAC.
        let (payload, tag) = value.rsplit_once('.').expect("a tag");
        let issued = NOW_MS / 1000;
        let stretched = payload.replace(
            &format!(".{}.", issued + SESSION_SECS),
            &format!(".{}.", issued + 2 * SESSION_SECS),
        );
        assert_ne!(stretched, payload);
        assert_eq!(
            check(
                std::slice::from_ref(&a),
                &format!("{stretched}.{tag}"),
                NOW_MS
            ),
            Err(Refused::BadSignature)
        );
        for bad in [
            "",
            ".",
            "v1",
            "v1.1.2.3",
            "not base64!.x",
            &format!("{payload}.{tag}x"),
            &format!("{payload}.{}", &tag[..tag.len() - 2]),
            &"v1.".repeat(100),
        ] {
            assert!(
                check(std::slice::from_ref(&a), bad, NOW_MS).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(check(&[], &value, NOW_MS), Err(Refused::BadSignature));
    }

    #[test]
    fn a_signed_payload_with_a_lifetime_over_twelve_hours_is_malformed() {
        let k = key("token-a-0123456789");
        let issued = NOW_MS / 1000;
        let payload = format!(
            "v1.{issued}.{}.{}",
            issued + SESSION_SECS + 1,
            "ab".repeat(16)
        );
        let mut mac = k.mac();
        mac.update(payload.as_bytes());
        let value = format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(check(&[k], &value, NOW_MS), Err(Refused::Malformed));
    }

    #[test]
    fn random_ids_differ() {
        let (a, b) = (random_id().expect("random"), random_id().expect("random"));
        assert_ne!(a, b);
    }
}
