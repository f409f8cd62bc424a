//! AWS's billing rules as pure functions of plain values: what one request is charged, in AWS's own units.
//!
//! The local cloud's meter (`tally_localcloud_aws::meter`) applies them to the requests it serves; `cargo xtask plan`
//! applies them to the requests its model predicts. Keeping the rules here, once, is what lets `plan --check`
//! compare the two. Prices (dollars per unit) are not here: they live in `xtask/prices/`.

pub mod dynamodb;
pub mod elasticache;
pub mod kinesis;
pub mod lambda;
pub mod s3;
