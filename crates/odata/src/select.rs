//! `$select=name,revenue`.

use winnow::combinator::{alt, delimited, separated};
use winnow::prelude::*;
use winnow::stream::LocatingSlice;
use winnow::token::take_while;

use crate::error::{ODataError, char_position};
use crate::filter::identifier;
use crate::literal::Input;

fn ws0<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    take_while(0.., [' ', '\t']).parse_next(i)
}

fn item<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    alt((
        "*",
        separated::<_, _, (), _, _, _, _>(1.., identifier, '/').take(),
    ))
    .parse_next(i)
}

/// Parses `$select` (percent-decoded) into property names, in order, without duplicates.
///
/// `*` is returned as `"*"`; navigation paths are rejected.
pub fn parse_select(input: &str) -> Result<Vec<String>, ODataError> {
    let items: Vec<&str> = separated(1.., delimited(ws0, item, ws0), ',')
        .parse(LocatingSlice::new(input))
        .map_err(|e| ODataError::syntax_error(char_position(input, e.offset()), input))?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if item.contains('/') {
            return Err(ODataError::query(format!(
                "Navigation property paths such as '{item}' are not supported in $select by this emulator."
            )));
        }
        if !out.iter().any(|c| c == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let ok: Vec<(&str, Vec<&str>)> = vec![
            ("name", vec!["name"]),
            ("name,revenue", vec!["name", "revenue"]),
            (" name , _ownerid_value ", vec!["name", "_ownerid_value"]),
            ("name,name", vec!["name"]),
            ("*", vec!["*"]),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_select(text).unwrap(), expected, "{text}");
        }
        let bad = [
            ("", "Syntax error at position 0 in ''."),
            (
                "name,,revenue",
                "Syntax error at position 4 in 'name,,revenue'.",
            ),
            (
                "name revenue",
                "Syntax error at position 5 in 'name revenue'.",
            ),
            ("'name'", "Syntax error at position 0 in ''name''."),
            (
                "a/b",
                "Navigation property paths such as 'a/b' are not supported in $select by this emulator.",
            ),
        ];
        for (text, message) in bad {
            assert_eq!(parse_select(text).unwrap_err().message, message, "{text}");
        }
    }
}
