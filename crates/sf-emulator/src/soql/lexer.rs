//! SOQL tokens with their 1-based column, for Salesforce-style error
//! messages (`ERROR at Row:1:Column:N`).

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword, possibly dotted (`Asset.Name`).
    Ident(String),
    /// Single-quoted string with escapes resolved.
    Str(String),
    /// Number, date or datetime literal text.
    Lit(String),
    /// `,`
    Comma,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `:`
    Colon,
    /// Comparison operator.
    Op(&'static str),
    /// End of input.
    Eof,
}

impl Tok {
    /// The token as Salesforce echoes it in `unexpected token` messages.
    pub fn text(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Lit(s) => s.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Comma => ",".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Colon => ":".into(),
            Tok::Op(op) => (*op).into(),
            Tok::Eof => "<EOF>".into(),
        }
    }

    /// Whether this is the keyword `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

/// A lexing failure at a column.
#[derive(Debug)]
pub struct LexError {
    /// 1-based column.
    pub col: usize,
    /// The offending text.
    pub text: String,
}

/// Splits a query into tokens.
///
/// # Errors
/// An unterminated string or an unknown character.
pub fn lex(query: &str) -> Result<Vec<(Tok, usize)>, LexError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            ',' => {
                out.push((Tok::Comma, col));
                i += 1;
            }
            '(' => {
                out.push((Tok::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Tok::RParen, col));
                i += 1;
            }
            ':' => {
                out.push((Tok::Colon, col));
                i += 1;
            }
            '=' => {
                out.push((Tok::Op("="), col));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push((Tok::Op("!="), col));
                i += 2;
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    out.push((Tok::Op("<="), col));
                    i += 2;
                }
                Some('>') => {
                    out.push((Tok::Op("!="), col));
                    i += 2;
                }
                _ => {
                    out.push((Tok::Op("<"), col));
                    i += 1;
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push((Tok::Op(">="), col));
                    i += 2;
                } else {
                    out.push((Tok::Op(">"), col));
                    i += 1;
                }
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(LexError {
                                col,
                                text: chars[col - 1..].iter().collect(),
                            })
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                // `\%` and `\_` stay escaped for LIKE patterns.
                                Some('%') => {
                                    s.push('\\');
                                    '%'
                                }
                                Some('_') => {
                                    s.push('\\');
                                    '_'
                                }
                                Some(&c) if "'\"\\".contains(c) => c,
                                _ => {
                                    return Err(LexError {
                                        col: i + 1,
                                        text: "\\".into(),
                                    })
                                }
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || ".:-+".contains(chars[i]))
                {
                    // A `:` only belongs to a datetime literal (after `T`).
                    if chars[i] == ':' && !chars[start..i].contains(&'T') {
                        break;
                    }
                    i += 1;
                }
                out.push((Tok::Lit(chars[start..i].iter().collect()), col));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), col));
            }
            other => {
                return Err(LexError {
                    col,
                    text: other.to_string(),
                })
            }
        }
    }
    out.push((Tok::Eof, chars.len() + 1));
    Ok(out)
}
