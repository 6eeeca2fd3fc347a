//! Binding: turns the untyped [`Raw`] tree into an [`Expr`], resolving parameter aliases and rejecting
//! what Dataverse (or this emulator) does not accept, with the service's messages.

use super::condition::{Arity, Condition, ConditionOperator, FUNCTION_NAMESPACE};
use super::grammar::{Raw, parse_alias_value};
use super::{Aliases, Expr, Operand, TextFunction};
use crate::error::ODataError;
use crate::literal::Literal;

/// ODataLib's built-in functions: valid OData, but Dataverse does not support them in `$filter`.
const ODATA_BUILTINS: &[&str] = &[
    "tolower",
    "toupper",
    "trim",
    "length",
    "indexof",
    "substring",
    "concat",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "fractionalseconds",
    "date",
    "time",
    "now",
    "round",
    "floor",
    "ceiling",
    "cast",
    "isof",
    "totaloffsetminutes",
    "totalseconds",
    "maxdatetime",
    "mindatetime",
    "matchesPattern",
    "hassubset",
    "hassubsequence",
    "geo.distance",
    "geo.intersects",
    "geo.length",
];

pub(crate) const NOT_WITH_CONDITION: &str =
    "Not operator along with the Custom Named Condition operators is not allowed";

pub(crate) struct Binder<'a> {
    pub(crate) aliases: &'a Aliases,
}

fn unknown_function(name: &str) -> ODataError {
    ODataError::query(format!(
        "An unknown function with name '{name}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
    ))
}

fn no_signature(name: &str) -> ODataError {
    ODataError::query(format!(
        "No function signature for the function with name '{name}' matches the specified arguments."
    ))
}

fn not_single_boolean() -> ODataError {
    ODataError::query("The $filter expression must evaluate to a single boolean value.")
}

impl Binder<'_> {
    /// Looks up `@name` (query keys carry the `@`); a missing alias is null, as OData specifies.
    fn alias(&self, name: &str) -> Result<Raw, ODataError> {
        let raw = self
            .aliases
            .get(&format!("@{name}"))
            .or_else(|| self.aliases.get(name));
        match raw {
            None => Ok(Raw::Literal(Literal::Null)),
            Some(text) => match parse_alias_value(text)? {
                Raw::Alias(_) => Err(ODataError::query(format!(
                    "The parameter alias '@{name}' refers to another parameter alias, which is not supported."
                ))),
                other => Ok(other),
            },
        }
    }

    fn resolve(&self, raw: Raw) -> Result<Raw, ODataError> {
        match raw {
            Raw::Alias(name) => self.alias(&name),
            other => Ok(other),
        }
    }

    /// Binds an expression that must be boolean (the whole filter or an operand of `and`/`or`/`not`).
    pub(crate) fn boolean(&self, raw: Raw) -> Result<Expr, ODataError> {
        match self.resolve(raw)? {
            Raw::Or(items) => Ok(Expr::Or(
                items
                    .into_iter()
                    .map(|r| self.boolean(r))
                    .collect::<Result<_, _>>()?,
            )),
            Raw::And(items) => Ok(Expr::And(
                items
                    .into_iter()
                    .map(|r| self.boolean(r))
                    .collect::<Result<_, _>>()?,
            )),
            Raw::Not(inner) => match self.boolean(*inner)? {
                Expr::Condition(_) => Err(ODataError::query(NOT_WITH_CONDITION)),
                e => Ok(Expr::Not(Box::new(e))),
            },
            Raw::Compare(op, l, r) => Ok(Expr::Compare {
                op,
                left: self.operand(*l)?,
                right: self.operand(*r)?,
            }),
            Raw::Literal(Literal::Bool(b)) => Ok(Expr::Const(b)),
            Raw::Literal(_) | Raw::List(_) => Err(not_single_boolean()),
            // A bare boolean column: `isdisabled` means `isdisabled eq true`.
            Raw::Path(path) => Ok(Expr::Compare {
                op: super::CompareOp::Eq,
                left: Operand::Column(single_column(path)?),
                right: Operand::Literal(Literal::Bool(true)),
            }),
            Raw::Call { name, args } => self.call(&name, args),
            Raw::Lambda { path, kind } => Err(ODataError::query(format!(
                "The lambda operator '{kind}' on '{}' is not supported by this emulator.",
                path.join("/")
            ))),
            Raw::Alias(_) => Err(not_single_boolean()),
        }
    }

    /// Binds a comparison operand: a column or a literal.
    fn operand(&self, raw: Raw) -> Result<Operand, ODataError> {
        match self.resolve(raw)? {
            Raw::Literal(l) => Ok(Operand::Literal(l)),
            Raw::Path(path) => Ok(Operand::Column(single_column(path)?)),
            Raw::Call { name, .. } if self.is_known_boolean_function(&name) => {
                Err(ODataError::query(format!(
                    "The function '{name}' cannot be used as an operand of a comparison."
                )))
            }
            Raw::Call { name, .. } => self.unsupported_function(&name),
            Raw::Lambda { path, kind } => Err(ODataError::query(format!(
                "The lambda operator '{kind}' on '{}' is not supported by this emulator.",
                path.join("/")
            ))),
            Raw::List(_) => Err(ODataError::query(
                "A collection literal cannot be used in a comparison.",
            )),
            Raw::Not(_) | Raw::And(_) | Raw::Or(_) | Raw::Compare(..) | Raw::Alias(_) => {
                Err(ODataError::query(
                    "A binary operator with incompatible types was detected. Found operand type 'Edm.Boolean' where a property or literal was expected.",
                ))
            }
        }
    }

    fn is_known_boolean_function(&self, name: &str) -> bool {
        TextFunction::from_name(name).is_some()
            || name
                .strip_prefix(FUNCTION_NAMESPACE)
                .and_then(ConditionOperator::from_name)
                .is_some()
    }

    fn unsupported_function<T>(&self, name: &str) -> Result<T, ODataError> {
        if ODATA_BUILTINS.contains(&name) {
            Err(ODataError::query(format!(
                "The '{name}' function is not supported."
            )))
        } else {
            Err(unknown_function(name))
        }
    }

    fn call(&self, name: &str, args: Vec<(Option<String>, Raw)>) -> Result<Expr, ODataError> {
        if let Some(function) = TextFunction::from_name(name) {
            return self.text_function(function, name, args);
        }
        if let Some(short) = name.strip_prefix(FUNCTION_NAMESPACE) {
            return match ConditionOperator::from_name(short) {
                Some(op) => self.condition(op, name, args),
                None => Err(unknown_function(name)),
            };
        }
        self.unsupported_function(name)
    }

    fn text_function(
        &self,
        function: TextFunction,
        name: &str,
        args: Vec<(Option<String>, Raw)>,
    ) -> Result<Expr, ODataError> {
        let mut args = args.into_iter();
        let (Some((None, column)), Some((None, value)), None) =
            (args.next(), args.next(), args.next())
        else {
            return Err(no_signature(name));
        };
        let column = match self.resolve(column)? {
            Raw::Path(path) => single_column(path)?,
            _ => return Err(no_signature(name)),
        };
        match self.resolve(value)? {
            Raw::Literal(Literal::String(pattern)) => Ok(Expr::Text {
                function,
                column,
                pattern,
            }),
            _ => Err(no_signature(name)),
        }
    }

    fn condition(
        &self,
        operator: ConditionOperator,
        name: &str,
        args: Vec<(Option<String>, Raw)>,
    ) -> Result<Expr, ODataError> {
        let mut column = None;
        let mut value = None;
        let mut values = None;
        for (arg_name, raw) in args {
            let raw = self.resolve(raw)?;
            match (arg_name.as_deref(), raw) {
                (Some("PropertyName"), Raw::Literal(Literal::String(c))) if column.is_none() => {
                    column = Some(c)
                }
                (Some("PropertyValue"), Raw::Literal(l)) if value.is_none() => value = Some(l),
                (Some("PropertyValues"), Raw::List(l)) if values.is_none() => values = Some(l),
                _ => return Err(no_signature(name)),
            }
        }
        let column = column
            .filter(|c| is_simple_identifier(c))
            .ok_or_else(|| no_signature(name))?;
        let values = match (operator.arity(), value, values) {
            (Arity::None, None, None) => Vec::new(),
            (Arity::Count, Some(v), None) => match &v {
                Literal::Int(n) if *n >= 0 => vec![v],
                Literal::String(s) if s.trim().parse::<u32>().is_ok() => vec![v],
                _ => return Err(no_signature(name)),
            },
            (Arity::Date, Some(v), None) => {
                if crate::compare::Scalar::from_literal(&v).as_date().is_none() {
                    return Err(no_signature(name));
                }
                vec![v]
            }
            (Arity::List, None, Some(l)) if !l.is_empty() => l,
            (Arity::Pair, None, Some(l)) if l.len() == 2 => l,
            _ => return Err(no_signature(name)),
        };
        Ok(Expr::Condition(Condition {
            operator,
            column,
            values,
        }))
    }
}

fn is_simple_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A property reference: navigation paths (`a/b`) are valid OData but not supported here.
fn single_column(mut path: Vec<String>) -> Result<String, ODataError> {
    if path.len() == 1 {
        let name = path.pop().unwrap_or_default();
        if name.contains('.') {
            return Err(ODataError::query(format!(
                "The type cast or qualified name '{name}' is not supported in $filter."
            )));
        }
        return Ok(name);
    }
    Err(ODataError::query(format!(
        "Navigation property paths such as '{}' are not supported in $filter by this emulator.",
        path.join("/")
    )))
}
