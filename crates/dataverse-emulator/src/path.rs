//! Resource paths under `/api/data/v9.2/`: segments such as `accounts(<guid>)`,
//! `accounts(accountnumber='A-1')`, `EntityDefinitions(LogicalName='lead')`, `WhoAmI()`.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A key in parentheses after a segment name.
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    /// `(<guid>)` or `({<guid>})`.
    Guid(String),
    /// `(name='v',other=1)` — alternate key or named parameters.
    Named(Vec<(String, Value)>),
    /// `()` — function call without parameters.
    Empty,
    /// A single non-GUID value, e.g. `('x')`.
    Single(Value),
}

/// One path segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub name: String,
    pub key: Option<Key>,
}

/// Splits a raw path (no leading `/`) into decoded segments; `/` inside quotes is kept.
pub fn split_segments(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let decoded = percent_decode_str(raw).decode_utf8_lossy().to_string();
    for ch in decoded.chars() {
        match ch {
            '\'' => {
                in_quote = !in_quote;
                cur.push(ch);
            }
            '/' if !in_quote => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses `name(key)`; returns None on malformed parentheses.
pub fn parse_segment(seg: &str) -> Option<Segment> {
    let Some(open) = seg.find('(') else {
        return Some(Segment {
            name: seg.to_string(),
            key: None,
        });
    };
    if !seg.ends_with(')') {
        return None;
    }
    let name = seg[..open].to_string();
    let inner = &seg[open + 1..seg.len() - 1];
    Some(Segment {
        name,
        key: Some(parse_key(inner)?),
    })
}

fn parse_key(inner: &str) -> Option<Key> {
    let t = inner.trim();
    if t.is_empty() {
        return Some(Key::Empty);
    }
    let unbraced = t.trim_start_matches('{').trim_end_matches('}');
    if uuid::Uuid::parse_str(unbraced).is_ok() && !t.contains('=') {
        return Some(Key::Guid(unbraced.to_ascii_lowercase()));
    }
    let parts = split_top(t, ',');
    let mut named = Vec::new();
    for p in &parts {
        match split_top(p, '=').as_slice() {
            [k, v] => named.push((k.trim().to_string(), parse_literal(v.trim())?)),
            [v] if parts.len() == 1 => return Some(Key::Single(parse_literal(v.trim())?)),
            _ => return None,
        }
    }
    Some(Key::Named(named))
}

/// Splits on `sep` outside single quotes, brackets and parentheses.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    let mut depth = 0i32;
    for ch in s.chars() {
        match ch {
            '\'' => q = !q,
            '(' | '[' if !q => depth += 1,
            ')' | ']' if !q => depth -= 1,
            _ => {}
        }
        if ch == sep && !q && depth == 0 {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    out.push(cur);
    out
}

/// A key or parameter literal: `'str'` (with `''`), number, `true`/`false`, `null`, GUID.
pub fn parse_literal(v: &str) -> Option<Value> {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return Some(Value::String(v[1..v.len() - 1].replace("''", "'")));
    }
    match v {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    if let Ok(u) = uuid::Uuid::parse_str(v.trim_start_matches('{').trim_end_matches('}')) {
        return Some(Value::String(u.to_string()));
    }
    if let Ok(i) = v.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(f) = v.parse::<f64>() {
        return serde_json::Number::from_f64(f).map(Value::Number);
    }
    if v.starts_with('[') {
        // Function parameters use OData collection literals: ['a','b'] or ["a","b"].
        return serde_json::from_str(v)
            .ok()
            .or_else(|| serde_json::from_str(&v.replace('\'', "\"")).ok());
    }
    if v.starts_with('@')
        && v[1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Some(Value::String(v.to_string()));
    }
    None
}

/// Strips the service root from a reference (`/contacts(x)`, `contacts(x)`, absolute URL).
pub fn strip_base(reference: &str) -> &str {
    let r = match reference.find("/api/data/v9.") {
        Some(i) => {
            let after = &reference[i + "/api/data/v9.".len()..];
            after.find('/').map_or("", |j| &after[j + 1..])
        }
        None => reference,
    };
    r.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guid_named_and_function_keys() {
        let s = parse_segment("accounts(00000000-0000-0000-0000-000000000001)").unwrap();
        assert_eq!(
            s.key,
            Some(Key::Guid("00000000-0000-0000-0000-000000000001".into()))
        );
        let s = parse_segment("contacts(firstname='Jo''e',emailaddress1='a@b.c')").unwrap();
        assert_eq!(
            s.key,
            Some(Key::Named(vec![
                ("firstname".into(), Value::String("Jo'e".into())),
                ("emailaddress1".into(), Value::String("a@b.c".into()))
            ]))
        );
        assert_eq!(parse_segment("WhoAmI()").unwrap().key, Some(Key::Empty));
        assert_eq!(parse_segment("accounts(").map(|s| s.name), None);
        assert_eq!(
            split_segments("accounts(accountnumber='a/b')/name"),
            vec!["accounts(accountnumber='a/b')", "name"]
        );
    }
}
