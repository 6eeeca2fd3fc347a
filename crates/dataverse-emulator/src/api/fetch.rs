//! `GET <set>?fetchXml=<fetch …>`: the common FetchXML subset — one `entity` (matching the set),
//! `attribute`/`all-attributes`, `order`, nested `filter`s of `condition`s (eq, ne, gt/ge/lt/le,
//! like/not-like, begins-with/ends-with, null/not-null, in/not-in), `top`, and paging with `count`
//! and `page` (the `paging-cookie` is accepted; the page number drives the position). Anything else
//! (`link-entity`, aggregates, other operators) is a 400 rather than a wrong result.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::query::{COUNT_CAP, Cookie, MAX_PAGE, QueryOptions, collection_context, scan};
use super::{Ctx, Reply, Req, parse_prefer};
use crate::error::{ApiError, ApiResult};
use crate::records::project_full;
use crate::schema::{ColumnType, EntityDef};
use crate::security::READ;

/// One XML element (FetchXML has no mixed content beyond `<value>` text).
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn fetch_error(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "0x80041103", message)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A small, strict XML reader: elements, attributes, text; skips declarations and comments.
fn parse_xml(src: &str) -> ApiResult<Node> {
    let bad = || fetch_error("The FetchXML is not well-formed.");
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut rest = src;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            stack
                .last_mut()
                .ok_or_else(bad)?
                .text
                .push_str(&unescape(rest));
            break;
        };
        if lt > 0 {
            stack
                .last_mut()
                .ok_or_else(bad)?
                .text
                .push_str(&unescape(&rest[..lt]));
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or_else(bad)?;
            rest = &r[end + 3..];
            continue;
        }
        if let Some(r) = rest.strip_prefix("<?") {
            let end = r.find("?>").ok_or_else(bad)?;
            rest = &r[end + 2..];
            continue;
        }
        let gt = rest.find('>').ok_or_else(bad)?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let node = stack.pop().ok_or_else(bad)?;
            if node.name != name.trim() || stack.is_empty() {
                return Err(bad());
            }
            stack.last_mut().ok_or_else(bad)?.children.push(node);
            continue;
        }
        let (tag, self_closing) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let tag = tag.trim();
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let mut node = Node {
            name: tag[..name_end].to_string(),
            ..Node::default()
        };
        let mut a = tag[name_end..].trim_start();
        while !a.is_empty() {
            let eq = a.find('=').ok_or_else(bad)?;
            let key = a[..eq].trim().to_string();
            let v = a[eq + 1..].trim_start();
            let quote = v
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'')
                .ok_or_else(bad)?;
            let close = v[1..].find(quote).ok_or_else(bad)?;
            node.attrs.push((key, unescape(&v[1..1 + close])));
            a = v[close + 2..].trim_start();
        }
        if node.name.is_empty() {
            return Err(bad());
        }
        if self_closing {
            stack.last_mut().ok_or_else(bad)?.children.push(node);
        } else {
            stack.push(node);
        }
    }
    let mut root = stack.pop().filter(|_| stack.is_empty()).ok_or_else(bad)?;
    match root.children.len() {
        1 => Ok(root.children.remove(0)),
        _ => Err(bad()),
    }
}

/// An OData literal for `value` compared with `col`.
fn literal(def: &EntityDef, attr: &str, value: &str) -> ApiResult<(String, String)> {
    let col = def.column(attr).ok_or_else(|| {
        fetch_error(format!(
            "'{}' entity doesn't contain attribute with Name = '{attr}'.",
            def.logical_name
        ))
    })?;
    let invalid = || fetch_error(format!("Invalid value '{value}' for attribute '{attr}'."));
    let lit = match &col.ty {
        ColumnType::String { .. } | ColumnType::Memo { .. } => {
            format!("'{}'", value.replace('\'', "''"))
        }
        ColumnType::Integer
        | ColumnType::BigInt
        | ColumnType::Picklist { .. }
        | ColumnType::State { .. }
        | ColumnType::Status { .. } => value
            .trim()
            .parse::<i64>()
            .map_err(|_| invalid())?
            .to_string(),
        ColumnType::Decimal | ColumnType::Money | ColumnType::Double => {
            value.trim().parse::<f64>().map_err(|_| invalid())?;
            value.trim().to_string()
        }
        ColumnType::Boolean => match value.trim() {
            "1" | "true" => "true".into(),
            "0" | "false" => "false".into(),
            _ => return Err(invalid()),
        },
        ColumnType::Uniqueidentifier | ColumnType::Lookup { .. } => {
            let g = value.trim().trim_matches(|c| c == '{' || c == '}');
            uuid::Uuid::parse_str(g).map_err(|_| invalid())?.to_string()
        }
        ColumnType::DateTime => {
            let v = value.trim();
            if chrono::DateTime::parse_from_rfc3339(v).is_err()
                && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err()
            {
                return Err(invalid());
            }
            v.to_string()
        }
    };
    Ok((col.wire_name(), lit))
}

fn condition(def: &EntityDef, c: &Node) -> ApiResult<String> {
    let attr = c
        .attr("attribute")
        .ok_or_else(|| fetch_error("A condition needs an attribute."))?;
    let op = c.attr("operator").unwrap_or("eq");
    let value = c.attr("value").unwrap_or("");
    let values: Vec<&str> = c
        .children
        .iter()
        .filter(|v| v.name == "value")
        .map(|v| v.text.as_str())
        .collect();
    let wire = def.column(attr).map(|c| c.wire_name()).ok_or_else(|| {
        fetch_error(format!(
            "'{}' entity doesn't contain attribute with Name = '{attr}'.",
            def.logical_name
        ))
    })?;
    let cmp = |o: &str| -> ApiResult<String> {
        let (w, l) = literal(def, attr, value)?;
        Ok(format!("{w} {o} {l}"))
    };
    let like = |v: &str| -> ApiResult<String> {
        let esc = |s: &str| s.replace('\'', "''");
        let starts = v.starts_with('%');
        let ends = v.ends_with('%') && v.len() > 1;
        let inner = v.trim_start_matches('%').trim_end_matches('%');
        Ok(match (starts, ends) {
            (true, true) => format!("contains({wire},'{}')", esc(inner)),
            (false, true) => format!("startswith({wire},'{}')", esc(inner)),
            (true, false) => format!("endswith({wire},'{}')", esc(inner)),
            (false, false) => format!("{wire} eq '{}'", esc(v)),
        })
    };
    Ok(match op {
        "eq" => cmp("eq")?,
        "ne" | "neq" => cmp("ne")?,
        "gt" => cmp("gt")?,
        "ge" => cmp("ge")?,
        "lt" => cmp("lt")?,
        "le" => cmp("le")?,
        "null" => format!("{wire} eq null"),
        "not-null" => format!("{wire} ne null"),
        "like" => like(value)?,
        "not-like" => format!("not ({})", like(value)?),
        "begins-with" => like(&format!("{value}%"))?,
        "ends-with" => like(&format!("%{value}"))?,
        "in" | "not-in" => {
            if values.is_empty() {
                return Err(fetch_error("The 'in' operator needs <value> elements."));
            }
            let parts = values
                .iter()
                .map(|v| literal(def, attr, v).map(|(w, l)| format!("{w} eq {l}")))
                .collect::<ApiResult<Vec<_>>>()?;
            let any = format!("({})", parts.join(" or "));
            if op == "in" {
                any
            } else {
                format!("not {any}")
            }
        }
        other => {
            return Err(fetch_error(format!(
                "The condition operator '{other}' is not supported by the emulator."
            )));
        }
    })
}

fn filter(def: &EntityDef, f: &Node) -> ApiResult<Option<String>> {
    let joiner = match f.attr("type").unwrap_or("and") {
        "and" => " and ",
        "or" => " or ",
        other => return Err(fetch_error(format!("Invalid filter type '{other}'."))),
    };
    let mut parts = Vec::new();
    for c in &f.children {
        match c.name.as_str() {
            "condition" => parts.push(condition(def, c)?),
            "filter" => {
                if let Some(inner) = filter(def, c)? {
                    parts.push(format!("({inner})"));
                }
            }
            other => {
                return Err(fetch_error(format!(
                    "The element '{other}' inside a filter is not supported by the emulator."
                )));
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(joiner)))
}

fn number(fetch: &Node, name: &str) -> ApiResult<Option<usize>> {
    fetch
        .attr(name)
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                fetch_error(format!("Invalid value '{v}' for the '{name}' attribute."))
            })
        })
        .transpose()
}

/// Runs a FetchXML query against `def` (the entity set of the request).
pub fn run(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef, xml: &str) -> ApiResult<Reply> {
    ctx.caller.check(def, READ)?;
    let fetch = parse_xml(xml)?;
    if fetch.name != "fetch" {
        return Err(fetch_error("The FetchXML root element must be 'fetch'."));
    }
    if fetch.attr("aggregate") == Some("true") {
        return Err(fetch_error(
            "Aggregate FetchXML queries are not supported by the emulator.",
        ));
    }
    let top = number(&fetch, "top")?;
    let count = number(&fetch, "count")?;
    let page = number(&fetch, "page")?.unwrap_or(1).max(1);
    if top.is_some() && (count.is_some() || fetch.attr("page").is_some()) {
        return Err(fetch_error(
            "The top attribute can't be specified with paging attribute page or count.",
        ));
    }
    let entities: Vec<&Node> = fetch
        .children
        .iter()
        .filter(|c| c.name == "entity")
        .collect();
    let [entity] = entities.as_slice() else {
        return Err(fetch_error(
            "The FetchXML must contain exactly one entity element.",
        ));
    };
    if entity.attr("name") != Some(def.logical_name.as_str()) {
        return Err(fetch_error(
            "The entity name specified in FetchXml does not match the entity name in the OData request.",
        ));
    }
    let mut select: Option<Vec<String>> = Some(Vec::new());
    let mut orderby = Vec::new();
    let mut filters = Vec::new();
    for c in &entity.children {
        match c.name.as_str() {
            "all-attributes" => select = None,
            "attribute" => {
                let name = c.attr("name").unwrap_or("");
                let col = def.column(name).ok_or_else(|| {
                    fetch_error(format!(
                        "'{}' entity doesn't contain attribute with Name = '{name}'.",
                        def.logical_name
                    ))
                })?;
                if let Some(s) = select.as_mut() {
                    s.push(col.wire_name());
                }
            }
            "order" => {
                let name = c.attr("attribute").unwrap_or("");
                let col = def.column(name).ok_or_else(|| {
                    fetch_error(format!(
                        "'{}' entity doesn't contain attribute with Name = '{name}'.",
                        def.logical_name
                    ))
                })?;
                orderby.push((col.wire_name(), c.attr("descending") == Some("true")));
            }
            "filter" => {
                if let Some(f) = filter(def, c)? {
                    filters.push(format!("({f})"));
                }
            }
            other => {
                return Err(fetch_error(format!(
                    "The FetchXML element '{other}' is not supported by the emulator."
                )));
            }
        }
    }
    if select.as_ref().is_some_and(Vec::is_empty) {
        select = Some(vec![def.primary_key.clone()]);
    }
    let expr = if filters.is_empty() {
        None
    } else {
        Some(mdsync_odata::parse_filter(
            &filters.join(" and "),
            &Default::default(),
        )?)
    };
    let opts = QueryOptions {
        select: select.clone(),
        filter: expr,
        orderby,
        top: None,
        count: false,
        skiptoken: None,
        deltatoken: None,
        expand: Vec::new(),
    };
    let page_size = count.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let limit = top.map_or(page_size, |t| t.min(MAX_PAGE));
    let cookie = Cookie {
        offset: Some(((page - 1) * page_size) as u64),
        ..Cookie::default()
    };
    let ann = parse_prefer(&req.headers).annotations();
    let schema = ctx.schema.clone();
    let mut value = Vec::with_capacity(limit.min(1024));
    let (mut first, mut last, mut more) = (None, None, false);
    scan(ctx, def, &opts, Some(&cookie), |_, id, row| {
        if value.len() == limit {
            more = top.is_none();
            return false;
        }
        first.get_or_insert_with(|| id.clone());
        last = Some(id);
        value.push(Value::Object(project_full(
            ctx.conn,
            &schema,
            def,
            &row,
            opts.select.as_deref(),
            &ann,
        )));
        true
    })?;
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".into(),
        json!(collection_context(ctx, def, select.as_deref())),
    );
    if fetch.attr("returntotalrecordcount") == Some("true") {
        let mut n = 0usize;
        let plain = QueryOptions {
            select: None,
            orderby: Vec::new(),
            ..opts
        };
        scan(ctx, def, &plain, None, |_, _, _| {
            n += 1;
            n <= COUNT_CAP
        })?;
        body.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcount".into(),
            json!(n.min(COUNT_CAP)),
        );
        body.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded".into(),
            json!(n > COUNT_CAP),
        );
    }
    if ann.wants("Microsoft.Dynamics.CRM.fetchxmlpagingcookie") && more {
        let inner = format!(
            "<cookie page=\"{page}\"><{pk} last=\"{{{}}}\" first=\"{{{}}}\" /></cookie>",
            last.unwrap_or_default().to_uppercase(),
            first.unwrap_or_default().to_uppercase(),
            pk = def.primary_key
        );
        let twice = urlencoding(&urlencoding(&inner));
        body.insert(
            "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie".into(),
            json!(format!(
                "<cookie pagenumber=\"{}\" pagingcookie=\"{twice}\" istracking=\"False\" />",
                page + 1
            )),
        );
    }
    if ann.wants("Microsoft.Dynamics.CRM.morerecords") {
        body.insert("@Microsoft.Dynamics.CRM.morerecords".into(), json!(more));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(Reply::json(StatusCode::OK, Value::Object(body)))
}

fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
