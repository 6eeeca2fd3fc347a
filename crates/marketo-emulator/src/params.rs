//! Request parameters from every place Marketo accepts them: the query string, a form body (`_method=GET`
//! overrides) and a JSON body; list parameters may be comma-separated or repeated.

use serde_json::Value;

/// All parameters of one request.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
    json: Option<Value>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>, json: Option<Value>) -> Self {
        Self { pairs, json }
    }

    /// Parses a query string or form body; bad percent-encoding is kept verbatim rather than rejected.
    pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The JSON body, when the request had one.
    pub fn json(&self) -> Option<&Value> {
        self.json.as_ref()
    }

    /// A member of the JSON body object.
    pub fn json_member(&self, name: &str) -> Option<&Value> {
        self.json.as_ref().and_then(|j| j.get(name))
    }

    /// First value of `name` (query/form first, then a scalar JSON member); empty strings count as absent.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.pairs.iter().find(|(k, _)| k == name) {
            return (!v.is_empty()).then(|| v.clone());
        }
        match self.json_member(name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Every value of a list parameter: repeated keys and comma-separated values, or a JSON array.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.pairs {
            if k == name {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
            }
        }
        if out.is_empty() {
            match self.json_member(name) {
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::String(s) => out.extend(
                                s.split(',')
                                    .map(str::trim)
                                    .filter(|s| !s.is_empty())
                                    .map(String::from),
                            ),
                            Value::Number(n) => out.push(n.to_string()),
                            _ => {}
                        }
                    }
                }
                Some(Value::String(s)) => out.extend(
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                ),
                Some(Value::Number(n)) => out.push(n.to_string()),
                _ => {}
            }
        }
        out
    }
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_merge_repeated_and_comma_forms() {
        let p = Params::new(
            Params::parse_pairs("activityTypeIds=1,12&activityTypeIds=13&x="),
            None,
        );
        assert_eq!(p.list("activityTypeIds"), vec!["1", "12", "13"]);
        assert_eq!(p.get("x"), None);
        let j = Params::new(
            vec![],
            Some(serde_json::json!({"ids": [1, "2,3"], "b": "TRUE"})),
        );
        assert_eq!(j.list("ids"), vec!["1", "2", "3"]);
        assert_eq!(j.get("b").as_deref().and_then(parse_bool), Some(true));
    }
}
