//! Where each aws-auth data key's text sits in the file, so that a position inside the key's
//! text (what the authenticator's parser reports) becomes a line and column of the file.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A line and column of the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FilePosition {
    pub line: usize,
    pub column: usize,
}

/// Where a data key's value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePosition {
    /// The line of the key (or of the value, when it starts on a later line).
    pub key_line: usize,
    /// The column of the key on that line; 1 when the key is not written there.
    pub key_column: usize,
    /// Set when every line of the value's text is found verbatim in the file (a literal block
    /// scalar): then a position inside the text maps to exactly one position of the file.
    pub block: Option<Block>,
}

/// A literal block scalar: key-relative line L is file line `first_line + L - 1`, column C is
/// file column `C + indent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub first_line: usize,
    pub indent: usize,
}

impl ValuePosition {
    /// The file position of a key-relative position; the key's own position when the value is
    /// not a literal block or the position is unknown, so a reported line is never wrong.
    pub fn file_position(
        &self,
        line: Option<usize>,
        column: Option<usize>,
    ) -> (FilePosition, bool) {
        match (self.block, line, column) {
            (Some(block), Some(line), Some(column)) if line >= 1 && column >= 1 => (
                FilePosition {
                    line: block.first_line + line - 1,
                    column: column + block.indent,
                },
                true,
            ),
            _ => (
                FilePosition {
                    line: self.key_line,
                    column: self.key_column,
                },
                false,
            ),
        }
    }
}

/// Positions of one document (a `kind: List` document has one per item).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentPositions {
    /// The document's first line.
    pub line: usize,
    /// The data keys and where their values are written.
    pub data: BTreeMap<String, ValuePosition>,
    /// The items of a `kind: List`, in order.
    pub items: Vec<DocumentPositions>,
    /// The line of the value of each field of `spec` (an IamIdentityMapping's fields).
    pub spec: BTreeMap<String, usize>,
}

impl DocumentPositions {
    /// The line of the spec field a problem names (`spec.groups[2]` -> `groups`), else the
    /// document's first line.
    pub fn field_line(&self, field: &str) -> usize {
        field
            .strip_prefix("spec.")
            .map(|f| f.split(['.', '[']).next().unwrap_or_default())
            .and_then(|f| self.spec.get(f))
            .copied()
            .unwrap_or(self.line)
    }
}

/// Positions of every document of `text`, indexed like `manifest::documents` counts them
/// (1-based, empty documents included); `None` when the text cannot be read this way (the
/// diagnostics then carry no file position rather than a wrong one).
pub fn document_positions(text: &str) -> Option<Vec<Option<DocumentPositions>>> {
    let docs: Vec<Option<Spanned<PositionDoc>>> = serde_saphyr::from_multiple(text).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(
        docs.into_iter()
            .map(|doc| doc.map(|doc| resolve(doc, &lines)))
            .collect(),
    )
}

fn resolve(doc: Spanned<PositionDoc>, lines: &[&str]) -> DocumentPositions {
    DocumentPositions {
        line: to_usize(doc.referenced.line()),
        data: doc
            .value
            .data
            .into_iter()
            .map(|(key, value)| {
                let at = to_usize(value.referenced.line());
                let mut position = value_position(lines, at, &value.value);
                // The first occurrence on the key's line is the key: the value comes after it.
                position.key_column = lines
                    .get(position.key_line.wrapping_sub(1))
                    .and_then(|l| Some(l.get(..l.find(key.as_str())?)?.chars().count() + 1))
                    .unwrap_or(1);
                (key, position)
            })
            .collect(),
        items: doc
            .value
            .items
            .into_iter()
            .map(|item| resolve(item, lines))
            .collect(),
        spec: doc
            .value
            .spec
            .into_iter()
            .map(|(field, value)| (field, to_usize(value.referenced.line())))
            .collect(),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Where a value whose scalar starts on line `at` is written: a literal block scalar (`|`,
/// `|-`, `|2+`, ...) when its header is on the last non-blank line before `at` (or on `at`)
/// and every line of `value` is found verbatim below it at one indentation; else the line
/// `at` alone.
fn value_position(lines: &[&str], at: usize, value: &str) -> ValuePosition {
    let header = (1..at)
        .rev()
        .find(|&n| lines.get(n - 1).is_some_and(|l| !l.trim().is_empty()))
        .filter(|&n| is_literal_header(lines[n - 1]))
        .or_else(|| {
            lines
                .get(at.wrapping_sub(1))
                .filter(|l| is_literal_header(l))
                .map(|_| at)
        });
    match header.and_then(|h| verbatim_block(lines, h + 1, value, explicit_indent(lines[h - 1]))) {
        Some(block) => ValuePosition {
            key_line: block.first_line - 1,
            key_column: 1,
            block: Some(block),
        },
        None => ValuePosition {
            key_line: at,
            key_column: 1,
            block: None,
        },
    }
}

/// `key: |` and friends: a `|` then only indentation/chomping indicators, maybe a comment.
fn is_literal_header(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or_default().trim_end();
    code.rsplit_once('|').is_some_and(|(before, indicators)| {
        (before.trim_end().ends_with(':')
            || before.trim().is_empty()
            || before.trim_end().ends_with('-'))
            && indicators
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
    })
}

/// The block starting at `first_line` when every line of `value` is there verbatim, indented
/// like the first non-blank line.
fn verbatim_block(
    lines: &[&str],
    first_line: usize,
    value: &str,
    explicit: Option<usize>,
) -> Option<Block> {
    let content: Vec<&str> = value.lines().collect();
    let sample = lines
        .get(first_line - 1..)?
        .iter()
        .take(content.len())
        .find(|l| !l.trim().is_empty())?;
    let detected = sample.len() - sample.trim_start_matches(' ').len();
    // An explicit indentation indicator lets the text itself start with spaces: then only the
    // indicator's indentation matches.
    [Some(detected), explicit]
        .into_iter()
        .flatten()
        .find(|&indent| is_verbatim(lines, first_line, &content, indent))
        .map(|indent| Block { first_line, indent })
}

/// Every line of `content` is the file's line from `first_line` on, after `indent` spaces.
fn is_verbatim(lines: &[&str], first_line: usize, content: &[&str], indent: usize) -> bool {
    content.iter().enumerate().all(|(i, text)| {
        let Some(file_line) = lines.get(first_line - 1 + i) else {
            return false;
        };
        if text.is_empty() {
            file_line.trim().is_empty()
        } else {
            file_line
                .get(..indent)
                .is_some_and(|p| p.trim_matches(' ').is_empty())
                && file_line.get(indent..) == Some(*text)
        }
    })
}

/// The indentation a block header's explicit indicator (`|2`, `|-4`) gives its content: the
/// header line's own indentation (its mapping's) plus the digit.
fn explicit_indent(header: &str) -> Option<usize> {
    let code = header.split(" #").next().unwrap_or_default().trim_end();
    let digit = code
        .rsplit_once('|')?
        .1
        .chars()
        .find(char::is_ascii_digit)?;
    let own = header.len() - header.trim_start_matches(' ').len();
    Some(own + digit.to_digit(10)? as usize)
}

/// Line and column (1-based, inside the key's text) of each item of the text's top-level block
/// sequence: the `- ` lines at the smallest indentation. Only a guide: callers use it when the
/// count matches the entries the parser read, so a flow sequence or an odd layout gives no
/// position rather than a wrong one.
pub fn sequence_items(text: &str) -> Vec<(usize, usize)> {
    let dashes: Vec<(usize, usize)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.trim_start_matches(' ');
            (rest == "-" || rest.starts_with("- ")).then(|| (i + 1, line.len() - rest.len() + 1))
        })
        .collect();
    let Some(top) = dashes.iter().map(|&(_, column)| column).min() else {
        return Vec::new();
    };
    dashes.into_iter().filter(|&(_, c)| c == top).collect()
}

/// What the position pass reads of a document: `data` (string values, with their spans) and
/// `items`; anything else, and documents that are not mappings, are skipped.
#[derive(Default)]
struct PositionDoc {
    data: BTreeMap<String, Spanned<String>>,
    items: Vec<Spanned<PositionDoc>>,
    spec: BTreeMap<String, Spanned<IgnoredAny>>,
}

impl<'de> Deserialize<'de> for PositionDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PositionDocVisitor)
    }
}

struct PositionDocVisitor;

impl<'de> Visitor<'de> for PositionDocVisitor {
    type Value = PositionDoc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PositionDoc, A::Error> {
        let mut doc = PositionDoc::default();
        while let Some(key) = map.next_key::<KeyName>()? {
            match key.0.as_deref() {
                Some("data") => {
                    doc.data = map
                        .next_value::<Option<BTreeMap<String, Spanned<String>>>>()?
                        .unwrap_or_default()
                }
                Some("spec") => {
                    doc.spec = map
                        .next_value::<Option<BTreeMap<String, Spanned<IgnoredAny>>>>()?
                        .unwrap_or_default()
                }
                Some("items") => {
                    doc.items = map
                        .next_value::<Option<Vec<Spanned<PositionDoc>>>>()?
                        .unwrap_or_default()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(doc)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PositionDoc, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PositionDoc::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<PositionDoc, E> {
        Ok(PositionDoc::default())
    }
}

/// A mapping key: its text when it is a string, `None` for keys of other types.
struct KeyName(Option<String>);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KeyName, E> {
                Ok(KeyName(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KeyName, E> {
                Ok(KeyName(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KeyName, E> {
                Ok(KeyName(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyName, E> {
                Ok(KeyName(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyName, E> {
                Ok(KeyName(None))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(text: &str, key: &str) -> ValuePosition {
        let docs = document_positions(text).expect("readable");
        docs[0].as_ref().expect("a document").data[key].clone()
    }

    #[test]
    fn literal_blocks_map_exactly_with_any_indicators() {
        for header in ["|", "|-", "|+", "|2", "|-2", "| # roles"] {
            let text =
                format!("data:\n  mapRoles: {header}\n    - rolearn: a\n\n      groups: [b]\n");
            let pos = position(&text, "mapRoles");
            assert_eq!(pos.key_line, 2, "{header}");
            assert_eq!(
                pos.block,
                Some(Block {
                    first_line: 3,
                    indent: 4
                }),
                "{header}"
            );
            let (at, exact) = pos.file_position(Some(3), Some(3));
            assert!(exact);
            assert_eq!((at.line, at.column), (5, 7));
        }
    }

    #[test]
    fn explicit_indentation_indicator_keeps_leading_spaces_of_the_text() {
        // `|2` under a key indented 2: the content is indented 4, its first line starts with
        // two spaces of text.
        let text = "data:\n  mapRoles: |2\n      - rolearn: a\n    - rolearn: b\n";
        let pos = position(text, "mapRoles");
        assert_eq!(
            pos.block,
            Some(Block {
                first_line: 3,
                indent: 4
            })
        );
        let (at, _) = pos.file_position(Some(2), Some(3));
        assert_eq!((at.line, at.column), (4, 7));
    }

    #[test]
    fn other_scalar_styles_point_at_the_key_line_only() {
        let quoted = "data:\n  mapRoles: \"- rolearn: a\\n  groups: [b]\\n\"\n";
        let pos = position(quoted, "mapRoles");
        assert_eq!(pos.block, None);
        let (at, exact) = pos.file_position(Some(2), Some(3));
        assert!(!exact);
        assert_eq!((at.line, at.column), (2, 3));
        let folded = "data:\n  mapRoles: >\n    - rolearn: a\n";
        assert_eq!(position(folded, "mapRoles").block, None);
        let json = "{\n  \"data\": {\n    \"mapRoles\": \"- rolearn: a\\n\"\n  }\n}\n";
        assert_eq!(position(json, "mapRoles").key_line, 3);
    }

    #[test]
    fn a_block_whose_text_differs_from_the_file_is_not_mapped() {
        // A tab-indented or otherwise odd block never gets a guessed mapping.
        let lines = ["  mapRoles: |", "    - a", "    - b"];
        assert!(verbatim_block(&lines, 2, "- a\n- c\n", None).is_none());
        assert!(verbatim_block(&lines, 2, "- a\n- b\n", None).is_some());
    }

    #[test]
    fn sequence_items_are_the_top_level_dashes() {
        let text =
            "# roles\n- rolearn: a\n  groups:\n  - x\n  - y\n-   rolearn: b\n-\n  rolearn: c\n";
        assert_eq!(sequence_items(text), vec![(2, 1), (6, 1), (7, 1)]);
        assert_eq!(sequence_items("  - a\n  - b\n"), vec![(1, 3), (2, 3)]);
        assert!(sequence_items("[a, b]").is_empty());
    }

    #[test]
    fn spec_field_lines_and_unreadable_text() {
        let text = "kind: IamIdentityMapping\nspec:\n  arn: x\n  groups:\n  - a\n";
        let docs = document_positions(text).expect("readable");
        let doc = docs[0].as_ref().expect("a document");
        assert_eq!(doc.field_line("spec.arn"), 3);
        assert_eq!(doc.field_line("spec.username"), 1);
        assert!(document_positions("a: [").is_none());
    }
}
