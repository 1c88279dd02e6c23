//! A fast reader for exactly the block style the renderer writes. Most of the time the live
//! aws-auth is what the operator wrote last, and the general YAML parser costs ~30 ms per MiB.
//! `read_mostly_rendered` reads each top-level item in the renderer's shape here, straight into
//! strings ready for an entry (no YAML tree), and hands runs of other (hand-written) items to
//! the general parser; it gives up (`None`, read the whole text generally) wherever reading a
//! run on its own could differ. A rendered item turned into a tree (`RenderedItem::into_node`)
//! is exactly what the general parser builds, positions included: property tests check that on
//! rendered, mixed and randomly edited text.

use super::render::{is_plain, needs_escape};
use super::yaml11::{Document, Node, Pos, ScalarType, YamlError};

/// A top-level list item: read here when it has the renderer's shape, else by the YAML parser.
#[derive(Debug, Clone, PartialEq)]
pub enum ListItem {
    Rendered(RenderedItem),
    Tree(Node),
}

impl ListItem {
    pub fn into_node(self) -> Node {
        match self {
            ListItem::Rendered(item) => item.into_node(),
            ListItem::Tree(node) => node,
        }
    }
}

/// An item in the renderer's shape. Every string in it is a double-quoted YAML string, so it
/// is a string whatever its text (no YAML 1.1 coercion applies).
#[derive(Debug, Clone, PartialEq)]
pub enum RenderedItem {
    /// `- "text"` (a mapAccounts entry).
    Scalar { value: String, pos: Pos },
    /// `- field: ...` with distinct field names, each one of `FieldName`.
    Mapping {
        fields: Vec<RenderedField>,
        pos: Pos,
    },
}

/// The field names the renderer writes, matched exactly (plain, never resolved to a non-string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldName {
    RoleArn,
    UserArn,
    Username,
    Groups,
}

impl FieldName {
    fn parse(text: &str) -> Option<FieldName> {
        Some(match text {
            "rolearn" => FieldName::RoleArn,
            "userarn" => FieldName::UserArn,
            "username" => FieldName::Username,
            "groups" => FieldName::Groups,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldName::RoleArn => "rolearn",
            FieldName::UserArn => "userarn",
            FieldName::Username => "username",
            FieldName::Groups => "groups",
        }
    }
}

/// One `name: value` line (and, for a block list, the lines under it). Fields are written
/// at column 3: on the dash line or indented by two.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedField {
    pub name: FieldName,
    pub line: usize,
    pub value: RenderedValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RenderedValue {
    /// `"text"` after the field name.
    Str(String),
    /// `[]` on the field's line, or a block list of quoted strings indented by four, its items
    /// on consecutive lines from `pos.line` at column `pos.column + 2`.
    List { items: Vec<String>, pos: Pos },
}

/// Column of a field name in a rendered item (`- ` or two spaces before it).
const FIELD_COLUMN: usize = 3;

impl RenderedField {
    /// Where the value starts: after `name: `.
    fn value_pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: FIELD_COLUMN + self.name.as_str().len() + 2,
        }
    }
}

impl RenderedItem {
    /// The tree the general YAML parser builds for this item.
    pub fn into_node(self) -> Node {
        let string = |value: String, pos: Pos| Node::Scalar {
            value,
            resolved: ScalarType::Str,
            pos,
        };
        match self {
            RenderedItem::Scalar { value, pos } => string(value, pos),
            RenderedItem::Mapping { fields, pos } => {
                let entries = fields
                    .into_iter()
                    .map(|field| {
                        let key_pos = Pos {
                            line: field.line,
                            column: FIELD_COLUMN,
                        };
                        let value_pos = field.value_pos();
                        let value = match field.value {
                            RenderedValue::Str(value) => string(value, value_pos),
                            RenderedValue::List { items, pos } => Node::Seq {
                                items: items
                                    .into_iter()
                                    .enumerate()
                                    .map(|(k, item)| {
                                        let item_pos = Pos {
                                            line: pos.line + k,
                                            column: pos.column + 2,
                                        };
                                        string(item, item_pos)
                                    })
                                    .collect(),
                                pos,
                            },
                        };
                        (string(field.name.as_str().to_string(), key_pos), value)
                    })
                    .collect();
                Node::Map { entries, pos }
            }
        }
    }
}

/// A top-level list read by `read_mostly_rendered`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemList {
    pub items: Vec<ListItem>,
    /// Where the list starts (its first item).
    pub pos: Pos,
}

impl ItemList {
    #[cfg(test)]
    /// The document the general YAML parser builds for the same text.
    pub fn into_document(self) -> Document {
        Document {
            root: Some(Node::Seq {
                items: self.items.into_iter().map(ListItem::into_node).collect(),
                pos: self.pos,
            }),
            extra_documents: 0,
        }
    }
}

/// Reads text shaped like the renderer's output, or returns `None`.
#[cfg(test)]
pub fn parse_rendered(text: &str) -> Option<Document> {
    if text.is_empty() || !text.ends_with('\n') {
        return None;
    }
    let mut lines = Lines {
        rest: text,
        number: 0,
    };
    let mut items = Vec::new();
    let mut line = lines.next();
    while let Some(first) = line {
        let (item, next) = rendered_item(first, &mut lines)?;
        items.push(ListItem::Rendered(item));
        line = next;
    }
    let list = ItemList {
        items,
        pos: Pos { line: 1, column: 1 },
    };
    Some(list.into_document())
}

/// The item whose dash line is `first`; returns it and the first line after it.
fn rendered_item<'t>(
    (number, first): (usize, &'t str),
    lines: &mut Lines<'t>,
) -> Option<(RenderedItem, Line<'t>)> {
    let item_pos = Pos {
        line: number,
        column: 3,
    };
    let item_text = first.strip_prefix("- ")?;
    if item_text.starts_with('"') {
        let value = quoted_string(item_text)?;
        return Some((
            RenderedItem::Scalar {
                value,
                pos: item_pos,
            },
            lines.next(),
        ));
    }
    // A mapping: its first field is on the dash line, the rest are indented by two.
    let mut fields: Vec<RenderedField> = Vec::with_capacity(3);
    let mut field = Some((number, item_text));
    let mut line = lines.next();
    while let Some((field_line, field_text)) = field.take() {
        let (key, value) = split_once_byte(field_text, b':')?;
        let name = FieldName::parse(key)?;
        if fields.iter().any(|f| f.name == name) {
            return None;
        }
        let value = match value {
            "" => {
                let (items, pos, next) = block_list(line, lines)?;
                line = next;
                RenderedValue::List { items, pos }
            }
            " []" => RenderedValue::List {
                items: Vec::new(),
                pos: Pos {
                    line: field_line,
                    column: FIELD_COLUMN + key.len() + 2,
                },
            },
            _ => RenderedValue::Str(quoted_string(value.strip_prefix(' ')?)?),
        };
        fields.push(RenderedField {
            name,
            line: field_line,
            value,
        });
        if let Some((next_number, next_text)) = line
            && let Some(rest) = next_text.strip_prefix("  ")
            && !rest.starts_with(' ')
        {
            field = Some((next_number, rest));
            line = lines.next();
        }
    }
    Some((
        RenderedItem::Mapping {
            fields,
            pos: item_pos,
        },
        line,
    ))
}

/// Reads a top-level list whose items are mostly in the renderer's shape, with some written by
/// hand: items in the renderer's shape are read here, runs of other items by `general`, each
/// run on its own. Returns `None` (read the whole text with `general` instead) whenever reading
/// a run on its own could differ from reading it in place: anything before the first item but
/// comments and blank lines, document markers or directives, or a run that does not read as a
/// complete list on its own (an open quote or bracket that continues past the next item, an
/// alias to an anchor in another run).
pub fn read_mostly_rendered(
    text: &str,
    general: impl Fn(&str) -> Result<Document, YamlError>,
) -> Option<ItemList> {
    if has_other_line_breaks(text) {
        return None;
    }
    // Items as (index of their first line, byte range): each starts at a line beginning "- ".
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
    let mut offset = 0;
    for (index, line) in lines_inclusive(text).enumerate() {
        let end = offset + line.len();
        if line.starts_with("---") || line.starts_with("...") || line.starts_with('%') {
            return None;
        }
        if line.starts_with("- ") {
            chunks.push((index, offset, end));
        } else if let Some(last) = chunks.last_mut() {
            last.2 = end;
        } else {
            let content = line.trim_start_matches([' ', '\t']);
            if !(content.trim_end().is_empty() || content.starts_with('#')) {
                return None;
            }
        }
        offset = end;
    }
    let first_item_line = chunks.first()?.0;

    let mut items = Vec::with_capacity(chunks.len());
    // Consecutive hand-written items are read together.
    let mut pending: Option<(usize, usize, usize)> = None;
    for (line_index, start, end) in chunks {
        match whole_rendered_item(&text[start..end], line_index) {
            Some(fast) => {
                if let Some(run) = pending.take() {
                    items.extend(read_run(text, run, &general)?.map(ListItem::Tree));
                }
                items.push(ListItem::Rendered(fast));
            }
            None => {
                pending = Some(match pending {
                    Some((first, run_start, _)) => (first, run_start, end),
                    None => (line_index, start, end),
                });
            }
        }
    }
    if let Some(run) = pending {
        items.extend(read_run(text, run, &general)?.map(ListItem::Tree));
    }
    Some(ItemList {
        items,
        pos: Pos {
            line: first_item_line + 1,
            column: 1,
        },
    })
}

/// `chunk` (the lines of one item, each ending in `\n`) read as one rendered item, if it is
/// one and nothing is left over; line numbers start after `line_offset`.
fn whole_rendered_item(chunk: &str, line_offset: usize) -> Option<RenderedItem> {
    if !chunk.ends_with('\n') {
        return None;
    }
    let mut lines = Lines {
        rest: chunk,
        number: line_offset,
    };
    let first = lines.next()?;
    match rendered_item(first, &mut lines)? {
        (item, None) => Some(item),
        (_, Some(_)) => None,
    }
}

/// Reads a run of hand-written items on its own, with positions moved to where the run starts.
fn read_run(
    text: &str,
    (line_index, start, end): (usize, usize, usize),
    general: &impl Fn(&str) -> Result<Document, YamlError>,
) -> Option<impl Iterator<Item = Node>> {
    let document = general(&text[start..end]).ok()?;
    if document.extra_documents > 0 {
        return None;
    }
    let Some(Node::Seq { mut items, .. }) = document.root else {
        return None;
    };
    for item in &mut items {
        shift_lines(item, line_index);
    }
    Some(items.into_iter())
}

fn shift_lines(node: &mut Node, by: usize) {
    match node {
        Node::Scalar { pos, .. } => pos.line += by,
        Node::Seq { items, pos } => {
            pos.line += by;
            items.iter_mut().for_each(|item| shift_lines(item, by));
        }
        Node::Map { entries, pos } => {
            pos.line += by;
            for (key, value) in entries {
                shift_lines(key, by);
                shift_lines(value, by);
            }
        }
    }
}

/// A block list of quoted strings indented by four, starting at `line`; returns its items,
/// where it starts, and the first line after it.
fn block_list<'t>(
    mut line: Line<'t>,
    lines: &mut Lines<'t>,
) -> Option<(Vec<String>, Pos, Line<'t>)> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        match line {
            Some((number, text)) if text.starts_with("    - ") => {
                start.get_or_insert(number);
                items.push(quoted_string(&text[6..])?);
                line = lines.next();
            }
            _ => {
                let pos = Pos {
                    line: start?,
                    column: 5,
                };
                return Some((items, pos, line));
            }
        }
    }
}

/// `text` must be exactly one double-quoted scalar with the renderer's escapes.
fn quoted_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    // Most values have nothing escaped: copy them whole.
    if is_plain(inner) {
        return Some(inner.to_string());
    }
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(unescape(&mut chars)?),
            // A bare quote would have ended the scalar early.
            '"' => return None,
            // Only what the renderer writes unescaped; anything else goes to the general parser.
            c if !needs_escape(c) => value.push(c),
            _ => return None,
        }
    }
    Some(value)
}

fn unescape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    let hex = |chars: &mut std::str::Chars<'_>, digits: usize| -> Option<char> {
        let mut code = 0u32;
        for _ in 0..digits {
            code = code * 16 + chars.next()?.to_digit(16)?;
        }
        char::from_u32(code)
    };
    match chars.next()? {
        '"' => Some('"'),
        '\\' => Some('\\'),
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'x' => hex(chars, 2),
        'u' => hex(chars, 4),
        'U' => hex(chars, 8),
        _ => None,
    }
}

/// Whether `text` breaks lines anywhere but at `\n`: YAML also breaks at `\r`, and YAML 1.1
/// at NEL, LS and PS. Lines, and with them positions, would be counted differently here, so
/// such text is left to the YAML parser (the renderer escapes all of them).
fn has_other_line_breaks(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr3_iter(b'\r', 0xC2, 0xE2, bytes).any(|at| match bytes[at] {
        b'\r' => true,
        // U+0085 NEL is C2 85; U+2028 LS and U+2029 PS are E2 80 A8 and E2 80 A9.
        0xC2 => bytes.get(at + 1) == Some(&0x85),
        _ => matches!(bytes.get(at + 1..at + 3), Some([0x80, 0xA8 | 0xA9])),
    })
}

/// `text` split at the first `byte` (an ASCII byte, so both halves are valid UTF-8).
/// `str::split_once(char)` costs a searcher and a `memcmp` call per match.
fn split_once_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let at = memchr::memchr(byte, text.as_bytes())?;
    Some((&text[..at], &text[at + 1..]))
}

/// `text.split_inclusive('\n')`, by bytes.
fn lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest.as_bytes()).map_or(rest.len(), |at| at + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        Some(line)
    })
}

/// A numbered line, or `None` at the end of the text.
type Line<'t> = Option<(usize, &'t str)>;

/// Lines without their `\n`, numbered from 1 after the offset. A `\r` stays in the line, where
/// no accepted shape allows it, so CRLF text goes to the general parser.
struct Lines<'t> {
    rest: &'t str,
    number: usize,
}

impl<'t> Lines<'t> {
    fn next(&mut self) -> Line<'t> {
        let (line, rest) = split_once_byte(self.rest, b'\n')?;
        self.rest = rest;
        self.number += 1;
        Some((self.number, line))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::parse::{parse_data, parse_data_general, parse_section_entries};
    use super::super::render::push_quoted;
    use super::super::yaml11::{parse_document, parse_document_general};
    use super::super::{
        ArnMapping, AwsAuthEntries, ConfigMapData, Section, render_section, sort_entries,
    };
    use super::*;

    /// Both readers agree wherever the fast one answers.
    fn assert_agrees(text: &str) -> bool {
        let Some(fast) = parse_rendered(text) else {
            assert_same_as_general(text);
            return false;
        };
        let general = parse_document_general(text).unwrap_or_else(|e| {
            panic!("fast reader accepted text the YAML parser rejects ({e:?}):\n{text}")
        });
        assert_eq!(fast, general, "readers disagree on:\n{text}");
        true
    }

    /// The reader the parser uses (rendered items here, other runs and fallbacks general)
    /// gives exactly what the general reader gives, errors included.
    fn assert_same_as_general(text: &str) {
        assert_eq!(
            parse_document(text),
            parse_document_general(text),
            "hybrid reader disagrees on:\n{text}"
        );
    }

    fn rendered(entries: &AwsAuthEntries) -> Vec<String> {
        let mut sorted = entries.clone();
        sort_entries(&mut sorted);
        Section::ALL
            .into_iter()
            .filter_map(|s| render_section(s, &sorted))
            .collect()
    }

    fn mapping(arn: &str, username: &str, groups: &[&str]) -> ArnMapping {
        ArnMapping {
            arn: arn.to_string(),
            username: username.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn other_line_breaks_are_found() {
        for text in ["a\rb", "a\r\n", "a\u{85}", "\u{2028}", "x\u{2029}y"] {
            assert!(has_other_line_breaks(text), "{text:?}");
        }
        for text in ["", "a\nb\n", "é®①\u{80}\u{86}\u{2027}\u{202A}", "\u{C5}"] {
            assert!(!has_other_line_breaks(text), "{text:?}");
        }
    }

    #[test]
    fn byte_splitting_is_str_splitting() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "a\n\nb\n",
            "é:ü\n:x",
            "::",
            "- a: \"b\"\n",
        ] {
            assert_eq!(
                lines_inclusive(text).collect::<Vec<_>>(),
                text.split_inclusive('\n').collect::<Vec<_>>()
            );
            assert_eq!(split_once_byte(text, b':'), text.split_once(':'));
            assert_eq!(split_once_byte(text, b'\n'), text.split_once('\n'));
        }
    }

    #[test]
    fn reads_what_the_renderer_writes() {
        let entries = AwsAuthEntries {
            roles: vec![
                mapping(
                    "arn:aws:iam::111122223333:role/node",
                    "system:node:{{EC2PrivateDNSName}}",
                    &["system:bootstrappers", "system:nodes"],
                ),
                mapping("arn:aws:iam::111122223333:role/empty", "x", &[]),
                mapping(
                    "arn:aws:iam::111122223333:role/odd",
                    "é \"q\" \\ \n\t\r\u{85}\u{2028}\u{7}\u{FEFF}😀",
                    &["", " ", "on", "#", "- x", "a: b"],
                ),
            ],
            users: vec![mapping(
                "arn:aws:iam::111122223333:user/ops/alice",
                "alice",
                &["ops"],
            )],
            accounts: vec!["111122223333".to_string(), "444455556666".to_string()],
        };
        for text in rendered(&entries) {
            assert!(
                assert_agrees(&text),
                "fast reader gave up on rendered text:\n{text}"
            );
        }
    }

    #[test]
    fn gives_up_on_anything_else() {
        for text in [
            "",
            "- rolearn: \"a\"",
            "- rolearn: a\n",
            "- rolearn: \"a\" # note\n",
            "- rolearn: \"a\"\r\n",
            "---\n- \"1\"\n",
            "-  \"1\"\n",
            "- \"1\"\n\n",
            "# c\n- \"1\"\n",
            "- rolearn: \"a\"\n  rolearn: \"b\"\n",
            "- rolearn: \"a\"\n  groups:\n",
            "- rolearn: \"a\"\n  groups:\n  - \"x\"\n",
            "- rolearn: \"a\"\n   username: \"b\"\n",
            "- rolearn: \"a\"\n  extra: \"b\"\n",
            "- rolearn: \"a\\q\"\n",
            "- rolearn: \"a\\uD800\"\n",
            "- rolearn: \"a\"b\"\n",
            "- rolearn: \"a\\\"\n",
            "- rolearn: \"a\tb\"\n",
            "- rolearn: 'a'\n",
            "\u{FEFF}- \"1\"\n",
        ] {
            assert!(parse_rendered(text).is_none(), "{text:?}");
        }
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z:/{}._-]{0,12}",
            prop::sample::select(vec![
                "on", "", " ", "~", "\"", "\\", "é", "\u{85}", "\u{2028}", "😀", "\u{0}"
            ])
            .prop_map(str::to_string),
            any::<String>(),
        ]
    }

    fn any_mapping() -> impl Strategy<Value = ArnMapping> {
        (
            any_string(),
            any_string(),
            prop::collection::vec(any_string(), 0..4),
        )
            .prop_map(|(arn, username, groups)| ArnMapping {
                arn,
                username,
                groups,
                extra: Default::default(),
            })
    }

    fn any_entries() -> impl Strategy<Value = AwsAuthEntries> {
        (
            prop::collection::vec(any_mapping(), 0..5),
            prop::collection::vec(any_mapping(), 0..5),
            prop::collection::vec(any_string(), 0..4),
        )
            .prop_map(|(roles, users, accounts)| AwsAuthEntries {
                roles,
                users,
                accounts,
            })
    }

    /// A small edit of the kind a person (or a bad tool) makes.
    fn mutate(text: &str, at: usize, edit: u8) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let at = at % (chars.len() + 1);
        let inserted = [
            ' ', '"', '\\', ':', '#', '\n', '-', '\t', 'x', '[', '\'', '&', '*', '!',
        ][usize::from(edit) % 14];
        match edit % 3 {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => chars[at] = inserted,
            _ => chars.insert(at, inserted),
        }
        chars.into_iter().collect()
    }

    /// Hand-written items, including every way one item can reach into the next.
    const HAND_WRITTEN: &[&str] = &[
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  groups:\n  - system:masters\n",
        "- rolearn: arn:aws:iam::111122223333:role/b # note\n  username: b\n",
        "# a comment between items\n",
        "\n",
        "- &base\n  username: shared\n  groups: [view]\n",
        "- <<: *base\n  rolearn: arn:aws:iam::111122223333:role/merged\n",
        "- rolearn: *undefined\n",
        "- rolearn: \"open quote\n- \\\"1\\\"\n  still quoted\"\n",
        "- rolearn: 'single\n- quoted'\n",
        "- rolearn: 'open\n- \"1\"\n  end'\n",
        "- groups: [\"a\",\n- \"1\"\n  ]\n",
        "- [a,\n- b]\n",
        "- {rolearn: x,\n- y: z}\n",
        "- groups: |\n    text\n- \"1\"\n",
        "-\n  rolearn: on\n",
        "- - nested\n",
        "foo:\n- a\n",
        "- rolearn: x\r\n  username: y\r\n",
        "- rolearn: x\r  username: y\n",
        "- rolearn: a\u{85}b\n- \"1\"\n",
        "- rolearn: a\u{2028}  username: b\n",
        "- rolearn:\ta\n",
        "  continued: line\n",
        "- plain\n  continuation\n",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "- !!str 123\n",
        "- userarn: 012345678901\n",
        "\t- x\n",
    ];

    fn hybrid_text() -> impl Strategy<Value = String> {
        (
            any_entries(),
            prop::collection::vec((any::<usize>(), prop::sample::select(HAND_WRITTEN)), 0..5),
        )
            .prop_map(|(entries, inserts)| {
                let text = rendered(&entries).concat();
                let mut lines: Vec<String> =
                    text.split_inclusive('\n').map(str::to_string).collect();
                for (at, snippet) in inserts {
                    lines.insert(at % (lines.len() + 1), snippet.to_string());
                }
                lines.concat()
            })
    }

    #[test]
    fn hybrid_reads_mixed_text_like_the_yaml_parser() {
        let rendered_item =
            "- rolearn: \"arn:aws:iam::111122223333:role/r\"\n  username: \"r\"\n  groups: []\n";
        for snippet in HAND_WRITTEN {
            for text in [
                format!("{rendered_item}{snippet}{rendered_item}"),
                format!("{snippet}{rendered_item}"),
                format!("{rendered_item}{snippet}"),
                format!("# header\n{rendered_item}{snippet}{snippet}{rendered_item}"),
            ] {
                assert_same_as_general(&text);
            }
        }
    }

    #[test]
    fn hybrid_reads_rendered_items_itself() {
        let text = "# kept by hand\n- rolearn: \"arn:aws:iam::111122223333:role/r\"\n  username: \"r\"\n  groups: []\n- rolearn: x\n  username: y\n";
        let calls = std::cell::Cell::new(0);
        let list = read_mostly_rendered(text, |run| {
            calls.set(calls.get() + 1);
            assert_eq!(run, "- rolearn: x\n  username: y\n");
            parse_document_general(run)
        })
        .expect("hybrid reads this text");
        assert!(matches!(list.items[0], ListItem::Rendered(_)));
        assert!(matches!(list.items[1], ListItem::Tree(_)));
        let document = list.into_document();
        assert_eq!(calls.get(), 1);
        assert_eq!(Ok(document), parse_document_general(text));
    }

    /// An item in the renderer's layout with any fields: right or wrong for the section,
    /// repeated, strings where lists belong and the other way round.
    fn rendered_shape_item() -> impl Strategy<Value = String> {
        let field = (
            prop::sample::select(vec!["rolearn", "userarn", "username", "groups"]),
            prop::option::of(any_string()),
            prop::collection::vec(any_string(), 0..3),
        );
        prop_oneof![
            any_string().prop_map(|s| {
                let mut item = "- ".to_string();
                push_quoted(&mut item, &s);
                item.push('\n');
                item
            }),
            prop::collection::vec(field, 1..4).prop_map(|fields| {
                let mut item = String::new();
                for (i, (name, scalar, list)) in fields.into_iter().enumerate() {
                    item.push_str(if i == 0 { "- " } else { "  " });
                    item.push_str(name);
                    item.push(':');
                    match scalar {
                        Some(s) => {
                            item.push(' ');
                            push_quoted(&mut item, &s);
                        }
                        None if list.is_empty() => item.push_str(" []"),
                        None => {
                            for g in list {
                                item.push_str("\n    - ");
                                push_quoted(&mut item, &g);
                            }
                        }
                    }
                    item.push('\n');
                }
                item
            }),
        ]
    }

    /// Whole aws-auth data: rendered sections with hand-written snippets and odd rendered-shape
    /// items mixed in, sometimes edited.
    fn any_data() -> impl Strategy<Value = ConfigMapData> {
        (
            hybrid_text(),
            prop::collection::vec((any::<usize>(), rendered_shape_item()), 0..4),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
        )
            .prop_map(|(text, odd, edits)| {
                let mut data = ConfigMapData::new();
                for (i, section) in Section::ALL.into_iter().enumerate() {
                    let mut lines: Vec<String> =
                        text.split_inclusive('\n').map(str::to_string).collect();
                    for (at, item) in &odd {
                        if at % 3 == i {
                            lines.insert(at % (lines.len() + 1), item.clone());
                        }
                    }
                    let mut section_text = lines.concat();
                    for (at, edit) in &edits {
                        if at % 3 == i {
                            section_text = mutate(&section_text, *at, *edit);
                        }
                    }
                    data.insert(section.key().to_string(), section_text);
                }
                data
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// What the parser makes of aws-auth (entries, every diagnostic with its position,
        /// malformed keys) is the same with the fast reader as with the YAML parser alone.
        #[test]
        fn parse_data_is_the_same_with_and_without_the_fast_reader(data in any_data()) {
            let parsed = parse_data(&data);
            prop_assert_eq!(&parsed, &parse_data_general(&data), "data: {:#?}", data);
            // Without diagnostics, key by key, the same entries and the same unusable keys.
            for (key, text) in &data {
                let Some(section) = Section::from_key(key) else { continue };
                let (entries, malformed) = parse_section_entries(section, text);
                let mut expected = AwsAuthEntries::default();
                match section {
                    Section::MapRoles => expected.roles = parsed.entries.roles.clone(),
                    Section::MapUsers => expected.users = parsed.entries.users.clone(),
                    Section::MapAccounts => expected.accounts = parsed.entries.accounts.clone(),
                }
                prop_assert_eq!(entries, expected);
                prop_assert_eq!(malformed, parsed.malformed.contains(&section));
            }
        }

        #[test]
        fn agrees_with_the_yaml_parser_on_rendered_text(entries in any_entries()) {
            for text in rendered(&entries) {
                prop_assert!(assert_agrees(&text), "fast reader gave up on rendered text:\n{}", text);
            }
        }

        #[test]
        fn hybrid_agrees_with_the_yaml_parser(text in hybrid_text()) {
            assert_same_as_general(&text);
        }

        #[test]
        fn agrees_with_the_yaml_parser_or_gives_up_on_edited_text(
            entries in any_entries(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            // All sections in one text, so edits can also join and split items.
            let mut edited = rendered(&entries).concat();
            for (at, edit) in &edits {
                edited = mutate(&edited, *at, *edit);
            }
            assert_agrees(&edited);
        }
    }
}
