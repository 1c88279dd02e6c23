//! entries -> aws-auth data. Deterministic (stable-sorted by the lowercased ARN, the key the
//! authenticator looks roles and users up by, so the relative order of duplicates and case
//! variants, and with it "last wins", is kept) and YAML-1.1-safe: every
//! string is double-quoted, so nothing can be read as a boolean, number or null, and characters
//! YAML 1.1 treats as line breaks (NEL, LS, PS) are escaped.

use std::cmp::Ordering;
use std::fmt::Write;

use super::{ArnMapping, AwsAuthEntries, ConfigMapData, Section};

/// The authenticator's lookup key: role and user ARNs match case-insensitively.
fn arn_key(m: &ArnMapping) -> String {
    m.arn.to_lowercase()
}

/// The order of `arn_key`, without allocating for ASCII ARNs (for checks; sorting caches the
/// keys instead, which is faster than comparing byte by byte).
fn arn_order(a: &ArnMapping, b: &ArnMapping) -> Ordering {
    let (a, b) = (&a.arn, &b.arn);
    if a.is_ascii() && b.is_ascii() {
        // ARNs share long prefixes: skip the identical bytes at memcmp speed, then compare the
        // rest case-folded (identical bytes are identical folded too).
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let same = common_prefix_len(a, b);
        a[same..]
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b[same..].iter().map(u8::to_ascii_lowercase))
    } else {
        a.to_lowercase().cmp(&b.to_lowercase())
    }
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
    let mut same = 0;
    for (x, y) in chunks {
        if x != y {
            break;
        }
        same += 8;
    }
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Sorts entries the way the renderer writes them. Stable: entries with the same key keep their
/// relative order.
pub fn sort_entries(entries: &mut AwsAuthEntries) {
    entries.roles.sort_by_cached_key(arn_key);
    entries.users.sort_by_cached_key(arn_key);
    entries.accounts.sort();
}

/// Whether `sort_entries` would leave the entries as they are.
pub fn is_sorted(entries: &AwsAuthEntries) -> bool {
    entries.roles.is_sorted_by(|a, b| arn_order(a, b).is_le())
        && entries.users.is_sorted_by(|a, b| arn_order(a, b).is_le())
        && entries.accounts.is_sorted()
}

/// Renders every non-empty section. An empty section has no key at all.
pub fn render_data(entries: &AwsAuthEntries) -> ConfigMapData {
    // Sorts references: the entries themselves are not copied.
    let mut roles: Vec<&ArnMapping> = entries.roles.iter().collect();
    roles.sort_by_cached_key(|m| arn_key(m));
    let mut users: Vec<&ArnMapping> = entries.users.iter().collect();
    users.sort_by_cached_key(|m| arn_key(m));
    let mut accounts: Vec<&String> = entries.accounts.iter().collect();
    accounts.sort();
    let mut data = ConfigMapData::new();
    let mut insert = |section: Section, text: Option<String>| {
        if let Some(text) = text {
            data.insert(section.key().to_string(), text);
        }
    };
    insert(Section::MapRoles, render_mappings(Section::MapRoles, roles));
    insert(Section::MapUsers, render_mappings(Section::MapUsers, users));
    insert(Section::MapAccounts, render_accounts(accounts));
    data
}

/// Renders one section of already sorted entries, or `None` when it is empty.
pub fn render_section(section: Section, entries: &AwsAuthEntries) -> Option<String> {
    match section {
        Section::MapRoles => render_mappings(section, &entries.roles),
        Section::MapUsers => render_mappings(section, &entries.users),
        Section::MapAccounts => render_accounts(&entries.accounts),
    }
}

fn render_mappings<'m>(
    section: Section,
    mappings: impl IntoIterator<Item = &'m ArnMapping>,
) -> Option<String> {
    let mut out = String::new();
    for mapping in mappings {
        write_mapping(&mut out, section.arn_field(), mapping);
    }
    (!out.is_empty()).then_some(out)
}

fn render_accounts<'a>(accounts: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let mut out = String::new();
    for account in accounts {
        out.push_str("- ");
        push_quoted(&mut out, account);
        out.push('\n');
    }
    (!out.is_empty()).then_some(out)
}

fn write_mapping(out: &mut String, arn_field: &str, mapping: &ArnMapping) {
    out.push_str("- ");
    out.push_str(arn_field);
    out.push_str(": ");
    push_quoted(out, &mapping.arn);
    out.push_str("\n  username: ");
    push_quoted(out, &mapping.username);
    if mapping.groups.is_empty() {
        out.push_str("\n  groups: []\n");
    } else {
        out.push_str("\n  groups:\n");
        for group in &mapping.groups {
            out.push_str("    - ");
            push_quoted(out, group);
            out.push('\n');
        }
    }
    for (key, value) in &mapping.extra {
        out.push_str("  ");
        push_quoted(out, key);
        out.push_str(": ");
        push_flow(out, value);
        out.push('\n');
    }
}

/// JSON value as a YAML flow node with every string double-quoted.
fn push_flow(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => push_quoted(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_flow(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_quoted(out, k);
                out.push_str(": ");
                push_flow(out, v);
            }
            out.push('}');
        }
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
    }
}

/// A YAML double-quoted scalar that YAML 1.1 and 1.2 parsers read back as exactly `s`.
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    if is_plain(s) {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Unescaped runs are copied in one go.
    let mut copied = 0;
    for (at, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\t' => "\\t",
            '\r' => "\\r",
            c if needs_escape(c) => "",
            _ => continue,
        };
        out.push_str(&s[copied..at]);
        copied = at + c.len_utf8();
        if escape.is_empty() {
            let code = c as u32;
            let _ = if code <= 0xFF {
                write!(out, "\\x{code:02X}")
            } else if code <= 0xFFFF {
                write!(out, "\\u{code:04X}")
            } else {
                write!(out, "\\U{code:08X}")
            };
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&s[copied..]);
    out.push('"');
}

/// Printable ASCII without `"` or `\\`: written between the quotes exactly as it is. Most
/// strings are.
pub(crate) fn is_plain(s: &str) -> bool {
    s.as_bytes().iter().fold(true, |plain, &b| {
        plain & (matches!(b, 0x20..=0x7E) & (b != b'"') & (b != b'\\'))
    })
}

/// Outside YAML 1.1's printable set, or a YAML 1.1 line break / BOM that would be folded away.
pub(crate) fn needs_escape(c: char) -> bool {
    let code = c as u32;
    !matches!(code, 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        || matches!(code, 0x2028 | 0x2029 | 0xFEFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_yaml_would_change() {
        let mut s = String::new();
        push_quoted(&mut s, "a\"b\\c\nd\u{85}e\u{2028}f\u{7}g\u{FEFF}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\x85e\\u2028f\\x07g\\uFEFFé\"");
    }

    #[test]
    fn empty_sections_have_no_key() {
        let data = render_data(&AwsAuthEntries::default());
        assert!(data.is_empty());
    }

    fn role(arn: &str) -> ArnMapping {
        ArnMapping {
            arn: arn.to_string(),
            ..ArnMapping::default()
        }
    }

    proptest::proptest! {
        /// The check that decides whether to sort agrees with the order the sort uses.
        #[test]
        fn arn_order_is_the_order_of_arn_keys(
            prefix in "[aA:/r-]{0,20}",
            a in "[aAbBzZ_:/é]{0,12}",
            b in "[aAbBzZ_:/é]{0,12}",
        ) {
            let (x, y) = (role(&format!("{prefix}{a}")), role(&format!("{prefix}{b}")));
            proptest::prop_assert_eq!(arn_order(&x, &y), arn_key(&x).cmp(&arn_key(&y)));
        }
    }
}
