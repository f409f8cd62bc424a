//! Authenticated tracking, as pure functions: the collect keys (a key ring read from Secrets Manager),
//! server-to-server keys (`Authorization: Bearer <key id>:<secret>`) and signed pixels (HMAC-SHA256 over a
//! canonical form of the query). The algorithm is documented for other languages in `docs/events.md`
//! ("Signed pixels"), with test vectors that `tests/it/signing.rs` checks against [`sign_pixel`].
//!
//! Nothing here reads a clock or the network: callers pass `now` and the key ring.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::event::{check_id, quote};
use crate::ingest::MAX_QUERY_BYTES;
use crate::urlencoded::decode as percent_decode;

/// Pixel parameters that carry the signature: the key id, the expiry (unix seconds) and the HMAC.
pub const SIGNATURE_KEYS: [&str; 3] = ["kid", "exp", "sig"];
/// Shortest secret a key ring accepts (shorter is guessable).
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret a key ring accepts.
pub const MAX_SECRET_BYTES: usize = 256;
/// Most keys in one version of the keys secret (Secrets Manager holds at most 64 KiB anyway).
pub const MAX_KEYS: usize = 1000;

// ---------------------------------------------------------------------------------------------------------
// HMAC-SHA256 (RFC 2104) and constant-time comparison

const BLOCK: usize = 64;

/// HMAC-SHA256 of `message` under `key` (RFC 2104; keys longer than the 64-byte block are hashed first).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Whether `a == b`, in time that depends on their lengths only (not on where they differ).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (either case) into 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------------------
// The key ring

/// Why a version of the keys secret cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("the keys secret is not a JSON object of key id to secret ({0}); store {{\"<key id>\": \"<secret>\"}}")]
    NotAnObject(String),
    #[error("the keys secret holds {0} keys, more than {MAX_KEYS}")]
    TooManyKeys(usize),
    #[error("key id {0}: {1}")]
    BadKeyId(String, String),
    #[error("key {0}: the secret must be a string of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} printable ASCII characters without spaces or ':'")]
    BadSecret(String),
}

/// The collect keys: key id → its secrets (the current version's first, then the previous version's, so
/// a key is accepted under both during a rotation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<String, Vec<String>>,
}

impl KeyRing {
    /// Adds one version of the secret (`{"<key id>": "<secret>", …}`). Key ids follow the id rule
    /// (1–64 of `A-Z a-z 0-9 . _ : -`, no `:` since it separates id and secret in the bearer header);
    /// secrets are 16–256 printable ASCII characters without space or `:`. A version with any bad entry is
    /// refused whole (and the ring is left as it was), with the entry named.
    pub fn add_version(&mut self, json: &str) -> Result<(), KeyRingError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| KeyRingError::NotAnObject(format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(KeyRingError::NotAnObject("not an object".to_owned()));
        };
        if map.len() > MAX_KEYS {
            return Err(KeyRingError::TooManyKeys(map.len()));
        }
        let mut entries = Vec::with_capacity(map.len());
        for (id, secret) in &map {
            check_key_id(id).map_err(|rule| KeyRingError::BadKeyId(quote(id), rule))?;
            let secret = secret
                .as_str()
                .filter(|s| is_valid_secret(s))
                .ok_or_else(|| KeyRingError::BadSecret(quote(id)))?;
            entries.push((id.clone(), secret.to_owned()));
        }
        for (id, secret) in entries {
            let secrets = self.keys.entry(id).or_default();
            if !secrets.contains(&secret) {
                secrets.push(secret);
            }
        }
        Ok(())
    }

    /// The secrets accepted for `key_id` (none for an unknown id).
    pub fn secrets(&self, key_id: &str) -> &[String] {
        self.keys.get(key_id).map_or(&[], Vec::as_slice)
    }

    /// The key ids, sorted.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Key ids: the id rule without `:`.
fn check_key_id(id: &str) -> Result<(), String> {
    check_id("key id", id).map_err(|e| e.rule)?;
    if id.contains(':') {
        return Err("character \":\" not allowed in a key id".to_owned());
    }
    Ok(())
}

fn is_valid_secret(s: &str) -> bool {
    (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

// ---------------------------------------------------------------------------------------------------------
// Server-to-server keys

/// Why a post's key was refused (HTTP 401). The messages say what to send; they never echo the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Authorization header is not \"Bearer <key id>:<secret>\"")]
    Malformed,
    #[error("unknown key id {0}; use a key id of the collect keys secret")]
    UnknownKey(String),
    #[error("wrong secret for key id {0}; send the key's current secret (the previous one is accepted until the next rotation)")]
    WrongSecret(String),
}

/// Checks an `Authorization` header value against the ring: the key id when the secret matches one of the
/// key's versions (compared in constant time).
pub fn check_bearer(header: &str, ring: &KeyRing) -> Result<String, KeyError> {
    let (scheme, credentials) = header.trim().split_once(' ').ok_or(KeyError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(KeyError::Malformed);
    }
    let (key_id, secret) = credentials
        .trim()
        .split_once(':')
        .ok_or(KeyError::Malformed)?;
    if check_key_id(key_id).is_err() {
        return Err(KeyError::Malformed);
    }
    let secrets = ring.secrets(key_id);
    if secrets.is_empty() {
        return Err(KeyError::UnknownKey(quote(key_id)));
    }
    // Every version is compared, so the time does not say which one matched.
    let matched = secrets.iter().fold(false, |found, s| {
        constant_time_eq(s.as_bytes(), secret.as_bytes()) | found
    });
    if matched {
        Ok(key_id.to_owned())
    } else {
        Err(KeyError::WrongSecret(quote(key_id)))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Signed pixels

/// Why a pixel is not signed (it still counts, as unsigned: no money). The text goes to the log and the
/// `PixelUnsigned` metric's `reason`, never to the browser.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no sig parameter")]
    NotSigned,
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("unknown key id {0}")]
    UnknownKey(String),
    #[error("expired at {exp}, now {now}")]
    Expired { exp: u64, now: u64 },
    #[error("signature does not match")]
    BadSignature,
}

impl SignatureError {
    /// A short, fixed name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::NotSigned => "not-signed",
            SignatureError::Malformed(_) => "malformed",
            SignatureError::UnknownKey(_) => "unknown-key",
            SignatureError::Expired { .. } => "expired",
            SignatureError::BadSignature => "bad-signature",
        }
    }
}

/// The decoded parameters of a pixel query (with or without the leading `?`), in order, empty pieces
/// skipped, a piece without `=` read as an empty value. Decoding is `application/x-www-form-urlencoded`
/// (`+` is a space, `%XX` a byte, UTF-8 required).
pub fn query_params(query: &str) -> Result<Vec<(String, String)>, SignatureError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    if query.len() > MAX_QUERY_BYTES {
        return Err(SignatureError::Malformed(format!(
            "query longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let name =
                percent_decode(name).map_err(|bad| SignatureError::Malformed(bad.to_string()))?;
            let value =
                percent_decode(value).map_err(|bad| SignatureError::Malformed(bad.to_string()))?;
            Ok((name.into_owned(), value.into_owned()))
        })
        .collect()
}

/// Whether a parameter is outside the signature: `sig` itself, and the cache busters (`cb`, names starting
/// with `_`), which pages may add after signing.
fn is_unsigned_param(name: &str) -> bool {
    name == "sig" || name == "cb" || name.starts_with('_')
}

/// RFC 3986 encoding of the canonical form: `A-Z a-z 0-9 - . _ ~` as they are, every other byte of the UTF-8
/// text as `%XX` with upper-case hex.
fn canonical_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The canonical form that is signed: the decoded parameters except `sig`, `cb` and names starting with
/// `_`; each name and value encoded by RFC 3986 (unreserved characters as they are, every other byte
/// `%XX`, upper-case hex); sorted by encoded name (bytewise); joined as `name=value` with `&`. A name given
/// twice cannot be signed.
pub fn canonical_query<S: AsRef<str>>(params: &[(S, S)]) -> Result<String, SignatureError> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(params.len());
    for (name, value) in params {
        let (name, value) = (name.as_ref(), value.as_ref());
        if is_unsigned_param(name) {
            continue;
        }
        let (mut n, mut v) = (String::new(), String::new());
        canonical_encode(name, &mut n);
        canonical_encode(value, &mut v);
        pairs.push((n, v));
    }
    pairs.sort();
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(SignatureError::Malformed(format!(
            "parameter {} given twice",
            quote(&w[0].0)
        )));
    }
    let mut out = String::new();
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    Ok(out)
}

/// The `sig` of a canonical query: lower-case hex of HMAC-SHA256 with the secret's bytes as key.
pub fn pixel_signature(secret: &str, canonical: &str) -> String {
    hex(&hmac_sha256(secret.as_bytes(), canonical.as_bytes()))
}

/// Why parameters cannot be signed (a mistake of the signer: [`sign_pixel`]'s caller).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("key id: {0}")]
    KeyId(String),
    #[error("the secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} printable ASCII characters without spaces or ':'")]
    Secret,
    #[error("parameter {0} is set by the signer; leave it out")]
    Reserved(String),
    #[error("{0}")]
    Canonical(String),
}

/// Signs pixel parameters: adds `kid` and `exp` (unix seconds), and returns the query to append to
/// `/p.gif?`: the canonical form followed by `&sig=<hex>`.
pub fn sign_pixel<S: AsRef<str>>(
    params: &[(S, S)],
    key_id: &str,
    secret: &str,
    exp: u64,
) -> Result<String, SignError> {
    check_key_id(key_id).map_err(SignError::KeyId)?;
    if !is_valid_secret(secret) {
        return Err(SignError::Secret);
    }
    let mut all: Vec<(String, String)> = Vec::with_capacity(params.len() + 2);
    for (name, value) in params {
        let name = name.as_ref();
        if SIGNATURE_KEYS.contains(&name) {
            return Err(SignError::Reserved(quote(name)));
        }
        all.push((name.to_owned(), value.as_ref().to_owned()));
    }
    all.push(("kid".to_owned(), key_id.to_owned()));
    all.push(("exp".to_owned(), exp.to_string()));
    let canonical = canonical_query(&all).map_err(|e| SignError::Canonical(e.to_string()))?;
    let sig = pixel_signature(secret, &canonical);
    Ok(format!("{canonical}&sig={sig}"))
}

/// Verifies a pixel query: the key id when `sig` is the HMAC of the canonical form under one of `kid`'s
/// secrets and `exp` (unix seconds) is not before `now_secs`. `exp` is checked after the signature, so an
/// expired pixel is reported as such only when it was genuinely signed.
pub fn verify_pixel(query: &str, now_secs: u64, ring: &KeyRing) -> Result<String, SignatureError> {
    let params = query_params(query)?;
    let one = |name: &str| -> Result<Option<&str>, SignatureError> {
        let mut found = params.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(SignatureError::Malformed(format!(
                "parameter {name} given twice"
            )));
        }
        Ok(first)
    };
    let Some(sig) = one("sig")? else {
        return Err(SignatureError::NotSigned);
    };
    let kid = one("kid")?.ok_or_else(|| SignatureError::Malformed("sig without kid".to_owned()))?;
    let exp = one("exp")?.ok_or_else(|| SignatureError::Malformed("sig without exp".to_owned()))?;
    let exp = parse_exp(exp)?;
    let sig = unhex32(sig)
        .ok_or_else(|| SignatureError::Malformed("sig is not 64 hex digits".to_owned()))?;
    let secrets = ring.secrets(kid);
    if secrets.is_empty() {
        return Err(SignatureError::UnknownKey(quote(kid)));
    }
    let canonical = canonical_query(&params)?;
    let matched = secrets.iter().fold(false, |found, secret| {
        constant_time_eq(&hmac_sha256(secret.as_bytes(), canonical.as_bytes()), &sig) | found
    });
    if !matched {
        return Err(SignatureError::BadSignature);
    }
    if exp < now_secs {
        return Err(SignatureError::Expired { exp, now: now_secs });
    }
    Ok(kid.to_owned())
}

/// `exp`: 1–20 decimal digits that fit a u64 (unix seconds).
fn parse_exp(exp: &str) -> Result<u64, SignatureError> {
    if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(format!(
            "exp {} is not unix seconds",
            quote(exp)
        )));
    }
    exp.parse()
        .map_err(|_| SignatureError::Malformed(format!("exp {} is out of range", quote(exp))))
}
