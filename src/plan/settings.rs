//! Operator settings that shape the plan: protected principals, the group policy, drift and
//! recovery behaviour, size limits.

use std::collections::BTreeSet;

use regex::Regex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::arn::{IamArn, PrincipalKey, is_account_id};
use crate::awsauth::MAX_CONFIGMAP_DATA_BYTES;

use super::managed::MAX_MANAGED_ANNOTATION_BYTES;

/// What to do when a managed entry was edited by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Rewrite the entry from its mapping.
    #[default]
    Repair,
    /// Leave the hand edit in place and report it.
    Report,
}

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(
        "--protected-arn `{value}` is neither an IAM role/user ARN nor a 12-digit account id: {reason}"
    )]
    Protected { value: String, reason: String },
    #[error("--{flag} `{pattern}` is not a valid regular expression: {source}")]
    Regex {
        flag: &'static str,
        pattern: String,
        source: regex::Error,
    },
}

/// Operator settings that shape the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Principals never changed or removed (break-glass admins, node roles).
    pub protected: BTreeSet<PrincipalKey>,
    /// When non-empty, every group must fully match one of these.
    pub allowed_groups: Vec<Regex>,
    /// No group may fully match any of these.
    pub denied_groups: Vec<Regex>,
    /// Remove the entry of a mapping that violates the group policy. Off by default: a policy
    /// change must never lock people out silently, so the last rendered entry stays and the
    /// mapping is Stalled until someone fixes it.
    pub enforce_group_policy: bool,
    pub drift: DriftPolicy,
    /// Restore unmanaged entries of an unparseable key (or of a deleted aws-auth) from the last
    /// good revision.
    pub recover_malformed: bool,
    pub max_data_bytes: usize,
    pub max_annotation_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            protected: BTreeSet::new(),
            allowed_groups: Vec::new(),
            denied_groups: Vec::new(),
            enforce_group_policy: false,
            drift: DriftPolicy::Repair,
            recover_malformed: true,
            max_data_bytes: MAX_CONFIGMAP_DATA_BYTES,
            max_annotation_bytes: MAX_MANAGED_ANNOTATION_BYTES,
        }
    }
}

impl Settings {
    pub fn protect(&mut self, value: &str) -> Result<(), SettingsError> {
        let key = if is_account_id(value) {
            PrincipalKey::account(value)
        } else {
            IamArn::parse(value)
                .map_err(|e| SettingsError::Protected {
                    value: value.to_string(),
                    reason: e.to_string(),
                })?
                .principal_key()
        };
        self.protected.insert(key);
        Ok(())
    }

    pub fn with_group_policy(
        mut self,
        allowed: &[String],
        denied: &[String],
    ) -> Result<Self, SettingsError> {
        self.allowed_groups = compile_all("allowed-groups", allowed)?;
        self.denied_groups = compile_all("denied-groups", denied)?;
        Ok(self)
    }

    /// The first group the policy forbids, with the rule that forbids it.
    pub(super) fn forbidden_group<'g>(&self, groups: &'g [String]) -> Option<(&'g str, String)> {
        groups.iter().find_map(|group| {
            if let Some(rule) = self.denied_groups.iter().find(|r| r.is_match(group)) {
                return Some((
                    group.as_str(),
                    format!("matches --denied-groups `{}`", unanchor(rule)),
                ));
            }
            if !self.allowed_groups.is_empty()
                && !self.allowed_groups.iter().any(|r| r.is_match(group))
            {
                let rules: Vec<_> = self
                    .allowed_groups
                    .iter()
                    .map(|r| format!("`{}`", unanchor(r)))
                    .collect();
                return Some((
                    group.as_str(),
                    format!("matches none of --allowed-groups {}", rules.join(", ")),
                ));
            }
            None
        })
    }
}

fn compile_all(flag: &'static str, patterns: &[String]) -> Result<Vec<Regex>, SettingsError> {
    patterns
        .iter()
        .map(|p| {
            let error = |source| SettingsError::Regex {
                flag,
                pattern: p.clone(),
                source,
            };
            // Check the pattern as written first, so the error quotes the user's text.
            Regex::new(p).map_err(error)?;
            Regex::new(&format!("^(?:{p})$")).map_err(error)
        })
        .collect()
}

fn unanchor(rule: &Regex) -> &str {
    let s = rule.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}
