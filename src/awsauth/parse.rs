//! aws-auth data -> the entries the authenticator would use, plus a diagnostic for every problem.
//!
//! The authenticator reads each of mapRoles/mapUsers/mapAccounts with go-yaml v2 (YAML 1.1),
//! converts it to JSON and decodes that with Go's encoding/json. The consequences modelled here:
//! - a YAML error in a key drops every entry of that key (the other keys still apply);
//! - a value of the wrong JSON type keeps the entry but leaves the field blank;
//! - JSON field names match case-insensitively, and of several matching keys the one that sorts
//!   last wins (Go marshals the intermediate map with sorted keys);
//! - roles are keyed by the lowercased ARN and users by the exact ARN; the last duplicate wins.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};
use std::fmt;

use serde::Serialize;

use super::yaml11::{Node, Pos, ScalarType, parse_document};
use super::{ArnMapping, AwsAuthEntries, ConfigMapData, Section, has_whitespace};
use crate::arn::{IamArnRef, PrincipalKind, find_placeholder, is_account_id, template_variables};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Machine-readable diagnostic reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DiagnosticKind {
    /// A key the authenticator does not read because of its casing (`maproles`).
    MisCasedKey,
    /// Any other key: ignored by the authenticator.
    UnknownKey,
    /// The key is not valid YAML: every entry of it is dropped.
    YamlError,
    /// The key parses but is not a list: every entry of it is dropped.
    NotAList,
    /// More than one YAML document in a key: all but the first are ignored.
    ExtraDocument,
    /// A list item that is not a mapping (or, in mapAccounts, not a scalar).
    EntryWrongType,
    /// An unquoted value that YAML 1.1 reads as a non-string: the field is blanked.
    Coerced,
    /// A field of the wrong shape (a list where a string belongs, ...): the field is blanked.
    FieldWrongType,
    /// A field the authenticator ignores.
    UnknownField,
    /// `userarn` in mapRoles or `rolearn` in mapUsers.
    WrongArnField,
    /// A field name that only matches case-insensitively (`roleArn`).
    FieldNameCase,
    /// The same field given twice in one entry: one of them is ignored.
    DuplicateField,
    MissingArn,
    InvalidArn,
    PlaceholderInArn,
    /// A role ARN in mapUsers or a user ARN in mapRoles: never matches.
    WrongSection,
    /// A role ARN with a path: the authenticator compares path-stripped ARNs, so it never matches.
    RoleArnHasPath,
    MissingUsername,
    UnknownTemplateVariable,
    /// A template variable that cannot apply to this principal kind.
    TemplateNotApplicable,
    EmptyGroup,
    GroupHasWhitespace,
    InvalidAccountId,
    /// The same principal twice: only the last entry is used.
    DuplicatePrincipal,
    /// Two user entries whose ARNs differ only by case: which one matches is random.
    AmbiguousUser,
}

impl DiagnosticKind {
    pub fn reason(self) -> &'static str {
        match self {
            DiagnosticKind::MisCasedKey => "MisCasedKey",
            DiagnosticKind::UnknownKey => "UnknownKey",
            DiagnosticKind::YamlError => "YamlError",
            DiagnosticKind::NotAList => "NotAList",
            DiagnosticKind::ExtraDocument => "ExtraDocument",
            DiagnosticKind::EntryWrongType => "EntryWrongType",
            DiagnosticKind::Coerced => "Yaml11Coercion",
            DiagnosticKind::FieldWrongType => "FieldWrongType",
            DiagnosticKind::UnknownField => "UnknownField",
            DiagnosticKind::WrongArnField => "WrongArnField",
            DiagnosticKind::FieldNameCase => "FieldNameCase",
            DiagnosticKind::DuplicateField => "DuplicateField",
            DiagnosticKind::MissingArn => "MissingArn",
            DiagnosticKind::InvalidArn => "InvalidArn",
            DiagnosticKind::PlaceholderInArn => "PlaceholderInArn",
            DiagnosticKind::WrongSection => "WrongSection",
            DiagnosticKind::RoleArnHasPath => "RoleArnHasPath",
            DiagnosticKind::MissingUsername => "MissingUsername",
            DiagnosticKind::UnknownTemplateVariable => "UnknownTemplateVariable",
            DiagnosticKind::TemplateNotApplicable => "TemplateNotApplicable",
            DiagnosticKind::EmptyGroup => "EmptyGroup",
            DiagnosticKind::GroupHasWhitespace => "GroupHasWhitespace",
            DiagnosticKind::InvalidAccountId => "InvalidAccountId",
            DiagnosticKind::DuplicatePrincipal => "DuplicatePrincipal",
            DiagnosticKind::AmbiguousUser => "AmbiguousUser",
        }
    }
}

/// One problem the authenticator would hit, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(serialize_with = "serialize_reason")]
    pub reason: DiagnosticKind,
    /// The ConfigMap data key.
    pub key: String,
    /// Index of the entry inside its key's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<usize>,
    /// 1-based line and column inside the key's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

fn serialize_reason<S: serde::Serializer>(kind: &DiagnosticKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.reason())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(entry) = self.entry {
            write!(f, "[{entry}]")?;
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            // Positions count inside the key's own text, as the authenticator parses it.
            write!(f, " ({} line {line}, column {column})", self.key)?;
        }
        write!(
            f,
            ": {} {}: {}",
            self.severity,
            self.reason.reason(),
            self.message
        )
    }
}

/// What the authenticator would make of an aws-auth ConfigMap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedAwsAuth {
    /// The entries in the order the authenticator reads them (duplicates and blanked fields
    /// included: this is what it uses).
    pub entries: AwsAuthEntries,
    pub diagnostics: Vec<Diagnostic>,
    /// Sections whose text the authenticator cannot use at all (YAML error or not a list).
    pub malformed: BTreeSet<Section>,
}

impl ParsedAwsAuth {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Parses ConfigMap data with the authenticator's semantics.
pub fn parse_data(data: &ConfigMapData) -> ParsedAwsAuth {
    parse_data_with(data, Diagnose::Yes)
}

/// What the authenticator would use of one key's text, without the diagnostics: its entries,
/// and whether it cannot use the key at all. For checking what is about to be written, where
/// only the meaning counts.
pub fn parse_section_entries(section: Section, text: &str) -> (AwsAuthEntries, bool) {
    let mut parsed = ParsedAwsAuth::default();
    SectionParser::new(section, &mut parsed, Diagnose::No).parse(text);
    (parsed.entries, parsed.malformed.contains(&section))
}

fn parse_data_with(data: &ConfigMapData, diagnose: Diagnose) -> ParsedAwsAuth {
    let mut parsed = ParsedAwsAuth::default();
    for (key, text) in data {
        match Section::from_key(key) {
            Some(section) => SectionParser::new(section, &mut parsed, diagnose).parse(text),
            None => parsed.diagnostics.push(unknown_key(key)),
        }
    }
    if diagnose == Diagnose::Yes {
        let duplicates = duplicate_diagnostics(&parsed.entries);
        parsed.diagnostics.extend(duplicates);
    }
    parsed
}

/// Whether to check every entry for problems (`No` still reads it exactly the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diagnose {
    Yes,
    No,
}

fn unknown_key(key: &str) -> Diagnostic {
    let near = Section::ALL
        .into_iter()
        .find(|s| s.key().eq_ignore_ascii_case(key.trim()));
    match near {
        Some(section) => Diagnostic {
            severity: Severity::Error,
            reason: DiagnosticKind::MisCasedKey,
            key: key.to_string(),
            entry: None,
            line: None,
            column: None,
            message: format!(
                "the authenticator reads `{}` (case-sensitive) and ignores `{key}`: none of its entries apply; rename the key to `{}`",
                section.key(),
                section.key()
            ),
        },
        None => Diagnostic {
            severity: Severity::Warning,
            reason: DiagnosticKind::UnknownKey,
            key: key.to_string(),
            entry: None,
            line: None,
            column: None,
            message: format!(
                "the authenticator ignores `{key}`: it reads only mapRoles, mapUsers and mapAccounts"
            ),
        },
    }
}

struct SectionParser<'a> {
    section: Section,
    out: &'a mut ParsedAwsAuth,
    diagnose: Diagnose,
}

impl<'a> SectionParser<'a> {
    fn new(section: Section, out: &'a mut ParsedAwsAuth, diagnose: Diagnose) -> Self {
        SectionParser {
            section,
            out,
            diagnose,
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        reason: DiagnosticKind,
        entry: Option<usize>,
        pos: Option<Pos>,
        message: String,
    ) {
        self.out.diagnostics.push(Diagnostic {
            severity,
            reason,
            key: self.section.key().to_string(),
            entry,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message,
        });
    }

    fn parse(mut self, text: &str) {
        let Some(items) = self.items(text) else {
            return;
        };
        match self.section {
            Section::MapRoles => self.out.entries.roles.reserve(items.len()),
            Section::MapUsers => self.out.entries.users.reserve(items.len()),
            Section::MapAccounts => self.out.entries.accounts.reserve(items.len()),
        }
        // The items are consumed: their strings move into the entries instead of being copied.
        for (index, item) in items.into_iter().enumerate() {
            match self.section {
                Section::MapAccounts => {
                    if let Some(account) = self.account(index, item) {
                        self.out.entries.accounts.push(account);
                    }
                }
                Section::MapRoles => {
                    let mapping = self.arn_mapping(index, item);
                    self.out.entries.roles.push(mapping);
                }
                Section::MapUsers => {
                    let mapping = self.arn_mapping(index, item);
                    self.out.entries.users.push(mapping);
                }
            }
        }
    }

    /// The top-level items of `text`, or `None` (with the diagnostic) when the authenticator
    /// cannot use the key at all.
    fn items(&mut self, text: &str) -> Option<Vec<Node>> {
        let doc = match parse_document(text) {
            Ok(doc) => doc,
            Err(err) => {
                self.out.malformed.insert(self.section);
                let message = format!(
                    "invalid YAML: {}; the authenticator drops every entry of {}",
                    err.message, self.section
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::YamlError,
                    None,
                    Some(err.pos),
                    message,
                );
                return None;
            }
        };
        if doc.extra_documents > 0 {
            let message = format!(
                "{} holds {} more YAML document(s) after the first; the authenticator reads only the first",
                self.section, doc.extra_documents
            );
            self.push(
                Severity::Error,
                DiagnosticKind::ExtraDocument,
                None,
                None,
                message,
            );
        }
        match doc.root {
            None
            | Some(Node::Scalar {
                resolved: ScalarType::Null,
                ..
            }) => None,
            Some(Node::Seq { items, .. }) => Some(items),
            Some(other) => {
                self.out.malformed.insert(self.section);
                let message = format!(
                    "{} must be a YAML list but is {}; the authenticator drops every entry of {}",
                    self.section,
                    other.kind_name(),
                    self.section
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::NotAList,
                    None,
                    Some(other.pos()),
                    message,
                );
                None
            }
        }
    }

    /// A string field as Go's encoding/json fills it from the JSON go-yaml made: a non-string
    /// value is a type error that leaves the field empty. `group` is the item's position when
    /// the value is one element of `groups` (then only that element becomes "").
    fn string_value(
        &mut self,
        index: usize,
        field: &str,
        node: Node,
        group: Option<usize>,
    ) -> String {
        let (what, effect) = match group {
            Some(item) => (
                format!("group #{} ", item + 1),
                "the authenticator turns this group into an empty string (the other groups still apply)".to_string(),
            ),
            None => (String::new(), format!("the authenticator leaves {field} empty")),
        };
        match node {
            Node::Scalar {
                value,
                resolved: ScalarType::Str | ScalarType::Merge,
                ..
            } => value,
            Node::Scalar {
                resolved: ScalarType::Null,
                ..
            } => String::new(),
            Node::Scalar {
                value,
                resolved,
                pos,
            } => {
                let shown = match group {
                    Some(_) => format!("`{value}`"),
                    None => format!("`{field}: {value}`"),
                };
                let message = format!(
                    "{what}{shown} is unquoted, so YAML 1.1 reads it as {}; {effect}. Quote it: \"{value}\"",
                    resolved.describe()
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::Coerced,
                    Some(index),
                    Some(pos),
                    message,
                );
                String::new()
            }
            other => {
                let message = match group {
                    Some(_) => format!(
                        "{what}of `groups` must be a string but is {}; {effect}",
                        other.kind_name()
                    ),
                    None => format!(
                        "`{field}` must be a string but is {}; {effect}",
                        other.kind_name()
                    ),
                };
                self.push(
                    Severity::Error,
                    DiagnosticKind::FieldWrongType,
                    Some(index),
                    Some(other.pos()),
                    message,
                );
                String::new()
            }
        }
    }

    /// A mapAccounts item as go-yaml v2 decodes it into a `[]string` (no JSON step, unlike the
    /// other keys): every non-null scalar is its literal text, whatever YAML 1.1 would resolve it
    /// to (`- 777788889999`, `- 012345678901`, `- true` stay those strings); null (`~`, an empty
    /// item) is ""; a list or mapping is a type error and go-yaml skips the item (`None`).
    fn account(&mut self, index: usize, item: Node) -> Option<String> {
        let item_pos = item.pos();
        let account = match item {
            Node::Scalar {
                resolved: ScalarType::Null,
                pos,
                value,
            } => {
                let shown = if value.is_empty() {
                    "an empty item".to_string()
                } else {
                    format!("`{value}` (null in YAML 1.1)")
                };
                let message = format!(
                    "{shown} is an empty account id for the authenticator: this entry never matches"
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::InvalidAccountId,
                    Some(index),
                    Some(pos),
                    message,
                );
                return Some(String::new());
            }
            Node::Scalar { value, .. } => value,
            other => {
                let message = format!(
                    "mapAccounts entries are account ids, but this one is {}; the authenticator skips it",
                    other.kind_name()
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::EntryWrongType,
                    Some(index),
                    Some(other.pos()),
                    message,
                );
                return None;
            }
        };
        if !is_account_id(&account) {
            let message =
                format!("`{account}` is not a 12-digit AWS account id: this entry never matches");
            self.push(
                Severity::Error,
                DiagnosticKind::InvalidAccountId,
                Some(index),
                Some(item_pos),
                message,
            );
        }
        Some(account)
    }

    fn arn_mapping(&mut self, index: usize, item: Node) -> ArnMapping {
        let Node::Map { entries, pos } = item else {
            let message = format!(
                "{} entries are mappings (rolearn/userarn, username, groups), but this one is {}; the authenticator ignores it",
                self.section,
                item.kind_name()
            );
            self.push(
                Severity::Error,
                DiagnosticKind::EntryWrongType,
                Some(index),
                Some(item.pos()),
                message,
            );
            return ArnMapping::default();
        };
        let first_diagnostic = self.out.diagnostics.len();
        let arn_field = self.section.arn_field();
        let other_arn_field = match self.section {
            Section::MapRoles => "userarn",
            _ => "rolearn",
        };
        // Field -> the keys that match it; Go assigns them in sorted order, so the last wins.
        let mut matched: BTreeMap<&'static str, Vec<(String, Node, Pos)>> = BTreeMap::new();
        let mut mapping = ArnMapping::default();
        for (key_node, value) in entries {
            let key_pos = key_node.pos();
            let key = key_node.into_key_string();
            let field = [arn_field, "username", "groups"]
                .into_iter()
                .find(|f| f.eq_ignore_ascii_case(&key));
            match field {
                Some(field) => {
                    if key != field {
                        let message = format!(
                            "field `{key}` only matches `{field}` case-insensitively; write `{field}`"
                        );
                        self.push(
                            Severity::Warning,
                            DiagnosticKind::FieldNameCase,
                            Some(index),
                            Some(key_pos),
                            message,
                        );
                    }
                    matched
                        .entry(field)
                        .or_default()
                        .push((key, value, key_pos));
                }
                None if key.eq_ignore_ascii_case(other_arn_field) => {
                    let message = format!(
                        "{} entries use `{arn_field}`, not `{key}`; the authenticator ignores `{key}` and this entry never matches",
                        self.section
                    );
                    self.push(
                        Severity::Error,
                        DiagnosticKind::WrongArnField,
                        Some(index),
                        Some(key_pos),
                        message,
                    );
                    mapping.extra.insert(key, value.to_json());
                }
                None => {
                    let message = format!(
                        "field `{key}` is not one of {arn_field}, username, groups; the authenticator ignores it"
                    );
                    self.push(
                        Severity::Warning,
                        DiagnosticKind::UnknownField,
                        Some(index),
                        Some(key_pos),
                        message,
                    );
                    mapping.extra.insert(key, value.to_json());
                }
            }
        }
        for (field, mut candidates) in matched {
            candidates.sort_by(|a, b| a.0.cmp(&b.0));
            if candidates.len() > 1 {
                // Each key with its value: two `rolearn` keys (one merged in with `<<`) are
                // told apart only by their values.
                let described =
                    |(key, node, _): &(String, Node, Pos)| format!("`{key}: {}`", node.to_json());
                let all: Vec<_> = candidates.iter().map(described).collect();
                let same_key = candidates.windows(2).any(|w| w[0].0 == w[1].0);
                let message = format!(
                    "{} all set `{field}`; the authenticator uses only the last, {}{}",
                    all.join(", "),
                    described(&candidates[candidates.len() - 1]),
                    if same_key {
                        " (a key merged in with `<<` counts where the `<<` stands; the last one in the entry wins)"
                    } else {
                        " (spellings in sorted order)"
                    }
                );
                let at = candidates[0].2;
                self.push(
                    Severity::Error,
                    DiagnosticKind::DuplicateField,
                    Some(index),
                    Some(at),
                    message,
                );
            }
            let Some((_, node, _)) = candidates.pop() else {
                continue;
            };
            match field {
                "username" => mapping.username = self.string_value(index, field, node, None),
                "groups" => mapping.groups = self.groups(index, node),
                _ => mapping.arn = self.string_value(index, field, node, None),
            }
        }
        if self.diagnose != Diagnose::No {
            self.check_mapping(index, pos, &mapping, first_diagnostic);
        }
        mapping
    }

    fn groups(&mut self, index: usize, node: Node) -> Vec<String> {
        match node {
            Node::Seq { items, .. } => items
                .into_iter()
                .enumerate()
                .map(|(item, node)| self.string_value(index, "groups", node, Some(item)))
                .collect(),
            Node::Scalar {
                resolved: ScalarType::Null,
                ..
            } => Vec::new(),
            other => {
                let message = format!(
                    "`groups` must be a list but is {}; the authenticator drops every group of this entry",
                    other.kind_name()
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::FieldWrongType,
                    Some(index),
                    Some(other.pos()),
                    message,
                );
                Vec::new()
            }
        }
    }

    fn check_mapping(
        &mut self,
        index: usize,
        pos: Pos,
        mapping: &ArnMapping,
        first_diagnostic: usize,
    ) {
        let arn_field = self.section.arn_field();
        let at = Some(pos);
        if mapping.arn.is_empty() {
            let message = format!("no `{arn_field}`: this entry never matches");
            self.push(
                Severity::Error,
                DiagnosticKind::MissingArn,
                Some(index),
                at,
                message,
            );
        } else if let Some(placeholder) = find_placeholder(&mapping.arn) {
            let message = format!(
                "`{}` still holds the placeholder `{placeholder}`: this entry never matches",
                mapping.arn
            );
            self.push(
                Severity::Error,
                DiagnosticKind::PlaceholderInArn,
                Some(index),
                at,
                message,
            );
        } else {
            match IamArnRef::parse(&mapping.arn) {
                Err(err) => {
                    let message = format!("{err}; this entry never matches");
                    self.push(
                        Severity::Error,
                        DiagnosticKind::InvalidArn,
                        Some(index),
                        at,
                        message,
                    );
                }
                Ok(arn) => self.check_arn(index, pos, &arn),
            }
        }
        let kind = match self.section {
            Section::MapRoles => PrincipalKind::Role,
            _ => PrincipalKind::User,
        };
        if mapping.username.is_empty() {
            let message =
                "empty username: callers matched by this entry get no Kubernetes identity"
                    .to_string();
            self.push(
                Severity::Error,
                DiagnosticKind::MissingUsername,
                Some(index),
                at,
                message,
            );
        }
        for (what, text) in std::iter::once(("username", &mapping.username))
            .chain(mapping.groups.iter().map(|g| ("group", g)))
        {
            for variable in template_variables(text) {
                if !variable.known {
                    let message = format!(
                        "{what} `{text}` uses `{{{{{}}}}}`, which the authenticator does not substitute (known: {{{{AccountID}}}}, {{{{SessionName}}}}, {{{{SessionNameRaw}}}}, {{{{AccessKeyID}}}}, {{{{EC2PrivateDNSName}}}}); it stays verbatim",
                        variable.variable
                    );
                    self.push(
                        Severity::Error,
                        DiagnosticKind::UnknownTemplateVariable,
                        Some(index),
                        at,
                        message,
                    );
                } else if kind == PrincipalKind::User
                    && matches!(
                        variable.variable,
                        "SessionName" | "SessionNameRaw" | "EC2PrivateDNSName"
                    )
                {
                    let message = format!(
                        "{what} `{text}` uses `{{{{{}}}}}`, which only role sessions have",
                        variable.variable
                    );
                    self.push(
                        Severity::Error,
                        DiagnosticKind::TemplateNotApplicable,
                        Some(index),
                        at,
                        message,
                    );
                }
            }
        }
        // Only this entry's own diagnostics, which start at `first_diagnostic`.
        let coerced = self.out.diagnostics[first_diagnostic..]
            .iter()
            .any(|d| d.reason == DiagnosticKind::Coerced);
        for group in &mapping.groups {
            // A group blanked by a YAML 1.1 coercion is already reported as such.
            if group.is_empty() && !coerced {
                let message = "empty group name".to_string();
                self.push(
                    Severity::Warning,
                    DiagnosticKind::EmptyGroup,
                    Some(index),
                    at,
                    message,
                );
            } else if has_whitespace(group) {
                let message = format!("group `{group}` contains whitespace");
                self.push(
                    Severity::Warning,
                    DiagnosticKind::GroupHasWhitespace,
                    Some(index),
                    at,
                    message,
                );
            }
        }
    }

    fn check_arn(&mut self, index: usize, pos: Pos, arn: &IamArnRef<'_>) {
        let at = Some(pos);
        match (self.section, arn.kind) {
            (Section::MapRoles, PrincipalKind::User) => {
                let message = format!(
                    "`{arn}` is a user ARN in mapRoles: move it to mapUsers (as userarn); here it never matches"
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::WrongSection,
                    Some(index),
                    at,
                    message,
                );
            }
            (Section::MapUsers, PrincipalKind::Role) => {
                let message = format!(
                    "`{arn}` is a role ARN in mapUsers: move it to mapRoles (as rolearn); here it never matches"
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::WrongSection,
                    Some(index),
                    at,
                    message,
                );
            }
            (Section::MapRoles, PrincipalKind::Role) if arn.has_path() => {
                let message = format!(
                    "role ARN `{arn}` has the path `{}`; the authenticator compares against the path-stripped ARN, so this entry never matches. Write `{}`",
                    arn.path,
                    arn.aws_auth_arn()
                );
                self.push(
                    Severity::Error,
                    DiagnosticKind::RoleArnHasPath,
                    Some(index),
                    at,
                    message,
                );
            }
            _ => {}
        }
    }
}

/// The diagnostics of principals listed more than once (the authenticator uses the last).
pub fn duplicate_diagnostics(entries: &AwsAuthEntries) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    // Roles: key = lowercased ARN, last wins.
    let role_keys: Vec<String> = entries
        .roles
        .iter()
        .map(|role| role.arn.to_lowercase())
        .collect();
    let mut last_role: HashMap<&str, usize> = HashMap::with_capacity(role_keys.len());
    for (i, (role, key)) in entries.roles.iter().zip(&role_keys).enumerate() {
        if !role.arn.is_empty() {
            last_role.insert(key, i);
        }
    }
    for (i, (role, key)) in entries.roles.iter().zip(&role_keys).enumerate() {
        if let Some(&winner) = last_role.get(key.as_str())
            && winner != i
        {
            diagnostics.push(duplicate(
                Section::MapRoles,
                i,
                winner,
                &role.arn,
                &entries.roles[winner].arn,
            ));
        }
    }
    // Users: key = exact ARN, last wins; case variants both stay and race.
    let mut last_user: HashMap<&str, usize> = HashMap::with_capacity(entries.users.len());
    let mut by_folded: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (i, user) in entries.users.iter().enumerate() {
        if !user.arn.is_empty() {
            last_user.insert(&user.arn, i);
            by_folded
                .entry(user.arn.to_lowercase())
                .or_default()
                .insert(&user.arn);
        }
    }
    for (i, user) in entries.users.iter().enumerate() {
        if let Some(&winner) = last_user.get(user.arn.as_str())
            && winner != i
        {
            diagnostics.push(duplicate(
                Section::MapUsers,
                i,
                winner,
                &user.arn,
                &user.arn,
            ));
        }
    }
    for variants in by_folded.values().filter(|v| v.len() > 1) {
        let list: Vec<_> = variants.iter().map(|v| format!("`{v}`")).collect();
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            reason: DiagnosticKind::AmbiguousUser,
            key: Section::MapUsers.key().to_string(),
            entry: None,
            line: None,
            column: None,
            message: format!(
                "user ARNs {} differ only by case; the authenticator keeps both and which one matches is random",
                list.join(" and ")
            ),
        });
    }
    let mut last_account: HashMap<&str, usize> = HashMap::with_capacity(entries.accounts.len());
    for (i, account) in entries.accounts.iter().enumerate() {
        if !account.is_empty() {
            last_account.insert(account, i);
        }
    }
    for (i, account) in entries.accounts.iter().enumerate() {
        if let Some(&winner) = last_account.get(account.as_str())
            && winner != i
        {
            diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                reason: DiagnosticKind::DuplicatePrincipal,
                key: Section::MapAccounts.key().to_string(),
                entry: Some(i),
                line: None,
                column: None,
                message: format!("account {account} is listed again at mapAccounts[{winner}]"),
            });
        }
    }
    diagnostics
}

fn duplicate(
    section: Section,
    loser: usize,
    winner: usize,
    arn: &str,
    winner_arn: &str,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        reason: DiagnosticKind::DuplicatePrincipal,
        key: section.key().to_string(),
        entry: Some(loser),
        line: None,
        column: None,
        message: format!(
            "`{arn}` is overridden by {section}[{winner}] (`{winner_arn}`): the authenticator uses only the last entry for a principal"
        ),
    }
}
