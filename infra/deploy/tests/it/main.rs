//! Integration tests of tally-deploy: the deploy workflow against `moto_server` on 127.0.0.1 (one server per
//! test, started and stopped by it), and the shipped CI workflows.
//!
//! The stack deployed here is the real pipeline synthesized by `tally-pipeline`, with one legitimate option
//! chosen for what moto can hold: the critical lane reads the shared iterator
//! ([`CriticalLane::SharedIterator`]) instead of an enhanced fan-out consumer, which moto skips (and a mapping
//! on a consumer ARN fails there). Function zips are small placeholder zips made here rather than a release
//! build: `cargo xtask build` is tested on its own, and what matters to the deploy is that the bytes, and so
//! the content-hash keys, change when a function changes.
//!
//! Two parts of the real template are substituted because moto 5.2 cannot hold them (see
//! `support::template`, which says exactly what and why): the ElastiCache resources (no CloudFormation
//! support: references become the values CloudFormation would give), and the route tables with the gateway
//! endpoints on them (moto never deletes a route table with its stack). The VPC, subnets, security groups,
//! the Secrets Manager interface endpoint and the functions' `VpcConfig` are deployed as synthesized.
//!
//! The metrics table is deployed as synthesized, on provisioned capacity (the default `table_billing`), and
//! nothing about it is substituted: moto 5.2.1 creates the table with its `ProvisionedThroughput` (checked in
//! `lifecycle`), but has no CloudFormation support for `AWS::ApplicationAutoScaling::ScalableTarget` and
//! `ScalingPolicy`, which it skips (phantom rows with an empty logical id, as for the other skipped types);
//! nothing refers to them with `Fn::GetAtt` (the policy's `Ref` to its target is skipped with it), so the
//! stack completes and deletes. Their shape is covered by the template tests, cfn-lint and checkov
//! (`infra/pipeline/tests`), and the local cloud accepts them as inert.

mod support;

mod bootstrap;
mod bootstrap_lint;
mod bootstrap_policy;
mod failing;
mod lifecycle;
mod prune;
mod recorded;
mod retain;
mod workflows;
