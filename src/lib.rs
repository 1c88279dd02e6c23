//! aws-auth-operator: declarative, validated management of the EKS `kube-system/aws-auth`
//! ConfigMap through `IamIdentityMapping` resources.
//!
//! The core (`arn`, `awsauth`, `validate`, `plan`, `status`, `store::{revisions, rollback}`,
//! `accessentries::{translate, sync}`, `principals::{sso, verify}`) is pure: no I/O,
//! exhaustively tested. The CLI, the controller and the access-entry and principal loops are thin
//! shells around [`plan::plan`]; `store::writer` is the one writer of aws-auth and its history,
//! and `loops` holds what the access-entry and principal loops share (their start, their
//! schedule, their board). ARCHITECTURE.md at the top of the repository maps the modules, the
//! loops and where each invariant is kept.

pub mod accessentries;
pub mod api;
pub mod arn;
pub mod awsauth;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod import;
pub mod lint;
pub mod loops;
pub mod manifest;
pub mod plan;
pub mod principals;
pub mod server;
pub mod status;
pub mod store;
pub mod testserver;
pub mod validate;
