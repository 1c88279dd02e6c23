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

    /// The policy's verdict on a mapping, the one rule set for aws-auth and EKS access entries:
    /// a protected principal first, then the first group the group policy forbids. `principal`
    /// is the mapping's aws-auth key and principal when known (a spec without a readable ARN
    /// has none, and its groups are still checked). None: the policy allows it.
    pub fn refusal<'g>(
        &self,
        principal: Option<(&PrincipalKey, &str)>,
        groups: impl IntoIterator<Item = &'g String>,
    ) -> Option<PolicyRefusal> {
        if let Some((key, principal)) = principal
            && self.protected.contains(key)
        {
            return Some(PolicyRefusal::Protected {
                principal: principal.to_string(),
            });
        }
        self.forbidden_group(groups)
            .map(|(group, rule)| PolicyRefusal::Group { group, rule })
    }

    /// The first group the policy forbids, with the rule that forbids it.
    fn forbidden_group<'g>(
        &self,
        groups: impl IntoIterator<Item = &'g String>,
    ) -> Option<(String, String)> {
        groups.into_iter().find_map(|group| {
            if let Some(rule) = self.denied_groups.iter().find(|r| r.is_match(group)) {
                return Some((
                    group.clone(),
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
                    group.clone(),
                    format!("matches none of --allowed-groups {}", rules.join(", ")),
                ));
            }
            None
        })
    }
}

/// Why the operator's policy refuses a mapping (`--protected-arn`, `--allowed-groups`,
/// `--denied-groups`): in aws-auth it is `Outcome::Protected` or `Outcome::PolicyViolation`,
/// and it gets no EKS access entry either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PolicyRefusal {
    /// The principal is protected by `--protected-arn`: the operator never manages it.
    Protected { principal: String },
    /// `group` is outside the group policy; `rule` says which rule forbids it.
    Group { group: String, rule: String },
}

impl PolicyRefusal {
    /// The condition reason, the same as aws-auth's.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyRefusal::Protected { .. } => "ProtectedPrincipal",
            PolicyRefusal::Group { .. } => "PolicyViolation",
        }
    }
}

impl std::fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRefusal::Protected { principal } => {
                write!(f, "{principal} is a protected principal (--protected-arn)")
            }
            PolicyRefusal::Group { group, rule } => {
                write!(f, "group `{group}` is not allowed: it {rule}")
            }
        }
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
