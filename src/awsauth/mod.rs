//! The aws-auth ConfigMap format: entry types, parsing with the authenticator's semantics, and
//! rendering that the authenticator cannot misread.

mod parse;
mod render;
mod yaml11;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arn::PrincipalKey;

pub use parse::{
    Diagnostic, DiagnosticKind, ParsedAwsAuth, Severity, duplicate_diagnostics, parse_data,
    parse_section_entries,
};
pub use render::{is_sorted, render_data, render_section, sort_entries};

/// ConfigMap data of aws-auth (key -> YAML-in-a-string).
pub type ConfigMapData = BTreeMap<String, String>;

pub const CONFIGMAP_NAME: &str = "aws-auth";
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Kubernetes refuses a ConfigMap whose data exceeds 1 MiB.
pub const MAX_CONFIGMAP_DATA_BYTES: usize = 1024 * 1024;

/// The three keys the authenticator reads. Key names are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Section {
    #[serde(rename = "mapRoles")]
    MapRoles,
    #[serde(rename = "mapUsers")]
    MapUsers,
    #[serde(rename = "mapAccounts")]
    MapAccounts,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::MapRoles, Section::MapUsers, Section::MapAccounts];

    pub fn key(self) -> &'static str {
        match self {
            Section::MapRoles => "mapRoles",
            Section::MapUsers => "mapUsers",
            Section::MapAccounts => "mapAccounts",
        }
    }

    pub fn from_key(key: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The field holding the ARN in this section's entries.
    pub fn arn_field(self) -> &'static str {
        match self {
            Section::MapRoles => "rolearn",
            Section::MapUsers => "userarn",
            Section::MapAccounts => "",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One entry of mapRoles or mapUsers, as the authenticator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArnMapping {
    /// `rolearn` for mapRoles, `userarn` for mapUsers.
    pub arn: String,
    pub username: String,
    pub groups: Vec<String>,
    /// Fields the authenticator's struct does not declare (or newer authenticators read, such as
    /// `sso` or `userid`), kept as JSON so that preserving an entry never loses them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Every entry of an aws-auth ConfigMap, by section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AwsAuthEntries {
    pub roles: Vec<ArnMapping>,
    pub users: Vec<ArnMapping>,
    pub accounts: Vec<String>,
}

impl AwsAuthEntries {
    pub fn len(&self) -> usize {
        self.roles.len() + self.users.len() + self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A single entry with its section: what a mapping renders to and what status reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    Role(ArnMapping),
    User(ArnMapping),
    Account(String),
}

impl Entry {
    pub fn section(&self) -> Section {
        EntryRef::from(self).section()
    }

    pub fn key(&self) -> PrincipalKey {
        EntryRef::from(self).key()
    }

    /// The ARN or account id, as written in aws-auth.
    pub fn principal(&self) -> &str {
        match self {
            Entry::Role(m) | Entry::User(m) => &m.arn,
            Entry::Account(a) => a,
        }
    }

    pub fn username(&self) -> Option<&str> {
        match self {
            Entry::Role(m) | Entry::User(m) => Some(&m.username),
            Entry::Account(_) => None,
        }
    }

    pub fn groups(&self) -> &[String] {
        match self {
            Entry::Role(m) | Entry::User(m) => &m.groups,
            Entry::Account(_) => &[],
        }
    }
}

/// Entries as messages, events and logs name them: `principal (section)`, comma-separated, an
/// empty principal (mapAccounts `- ""`) shown as `""` so that it is still visible.
pub fn describe_entries(entries: &[Entry]) -> String {
    describe_at_most(entries, entries.len())
}

/// [`describe_entries`] naming at most `limit` entries, then "and N more": an event's note is
/// limited to 1 KiB by the API server.
pub fn describe_at_most(entries: &[Entry], limit: usize) -> String {
    let shown: Vec<String> = entries
        .iter()
        .take(limit)
        .map(|e| match e.principal() {
            "" => format!("\"\" ({})", e.section()),
            principal => format!("{principal} ({})", e.section()),
        })
        .collect();
    let mut text = if shown.is_empty() {
        "no entries".to_string()
    } else {
        shown.join(", ")
    };
    if entries.len() > limit {
        text.push_str(&format!(" and {} more", entries.len() - limit));
    }
    text
}

impl AwsAuthEntries {
    pub fn push(&mut self, entry: Entry) {
        match entry {
            Entry::Role(m) => self.roles.push(m),
            Entry::User(m) => self.users.push(m),
            Entry::Account(a) => self.accounts.push(a),
        }
    }

    /// Every entry in section order, with its index inside its section.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Entry)> + '_ {
        let roles = self
            .roles
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (i, Entry::Role(m)));
        let users = self
            .users
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (i, Entry::User(m)));
        let accounts = self
            .accounts
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, a)| (i, Entry::Account(a)));
        roles.chain(users).chain(accounts)
    }
}

/// An entry of `AwsAuthEntries`, borrowed instead of copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef<'a> {
    Role(&'a ArnMapping),
    User(&'a ArnMapping),
    Account(&'a str),
}

impl<'a> From<&'a Entry> for EntryRef<'a> {
    fn from(entry: &'a Entry) -> EntryRef<'a> {
        match entry {
            Entry::Role(m) => EntryRef::Role(m),
            Entry::User(m) => EntryRef::User(m),
            Entry::Account(a) => EntryRef::Account(a),
        }
    }
}

impl EntryRef<'_> {
    pub fn section(self) -> Section {
        match self {
            EntryRef::Role(_) => Section::MapRoles,
            EntryRef::User(_) => Section::MapUsers,
            EntryRef::Account(_) => Section::MapAccounts,
        }
    }

    pub fn to_entry(self) -> Entry {
        match self {
            EntryRef::Role(m) => Entry::Role(m.clone()),
            EntryRef::User(m) => Entry::User(m.clone()),
            EntryRef::Account(a) => Entry::Account(a.to_string()),
        }
    }

    pub fn key(self) -> PrincipalKey {
        match self {
            EntryRef::Role(m) => PrincipalKey::role(&m.arn),
            EntryRef::User(m) => PrincipalKey::user(&m.arn),
            EntryRef::Account(a) => PrincipalKey::account(a),
        }
    }
}

impl PartialEq<Entry> for EntryRef<'_> {
    fn eq(&self, other: &Entry) -> bool {
        match (self, other) {
            (EntryRef::Role(a), Entry::Role(b)) | (EntryRef::User(a), Entry::User(b)) => *a == b,
            (EntryRef::Account(a), Entry::Account(b)) => a == b,
            _ => false,
        }
    }
}

impl AwsAuthEntries {
    /// Every entry in section order, borrowed.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        let roles = self.roles.iter().map(EntryRef::Role);
        let users = self.users.iter().map(EntryRef::User);
        let accounts = self.accounts.iter().map(|a| EntryRef::Account(a));
        roles.chain(users).chain(accounts)
    }
}

/// Unicode whitespace (`char::is_whitespace`) anywhere in `text`; ASCII text, the usual case,
/// is checked a byte at a time.
pub(crate) fn has_whitespace(text: &str) -> bool {
    if text.is_ascii() {
        text.as_bytes()
            .iter()
            .fold(false, |seen, &b| seen | matches!(b, b' ' | b'\t'..=b'\r'))
    } else {
        text.chars().any(char::is_whitespace)
    }
}

/// Total size of ConfigMap data as the API server counts it (keys + values).
pub fn data_size(data: &ConfigMapData) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::{ArnMapping, Entry, describe_at_most, describe_entries, has_whitespace};

    #[test]
    fn entries_are_described_with_an_empty_principal_visible_and_a_limit() {
        let empty = Entry::Account(String::new());
        let account = Entry::Account("111122223333".into());
        let role = Entry::Role(ArnMapping {
            arn: "arn:aws:iam::111122223333:role/admin".into(),
            username: "admin".into(),
            groups: vec!["view".into()],
            extra: Default::default(),
        });
        let entries = [empty, account, role];
        assert_eq!(
            describe_at_most(&entries, 2),
            "\"\" (mapAccounts), 111122223333 (mapAccounts) and 1 more"
        );
        assert_eq!(
            describe_entries(&entries),
            "\"\" (mapAccounts), 111122223333 (mapAccounts), arn:aws:iam::111122223333:role/admin (mapRoles)"
        );
        assert_eq!(describe_entries(&[]), "no entries");
    }

    #[test]
    fn whitespace_check_is_char_is_whitespace() {
        let samples = (0u32..0x3100).filter_map(char::from_u32);
        for c in samples {
            for text in [format!("{c}"), format!("ab{c}cd"), format!("é{c}")] {
                assert_eq!(
                    has_whitespace(&text),
                    text.chars().any(char::is_whitespace),
                    "{text:?}"
                );
            }
        }
    }
}
