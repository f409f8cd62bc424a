//! Secrets Manager (awsJson1.1, `X-Amz-Target: secretsmanager.<Op>`): `CreateSecret`, `GetSecretValue` and
//! `PutSecretValue` with the `AWSCURRENT` / `AWSPREVIOUS` version stages, as a rotation moves them: a put
//! makes the new version current, the old current previous, and the old previous loses its stage (versions
//! without a stage are not kept). Secrets are found by name or by the ARN the template gives them.
//!
//! The template's `AWS::SecretsManager::Secret` resources are created with a generated value
//! (`GenerateSecretString`: letters and digits of `PasswordLength`, inside `SecretStringTemplate` under
//! `GenerateStringKey` when given) the first time; a restart keeps the value. State is one JSON file in the
//! state directory, rewritten on each change (secrets are few and small).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{epoch_seconds, AwsError, ACCOUNT_ID};

mod replay;
mod state;
mod wire;

use state::{find, has_stage, new_version, random_alphanumeric, Secret, CURRENT, PREVIOUS};
use wire::{check_name, check_string, not_found, required, str_field};

/// The collect keys secret's name ends with this (`tally_pipeline::COLLECT_KEYS_SECRET_SUFFIX`; the
/// local cloud does not depend on the pipeline crate, a test checks they agree).
pub const COLLECT_KEYS_SUFFIX: &str = "collect-keys";
/// The name suffix of the collect origin secret (the stack has it with `edge = true`: collect then requires
/// its value in the `x-tally-origin` header, which CloudFront adds in AWS and local clients add themselves).
pub const COLLECT_ORIGIN_SUFFIX: &str = "collect-origin";

/// Largest secret string (AWS: 65,536 bytes).
const MAX_SECRET_BYTES: usize = 65_536;
/// Most secrets the local endpoint keeps (the template has a few; tests a few more).
const MAX_SECRETS: usize = 1_000;

/// The secrets of the local endpoint.
#[derive(Debug)]
pub struct SecretsManager {
    region: String,
    secrets: Mutex<BTreeMap<String, Secret>>,
    file: Option<PathBuf>,
}

/// What the template asks for: `GenerateSecretString`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub length: usize,
    /// `SecretStringTemplate` (a JSON object) and `GenerateStringKey`, when both are given.
    pub template_key: Option<(String, String)>,
}

impl SecretsManager {
    /// Secrets kept in memory only.
    pub fn new(region: &str) -> SecretsManager {
        SecretsManager {
            region: region.to_owned(),
            secrets: Mutex::new(BTreeMap::new()),
            file: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Secret>> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{ACCOUNT_ID}:secret:{name}",
            self.region
        )
    }

    /// Creates the template's secret `name` with a generated value unless it exists (a restart keeps it).
    pub fn ensure_generated(&self, name: &str, generate: &Generate) -> Result<(), AwsError> {
        if self.lock().contains_key(name) {
            return Ok(());
        }
        let random = random_alphanumeric(generate.length)?;
        let string = match &generate.template_key {
            None => random,
            Some((template, key)) => {
                let mut value: Value = serde_json::from_str(template).map_err(|e| {
                    AwsError::validation(format!("SecretStringTemplate is not JSON: {e}"))
                })?;
                let Some(object) = value.as_object_mut() else {
                    return Err(AwsError::validation(
                        "SecretStringTemplate must be a JSON object",
                    ));
                };
                object.insert(key.clone(), json!(random));
                value.to_string()
            }
        };
        self.create(name, &string).map(|_| ())
    }

    /// The current value of the first secret whose name ends with `suffix`.
    pub fn current_by_suffix(&self, suffix: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(name, _)| name.ends_with(suffix))
            .and_then(|(_, s)| s.versions.iter().find(|v| has_stage(v, CURRENT)))
            .map(|v| v.string.clone())
    }

    /// A collect key, `(key id, secret)`, from the current version of the collect keys secret (the first key
    /// id in sorted order): what the load test and `cargo xtask dev` use. `None` when there is no such
    /// secret or it is not a map of key id to secret.
    pub fn collect_key(&self) -> Option<(String, String)> {
        let text = self.current_by_suffix(COLLECT_KEYS_SUFFIX)?;
        let map: BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
        map.into_iter().next()
    }

    /// The current value of the collect origin secret (`None`: the stack has no edge, collect requires no
    /// header).
    pub fn collect_origin_secret(&self) -> Option<String> {
        self.current_by_suffix(COLLECT_ORIGIN_SUFFIX)
    }

    fn create(&self, name: &str, string: &str) -> Result<Value, AwsError> {
        check_name(name)?;
        check_string(string)?;
        let mut secrets = self.lock();
        if secrets.contains_key(name) {
            return Err(AwsError::client(
                "ResourceExistsException",
                format!("the secret {name} already exists"),
            ));
        }
        if secrets.len() >= MAX_SECRETS {
            return Err(AwsError::client(
                "LimitExceededException",
                format!("the local endpoint keeps at most {MAX_SECRETS} secrets"),
            ));
        }
        let arn = self.arn(name);
        let version = new_version(string, vec![CURRENT.to_owned()])?;
        let id = version.id.clone();
        secrets.insert(
            name.to_owned(),
            Secret {
                arn: arn.clone(),
                versions: vec![version],
            },
        );
        self.save(&secrets)?;
        Ok(json!({"ARN": arn, "Name": name, "VersionId": id}))
    }

    fn get(
        &self,
        secret_id: &str,
        stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<Value, AwsError> {
        let secrets = self.lock();
        let (name, secret) = find(&secrets, secret_id)?;
        let version = secret
            .versions
            .iter()
            .find(|v| match (version_id, stage) {
                (Some(id), _) => v.id == id && stage.is_none_or(|s| has_stage(v, s)),
                (None, stage) => has_stage(v, stage.unwrap_or(CURRENT)),
            })
            .ok_or_else(|| {
                AwsError::client(
                    "ResourceNotFoundException",
                    format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {} VersionStage: {}",
                        version_id.unwrap_or("(none)"),
                        stage.unwrap_or(CURRENT)
                    ),
                )
            })?;
        Ok(json!({
            "ARN": secret.arn,
            "Name": name,
            "VersionId": version.id,
            "SecretString": version.string,
            "VersionStages": version.stages,
            "CreatedDate": epoch_seconds(version.created_ms),
        }))
    }

    fn put(&self, secret_id: &str, string: &str) -> Result<Value, AwsError> {
        check_string(string)?;
        let mut secrets = self.lock();
        let name = find(&secrets, secret_id)?.0.to_owned();
        let secret = secrets.get_mut(&name).ok_or_else(|| not_found(secret_id))?;
        for v in &mut secret.versions {
            if has_stage(v, CURRENT) {
                v.stages = vec![PREVIOUS.to_owned()];
            } else {
                v.stages.retain(|s| s != PREVIOUS);
            }
        }
        secret.versions.retain(|v| !v.stages.is_empty());
        let version = new_version(string, vec![CURRENT.to_owned()])?;
        let out = json!({"ARN": secret.arn, "Name": name, "VersionId": version.id, "VersionStages": [CURRENT]});
        secret.versions.push(version);
        self.save(&secrets)?;
        Ok(out)
    }
}

/// One operation.
pub fn call(aws: &super::LocalAws, operation: &str, input: Value) -> Result<Value, AwsError> {
    let sm = &aws.secretsmanager;
    match operation {
        "CreateSecret" => {
            let string = str_field(&input, "SecretString")?.unwrap_or_default();
            sm.create(required(&input, "Name")?, string)
        }
        "GetSecretValue" => sm.get(
            required(&input, "SecretId")?,
            str_field(&input, "VersionStage")?,
            str_field(&input, "VersionId")?,
        ),
        "PutSecretValue" => sm.put(
            required(&input, "SecretId")?,
            required(&input, "SecretString")?,
        ),
        other => Err(AwsError::unsupported("secretsmanager", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate() -> Generate {
        Generate {
            length: 40,
            template_key: Some(("{}".to_owned(), "default".to_owned())),
        }
    }

    #[test]
    fn generated_secrets_are_kept_across_restarts_and_rotations_persist() {
        let dir = std::env::temp_dir().join(format!("tally-sm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("secretsmanager.json");
        let name = "tally-dev-collect-keys";
        let first = {
            let sm = SecretsManager::open("us-east-1", Some(&file)).expect("open");
            sm.ensure_generated(name, &generate()).expect("generate");
            let (id, secret) = sm.collect_key().expect("a key");
            assert_eq!(id, "default");
            assert_eq!(secret.len(), 40);
            assert!(
                secret.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{secret}"
            );
            secret
        };
        let sm = SecretsManager::open("us-east-1", Some(&file)).expect("reopen");
        sm.ensure_generated(name, &generate())
            .expect("kept, not regenerated");
        assert_eq!(sm.collect_key().map(|k| k.1), Some(first.clone()));
        sm.put(&sm.arn(name), r#"{"default":"rotated-0123456789abcdef"}"#)
            .expect("put");
        let sm = SecretsManager::open("us-east-1", Some(&file)).expect("reopen again");
        let previous = sm.get(name, Some(PREVIOUS), None).expect("previous");
        assert_eq!(
            previous["SecretString"],
            format!(r#"{{"default":"{first}"}}"#)
        );
        assert_eq!(
            sm.collect_key().map(|k| k.1).as_deref(),
            Some("rotated-0123456789abcdef")
        );
        std::fs::write(&file, "not json").expect("write");
        let error = SecretsManager::open("us-east-1", Some(&file)).expect_err("refused");
        assert!(error.message.contains("delete it to start over"), "{error}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_origin_secret_is_found_only_when_the_stack_has_the_edge() {
        let sm = SecretsManager::open("us-east-1", None).expect("open");
        sm.ensure_generated("tally-dev-collect-keys", &generate())
            .expect("keys");
        assert_eq!(
            sm.collect_origin_secret(),
            None,
            "no edge, no origin secret"
        );
        let plain = Generate {
            length: 48,
            template_key: None,
        };
        sm.ensure_generated("tally-dev-collect-origin", &plain)
            .expect("origin");
        let secret = sm.collect_origin_secret().expect("the origin secret");
        assert_eq!(secret.len(), 48);
        assert!(
            secret.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{secret}"
        );
    }

    #[test]
    fn bad_input_is_refused_with_aws_codes() {
        let sm = SecretsManager::new("us-east-1");
        let code = |r: Result<Value, AwsError>| r.map_or_else(|e| e.code, |_| "ok".to_owned());
        assert_eq!(code(sm.create("a b", "x")), "ValidationException");
        assert_eq!(
            code(sm.create("ok", &"x".repeat(MAX_SECRET_BYTES + 1))),
            "ValidationException"
        );
        assert_eq!(code(sm.create("ok", "x")), "ok");
        assert_eq!(
            code(sm.get("ok", Some("AWSPENDING"), None)),
            "ResourceNotFoundException"
        );
        assert_eq!(code(sm.put("missing", "x")), "ResourceNotFoundException");
        let bad_template = Generate {
            length: 16,
            template_key: Some(("[]".to_owned(), "k".to_owned())),
        };
        assert_eq!(
            sm.ensure_generated("t", &bad_template)
                .map_err(|e| e.message),
            Err("SecretStringTemplate must be a JSON object".to_owned())
        );
    }
}
