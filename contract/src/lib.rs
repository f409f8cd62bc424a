//! The names every side of tally shares, in one place so they cannot disagree: the pipeline
//! (`tally-pipeline`) sets them, the functions read them, `cargo xtask` (plan, build, redrive) and the
//! local cloud look for them, and the tests check them.
//!
//! No dependencies: a function, the stack and a tool can all depend on it.

/// The six functions: package `tally-<name>`, code-key parameter `<Name>CodeKey` (build, deploy and the stack
/// name them alike).
pub const FUNCTIONS: [&str; 6] = [
    "collect",
    "realtime",
    "deferred",
    "query",
    "compactor",
    "scaler",
];

/// Template parameters: the stack declares them, the deploy step fills them.
pub mod parameters {
    /// The bucket that holds the function zips.
    pub const ASSETS_BUCKET: &str = "AssetsBucket";

    /// The parameter holding the S3 key of `function`'s zip: `collect` → `CollectCodeKey`.
    pub fn code_key_parameter(function: &str) -> String {
        let mut chars = function.chars();
        let first = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string())
            .unwrap_or_default();
        format!("{first}{}CodeKey", chars.as_str())
    }

    /// The parameter holding the S3 object version of `function`'s zip (the deploy step pins the version it
    /// verified): `collect` → `CollectCodeVersion`.
    pub fn code_version_parameter(function: &str) -> String {
        code_key_parameter(function).replace("CodeKey", "CodeVersion")
    }
}

/// Environment variables: the pipeline sets them on the functions, the functions read them.
pub mod env {
    /// collect, scaler: the events stream's name.
    pub const STREAM_NAME: &str = "TALLY_STREAM_NAME";
    /// query, compactor: the metrics table's name (the deferred lane writes only the cache).
    pub const METRICS_TABLE: &str = "TALLY_METRICS_TABLE";
    /// deferred, compactor: the archive bucket's name (the compactor reads it to repair a cache that lost
    /// its data).
    pub const ARCHIVE_BUCKET: &str = "TALLY_ARCHIVE_BUCKET";
    /// query: ARN of the secret that holds the bearer token.
    pub const QUERY_TOKEN_SECRET_ARN: &str = "TALLY_QUERY_TOKEN_SECRET_ARN";
    /// query, never set by the stack: `off` opens the API and dashboard without a token (local development
    /// only: `cargo xtask dev`, the function smoke test).
    pub const QUERY_AUTH: &str = "TALLY_QUERY_AUTH";
    /// deferred: `exclude` when the stack option `exclude_unsigned` leaves unsigned events out of the settled
    /// counts (absent: they are counted, without money).
    pub const SETTLED_UNSIGNED: &str = "TALLY_SETTLED_UNSIGNED";
    /// collect: ARN of the collect keys secret (key id → secret: post keys and pixel signing keys).
    pub const COLLECT_KEYS_SECRET_ARN: &str = "TALLY_COLLECT_KEYS_SECRET_ARN";
    /// collect, with the edge only: ARN of the origin secret CloudFront sends in the origin header
    /// (`tally_domain::ingest::ORIGIN_HEADER`); set, collect refuses requests without it.
    pub const COLLECT_ORIGIN_SECRET_ARN: &str = "TALLY_COLLECT_ORIGIN_SECRET_ARN";
    /// compactor: days a campaign index row lives after the campaign's last event (`campaign_index_days`).
    pub const CAMPAIGN_INDEX_DAYS: &str = "TALLY_CAMPAIGN_INDEX_DAYS";
    /// compactor, never set by the stack (the local cloud's tests shorten it): seconds after its end a
    /// minute's realtime counts are final.
    pub const COMPACT_REALTIME_GRACE_SECS: &str = "TALLY_COMPACT_REALTIME_GRACE_SECS";
    /// compactor, never set by the stack (the local cloud's tests shorten it): seconds after its end a
    /// minute's settled counts are final.
    pub const COMPACT_SETTLED_GRACE_SECS: &str = "TALLY_COMPACT_SETTLED_GRACE_SECS";
    /// scaler: the shard floor.
    pub const MIN_SHARDS: &str = "TALLY_MIN_SHARDS";
    /// scaler: the shard ceiling.
    pub const MAX_SHARDS: &str = "TALLY_MAX_SHARDS";
    /// every function: the tracing filter.
    pub const RUST_LOG: &str = "RUST_LOG";
    /// realtime, deferred, query, compactor: the counter cache's `host:port`
    /// (`Fn::Join [":", [CounterCache.Endpoint.Address, CounterCache.Endpoint.Port]]`).
    pub const CACHE_ENDPOINT: &str = "TALLY_CACHE_ENDPOINT";
    /// realtime, deferred, query, compactor: `true` (ElastiCache Serverless is TLS-only; the local cloud
    /// sets `false`).
    pub const CACHE_TLS: &str = "TALLY_CACHE_TLS";
    /// realtime, deferred, query, compactor: `iam` (a signed token for the cache name and user; the local
    /// cloud sets `none`).
    pub const CACHE_AUTH: &str = "TALLY_CACHE_AUTH";
    /// realtime, deferred, query, compactor: the ElastiCache user id the functions log in as.
    pub const CACHE_USER: &str = "TALLY_CACHE_USER";
    /// realtime, deferred, query, compactor: the cache's name (the IAM token is signed for it).
    pub const CACHE_NAME: &str = "TALLY_CACHE_NAME";
    /// realtime, deferred, query, compactor: how long an event id's claim lasts, seconds
    /// (`dedup_window_secs`).
    pub const DEDUP_WINDOW_SECS: &str = "TALLY_DEDUP_WINDOW_SECS";
}

/// Names of the stack's outputs (what deploy prints, redrive and the local cloud's clients read).
pub mod outputs {
    /// The collect Function URL.
    pub const COLLECT_URL: &str = "CollectUrl";
    /// The query Function URL (API and dashboard).
    pub const QUERY_URL: &str = "QueryUrl";
    /// The events stream's name.
    pub const STREAM_NAME: &str = "StreamName";
    /// The metrics table's name.
    pub const METRICS_TABLE: &str = "MetricsTableName";
    /// The archive bucket's name.
    pub const ARCHIVE_BUCKET: &str = "ArchiveBucketName";
    /// ARN of the query token secret.
    pub const QUERY_TOKEN_SECRET_ARN: &str = "QueryTokenSecretArn";
    /// ARN of the collect keys secret.
    pub const COLLECT_KEYS_SECRET_ARN: &str = "CollectKeysSecretArn";
    /// With the edge: ARN of the origin secret (what CloudFront adds to every request it forwards to collect).
    pub const COLLECT_ORIGIN_SECRET_ARN: &str = "CollectOriginSecretArn";
    /// URL of the realtime lane's on-failure queue.
    pub const REALTIME_FAILURES_URL: &str = "RealtimeFailuresQueueUrl";
    /// URL of the deferred lane's on-failure queue.
    pub const DEFERRED_FAILURES_URL: &str = "DeferredFailuresQueueUrl";
    /// Host name of the counter cache's endpoint.
    pub const CACHE_ADDRESS: &str = "CacheEndpointAddress";
    /// Port of the counter cache's endpoint.
    pub const CACHE_PORT: &str = "CacheEndpointPort";
    /// The counter cache's name.
    pub const CACHE_NAME: &str = "CacheName";
    /// With the edge: the CloudFront URL in front of collect (rate limited per client address).
    pub const EDGE_URL: &str = "EdgeUrl";
}

/// The metrics table's key and TTL attributes (every item: `pk`, `sk`, optionally `expires_at`; the key
/// layouts of their values are `tally_domain`'s).
pub mod metrics_table {
    /// Partition key attribute (a string).
    pub const PARTITION_KEY: &str = "pk";
    /// Sort key attribute (a string).
    pub const SORT_KEY: &str = "sk";
    /// Time-to-live attribute: epoch seconds after which DynamoDB deletes the item.
    pub const TTL_ATTRIBUTE: &str = "expires_at";

    /// The key condition of a `Query` of one partition (`:pk`), the whole of it or the sort keys from `:lo` to
    /// `:hi`, in the attribute names above.
    pub fn key_condition(sort_between: bool) -> String {
        if sort_between {
            format!("{PARTITION_KEY} = :pk AND {SORT_KEY} BETWEEN :lo AND :hi")
        } else {
            format!("{PARTITION_KEY} = :pk")
        }
    }
}

/// Logical id of the counter cache (the local cloud finds the cache by it).
pub const COUNTER_CACHE: &str = "CounterCache";

/// The local cloud's cache server: how `cargo xtask ci` and the local cloud agree on its allocator.
pub mod cache_server {
    /// The environment variable naming the malloc library the server runs with (`LD_PRELOAD`); set but empty:
    /// the binary's own allocator.
    pub const ALLOCATOR_ENV: &str = "TALLY_VALKEY_ALLOCATOR";

    /// Where Debian's and Ubuntu's `libjemalloc2` (and Fedora's `jemalloc`) put the library.
    pub const JEMALLOC_PATHS: [&str; 3] = [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2",
    ];
}

/// Secrets the stack creates, found by their names' endings.
pub mod secrets {
    /// The collect keys secret's name ends with this (the local cloud's load test finds its key by it).
    pub const COLLECT_KEYS_SUFFIX: &str = "collect-keys";
    /// The collect origin secret's name ends with this (with the edge only; the local cloud's clients find it
    /// by it).
    pub const COLLECT_ORIGIN_SUFFIX: &str = "collect-origin";
    /// The key id the stack generates in the collect keys secret; add your own with `PutSecretValue`.
    pub const COLLECT_DEFAULT_KEY_ID: &str = "default";
}

/// What `cargo xtask` and the tests hand a nested `cargo`.
pub mod cargo {
    use std::process::Command;

    /// The variables Cargo sets for the program it runs (`cargo run`, `cargo test`): the package being run,
    /// not the build being asked for.
    const SET_FOR_THE_RUN: [&str; 6] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];

    /// Whether `name` is a variable Cargo set for the running program rather than one a user set for builds
    /// (`CARGO_TARGET_DIR`, `CARGO_HOME`, `CARGO_PROFILE_*`, … are kept).
    pub fn set_for_the_run(name: &str) -> bool {
        SET_FOR_THE_RUN.contains(&name) || name.starts_with("CARGO_PKG_")
    }

    /// `$CARGO` (else `cargo` on `PATH`) without the variables Cargo set for this program. Some build scripts
    /// (ring's among them) ask to be rerun when `CARGO_MANIFEST_DIR` or `CARGO_PKG_NAME` change; a nested
    /// `cargo build` that inherited `xtask`'s (or a test's) values rebuilt ring and everything above it (rustls,
    /// the SDK's HTTP client, redis, `tally-aws`, every function) whenever the previous build of the same
    /// target directory came from elsewhere: a plain `cargo build`, another test crate, another worktree.
    pub fn command() -> Command {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_for_the_run) {
                command.env_remove(name);
            }
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::env;

    #[test]
    fn every_function_variable_is_tally_prefixed_but_the_log_filter() {
        for name in [
            env::STREAM_NAME,
            env::METRICS_TABLE,
            env::ARCHIVE_BUCKET,
            env::QUERY_TOKEN_SECRET_ARN,
            env::QUERY_AUTH,
            env::SETTLED_UNSIGNED,
            env::COLLECT_KEYS_SECRET_ARN,
            env::COLLECT_ORIGIN_SECRET_ARN,
            env::CAMPAIGN_INDEX_DAYS,
            env::COMPACT_REALTIME_GRACE_SECS,
            env::COMPACT_SETTLED_GRACE_SECS,
            env::MIN_SHARDS,
            env::MAX_SHARDS,
            env::CACHE_ENDPOINT,
            env::CACHE_TLS,
            env::CACHE_AUTH,
            env::CACHE_USER,
            env::CACHE_NAME,
            env::DEDUP_WINDOW_SECS,
        ] {
            assert!(name.starts_with("TALLY_"), "{name}");
        }
        assert_eq!(env::RUST_LOG, "RUST_LOG");
    }

    #[test]
    fn key_conditions_name_the_table_attributes() {
        use super::metrics_table::key_condition;
        assert_eq!(key_condition(false), "pk = :pk");
        assert_eq!(key_condition(true), "pk = :pk AND sk BETWEEN :lo AND :hi");
    }

    /// The test runs under `cargo test`, which sets the package's variables: the nested command must not
    /// pass them on, and must pass on what a user set for builds.
    #[test]
    fn a_nested_cargo_gets_no_variable_of_the_running_package() {
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some()
                && std::env::var_os("CARGO_PKG_NAME").is_some()
        );
        let command = super::cargo::command();
        let removed: Vec<String> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
        ] {
            assert!(
                removed.iter().any(|r| r == name),
                "{name} passed on: {removed:?}"
            );
        }
        for kept in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_DEV_OPT_LEVEL",
            "CARGO",
        ] {
            assert!(!super::cargo::set_for_the_run(kept), "{kept}");
        }
    }
}
