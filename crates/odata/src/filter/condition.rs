//! Dataverse query functions (`Microsoft.Dynamics.CRM.<Name>(PropertyName=..,PropertyValue(s)=..)`), the
//! "Custom Named Condition operators". Relative dates are computed in UTC from [`EvalContext::now`].

use chrono::{DateTime, Datelike, Days, Duration, Months, NaiveDate, Utc};

use super::EvalContext;
use crate::compare::{Scalar, compare, equals};
use crate::literal::Literal;

/// Namespace prefix of the Dataverse query functions.
pub const FUNCTION_NAMESPACE: &str = "Microsoft.Dynamics.CRM.";

/// Which parameters an operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    /// Only `PropertyName`.
    None,
    /// `PropertyValue` = a whole number.
    Count,
    /// `PropertyValue` = a date.
    Date,
    /// `PropertyValues` = a non-empty collection.
    List,
    /// `PropertyValues` = exactly two values.
    Pair,
}

macro_rules! operators {
    ($($name:ident => $arity:ident),* $(,)?) => {
        /// A supported Dataverse query function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ConditionOperator { $(
            #[doc = concat!("`Microsoft.Dynamics.CRM.", stringify!($name), "`")]
            $name,
        )* }

        impl ConditionOperator {
            /// Looks up the unqualified function name (case-sensitive, like the service).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($name) => Some(Self::$name),)* _ => None }
            }

            /// The unqualified function name.
            pub fn name(self) -> &'static str {
                match self { $(Self::$name => stringify!($name),)* }
            }

            pub(crate) fn arity(self) -> Arity {
                match self { $(Self::$name => Arity::$arity,)* }
            }
        }
    };
}

operators! {
    In => List, NotIn => List, Between => Pair, NotBetween => Pair,
    On => Date, NotOn => Date, OnOrAfter => Date, OnOrBefore => Date,
    LastXMinutes => Count, LastXHours => Count, LastXDays => Count, LastXWeeks => Count, LastXMonths => Count,
    LastXYears => Count,
    NextXMinutes => Count, NextXHours => Count, NextXDays => Count, NextXWeeks => Count, NextXMonths => Count,
    NextXYears => Count,
    OlderThanXMinutes => Count, OlderThanXHours => Count, OlderThanXDays => Count, OlderThanXWeeks => Count,
    OlderThanXMonths => Count, OlderThanXYears => Count,
    Today => None, Yesterday => None, Tomorrow => None, Last7Days => None, Next7Days => None,
    ThisWeek => None, LastWeek => None, NextWeek => None, ThisMonth => None, LastMonth => None, NextMonth => None,
    ThisYear => None, LastYear => None, NextYear => None,
    EqualUserId => None, NotEqualUserId => None, EqualBusinessId => None, NotEqualBusinessId => None,
}

/// A bound query-function condition on one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The function.
    pub operator: ConditionOperator,
    /// `PropertyName`.
    pub column: String,
    /// `PropertyValue` (one element) or `PropertyValues`; empty for operators without values.
    pub values: Vec<Literal>,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map_or(DateTime::<Utc>::MIN_UTC, |n| n.and_utc())
}

fn week_start(d: NaiveDate) -> NaiveDate {
    d - Days::new(u64::from(d.weekday().num_days_from_sunday()))
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn year_start(d: NaiveDate) -> NaiveDate {
    d.with_ordinal(1).unwrap_or(d)
}

/// `[from, to)` as instants; `None` when the calendar arithmetic overflows.
type Window = Option<(DateTime<Utc>, DateTime<Utc>)>;

fn shift(
    now: DateTime<Utc>,
    op: ConditionOperator,
    n: i64,
    forward: bool,
) -> Option<DateTime<Utc>> {
    use ConditionOperator::*;
    let months = |m: i64| -> Option<DateTime<Utc>> {
        let m = Months::new(u32::try_from(m).ok()?);
        if forward {
            now.checked_add_months(m)
        } else {
            now.checked_sub_months(m)
        }
    };
    let dur = |d: Option<Duration>| -> Option<DateTime<Utc>> {
        let d = d?;
        if forward {
            now.checked_add_signed(d)
        } else {
            now.checked_sub_signed(d)
        }
    };
    match op {
        LastXMinutes | NextXMinutes | OlderThanXMinutes => dur(Duration::try_minutes(n)),
        LastXHours | NextXHours | OlderThanXHours => dur(Duration::try_hours(n)),
        LastXDays | NextXDays | OlderThanXDays => dur(Duration::try_days(n)),
        LastXWeeks | NextXWeeks | OlderThanXWeeks => dur(Duration::try_weeks(n)),
        LastXMonths | NextXMonths | OlderThanXMonths => months(n),
        LastXYears | NextXYears | OlderThanXYears => months(n.checked_mul(12)?),
        _ => None,
    }
}

fn fixed_window(op: ConditionOperator, today: NaiveDate) -> Window {
    use ConditionOperator::*;
    let day = |d: NaiveDate| Some((midnight(d), midnight(d.succ_opt()?)));
    match op {
        Today => day(today),
        Yesterday => day(today.pred_opt()?),
        Tomorrow => day(today.succ_opt()?),
        ThisWeek => {
            let s = week_start(today);
            Some((midnight(s), midnight(s + Days::new(7))))
        }
        LastWeek => {
            let s = week_start(today) - Days::new(7);
            Some((midnight(s), midnight(s + Days::new(7))))
        }
        NextWeek => {
            let s = week_start(today) + Days::new(7);
            Some((midnight(s), midnight(s + Days::new(7))))
        }
        ThisMonth => {
            let s = month_start(today);
            Some((midnight(s), midnight(s.checked_add_months(Months::new(1))?)))
        }
        LastMonth => {
            let s = month_start(today).checked_sub_months(Months::new(1))?;
            Some((midnight(s), midnight(month_start(today))))
        }
        NextMonth => {
            let s = month_start(today).checked_add_months(Months::new(1))?;
            Some((midnight(s), midnight(s.checked_add_months(Months::new(1))?)))
        }
        ThisYear => {
            let s = year_start(today);
            Some((
                midnight(s),
                midnight(s.checked_add_months(Months::new(12))?),
            ))
        }
        LastYear => {
            let s = year_start(today).checked_sub_months(Months::new(12))?;
            Some((midnight(s), midnight(year_start(today))))
        }
        NextYear => {
            let s = year_start(today).checked_add_months(Months::new(12))?;
            Some((
                midnight(s),
                midnight(s.checked_add_months(Months::new(12))?),
            ))
        }
        _ => None,
    }
}

fn in_window(t: DateTime<Utc>, w: Window) -> bool {
    w.is_some_and(|(from, to)| from <= t && t < to)
}

fn count_value(values: &[Literal]) -> Option<i64> {
    match values.first()? {
        Literal::Int(n) => Some(*n),
        Literal::String(s) => s.trim().parse().ok(),
        Literal::Decimal(d) if d.fract() == 0.0 && d.abs() < 1e15 => Some(*d as i64),
        _ => None,
    }
}

impl Condition {
    /// Evaluates against the row's value for [`Condition::column`]; nulls match only nothing.
    pub(crate) fn eval(&self, value: &Scalar<'_>, ctx: &EvalContext) -> bool {
        use ConditionOperator::*;
        if value.is_null() {
            return false;
        }
        let today = ctx.now.date_naive();
        match self.operator {
            In => self
                .values
                .iter()
                .any(|v| equals(value, &Scalar::from_literal(v))),
            NotIn => !self
                .values
                .iter()
                .any(|v| equals(value, &Scalar::from_literal(v))),
            Between | NotBetween => {
                let (Some(lo), Some(hi)) = (self.values.first(), self.values.get(1)) else {
                    return false;
                };
                let inside = compare(value, &Scalar::from_literal(lo)).is_some_and(|o| o.is_ge())
                    && compare(value, &Scalar::from_literal(hi)).is_some_and(|o| o.is_le());
                inside == (self.operator == Between)
            }
            On | NotOn | OnOrAfter | OnOrBefore => {
                let (Some(d), Some(target)) = (
                    value.as_date(),
                    self.values
                        .first()
                        .and_then(|v| Scalar::from_literal(v).as_date()),
                ) else {
                    return false;
                };
                match self.operator {
                    On => d == target,
                    NotOn => d != target,
                    OnOrAfter => d >= target,
                    _ => d <= target,
                }
            }
            LastXMinutes | LastXHours | LastXWeeks | LastXMonths | LastXYears => {
                let (Some(t), Some(n)) = (value.as_instant(), count_value(&self.values)) else {
                    return false;
                };
                shift(ctx.now, self.operator, n, false)
                    .is_some_and(|from| from <= t && t <= ctx.now)
            }
            LastXDays => {
                // Whole days: from midnight X days ago up to now.
                let (Some(t), Some(n)) = (value.as_instant(), count_value(&self.values)) else {
                    return false;
                };
                let from = u64::try_from(n)
                    .ok()
                    .and_then(|n| today.checked_sub_days(Days::new(n)));
                from.is_some_and(|f| midnight(f) <= t && t <= ctx.now)
            }
            NextXMinutes | NextXHours | NextXWeeks | NextXMonths | NextXYears => {
                let (Some(t), Some(n)) = (value.as_instant(), count_value(&self.values)) else {
                    return false;
                };
                shift(ctx.now, self.operator, n, true).is_some_and(|to| ctx.now <= t && t <= to)
            }
            NextXDays => {
                let (Some(t), Some(n)) = (value.as_instant(), count_value(&self.values)) else {
                    return false;
                };
                let to = u64::try_from(n)
                    .ok()
                    .and_then(|n| today.checked_add_days(Days::new(n + 1)));
                to.is_some_and(|to| ctx.now <= t && t < midnight(to))
            }
            OlderThanXMinutes | OlderThanXHours | OlderThanXDays | OlderThanXWeeks
            | OlderThanXMonths | OlderThanXYears => {
                let (Some(t), Some(n)) = (value.as_instant(), count_value(&self.values)) else {
                    return false;
                };
                shift(ctx.now, self.operator, n, false).is_some_and(|limit| t < limit)
            }
            Last7Days => value.as_instant().is_some_and(|t| {
                today
                    .checked_sub_days(Days::new(7))
                    .is_some_and(|f| midnight(f) <= t && t <= ctx.now)
            }),
            Next7Days => value.as_instant().is_some_and(|t| {
                today
                    .checked_add_days(Days::new(8))
                    .is_some_and(|to| ctx.now <= t && t < midnight(to))
            }),
            Today | Yesterday | Tomorrow | ThisWeek | LastWeek | NextWeek | ThisMonth
            | LastMonth | NextMonth | ThisYear | LastYear | NextYear => value
                .as_instant()
                .is_some_and(|t| in_window(t, fixed_window(self.operator, today))),
            EqualUserId => ctx.user_id.is_some_and(|u| value.as_guid() == Some(u)),
            NotEqualUserId => ctx.user_id.is_none_or(|u| value.as_guid() != Some(u)),
            EqualBusinessId => ctx
                .business_unit_id
                .is_some_and(|u| value.as_guid() == Some(u)),
            NotEqualBusinessId => ctx
                .business_unit_id
                .is_none_or(|u| value.as_guid() != Some(u)),
        }
    }
}
