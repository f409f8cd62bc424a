//! Item grants on a [`Table`] by action, for roles that must hold exactly what their code calls (the
//! pipeline's least-privilege test compares them with the calls): [`Table::grant_items`], the only way to
//! grant on a table. [`ItemAction`] lists only the actions tally's functions call: no `Scan`, `DeleteItem`
//! or batch actions exist to be granted (add one here with the code that calls it).

use crate::dynamodb::Table;
use crate::iam::{grant, Grantee};

/// An item-level DynamoDB action (the SDK operation of the same name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemAction {
    GetItem,
    Query,
    /// Reads of up to 100 items by key in one request (the dashboard's page of campaigns).
    BatchGetItem,
    PutItem,
    UpdateItem,
}

impl ItemAction {
    /// Every action that can be granted.
    pub const ALL: [ItemAction; 5] = [
        ItemAction::GetItem,
        ItemAction::Query,
        ItemAction::BatchGetItem,
        ItemAction::PutItem,
        ItemAction::UpdateItem,
    ];

    /// The IAM action, `dynamodb:<Operation>`.
    pub fn iam(self) -> &'static str {
        match self {
            ItemAction::GetItem => "dynamodb:GetItem",
            ItemAction::Query => "dynamodb:Query",
            ItemAction::BatchGetItem => "dynamodb:BatchGetItem",
            ItemAction::PutItem => "dynamodb:PutItem",
            ItemAction::UpdateItem => "dynamodb:UpdateItem",
        }
    }
}

impl Table {
    /// `actions` (each once, in a stable order) on this table's items and nothing else.
    pub fn grant_items(&self, grantee: &dyn Grantee, actions: &[ItemAction]) {
        let mut actions = actions.to_vec();
        actions.sort_unstable();
        actions.dedup();
        let iam: Vec<&'static str> = actions.into_iter().map(ItemAction::iam).collect();
        grant(grantee, self.node(), &iam, &[self.arn()]);
    }
}
