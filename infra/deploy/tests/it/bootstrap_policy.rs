//! The policy test: the preview, release and execution roles' policies and boundaries, exactly as
//! `cargo xtask bootstrap --show` prints them (`bootstrap::show::render`), evaluated by tally-deploy's own
//! small IAM evaluator (`policy_eval`): Allow/Deny, Action/NotAction and ARN wildcards, and the condition keys
//! the policies use (`cloudformation:RoleArn`, `iam:PassedToService`, `iam:PermissionsBoundary`, the GitHub
//! token's `sub` and `aud`).

use serde_json::Value;
use tally_deploy::bootstrap::show::{render, ShowContext};
use tally_deploy::bootstrap::stack::{BootstrapOptions, GithubRepo};
use tally_deploy::policy_eval::{evaluate, Decision, Request};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";

/// The printed policies, parsed back.
struct Shown(Value);

impl Shown {
    fn new() -> Shown {
        let options = BootstrapOptions::new(GithubRepo::parse("acme/tally").expect("repo"));
        let text = render(&options, &ShowContext::new(ACCOUNT, REGION)).expect("--show renders");
        Shown(serde_json::from_str(&text).expect("--show prints JSON"))
    }

    fn role(&self, name: &str) -> &Value {
        let role = &self.0["Roles"][name];
        assert!(role.is_object(), "--show prints role {name}");
        role
    }

    fn arn(&self, role: &str) -> String {
        self.role(role)["Arn"].as_str().expect("arn").to_owned()
    }

    /// The managed policy document whose ARN is `arn`.
    fn managed(&self, arn: &str) -> &Value {
        self.0["ManagedPolicies"]
            .as_object()
            .expect("managed policies")
            .values()
            .find(|p| p["Arn"] == arn)
            .map(|p| &p["Document"])
            .unwrap_or_else(|| panic!("--show prints the boundary {arn}"))
    }

    fn function_boundary(&self) -> String {
        self.0["ManagedPolicies"]["FunctionBoundary"]["Arn"]
            .as_str()
            .expect("arn")
            .to_owned()
    }

    /// `role`'s decision on `request`: its inline policy and, when it has one, its boundary.
    fn decide(&self, role: &str, request: &Request) -> Decision {
        let shown = self.role(role);
        let boundary = shown["Boundary"].as_str().map(|arn| self.managed(arn));
        evaluate(&[&shown["Policy"]], boundary, request).expect("the printed policies evaluate")
    }

    fn allows(&self, role: &str, request: &Request) -> bool {
        self.decide(role, request).allowed()
    }
}

fn stack(name: &str) -> String {
    format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0a1b2c3d-1111-2222-3333-444455556666")
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A function role of preview `pr-7`, as the pipeline names them.
fn function_role() -> String {
    role(&format!("tally-pr-7-collect-{REGION}"))
}

const STACK_WRITES: [&str; 6] = [
    "cloudformation:CreateChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
    "cloudformation:DeleteChangeSet",
];

#[test]
fn the_preview_role_manages_previews_only_and_only_through_the_execution_role() {
    let shown = Shown::new();
    let execution = shown.arn("ExecutionRole");
    let through = |action: &str, name: &str| {
        Request::new(action, &stack(name)).with("cloudformation:RoleArn", &execution)
    };
    // Can manage tally-pr-7.
    for action in STACK_WRITES {
        assert!(
            shown.allows("PreviewRole", &through(action, "tally-pr-7")),
            "{action} on tally-pr-7"
        );
    }
    for action in [
        "cloudformation:DescribeStackEvents",
        "cloudformation:GetTemplate",
        "cloudformation:DescribeChangeSet",
    ] {
        assert!(
            shown.allows("PreviewRole", &Request::new(action, &stack("tally-pr-7"))),
            "{action}"
        );
    }
    // Creating a change set needs the execution role: not none, not another role.
    let bare = Request::new("cloudformation:CreateChangeSet", &stack("tally-pr-7"));
    assert!(
        !shown.allows("PreviewRole", &bare),
        "without a role CloudFormation would act as the preview role"
    );
    let other = bare
        .clone()
        .with("cloudformation:RoleArn", &shown.arn("ReleaseRole"));
    assert!(!shown.allows("PreviewRole", &other));
    // Cannot touch production, the bootstrap stack, or any stack that is not a preview.
    for name in [
        "tally-production",
        "tally-bootstrap",
        "tally-main",
        "tally-pr",
    ] {
        for action in STACK_WRITES {
            assert!(
                !shown.allows("PreviewRole", &through(action, name)),
                "{action} on {name}"
            );
        }
    }
    for name in ["tally-production", "tally-bootstrap"] {
        assert!(
            matches!(
                shown.decide("PreviewRole", &through("cloudformation:UpdateStack", name)),
                Decision::ExplicitDeny(_)
            ),
            "{name} is denied explicitly"
        );
    }
    // Passes the execution role to CloudFormation, and nothing else to anyone.
    let pass = |role: &str, service: &str| {
        Request::new("iam:PassRole", role).with("iam:PassedToService", service)
    };
    assert!(shown.allows(
        "PreviewRole",
        &pass(&execution, "cloudformation.amazonaws.com")
    ));
    assert!(!shown.allows("PreviewRole", &pass(&execution, "lambda.amazonaws.com")));
    assert!(!shown.allows(
        "PreviewRole",
        &pass(&shown.arn("ReleaseRole"), "cloudformation.amazonaws.com")
    ));
    assert!(!shown.allows(
        "PreviewRole",
        &pass(&function_role(), "lambda.amazonaws.com")
    ));
}

#[test]
fn the_preview_role_cannot_create_or_change_roles_itself() {
    let shown = Shown::new();
    let boundary = shown.function_boundary();
    for action in [
        "iam:CreateRole",
        "iam:AttachRolePolicy",
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:CreateUser",
        "iam:CreateAccessKey",
    ] {
        for target in [function_role(), role("admin"), shown.arn("PreviewRole")] {
            let with_boundary =
                Request::new(action, &target).with("iam:PermissionsBoundary", &boundary);
            assert!(
                !shown.allows("PreviewRole", &with_boundary),
                "{action} on {target}"
            );
            assert!(
                !shown.allows("PreviewRole", &Request::new(action, &target)),
                "{action} on {target}"
            );
        }
    }
}

#[test]
fn the_execution_role_creates_only_function_roles_that_carry_the_boundary() {
    let shown = Shown::new();
    let boundary = shown.function_boundary();
    let create = |target: &str| Request::new("iam:CreateRole", target);
    // Cannot create a role without the boundary, or with another one.
    assert!(
        !shown.allows("ExecutionRole", &create(&function_role())),
        "no boundary"
    );
    let wrong = format!("arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess");
    assert!(!shown.allows(
        "ExecutionRole",
        &create(&function_role()).with("iam:PermissionsBoundary", &wrong)
    ));
    // Can create the stack's function roles with it.
    assert!(shown.allows(
        "ExecutionRole",
        &create(&function_role()).with("iam:PermissionsBoundary", &boundary)
    ));
    // Never a role outside the stacks' names, even with the boundary.
    assert!(!shown.allows(
        "ExecutionRole",
        &create(&role("admin")).with("iam:PermissionsBoundary", &boundary)
    ));
    // Cannot attach or put policies on roles outside the stacks': other roles, roles without the boundary, the
    // bootstrap stack's own roles.
    for action in ["iam:AttachRolePolicy", "iam:PutRolePolicy"] {
        let on =
            |target: &str| Request::new(action, target).with("iam:PermissionsBoundary", &boundary);
        assert!(
            shown.allows("ExecutionRole", &on(&function_role())),
            "{action} on the stack's role"
        );
        assert!(
            !shown.allows("ExecutionRole", &on(&role("other-team-role"))),
            "{action}"
        );
        assert!(
            !shown.allows("ExecutionRole", &Request::new(action, &function_role())),
            "{action} on a role without the boundary"
        );
        for own in ["PreviewRole", "ReleaseRole", "ExecutionRole"] {
            assert!(
                !shown.allows("ExecutionRole", &on(&shown.arn(own))),
                "{action} on {own}"
            );
        }
    }
    // Nor take the boundary off, rewrite the boundary, or make users and keys.
    let loosen = [
        Request::new("iam:DeleteRolePermissionsBoundary", &function_role())
            .with("iam:PermissionsBoundary", &boundary),
        Request::new("iam:CreatePolicyVersion", &boundary),
        Request::new("iam:DeletePolicy", &boundary),
        Request::new(
            "iam:CreateUser",
            &format!("arn:aws:iam::{ACCOUNT}:user/tally-x"),
        ),
        Request::new(
            "iam:CreateAccessKey",
            &format!("arn:aws:iam::{ACCOUNT}:user/tally-x"),
        ),
        Request::new("iam:UpdateAssumeRolePolicy", &function_role()),
        Request::new("iam:DeleteRole", &shown.arn("PreviewRole")),
    ];
    for request in loosen {
        assert!(!shown.allows("ExecutionRole", &request), "{request:?}");
    }
    // Function roles go to Lambda only; the bootstrap stack is not the execution role's to change.
    let pass = |service: &str| {
        Request::new("iam:PassRole", &function_role()).with("iam:PassedToService", service)
    };
    assert!(shown.allows("ExecutionRole", &pass("lambda.amazonaws.com")));
    assert!(!shown.allows("ExecutionRole", &pass("ec2.amazonaws.com")));
    assert!(!shown.allows(
        "ExecutionRole",
        &Request::new("cloudformation:UpdateStack", &stack("tally-bootstrap"))
    ));
    assert!(shown.allows(
        "ExecutionRole",
        &Request::new(
            "dynamodb:CreateTable",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/tally-pr-7-metrics"
        )
    ));
}

#[test]
fn function_roles_can_do_no_iam_whatever_their_own_policy_says() {
    let shown = Shown::new();
    let boundary = shown.managed(&shown.function_boundary());
    let everything: Value =
        serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let decide = |action: &str| {
        evaluate(&[&everything], Some(boundary), &Request::new(action, "*")).expect("evaluates")
    };
    for action in [
        "iam:CreateRole",
        "iam:PassRole",
        "sts:AssumeRole",
        "organizations:LeaveOrganization",
    ] {
        assert!(!decide(action).allowed(), "{action}");
    }
    assert!(decide("dynamodb:UpdateItem").allowed());
    assert!(decide("kinesis:PutRecords").allowed());
}

#[test]
fn the_release_role_is_only_for_the_production_environment_and_not_the_bootstrap() {
    let shown = Shown::new();
    let execution = shown.arn("ExecutionRole");
    let change_set = |name: &str| {
        Request::new("cloudformation:CreateChangeSet", &stack(name))
            .with("cloudformation:RoleArn", &execution)
    };
    assert!(shown.allows("ReleaseRole", &change_set("tally-production")));
    assert!(!shown.allows("ReleaseRole", &change_set("tally-bootstrap")));
    assert!(!shown.allows(
        "ReleaseRole",
        &Request::new("iam:CreateRole", &role("tally-x"))
    ));

    // Who may assume which role: the GitHub token's claims against each trust policy.
    let token = |sub: &str| {
        Request::new("sts:AssumeRoleWithWebIdentity", "*")
            .with(
                "token.actions.githubusercontent.com:aud",
                "sts.amazonaws.com",
            )
            .with("token.actions.githubusercontent.com:sub", sub)
    };
    let assumes = |role: &str, sub: &str| {
        let trust = &shown.role(role)["Trust"];
        assert_eq!(
            trust["Statement"][0]["Principal"]["Federated"],
            format!("arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com")
        );
        evaluate(&[trust], None, &token(sub))
            .expect("evaluates")
            .allowed()
    };
    let production = "repo:acme/tally:environment:production";
    let pull_request = "repo:acme/tally:pull_request";
    assert!(assumes("ReleaseRole", production));
    for sub in [
        pull_request,
        "repo:acme/tally:ref:refs/heads/main",
        "repo:acme/tally:environment:production-copy",
        "repo:evil/tally:environment:production",
    ] {
        assert!(!assumes("ReleaseRole", sub), "{sub}");
    }
    assert!(assumes("PreviewRole", pull_request));
    assert!(!assumes("PreviewRole", production));
    assert!(!assumes("PreviewRole", "repo:evil/tally:pull_request"));
    let other_audience = Request::new("sts:AssumeRoleWithWebIdentity", "*")
        .with(
            "token.actions.githubusercontent.com:aud",
            "https://github.com/acme",
        )
        .with("token.actions.githubusercontent.com:sub", production);
    assert!(!evaluate(
        &[&shown.role("ReleaseRole")["Trust"]],
        None,
        &other_audience
    )
    .expect("evaluates")
    .allowed());
}
