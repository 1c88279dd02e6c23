//! Operator settings that shape the plan: protected principals, the group and username policy,
//! drift and recovery behaviour, size limits.

use std::collections::BTreeSet;

use regex::Regex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::accessentries::translate::{
    GROUP_BOOTSTRAPPERS, GROUP_KUBE_PROXY_WINDOWS, GROUP_NODE_PROXIER, GROUP_NODES, NODE_USERNAME,
    SESSION_NODE_USERNAME,
};
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
    /// When non-empty, every username must fully match one of these.
    pub allowed_usernames: Vec<Regex>,
    /// No username may fully match any of these.
    pub denied_usernames: Vec<Regex>,
    /// Reserved usernames (see `RESERVED_USERNAME_PREFIXES`) that fully match one of these are
    /// allowed after all.
    pub allowed_reserved_usernames: Vec<Regex>,
    /// Remove the entry of a mapping that violates the group (or username) policy. Off by
    /// default: a policy change must never lock people out silently, so the last rendered entry
    /// stays and the mapping is Stalled until someone fixes it.
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
            allowed_usernames: Vec::new(),
            denied_usernames: Vec::new(),
            allowed_reserved_usernames: Vec::new(),
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

    pub fn with_username_policy(
        mut self,
        allowed: &[String],
        denied: &[String],
        allowed_reserved: &[String],
    ) -> Result<Self, SettingsError> {
        self.allowed_usernames = compile_all("allowed-usernames", allowed)?;
        self.denied_usernames = compile_all("denied-usernames", denied)?;
        self.allowed_reserved_usernames =
            compile_all("allowed-reserved-usernames", allowed_reserved)?;
        Ok(self)
    }

    /// The policy's verdict on a mapping, the one rule set for aws-auth and EKS access entries:
    /// a protected principal first, then the first group the group policy forbids, then the
    /// first username the username policy forbids. `principal` is the mapping's aws-auth key
    /// and principal when known (a spec without a readable ARN has none, and its groups and
    /// usernames are still checked). `usernames` are the names the mapping grants (aws-auth's,
    /// and an access entry's own); `groups` all the groups it grants, which also decide whether
    /// a node username is a node mapping. None: the policy allows it.
    pub fn refusal<'g, 'u>(
        &self,
        principal: Option<(&PrincipalKey, &str)>,
        usernames: impl IntoIterator<Item = &'u str>,
        groups: impl IntoIterator<Item = &'g String>,
    ) -> Option<PolicyRefusal> {
        if let Some((key, principal)) = principal
            && self.protected.contains(key)
        {
            return Some(PolicyRefusal::Protected {
                principal: principal.to_string(),
            });
        }
        // The first group the policy forbids; and whether all are node groups.
        let mut node_groups_only = true;
        for group in groups {
            if let Some(rule) = self.group_rule(group) {
                return Some(PolicyRefusal::Forbidden {
                    subject: PolicySubject::Group(group.clone()),
                    rule,
                });
            }
            node_groups_only &= NODE_GROUPS.contains(&group.as_str());
        }
        usernames.into_iter().find_map(|username| {
            self.forbidden_username(username, node_groups_only)
                .map(|rule| PolicyRefusal::Forbidden {
                    subject: PolicySubject::Username(username.to_string()),
                    rule,
                })
        })
    }

    /// Why the policy forbids `username`, if it does: a reserved name (unless allowed by
    /// `--allowed-reserved-usernames`), then `--denied-usernames`, then `--allowed-usernames`.
    fn forbidden_username(&self, username: &str, node_groups_only: bool) -> Option<String> {
        let exempt = || {
            self.allowed_reserved_usernames
                .iter()
                .any(|r| r.is_match(username))
        };
        // EKS's node mappings: the node identity with the node groups and nothing else.
        let node = node_groups_only && NODE_USERNAMES.contains(&username);
        if !node
            && let Some(reserved) = reserved_prefix(username)
            && !exempt()
        {
            return Some(reserved.rule());
        }
        if let Some(rule) = self.denied_usernames.iter().find(|r| r.is_match(username)) {
            return Some(format!("matches --denied-usernames `{}`", unanchor(rule)));
        }
        if !self.allowed_usernames.is_empty()
            && !self.allowed_usernames.iter().any(|r| r.is_match(username))
        {
            let rules: Vec<_> = self
                .allowed_usernames
                .iter()
                .map(|r| format!("`{}`", unanchor(r)))
                .collect();
            return Some(format!(
                "matches none of --allowed-usernames {}",
                rules.join(", ")
            ));
        }
        None
    }

    /// The rule of the group policy that forbids `group`, if any.
    fn group_rule(&self, group: &str) -> Option<String> {
        if let Some(rule) = self.denied_groups.iter().find(|r| r.is_match(group)) {
            return Some(format!("matches --denied-groups `{}`", unanchor(rule)));
        }
        if !self.allowed_groups.is_empty() && !self.allowed_groups.iter().any(|r| r.is_match(group))
        {
            let rules: Vec<_> = self
                .allowed_groups
                .iter()
                .map(|r| format!("`{}`", unanchor(r)))
                .collect();
            return Some(format!(
                "matches none of --allowed-groups {}",
                rules.join(", ")
            ));
        }
        None
    }
}

/// Username prefixes of Kubernetes and EKS identities: RBAC binds users as well as groups, so a
/// mapping with such a username (`system:kube-controller-manager`, a ServiceAccount's
/// `system:serviceaccount:NS:NAME`, `eks:...`) would grant that identity's rights. The list is
/// the one EKS refuses for access entries' usernames ("The username can't start with system:,
/// eks:, aws:, amazon:, or iam:",
/// <https://docs.aws.amazon.com/eks/latest/userguide/set-custom-username.html>).
pub const RESERVED_USERNAME_PREFIXES: [&str; 5] = ["system:", "eks:", "aws:", "amazon:", "iam:"];

/// The usernames aws-auth gives EC2 nodes, and Fargate pods and hybrid nodes.
const NODE_USERNAMES: [&str; 2] = [NODE_USERNAME, SESSION_NODE_USERNAME];

/// The groups of EKS's node mappings (EC2 Linux and Windows nodes, Fargate, hybrid nodes).
const NODE_GROUPS: [&str; 4] = [
    GROUP_BOOTSTRAPPERS,
    GROUP_NODES,
    GROUP_NODE_PROXIER,
    GROUP_KUBE_PROXY_WINDOWS,
];

/// A reserved prefix a username starts with, or may start with once the authenticator fills
/// in its template variables.
struct Reserved {
    prefix: &'static str,
    /// The username starts with it only after substitution (e.g. `{{SessionName}}:admin`
    /// with session name `system`).
    through_template: bool,
}

impl Reserved {
    fn rule(&self) -> String {
        let what = "reserved for Kubernetes and EKS identities, which RBAC binds (allow a name on purpose with --allowed-reserved-usernames)";
        if self.through_template {
            format!(
                "can start with `{}` once the authenticator fills in its template variables, a prefix {what}",
                self.prefix
            )
        } else {
            format!("starts with `{}`, a prefix {what}", self.prefix)
        }
    }
}

/// The reserved prefix `username` starts with, or can start with after template substitution.
fn reserved_prefix(username: &str) -> Option<Reserved> {
    if let Some(prefix) = RESERVED_USERNAME_PREFIXES
        .iter()
        .find(|p| username.starts_with(**p))
    {
        return Some(Reserved {
            prefix,
            through_template: false,
        });
    }
    if !username.contains("{{") {
        return None;
    }
    let tokens = template_tokens(username);
    RESERVED_USERNAME_PREFIXES
        .iter()
        .find(|p| can_start_with(&tokens, p))
        .map(|prefix| Reserved {
            prefix,
            through_template: true,
        })
}

/// A piece of a username: a literal character, or a template variable, which the
/// authenticator replaces by any string of the characters it may hold.
#[derive(Debug, Clone, Copy)]
enum Token {
    Char(char),
    Variable(fn(char) -> bool),
}

/// The characters each template variable may expand to. Role session names are
/// `[\w+=,.@-]*` (`{{SessionName}}` turns `@` into `-`); account ids are digits; access key
/// ids upper-case letters and digits; EC2 private DNS names lower-case letters, digits, `.`
/// and `-`. None holds a `:`, which every reserved prefix ends with. An unknown variable is
/// left as written by the authenticator.
fn variable_chars(name: &str) -> Option<fn(char) -> bool> {
    fn session(c: char) -> bool {
        c.is_alphanumeric() || "_+=,.-".contains(c)
    }
    fn session_raw(c: char) -> bool {
        session(c) || c == '@'
    }
    fn account(c: char) -> bool {
        c.is_ascii_digit()
    }
    fn access_key(c: char) -> bool {
        c.is_ascii_uppercase() || c.is_ascii_digit()
    }
    fn dns(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
    }
    match name {
        "SessionName" => Some(session),
        "SessionNameRaw" => Some(session_raw),
        "AccountID" => Some(account),
        "AccessKeyID" => Some(access_key),
        "EC2PrivateDNSName" => Some(dns),
        _ => None,
    }
}

fn template_tokens(username: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = username;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{")
            && let Some((name, tail)) = after.split_once("}}")
            && let Some(chars) = variable_chars(name)
        {
            tokens.push(Token::Variable(chars));
            rest = tail;
            continue;
        }
        tokens.push(Token::Char(c));
        rest = &rest[c.len_utf8()..];
    }
    tokens
}

/// Whether some substitution of the variables makes the username start with `prefix`: the
/// set of prefix positions reachable after each token (a variable may also expand to "").
fn can_start_with(tokens: &[Token], prefix: &str) -> bool {
    let prefix: Vec<char> = prefix.chars().collect();
    let done = prefix.len();
    let mut reachable = vec![false; done + 1];
    reachable[0] = true;
    for token in tokens {
        if reachable[done] {
            return true;
        }
        let mut next = vec![false; done + 1];
        for at in (0..done).filter(|&at| reachable[at]) {
            match token {
                Token::Char(c) => {
                    if prefix[at] == *c {
                        next[at + 1] = true;
                    }
                }
                Token::Variable(chars) => {
                    next[at] = true;
                    let mut end = at;
                    while end < done && chars(prefix[end]) {
                        end += 1;
                        next[end] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[done]
}

/// What a policy rule refuses: a group or a username of the mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySubject {
    Group(String),
    Username(String),
}

impl std::fmt::Display for PolicySubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySubject::Group(group) => write!(f, "group `{group}`"),
            PolicySubject::Username(username) => write!(f, "username `{username}`"),
        }
    }
}

/// Why the operator's policy refuses a mapping (`--protected-arn`, the group policy, the
/// username policy): in aws-auth it is `Outcome::Protected` or `Outcome::PolicyViolation`, and
/// it gets no EKS access entry either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PolicyRefusal {
    /// The principal is protected by `--protected-arn`: the operator never manages it.
    Protected { principal: String },
    /// A group or username is outside the policy; `rule` says which rule forbids it.
    Forbidden {
        subject: PolicySubject,
        rule: String,
    },
}

impl PolicyRefusal {
    /// The condition reason, the same as aws-auth's.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyRefusal::Protected { .. } => "ProtectedPrincipal",
            PolicyRefusal::Forbidden { .. } => "PolicyViolation",
        }
    }
}

impl std::fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRefusal::Protected { principal } => {
                write!(f, "{principal} is a protected principal (--protected-arn)")
            }
            PolicyRefusal::Forbidden { subject, rule } => {
                write!(f, "{subject} is not allowed: it {rule}")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(settings: &Settings, username: &str, groups: &[&str]) -> Option<String> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        settings
            .refusal(None, [username], &groups)
            .map(|r| r.to_string())
    }

    #[test]
    fn reserved_usernames_are_refused_by_default() {
        let settings = Settings::default();
        for username in [
            "system:kube-controller-manager",
            "system:serviceaccount:aws-auth-operator:aao-aws-auth-operator",
            "system:admin",
            "system:{{SessionName}}",
            "eks:addon-manager",
            "aws:x",
            "amazon:x",
            "iam:x",
        ] {
            let refused = refusal(&settings, username, &["team-a"])
                .unwrap_or_else(|| panic!("{username} was allowed"));
            assert!(
                refused.starts_with(&format!(
                    "username `{username}` is not allowed: it starts with `"
                )),
                "{refused}"
            );
        }
        for username in [
            "alice",
            "admin:{{SessionName}}",
            "{{SessionName}}",
            "arn:aws:iam::111122223333:role/x",
            "System:masters",
            "team:system:x",
        ] {
            assert_eq!(
                refusal(&settings, username, &["team-a"]),
                None,
                "{username}"
            );
        }
    }

    #[test]
    fn a_template_that_can_expand_to_a_reserved_prefix_is_refused() {
        let settings = Settings::default();
        // A caller picks its session name: `system` makes `system:kube-scheduler`.
        for username in [
            "{{SessionName}}:kube-scheduler",
            "{{SessionNameRaw}}:x",
            "sys{{SessionName}}:x",
            "{{SessionName}}{{SessionName}}:x",
            "{{SessionName}}eks:x",
            "{{EC2PrivateDNSName}}:x",
        ] {
            let refused = refusal(&settings, username, &[])
                .unwrap_or_else(|| panic!("{username} was allowed"));
            assert!(
                refused.contains("once the authenticator fills in"),
                "{refused}"
            );
        }
        // Account ids are digits, access key ids upper case: neither spells a reserved prefix.
        for username in [
            "{{AccountID}}:x",
            "{{AccessKeyID}}:x",
            "x{{SessionName}}:y",
            "{{SessionName}}-system:x",
            "{{Unknown}}:x",
        ] {
            assert_eq!(refusal(&settings, username, &[]), None, "{username}");
        }
    }

    #[test]
    fn node_mappings_keep_the_node_groups_only() {
        let settings = Settings::default();
        let node = "system:node:{{EC2PrivateDNSName}}";
        let fargate = "system:node:{{SessionName}}";
        assert_eq!(
            refusal(&settings, node, &["system:bootstrappers", "system:nodes"]),
            None
        );
        assert_eq!(
            refusal(
                &settings,
                node,
                &[
                    "system:bootstrappers",
                    "system:nodes",
                    "eks:kube-proxy-windows"
                ]
            ),
            None
        );
        assert_eq!(
            refusal(
                &settings,
                fargate,
                &[
                    "system:bootstrappers",
                    "system:nodes",
                    "system:node-proxier"
                ]
            ),
            None
        );
        // Any other group makes the node identity a privilege grant like any other.
        let refused = refusal(&settings, node, &["system:nodes", "team-a"]).unwrap();
        assert!(refused.starts_with("username `system:node:"), "{refused}");
        assert!(refusal(&settings, "system:node:ip-10-0-0-1", &["system:nodes"]).is_some());
        // The group policy still applies to the node groups.
        let strict = Settings::default()
            .with_group_policy(&[], &["system:.*".into()])
            .unwrap();
        let refused = refusal(&strict, node, &["system:nodes"]).unwrap();
        assert!(refused.starts_with("group `system:nodes`"), "{refused}");
    }

    #[test]
    fn flags_allow_or_deny_more_usernames() {
        let settings = Settings::default()
            .with_username_policy(
                &["team-.*".into(), "system:kube-scheduler".into()],
                &["team-root".into()],
                &["system:kube-scheduler".into()],
            )
            .unwrap();
        assert_eq!(refusal(&settings, "team-a", &[]), None);
        assert_eq!(refusal(&settings, "system:kube-scheduler", &[]), None);
        let denied = refusal(&settings, "team-root", &[]).unwrap();
        assert!(
            denied.ends_with("matches --denied-usernames `team-root`"),
            "{denied}"
        );
        let outside = refusal(&settings, "alice", &[]).unwrap();
        assert!(
            outside.ends_with(
                "matches none of --allowed-usernames `team-.*`, `system:kube-scheduler`"
            ),
            "{outside}"
        );
        // --allowed-usernames alone never lifts the reserved prefixes.
        let loose = Settings::default()
            .with_username_policy(&[".*".into()], &[], &[])
            .unwrap();
        assert!(refusal(&loose, "system:kube-controller-manager", &[]).is_some());
        // Patterns match the whole name.
        let partial = Settings::default()
            .with_username_policy(&[], &[], &["system:kube".into()])
            .unwrap();
        assert!(refusal(&partial, "system:kube-scheduler", &[]).is_some());
        let error = Settings::default()
            .with_username_policy(&[], &["(".into()], &[])
            .unwrap_err();
        assert!(
            error.to_string().starts_with("--denied-usernames `(`"),
            "{error}"
        );
    }

    #[test]
    fn the_access_entry_username_is_checked_too() {
        let settings = Settings::default();
        let groups: Vec<String> = Vec::new();
        let refused = settings
            .refusal(None, ["alice", "system:masters-ish"], &groups)
            .unwrap();
        assert_eq!(refused.reason(), "PolicyViolation");
        assert!(
            refused
                .to_string()
                .starts_with("username `system:masters-ish`")
        );
    }
}
