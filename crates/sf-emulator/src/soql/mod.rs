//! The SOQL subset of reference §2.11: parsing ([`parser`]), binding to the
//! schema with Salesforce's error codes, evaluation against the store, and
//! rendering rows as REST JSON or Bulk CSV.

pub mod lexer;
pub mod parser;

use std::cmp::Ordering;

use crate::error::ApiErr;
use crate::id;
use crate::schema::{FieldType, Schema};
use crate::store::{Record, Store};
use crate::time::{self, DAY_MS};
use crate::value::Value;
use parser::{Cond, Literal, PathRef};

/// A field path bound to the schema: reference hops, then a field.
#[derive(Debug, Clone)]
pub struct BoundPath {
    /// (object, reference field) for each hop.
    pub hops: Vec<(usize, usize)>,
    /// Object holding the final field.
    pub object: usize,
    /// Final field index.
    pub field: usize,
    /// Canonical dotted name, e.g. `Asset.Name`.
    pub display: String,
    /// Canonical segments (relationship names, then the field name).
    pub segments: Vec<String>,
}

#[derive(Debug, Clone)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Date(i32),
    DateTime(i64),
    /// `[start, end)` in epoch ms.
    Range(i64, i64),
}

#[derive(Debug, Clone)]
enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    Cmp(BoundPath, &'static str, Lit),
    In(BoundPath, bool, Vec<Lit>),
    Like(BoundPath, Vec<LikeTok>),
}

#[derive(Debug, Clone, PartialEq)]
enum LikeTok {
    Char(char),
    One,
    Any,
}

/// A query bound to the schema, ready to run.
#[derive(Debug, Clone)]
pub struct Query {
    /// The FROM object.
    pub object: usize,
    /// `SELECT COUNT()`.
    pub count: bool,
    /// Selected paths in order.
    pub fields: Vec<BoundPath>,
    /// Whether OFFSET was used (Bulk forbids it).
    pub has_offset: bool,
    filter: Option<Pred>,
    order: Vec<(BoundPath, bool, bool)>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn located(query: &str, col: usize, message: &str) -> String {
    format!(
        "\n{query}\n{}^\nERROR at Row:1:Column:{col}\n{message}",
        " ".repeat(col.saturating_sub(1))
    )
}

/// Parses and binds a query; errors are `MALFORMED_QUERY`, `INVALID_FIELD`,
/// `INVALID_TYPE` or `INVALID_QUERY_FILTER_OPERATOR` with Salesforce's shape.
///
/// # Errors
/// The first problem found, as Salesforce reports it.
pub fn compile(schema: &Schema, query: &str, today: i32) -> Result<Query, ApiErr> {
    let syntax = parser::parse(query).map_err(|e| {
        ApiErr::new(
            "MALFORMED_QUERY",
            located(query, e.col, &format!("unexpected token: '{}'", e.token)),
        )
    })?;
    let object = schema.object_idx(&syntax.object.path).ok_or_else(|| {
        ApiErr::new(
            "INVALID_TYPE",
            located(
                query,
                syntax.object.col,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    syntax.object.path
                ),
            ),
        )
    })?;
    if schema.objects[object].is_event() {
        return Err(ApiErr::new(
            "INVALID_TYPE",
            located(
                query,
                syntax.object.col,
                &format!(
                    "sObject type '{}' is not supported.",
                    schema.objects[object].name
                ),
            ),
        ));
    }
    let binder = Binder {
        schema,
        query,
        object,
        today,
    };
    let mut fields = Vec::new();
    for path in &syntax.fields {
        let bound = binder.path(path)?;
        if fields
            .iter()
            .any(|f: &BoundPath| f.display.eq_ignore_ascii_case(&bound.display))
        {
            return Err(ApiErr::new(
                "MALFORMED_QUERY",
                located(
                    query,
                    path.col,
                    &format!("duplicate field selected: {}", bound.display),
                ),
            ));
        }
        fields.push(bound);
    }
    let filter = syntax.filter.as_ref().map(|c| binder.cond(c)).transpose()?;
    let order = syntax
        .order
        .iter()
        .map(|(p, desc, nulls_first)| Ok((binder.path(p)?, *desc, *nulls_first)))
        .collect::<Result<Vec<_>, ApiErr>>()?;
    if syntax.offset.is_some_and(|o| o > 2000) {
        return Err(ApiErr::new(
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Maximum SOQL offset allowed is 2000",
        ));
    }
    Ok(Query {
        object,
        count: syntax.count,
        fields,
        has_offset: syntax.offset.is_some(),
        filter,
        order,
        limit: syntax.limit,
        offset: syntax.offset,
    })
}

struct Binder<'a> {
    schema: &'a Schema,
    query: &'a str,
    object: usize,
    today: i32,
}

impl Binder<'_> {
    fn path(&self, path: &PathRef) -> Result<BoundPath, ApiErr> {
        let parts: Vec<&str> = path.path.split('.').collect();
        let mut object = self.object;
        let mut hops = Vec::new();
        let mut segments = Vec::new();
        let (last, rels) = parts.split_last().expect("split yields at least one part");
        if rels.len() > 5 {
            return Err(ApiErr::new("MALFORMED_QUERY", located(self.query, path.col, "SOQL statements cannot query relationships that are more than 5 levels away from the root entity object.")));
        }
        for rel in rels {
            let obj = &self.schema.objects[object];
            let Some(field) = obj.relationship_idx(rel) else {
                return Err(ApiErr::new(
                    "INVALID_FIELD",
                    located(
                        self.query,
                        path.col,
                        &format!(
                            "Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                        ),
                    ),
                ));
            };
            segments.push(
                obj.fields[field]
                    .relationship_name
                    .clone()
                    .unwrap_or_default(),
            );
            hops.push((object, field));
            let target = obj.fields[field]
                .reference_to()
                .first()
                .and_then(|t| self.schema.object_idx(t));
            object = target.ok_or_else(|| {
                ApiErr::new(
                    "INVALID_FIELD",
                    located(
                        self.query,
                        path.col,
                        &format!("Didn't understand relationship '{rel}' in field path."),
                    ),
                )
            })?;
        }
        let obj = &self.schema.objects[object];
        let field = obj.field_idx(last).ok_or_else(|| {
            ApiErr::new(
                "INVALID_FIELD",
                located(
                    self.query,
                    path.col,
                    &format!(
                        "No such column '{last}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                        obj.name
                    ),
                ),
            )
        })?;
        segments.push(obj.fields[field].name.clone());
        Ok(BoundPath {
            hops,
            object,
            field,
            display: segments.join("."),
            segments,
        })
    }

    fn cond(&self, cond: &Cond) -> Result<Pred, ApiErr> {
        Ok(match cond {
            Cond::And(items) => Pred::And(
                items
                    .iter()
                    .map(|c| self.cond(c))
                    .collect::<Result<_, _>>()?,
            ),
            Cond::Or(items) => Pred::Or(
                items
                    .iter()
                    .map(|c| self.cond(c))
                    .collect::<Result<_, _>>()?,
            ),
            Cond::Not(inner) => Pred::Not(Box::new(self.cond(inner)?)),
            Cond::Cmp(path, op, lit, col) => {
                let bound = self.path(path)?;
                let lit = self.literal(&bound, lit, *col)?;
                if matches!(lit, Lit::Null) && !matches!(*op, "=" | "!=") {
                    return Err(ApiErr::new(
                        "MALFORMED_QUERY",
                        located(self.query, *col, "unexpected token: 'null'"),
                    ));
                }
                Pred::Cmp(bound, op, lit)
            }
            Cond::In(path, negated, lits, col) => {
                let bound = self.path(path)?;
                let lits = lits
                    .iter()
                    .map(|l| self.literal(&bound, l, *col))
                    .collect::<Result<_, _>>()?;
                Pred::In(bound, *negated, lits)
            }
            Cond::Like(path, pattern) => {
                let bound = self.path(path)?;
                let field = &self.schema.objects[bound.object].fields[bound.field];
                if !is_text(&field.ty) {
                    return Err(ApiErr::new(
                        "INVALID_FIELD",
                        located(
                            self.query,
                            path.col,
                            &format!(
                                "invalid operator on {} field: {}",
                                field.describe_type(),
                                field.name
                            ),
                        ),
                    ));
                }
                Pred::Like(bound, like_tokens(pattern))
            }
        })
    }

    fn literal(&self, path: &BoundPath, lit: &Literal, col: usize) -> Result<Lit, ApiErr> {
        let field = &self.schema.objects[path.object].fields[path.field];
        let wrong = |expected: &str| {
            ApiErr::new(
                "INVALID_FIELD",
                located(self.query, col, &format!("value of filter criterion for field '{}' must be of type {expected} and should not be enclosed in quotes", field.name)),
            )
        };
        Ok(match (lit, &field.ty) {
            (Literal::Null, _) => Lit::Null,
            (Literal::Bool(b), FieldType::Boolean) => Lit::Bool(*b),
            (_, FieldType::Boolean) => return Err(wrong("boolean")),
            (Literal::Str(s), FieldType::Id | FieldType::Reference(_)) => match id::normalize(s) {
                Ok(id18) => Lit::Str(id18.to_lowercase()),
                Err(_) => {
                    return Err(ApiErr::new(
                        "INVALID_QUERY_FILTER_OPERATOR",
                        located(self.query, col, &format!("invalid ID field: {s}")),
                    ))
                }
            },
            (Literal::Str(s), ty) if is_text(ty) => Lit::Str(s.to_lowercase()),
            (
                Literal::Raw(raw),
                FieldType::Double(..)
                | FieldType::Int
                | FieldType::Currency(..)
                | FieldType::Percent(..),
            ) => Lit::Num(raw.parse().map_err(|_| wrong("number"))?),
            (Literal::Raw(raw), FieldType::Date) => {
                Lit::Date(time::parse_date(raw).ok_or_else(|| wrong("date"))?)
            }
            (Literal::Raw(raw), FieldType::DateTime) => {
                Lit::DateTime(time::parse_datetime(raw).ok_or_else(|| wrong("dateTime"))?)
            }
            (Literal::DateLiteral(name, n), FieldType::Date | FieldType::DateTime) => {
                let today = i64::from(self.today);
                let (start, end) = match (name.as_str(), n) {
                    ("TODAY", _) => (today, today + 1),
                    ("YESTERDAY", _) => (today - 1, today),
                    ("TOMORROW", _) => (today + 1, today + 2),
                    ("LAST_N_DAYS", Some(n)) => (today - n, today + 1),
                    ("NEXT_N_DAYS", Some(n)) => (today + 1, today + 1 + n),
                    _ => {
                        return Err(ApiErr::new(
                            "MALFORMED_QUERY",
                            located(self.query, col, &format!("unexpected token: '{name}'")),
                        ))
                    }
                };
                Lit::Range(start * DAY_MS, end * DAY_MS)
            }
            (_, FieldType::Date) => return Err(wrong("date")),
            (_, FieldType::DateTime) => return Err(wrong("dateTime")),
            (
                _,
                FieldType::Double(..)
                | FieldType::Int
                | FieldType::Currency(..)
                | FieldType::Percent(..),
            ) => return Err(wrong("number")),
            _ => return Err(wrong("string")),
        })
    }
}

fn is_text(ty: &FieldType) -> bool {
    matches!(
        ty,
        FieldType::String(_)
            | FieldType::TextArea(_)
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
            | FieldType::Picklist(_)
            | FieldType::AutoNumber(_)
            | FieldType::Id
            | FieldType::Reference(_)
    )
}

fn like_tokens(pattern: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => LikeTok::Char(chars.next().unwrap_or('\\').to_ascii_lowercase()),
            '%' => LikeTok::Any,
            '_' => LikeTok::One,
            c => LikeTok::Char(c.to_lowercase().next().unwrap_or(c)),
        });
    }
    out
}

fn like_match(pattern: &[LikeTok], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((LikeTok::Any, rest)) => (0..=text.len()).any(|skip| like_match(rest, &text[skip..])),
        Some((LikeTok::One, rest)) => !text.is_empty() && like_match(rest, &text[1..]),
        Some((LikeTok::Char(c), rest)) => text.first() == Some(c) && like_match(rest, &text[1..]),
    }
}

/// Follows a bound path from a record to its value (`None` for null or a broken chain).
pub fn resolve<'a>(store: &'a Store, record: &'a Record, path: &BoundPath) -> Option<&'a Value> {
    let mut current = record;
    for (i, (_, field)) in path.hops.iter().enumerate() {
        let next_id = current.get(*field)?.as_str()?;
        let next_obj = path.hops.get(i + 1).map(|h| h.0).unwrap_or(path.object);
        current = store.get(next_obj, next_id)?;
    }
    current.get(path.field)
}

fn compare(value: &Value, lit: &Lit) -> Option<Ordering> {
    match (value, lit) {
        (Value::Str(s), Lit::Str(l)) => Some(s.to_lowercase().as_str().cmp(l.as_str())),
        (Value::Num(n), Lit::Num(l)) => n.partial_cmp(l),
        (Value::Int(n), Lit::Num(l)) => (*n as f64).partial_cmp(l),
        (Value::Bool(b), Lit::Bool(l)) => Some(b.cmp(l)),
        (Value::Date(d), Lit::Date(l)) => Some(d.cmp(l)),
        (Value::DateTime(t), Lit::DateTime(l)) => Some(t.cmp(l)),
        _ => None,
    }
}

fn ms_of(value: &Value) -> Option<i64> {
    match value {
        Value::Date(d) => Some(i64::from(*d) * DAY_MS),
        Value::DateTime(t) => Some(*t),
        _ => None,
    }
}

fn eval_cmp(value: Option<&Value>, op: &str, lit: &Lit) -> bool {
    match (value, lit) {
        (None, Lit::Null) => op == "=",
        (Some(_), Lit::Null) => op == "!=",
        (None, _) => op == "!=",
        (Some(v), Lit::Range(start, end)) => {
            let Some(t) = ms_of(v) else { return false };
            match op {
                "=" => t >= *start && t < *end,
                "!=" => !(t >= *start && t < *end),
                "<" => t < *start,
                "<=" => t < *end,
                ">" => t >= *end,
                ">=" => t >= *start,
                _ => false,
            }
        }
        (Some(v), lit) => match compare(v, lit) {
            None => op == "!=",
            Some(ord) => match op {
                "=" => ord == Ordering::Equal,
                "!=" => ord != Ordering::Equal,
                "<" => ord == Ordering::Less,
                "<=" => ord != Ordering::Greater,
                ">" => ord == Ordering::Greater,
                ">=" => ord != Ordering::Less,
                _ => false,
            },
        },
    }
}

fn eval(store: &Store, record: &Record, pred: &Pred) -> bool {
    match pred {
        Pred::And(items) => items.iter().all(|p| eval(store, record, p)),
        Pred::Or(items) => items.iter().any(|p| eval(store, record, p)),
        Pred::Not(inner) => !eval(store, record, inner),
        Pred::Cmp(path, op, lit) => eval_cmp(resolve(store, record, path), op, lit),
        Pred::In(path, negated, lits) => {
            let value = resolve(store, record, path);
            let hit = lits.iter().any(|l| eval_cmp(value, "=", l));
            hit != *negated
        }
        Pred::Like(path, pattern) => match resolve(store, record, path).and_then(Value::as_str) {
            Some(text) => {
                let chars: Vec<char> = text.to_lowercase().chars().collect();
                like_match(pattern, &chars)
            }
            None => false,
        },
    }
}

fn order_cmp(a: Option<&Value>, b: Option<&Value>, desc: bool, nulls_first: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (Some(_), None) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Some(x), Some(y)) => {
            let ord = match (x, y) {
                (Value::Str(s), Value::Str(t)) => s.to_lowercase().cmp(&t.to_lowercase()),
                (Value::Num(m), Value::Num(n)) => m.partial_cmp(n).unwrap_or(Ordering::Equal),
                (Value::Int(m), Value::Int(n)) => m.cmp(n),
                (Value::Bool(m), Value::Bool(n)) => m.cmp(n),
                (Value::Date(m), Value::Date(n)) => m.cmp(n),
                (Value::DateTime(m), Value::DateTime(n)) => m.cmp(n),
                _ => Ordering::Equal,
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        }
    }
}

/// Runs a query: the matching record ids in result order. `all_rows`
/// includes recycle-bin records (`queryAll`).
pub fn execute(store: &Store, query: &Query, all_rows: bool) -> Vec<Box<str>> {
    let deleted = store.schema.objects[query.object]
        .field_idx("IsDeleted")
        .unwrap_or(usize::MAX);
    let table = &store.tables[query.object];
    let mut rows: Vec<&Record> = table
        .records
        .values()
        .filter(|r| all_rows || !r.is_deleted(deleted))
        .filter(|r| query.filter.as_ref().is_none_or(|p| eval(store, r, p)))
        .collect();
    if !query.order.is_empty() {
        rows.sort_by(|a, b| {
            for (path, desc, nulls_first) in &query.order {
                let ord = order_cmp(
                    resolve(store, a, path),
                    resolve(store, b, path),
                    *desc,
                    *nulls_first,
                );
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(usize::MAX);
    rows.into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| r.id.clone())
        .collect()
}

/// Renders one row as REST JSON: `attributes` first, then the selected
/// fields in SELECT order, parent relationships as nested objects (or `null`).
pub fn render_json(
    store: &Store,
    version: &str,
    object: usize,
    record: &Record,
    fields: &[BoundPath],
    out: &mut String,
) {
    render_level(store, version, object, record, fields, 0, out);
}

fn render_level(
    store: &Store,
    version: &str,
    object: usize,
    record: &Record,
    fields: &[BoundPath],
    depth: usize,
    out: &mut String,
) {
    let name = &store.schema.objects[object].name;
    out.push_str(&format!("{{\"attributes\":{{\"type\":\"{name}\",\"url\":\"/services/data/v{version}/sobjects/{name}/{}\"}}", record.id));
    let mut done_rels: Vec<&str> = Vec::new();
    for path in fields {
        if path.hops.len() == depth {
            out.push_str(&format!(",\"{}\":", path.segments[depth]));
            record
                .get(path.field)
                .unwrap_or(&Value::Null)
                .write_json(out);
        } else {
            let rel = path.segments[depth].as_str();
            if done_rels.contains(&rel) {
                continue;
            }
            done_rels.push(rel);
            let sub: Vec<BoundPath> = fields
                .iter()
                .filter(|p| p.hops.len() > depth && p.segments[depth] == rel)
                .cloned()
                .collect();
            let (_, ref_field) = path.hops[depth];
            let target_obj = path.hops.get(depth + 1).map(|h| h.0).unwrap_or(path.object);
            out.push_str(&format!(",\"{rel}\":"));
            match record
                .get(ref_field)
                .and_then(Value::as_str)
                .and_then(|id| store.get(target_obj, id))
            {
                Some(parent) => {
                    render_level(store, version, target_obj, parent, &sub, depth + 1, out)
                }
                None => out.push_str("null"),
            }
        }
    }
    out.push('}');
}
