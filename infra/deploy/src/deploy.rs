//! `deploy` and `diff`: from a synthesized template and function zips to a running stack, through a change set.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter};
use serde_json::Value;

use crate::assets::{self, Asset, AssetsBucket, Uploaded};
use crate::aws::err;
use crate::bootstrap::read::Bootstrapped;
use crate::bootstrap::stack::BOOTSTRAP_STACK;
use crate::plan::{ChangeSetEntry, DeployPlan};
use crate::progress::{recent_events, Output, Progress};
use crate::stack::{self, status_kind, StackInfo, StatusKind};
use crate::{template, Clients, Error, StackTags};

/// The template parameter that receives the assets bucket's name.
pub const ASSETS_BUCKET_PARAMETER: &str = tally_contract::parameters::ASSETS_BUCKET;

/// CloudFormation's limit for an inline `TemplateBody`; larger templates go through the assets bucket.
const TEMPLATE_BODY_LIMIT: usize = 51_200;

/// What to do when a deploy would replace or remove a stateful resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `--yes`: go ahead.
    Yes,
    /// Ask on the terminal; refuse when there is none.
    Ask,
    /// Refuse (CI without `--yes`).
    Refuse,
}

/// Everything a deploy needs; built by `cargo xtask deploy` from the synthesized stage.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub stack_name: String,
    /// The template JSON, as synthesized.
    pub template: String,
    /// Parameters other than the assets bucket and the code keys.
    pub parameters: BTreeMap<String, String>,
    pub assets: Vec<Asset>,
    /// `created_at` is replaced by the existing stack's value on updates.
    pub tags: StackTags,
    pub confirm: Confirm,
    /// A protected stage (production, or listed in `tally.toml`): failure hints never suggest `destroy`.
    pub protected: bool,
    pub output: Output,
    /// How long to wait for CloudFormation before giving up (the operation goes on).
    pub timeout: Duration,
}

/// What to tell the user to do with a stack a deploy cannot go on from. `destroy` is offered only for a stage
/// that is not protected: a protected stage's data must survive a failed deploy.
#[derive(Debug, Clone)]
struct Remedy {
    stack: String,
    /// `--stage <label>`, as `cargo xtask` takes it.
    stage_flag: String,
    protected: bool,
}

impl Remedy {
    fn of(req: &DeployRequest) -> Remedy {
        Remedy {
            stack: req.stack_name.clone(),
            stage_flag: format!("--stage {}", req.tags.stage),
            protected: req.protected,
        }
    }

    /// How to get rid of what a failed create or a broken stack left behind.
    fn clean_up(&self) -> String {
        if self.protected {
            format!(
                "this is a protected stage: do not destroy it. Read the stack's events (`aws cloudformation \
                 describe-stack-events --stack-name {}`), repair or remove the failed resources by hand, and deploy \
                 again",
                self.stack
            )
        } else {
            format!("remove it with `cargo xtask destroy {}`", self.stage_flag)
        }
    }

    /// `UPDATE_ROLLBACK_FAILED`: the rollback must be continued; deleting would throw the stage's data away.
    fn continue_rollback(&self) -> String {
        format!(
            "the rollback of a failed update failed too, so no update can start. Fix what the rollback failed on \
             (the stack's events name it), then run `aws cloudformation continue-update-rollback --stack-name {}` \
             (add `--resources-to-skip <LogicalId>` only for a resource you checked by hand) and deploy again once \
             the stack is UPDATE_ROLLBACK_COMPLETE",
            self.stack
        )
    }
}

/// How a deploy ended (failures are errors).
#[derive(Debug, Clone)]
pub enum DeployOutcome {
    /// Template and parameters equal the deployed ones: nothing was created or executed.
    NoChanges { outputs: Vec<(String, String)> },
    Deployed {
        plan: DeployPlan,
        outputs: Vec<(String, String)>,
        elapsed: Duration,
        uploaded: usize,
    },
}

/// A template and its parameter values, ready to compare and send.
pub(crate) struct Prepared {
    template: Value,
    parameters: BTreeMap<String, String>,
}

pub(crate) fn prepare(
    req: &DeployRequest,
    bucket: Option<&str>,
    uploaded: &[Uploaded],
) -> Result<Prepared, Error> {
    let template = template::parse(&req.template)?;
    let mut parameters = req.parameters.clone();
    if let Some(bucket) = bucket {
        parameters.insert(ASSETS_BUCKET_PARAMETER.to_owned(), bucket.to_owned());
    }
    for u in uploaded {
        for (name, value) in [
            (&u.asset.parameter, &u.key),
            (&u.asset.version_parameter, &u.version),
        ] {
            if parameters.insert(name.clone(), value.clone()).is_some() {
                return Err(Error::Parameter {
                    name: name.clone(),
                    problem: format!(
                        "set twice (by asset `{}` and by another asset or parameter)",
                        u.asset.name
                    ),
                });
            }
        }
    }
    let declared = template.get("Parameters").and_then(Value::as_object);
    for name in parameters.keys() {
        if !declared.is_some_and(|d| d.contains_key(name)) {
            return Err(Error::Parameter {
                name: name.clone(),
                problem: "not declared by the template; is the template from the same version of the app?".to_owned(),
            });
        }
    }
    for (name, decl) in declared.into_iter().flatten() {
        if !parameters.contains_key(name) && decl.get("Default").is_none() {
            return Err(Error::Parameter {
                name: name.clone(),
                problem: "declared by the template without a default, and no value was given (a function without a built zip?)".to_owned(),
            });
        }
    }
    Ok(Prepared {
        template,
        parameters,
    })
}

/// The stack a deploy starts from: `None` for a new stack, or the existing one if a deploy can update it.
fn usable(existing: Option<StackInfo>, remedy: &Remedy) -> Result<Option<StackInfo>, Error> {
    let Some(info) = existing else {
        return Ok(None);
    };
    let refuse = |hint: String| Error::StackState {
        stack: info.name.clone(),
        status: info.status.clone(),
        hint,
    };
    match (status_kind(&info.status), info.status.as_str()) {
        (_, "REVIEW_IN_PROGRESS") => Ok(None),
        (StatusKind::Ok | StatusKind::RolledBack, _) => Ok(Some(info)),
        (StatusKind::Deleted, _) => Ok(None),
        (_, "UPDATE_ROLLBACK_FAILED") => Err(refuse(remedy.continue_rollback())),
        (StatusKind::InProgress, _) if remedy.protected => Err(refuse(
            "another operation is running; wait for it to finish".to_owned(),
        )),
        (StatusKind::InProgress, _) => Err(refuse(format!(
            "another operation is running; wait for it to finish. If it never does (an endpoint that does not roll \
             back a failed create leaves it so), {}",
            remedy.clean_up()
        ))),
        (StatusKind::Broken, _) => Err(refuse(format!(
            "{}a stack in this state cannot be updated; {}{}",
            info.status_reason
                .as_deref()
                .map(|r| format!("{r}; "))
                .unwrap_or_default(),
            remedy.clean_up(),
            if remedy.protected { "" } else { " and deploy again" }
        ))),
    }
}

/// Refuses to touch a stack that is not this project's: one without the `tally:project` tag was not deployed
/// by tally (a name clash, or a stack made by hand), one with another project's tag belongs to that project.
fn owned(info: &StackInfo, project: &str) -> Result<(), Error> {
    let hint = match &info.tags {
        Some(tags) if tags.project == project => return Ok(()),
        Some(tags) => format!(
            "it is tagged tally:project={}, not {project}: another project's stack of the same name. Nothing was \
             changed; deploy this stage under another --stage name, or remove that stack by its own tooling",
            tags.project
        ),
        None => format!(
            "it has no tally:project tag, so tally did not deploy it. Nothing was changed; deploy this stage under \
             another --stage name, or (if it is a tally stack deployed before tagging) add the tag \
             tally:project={project} to it by hand"
        ),
    };
    Err(Error::StackState {
        stack: info.name.clone(),
        status: info.status.clone(),
        hint,
    })
}

/// [`usable`], after checking that a `REVIEW_IN_PROGRESS` stack (a change set created, never executed) holds no
/// resources: one that does was left by a create that failed without rolling back.
async fn starting_point(
    clients: &Clients,
    req: &DeployRequest,
) -> Result<Option<StackInfo>, Error> {
    let name = &req.stack_name;
    let remedy = Remedy::of(req);
    let found = stack::describe(clients, name).await?;
    if let Some(info) = &found {
        if status_kind(&info.status) != StatusKind::Deleted {
            owned(info, &req.tags.project)?;
        }
    }
    if let Some(info) = found.as_ref().filter(|i| i.status == "REVIEW_IN_PROGRESS") {
        let listed = clients
            .cfn
            .list_stack_resources()
            .stack_name(&info.id)
            .send()
            .await;
        let empty = listed.is_ok_and(|out| {
            out.stack_resource_summaries()
                .iter()
                .all(|r| r.logical_resource_id().is_none_or(str::is_empty))
        });
        if !empty {
            return Err(Error::StackState {
                stack: name.to_owned(),
                status: info.status.clone(),
                hint: format!(
                    "an earlier create failed without rolling back and left resources behind; {}",
                    remedy.clean_up()
                ),
            });
        }
    }
    usable(found, &remedy)
}

fn sdk_parameters(parameters: &BTreeMap<String, String>) -> Vec<Parameter> {
    parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

fn changed_parameters(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.insert(k.clone(), (old.get(k).cloned(), Some(v.clone())));
        }
    }
    for (k, v) in old {
        if !new.contains_key(k) {
            out.insert(k.clone(), (Some(v.clone()), None));
        }
    }
    out
}

/// Where a change set's template and resources come from: the assets bucket (for templates over the inline
/// limit) and the role CloudFormation acts as. The bootstrap stack itself has neither.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub bucket: Option<&'a AssetsBucket>,
    pub execution_role: Option<&'a str>,
}

/// Template text for CloudFormation: inline when small, else uploaded to the assets bucket (as a content-hashed
/// object, verified like the zips) and passed by URL.
async fn template_source(
    clients: &Clients,
    target: Target<'_>,
    template: &Value,
) -> Result<(Option<String>, Option<String>), Error> {
    let body = serde_json::to_string(template).map_err(|e| Error::Template(e.to_string()))?;
    if body.len() <= TEMPLATE_BODY_LIMIT {
        return Ok((Some(body), None));
    }
    let Some(bucket) = target.bucket else {
        return Err(Error::Template(format!(
            "the template has {} bytes, over CloudFormation's inline limit of {TEMPLATE_BODY_LIMIT}, and this stack has no assets bucket to pass it through",
            body.len()
        )));
    };
    let key = format!(
        "templates/{}",
        assets::content_key(body.as_bytes()).replace(".zip", ".json")
    );
    assets::put_verified(clients, bucket, &key, body.into_bytes(), ("template", &key)).await?;
    let url = format!(
        "https://{}.s3.{}.amazonaws.com/{key}",
        bucket.name, clients.region
    );
    Ok((None, Some(url)))
}

/// A created change set: its changes, or `None` when CloudFormation found nothing to change.
struct ChangeSet {
    name: String,
    entries: Option<Vec<ChangeSetEntry>>,
}

async fn create_change_set(
    clients: &Clients,
    req: &DeployRequest,
    prepared: &Prepared,
    target: Target<'_>,
    kind: ChangeSetType,
    tags: &StackTags,
) -> Result<ChangeSet, Error> {
    let name = format!(
        "tally-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let (body, url) = template_source(clients, target, &prepared.template).await?;
    clients
        .cfn
        .create_change_set()
        .stack_name(&req.stack_name)
        .change_set_name(&name)
        .change_set_type(kind.clone())
        .set_template_body(body)
        .set_template_url(url)
        .set_parameters(Some(sdk_parameters(&prepared.parameters)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .set_tags(Some(tags.to_sdk()))
        .set_role_arn(target.execution_role.map(str::to_owned))
        .description("tally deploy")
        .send()
        .await
        .map_err(err("CreateChangeSet"))?;
    let started = Instant::now();
    loop {
        let mut entries = Vec::new();
        let mut token = None;
        let mut status;
        let mut reason;
        loop {
            let out = clients
                .cfn
                .describe_change_set()
                .stack_name(&req.stack_name)
                .change_set_name(&name)
                .set_next_token(token)
                .send()
                .await
                .map_err(err("DescribeChangeSet"))?;
            status = out.status().cloned();
            reason = out.status_reason().map(str::to_owned);
            entries.extend(out.changes().iter().filter_map(ChangeSetEntry::from_sdk));
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        match status {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok(ChangeSet {
                    name,
                    entries: Some(entries),
                })
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = reason.unwrap_or_default();
                if reason.contains("didn't contain changes")
                    || reason.contains("No updates are to be performed")
                {
                    return Ok(ChangeSet {
                        name,
                        entries: None,
                    });
                }
                let _ = delete_change_set(clients, &req.stack_name, &name).await;
                if kind == ChangeSetType::Create {
                    // A CREATE change set made an empty stack in REVIEW_IN_PROGRESS; do not leave it behind.
                    let _ = clients
                        .cfn
                        .delete_stack()
                        .stack_name(&req.stack_name)
                        .send()
                        .await;
                }
                return Err(Error::DeployFailed {
                    stack: req.stack_name.clone(),
                    resource: "the change set".to_owned(),
                    reason,
                    hint: "nothing was executed; fix the template or parameters and deploy again"
                        .to_owned(),
                });
            }
            _ if started.elapsed() > req.timeout => {
                return Err(Error::Timeout {
                    stack: req.stack_name.clone(),
                    status: format!("change set {name} {status:?}"),
                    seconds: req.timeout.as_secs(),
                })
            }
            _ => tokio::time::sleep(clients.poll.min(Duration::from_secs(1))).await,
        }
    }
}

async fn delete_change_set(clients: &Clients, stack: &str, name: &str) -> Result<(), Error> {
    clients
        .cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(name)
        .send()
        .await
        .map_err(err("DeleteChangeSet"))?;
    Ok(())
}

/// Asks on the terminal; `false` when there is none.
pub(crate) fn ask(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [type yes to continue] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

/// Builds nothing, synthesizes nothing: takes the template and zips and makes the stack match them.
pub async fn deploy(clients: &Clients, req: &DeployRequest) -> Result<DeployOutcome, Error> {
    let started = Instant::now();
    // Check the template and the name before anything touches AWS.
    template::parse(&req.template)?;
    refuse_reserved(&req.stack_name)?;
    let (bootstrapped, bucket) = assets_bucket(clients).await?;
    let (keys, uploaded) = assets::upload(clients, &bucket, &req.assets).await?;
    req.output.line(&format!(
        "assets: {uploaded} uploaded, {} already there (SHA-256 verified)",
        keys.len() - uploaded
    ));
    let prepared = prepare(req, Some(&bucket.name), &keys)?;
    let target = Target {
        bucket: Some(&bucket),
        execution_role: Some(&bootstrapped.execution_role_arn),
    };
    apply(clients, req, prepared, target, started, uploaded).await
}

/// A stack name `deploy` never touches: the bootstrap stack is `cargo xtask bootstrap`'s.
fn refuse_reserved(stack_name: &str) -> Result<(), Error> {
    if stack_name == BOOTSTRAP_STACK {
        return Err(Error::Parameter {
            name: "stage".to_owned(),
            problem: format!(
                "`{stack_name}` is the bootstrap stack's name; choose another stage (the bootstrap stack is managed by `cargo xtask bootstrap`)"
            ),
        });
    }
    Ok(())
}

/// The bootstrap stack's outputs and its assets bucket, owned by the caller's account.
async fn assets_bucket(clients: &Clients) -> Result<(Bootstrapped, AssetsBucket), Error> {
    let bootstrapped = crate::bootstrap::read::read(clients).await?;
    let bucket = AssetsBucket {
        name: bootstrapped.assets_bucket.clone(),
        owner: assets::account_id(clients).await?,
    };
    Ok((bootstrapped, bucket))
}

/// From a prepared template and parameters to a deployed stack: compare, change set, guard, execute.
pub(crate) async fn apply(
    clients: &Clients,
    req: &DeployRequest,
    prepared: Prepared,
    target: Target<'_>,
    started: Instant,
    uploaded: usize,
) -> Result<DeployOutcome, Error> {
    let remedy = Remedy::of(req);
    let existing = starting_point(clients, req).await?;
    let mut tags = req.tags.clone();
    let old = match &existing {
        Some(info) => {
            if let Some(created) = info
                .tags
                .as_ref()
                .map(|t| t.created_at.clone())
                .filter(|c| !c.is_empty())
            {
                tags.created_at = created;
            }
            let deployed = stack::deployed_template(clients, &req.stack_name).await?;
            if deployed == prepared.template && info.parameters == prepared.parameters {
                return Ok(DeployOutcome::NoChanges {
                    outputs: info.outputs.clone(),
                });
            }
            Some((deployed, info.parameters.clone()))
        }
        None => None,
    };
    let diff = template::diff(
        old.as_ref().map(|(t, p)| (t, p)),
        (&prepared.template, &prepared.parameters),
    );
    let kind = if existing.is_some() {
        ChangeSetType::Update
    } else {
        ChangeSetType::Create
    };
    let change_set = create_change_set(clients, req, &prepared, target, kind, &tags).await?;
    let Some(entries) = change_set.entries else {
        delete_change_set(clients, &req.stack_name, &change_set.name).await?;
        let outputs = existing.map(|s| s.outputs).unwrap_or_default();
        return Ok(DeployOutcome::NoChanges { outputs });
    };
    let mut plan = DeployPlan::merge(&diff, &entries);
    plan.parameters = changed_parameters(
        old.as_ref().map(|(_, p)| p).unwrap_or(&BTreeMap::new()),
        &prepared.parameters,
    );
    req.output.line(&plan.to_string());

    let losses = data_losses(&plan, old.as_ref().map(|(t, _)| t), &prepared.template);
    if !losses.is_empty() {
        let summary = losses.join("\n");
        let go = match req.confirm {
            Confirm::Yes => true,
            Confirm::Ask => ask(&format!(
                "{summary}\nthese resources lose their data. Deploy anyway?"
            )),
            Confirm::Refuse => false,
        };
        if !go {
            delete_change_set(clients, &req.stack_name, &change_set.name).await?;
            return Err(
                if req.confirm == Confirm::Ask && std::io::stdin().is_terminal() {
                    Error::Declined
                } else {
                    Error::NeedsConfirmation { summary }
                },
            );
        }
    }

    execute(clients, req, &change_set.name, existing.as_ref(), &remedy).await?;
    let info = stack::describe(clients, &req.stack_name).await?;
    let outputs = info.map(|i| i.outputs).unwrap_or_default();
    Ok(DeployOutcome::Deployed {
        plan,
        outputs,
        elapsed: started.elapsed(),
        uploaded,
    })
}

/// Executes the change set and follows the stack until it settles; a failure is an error naming the first
/// failing resource.
async fn execute(
    clients: &Clients,
    req: &DeployRequest,
    change_set: &str,
    before: Option<&StackInfo>,
    remedy: &Remedy,
) -> Result<(), Error> {
    let stack = &req.stack_name;
    let history = recent_events(clients, stack, &|_| false)
        .await
        .unwrap_or_default();
    let mut progress = Progress::new(history.into_iter().map(|e| e.id));
    let started = SystemTime::now();
    let executed = clients
        .cfn
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .send()
        .await;
    if let Err(error) = executed {
        let error = err("ExecuteChangeSet")(error);
        let status = stack::describe(clients, stack)
            .await
            .ok()
            .flatten()
            .map(|s| s.status)
            .unwrap_or_default();
        return Err(failure(
            stack,
            "the change set's execution",
            &error.to_string(),
            &status,
            before.is_some(),
            remedy,
        ));
    }
    let before_status = before.map(|b| b.status.clone()).unwrap_or_default();
    let deadline = Instant::now() + req.timeout;
    loop {
        let fresh = recent_events(clients, stack, &|id| progress.has_seen(id)).await?;
        let fresh = progress.apply(fresh);
        progress.show(req.output, stack, &fresh);
        let info = stack::describe(clients, stack).await?;
        let status = info
            .as_ref()
            .map(|i| i.status.clone())
            .unwrap_or_else(|| "DELETE_COMPLETE".to_owned());
        let kind = status_kind(&status);
        let stack_event_done = fresh
            .iter()
            .any(|e| e.logical_id == *stack && status_kind(&e.status) != StatusKind::InProgress);
        let moved = status != before_status
            || info
                .as_ref()
                .and_then(|i| i.last_updated)
                .is_some_and(|t| t >= started - Duration::from_secs(1))
            || stack_event_done;
        if kind != StatusKind::InProgress && moved {
            req.output.line(&format!(
                "{stack}: {status} after {:.1}s",
                progress.elapsed().as_secs_f32()
            ));
            if kind == StatusKind::Ok {
                return Ok(());
            }
            let (resource, reason) = match progress.first_failure() {
                Some(e) => (
                    format!("{} ({})", e.logical_id, e.resource_type),
                    e.reason.clone().unwrap_or_default(),
                ),
                None => (
                    "the stack".to_owned(),
                    info.and_then(|i| i.status_reason).unwrap_or_default(),
                ),
            };
            return Err(failure(
                stack,
                &resource,
                &reason,
                &status,
                before.is_some(),
                remedy,
            ));
        }
        if Instant::now() > deadline {
            let first = progress.first_failure().map(|e| {
                format!(
                    "; first failure so far: {} — {}",
                    e.logical_id,
                    e.reason.clone().unwrap_or_default()
                )
            });
            return Err(Error::Timeout {
                stack: stack.clone(),
                status: format!("{status}{}", first.unwrap_or_default()),
                seconds: req.timeout.as_secs(),
            });
        }
        tokio::time::sleep(clients.poll).await;
    }
}

/// The error for a failed execution, with what state the stack is left in and what to do.
fn failure(
    stack: &str,
    resource: &str,
    reason: &str,
    status: &str,
    was_update: bool,
    remedy: &Remedy,
) -> Error {
    let clean_up = remedy.clean_up();
    let hint = match status_kind(status) {
        StatusKind::RolledBack => format!("the stack was rolled back to its previous state ({status}); fix the cause and deploy again"),
        StatusKind::Ok => format!("the stack is {status}"),
        StatusKind::InProgress if status == "REVIEW_IN_PROGRESS" => format!(
            "the stack stays {status}: the change set did not run to completion and nothing rolled back what it may \
             have created. Clean up: {clean_up}; fix the cause and deploy again"
        ),
        StatusKind::InProgress if !was_update => format!(
            "the stack stays {status}: this endpoint did not roll back the failed create. Clean up: {clean_up}; \
             fix the cause and deploy again"
        ),
        StatusKind::InProgress => format!("the stack is still {status}; watch it, and deploy again once it settled"),
        StatusKind::Deleted => "the stack was deleted".to_owned(),
        _ if status == "UPDATE_ROLLBACK_FAILED" => remedy.continue_rollback(),
        StatusKind::Broken if status == "ROLLBACK_COMPLETE" => format!(
            "the failed create was rolled back ({status}); such a stack cannot be updated: {clean_up}, fix the cause \
             and deploy again"
        ),
        StatusKind::Broken => format!("the stack is {status}; {clean_up}"),
    };
    Error::DeployFailed {
        stack: stack.to_owned(),
        resource: resource.to_owned(),
        reason: reason.to_owned(),
        hint,
    }
}

/// What a deploy would lose, one line each: stateful resources replaced or removed, and resources whose
/// `DeletionPolicy` / `UpdateReplacePolicy` stops keeping them (`old` is the deployed template, `None` for a new
/// stack).
fn data_losses(plan: &DeployPlan, old: Option<&Value>, new: &Value) -> Vec<String> {
    let mut out: Vec<String> = plan
        .destructive()
        .iter()
        .map(|c| format!("  {} {} ({})", c.action, c.logical_id, c.resource_type))
        .collect();
    if let Some(old) = old {
        out.extend(
            template::retention_lost(old, new)
                .into_iter()
                .map(|line| format!("  no longer kept: {line}")),
        );
    }
    out
}

/// What a deploy would do, executing nothing. Computes the asset keys locally (no upload) and, for an existing
/// stack that differs, creates a change set, reads it and deletes it.
pub async fn diff(clients: &Clients, req: &DeployRequest) -> Result<DeployPlan, Error> {
    template::parse(&req.template)?;
    refuse_reserved(&req.stack_name)?;
    let (bootstrapped, bucket) = assets_bucket(clients).await?;
    let keys = assets::planned(clients, &bucket, &req.assets).await?;
    let prepared = prepare(req, Some(&bucket.name), &keys)?;
    let target = Target {
        bucket: Some(&bucket),
        execution_role: Some(&bootstrapped.execution_role_arn),
    };
    let existing = starting_point(clients, req).await?;
    let Some(info) = existing else {
        let mut plan = DeployPlan::merge(
            &template::diff(None, (&prepared.template, &prepared.parameters)),
            &[],
        );
        plan.parameters = changed_parameters(&BTreeMap::new(), &prepared.parameters);
        return Ok(plan);
    };
    let deployed = stack::deployed_template(clients, &req.stack_name).await?;
    if deployed == prepared.template && info.parameters == prepared.parameters {
        return Ok(DeployPlan::default());
    }
    let diff = template::diff(
        Some((&deployed, &info.parameters)),
        (&prepared.template, &prepared.parameters),
    );
    let mut tags = req.tags.clone();
    if let Some(t) = &info.tags {
        tags.created_at = t.created_at.clone();
    }
    // The assets bucket must exist for a template that is passed by URL; it does, since the stack exists.
    let change_set = create_change_set(
        clients,
        req,
        &prepared,
        target,
        ChangeSetType::Update,
        &tags,
    )
    .await?;
    let entries = change_set.entries.clone().unwrap_or_default();
    delete_change_set(clients, &req.stack_name, &change_set.name).await?;
    let mut plan = DeployPlan::merge(&diff, &entries);
    plan.parameters = changed_parameters(&info.parameters, &prepared.parameters);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        template: &str,
        parameters: &[(&str, &str)],
        assets: &[(&str, &str)],
    ) -> (DeployRequest, Vec<Uploaded>) {
        let keys = assets
            .iter()
            .map(|(name, param)| Uploaded {
                asset: Asset {
                    name: (*name).to_owned(),
                    path: format!("{name}.zip").into(),
                    parameter: (*param).to_owned(),
                    version_parameter: param.replace("CodeKey", "CodeVersion"),
                },
                key: format!("{name}-hash.zip"),
                version: format!("{name}-v1"),
            })
            .collect();
        let req = DeployRequest {
            stack_name: "tally-test".into(),
            template: template.into(),
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            assets: Vec::new(),
            tags: StackTags {
                project: "tally".into(),
                stage: "test".into(),
                branch: "test".into(),
                commit: "0".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
            },
            confirm: Confirm::Refuse,
            protected: false,
            output: Output::Quiet,
            timeout: Duration::from_secs(1),
        };
        (req, keys)
    }

    const TEMPLATE: &str = r#"{"Parameters": {"AssetsBucket": {"Type": "String"}, "CollectCodeKey": {"Type": "String"},
        "CollectCodeVersion": {"Type": "String"},
        "LogLevel": {"Type": "String", "Default": "info"}}, "Resources": {}}"#;

    fn check(
        parameters: &[(&str, &str)],
        assets: &[(&str, &str)],
        expect: Result<&[(&str, &str)], &str>,
    ) {
        let (r, keys) = req(TEMPLATE, parameters, assets);
        let got = prepare(&r, Some("bucket"), &keys)
            .map(|p| p.parameters)
            .map_err(|e| e.to_string());
        match expect {
            Ok(pairs) => {
                let want: BTreeMap<String, String> = pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                assert_eq!(got, Ok(want));
            }
            Err(part) => {
                let e = got.expect_err("an error");
                assert!(e.contains(part), "{e}");
            }
        }
    }

    #[test]
    fn parameters_are_checked_against_the_template() {
        check(
            &[],
            &[("collect", "CollectCodeKey")],
            Ok(&[
                ("AssetsBucket", "bucket"),
                ("CollectCodeKey", "collect-hash.zip"),
                ("CollectCodeVersion", "collect-v1"),
            ]),
        );
        check(
            &[("LogLevel", "debug")],
            &[("collect", "CollectCodeKey")],
            Ok(&[
                ("AssetsBucket", "bucket"),
                ("CollectCodeKey", "collect-hash.zip"),
                ("CollectCodeVersion", "collect-v1"),
                ("LogLevel", "debug"),
            ]),
        );
        check(
            &[],
            &[],
            Err("parameter `CollectCodeKey`: declared by the template without a default"),
        );
        check(
            &[],
            &[("collect", "CollectCodeKey"), ("query", "QueryCodeKey")],
            Err("parameter `QueryCodeKey`: not declared"),
        );
        check(
            &[("CollectCodeKey", "x")],
            &[("collect", "CollectCodeKey")],
            Err("set twice"),
        );
        check(
            &[("CollectCodeVersion", "x")],
            &[("collect", "CollectCodeKey")],
            Err("parameter `CollectCodeVersion`: set twice"),
        );
        check(
            &[("Nope", "x")],
            &[("collect", "CollectCodeKey")],
            Err("parameter `Nope`: not declared"),
        );
    }

    fn info(status: &str) -> StackInfo {
        StackInfo {
            name: "s".into(),
            id: "id".into(),
            status: status.into(),
            status_reason: None,
            tags: None,
            parameters: BTreeMap::new(),
            outputs: Vec::new(),
            created: None,
            last_updated: None,
        }
    }

    fn remedy(protected: bool) -> Remedy {
        Remedy {
            stack: "tally-x".into(),
            stage_flag: "--stage x".into(),
            protected,
        }
    }

    #[test]
    fn which_stacks_a_deploy_can_start_from() {
        let check = |status: &str, protected: bool, expect: Result<bool, &str>| {
            let got = usable(Some(info(status)), &remedy(protected))
                .map(|s| s.is_some())
                .map_err(|e| e.to_string());
            match expect {
                Ok(update) => assert_eq!(got, Ok(update), "{status}"),
                Err(part) => assert!(
                    got.as_ref().expect_err(status).contains(part),
                    "{status}: {got:?}"
                ),
            }
            if protected {
                assert!(
                    !format!("{got:?}").contains("xtask destroy"),
                    "{status}: {got:?}"
                );
            }
        };
        check("CREATE_COMPLETE", false, Ok(true));
        check("UPDATE_ROLLBACK_COMPLETE", false, Ok(true));
        check("REVIEW_IN_PROGRESS", false, Ok(false));
        check(
            "ROLLBACK_COMPLETE",
            false,
            Err("cargo xtask destroy --stage x"),
        );
        check(
            "ROLLBACK_COMPLETE",
            true,
            Err("protected stage: do not destroy it"),
        );
        check(
            "CREATE_IN_PROGRESS",
            false,
            Err("another operation is running"),
        );
        check(
            "CREATE_IN_PROGRESS",
            true,
            Err("another operation is running"),
        );
        for protected in [false, true] {
            check(
                "UPDATE_ROLLBACK_FAILED",
                protected,
                Err("aws cloudformation continue-update-rollback --stack-name tally-x"),
            );
        }
        check(
            "DELETE_FAILED",
            true,
            Err("describe-stack-events --stack-name tally-x"),
        );
        assert!(matches!(usable(None, &remedy(false)), Ok(None)));
    }

    #[test]
    fn a_stack_of_another_project_or_none_is_refused() {
        let tagged = |project: Option<&str>| StackInfo {
            tags: project.map(|p| StackTags {
                project: p.into(),
                stage: "x".into(),
                branch: "x".into(),
                commit: "0".into(),
                created_at: String::new(),
            }),
            ..info("CREATE_COMPLETE")
        };
        assert!(owned(&tagged(Some("tally")), "tally").is_ok());
        let other = owned(&tagged(Some("billing")), "tally").expect_err("other project");
        assert!(
            other
                .to_string()
                .contains("tagged tally:project=billing, not tally"),
            "{other}"
        );
        let untagged = owned(&tagged(None), "tally").expect_err("no tag");
        assert!(
            untagged.to_string().contains("has no tally:project tag")
                && untagged.to_string().contains("Nothing was changed"),
            "{untagged}"
        );
    }

    #[test]
    fn failures_say_what_state_the_stack_is_in() {
        let check = |status: &str, update: bool, protected: bool, expect: &str| {
            let e = failure(
                "s",
                "Table (AWS::DynamoDB::Table)",
                "boom",
                status,
                update,
                &remedy(protected),
            )
            .to_string();
            assert!(
                e.contains("failed at Table (AWS::DynamoDB::Table): boom") && e.contains(expect),
                "{status}: {e}"
            );
            if protected {
                assert!(!e.contains("xtask destroy"), "{status}: {e}");
            }
        };
        check(
            "UPDATE_ROLLBACK_COMPLETE",
            true,
            false,
            "rolled back to its previous state",
        );
        check(
            "ROLLBACK_COMPLETE",
            false,
            false,
            "cannot be updated: remove it with `cargo xtask destroy --stage x`",
        );
        check("ROLLBACK_COMPLETE", false, true, "do not destroy it");
        check(
            "CREATE_IN_PROGRESS",
            false,
            false,
            "did not roll back the failed create",
        );
        check("CREATE_IN_PROGRESS", false, true, "do not destroy it");
        check("DELETE_FAILED", false, false, "remove it");
        for protected in [false, true] {
            check(
                "UPDATE_ROLLBACK_FAILED",
                true,
                protected,
                "continue-update-rollback --stack-name tally-x",
            );
        }
    }

    #[test]
    fn a_retain_policy_dropped_is_a_data_loss() {
        let old = serde_json::json!({"Resources": {
            "Archive": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}}});
        let new = serde_json::json!({"Resources": {"Archive": {"Type": "AWS::S3::Bucket"}}});
        let diff = template::diff(Some((&old, &BTreeMap::new())), (&new, &BTreeMap::new()));
        let plan = DeployPlan::merge(&diff, &[]);
        assert!(plan.destructive().is_empty(), "a modify, not a replacement");
        assert_eq!(
            data_losses(&plan, Some(&old), &new),
            [
                "  no longer kept: Archive (AWS::S3::Bucket): DeletionPolicy Retain → Delete (removed)",
                "  no longer kept: Archive (AWS::S3::Bucket): UpdateReplacePolicy Retain → Delete (removed)",
            ]
        );
        assert!(data_losses(&plan, None, &new).is_empty());
    }

    #[test]
    fn the_bootstrap_stack_name_is_reserved() {
        let error = refuse_reserved("tally-bootstrap")
            .expect_err("reserved")
            .to_string();
        assert!(
            error.contains("is the bootstrap stack's name; choose another stage"),
            "{error}"
        );
        assert!(refuse_reserved("tally-bootstrapper").is_ok());
        assert!(refuse_reserved("tally-pr-7").is_ok());
    }

    #[test]
    fn changed_parameters_both_ways() {
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let got = changed_parameters(
            &m(&[("A", "1"), ("B", "2"), ("Gone", "x")]),
            &m(&[("A", "1"), ("B", "3"), ("New", "y")]),
        );
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(keys, ["B", "Gone", "New"]);
        assert_eq!(got["Gone"], (Some("x".into()), None));
    }
}
