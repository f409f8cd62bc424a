//! Per-branch preview stacks: listing a project's stacks and choosing which to prune.
//!
//! Only stacks tagged `tally:project = <project>` are ever considered; protected stages (production by
//! default) are never selected, whatever their age or branch.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::aws::err;
use crate::stack::StackInfo;
use crate::tags::{human_age, parse_rfc3339};
use crate::{Clients, Error};

/// One stack of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub stack_name: String,
    pub stage: String,
    pub branch: String,
    pub commit: String,
    pub status: String,
    /// From the `tally:created-at` tag, else the stack's creation time.
    pub created: Option<SystemTime>,
}

impl Preview {
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.created
            .map(|c| now.duration_since(c).unwrap_or_default())
    }

    fn from_info(info: &StackInfo, project: &str) -> Option<Preview> {
        let tags = info.tags.as_ref().filter(|t| t.project == project)?;
        Some(Preview {
            stack_name: info.name.clone(),
            stage: tags.stage.clone(),
            branch: tags.branch.clone(),
            commit: tags.commit.clone(),
            status: info.status.clone(),
            created: parse_rfc3339(&tags.created_at).or(info.created),
        })
    }
}

/// The project's stacks (every stage), sorted by stage.
pub async fn list(clients: &Clients, project: &str) -> Result<Vec<Preview>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let resp = clients
            .cfn
            .describe_stacks()
            .set_next_token(token)
            .send()
            .await
            .map_err(err("DescribeStacks"))?;
        for stack in resp.stacks() {
            let info = StackInfo::from_sdk(stack);
            if info.status == "DELETE_COMPLETE" {
                continue;
            }
            out.extend(Preview::from_info(&info, project));
        }
        token = resp.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| a.stage.cmp(&b.stage));
    Ok(out)
}

/// What `prune` considers.
#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// Previews older than this are pruned.
    pub older_than: Duration,
    /// Branches that exist (local and remote-tracking); `None` when unknown (then branches are not checked).
    pub branches: Option<BTreeSet<String>>,
    /// `--keep-branches`: a preview whose branch still exists is kept even when older than the limit.
    pub keep_branches: bool,
    /// Stages never pruned.
    pub protected: BTreeSet<String>,
}

/// Why a preview is pruned, or why it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Prune(String),
    Keep(String),
}

/// Decides for one preview.
pub fn judge(preview: &Preview, policy: &PrunePolicy, now: SystemTime) -> Verdict {
    if policy.protected.contains(&preview.stage) {
        return Verdict::Keep("protected stage".to_owned());
    }
    let branch_exists = policy
        .branches
        .as_ref()
        .map(|b| b.contains(&preview.branch));
    if branch_exists == Some(false) {
        return Verdict::Prune(format!("branch `{}` no longer exists", preview.branch));
    }
    match preview.age(now) {
        Some(age) if age > policy.older_than => {
            if policy.keep_branches && branch_exists == Some(true) {
                Verdict::Keep(format!(
                    "{} old, but branch exists (--keep-branches)",
                    human_age(age)
                ))
            } else {
                Verdict::Prune(format!(
                    "{} old (limit {})",
                    human_age(age),
                    human_age(policy.older_than)
                ))
            }
        }
        Some(age) => Verdict::Keep(format!("{} old", human_age(age))),
        None => Verdict::Keep("age unknown".to_owned()),
    }
}

/// A table of previews for people.
pub fn table(previews: &[Preview], now: SystemTime) -> String {
    let mut out = format!(
        "{:<32} {:<40} {:<10} {:<9} {}\n",
        "STAGE", "BRANCH", "AGE", "COMMIT", "STATUS"
    );
    for p in previews {
        let age = p.age(now).map(human_age).unwrap_or_else(|| "?".to_owned());
        let commit: String = p.commit.chars().take(9).collect();
        out += &format!(
            "{:<32} {:<40} {:<10} {:<9} {}\n",
            p.stage, p.branch, age, commit, p.status
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn preview(stage: &str, branch: &str, age_days: Option<u64>, now: SystemTime) -> Preview {
        Preview {
            stack_name: format!("tally-{stage}"),
            stage: stage.to_owned(),
            branch: branch.to_owned(),
            commit: "abc".to_owned(),
            status: "CREATE_COMPLETE".to_owned(),
            created: age_days.map(|d| now - Duration::from_secs(d * DAY)),
        }
    }

    fn check(stage: &str, branch: &str, age_days: Option<u64>, keep_branches: bool, expect: &str) {
        let now = SystemTime::now();
        let policy = PrunePolicy {
            older_than: Duration::from_secs(7 * DAY),
            branches: Some(
                ["main", "feature/live", "production"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            keep_branches,
            protected: ["production".to_owned()].into(),
        };
        let got = match judge(&preview(stage, branch, age_days, now), &policy, now) {
            Verdict::Prune(why) => format!("prune: {why}"),
            Verdict::Keep(why) => format!("keep: {why}"),
        };
        assert!(
            got.starts_with(expect),
            "{stage}/{branch}/{age_days:?}: {got}"
        );
    }

    #[test]
    fn prune_decisions() {
        check(
            "feature-live",
            "feature/live",
            Some(1),
            false,
            "keep: 1d 0h old",
        );
        check(
            "feature-live",
            "feature/live",
            Some(8),
            false,
            "prune: 8d 0h old (limit 7d 0h)",
        );
        check(
            "feature-live",
            "feature/live",
            Some(8),
            true,
            "keep: 8d 0h old, but branch exists",
        );
        check(
            "feature-gone",
            "feature/gone",
            Some(1),
            false,
            "prune: branch `feature/gone` no longer exists",
        );
        check(
            "feature-gone",
            "feature/gone",
            Some(1),
            true,
            "prune: branch `feature/gone`",
        );
        check(
            "production",
            "production",
            Some(400),
            false,
            "keep: protected stage",
        );
        check(
            "production",
            "deleted-branch",
            Some(400),
            false,
            "keep: protected stage",
        );
        check(
            "feature-live",
            "feature/live",
            None,
            false,
            "keep: age unknown",
        );
    }

    #[test]
    fn unknown_branches_judge_by_age_only() {
        let now = SystemTime::now();
        let policy = PrunePolicy {
            older_than: Duration::from_secs(7 * DAY),
            branches: None,
            keep_branches: true,
            protected: BTreeSet::new(),
        };
        assert!(matches!(
            judge(&preview("a", "x", Some(1), now), &policy, now),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            judge(&preview("a", "x", Some(9), now), &policy, now),
            Verdict::Prune(_)
        ));
    }

    #[test]
    fn table_lists_every_preview() {
        let now = SystemTime::now();
        let text = table(
            &[
                preview("pr-1", "feature/a", Some(2), now),
                preview("pr-2", "feature/b", None, now),
            ],
            now,
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("pr-1") && text.contains("2d 0h") && text.contains("feature/b"),
            "{text}"
        );
    }
}
