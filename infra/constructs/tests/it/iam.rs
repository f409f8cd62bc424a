//! Hand-written IAM: policy statements, managed policies, OIDC providers, roles with an explicit trust and a
//! permissions boundary; the rules each breaks is a synth violation naming the construct path.

use serde_json::{json, Value};
use tally_constructs::iam::{
    Condition, ManagedPolicy, ManagedPolicyProps, OidcProvider, PolicyStatement, Role, Trust,
    TrustedRoleProps,
};
use tally_constructs::lambda::{Code, Function, FunctionProps};
use tally_constructs::{naming, Expr, Scope, Stack};

use super::{check, synth};

fn policy(scope: &Scope, id: &str, statements: Vec<PolicyStatement>) -> ManagedPolicy {
    ManagedPolicy::new(
        scope,
        id,
        ManagedPolicyProps {
            name: Some(Expr::concat([Expr::text("boundary-"), Expr::region()])),
            description: "d".into(),
            statements,
        },
    )
}

fn resource<'a>(template: &'a Value, prefix: &str) -> &'a Value {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .find(|(id, _)| id.starts_with(prefix))
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no resource {prefix}"))
}

#[test]
fn statements_render_actions_resources_and_conditions() {
    let stack = Stack::new("app");
    let p = policy(
        &stack.root(),
        "Boundary",
        vec![
            PolicyStatement::allow(
                "One",
                &["s3:GetObject"],
                vec![Expr::text("arn:aws:s3:::b/*")],
            ),
            PolicyStatement::deny("NoIam", &["iam:*", "sts:*"], vec![Expr::text("*")])
                .except_actions()
                .when("StringEquals", "aws:RequestedRegion", vec![Expr::region()])
                .when(
                    "StringEquals",
                    "aws:PrincipalAccount",
                    vec![Expr::account_id()],
                ),
        ],
    );
    stack.output("BoundaryArn", "arn", &p.arn());
    let template = synth(&stack);
    let properties = &resource(&template, "Boundary")["Properties"];
    assert_eq!(
        properties["ManagedPolicyName"],
        json!({"Fn::Sub": "boundary-${AWS::Region}"})
    );
    assert_eq!(
        properties["PolicyDocument"],
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "One", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "NoIam", "Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}, "aws:PrincipalAccount": {"Ref": "AWS::AccountId"}}}},
        ]})
    );
    assert_eq!(
        template["Outputs"]["BoundaryArn"]["Value"]["Ref"],
        json!(p.node().logical_id())
    );
}

#[test]
fn bad_statements_are_violations() {
    let cases: [(Vec<PolicyStatement>, &str); 7] = [
        (
            vec![PolicyStatement::allow(
                "has-dash",
                &["s3:GetObject"],
                vec![Expr::text("*")],
            )],
            "policy statement `has-dash`: the Sid must be non-empty and alphanumeric",
        ),
        (
            vec![PolicyStatement::allow(
                "A",
                &["GetObject"],
                vec![Expr::text("*")],
            )],
            "policy statement `A`: action `GetObject` is not `service:Action`",
        ),
        (
            vec![PolicyStatement::allow("A", &[], vec![Expr::text("*")])],
            "policy statement `A`: needs at least one action and one resource",
        ),
        (
            vec![PolicyStatement::allow("A", &["*"], vec![Expr::text("*")])],
            "policy statement `A`: allows every action on every resource",
        ),
        (
            vec![
                PolicyStatement::allow("A", &["s3:GetObject"], vec![Expr::text("*")]).when(
                    "NumericLessThan",
                    "k",
                    vec![Expr::text("1")],
                ),
            ],
            "policy statement `A`: condition operator `NumericLessThan` is not one of",
        ),
        (
            vec![
                PolicyStatement::allow("A", &["s3:GetObject"], vec![Expr::text("*")]),
                PolicyStatement::deny("A", &["s3:PutObject"], vec![Expr::text("*")]),
            ],
            "policy statement Sid `A` is used twice",
        ),
        (vec![], "a policy document needs at least one statement"),
    ];
    for (statements, expect) in cases {
        check(
            |_, root| {
                policy(root, "P", statements);
            },
            &format!("app/P: {expect}"),
        );
    }
}

fn role_props(trust: Trust) -> TrustedRoleProps {
    TrustedRoleProps {
        trust,
        description: "deploys".into(),
        statements: vec![PolicyStatement::allow(
            "Read",
            &["cloudformation:DescribeStacks"],
            vec![Expr::text("*")],
        )],
        boundary: None,
        max_session_secs: 3600,
    }
}

#[test]
fn web_identity_roles_trust_the_provider_under_conditions() {
    let stack = Stack::new("app");
    let root = stack.root();
    let provider = OidcProvider::new(
        &root,
        "Github",
        "https://token.actions.githubusercontent.com",
        &["sts.amazonaws.com"],
    );
    let boundary = policy(
        &root,
        "Boundary",
        vec![PolicyStatement::allow(
            "S",
            &["s3:*"],
            vec![Expr::text("*")],
        )],
    );
    let mut props = role_props(Trust::WebIdentity {
        provider: provider.arn(),
        conditions: vec![Condition {
            operator: "StringEquals",
            key: "token.actions.githubusercontent.com:sub",
            values: vec![Expr::text("repo:acme/tally:pull_request")],
        }],
    });
    props.boundary = Some(boundary.arn());
    Role::trusting(&root, "Deploy", props);
    let template = synth(&stack);
    let github = resource(&template, "Github");
    assert_eq!(github["Type"], "AWS::IAM::OIDCProvider");
    let provider_id = template["Resources"]
        .as_object()
        .expect("r")
        .keys()
        .find(|k| k.starts_with("Github"))
        .expect("id")
        .clone();
    let role = &resource(&template, "Deploy")["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0],
        json!({"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": {"Ref": provider_id}},
               "Condition": {"StringEquals": {"token.actions.githubusercontent.com:sub": "repo:acme/tally:pull_request"}}})
    );
    assert_eq!(
        role["PermissionsBoundary"]["Ref"],
        json!(boundary.node().logical_id())
    );
    assert_eq!(role["Policies"][0]["PolicyName"], "permissions");
    assert_eq!(role["MaxSessionDuration"], 3600);
}

#[test]
fn bad_roles_and_providers_are_violations() {
    check(
        |_, root| {
            Role::trusting(
                root,
                "R",
                role_props(Trust::WebIdentity {
                    provider: Expr::text("arn:p"),
                    conditions: vec![],
                }),
            );
        },
        "app/R: a web identity trust without conditions lets every token of the provider in",
    );
    check(
        |_, root| {
            let mut props = role_props(Trust::Service("cloudformation.amazonaws.com"));
            props.max_session_secs = 60;
            Role::trusting(root, "R", props);
        },
        "app/R: max_session_secs 60 is outside IAM's 3600..=43200",
    );
    check(
        |_, root| {
            OidcProvider::new(root, "O", "http://insecure", &[]);
        },
        "app/O: OIDC issuer `http://insecure` must be an https:// URL",
    );
}

#[test]
fn function_code_can_pin_a_version_and_roles_carry_a_boundary() {
    let stack = Stack::new("app");
    let root = stack.root();
    let key = stack.string_parameter("Key", "key");
    let version = stack.string_parameter("Version", "version");
    let f = Function::new(
        &root,
        "Fn",
        FunctionProps {
            code: Some(Code::s3_version(
                Expr::text("bucket"),
                key.value(),
                version.value(),
            )),
            ..FunctionProps::default()
        },
    );
    f.role()
        .set_permissions_boundary(&naming::function_boundary_arn());
    let template = synth(&stack);
    let function = template["Resources"]
        .as_object()
        .expect("r")
        .values()
        .find(|r| r["Type"] == "AWS::Lambda::Function")
        .expect("function");
    assert_eq!(
        function["Properties"]["Code"],
        json!({"S3Bucket": "bucket", "S3Key": {"Ref": "Key"}, "S3ObjectVersion": {"Ref": "Version"}})
    );
    let role = template["Resources"]
        .as_object()
        .expect("r")
        .values()
        .find(|r| r["Type"] == "AWS::IAM::Role")
        .expect("role");
    assert_eq!(
        role["Properties"]["PermissionsBoundary"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/tally-function-boundary-${AWS::Region}"})
    );
    check(
        |_, root| {
            Function::new(
                root,
                "F",
                FunctionProps {
                    code: Some(Code::s3_version(
                        Expr::text("b"),
                        Expr::text("k"),
                        Expr::text(" "),
                    )),
                    ..FunctionProps::default()
                },
            );
        },
        "code version is empty",
    );
}

#[test]
fn a_boundary_from_another_stack_is_a_violation() {
    let other = Stack::new("other");
    let foreign = policy(
        &other.root(),
        "Boundary",
        vec![PolicyStatement::allow(
            "S",
            &["s3:*"],
            vec![Expr::text("*")],
        )],
    );
    check(
        |_, root| {
            let role = Role::trusting(
                root,
                "R",
                role_props(Trust::Service("lambda.amazonaws.com")),
            );
            role.set_permissions_boundary(&foreign.arn());
        },
        "refers to `other/Boundary`, a construct of another stack",
    );
}
