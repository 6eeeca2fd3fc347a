//! The `Prefer` request header and the matching `Preference-Applied` response header.
//!
//! dynamics-web-api sends one comma-joined header
//! (`return=representation,odata.include-annotations="a,b",odata.maxpagesize=50`), so items are split on
//! commas outside double quotes; several `Prefer` headers are merged. Unknown preferences are ignored, as
//! RFC 7240 requires.

/// The preferences Dataverse acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `return=representation`: POST → 201 with body, PATCH → 200 with body.
    pub return_representation: bool,
    /// `odata.include-annotations="..."`, unquoted value (e.g. `*` or a comma list with wildcards).
    pub include_annotations: Option<String>,
    /// `odata.maxpagesize=N` (also OData 4.01 `maxpagesize`); unparsable values are ignored.
    pub max_page_size: Option<u32>,
    /// `odata.track-changes`.
    pub track_changes: bool,
    /// `odata.continue-on-error` (also `continue-on-error`); `$batch` only.
    pub continue_on_error: bool,
}

/// A preference that a response may report as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// `return=representation`
    ReturnRepresentation,
    /// `odata.include-annotations`
    IncludeAnnotations,
    /// `odata.maxpagesize`
    MaxPageSize,
    /// `odata.track-changes`
    TrackChanges,
    /// `odata.continue-on-error`
    ContinueOnError,
}

/// Splits on `sep` outside double-quoted sections (backslash escapes inside quotes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

impl Preferences {
    /// Parses every `Prefer` header value of a request.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Preferences {
        let mut prefs = Preferences::default();
        for header in headers {
            for item in split_outside_quotes(header, ',') {
                // Parameters after `;` do not matter for the preferences Dataverse supports.
                let head = split_outside_quotes(item, ';')
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let (name, value) = match head.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(unquote(v))),
                    None => (head.trim(), None),
                };
                match (name.to_ascii_lowercase().as_str(), value) {
                    ("return", Some(v)) => {
                        prefs.return_representation = v.eq_ignore_ascii_case("representation")
                    }
                    ("odata.include-annotations" | "include-annotations", Some(v)) => {
                        prefs.include_annotations = Some(v)
                    }
                    ("odata.maxpagesize" | "maxpagesize", Some(v)) => {
                        if let Ok(n) = v.trim().parse::<u32>() {
                            prefs.max_page_size = Some(n);
                        }
                    }
                    ("odata.track-changes" | "track-changes", _) => prefs.track_changes = true,
                    ("odata.continue-on-error" | "continue-on-error", v) => {
                        prefs.continue_on_error = v.is_none_or(|v| !v.eq_ignore_ascii_case("false"))
                    }
                    _ => {}
                }
            }
        }
        prefs
    }

    /// Whether the requested `odata.include-annotations` selects `annotation`
    /// (`*`, exact names, `Namespace.*` wildcards; `-pattern` excludes and wins).
    pub fn wants_annotation(&self, annotation: &str) -> bool {
        let Some(list) = &self.include_annotations else {
            return false;
        };
        let matches = |pattern: &str| {
            pattern == "*"
                || pattern.eq_ignore_ascii_case(annotation)
                || pattern.strip_suffix('*').is_some_and(|prefix| {
                    annotation
                        .get(..prefix.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                })
        };
        let patterns: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if patterns
            .iter()
            .filter_map(|p| p.strip_prefix('-'))
            .any(matches)
        {
            return false;
        }
        patterns
            .iter()
            .filter(|p| !p.starts_with('-'))
            .any(|p| matches(p))
    }

    /// The `Preference-Applied` value for the requested preferences the handler honoured, in a stable
    /// order; `None` when nothing applies (omit the header).
    pub fn applied(&self, honoured: &[Preference]) -> Option<String> {
        let mut out = Vec::new();
        for p in honoured {
            match p {
                Preference::ReturnRepresentation if self.return_representation => {
                    out.push("return=representation".to_owned())
                }
                Preference::IncludeAnnotations => {
                    if let Some(a) = &self.include_annotations {
                        out.push(format!("odata.include-annotations=\"{a}\""));
                    }
                }
                Preference::MaxPageSize => {
                    if let Some(n) = self.max_page_size {
                        out.push(format!("odata.maxpagesize={n}"));
                    }
                }
                Preference::TrackChanges if self.track_changes => {
                    out.push("odata.track-changes".to_owned())
                }
                Preference::ContinueOnError if self.continue_on_error => {
                    out.push("odata.continue-on-error".to_owned())
                }
                _ => {}
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(out.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_and_separate_headers() {
        let dwa = r#"return=representation,odata.include-annotations="OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname",odata.maxpagesize=50,odata.track-changes"#;
        let cases: Vec<(Vec<&str>, Preferences)> = vec![
            (
                vec![dwa],
                Preferences {
                    return_representation: true,
                    include_annotations: Some(
                        "OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    ),
                    max_page_size: Some(50),
                    track_changes: true,
                    continue_on_error: false,
                },
            ),
            (
                vec!["odata.maxpagesize=10", "return=representation", "odata.continue-on-error"],
                Preferences {
                    return_representation: true,
                    max_page_size: Some(10),
                    continue_on_error: true,
                    ..Default::default()
                },
            ),
            (vec!["return=minimal"], Preferences::default()),
            (vec!["odata.maxpagesize=abc, foo=bar; x=1"], Preferences::default()),
            (vec![" ODATA.MAXPAGESIZE = 7 "], Preferences { max_page_size: Some(7), ..Default::default() }),
            (vec!["maxpagesize=3"], Preferences { max_page_size: Some(3), ..Default::default() }),
            (
                vec![r#"odata.include-annotations="*""#],
                Preferences { include_annotations: Some("*".into()), ..Default::default() },
            ),
            (vec!["odata.continue-on-error=false"], Preferences::default()),
            (vec![r#"odata.include-annotations="a\"b", odata.track-changes"#], Preferences {
                include_annotations: Some("a\"b".into()),
                track_changes: true,
                ..Default::default()
            }),
            (vec![""], Preferences::default()),
            (vec![r#"odata.include-annotations="unterminated, odata.track-changes"#], Preferences {
                include_annotations: Some("\"unterminated, odata.track-changes".into()),
                ..Default::default()
            }),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                Preferences::parse(headers.iter().copied()),
                expected,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn annotation_selection() {
        let p = |v: &str| Preferences {
            include_annotations: Some(v.into()),
            ..Default::default()
        };
        let fv = "OData.Community.Display.V1.FormattedValue";
        let cases = [
            ("*", fv, true),
            (fv, fv, true),
            ("odata.community.display.v1.formattedvalue", fv, true),
            ("OData.Community.Display.V1.*", fv, true),
            ("Microsoft.Dynamics.CRM.*", fv, false),
            (
                "Microsoft.Dynamics.CRM.*",
                "Microsoft.Dynamics.CRM.lookuplogicalname",
                true,
            ),
            ("*,-OData.Community.Display.V1.FormattedValue", fv, false),
            ("", fv, false),
            ("é*", "éa", true),
            ("ab*", "aé", false),
            ("a*", "éa", false),
        ];
        for (requested, annotation, expected) in cases {
            assert_eq!(
                p(requested).wants_annotation(annotation),
                expected,
                "{requested} / {annotation}"
            );
        }
        assert!(!Preferences::default().wants_annotation(fv));
    }

    #[test]
    fn renders_preference_applied() {
        let prefs = Preferences::parse([
            r#"return=representation,odata.include-annotations="*",odata.maxpagesize=50,odata.track-changes"#,
        ]);
        assert_eq!(
            prefs
                .applied(&[Preference::ReturnRepresentation, Preference::MaxPageSize])
                .as_deref(),
            Some("return=representation,odata.maxpagesize=50")
        );
        assert_eq!(
            prefs
                .applied(&[
                    Preference::IncludeAnnotations,
                    Preference::TrackChanges,
                    Preference::ContinueOnError
                ])
                .as_deref(),
            Some("odata.include-annotations=\"*\",odata.track-changes")
        );
        assert_eq!(
            Preferences::default()
                .applied(&[Preference::MaxPageSize, Preference::ReturnRepresentation]),
            None
        );
    }
}
