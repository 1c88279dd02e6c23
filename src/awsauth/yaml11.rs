//! A small YAML tree that keeps what serde does not: scalar style, tags and positions, and the
//! YAML 1.1 type resolution of go-yaml v2, which is what aws-iam-authenticator uses to read each
//! aws-auth key. Only the subset of go-yaml's behaviour that changes the meaning of aws-auth is
//! modelled: which plain scalars stop being strings.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Where a node starts in its key's text (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// The type go-yaml v2 gives a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Str,
    Bool(bool),
    Int,
    Float,
    Null,
    Merge,
}

impl ScalarType {
    pub fn describe(self) -> &'static str {
        match self {
            ScalarType::Str => "a string",
            ScalarType::Bool(true) => "boolean true",
            ScalarType::Bool(false) => "boolean false",
            ScalarType::Int => "an integer",
            ScalarType::Float => "a float",
            ScalarType::Null => "null",
            ScalarType::Merge => "a merge key",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar {
        value: String,
        resolved: ScalarType,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }

    /// The JSON value sigs.k8s.io/yaml would produce for this node.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Scalar {
                value, resolved, ..
            } => match resolved {
                ScalarType::Str | ScalarType::Merge => Value::String(value.clone()),
                ScalarType::Bool(b) => Value::Bool(*b),
                ScalarType::Null => Value::Null,
                ScalarType::Int | ScalarType::Float => go_number(value)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(value.clone())),
            },
            Node::Seq { items, .. } => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map { entries, .. } => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// `key_string`, moving the text out of a string key instead of copying it.
    pub fn into_key_string(self) -> String {
        match self {
            Node::Scalar {
                value,
                resolved: ScalarType::Str | ScalarType::Int | ScalarType::Float | ScalarType::Merge,
                ..
            } => value,
            other => other.key_string(),
        }
    }

    /// A mapping key as it appears in the JSON object (non-string keys are stringified).
    pub fn key_string(&self) -> String {
        match self {
            Node::Scalar {
                value, resolved, ..
            } => match resolved {
                ScalarType::Bool(b) => b.to_string(),
                ScalarType::Null => "null".to_string(),
                _ => value.clone(),
            },
            other => other.to_json().to_string(),
        }
    }
}

fn go_number(text: &str) -> Option<serde_json::Number> {
    let plain = text.replace('_', "");
    if let Some(i) = go_parse_int(&plain) {
        return Some(serde_json::Number::from(i));
    }
    plain
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl YamlError {
    fn from_scan(err: &ScanError) -> YamlError {
        YamlError {
            pos: Pos {
                line: err.marker().line(),
                column: err.marker().col() + 1,
            },
            message: err.info(),
        }
    }
}

/// The first document of `text` (go-yaml v2 reads only the first), or `None` for an empty
/// document. `extra_documents` counts the documents that were ignored.
#[derive(Debug, PartialEq)]
pub struct Document {
    pub root: Option<Node>,
    pub extra_documents: usize,
}

/// Reads `text` as go-yaml v2 would.
pub fn parse_document(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder::default();
    let mut documents = 0usize;
    for next in Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| YamlError::from_scan(&e))?;
        match event {
            Event::DocumentStart(..) => documents += 1,
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd => {}
            Event::Comment(..) | Event::Anchor(..) => {}
            _ if documents > 1 => {}
            other => builder.event(other, &span)?,
        }
    }
    Ok(Document {
        root: builder.root,
        extra_documents: documents.saturating_sub(1),
    })
}

enum Open {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = Pos::of(span);
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let resolved = match tag.as_deref() {
                    Some(tag) => resolve_tagged(tag.core_suffix(), &value),
                    None if style == ScalarStyle::Plain => resolve_plain(&value),
                    None => ScalarType::Str,
                };
                let node = Node::Scalar {
                    value: value.into_owned(),
                    resolved,
                    pos,
                };
                self.finish(node, anchor);
            }
            Event::SequenceStart(_, anchor, _) => {
                self.stack.push(Open::Seq(Vec::new(), pos, anchor))
            }
            Event::MappingStart(_, anchor, _) => {
                self.stack.push(Open::Map(Vec::new(), None, pos, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, pos, anchor)) => (Node::Seq { items, pos }, anchor),
                    Some(Open::Map(entries, _, pos, anchor)) => {
                        (Node::Map { entries, pos }, anchor)
                    }
                    None => {
                        return Err(YamlError {
                            pos,
                            message: "unbalanced collection end".to_string(),
                        });
                    }
                };
                self.finish(node, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "unknown anchor".to_string(),
                })?;
                self.finish(node, 0);
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError {
                    pos,
                    message: format!("unknown anchor '{name}' referenced"),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(entries, pending_key, ..)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if matches!(
                        &key,
                        Node::Scalar {
                            resolved: ScalarType::Merge,
                            ..
                        }
                    ) {
                        merge_into(entries, node);
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

/// `<<: *anchor` merges the anchored mapping's keys where the `<<` stands, as go-yaml v2 does
/// (sigs.k8s.io/yaml, which the authenticator reads mapRoles and mapUsers with): its decoder
/// assigns a mapping's keys in document order, a merge included, so a key set both ways takes
/// the value that comes last (`rolearn: b` after `<<: *a` wins; before it, it loses). Of a
/// list of merged mappings the earlier ones win: v2 assigns them from the last to the first.
fn merge_into(entries: &mut Vec<(Node, Node)>, source: Node) {
    let sources = match source {
        Node::Map { entries, .. } => vec![entries],
        Node::Seq { items, .. } => items
            .into_iter()
            .rev()
            .filter_map(|n| match n {
                Node::Map { entries, .. } => Some(entries),
                _ => None,
            })
            .collect(),
        Node::Scalar { .. } => Vec::new(),
    };
    for merged in sources {
        entries.extend(merged);
    }
}

fn resolve_tagged(core_suffix: Option<&str>, value: &str) -> ScalarType {
    match core_suffix {
        Some("bool") => ScalarType::Bool(matches!(resolve_plain(value), ScalarType::Bool(true))),
        Some("int") => ScalarType::Int,
        Some("float") => ScalarType::Float,
        Some("null") => ScalarType::Null,
        _ => ScalarType::Str,
    }
}

/// go-yaml v2's implicit resolution of a plain (unquoted) scalar.
pub fn resolve_plain(s: &str) -> ScalarType {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return ScalarType::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return ScalarType::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return ScalarType::Null,
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => return ScalarType::Float,
        "<<" => return ScalarType::Merge,
        _ => {}
    }
    match s.as_bytes()[0] {
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = s.replace('_', "");
            if go_parse_int(&plain).is_some() || go_parse_uint(&plain).is_some() {
                return ScalarType::Int;
            }
            if is_yaml_style_float(&plain) && plain.parse::<f64>().is_ok_and(f64::is_finite) {
                return ScalarType::Float;
            }
            let binary = plain
                .strip_prefix("0b")
                .or_else(|| plain.strip_prefix("-0b"));
            if binary.is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c == b'0' || c == b'1')) {
                return ScalarType::Int;
            }
            ScalarType::Str
        }
        b'.' => {
            if is_dot_float(s) {
                ScalarType::Float
            } else {
                ScalarType::Str
            }
        }
        _ => ScalarType::Str,
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.strip_prefix(['-', '+']).unwrap_or(s).as_bytes();
    let digits = |b: &[u8], mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i, i - start)
    };
    let mut i;
    if b.first() == Some(&b'.') {
        let (end, n) = digits(b, 1);
        if n == 0 {
            return false;
        }
        i = end;
    } else {
        let (end, n) = digits(b, 0);
        if n == 0 {
            return false;
        }
        i = end;
        if b.get(i) == Some(&b'.') {
            i = digits(b, i + 1).0;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let (end, n) = digits(b, i);
        if n == 0 {
            return false;
        }
        i = end;
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat` on a scalar starting with `.`: `.5`, `.5e3`.
fn is_dot_float(s: &str) -> bool {
    is_yaml_style_float(s) && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(digits)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: base from prefix (0x, 0o, 0b, leading 0 = octal).
fn go_parse_uint(s: &str) -> Option<u64> {
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, d)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_not_strings() {
        for s in [
            "on", "On", "ON", "off", "yes", "no", "y", "N", "true", "FALSE",
        ] {
            assert!(matches!(resolve_plain(s), ScalarType::Bool(_)), "{s}");
        }
        for s in ["oN", "yES", "tRUE", "none", "nope", "system:masters", "ok"] {
            assert_eq!(resolve_plain(s), ScalarType::Str, "{s}");
        }
    }

    #[test]
    fn yaml11_numbers_are_not_strings() {
        for s in [
            "123456789012",
            "0",
            "-1",
            "+7",
            "0x1F",
            "0o17",
            "017",
            "0b101",
            "1_000",
            "-0b1",
        ] {
            assert_eq!(resolve_plain(s), ScalarType::Int, "{s}");
        }
        for s in [
            "1.5",
            "1e3",
            ".5",
            "012345678901",
            "1.",
            "-.5e-3",
            ".inf",
            "-.Inf",
            ".NaN",
        ] {
            assert_eq!(resolve_plain(s), ScalarType::Float, "{s}");
        }
        // Overflowing hex, dates and odd forms stay strings, as in go-yaml v2.
        for s in [
            "0xFFFFFFFFFFFFFFFFFFFF",
            "2024-01-01",
            "1e999",
            "0x",
            "+",
            "-",
            "1.2.3",
            "12a",
            ".",
        ] {
            assert_eq!(resolve_plain(s), ScalarType::Str, "{s}");
        }
    }

    #[test]
    fn nulls() {
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(resolve_plain(s), ScalarType::Null, "{s}");
        }
        assert_eq!(resolve_plain("nULL"), ScalarType::Str);
    }

    #[test]
    fn quoted_and_block_scalars_are_strings() {
        let doc = parse_document("- 'on'\n- \"123\"\n- |\n  yes\n- on\n- !!str 12\n").unwrap();
        let Some(Node::Seq { items, .. }) = doc.root else {
            panic!()
        };
        let types: Vec<_> = items
            .iter()
            .map(|n| match n {
                Node::Scalar { resolved, .. } => *resolved,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            types,
            vec![
                ScalarType::Str,
                ScalarType::Str,
                ScalarType::Str,
                ScalarType::Bool(true),
                ScalarType::Str
            ]
        );
    }

    #[test]
    fn positions_and_errors() {
        let doc = parse_document("- a: 1\n  b: 2\n").unwrap();
        assert_eq!(doc.root.unwrap().pos(), Pos { line: 1, column: 1 });
        let err = parse_document("- a: 1\n b: [\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn anchors_and_merge_keys() {
        let doc =
            parse_document("- &base {username: u, groups: [g]}\n- <<: *base\n  username: v\n")
                .unwrap();
        let json = doc.root.unwrap().to_json();
        assert_eq!(json[1]["username"], "v");
        assert_eq!(json[1]["groups"][0], "g");
    }

    #[test]
    fn only_the_first_document_counts() {
        let doc = parse_document("- a\n---\n- b\n").unwrap();
        assert_eq!(doc.extra_documents, 1);
        assert_eq!(doc.root.unwrap().to_json(), serde_json::json!(["a"]));
    }

    #[test]
    fn json_of_scalars() {
        let doc = parse_document("[on, 12, 1.5, ~, x, '12']").unwrap();
        assert_eq!(
            doc.root.unwrap().to_json(),
            serde_json::json!([true, 12, 1.5, null, "x", "12"])
        );
    }
}
