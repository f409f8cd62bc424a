//! Reading the bootstrap stack back before a deploy: its outputs, and whether its version is new enough.

use super::stack::{BOOTSTRAP_STACK, REQUIRED_BOOTSTRAP_VERSION};
use crate::stack::{self, status_kind, StatusKind};
use crate::{Clients, Error};

/// What deploys use of the bootstrap stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrapped {
    pub assets_bucket: String,
    pub execution_role_arn: String,
    pub preview_role_arn: String,
    pub release_role_arn: String,
    pub version: u32,
}

/// The bootstrap stack of the clients' account and region, checked to be at least
/// [`REQUIRED_BOOTSTRAP_VERSION`].
pub async fn read(clients: &Clients) -> Result<Bootstrapped, Error> {
    let found = stack::describe(clients, BOOTSTRAP_STACK).await?;
    let Some(info) = found else {
        return Err(Error::NotBootstrapped {
            stack: BOOTSTRAP_STACK.to_owned(),
            region: clients.region.clone(),
        });
    };
    from_outputs(&info.status, &info.outputs, REQUIRED_BOOTSTRAP_VERSION)
}

/// The decision of [`read`]: a settled stack whose outputs are all there and whose version is at least
/// `required`.
pub fn from_outputs(
    status: &str,
    outputs: &[(String, String)],
    required: u32,
) -> Result<Bootstrapped, Error> {
    let problem = |problem: String| Error::Bootstrap {
        stack: BOOTSTRAP_STACK.to_owned(),
        problem,
    };
    if status == "REVIEW_IN_PROGRESS" {
        return Err(Error::NotBootstrapped {
            stack: BOOTSTRAP_STACK.to_owned(),
            region: "this region".to_owned(),
        });
    }
    if !matches!(status_kind(status), StatusKind::Ok | StatusKind::RolledBack) {
        return Err(problem(format!(
            "is {status}, not a completed create or update"
        )));
    }
    let output = |key: &str| {
        outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                problem(format!(
                    "has no `{key}` output (bootstrapped by an older tally?)"
                ))
            })
    };
    let version_text = output("BootstrapVersion")?;
    let version: u32 = version_text.parse().map_err(|_| {
        problem(format!(
            "has BootstrapVersion `{version_text}`, not a number"
        ))
    })?;
    if version < required {
        return Err(problem(format!(
            "is version {version}, but this deploy needs version {required} or newer"
        )));
    }
    Ok(Bootstrapped {
        assets_bucket: output("AssetsBucket")?,
        execution_role_arn: output("ExecutionRoleArn")?,
        preview_role_arn: output("PreviewRoleArn")?,
        release_role_arn: output("ReleaseRoleArn")?,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(version: &str) -> Vec<(String, String)> {
        [
            ("AssetsBucket", "tally-bootstrap-assets-abc"),
            ("ExecutionRoleArn", "arn:aws:iam::1:role/x"),
            ("PreviewRoleArn", "arn:aws:iam::1:role/p"),
            ("ReleaseRoleArn", "arn:aws:iam::1:role/r"),
            ("BootstrapVersion", version),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn error(status: &str, outputs: &[(String, String)], required: u32) -> String {
        from_outputs(status, outputs, required)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn versions_and_outputs() {
        let ok = from_outputs("UPDATE_COMPLETE", &outputs("2"), 2).expect("new enough");
        assert_eq!(ok.assets_bucket, "tally-bootstrap-assets-abc");
        assert_eq!(ok.version, 2);
        let old = error("CREATE_COMPLETE", &outputs("1"), 2);
        assert!(
            old.contains("is version 1, but this deploy needs version 2 or newer")
                && old.contains("cargo xtask bootstrap"),
            "{old}"
        );
        let mut missing = outputs("1");
        missing.retain(|(k, _)| k != "ExecutionRoleArn");
        assert!(error("CREATE_COMPLETE", &missing, 1).contains("no `ExecutionRoleArn` output"));
        assert!(error("CREATE_COMPLETE", &outputs("one"), 1).contains("not a number"));
        assert!(error("ROLLBACK_COMPLETE", &outputs("1"), 1).contains("is ROLLBACK_COMPLETE"));
        assert!(error("REVIEW_IN_PROGRESS", &[], 1).contains("run `cargo xtask bootstrap"));
    }
}
