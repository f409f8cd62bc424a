//! The state file: loaded on open, rewritten (through a temporary file) on each change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::state::Secret;
use super::SecretsManager;
use crate::aws::AwsError;

impl SecretsManager {
    /// Secrets kept in memory (`file` `None`) or in `file`, reloading what an earlier run left there.
    pub fn open(region: &str, file: Option<&Path>) -> Result<SecretsManager, AwsError> {
        let secrets = match file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| AwsError::storage(path, e))?;
                serde_json::from_str(&text).map_err(|e| {
                    AwsError::internal(format!(
                        "{} is not the local Secrets Manager's state ({e}); delete it to start over",
                        path.display()
                    ))
                })?
            }
            _ => BTreeMap::new(),
        };
        Ok(SecretsManager {
            region: region.to_owned(),
            secrets: Mutex::new(secrets),
            file: file.map(Path::to_owned),
        })
    }

    pub(super) fn save(&self, secrets: &BTreeMap<String, Secret>) -> Result<(), AwsError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string(secrets).map_err(|e| AwsError::internal(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| AwsError::storage(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| AwsError::storage(path, e))
    }
}
