//! SOQL syntax tree and recursive-descent parser for the subset in reference
//! §2.11. Anything outside it is `MALFORMED_QUERY`, never a guess.

use super::lexer::{lex, Tok};

/// A parse failure: where and what.
#[derive(Debug)]
pub struct SyntaxError {
    /// 1-based column.
    pub col: usize,
    /// The unexpected token text.
    pub token: String,
}

/// A field path as written, with its column.
#[derive(Debug, Clone)]
pub struct PathRef {
    /// Dotted path, e.g. `Asset.Product2.Name`.
    pub path: String,
    /// 1-based column.
    pub col: usize,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Quoted string.
    Str(String),
    /// Number, date or datetime text.
    Raw(String),
    /// Date literal such as `TODAY` or `LAST_N_DAYS:30` (name, n).
    DateLiteral(String, Option<i64>),
}

/// A WHERE condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// All hold.
    And(Vec<Cond>),
    /// Any holds.
    Or(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// `field op literal`.
    Cmp(PathRef, &'static str, Literal, usize),
    /// `field [NOT] IN (...)`.
    In(PathRef, bool, Vec<Literal>, usize),
    /// `field LIKE 'pattern'`.
    Like(PathRef, String),
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Syntax {
    /// `COUNT()` instead of a field list.
    pub count: bool,
    /// Selected paths in order.
    pub fields: Vec<PathRef>,
    /// The FROM object as written, with its column.
    pub object: PathRef,
    /// WHERE condition.
    pub filter: Option<Cond>,
    /// ORDER BY: path, descending, nulls first.
    pub order: Vec<(PathRef, bool, bool)>,
    /// LIMIT.
    pub limit: Option<usize>,
    /// OFFSET.
    pub offset: Option<usize>,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

const DATE_LITERALS: &[&str] = &["TODAY", "YESTERDAY", "TOMORROW"];
const DATE_LITERALS_N: &[&str] = &["LAST_N_DAYS", "NEXT_N_DAYS"];

/// Parses SOQL text.
///
/// # Errors
/// The first unexpected token.
pub fn parse(query: &str) -> Result<Syntax, SyntaxError> {
    let toks = lex(query).map_err(|e| SyntaxError {
        col: e.col,
        token: e.text,
    })?;
    let mut p = Parser { toks, pos: 0 };
    p.query()
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn unexpected<T>(&self) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            col: self.col(),
            token: self.peek().text(),
        })
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), SyntaxError> {
        if self.peek().is_kw(kw) {
            self.bump();
            Ok(())
        } else {
            self.unexpected()
        }
    }
    fn expect(&mut self, tok: &Tok) -> Result<(), SyntaxError> {
        if self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            self.unexpected()
        }
    }
    fn path(&mut self) -> Result<PathRef, SyntaxError> {
        match self.peek().clone() {
            Tok::Ident(s)
                if !is_reserved(&s)
                    && !s.ends_with('.')
                    && !s.starts_with('.')
                    && !s.contains("..") =>
            {
                let col = self.col();
                self.bump();
                Ok(PathRef { path: s, col })
            }
            _ => self.unexpected(),
        }
    }
    fn number(&mut self) -> Result<usize, SyntaxError> {
        match self.peek().clone() {
            Tok::Lit(s) => match s.parse() {
                Ok(n) => {
                    self.bump();
                    Ok(n)
                }
                Err(_) => self.unexpected(),
            },
            _ => self.unexpected(),
        }
    }

    fn query(&mut self) -> Result<Syntax, SyntaxError> {
        self.expect_kw("SELECT")?;
        let mut count = false;
        let mut fields = Vec::new();
        if self.peek().is_kw("COUNT")
            && self.toks.get(self.pos + 1).map(|t| &t.0) == Some(&Tok::LParen)
        {
            self.bump();
            self.bump();
            self.expect(&Tok::RParen)?;
            count = true;
        } else {
            loop {
                fields.push(self.path()?);
                if self.peek() == &Tok::LParen {
                    // Functions (FIELDS(), COUNT(Id), toLabel()...) are outside the subset.
                    return self.unexpected();
                }
                if self.peek() == &Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect_kw("FROM")?;
        let object = self.path()?;
        if object.path.contains('.') {
            return Err(SyntaxError {
                col: object.col,
                token: object.path,
            });
        }
        let filter = if self.peek().is_kw("WHERE") {
            self.bump();
            Some(self.or_cond()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.peek().is_kw("ORDER") {
            self.bump();
            self.expect_kw("BY")?;
            loop {
                let path = self.path()?;
                let mut desc = false;
                if self.peek().is_kw("ASC") {
                    self.bump();
                } else if self.peek().is_kw("DESC") {
                    self.bump();
                    desc = true;
                }
                let mut nulls_first = !desc;
                if self.peek().is_kw("NULLS") {
                    self.bump();
                    if self.peek().is_kw("FIRST") {
                        nulls_first = true;
                    } else if self.peek().is_kw("LAST") {
                        nulls_first = false;
                    } else {
                        return self.unexpected();
                    }
                    self.bump();
                }
                order.push((path, desc, nulls_first));
                if self.peek() == &Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.peek().is_kw("LIMIT") {
            self.bump();
            limit = Some(self.number()?);
        }
        let mut offset = None;
        if self.peek().is_kw("OFFSET") {
            self.bump();
            offset = Some(self.number()?);
        }
        if self.peek() != &Tok::Eof {
            return self.unexpected();
        }
        Ok(Syntax {
            count,
            fields,
            object,
            filter,
            order,
            limit,
            offset,
        })
    }

    /// SOQL forbids mixing AND and OR at one level without parentheses.
    fn or_cond(&mut self) -> Result<Cond, SyntaxError> {
        let first = self.unary()?;
        let mut items = vec![first];
        let mut joiner: Option<&'static str> = None;
        loop {
            let kw = if self.peek().is_kw("AND") {
                "AND"
            } else if self.peek().is_kw("OR") {
                "OR"
            } else {
                break;
            };
            if joiner.is_some_and(|j| j != kw) {
                return self.unexpected();
            }
            joiner = Some(kw);
            self.bump();
            items.push(self.unary()?);
        }
        Ok(match (joiner, items.len()) {
            (_, 1) => items.pop().expect("one item"),
            (Some("OR"), _) => Cond::Or(items),
            _ => Cond::And(items),
        })
    }

    fn unary(&mut self) -> Result<Cond, SyntaxError> {
        if self.peek().is_kw("NOT") {
            self.bump();
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.peek() == &Tok::LParen {
            self.bump();
            let inner = self.or_cond()?;
            self.expect(&Tok::RParen)?;
            return Ok(inner);
        }
        let path = self.path()?;
        let col = self.col();
        if self.peek().is_kw("LIKE") {
            self.bump();
            return match self.bump().0 {
                Tok::Str(s) => Ok(Cond::Like(path, s)),
                _ => {
                    self.pos -= 1;
                    self.unexpected()
                }
            };
        }
        let negated_in = self.peek().is_kw("NOT");
        if negated_in {
            self.bump();
            if !self.peek().is_kw("IN") {
                return self.unexpected();
            }
        }
        if self.peek().is_kw("IN") {
            self.bump();
            self.expect(&Tok::LParen)?;
            let mut values = Vec::new();
            loop {
                values.push(self.literal()?);
                if self.peek() == &Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
            return Ok(Cond::In(path, negated_in, values, col));
        }
        let op = match self.peek() {
            Tok::Op(op) => *op,
            _ => return self.unexpected(),
        };
        self.bump();
        let value_col = self.col();
        let lit = self.literal()?;
        Ok(Cond::Cmp(path, op, lit, value_col))
    }

    fn literal(&mut self) -> Result<Literal, SyntaxError> {
        let (tok, _) = self.bump();
        Ok(match tok {
            Tok::Str(s) => Literal::Str(s),
            Tok::Lit(s) => Literal::Raw(s),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Literal::Null,
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Tok::Ident(s) if DATE_LITERALS.iter().any(|d| d.eq_ignore_ascii_case(&s)) => {
                Literal::DateLiteral(s.to_ascii_uppercase(), None)
            }
            Tok::Ident(s) if DATE_LITERALS_N.iter().any(|d| d.eq_ignore_ascii_case(&s)) => {
                self.expect(&Tok::Colon)?;
                let n = self.number()?;
                Literal::DateLiteral(s.to_ascii_uppercase(), Some(n as i64))
            }
            _ => {
                self.pos -= 1;
                return self.unexpected();
            }
        })
    }
}

fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT",
        "OFFSET", "ASC", "DESC", "NULLS", "GROUP", "HAVING", "NULL", "TRUE", "FALSE", "WITH",
        "FOR", "TYPEOF", "USING", "INCLUDES", "EXCLUDES",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}
