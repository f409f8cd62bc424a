//! Query: the API and dashboard behind a bearer token, reading the metrics table (and the counter cache for the
//! open minutes).

use tally_constructs::dynamodb::Table;
use tally_constructs::dynamodb_items::ItemAction;
use tally_constructs::lambda::{Cors, Function, FunctionUrl, FunctionUrlProps, UrlAuth};
use tally_constructs::secrets::Secret;

use crate::context::{Context, FunctionSpec, ENV_PLAIN, LOGS_KEY, NO_DLQ_SYNC};
use crate::counter_store::CounterStore;
use crate::env;

/// What query calls on the metrics table (`tally_aws::metrics`, `tally_aws::compacted`,
/// `tally_aws::compacted_batch` — the page of campaigns' items by key — and its own index lookup): reads only.
/// `tests/it/least_privilege.rs` derives the same list from the code.
pub(crate) const QUERY_TABLE_ACTIONS: [ItemAction; 3] = [
    ItemAction::GetItem,
    ItemAction::Query,
    ItemAction::BatchGetItem,
];

/// What query reads.
pub(crate) struct QueryProps<'a> {
    pub(crate) metrics: &'a Table,
    /// The bearer token's secret.
    pub(crate) token: &'a Secret,
    pub(crate) store: &'a CounterStore,
}

/// The query function and its URL.
pub(crate) struct Query {
    pub(crate) function: Function,
    pub(crate) url: FunctionUrl,
}

/// Adds query (in the VPC), its grants (the table's reads, the token) and its URL.
pub(crate) fn query(cx: &Context<'_>, props: QueryProps<'_>) -> Query {
    let function = cx.function(FunctionSpec {
        id: "Query",
        package: "query",
        lane: None,
        env: vec![
            (env::METRICS_TABLE, props.metrics.name()),
            (env::QUERY_TOKEN_SECRET_ARN, props.token.arn()),
        ],
        store: Some(props.store),
    });
    // Exactly what the code calls (infra/pipeline/tests/it/least_privilege.rs derives it).
    props.metrics.grant_items(&function, &QUERY_TABLE_ACTIONS);
    props.token.grant_read(&function);
    let url = FunctionUrl::new(
        &cx.root,
        "QueryFunctionUrl",
        &function,
        FunctionUrlProps {
            auth: UrlAuth::None,
            cors: Some(Cors {
                allow_origins: vec!["*".into()],
                allow_methods: vec!["GET".into()],
                allow_headers: vec!["authorization".into()],
                max_age_secs: 3600,
            }),
        },
    );
    url.node().skip_check("CKV_AWS_258", "the query function checks a bearer token kept in Secrets Manager; the dashboard needs a plain URL");
    function.node().skip_check("CKV_AWS_116", NO_DLQ_SYNC);
    function.node().skip_check("CKV_AWS_173", ENV_PLAIN);
    function.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
    Query { function, url }
}

#[cfg(test)]
mod tests {
    use super::{query, QueryProps};
    use crate::testing::{
        env_names, events_of, role_actions, storage_and_store, template_of, types_of,
    };
    use crate::{env, PipelineOptions};

    #[test]
    fn reads_the_table_and_its_token_only() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            let (storage, store) = storage_and_store(cx, &events_of(cx));
            query(
                cx,
                QueryProps {
                    metrics: &storage.metrics,
                    token: &storage.token,
                    store: &store,
                },
            );
        });
        let actions = role_actions(&t, "Query");
        let table: Vec<&String> = actions
            .iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        assert_eq!(
            table,
            [
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:Query"
            ]
        );
        assert!(actions.contains("secretsmanager:GetSecretValue"));
        assert!(actions.contains("elasticache:Connect"));
        assert!(!actions.iter().any(|a| a.starts_with("s3:")), "{actions:?}");
        let names = env_names(&t, "Query");
        assert_eq!(
            names[..2],
            [env::METRICS_TABLE, env::QUERY_TOKEN_SECRET_ARN]
        );
        assert!(types_of(&t, &["QueryFunctionUrl"]).contains(&"AWS::Lambda::Url".to_owned()));
    }
}
