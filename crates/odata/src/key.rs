//! Resource paths after the service root (`/api/data/v9.2/`): entity sets, keys (GUID or alternate),
//! navigation/`$ref`/`$count` tails, functions and bound actions, batch Content-ID references.

use percent_encoding::percent_decode_str;
use uuid::Uuid;
use winnow::combinator::{alt, delimited, opt, preceded, separated, terminated};
use winnow::prelude::*;
use winnow::stream::LocatingSlice;
use winnow::token::{one_of, take_while};

use crate::error::ODataError;
use crate::filter::identifier;
use crate::literal::{Input, Literal, guid, literal, literal_list};

/// The service root path Dataverse serves the Web API under.
pub const SERVICE_ROOT: &str = "/api/data/v9.2/";

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    /// Segments in order; empty for the service document.
    pub segments: Vec<Segment>,
}

/// One path segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `$metadata`
    Metadata,
    /// `$batch`
    Batch,
    /// `$ref`
    Ref,
    /// `$count`
    Count,
    /// `$value`
    Value,
    /// `$1`: a Content-ID reference inside a `$batch` change set (the digits/name after `$`).
    ContentId(String),
    /// A bare name: entity set, property, navigation property, function/action
    /// (`accounts`, `name`, `systemuserroles_association`, `Microsoft.Dynamics.CRM.UpsertMultiple`, `WhoAmI`).
    Name(String),
    /// A name with parentheses: a key (`accounts(<guid>)`, `accounts(accountnumber='A')`) or a call
    /// (`WhoAmI()`, `RetrieveTotalRecordCount(EntityNames=['account'])`).
    Keyed {
        /// The name before the parentheses.
        name: String,
        /// What was inside them.
        key: EntityKey,
    },
}

/// The inside of `name(...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityKey {
    /// `()`
    Empty,
    /// `(<guid>)`, the primary key.
    Id(Uuid),
    /// `(<literal>)` other than a GUID.
    Single(Literal),
    /// `(k='v',k2=<guid>)`: alternate key parts or function parameters, in order.
    Named(Vec<(String, KeyValue)>),
}

/// A named key part or function parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A literal (`'ABC'`, `<guid>`, `5`).
    Literal(Literal),
    /// A parameter alias (`@p1`, name without `@`), resolved from the query string by the caller.
    Alias(String),
    /// A collection (`['account','contact']`).
    List(Vec<Literal>),
}

impl EntityKey {
    /// The primary key: `(<guid>)` or `(<primary_key>=<guid>)`.
    pub fn id(&self, primary_key: &str) -> Option<Uuid> {
        match self {
            EntityKey::Id(id) => Some(*id),
            EntityKey::Named(parts) => match parts.as_slice() {
                [(name, KeyValue::Literal(Literal::Guid(id)))] if name == primary_key => Some(*id),
                _ => None,
            },
            _ => None,
        }
    }

    /// Alternate key parts as literals (`None` when the key is not named or uses aliases/collections).
    pub fn alternate(&self) -> Option<Vec<(&str, &Literal)>> {
        match self {
            EntityKey::Named(parts) => parts
                .iter()
                .map(|(n, v)| match v {
                    KeyValue::Literal(l) => Some((n.as_str(), l)),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

impl ResourcePath {
    /// The first segment's name (`accounts` in `accounts(<id>)/name`).
    pub fn entity_set(&self) -> Option<&str> {
        match self.segments.first()? {
            Segment::Name(n) | Segment::Keyed { name: n, .. } => Some(n),
            _ => None,
        }
    }

    /// The first segment's key, if it has one.
    pub fn key(&self) -> Option<&EntityKey> {
        match self.segments.first()? {
            Segment::Keyed { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Segments after the first.
    pub fn tail(&self) -> &[Segment] {
        self.segments.get(1..).unwrap_or(&[])
    }
}

fn query_syntax_error() -> ODataError {
    ODataError::query("Bad Request - Error in query syntax.")
}

fn ws0<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    take_while(0.., [' ', '\t']).parse_next(i)
}

fn key_value(i: &mut Input<'_>) -> ModalResult<KeyValue> {
    alt((
        preceded('@', identifier).map(|a: &str| KeyValue::Alias(a.to_owned())),
        literal_list.map(KeyValue::List),
        literal.map(KeyValue::Literal),
    ))
    .parse_next(i)
}

fn key(i: &mut Input<'_>) -> ModalResult<EntityKey> {
    delimited(
        ('(', ws0),
        alt((
            terminated(guid, (ws0, ')')).map(EntityKey::Id),
            terminated(
                separated(
                    1..,
                    (
                        terminated(identifier, (ws0, '=', ws0)),
                        terminated(key_value, ws0),
                    ),
                    (',', ws0),
                ),
                ')',
            )
            .map(|parts: Vec<(&str, KeyValue)>| {
                EntityKey::Named(parts.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
            }),
            terminated(literal, (ws0, ')')).map(EntityKey::Single),
            ')'.value(EntityKey::Empty),
        )),
        winnow::combinator::empty,
    )
    .parse_next(i)
}

fn segment(i: &mut Input<'_>) -> ModalResult<Segment> {
    alt((
        preceded(
            '$',
            alt((
                take_while(1.., |c: char| c.is_ascii_digit())
                    .map(|d: &str| Segment::ContentId(d.to_owned())),
                terminated(
                    identifier.verify_map(|n: &str| match n {
                        "metadata" => Some(Segment::Metadata),
                        "batch" => Some(Segment::Batch),
                        "ref" => Some(Segment::Ref),
                        "count" => Some(Segment::Count),
                        "value" => Some(Segment::Value),
                        _ => None,
                    }),
                    winnow::combinator::not(one_of(['('])),
                ),
            )),
        ),
        (identifier, opt(key)).map(|(name, key): (&str, Option<EntityKey>)| match key {
            Some(key) => Segment::Keyed {
                name: name.to_owned(),
                key,
            },
            None => Segment::Name(name.to_owned()),
        }),
    ))
    .parse_next(i)
}

/// Parses a path relative to the service root (`accounts(<id>)/name`), percent-decoding it first.
///
/// A leading `/` or a leading `/api/data/v9.2/` is accepted; a trailing `/` is ignored. Syntax errors are
/// 400 `0x80060888` "Bad Request - Error in query syntax.".
pub fn parse_resource_path(path: &str) -> Result<ResourcePath, ODataError> {
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| query_syntax_error())?;
    let mut rel: &str = &decoded;
    if let Some(r) = rel.strip_prefix(SERVICE_ROOT) {
        rel = r;
    } else if let Some(r) = rel.strip_prefix(SERVICE_ROOT.trim_end_matches('/')) {
        rel = r;
    }
    let rel = rel.trim_start_matches('/');
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel.is_empty() {
        return Ok(ResourcePath {
            segments: Vec::new(),
        });
    }
    let segments: Vec<Segment> = separated(1.., segment, '/')
        .parse(LocatingSlice::new(rel))
        .map_err(|_| query_syntax_error())?;
    Ok(ResourcePath { segments })
}

/// Where a request line's target points, once the scheme/host and service root are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    /// Path relative to the service root, still percent-encoded (`tasks`, `$1/lastname`).
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
}

/// Normalises an absolute URL (`http://host/api/data/v9.2/tasks?x`), a rooted path (`/api/data/v9.2/tasks`)
/// or a relative one (`tasks`, `$1/lastname`) to the path after the service root.
pub fn split_request_target(target: &str) -> RequestTarget<'_> {
    let (before_query, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut path = before_query;
    if let Some(after_scheme) = path.find("://").map(|i| &path[i + 3..]) {
        path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    }
    if let Some(i) = path.find(SERVICE_ROOT) {
        path = &path[i + SERVICE_ROOT.len()..];
    } else if path.ends_with(SERVICE_ROOT.trim_end_matches('/')) {
        path = "";
    }
    RequestTarget {
        path: path.trim_start_matches('/'),
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70";

    fn id() -> Uuid {
        Uuid::parse_str(ID).unwrap()
    }

    fn name(n: &str) -> Segment {
        Segment::Name(n.into())
    }

    fn keyed(n: &str, key: EntityKey) -> Segment {
        Segment::Keyed {
            name: n.into(),
            key,
        }
    }

    fn lit(s: &str) -> KeyValue {
        KeyValue::Literal(Literal::String(s.into()))
    }

    #[test]
    fn parses_the_documented_paths() {
        let cases: Vec<(String, Vec<Segment>)> = vec![
            ("".into(), vec![]),
            ("/".into(), vec![]),
            ("$metadata".into(), vec![Segment::Metadata]),
            ("$batch".into(), vec![Segment::Batch]),
            ("accounts".into(), vec![name("accounts")]),
            ("accounts/".into(), vec![name("accounts")]),
            ("/api/data/v9.2/accounts".into(), vec![name("accounts")]),
            (
                format!("accounts({ID})"),
                vec![keyed("accounts", EntityKey::Id(id()))],
            ),
            (
                format!("accounts({})", ID.to_uppercase()),
                vec![keyed("accounts", EntityKey::Id(id()))],
            ),
            (
                "accounts(accountnumber='ABC')".into(),
                vec![keyed(
                    "accounts",
                    EntityKey::Named(vec![("accountnumber".into(), lit("ABC"))]),
                )],
            ),
            (
                "accounts(accountnumber=%27A%20B%27)".into(),
                vec![keyed(
                    "accounts",
                    EntityKey::Named(vec![("accountnumber".into(), lit("A B"))]),
                )],
            ),
            (
                "accounts(name='a/b(c)')".into(),
                vec![keyed(
                    "accounts",
                    EntityKey::Named(vec![("name".into(), lit("a/b(c)"))]),
                )],
            ),
            (
                "contacts(firstname='Joe',emailaddress1='a@b.com')".into(),
                vec![keyed(
                    "contacts",
                    EntityKey::Named(vec![
                        ("firstname".into(), lit("Joe")),
                        ("emailaddress1".into(), lit("a@b.com")),
                    ]),
                )],
            ),
            (
                format!("accounts(_primarycontactid_value={ID})"),
                vec![keyed(
                    "accounts",
                    EntityKey::Named(vec![(
                        "_primarycontactid_value".into(),
                        KeyValue::Literal(Literal::Guid(id())),
                    )]),
                )],
            ),
            (
                format!("accounts({ID})/name"),
                vec![keyed("accounts", EntityKey::Id(id())), name("name")],
            ),
            (
                format!("accounts({ID})/primarycontactid/$ref"),
                vec![
                    keyed("accounts", EntityKey::Id(id())),
                    name("primarycontactid"),
                    Segment::Ref,
                ],
            ),
            (
                format!("systemusers({ID})/systemuserroles_association/$ref"),
                vec![
                    keyed("systemusers", EntityKey::Id(id())),
                    name("systemuserroles_association"),
                    Segment::Ref,
                ],
            ),
            (
                format!("systemusers({ID})/systemuserroles_association({ID})/$ref"),
                vec![
                    keyed("systemusers", EntityKey::Id(id())),
                    keyed("systemuserroles_association", EntityKey::Id(id())),
                    Segment::Ref,
                ],
            ),
            (
                "accounts/$count".into(),
                vec![name("accounts"), Segment::Count],
            ),
            (
                "accounts/Microsoft.Dynamics.CRM.UpsertMultiple".into(),
                vec![
                    name("accounts"),
                    name("Microsoft.Dynamics.CRM.UpsertMultiple"),
                ],
            ),
            ("WhoAmI".into(), vec![name("WhoAmI")]),
            ("WhoAmI()".into(), vec![keyed("WhoAmI", EntityKey::Empty)]),
            (
                "RetrieveTotalRecordCount(EntityNames=['account','contact'])".into(),
                vec![keyed(
                    "RetrieveTotalRecordCount",
                    EntityKey::Named(vec![(
                        "EntityNames".into(),
                        KeyValue::List(vec![
                            Literal::String("account".into()),
                            Literal::String("contact".into()),
                        ]),
                    )]),
                )],
            ),
            (
                "RetrieveTotalRecordCount(EntityNames=@p1)".into(),
                vec![keyed(
                    "RetrieveTotalRecordCount",
                    EntityKey::Named(vec![("EntityNames".into(), KeyValue::Alias("p1".into()))]),
                )],
            ),
            (
                "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='new_synctomkto')"
                    .into(),
                vec![
                    keyed(
                        "EntityDefinitions",
                        EntityKey::Named(vec![("LogicalName".into(), lit("lead"))]),
                    ),
                    keyed(
                        "Attributes",
                        EntityKey::Named(vec![("LogicalName".into(), lit("new_synctomkto"))]),
                    ),
                ],
            ),
            ("$1".into(), vec![Segment::ContentId("1".into())]),
            (
                "$1/lastname".into(),
                vec![Segment::ContentId("1".into()), name("lastname")],
            ),
            (
                "$12/primarycontactid/$ref".into(),
                vec![
                    Segment::ContentId("12".into()),
                    name("primarycontactid"),
                    Segment::Ref,
                ],
            ),
            (
                "accounts(5)".into(),
                vec![keyed("accounts", EntityKey::Single(Literal::Int(5)))],
            ),
            (
                "accounts('x')/$value".into(),
                vec![
                    keyed("accounts", EntityKey::Single(Literal::String("x".into()))),
                    Segment::Value,
                ],
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(
                parse_resource_path(&path).unwrap().segments,
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        for path in [
            "accounts(",
            "accounts({5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70})",
            "accounts(name='x'",
            "accounts(name=)",
            "accounts)",
            "$unknown",
            "accounts//name",
            "accounts(a=1,)",
            "%FF%FE",
            "accounts(name='unterminated)",
            "accounts(1)(2)",
        ] {
            let err = parse_resource_path(path).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str(), err.message.as_str()),
                (400, "0x80060888", "Bad Request - Error in query syntax."),
                "{path}"
            );
        }
    }

    #[test]
    fn key_helpers() {
        let p = parse_resource_path(&format!("accounts(accountid={ID})/name")).unwrap();
        assert_eq!(p.entity_set(), Some("accounts"));
        assert_eq!(p.key().and_then(|k| k.id("accountid")), Some(id()));
        assert_eq!(p.key().and_then(|k| k.id("contactid")), None);
        assert_eq!(p.tail(), &[name("name")]);
        let alt = parse_resource_path("contacts(firstname='Joe',emailaddress1='a@b.com')").unwrap();
        assert_eq!(
            alt.key().and_then(EntityKey::alternate),
            Some(vec![
                ("firstname", &Literal::String("Joe".into())),
                ("emailaddress1", &Literal::String("a@b.com".into()))
            ])
        );
        assert_eq!(parse_resource_path("$metadata").unwrap().entity_set(), None);
        assert!(parse_resource_path("").unwrap().tail().is_empty());
    }

    #[test]
    fn request_targets() {
        let cases = [
            ("http://localhost:8080/api/data/v9.2/tasks", "tasks", None),
            (
                "https://org.crm.dynamics.com/api/data/v9.2/accounts?$select=name",
                "accounts",
                Some("$select=name"),
            ),
            ("/api/data/v9.2/tasks", "tasks", None),
            ("tasks", "tasks", None),
            ("$1/lastname", "$1/lastname", None),
            ("http://host/api/data/v9.2", "", None),
            ("http://host", "", None),
            (
                "accounts?$filter=a%20eq%201",
                "accounts",
                Some("$filter=a%20eq%201"),
            ),
        ];
        for (target, path, query) in cases {
            assert_eq!(
                split_request_target(target),
                RequestTarget { path, query },
                "{target}"
            );
        }
    }
}
