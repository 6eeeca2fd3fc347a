//! SQL `LIKE` matching, which Dataverse applies to `contains`/`startswith`/`endswith` values: `%`, `_`,
//! `[abc]`, `[a-z]` and `[^...]` are wildcards; matching is case-insensitive.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `%`: any run of characters, possibly empty.
    AnyRun,
    /// `_`: exactly one character.
    AnyOne,
    /// `[...]` / `[^...]`: one character in (or not in) the ranges.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Char(char),
}

/// A compiled, lowercased `LIKE` pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

impl Pattern {
    /// Compiles `value` with optional implicit `%` before and after (contains/startswith/endswith).
    pub(crate) fn new(value: &str, leading_any: bool, trailing_any: bool) -> Pattern {
        let mut tokens = Vec::new();
        if leading_any {
            tokens.push(Token::AnyRun);
        }
        let chars: Vec<char> = value.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '%' => tokens.push(Token::AnyRun),
                '_' => tokens.push(Token::AnyOne),
                '[' => match parse_set(&chars[i + 1..]) {
                    Some((token, used)) => {
                        tokens.push(token);
                        i += used;
                    }
                    // An unclosed bracket is an ordinary character.
                    None => tokens.push(Token::Char('[')),
                },
                c => tokens.push(Token::Char(lower(c))),
            }
            i += 1;
        }
        if trailing_any {
            tokens.push(Token::AnyRun);
        }
        Pattern { tokens }
    }

    /// Whether the whole of `text` matches (iterative wildcard matching with one backtrack point).
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().map(lower).collect();
        let (mut t, mut p) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(tok) if single_matches(tok, text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|tok| *tok == Token::AnyRun)
    }
}

fn single_matches(token: &Token, c: char) -> bool {
    match token {
        Token::AnyRun => false,
        Token::AnyOne => true,
        Token::Char(x) => *x == c,
        Token::Set { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
    }
}

/// Parses the inside of `[...]` (after `[`); returns the token and the characters consumed including `]`.
fn parse_set(rest: &[char]) -> Option<(Token, usize)> {
    let close = rest.iter().position(|c| *c == ']')?;
    let body = &rest[..close];
    let (negated, body) = match body.first() {
        Some('^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            ranges.push((lower(body[i]), lower(body[i + 2])));
            i += 3;
        } else {
            ranges.push((lower(body[i]), lower(body[i])));
            i += 1;
        }
    }
    Some((Token::Set { negated, ranges }, close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_table() {
        // (value, leading %, trailing %, text, matches)
        let cases = [
            ("con", true, true, "Contoso", true),
            ("tos", true, true, "Contoso", true),
            ("xyz", true, true, "Contoso", false),
            ("CON", false, true, "contoso", true),
            ("oso", false, true, "contoso", false),
            ("oso", true, false, "CONTOSO", true),
            ("c_n", false, true, "contoso", true),
            ("c%o", false, false, "contoso", true),
            ("c%x", false, false, "contoso", false),
            ("[a-c]on", false, true, "Contoso", true),
            ("[^a-c]on", false, true, "Contoso", false),
            ("[^a-c]on", false, true, "Xontoso", true),
            ("[xyz]", true, true, "Contoso", false),
            ("[oq]s", true, true, "Contoso", true),
            ("[abc", true, true, "x[abc", true),
            ("", true, true, "", true),
            ("", false, true, "anything", true),
            ("a", false, false, "", false),
            ("%%", false, false, "", true),
            ("é", true, true, "CAFÉ", true),
            ("a%b%c", false, false, "aXXbYYc", true),
            ("a%b%c", false, false, "aXXbYY", false),
        ];
        for (value, lead, trail, text, expected) in cases {
            assert_eq!(
                Pattern::new(value, lead, trail).matches(text),
                expected,
                "{value:?} ~ {text:?}"
            );
        }
    }
}
