//! The bootstrap stack (`tally-bootstrap`), synthesized from typed constructs: the assets bucket, the
//! CloudFormation execution role and its permissions boundary, the boundary every function role carries, and
//! the two GitHub OIDC deploy roles (preview, release). `docs/bootstrap.md` explains each policy.

use serde_json::Value;
use tally_constructs::iam::{
    Condition, ManagedPolicy, ManagedPolicyProps, OidcProvider, PolicyStatement, Role, Trust,
    TrustedRoleProps,
};
use tally_constructs::naming::{self, FUNCTION_BOUNDARY_PREFIX};
use tally_constructs::s3::{Bucket, BucketProps, LifecycleRule};
use tally_constructs::{Expr, Stack};

use crate::Error;

/// The bootstrap stack's name (one per account and region).
pub const BOOTSTRAP_STACK: &str = "tally-bootstrap";

/// The version this code bootstraps; raised whenever the bootstrap stack changes in a way deploys rely on.
pub const BOOTSTRAP_VERSION: u32 = 1;

/// The oldest bootstrap version `deploy` works with (it needs the `AssetsBucket` and `ExecutionRoleArn`
/// outputs and a versioned bucket).
pub const REQUIRED_BOOTSTRAP_VERSION: u32 = 1;

/// Stacks the preview role may manage: previews are named after their pull request (`pr-123`).
pub const PREVIEW_STACKS: &str = "tally-pr-*";

/// Stacks the release role may manage.
pub const RELEASE_STACKS: &str = "tally-*";

/// GitHub Actions' OIDC issuer and the audience its tokens carry for AWS.
pub const GITHUB_OIDC_URL: &str = "https://token.actions.githubusercontent.com";
const GITHUB_AUDIENCE: &str = "sts.amazonaws.com";

/// The services whose resources a tally stack holds; the execution role may manage them.
const STACK_SERVICES: [&str; 14] = [
    "cloudformation:*",
    "cloudwatch:*",
    "dynamodb:*",
    "ec2:*",
    "elasticache:*",
    "events:*",
    "kinesis:*",
    "kms:*",
    "lambda:*",
    "logs:*",
    "s3:*",
    "secretsmanager:*",
    "sns:*",
    "sqs:*",
];

/// The IAM actions CloudFormation needs for the stack's function roles.
const FUNCTION_ROLE_WRITES: [&str; 7] = [
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:UpdateRole",
];

/// What CloudFormation actions a deploy role uses on its stacks.
const STACK_WRITES: [&str; 4] = [
    "cloudformation:CreateChangeSet",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:UpdateTerminationProtection",
];
const STACK_FOLLOW_UP: [&str; 9] = [
    "cloudformation:DeleteChangeSet",
    "cloudformation:DeleteStack",
    "cloudformation:DescribeChangeSet",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResource",
    "cloudformation:DescribeStackResources",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:GetTemplate",
    "cloudformation:ListStackResources",
];

/// A GitHub repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRepo {
    pub owner: String,
    pub name: String,
}

impl GithubRepo {
    /// Parses `owner/name` (GitHub's characters: letters, digits, `-`, `_`, `.`).
    pub fn parse(text: &str) -> Result<GithubRepo, Error> {
        let bad = |problem: &str| Error::Parameter {
            name: "--github-repo".to_owned(),
            problem: format!(
                "`{text}` {problem}; give it as owner/name, e.g. --github-repo acme/tally"
            ),
        };
        let (owner, name) = text.split_once('/').ok_or_else(|| bad("has no `/`"))?;
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 100
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(owner) || !valid(name) {
            return Err(bad("is not a GitHub repository name"));
        }
        Ok(GithubRepo {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `owner/name`.
    pub fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// What a bootstrap is made for.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub github_repo: GithubRepo,
    /// The GitHub Environment (with required reviewers) the release role trusts.
    pub release_environment: String,
    /// An existing GitHub OIDC provider of the account (there can be only one per issuer); `None` creates it.
    pub oidc_provider_arn: Option<String>,
}

impl BootstrapOptions {
    pub fn new(github_repo: GithubRepo) -> BootstrapOptions {
        BootstrapOptions {
            github_repo,
            release_environment: "production".to_owned(),
            oidc_provider_arn: None,
        }
    }
}

fn arn(parts: &[Expr]) -> Expr {
    Expr::concat(parts.iter().cloned())
}

/// `arn:<partition>:<service>:<region>:<account>:<rest>`; `global` leaves the region empty (IAM).
fn service_arn(service: &str, global: bool, rest: &str) -> Expr {
    let region = if global {
        Expr::text("")
    } else {
        Expr::region()
    };
    arn(&[
        Expr::text("arn:"),
        Expr::partition(),
        Expr::text(format!(":{service}:")),
        region,
        Expr::text(":"),
        Expr::account_id(),
        Expr::text(format!(":{rest}")),
    ])
}

fn stack_arn(pattern: &str) -> Expr {
    service_arn("cloudformation", false, &format!("stack/{pattern}/*"))
}

fn role_arn(pattern: &str) -> Expr {
    service_arn("iam", true, &format!("role/{pattern}"))
}

fn function_boundary(stack: &Stack) -> ManagedPolicy {
    ManagedPolicy::new(
        &stack.root(),
        "FunctionBoundary",
        ManagedPolicyProps {
            name: Some(Expr::concat([
                Expr::text(FUNCTION_BOUNDARY_PREFIX),
                Expr::region(),
            ])),
            description: "Permissions boundary of every tally function role: no IAM, STS or account administration, whatever the role's own policy says".to_owned(),
            statements: vec![
                PolicyStatement::allow("StackServices", &STACK_SERVICES, vec![Expr::text("*")]),
                PolicyStatement::deny(
                    "NoIdentityAdministration",
                    &["account:*", "iam:*", "organizations:*", "sts:*"],
                    vec![Expr::text("*")],
                ),
            ],
        },
    )
}

/// The execution role's boundary: the stack services, and IAM only for `tally-*` roles that carry the function
/// boundary; never the bootstrap stack's own roles and policies.
fn execution_boundary(stack: &Stack) -> ManagedPolicy {
    let boundary = naming::function_boundary_arn();
    ManagedPolicy::new(
        &stack.root(),
        "ExecutionBoundary",
        ManagedPolicyProps {
            name: None,
            description: "Permissions boundary of the CloudFormation execution role: IAM only for the stacks' own function roles".to_owned(),
            statements: execution_statements(&boundary, true),
        },
    )
}

/// The statements of the execution role (its own policy and, with `deny_bootstrap`, its boundary).
fn execution_statements(function_boundary: &Expr, deny_bootstrap: bool) -> Vec<PolicyStatement> {
    let mut statements = vec![
        PolicyStatement::allow("StackServices", &STACK_SERVICES, vec![Expr::text("*")]),
        PolicyStatement::allow(
            "ReadRoles",
            &[
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
            ],
            vec![role_arn("tally-*")],
        ),
        PolicyStatement::allow(
            "FunctionRolesCarryTheBoundary",
            &FUNCTION_ROLE_WRITES,
            vec![role_arn("tally-*")],
        )
        .when(
            "StringEquals",
            "iam:PermissionsBoundary",
            vec![function_boundary.clone()],
        ),
        // DeleteRole, TagRole and UntagRole have no iam:PermissionsBoundary key; the roles they can reach
        // are `tally-*` ones, and the bootstrap stack's roles are denied below.
        PolicyStatement::allow(
            "FunctionRoleLifecycle",
            &["iam:DeleteRole", "iam:TagRole", "iam:UntagRole"],
            vec![role_arn("tally-*")],
        ),
        PolicyStatement::allow(
            "PassFunctionRoles",
            &["iam:PassRole"],
            vec![role_arn("tally-*")],
        )
        .when(
            "StringEquals",
            "iam:PassedToService",
            vec![Expr::text("lambda.amazonaws.com")],
        ),
    ];
    if deny_bootstrap {
        statements.extend([
            PolicyStatement::deny(
                "KeepTheBoundary",
                &["iam:DeleteRolePermissionsBoundary"],
                vec![Expr::text("*")],
            ),
            PolicyStatement::deny(
                "BootstrapIsOffLimits",
                &["iam:*"],
                vec![
                    role_arn("tally-bootstrap-*"),
                    service_arn("iam", true, &format!("policy/{FUNCTION_BOUNDARY_PREFIX}*")),
                    service_arn("iam", true, "policy/tally-bootstrap-*"),
                ],
            ),
            PolicyStatement::deny(
                "BootstrapStackIsOffLimits",
                &["cloudformation:*"],
                vec![stack_arn("tally-bootstrap")],
            ),
        ]);
    }
    statements
}

/// Statements of a deploy role that may manage `stacks` through the execution role.
fn deploy_statements(
    stacks: &str,
    protected: &[&str],
    execution_role: &Expr,
    bucket: &Bucket,
) -> Vec<PolicyStatement> {
    vec![
        PolicyStatement::allow(
            "WriteStacksThroughTheExecutionRole",
            &STACK_WRITES,
            vec![stack_arn(stacks)],
        )
        .when(
            "StringEquals",
            "cloudformation:RoleArn",
            vec![execution_role.clone()],
        ),
        PolicyStatement::allow("FollowStacks", &STACK_FOLLOW_UP, vec![stack_arn(stacks)]),
        PolicyStatement::allow(
            "ReadAnyStack",
            &[
                "cloudformation:DescribeStacks",
                "cloudformation:ListStacks",
                "cloudformation:ValidateTemplate",
            ],
            vec![Expr::text("*")],
        ),
        PolicyStatement::allow(
            "PassTheExecutionRole",
            &["iam:PassRole"],
            vec![execution_role.clone()],
        )
        .when(
            "StringEquals",
            "iam:PassedToService",
            vec![Expr::text("cloudformation.amazonaws.com")],
        ),
        PolicyStatement::allow(
            "UploadAssets",
            &[
                "s3:GetObject",
                "s3:GetObjectAttributes",
                "s3:GetObjectVersion",
                "s3:GetObjectVersionAttributes",
                "s3:PutObject",
            ],
            vec![bucket.arn().with_suffix("/*")],
        ),
        PolicyStatement::allow(
            "ListAssets",
            &["s3:GetBucketVersioning", "s3:ListBucket"],
            vec![bucket.arn()],
        ),
        PolicyStatement::deny(
            "NoIamWrites",
            &[
                "iam:Add*",
                "iam:Attach*",
                "iam:Create*",
                "iam:Delete*",
                "iam:Detach*",
                "iam:Put*",
                "iam:Tag*",
                "iam:Update*",
            ],
            vec![Expr::text("*")],
        ),
        PolicyStatement::deny(
            "ProtectedStacks",
            &[
                "cloudformation:Create*",
                "cloudformation:Delete*",
                "cloudformation:Execute*",
                "cloudformation:Set*",
                "cloudformation:Update*",
            ],
            protected.iter().map(|name| stack_arn(name)).collect(),
        ),
    ]
}

/// What destroy needs on a stage's data: empty its buckets (every version), and look up what is left.
fn cleanup_statements(buckets: &str) -> Vec<PolicyStatement> {
    let bucket = arn(&[
        Expr::text("arn:"),
        Expr::partition(),
        Expr::text(format!(":s3:::{buckets}")),
    ]);
    vec![
        PolicyStatement::allow(
            "EmptyStageBuckets",
            &[
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
            ],
            vec![bucket.clone(), bucket.with_suffix("/*")],
        ),
        PolicyStatement::allow(
            "LookForLeftovers",
            &[
                "dynamodb:DescribeTable",
                "kinesis:DescribeStreamSummary",
                "logs:DescribeLogGroups",
                "sqs:GetQueueUrl",
            ],
            vec![Expr::text("*")],
        ),
    ]
}

fn github_trust(provider: &Expr, repo: &GithubRepo, subject: &str) -> Trust {
    Trust::WebIdentity {
        provider: provider.clone(),
        conditions: vec![
            Condition {
                operator: "StringEquals",
                key: "token.actions.githubusercontent.com:aud",
                values: vec![Expr::text(GITHUB_AUDIENCE)],
            },
            Condition {
                operator: "StringEquals",
                key: "token.actions.githubusercontent.com:sub",
                values: vec![Expr::text(format!("repo:{}:{subject}", repo.slug()))],
            },
        ],
    }
}

/// The checkov checks that flag every policy with service-wide actions, skipped with `reason`.
fn explain_wide_policy(node: &tally_constructs::Node, reason: &str) {
    for check in [
        "CKV_AWS_107",
        "CKV_AWS_108",
        "CKV_AWS_109",
        "CKV_AWS_110",
        "CKV_AWS_111",
    ] {
        node.skip_check(check, reason);
    }
}

/// The bootstrap stack's template.
pub fn synth(options: &BootstrapOptions) -> Result<Value, Error> {
    let environment = &options.release_environment;
    if environment.is_empty() || environment.contains(['\n', ':', '*', '?']) {
        return Err(Error::Parameter {
            name: "release environment".to_owned(),
            problem: format!(
                "`{environment}` cannot be a GitHub Environment name in a token subject"
            ),
        });
    }
    let stack = Stack::new(BOOTSTRAP_STACK);
    stack.set_description(&format!(
        "tally bootstrap v{BOOTSTRAP_VERSION}: assets bucket, CloudFormation execution role, GitHub OIDC deploy roles for {}",
        options.github_repo.slug()
    ));
    let root = stack.root();
    let bucket = Bucket::new(
        &root,
        "Assets",
        BucketProps {
            name: None,
            versioned: true,
            lifecycle: vec![LifecycleRule {
                id: "ExpireReplacedVersions".to_owned(),
                prefix: None,
                transitions: Vec::new(),
                expiration_days: None,
                noncurrent_expiration_days: Some(30),
                abort_incomplete_multipart_days: Some(1),
            }],
        },
    );
    bucket.node().retain();
    bucket.node().skip_check(
        "CKV_AWS_18",
        "holds only content-addressed function zips and templates; CloudTrail data events, not access logs, audit writes",
    );
    let provider = match &options.oidc_provider_arn {
        Some(existing) => Expr::text(existing.clone()),
        None => OidcProvider::new(&root, "GithubOidc", GITHUB_OIDC_URL, &[GITHUB_AUDIENCE]).arn(),
    };
    let function_boundary = function_boundary(&stack);
    explain_wide_policy(
        function_boundary.node(),
        "a permissions boundary grants nothing: it caps each function role at the stack services and denies IAM, STS and account administration",
    );
    let execution_boundary = execution_boundary(&stack);
    explain_wide_policy(
        execution_boundary.node(),
        "a permissions boundary grants nothing: it caps the execution role, and its IAM part is limited to tally-* roles carrying the function boundary",
    );
    let execution = Role::trusting(
        &root,
        "ExecutionRole",
        TrustedRoleProps {
            trust: Trust::Service("cloudformation.amazonaws.com"),
            description: "CloudFormation execution role of tally stacks; its boundary forbids IAM beyond the stacks' function roles".to_owned(),
            statements: execution_statements(&function_boundary.arn(), false),
            boundary: Some(execution_boundary.arn()),
            max_session_secs: 3600,
        },
    );
    explain_wide_policy(
        execution.node(),
        "CloudFormation execution role: creates and deletes every resource type of a tally stack; its boundary limits IAM to the stacks' function roles (docs/bootstrap.md)",
    );
    let preview = Role::trusting(
        &root,
        "PreviewRole",
        TrustedRoleProps {
            trust: github_trust(&provider, &options.github_repo, "pull_request"),
            description: format!("Deploys and destroys preview stacks ({PREVIEW_STACKS}) of pull requests, only through the execution role"),
            statements: [
                deploy_statements(PREVIEW_STACKS, &["tally-production", BOOTSTRAP_STACK], &execution.arn(), &bucket),
                cleanup_statements("tally-pr-*"),
            ]
            .concat(),
            boundary: None,
            max_session_secs: 3600,
        },
    );
    let release = Role::trusting(
        &root,
        "ReleaseRole",
        TrustedRoleProps {
            trust: github_trust(&provider, &options.github_repo, &format!("environment:{environment}")),
            description: format!("Deploys protected stages from the GitHub Environment `{environment}`, only through the execution role"),
            statements: deploy_statements(RELEASE_STACKS, &[BOOTSTRAP_STACK], &execution.arn(), &bucket),
            boundary: None,
            max_session_secs: 3600,
        },
    );
    stack.output(
        "AssetsBucket",
        "bucket of the function zips (versioned; name chosen by CloudFormation)",
        &bucket.name(),
    );
    stack.output(
        "ExecutionRoleArn",
        "role CloudFormation uses for tally stacks",
        &execution.arn(),
    );
    stack.output(
        "PreviewRoleArn",
        "GitHub OIDC role of the preview workflows",
        &preview.arn(),
    );
    stack.output(
        "ReleaseRoleArn",
        "GitHub OIDC role of the release workflow",
        &release.arn(),
    );
    stack.output(
        "FunctionBoundaryArn",
        "permissions boundary every function role carries",
        &function_boundary.arn(),
    );
    stack.output(
        "BootstrapVersion",
        "version of this bootstrap stack",
        &Expr::text(BOOTSTRAP_VERSION.to_string()),
    );
    stack.synth().map_err(|e| Error::Template(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BootstrapOptions {
        BootstrapOptions::new(GithubRepo::parse("acme/tally").expect("valid repo"))
    }

    #[test]
    fn the_template_has_every_output_and_a_guarded_bucket() {
        let t = synth(&options()).expect("synth");
        let outputs: Vec<&String> = t["Outputs"].as_object().expect("outputs").keys().collect();
        assert_eq!(
            outputs,
            [
                "AssetsBucket",
                "ExecutionRoleArn",
                "PreviewRoleArn",
                "ReleaseRoleArn",
                "FunctionBoundaryArn",
                "BootstrapVersion"
            ]
        );
        assert_eq!(
            t["Outputs"]["BootstrapVersion"]["Value"],
            BOOTSTRAP_VERSION.to_string()
        );
        let resources = t["Resources"].as_object().expect("resources");
        let (_, bucket) = resources
            .iter()
            .find(|(_, r)| r["Type"] == "AWS::S3::Bucket")
            .expect("bucket");
        let p = &bucket["Properties"];
        assert!(
            p.get("BucketName").is_none(),
            "CloudFormation picks a random name"
        );
        assert_eq!(p["VersioningConfiguration"]["Status"], "Enabled");
        assert_eq!(
            p["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
            "BucketOwnerEnforced"
        );
        assert_eq!(
            p["LifecycleConfiguration"]["Rules"][0]["NoncurrentVersionExpiration"]
                ["NoncurrentDays"],
            30
        );
        assert_eq!(bucket["DeletionPolicy"], "Retain");
        let existing = BootstrapOptions {
            oidc_provider_arn: Some(
                "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com".into(),
            ),
            ..options()
        };
        let t = synth(&existing).expect("synth");
        let types: Vec<&Value> = t["Resources"]
            .as_object()
            .expect("r")
            .values()
            .map(|r| &r["Type"])
            .collect();
        assert!(
            !types.contains(&&Value::from("AWS::IAM::OIDCProvider")),
            "the existing provider is used"
        );
    }

    #[test]
    fn bad_repositories_and_environments_are_named() {
        for (repo, expect) in [
            ("acme", "has no `/`"),
            ("acme/", "is not a GitHub repository name"),
            ("ac me/tally", "is not a GitHub repository name"),
        ] {
            let e = GithubRepo::parse(repo).expect_err(repo).to_string();
            assert!(e.contains("--github-repo") && e.contains(expect), "{e}");
        }
        let mut bad = options();
        bad.release_environment = "prod*".into();
        let e = synth(&bad).expect_err("wildcard").to_string();
        assert!(e.contains("cannot be a GitHub Environment name"), "{e}");
    }
}
