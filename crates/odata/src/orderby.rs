//! `$orderby=revenue asc,name desc` and a row comparator consistent with `$filter` evaluation.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use winnow::combinator::{alt, delimited, opt, preceded, separated};
use winnow::prelude::*;
use winnow::stream::LocatingSlice;
use winnow::token::take_while;

use crate::compare::{Scalar, sort_order};
use crate::error::{ODataError, char_position};
use crate::filter::{Aliases, identifier};
use crate::literal::{Input, keyword};

/// One `$orderby` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// The property.
    pub column: String,
    /// `desc` was given.
    pub descending: bool,
}

fn ws0<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    take_while(0.., [' ', '\t']).parse_next(i)
}

fn item<'a>(i: &mut Input<'a>) -> ModalResult<(&'a str, bool)> {
    let name = alt((
        ('@', identifier).take(),
        separated::<_, _, (), _, _, _, _>(1.., identifier, '/').take(),
    ))
    .parse_next(i)?;
    let direction = opt(preceded(
        take_while(1.., [' ', '\t']),
        alt((keyword("asc").value(false), keyword("desc").value(true))),
    ))
    .parse_next(i)?;
    Ok((name, direction.unwrap_or(false)))
}

/// Parses `$orderby` (percent-decoded).
pub fn parse_orderby(input: &str) -> Result<Vec<OrderBy>, ODataError> {
    parse_orderby_with_aliases(input, &Aliases::new())
}

/// Parses `$orderby` where items may be parameter aliases (`$orderby=@p1 desc&@p1=name`).
pub fn parse_orderby_with_aliases(
    input: &str,
    aliases: &Aliases,
) -> Result<Vec<OrderBy>, ODataError> {
    let items: Vec<(&str, bool)> = separated(1.., delimited(ws0, item, ws0), ',')
        .parse(LocatingSlice::new(input))
        .map_err(|e| ODataError::syntax_error(char_position(input, e.offset()), input))?;
    items
        .into_iter()
        .map(|(name, descending)| {
            let column = match name.strip_prefix('@') {
                Some(alias) => {
                    let raw = aliases.get(name).or_else(|| aliases.get(alias)).ok_or_else(|| {
                        ODataError::query(format!("The parameter alias '{name}' in $orderby has no value."))
                    })?;
                    raw.trim().to_owned()
                }
                None => name.to_owned(),
            };
            if column.contains('/') {
                return Err(ODataError::query(format!(
                    "Navigation property paths such as '{column}' are not supported in $orderby by this emulator."
                )));
            }
            if column.is_empty() || !column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ODataError::syntax_error(0, &column));
            }
            Ok(OrderBy { column, descending })
        })
        .collect()
}

/// Compares two rows by the `$orderby` items (nulls first ascending, last descending, like SQL Server).
pub fn compare_rows(a: &Map<String, Value>, b: &Map<String, Value>, order: &[OrderBy]) -> Ordering {
    for item in order {
        let o = sort_order(
            &Scalar::from_json(a.get(&item.column)),
            &Scalar::from_json(b.get(&item.column)),
        );
        let o = if item.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Compares two JSON values the way `$orderby` sorts them (exposed for keyset paging).
pub fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    sort_order(&Scalar::from_json(a), &Scalar::from_json(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ob(column: &str, descending: bool) -> OrderBy {
        OrderBy {
            column: column.into(),
            descending,
        }
    }

    #[test]
    fn parses_items() {
        let cases: Vec<(&str, Vec<OrderBy>)> = vec![
            ("name", vec![ob("name", false)]),
            (
                "revenue asc,name desc",
                vec![ob("revenue", false), ob("name", true)],
            ),
            (
                " revenue  desc , name ",
                vec![ob("revenue", true), ob("name", false)],
            ),
            ("_ownerid_value desc", vec![ob("_ownerid_value", true)]),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_orderby(text).unwrap(), expected, "{text}");
        }
        let mut aliases = Aliases::new();
        aliases.insert("@p1".into(), "name".into());
        assert_eq!(
            parse_orderby_with_aliases("@p1 desc", &aliases).unwrap(),
            vec![ob("name", true)]
        );
    }

    #[test]
    fn rejects_bad_items() {
        let cases = [
            ("", "Syntax error at position 0 in ''."),
            ("name,", "Syntax error at position 4 in 'name,'."),
            (
                "name descending",
                "Syntax error at position 5 in 'name descending'.",
            ),
            (
                "name desc desc",
                "Syntax error at position 10 in 'name desc desc'.",
            ),
            ("'name'", "Syntax error at position 0 in ''name''."),
            (
                "primarycontactid/fullname",
                "Navigation property paths such as 'primarycontactid/fullname' are not supported in $orderby by this emulator.",
            ),
            ("@p9", "The parameter alias '@p9' in $orderby has no value."),
        ];
        for (text, message) in cases {
            let err = parse_orderby(text).unwrap_err();
            assert_eq!(err.message, message, "{text}");
            assert_eq!(err.code, "0x80060888");
        }
    }

    #[test]
    fn sorts_rows_like_sql_server() {
        let rows = [
            json!({"n": "b", "r": 2}),
            json!({"n": null, "r": 1}),
            json!({"n": "A", "r": 3}),
            json!({"r": 0}),
            json!({"n": "a", "r": 1}),
        ];
        let mut maps: Vec<Map<String, Value>> =
            rows.iter().filter_map(|r| r.as_object().cloned()).collect();
        maps.sort_by(|a, b| compare_rows(a, b, &[ob("n", false), ob("r", true)]));
        let got: Vec<Value> = maps.into_iter().map(Value::Object).collect();
        assert_eq!(
            got,
            [
                json!({"n": null, "r": 1}),
                json!({"r": 0}),
                json!({"n": "A", "r": 3}),
                json!({"n": "a", "r": 1}),
                json!({"n": "b", "r": 2}),
            ]
        );
        assert_eq!(
            compare_values(Some(&json!(2)), Some(&json!(10))),
            Ordering::Less
        );
        assert_eq!(compare_values(None, Some(&json!("x"))), Ordering::Less);
    }
}
