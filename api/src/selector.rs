//! Label selectors and field selectors, as Kubernetes defines them.
//!
//! A [`LabelSelector`] comes from kubectl's `-l` syntax ([`LabelSelector::parse`]),
//! from an object's `matchLabels`/`matchExpressions` ([`LabelSelector::from_proto`])
//! or from a plain equality map such as a ReplicationController's or a
//! Service's selector ([`LabelSelector::from_map`]). Its [`Display`](fmt::Display)
//! form is canonical and parses back to an equal selector.
//!
//! A [`FieldSelector`] is kubectl's `--field-selector` (`spec.nodeName=wn1,status.phase!=Running`).

use crate::validation::{validate_label_key, validate_label_value};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Why a selector could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A `-l` label selector string that does not parse or holds invalid keys/values.
    #[error("invalid label selector {selector:?}: {reason}")]
    Label { selector: String, reason: String },
    /// A `--field-selector` string that does not parse.
    #[error("invalid field selector {selector:?}: {reason}")]
    Field { selector: String, reason: String },
    /// A structured selector (matchLabels/matchExpressions) or a requirement
    /// built in code that is invalid.
    #[error("invalid label selector: {reason}")]
    Requirement { reason: String },
}

impl SelectorError {
    /// The explanation, without the selector text.
    pub fn reason(&self) -> &str {
        match self {
            SelectorError::Label { reason, .. }
            | SelectorError::Field { reason, .. }
            | SelectorError::Requirement { reason } => reason,
        }
    }
}

// ---------------------------------------------------------------- label selectors

/// How a [`Requirement`] compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value` / `key==value`, and `matchLabels`.
    Equals,
    /// `key!=value`: also matches when the key is absent.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: also matches when the key is absent.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
}

impl Operator {
    /// The name used in `matchExpressions`, where there is one.
    pub fn proto_name(self) -> Option<&'static str> {
        match self {
            Operator::In => Some("In"),
            Operator::NotIn => Some("NotIn"),
            Operator::Exists => Some("Exists"),
            Operator::DoesNotExist => Some("DoesNotExist"),
            Operator::Equals | Operator::NotEquals => None,
        }
    }
}

/// One condition on one label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without duplicates. One value for `Equals`/`NotEquals`, at
    /// least one for `In`/`NotIn`, none for `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

impl Requirement {
    /// A requirement with a validated key, validated values and the number of
    /// values its operator needs.
    pub fn new<I, V>(
        key: impl Into<String>,
        operator: Operator,
        values: I,
    ) -> Result<Requirement, SelectorError>
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let values = values.into_iter().map(Into::into).collect();
        build_requirement(key.into(), operator, values)
            .map_err(|reason| SelectorError::Requirement { reason })
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let in_values = |v: &String| self.values.binary_search(v).is_ok();
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(in_values),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(in_values),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// Checks key, values and arity; the reason on failure.
fn build_requirement(
    key: String,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, String> {
    validate_label_key(&key).map_err(|why| format!("invalid label key {key:?}: {why}"))?;
    match operator {
        Operator::Equals | Operator::NotEquals if values.len() != 1 => {
            return Err(format!(
                "exactly one value is required for key {key:?} with '=', '==' or '!='"
            ));
        }
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(format!(
                "at least one value is required for key {key:?} with 'in' or 'notin'"
            ));
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "no values may be given for key {key:?} with 'exists' or 'does not exist'"
            ));
        }
        _ => {}
    }
    for v in &values {
        validate_label_value(v)
            .map_err(|why| format!("invalid value {v:?} for key {key:?}: {why}"))?;
    }
    values.sort();
    values.dedup();
    Ok(Requirement {
        key,
        operator,
        values,
    })
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A conjunction of [`Requirement`]s; the empty selector matches everything.
///
/// Requirements are kept sorted (by key, then operator, then values) and
/// without duplicates, so two selectors that say the same thing compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// A selector of these requirements (sorted and deduplicated).
    pub fn new(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort();
        requirements.dedup();
        LabelSelector { requirements }
    }

    /// Parses kubectl's `-l` syntax: comma-separated `a=b`, `a==b`, `a!=b`,
    /// `a in (x,y)`, `a notin (x)`, `a`, `!a`. The empty string (or only
    /// whitespace) selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let fail = |reason: String| SelectorError::Label {
            selector: s.to_string(),
            reason,
        };
        let tokens = lex(s).map_err(fail)?;
        let mut parser = Parser { tokens, at: 0 };
        let requirements = parser.parse_all().map_err(fail)?;
        Ok(LabelSelector::new(requirements))
    }

    /// A structured selector: `matchLabels` as equalities, `matchExpressions`
    /// with the operators `In`, `NotIn`, `Exists` and `DoesNotExist`.
    pub fn from_proto(sel: &crate::proto::LabelSelector) -> Result<LabelSelector, SelectorError> {
        let fail = |reason: String| SelectorError::Requirement { reason };
        let mut requirements = Vec::new();
        let mut labels: Vec<(&String, &String)> = sel.match_labels.iter().collect();
        labels.sort();
        for (k, v) in labels {
            let req = build_requirement(k.clone(), Operator::Equals, vec![v.clone()])
                .map_err(|why| fail(format!("matchLabels: {why}")))?;
            requirements.push(req);
        }
        for (i, expr) in sel.match_expressions.iter().enumerate() {
            let key = &expr.key;
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(fail(format!(
                        "matchExpressions[{i}]: operator {other:?} for key {key:?} is not one of \
                         \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                    )));
                }
            };
            let op = &expr.operator;
            match operator {
                Operator::In | Operator::NotIn if expr.values.is_empty() => {
                    return Err(fail(format!(
                        "matchExpressions[{i}]: operator {op:?} for key {key:?} requires at least one value"
                    )));
                }
                Operator::Exists | Operator::DoesNotExist if !expr.values.is_empty() => {
                    return Err(fail(format!(
                        "matchExpressions[{i}]: operator {op:?} for key {key:?} must have no values"
                    )));
                }
                _ => {}
            }
            let req = build_requirement(key.clone(), operator, expr.values.clone())
                .map_err(|why| fail(format!("matchExpressions[{i}]: {why}")))?;
            requirements.push(req);
        }
        Ok(LabelSelector::new(requirements))
    }

    /// An equality selector (ReplicationController and Service selectors).
    /// Keys and values are not validated; validation does that for stored objects.
    pub fn from_map(m: &HashMap<String, String>) -> LabelSelector {
        LabelSelector::new(
            m.iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        )
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// No requirements: matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `=`
    Eq,
    /// `==`
    DoubleEq,
    /// `!=`
    NotEq,
    /// `!`
    Bang,
    LParen,
    RParen,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Eq => f.write_str("'='"),
            Tok::DoubleEq => f.write_str("'=='"),
            Tok::NotEq => f.write_str("'!='"),
            Tok::Bang => f.write_str("'!'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
        }
    }
}

/// Characters that end an identifier.
fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>')
}

/// Tokens with their byte offsets.
fn lex(s: &str) -> Result<Vec<(Tok, usize)>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '=' => {
                if chars.next_if(|&(_, n)| n == '=').is_some() {
                    Tok::DoubleEq
                } else {
                    Tok::Eq
                }
            }
            '!' => {
                if chars.next_if(|&(_, n)| n == '=').is_some() {
                    Tok::NotEq
                } else {
                    Tok::Bang
                }
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '<' | '>' => {
                return Err(format!(
                    "operator '{c}' at position {pos} is not supported in label selectors"
                ));
            }
            _ => {
                let mut ident = String::from(c);
                while let Some((_, n)) =
                    chars.next_if(|&(_, n)| !n.is_whitespace() && !is_special(n))
                {
                    ident.push(n);
                }
                Tok::Ident(ident)
            }
        };
        out.push((tok, pos));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.tokens.get(self.at).cloned();
        if t.is_some() {
            self.at += 1;
        }
        t
    }

    fn parse_all(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        if self.tokens.is_empty() {
            return Ok(reqs);
        }
        loop {
            reqs.push(self.parse_requirement()?);
            match self.next() {
                None => return Ok(reqs),
                Some((Tok::Comma, pos)) => {
                    if self.peek().is_none() {
                        return Err(format!(
                            "trailing ',' at position {pos}: expected a requirement after it"
                        ));
                    }
                }
                Some((t, pos)) => {
                    return Err(format!(
                        "unexpected {t} at position {pos}: expected ',' or the end"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator, values) = match self.next() {
            Some((Tok::Bang, pos)) => match self.next() {
                Some((Tok::Ident(key), _)) => (key, Operator::DoesNotExist, Vec::new()),
                Some((t, p)) => {
                    return Err(format!(
                        "unexpected {t} at position {p}: expected a label key after '!'"
                    ))
                }
                None => {
                    return Err(format!(
                        "'!' at position {pos} must be followed by a label key"
                    ))
                }
            },
            Some((Tok::Ident(key), _)) => match self.peek() {
                None | Some(Tok::Comma) => (key, Operator::Exists, Vec::new()),
                Some(Tok::Eq) | Some(Tok::DoubleEq) => {
                    self.at += 1;
                    (key, Operator::Equals, vec![self.parse_exact_value()?])
                }
                Some(Tok::NotEq) => {
                    self.at += 1;
                    (key, Operator::NotEquals, vec![self.parse_exact_value()?])
                }
                Some(Tok::Ident(word)) if word == "in" || word == "notin" => {
                    let op = if word == "in" {
                        Operator::In
                    } else {
                        Operator::NotIn
                    };
                    self.at += 1;
                    (key, op, self.parse_set()?)
                }
                Some(_) => {
                    let (t, pos) = self.tokens[self.at].clone();
                    return Err(format!(
                        "unexpected {t} at position {pos} after key {key:?}: expected '=', '==', '!=', 'in', 'notin', ',' or the end"
                    ));
                }
            },
            Some((Tok::Comma, pos)) => {
                return Err(format!("empty requirement before ',' at position {pos}"));
            }
            Some((t, pos)) => {
                return Err(format!(
                    "unexpected {t} at position {pos}: expected a label key or '!'"
                ));
            }
            None => return Err("expected a requirement".to_string()),
        };
        build_requirement(key, operator, values)
    }

    /// The value after `=`, `==` or `!=`; empty when a ',' or the end follows.
    fn parse_exact_value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(Tok::Comma) => Ok(String::new()),
            Some(Tok::Ident(_)) => match self.next() {
                Some((Tok::Ident(v), _)) => Ok(v),
                _ => Err("expected a value".to_string()),
            },
            Some(_) => {
                let (t, pos) = self.tokens[self.at].clone();
                Err(format!(
                    "unexpected {t} at position {pos}: expected a value"
                ))
            }
        }
    }

    /// `(a,b,c)`; `()` is the set holding the empty value, as in Kubernetes.
    fn parse_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some((Tok::LParen, _)) => {}
            Some((t, pos)) => {
                return Err(format!(
                    "unexpected {t} at position {pos}: expected '(' after 'in' or 'notin'"
                ))
            }
            None => return Err("expected '(' after 'in' or 'notin'".to_string()),
        }
        let mut values = Vec::new();
        let mut expecting_value = true;
        loop {
            match self.next() {
                None => return Err("missing ')'".to_string()),
                Some((Tok::RParen, _)) => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some((Tok::Comma, _)) => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    expecting_value = true;
                }
                Some((Tok::Ident(v), pos)) => {
                    if !expecting_value {
                        return Err(format!(
                            "unexpected {v:?} at position {pos}: expected ',' or ')'"
                        ));
                    }
                    values.push(v);
                    expecting_value = false;
                }
                Some((t, pos)) => {
                    return Err(format!(
                        "unexpected {t} at position {pos} in a set of values: expected a value, ',' or ')'"
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------- field selectors

/// How a [`FieldRequirement`] compares a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldOperator {
    /// `path=value` / `path==value`
    Equals,
    /// `path!=value`
    NotEquals,
}

/// One condition on one field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRequirement {
    /// A field path such as `spec.nodeName`.
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether the field's value (`""` when missing) satisfies this requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => value == self.value,
            FieldOperator::NotEquals => value != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A conjunction of field equalities and inequalities; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `path=value`, `path==value` and `path!=value` terms separated by
    /// commas. In values, `\,`, `\=` and `\\` stand for `,`, `=` and `\`.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let fail = |reason: String| SelectorError::Field {
            selector: s.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for (term, start) in split_unescaped_commas(s) {
            if term.trim().is_empty() {
                continue;
            }
            let (op_at, op_len, operator) = find_field_operator(term).ok_or_else(|| {
                fail(format!(
                    "{:?} at position {start} is not of the form path=value, path==value or path!=value",
                    term.trim()
                ))
            })?;
            let field = term[..op_at].trim();
            if field.is_empty() {
                return Err(fail(format!(
                    "missing field path before the operator at position {}",
                    start + op_at
                )));
            }
            if !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '[' | ']'))
            {
                return Err(fail(format!("invalid field path {field:?}")));
            }
            let value = unescape_field_value(term[op_at + op_len..].trim())
                .map_err(|why| fail(format!("in the value for {field:?}: {why}")))?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        requirements.sort();
        requirements.dedup();
        Ok(FieldSelector { requirements })
    }

    /// The field paths this selector looks at.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether every requirement holds; `lookup` returns a field's value, and a
    /// missing field counts as `""`.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(lookup(&r.field).as_deref()))
    }

    /// The value `field` must equal, if the selector says so (for indexed lookups).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// No requirements: matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Terms separated by commas not preceded by a backslash, with their offsets.
fn split_unescaped_commas(s: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push((&s[start..i], start));
            start = i + 1;
        }
    }
    out.push((&s[start..], start));
    out
}

/// The first unescaped operator in a term: offset, length and meaning.
fn find_field_operator(term: &str) -> Option<(usize, usize, FieldOperator)> {
    let bytes = term.as_bytes();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((i, 2, FieldOperator::NotEquals))
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => return Some((i, 2, FieldOperator::Equals)),
            b'=' => return Some((i, 1, FieldOperator::Equals)),
            _ => {}
        }
    }
    None
}

fn unescape_field_value(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence '\\{e}'")),
                None => return Err("a trailing '\\' escapes nothing".to_string()),
            },
            ',' | '=' => return Err(format!("'{c}' must be escaped as '\\{c}'")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_field_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> proto::LabelSelectorRequirement {
        proto::LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn parse(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let sel = parse(s);
            assert!(sel.is_empty());
            assert!(sel.matches(&labels(&[])));
            assert!(sel.matches(&labels(&[("a", "b")])));
            assert_eq!(sel.to_string(), "");
        }
        assert_eq!(LabelSelector::default(), parse(""));
    }

    #[test]
    fn parses_every_operator() {
        let sel = parse("a=b");
        assert_eq!(
            sel.requirements(),
            &[Requirement {
                key: "a".into(),
                operator: Operator::Equals,
                values: vec!["b".into()]
            }]
        );
        assert_eq!(parse("a==b"), sel);
        assert_eq!(
            parse("a!=b").requirements()[0].operator,
            Operator::NotEquals
        );
        let sel = parse("a in (y,x,x)");
        let r = &sel.requirements()[0];
        assert_eq!(r.operator, Operator::In);
        assert_eq!(r.values, vec!["x", "y"]);
        let sel = parse("a notin (x)");
        let r = &sel.requirements()[0];
        assert_eq!(r.operator, Operator::NotIn);
        assert_eq!(r.values, vec!["x"]);
        let sel = parse("a");
        let r = &sel.requirements()[0];
        assert_eq!((r.operator, r.values.len()), (Operator::Exists, 0));
        let sel = parse("!a");
        let r = &sel.requirements()[0];
        assert_eq!((r.operator, r.values.len()), (Operator::DoesNotExist, 0));
    }

    #[test]
    fn whitespace_is_tolerated() {
        let a = parse("  app = nginx ,tier in( frontend , backend ) , ! legacy,env!=prod ");
        let b = parse("app=nginx,tier in (backend,frontend),!legacy,env!=prod");
        assert_eq!(a, b);
        assert_eq!(a.requirements().len(), 4);
        assert_eq!(parse("a==b"), parse("a == b"));
    }

    #[test]
    fn commas_in_parentheses_belong_to_the_set() {
        let sel = parse("a in (x,y),b notin (p,q),c");
        assert_eq!(sel.requirements().len(), 3);
        assert_eq!(sel.requirements()[0].values, vec!["x", "y"]);
        assert_eq!(sel.requirements()[1].values, vec!["p", "q"]);
    }

    #[test]
    fn empty_values() {
        let sel = parse("a=,b=c");
        assert_eq!(sel.requirements()[0].values, vec![""]);
        assert!(sel.matches(&labels(&[("a", ""), ("b", "c")])));
        assert!(!sel.matches(&labels(&[("b", "c")])));
        // `()` is the set holding the empty value, as in Kubernetes.
        assert_eq!(parse("a in ()").requirements()[0].values, vec![""]);
        assert_eq!(parse("a in (,x)").requirements()[0].values, vec!["", "x"]);
        assert_eq!(parse("a in (x,)").requirements()[0].values, vec!["", "x"]);
    }

    #[test]
    fn prefixed_keys_and_odd_values() {
        let sel = parse("app.kubernetes.io/name=my_app.v1-2,example.com/x");
        assert_eq!(sel.requirements()[0].key, "app.kubernetes.io/name");
        assert_eq!(sel.requirements()[0].values, vec!["my_app.v1-2"]);
        assert_eq!(sel.requirements()[1].operator, Operator::Exists);
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        assert_eq!(
            parse_err("a in (x"),
            r#"invalid label selector "a in (x": missing ')'"#
        );
        let e = parse_err("a=b,");
        assert!(e.contains("trailing ','"), "{e}");
        let e = parse_err(",a=b");
        assert!(
            e.contains("empty requirement") && e.contains("position 0"),
            "{e}"
        );
        let e = parse_err("a=b,,c=d");
        assert!(
            e.contains("empty requirement") && e.contains("position 4"),
            "{e}"
        );
        let e = parse_err("a=b c=d");
        assert!(e.contains("\"c\"") && e.contains("position 4"), "{e}");
        let e = parse_err("a in x");
        assert!(e.contains("expected '('"), "{e}");
        let e = parse_err("a in (x y)");
        assert!(
            e.contains("\"y\"") && e.contains("expected ',' or ')'"),
            "{e}"
        );
        let e = parse_err("a = b = c");
        assert!(e.contains("'='") && e.contains("position 6"), "{e}");
        let e = parse_err("!");
        assert!(e.contains("'!'"), "{e}");
        let e = parse_err("!a=b");
        assert!(e.contains("'='"), "{e}");
        let e = parse_err("a>1");
        assert!(e.contains("'>'") && e.contains("not supported"), "{e}");
        let e = parse_err("(a)");
        assert!(e.contains("'('") && e.contains("position 0"), "{e}");
        let e = parse_err("a=(b)");
        assert!(e.contains("expected a value"), "{e}");
        let e = parse_err("a in (x,(y))");
        assert!(e.contains("'('"), "{e}");
        let e = parse_err("a in");
        assert!(e.contains("expected '('"), "{e}");
    }

    #[test]
    fn invalid_keys_and_values_are_refused() {
        let e = parse_err("-a=b");
        assert!(e.contains("invalid label key \"-a\""), "{e}");
        let e = parse_err("a/b/c=d");
        assert!(e.contains("invalid label key"), "{e}");
        let e = parse_err("Bad_Prefix/a=b");
        assert!(e.contains("prefix"), "{e}");
        let long = "x".repeat(64);
        let e = parse_err(&format!("{long}=b"));
        assert!(e.contains("63"), "{e}");
        let e = parse_err(&format!("a={long}"));
        assert!(e.contains("invalid value") && e.contains("63"), "{e}");
        let e = parse_err("a in (ok,-bad)");
        assert!(e.contains("\"-bad\""), "{e}");
        let e = parse_err("a=b$");
        assert!(e.contains("invalid value \"b$\""), "{e}");
        assert!(e.starts_with("invalid label selector \"a=b$\": "), "{e}");
    }

    #[test]
    fn matching_follows_kubernetes() {
        let l = labels(&[("app", "nginx"), ("tier", "frontend")]);
        let none = labels(&[]);
        let cases: &[(&str, bool, bool)] = &[
            // selector, matches l, matches empty labels
            ("app=nginx", true, false),
            ("app=other", false, false),
            ("app!=nginx", false, true),
            ("app!=other", true, true),
            ("missing!=x", true, true),
            ("tier in (frontend,backend)", true, false),
            ("tier in (backend)", false, false),
            ("tier notin (backend)", true, true),
            ("tier notin (frontend)", false, true),
            ("missing notin (x)", true, true),
            ("app", true, false),
            ("missing", false, false),
            ("!app", false, true),
            ("!missing", true, true),
            ("app=nginx,tier=frontend", true, false),
            ("app=nginx,tier=backend", false, false),
            ("", true, true),
        ];
        for (s, want_l, want_none) in cases {
            let sel = parse(s);
            assert_eq!(sel.matches(&l), *want_l, "{s} on {l:?}");
            assert_eq!(sel.matches(&none), *want_none, "{s} on no labels");
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        let sel = parse("tier in (frontend),app=nginx-app");
        assert_eq!(sel.to_string(), "app=nginx-app,tier in (frontend)");
        let cases = [
            "a=b",
            "a!=b",
            "a in (x,y)",
            "a notin (y,x)",
            "a",
            "!a",
            "a=",
            "a in ()",
            "a in (,x)",
            "z=1,y!=2,x in (3,4),w notin (5),v,!u",
            "example.com/key=value,app.kubernetes.io/name in (a.b,c-d,e_f)",
            "a=b,a!=c,a in (b),a",
        ];
        for s in cases {
            let sel = parse(s);
            let shown = sel.to_string();
            assert_eq!(parse(&shown), sel, "{s} -> {shown}");
            assert_eq!(parse(&shown).to_string(), shown);
        }
        assert_eq!(
            parse("!u,v,a notin (y,x),a in (x),a!=b,a=b").to_string(),
            "a=b,a!=b,a in (x),a notin (x,y),!u,v"
        );
        assert_eq!(parse("a=b,a=b"), parse("a=b"));
        assert_eq!(parse("b=1,a=2"), parse("a=2,b=1"));
    }

    #[test]
    fn from_str_works() {
        let sel: LabelSelector = "a=b".parse().expect("parses");
        assert_eq!(sel, parse("a=b"));
        let f: FieldSelector = "a=b".parse().expect("parses");
        assert_eq!(f.to_string(), "a=b");
    }

    #[test]
    fn from_proto_seed_selector() {
        let p = proto::LabelSelector {
            match_labels: HashMap::new(),
            match_expressions: vec![
                expr("tier", "In", &["frontend"]),
                expr("app", "In", &["nginx-app"]),
            ],
        };
        let sel = LabelSelector::from_proto(&p).expect("valid");
        assert_eq!(sel.to_string(), "app in (nginx-app),tier in (frontend)");
        assert!(sel.matches(&labels(&[("app", "nginx-app"), ("tier", "frontend")])));
        assert!(!sel.matches(&labels(&[("app", "nginx-app")])));
        assert_eq!(parse(&sel.to_string()), sel);
    }

    #[test]
    fn from_proto_combines_labels_and_expressions() {
        let p = proto::LabelSelector {
            match_labels: labels(&[("app", "web"), ("env", "prod")]),
            match_expressions: vec![
                expr("tier", "NotIn", &["db"]),
                expr("canary", "DoesNotExist", &[]),
                expr("team", "Exists", &[]),
            ],
        };
        let sel = LabelSelector::from_proto(&p).expect("valid");
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env=prod,team,tier notin (db)"
        );
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "x")])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "x"),
            ("canary", "1")
        ])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "x"),
            ("tier", "db")
        ])));
        assert_eq!(parse(&sel.to_string()), sel);
        let empty = LabelSelector::from_proto(&proto::LabelSelector::default()).expect("valid");
        assert!(empty.is_empty());
    }

    #[test]
    fn from_proto_errors_name_operator_and_key() {
        let one = |e: proto::LabelSelectorRequirement| proto::LabelSelector {
            match_labels: HashMap::new(),
            match_expressions: vec![expr("ok", "Exists", &[]), e],
        };
        let err = |p: proto::LabelSelector| match LabelSelector::from_proto(&p) {
            Ok(s) => panic!("should fail: {s:?}"),
            Err(e) => e.to_string(),
        };
        let e = err(one(expr("tier", "in", &["x"])));
        assert!(
            e.contains("matchExpressions[1]") && e.contains("\"in\"") && e.contains("\"tier\""),
            "{e}"
        );
        let e = err(one(expr("tier", "Equals", &["x"])));
        assert!(e.contains("\"Equals\""), "{e}");
        let e = err(one(expr("tier", "In", &[])));
        assert!(
            e.contains("\"In\"") && e.contains("\"tier\"") && e.contains("at least one value"),
            "{e}"
        );
        let e = err(one(expr("tier", "NotIn", &[])));
        assert!(e.contains("\"NotIn\""), "{e}");
        let e = err(one(expr("tier", "Exists", &["x"])));
        assert!(e.contains("\"Exists\"") && e.contains("no values"), "{e}");
        let e = err(one(expr("tier", "DoesNotExist", &["x"])));
        assert!(e.contains("\"DoesNotExist\""), "{e}");
        let e = err(one(expr("bad key", "Exists", &[])));
        assert!(e.contains("\"bad key\""), "{e}");
        let e = err(one(expr("tier", "In", &["bad value"])));
        assert!(e.contains("\"bad value\""), "{e}");
        let e = err(proto::LabelSelector {
            match_labels: labels(&[("-x", "y")]),
            match_expressions: vec![],
        });
        assert!(e.contains("matchLabels") && e.contains("\"-x\""), "{e}");
        assert!(e.starts_with("invalid label selector: "), "{e}");
    }

    #[test]
    fn from_map_is_equality() {
        let sel = LabelSelector::from_map(&labels(&[("app", "web"), ("tier", "fe")]));
        assert_eq!(sel.to_string(), "app=web,tier=fe");
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(LabelSelector::from_map(&HashMap::new()).is_empty());
    }

    #[test]
    fn requirement_new_checks_arity() {
        assert!(Requirement::new("a", Operator::Equals, ["b"]).is_ok());
        assert!(Requirement::new("a", Operator::Equals, ["b", "c"]).is_err());
        assert!(Requirement::new("a", Operator::In, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::Exists, ["x"]).is_err());
        let r = Requirement::new("a", Operator::NotIn, ["z", "y", "z"]).expect("valid");
        assert_eq!(r.values, vec!["y", "z"]);
        assert_eq!(r.to_string(), "a notin (y,z)");
        let sel = LabelSelector::new(vec![r.clone(), r]);
        assert_eq!(sel.requirements().len(), 1);
        assert_eq!(Operator::In.proto_name(), Some("In"));
        assert_eq!(Operator::Equals.proto_name(), None);
    }

    #[test]
    fn error_reason_accessor() {
        let e = LabelSelector::parse("a in (x").expect_err("fails");
        assert_eq!(e.reason(), "missing ')'");
        let e = FieldSelector::parse("nope").expect_err("fails");
        assert!(e.reason().contains("\"nope\""));
    }

    // ------------------------------------------------------------ field selectors

    fn fields(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn field_selector_parses_and_matches() {
        let f = fields("spec.nodeName=wn1,status.phase!=Running");
        assert_eq!(
            f.fields().collect::<Vec<_>>(),
            vec!["spec.nodeName", "status.phase"]
        );
        let lookup = |node: &'static str, phase: &'static str| {
            move |path: &str| match path {
                "spec.nodeName" => Some(node.to_string()),
                "status.phase" => Some(phase.to_string()),
                _ => None,
            }
        };
        assert!(f.matches(lookup("wn1", "Pending")));
        assert!(!f.matches(lookup("wn1", "Running")));
        assert!(!f.matches(lookup("wn2", "Pending")));
        assert_eq!(f.required_value("spec.nodeName"), Some("wn1"));
        assert_eq!(f.required_value("status.phase"), None);
        assert_eq!(fields("a==b"), fields("a=b"));
        assert_eq!(fields(" a = b , c != d "), fields("a=b,c!=d"));
    }

    #[test]
    fn field_selector_missing_fields_are_empty() {
        let none = |_: &str| None;
        assert!(fields("spec.nodeName=").matches(none));
        assert!(!fields("spec.nodeName!=").matches(none));
        assert!(fields("spec.nodeName!=wn1").matches(none));
        assert!(!fields("spec.nodeName=wn1").matches(none));
        assert!(fields("").matches(none));
        assert!(fields("").is_empty());
        assert!(fields(",").is_empty());
    }

    #[test]
    fn field_selector_escapes() {
        let f = fields(r"metadata.name=a\,b\=c\\d");
        assert_eq!(f.requirements()[0].value, r"a,b=c\d");
        assert_eq!(f.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(fields(&f.to_string()), f);
        let f = fields("b!=2,a=1");
        assert_eq!(f.to_string(), "a=1,b!=2");
        assert_eq!(fields(&f.to_string()), f);
    }

    #[test]
    fn field_selector_errors() {
        let err = |s: &str| match FieldSelector::parse(s) {
            Ok(f) => panic!("{s:?} should not parse: {f:?}"),
            Err(e) => e.to_string(),
        };
        let e = err("spec.nodeName");
        assert!(
            e.starts_with("invalid field selector \"spec.nodeName\": "),
            "{e}"
        );
        let e = err("=x");
        assert!(e.contains("missing field path"), "{e}");
        let e = err("a=b=c");
        assert!(e.contains("'='"), "{e}");
        let e = err(r"a=b\x");
        assert!(e.contains("escape"), "{e}");
        let e = err(r"a=b\");
        assert!(e.contains("trailing"), "{e}");
        let e = err("a b=c");
        assert!(e.contains("invalid field path"), "{e}");
        let e = err("a=b,c");
        assert!(e.contains("\"c\"") && e.contains("position 4"), "{e}");
    }
}
