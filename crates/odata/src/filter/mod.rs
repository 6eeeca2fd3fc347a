//! `$filter`: parse (winnow grammar), bind (aliases, Dataverse query functions) and evaluate against JSON rows.
//!
//! Parsing never consults entity metadata: [`Expr::columns`] lists every referenced property so the
//! caller can reject unknown ones with [`ODataError::property_not_found`].

mod condition;
mod grammar;
mod lower;
mod pattern;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use condition::{Condition, ConditionOperator, FUNCTION_NAMESPACE};
pub use grammar::CompareOp;
pub use grammar::MAX_DEPTH as MAX_NESTING;
pub(crate) use grammar::identifier;

use crate::compare::{Scalar, compare, equals};
use crate::error::ODataError;
use crate::literal::Literal;
use pattern::Pattern;

/// Parameter aliases from the query string, keyed as they appear there (`"@p1"` → `"'modifiedon'"`).
pub type Aliases = BTreeMap<String, String>;

/// The message Dataverse returns when `not` wraps a query function.
pub const NOT_WITH_CONDITION_MESSAGE: &str = lower::NOT_WITH_CONDITION;

/// A bound `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `true` / `false`.
    Const(bool),
    /// All operands hold (flattened `a and b and c`).
    And(Vec<Expr>),
    /// Any operand holds.
    Or(Vec<Expr>),
    /// `not x` (never wrapping a [`Expr::Condition`]).
    Not(Box<Expr>),
    /// `left op right`; each side a column of the same row or a literal.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left operand.
        left: Operand,
        /// Right operand.
        right: Operand,
    },
    /// `contains(column,'v')`, `startswith`, `endswith`, with SQL `LIKE` wildcards honoured in `v`.
    Text {
        /// Which function.
        function: TextFunction,
        /// The column searched.
        column: String,
        /// The raw value (may contain `%`, `_`, `[...]`).
        pattern: String,
    },
    /// A Dataverse query function.
    Condition(Condition),
}

/// A comparison operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property of the row (`name`, `_parentcustomerid_value`).
    Column(String),
    /// A literal.
    Literal(Literal),
}

/// The string-matching functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFunction {
    /// `contains`
    Contains,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
}

impl TextFunction {
    fn from_name(name: &str) -> Option<TextFunction> {
        match name {
            "contains" => Some(TextFunction::Contains),
            "startswith" => Some(TextFunction::StartsWith),
            "endswith" => Some(TextFunction::EndsWith),
            _ => None,
        }
    }
}

/// What evaluation needs from outside the row: the clock and the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalContext {
    /// "Now" for relative date functions (UTC; the real service uses the user's time zone).
    pub now: DateTime<Utc>,
    /// The calling user's `systemuserid` (for `EqualUserId`/`NotEqualUserId`).
    pub user_id: Option<Uuid>,
    /// The calling user's business unit (for `EqualBusinessId`/`NotEqualBusinessId`).
    pub business_unit_id: Option<Uuid>,
}

impl EvalContext {
    /// A context at `now` with no caller.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            user_id: None,
            business_unit_id: None,
        }
    }
}

/// Parses and binds a `$filter` value (already percent-decoded).
///
/// Errors are 400 `0x80060888` with ODataLib/Dataverse wording (syntax positions, unknown functions,
/// `not` around a query function, unsupported lambdas/navigation paths/arithmetic).
pub fn parse_filter(input: &str, aliases: &Aliases) -> Result<Expr, ODataError> {
    let raw = grammar::parse(input)?;
    lower::Binder { aliases }.boolean(raw)
}

impl Expr {
    /// Every property the expression references.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.collect_columns(out)),
            Expr::Not(e) => e.collect_columns(out),
            Expr::Compare { left, right, .. } => {
                for side in [left, right] {
                    if let Operand::Column(c) = side {
                        out.insert(c.clone());
                    }
                }
            }
            Expr::Text { column, .. } => {
                out.insert(column.clone());
            }
            Expr::Condition(c) => {
                out.insert(c.column.clone());
            }
        }
    }

    /// Whether `row` satisfies the expression (missing properties are null).
    pub fn eval(&self, row: &Map<String, Value>, ctx: &EvalContext) -> bool {
        match self {
            Expr::Const(b) => *b,
            Expr::And(items) => items.iter().all(|e| e.eval(row, ctx)),
            Expr::Or(items) => items.iter().any(|e| e.eval(row, ctx)),
            Expr::Not(e) => !e.eval(row, ctx),
            Expr::Compare { op, left, right } => {
                let l = operand_value(left, row);
                let r = operand_value(right, row);
                let ordered = |test: fn(std::cmp::Ordering) -> bool| {
                    !l.is_null() && !r.is_null() && compare(&l, &r).is_some_and(test)
                };
                match op {
                    CompareOp::Eq => equals(&l, &r),
                    CompareOp::Ne => !equals(&l, &r),
                    CompareOp::Gt => ordered(std::cmp::Ordering::is_gt),
                    CompareOp::Ge => ordered(std::cmp::Ordering::is_ge),
                    CompareOp::Lt => ordered(std::cmp::Ordering::is_lt),
                    CompareOp::Le => ordered(std::cmp::Ordering::is_le),
                }
            }
            Expr::Text {
                function,
                column,
                pattern,
            } => {
                let Some(text) = Scalar::from_json(row.get(column)).as_text() else {
                    return false;
                };
                let (lead, trail) = match function {
                    TextFunction::Contains => (true, true),
                    TextFunction::StartsWith => (false, true),
                    TextFunction::EndsWith => (true, false),
                };
                Pattern::new(pattern, lead, trail).matches(&text)
            }
            Expr::Condition(c) => c.eval(&Scalar::from_json(row.get(&c.column)), ctx),
        }
    }
}

fn operand_value<'a>(operand: &'a Operand, row: &'a Map<String, Value>) -> Scalar<'a> {
    match operand {
        Operand::Column(c) => Scalar::from_json(row.get(c)),
        Operand::Literal(l) => Scalar::from_literal(l),
    }
}

#[cfg(test)]
mod tests;
