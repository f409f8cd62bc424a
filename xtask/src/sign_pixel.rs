//! `cargo xtask sign-pixel` — a signed pixel query for whoever renders pixels: the parameters plus `kid`,
//! `exp` and `sig`, by `tally_domain::signing::sign_pixel` (the algorithm is in `docs/events.md`, "Signed
//! pixels", for other languages).

use anyhow::{bail, Context};
use tally_domain::signing::sign_pixel;

use crate::flags::{SecretSource, SignPixel};

impl SignPixel {
    pub fn run(self) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs();
        println!("{}", self.signed(now)?);
        Ok(())
    }

    /// The signed query (or URL) at `now` (unix seconds).
    fn signed(&self, now: u64) -> anyhow::Result<String> {
        let secret = self.secret()?;
        let exp = now
            .checked_add(seconds(&self.expires_in)?)
            .context("--expires-in is too far in the future")?;
        let query = sign_pixel(&self.params, &self.key_id, &secret, exp)
            .map_err(|e| anyhow::anyhow!("sign-pixel: {e}"))?;
        Ok(match &self.url {
            Some(url) => format!("{}/p.gif?{query}", url.trim_end_matches('/')),
            None => query,
        })
    }

    /// The secret: given, or read from a file holding either the secret itself or the collect keys JSON
    /// (`{"<key id>": "<secret>"}`, as `aws secretsmanager get-secret-value --query SecretString` prints it
    /// unquoted).
    fn secret(&self) -> anyhow::Result<String> {
        let path = match &self.secret {
            SecretSource::Given(secret) => return Ok(secret.clone()),
            SecretSource::File(path) => path,
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("while reading the secret from {}", path.display()))?;
        let text = text.trim();
        if !text.starts_with('{') {
            return Ok(text.to_owned());
        }
        let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .with_context(|| {
                format!("{} starts with {{ but is not a JSON object", path.display())
            })?;
        match keys.get(&self.key_id).and_then(serde_json::Value::as_str) {
            Some(secret) => Ok(secret.to_owned()),
            None => bail!(
                "{} has no key id `{}` (it has: {})",
                path.display(),
                self.key_id,
                keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// `3600`, `90s`, `15m`, `1h` or `7d` in seconds.
fn seconds(text: &str) -> anyhow::Result<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok().filter(|_| !digits.is_empty()).with_context(|| {
        format!("--expires-in `{text}`: expected a number of seconds or a duration such as 90s, 15m, 1h, 7d")
    })?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--expires-in `{text}`: the unit is s, m, h or d"),
    };
    n.checked_mul(scale)
        .with_context(|| format!("--expires-in `{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(secret: SecretSource, expires_in: &str, url: Option<&str>) -> SignPixel {
        SignPixel {
            key_id: "pub-1".to_owned(),
            secret,
            expires_in: expires_in.to_owned(),
            url: url.map(str::to_owned),
            params: [("c", "cmp-1"), ("a", "ad-9"), ("e", "impression")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec(),
        }
    }

    /// The first test vector of `docs/events.md` (exp 1795698300), reached as now + 5m.
    #[test]
    fn signs_the_documented_vector() {
        const SIG: &str = "3f9a07729ace065a0ee76ce36b67ce682ec851f0511d70f7b69f9af44c6e41a7";
        let given = cmd(
            SecretSource::Given("test-secret-0123456789abcdef".to_owned()),
            "5m",
            None,
        );
        assert_eq!(
            given.signed(1_795_698_000).expect("signs"),
            format!("a=ad-9&c=cmp-1&e=impression&exp=1795698300&kid=pub-1&sig={SIG}")
        );
        // From a keys JSON file, with a URL.
        let dir = std::env::temp_dir().join(format!("tally-sign-pixel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("keys.json");
        std::fs::write(
            &file,
            r#"{"other": "x", "pub-1": "test-secret-0123456789abcdef"}"#,
        )
        .expect("write");
        let from_file = cmd(
            SecretSource::File(file.clone()),
            "300",
            Some("http://127.0.0.1:9000/"),
        );
        assert_eq!(
            from_file.signed(1_795_698_000).expect("signs"),
            format!("http://127.0.0.1:9000/p.gif?a=ad-9&c=cmp-1&e=impression&exp=1795698300&kid=pub-1&sig={SIG}")
        );
        std::fs::write(&file, r#"{"other": "x"}"#).expect("write");
        let missing = from_file.signed(0).expect_err("no such key id").to_string();
        assert!(
            missing.contains("has no key id `pub-1` (it has: other)"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn bad_input_is_named() {
        let short = cmd(SecretSource::Given("short".to_owned()), "1h", None);
        assert!(short
            .signed(0)
            .expect_err("short")
            .to_string()
            .contains("the secret must be 16 to 256"));
        for (text, expect) in [
            ("1w", "the unit is s, m, h or d"),
            ("h", "expected a number of seconds"),
            ("99999999999999999999d", "expected a number of seconds"),
            ("999999999999999999d", "is too long"),
        ] {
            let got = seconds(text).expect_err(text).to_string();
            assert!(got.contains(expect), "{text}: {got}");
        }
        assert_eq!(seconds("90s").expect("90s"), 90);
        assert_eq!(seconds("7d").expect("7d"), 604_800);
    }
}
