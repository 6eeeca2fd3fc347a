//! winnow grammar for `$filter` text into an untyped tree ([`Raw`]); meaning is assigned in `lower`.
//!
//! Precedence follows ODataLib: `or` < `and` < comparison < unary `not` < primary. Arithmetic operators are
//! recognised only to reject them. Nesting depth is capped so hostile input cannot overflow the stack.

use std::cell::Cell;

use winnow::combinator::{alt, cut_err, delimited, not, opt, preceded, separated, terminated};
use winnow::error::{ContextError, ErrMode, StrContext};
use winnow::prelude::*;
use winnow::stream::LocatingSlice;
use winnow::token::{one_of, take_while};

use crate::error::{ODataError, char_position};
use crate::literal::{Input, Literal, UNTERMINATED_STRING, keyword, literal, literal_list};

/// Deepest nesting of parentheses, `not` and function calls accepted.
pub const MAX_DEPTH: usize = 100;

const EXPRESSION_EXPECTED: &str = "expression expected";
const CLOSE_PAREN_OR_OPERATOR: &str = "')' or operator expected";
const CLOSE_PAREN_OR_COMMA: &str = "')' or ',' expected";
const TOO_DEEP: &str = "too deep";
const ARITHMETIC: &str = "arithmetic";

/// Syntax tree before binding: no types, no knowledge of Dataverse functions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Literal(Literal),
    List(Vec<Literal>),
    /// `name` or a navigation path `a/b`.
    Path(Vec<String>),
    /// `@p1` (name without `@`).
    Alias(String),
    /// `f(a, b)` or `F(Name=value, ...)`; named arguments carry their name.
    Call {
        name: String,
        args: Vec<(Option<String>, Raw)>,
    },
    /// `path/any(...)` / `path/all(...)`.
    Lambda {
        path: Vec<String>,
        kind: String,
    },
    Not(Box<Raw>),
    Or(Vec<Raw>),
    And(Vec<Raw>),
    Compare(CompareOp, Box<Raw>, Box<Raw>),
}

/// Comparison operators of `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Decrements the nesting depth when a nested parser returns, on every path.
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        DEPTH.with(|d| {
            if d.get() >= MAX_DEPTH {
                None
            } else {
                d.set(d.get() + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn too_deep() -> ErrMode<ContextError> {
    let mut e = ContextError::new();
    e.push(StrContext::Label(TOO_DEEP));
    ErrMode::Cut(e)
}

fn ws0<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    take_while(0.., [' ', '\t', '\r', '\n']).parse_next(i)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `name` or a dotted qualified name such as `Microsoft.Dynamics.CRM.In`.
pub(crate) fn identifier<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    (
        one_of(is_ident_start),
        take_while(0.., is_ident_char),
        winnow::combinator::repeat::<_, _, (), _, _>(
            0..,
            ('.', one_of(is_ident_start), take_while(0.., is_ident_char)),
        ),
    )
        .take()
        .parse_next(i)
}

/// Parses a complete `$filter` value into a [`Raw`] tree.
pub(crate) fn parse(text: &str) -> Result<Raw, ODataError> {
    DEPTH.with(|d| d.set(0));
    delimited(
        ws0,
        or_expr.context(StrContext::Label(EXPRESSION_EXPECTED)),
        ws0,
    )
    .parse(LocatingSlice::new(text))
    .map_err(|e| syntax_error(text, e.offset(), e.inner()))
}

/// Parses the value of a parameter alias: a literal, a collection or a property path.
pub(crate) fn parse_alias_value(text: &str) -> Result<Raw, ODataError> {
    DEPTH.with(|d| d.set(0));
    delimited(ws0, alt((literal_list.map(Raw::List), or_expr)), ws0)
        .parse(LocatingSlice::new(text))
        .map_err(|e| syntax_error(text, e.offset(), e.inner()))
}

fn syntax_error(text: &str, offset: usize, error: &ContextError) -> ODataError {
    let pos = char_position(text, offset);
    let label = error.context().find_map(|c| match c {
        StrContext::Label(l) => Some(*l),
        _ => None,
    });
    match label {
        Some(UNTERMINATED_STRING) => ODataError::query(format!(
            "There is an unterminated string literal at position {pos} in '{text}'."
        )),
        Some(EXPRESSION_EXPECTED) => ODataError::query(format!(
            "Expression expected at position {pos} in '{text}'."
        )),
        Some(CLOSE_PAREN_OR_OPERATOR) => ODataError::query(format!(
            "')' or operator expected at position {pos} in '{text}'."
        )),
        Some(CLOSE_PAREN_OR_COMMA) => ODataError::query(format!(
            "')' or ',' expected at position {pos} in '{text}'."
        )),
        Some(TOO_DEEP) => ODataError::query("Recursion depth exceeded allowed limit."),
        Some(ARITHMETIC) => ODataError::query(format!(
            "Arithmetic operators are not supported in $filter (position {pos} in '{text}')."
        )),
        _ => match text
            .get(offset.min(text.len())..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) if is_invalid_character(c) => ODataError::query(format!(
                "Syntax error: character '{c}' is not valid at position {pos} in '{text}'."
            )),
            _ => ODataError::syntax_error(pos, text),
        },
    }
}

/// Characters ODataLib's lexer cannot start any token with.
fn is_invalid_character(c: char) -> bool {
    matches!(
        c,
        '&' | '#' | '!' | '^' | '|' | '~' | '`' | '\\' | ';' | '<' | '>' | '%'
    ) || c.is_control()
}

fn or_expr(i: &mut Input<'_>) -> ModalResult<Raw> {
    let first = and_expr.parse_next(i)?;
    let rest: Vec<Raw> = winnow::combinator::repeat(
        0..,
        preceded(
            (ws0, keyword("or"), ws0),
            cut_err(and_expr).context(StrContext::Label(EXPRESSION_EXPECTED)),
        ),
    )
    .parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        Raw::Or(std::iter::once(first).chain(rest).collect())
    })
}

fn and_expr(i: &mut Input<'_>) -> ModalResult<Raw> {
    let first = comparison.parse_next(i)?;
    let rest: Vec<Raw> = winnow::combinator::repeat(
        0..,
        preceded(
            (ws0, keyword("and"), ws0),
            cut_err(comparison).context(StrContext::Label(EXPRESSION_EXPECTED)),
        ),
    )
    .parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        Raw::And(std::iter::once(first).chain(rest).collect())
    })
}

fn compare_op(i: &mut Input<'_>) -> ModalResult<CompareOp> {
    alt((
        keyword("eq").value(CompareOp::Eq),
        keyword("ne").value(CompareOp::Ne),
        keyword("gt").value(CompareOp::Gt),
        keyword("ge").value(CompareOp::Ge),
        keyword("lt").value(CompareOp::Lt),
        keyword("le").value(CompareOp::Le),
    ))
    .parse_next(i)
}

/// One optional comparison: chains like `a eq b eq c` are not meaningful in Dataverse.
fn comparison(i: &mut Input<'_>) -> ModalResult<Raw> {
    let left = unary.parse_next(i)?;
    reject_arithmetic.parse_next(i)?;
    let Some(op) = opt(preceded(ws0, compare_op)).parse_next(i)? else {
        return Ok(left);
    };
    let right = preceded(
        ws0,
        cut_err(unary).context(StrContext::Label(EXPRESSION_EXPECTED)),
    )
    .parse_next(i)?;
    reject_arithmetic.parse_next(i)?;
    Ok(Raw::Compare(op, Box::new(left), Box::new(right)))
}

fn reject_arithmetic(i: &mut Input<'_>) -> ModalResult<()> {
    let arithmetic = opt(preceded(
        ws0,
        alt((
            keyword("add"),
            keyword("sub"),
            keyword("mul"),
            keyword("divby"),
            keyword("div"),
            keyword("mod"),
        )),
    ))
    .parse_next(i)?;
    if arithmetic.is_some() {
        let mut e = ContextError::new();
        e.push(StrContext::Label(ARITHMETIC));
        return Err(ErrMode::Cut(e));
    }
    Ok(())
}

fn unary(i: &mut Input<'_>) -> ModalResult<Raw> {
    let negated = opt(terminated(keyword("not"), ws0)).parse_next(i)?;
    match negated {
        Some(_) => {
            let _guard = DepthGuard::enter().ok_or_else(too_deep)?;
            cut_err(unary)
                .context(StrContext::Label(EXPRESSION_EXPECTED))
                .map(|r| Raw::Not(Box::new(r)))
                .parse_next(i)
        }
        None => primary.parse_next(i),
    }
}

fn primary(i: &mut Input<'_>) -> ModalResult<Raw> {
    alt((
        parenthesised,
        preceded('@', identifier).map(|n: &str| Raw::Alias(n.to_owned())),
        literal_list.map(Raw::List),
        literal.map(Raw::Literal),
        call_or_path,
    ))
    .parse_next(i)
}

fn parenthesised(i: &mut Input<'_>) -> ModalResult<Raw> {
    '('.parse_next(i)?;
    let _guard = DepthGuard::enter().ok_or_else(too_deep)?;
    let inner = preceded(
        ws0,
        cut_err(or_expr).context(StrContext::Label(EXPRESSION_EXPECTED)),
    )
    .parse_next(i)?;
    preceded(ws0, cut_err(')'))
        .context(StrContext::Label(CLOSE_PAREN_OR_OPERATOR))
        .parse_next(i)?;
    Ok(inner)
}

fn call_or_path(i: &mut Input<'_>) -> ModalResult<Raw> {
    let segments: Vec<&str> = separated(1.., identifier, '/').parse_next(i)?;
    let opens = opt('(').parse_next(i)?.is_some();
    let mut path: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
    if !opens {
        return Ok(Raw::Path(path));
    }
    let _guard = DepthGuard::enter().ok_or_else(too_deep)?;
    let last = path.last().cloned().unwrap_or_default();
    if path.len() > 1 && (last == "any" || last == "all") {
        // Lambda body `t:t/x eq 1` (or empty for `any()`); parsed only to be rejected while binding.
        let _body = opt(preceded(ws0, (identifier, ws0, ':', ws0, or_expr))).parse_next(i)?;
        preceded(ws0, cut_err(')'))
            .context(StrContext::Label(CLOSE_PAREN_OR_OPERATOR))
            .parse_next(i)?;
        path.pop();
        return Ok(Raw::Lambda { path, kind: last });
    }
    let args: Vec<(Option<String>, Raw)> =
        separated(0.., delimited(ws0, argument, ws0), ',').parse_next(i)?;
    cut_err(')')
        .context(StrContext::Label(CLOSE_PAREN_OR_COMMA))
        .parse_next(i)?;
    Ok(Raw::Call {
        name: path.join("/"),
        args,
    })
}

fn argument(i: &mut Input<'_>) -> ModalResult<(Option<String>, Raw)> {
    let name = opt(terminated(identifier, (ws0, '=', not('='), ws0))).parse_next(i)?;
    let value = match name {
        Some(_) => cut_err(alt((literal_list.map(Raw::List), or_expr)))
            .context(StrContext::Label(EXPRESSION_EXPECTED))
            .parse_next(i)?,
        None => or_expr.parse_next(i)?,
    };
    Ok((name.map(str::to_owned), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Raw {
        Raw::Path(p.split('/').map(str::to_owned).collect())
    }

    #[test]
    fn precedence_not_binds_tighter_than_and_than_or() {
        let raw = parse("not a eq 1 and b or c").unwrap();
        assert_eq!(
            raw,
            Raw::Or(vec![
                Raw::And(vec![
                    Raw::Compare(
                        CompareOp::Eq,
                        Box::new(Raw::Not(Box::new(path("a")))),
                        Box::new(Raw::Literal(Literal::Int(1)))
                    ),
                    path("b"),
                ]),
                path("c"),
            ])
        );
    }

    #[test]
    fn calls_and_named_arguments() {
        let raw =
            parse("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[\"a\",\"b\"])")
                .unwrap();
        assert_eq!(
            raw,
            Raw::Call {
                name: "Microsoft.Dynamics.CRM.In".into(),
                args: vec![
                    (
                        Some("PropertyName".into()),
                        Raw::Literal(Literal::String("name".into()))
                    ),
                    (
                        Some("PropertyValues".into()),
                        Raw::List(vec![
                            Literal::String("a".into()),
                            Literal::String("b".into())
                        ])
                    ),
                ],
            }
        );
    }

    #[test]
    fn lambdas_and_paths() {
        assert_eq!(
            parse("Account_Tasks/any(t:t/statecode eq 1)").unwrap(),
            Raw::Lambda {
                path: vec!["Account_Tasks".into()],
                kind: "any".into()
            }
        );
        assert_eq!(
            parse("a/any()").unwrap(),
            Raw::Lambda {
                path: vec!["a".into()],
                kind: "any".into()
            }
        );
        assert_eq!(
            parse("primarycontactid/fullname").unwrap(),
            path("primarycontactid/fullname")
        );
    }

    #[test]
    fn depth_is_capped() {
        let deep = format!(
            "{}a eq 1{}",
            "(".repeat(MAX_DEPTH + 5),
            ")".repeat(MAX_DEPTH + 5)
        );
        assert_eq!(
            parse(&deep).unwrap_err().message,
            "Recursion depth exceeded allowed limit."
        );
        let ok = format!(
            "{}a eq 1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        let nots = format!("{}a", "not ".repeat(10_000));
        assert_eq!(
            parse(&nots).unwrap_err().message,
            "Recursion depth exceeded allowed limit."
        );
    }
}
