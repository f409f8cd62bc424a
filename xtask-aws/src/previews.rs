//! `cargo xtask previews list | prune` — the project's per-branch stacks; prune destroys stale ones.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::SystemTime;

use anyhow::Context;
use tally_deploy::previews::{self, judge, PrunePolicy, Verdict};
use tally_deploy::{Clients, Confirm};
use tally_pipeline::Stage;

use crate::deploy::{block_on, PROJECT};
use crate::destroy;
use crate::flags::{Previews, PreviewsAction};

impl crate::Run for Previews {
    fn run(self) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let list = block_on(async {
            let clients = Clients::from_env().await?;
            previews::list(&clients, PROJECT).await
        })
        .context("while listing the project's stacks")?;
        let PreviewsAction::Prune {
            older_than,
            keep_branches,
            yes,
            protect,
            only_prs,
        } = self.action
        else {
            print!("{}", previews::table(&list, now));
            return Ok(());
        };
        let older_than = tally_deploy::tags::parse_age(&older_than)?;
        let protected = crate::protect::Protected::load(&crate::workspace_root())?;
        let policy = PrunePolicy {
            older_than,
            // A pull request's preview is named for its number, not a branch: only its age counts.
            branches: if only_prs { None } else { existing_branches() },
            keep_branches,
            protected: protect
                .into_iter()
                .chain(protected.names().iter().cloned())
                .collect(),
        };
        let list: Vec<_> = list
            .into_iter()
            .filter(|p| !only_prs || crate::protect::is_pull_request_stage(&p.stage))
            .collect();
        if policy.branches.is_none() && !only_prs {
            eprintln!("warning: cannot list git branches; pruning by age only");
        }
        let mut doomed = Vec::new();
        for p in &list {
            match judge(p, &policy, now) {
                Verdict::Prune(why) => {
                    println!("prune {:<32} {why}", p.stage);
                    doomed.push(p.clone());
                }
                Verdict::Keep(why) => println!("keep  {:<32} {why}", p.stage),
            }
        }
        if doomed.is_empty() {
            println!("nothing to prune");
            return Ok(());
        }
        let confirm = crate::deploy::confirm(yes);
        if confirm == Confirm::Refuse {
            anyhow::bail!(
                "{} previews would be destroyed; re-run with --yes to do it",
                doomed.len()
            );
        }
        let mut failures = Vec::new();
        for p in doomed {
            // The branch tag is the text the stage was made from, so it names the same stack and resources.
            let stage = Stage::new(&p.branch);
            if stage.stack_name() != p.stack_name {
                failures.push(format!(
                    "{}: its tags do not name it (stage from branch gives {}); left alone",
                    p.stack_name,
                    stage.stack_name()
                ));
                continue;
            }
            let req = destroy::request(&stage, confirm)?;
            match block_on(async {
                let clients = Clients::from_env().await?;
                tally_deploy::destroy(&clients, &req).await
            }) {
                Ok(outcome) => destroy::report(&p.stack_name, &outcome),
                Err(e) => failures.push(format!("{}: {e:#}", p.stack_name)),
            }
        }
        if !failures.is_empty() {
            anyhow::bail!(
                "some previews could not be pruned:\n{}",
                failures.join("\n")
            );
        }
        Ok(())
    }
}

/// Local and remote-tracking branch names (`origin/x` → `x`); `None` when git cannot tell.
fn existing_branches() -> Option<BTreeSet<String>> {
    let out = Command::new("git")
        .args([
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/remotes",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let branches: BTreeSet<String> = text
        .lines()
        .filter_map(|r| {
            r.strip_prefix("refs/heads/").or_else(|| {
                r.strip_prefix("refs/remotes/")
                    .and_then(|rest| rest.split_once('/').map(|(_, b)| b))
            })
        })
        .filter(|b| *b != "HEAD")
        .map(str::to_owned)
        .collect();
    (!branches.is_empty()).then_some(branches)
}
