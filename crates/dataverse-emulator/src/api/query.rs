//! Collection reads: `$select`, `$filter` (mdsync-odata), `$orderby`, `$top`, `$count`, `/$count`,
//! server-driven paging (`odata.maxpagesize`, absolute `@odata.nextLink` with a paging cookie), and
//! the initial read of change tracking.
//!
//! Paging without `$orderby` (or ordered by the primary key) is keyset paging on the id; with another
//! order the cookie carries how many matching rows were already returned. Rows are streamed from
//! SQLite and at most one page is held in memory.

use axum::http::StatusCode;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rusqlite::params_from_iter;
use serde_json::{Map, Value};

use super::crud::select_list;
use super::{Ctx, Prefer, Reply, Req, parse_prefer, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::records;
use crate::schema::EntityDef;
use crate::security::READ;
use crate::store::{self, parse_row, table};

/// The service's maximum page size.
pub const MAX_PAGE: usize = 5000;
/// `@odata.count` and `/$count` stop counting here, like the service.
pub const COUNT_CAP: usize = 5000;

/// Parsed query options of a collection request.
pub struct QueryOptions {
    pub select: Option<Vec<String>>,
    pub filter: Option<mdsync_odata::Expr>,
    pub orderby: Vec<(String, bool)>,
    pub top: Option<usize>,
    pub count: bool,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    pub expand: Vec<super::expand::Expand>,
}

fn unsupported(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "0x80060888",
        format!("The query parameter {name} is not supported"),
    )
}

/// Rejects comparisons of numbers with strings (`statecode eq '0'`, `name eq 5`) the way the
/// service's OData layer does, instead of silently matching nothing.
fn check_types(def: &EntityDef, expr: &mdsync_odata::Expr) -> ApiResult<()> {
    use mdsync_odata::{CompareOp, Expr, Literal, Operand};
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().try_for_each(|e| check_types(def, e)),
        Expr::Not(inner) => check_types(def, inner),
        Expr::Compare { op, left, right } => {
            let (col, lit, col_left) = match (left, right) {
                (Operand::Column(c), Operand::Literal(l)) => (c, l, true),
                (Operand::Literal(l), Operand::Column(c)) => (c, l, false),
                _ => return Ok(()),
            };
            let Some(column) = def.column_by_wire(col) else {
                return Ok(());
            };
            let col_type = column.ty.edm_type();
            let numeric = matches!(
                col_type,
                "Edm.Int32" | "Edm.Int64" | "Edm.Decimal" | "Edm.Double"
            );
            let lit_type = match lit {
                Literal::String(_) if numeric => "Edm.String",
                Literal::Int(i) if col_type == "Edm.String" => {
                    if i32::try_from(*i).is_ok() {
                        "Edm.Int32"
                    } else {
                        "Edm.Int64"
                    }
                }
                Literal::Decimal(_) if col_type == "Edm.String" => "Edm.Decimal",
                Literal::Bool(_) if col_type == "Edm.String" || numeric => "Edm.Boolean",
                _ => return Ok(()),
            };
            let kind = match op {
                CompareOp::Eq => "Equal",
                CompareOp::Ne => "NotEqual",
                CompareOp::Gt => "GreaterThan",
                CompareOp::Ge => "GreaterThanOrEqual",
                CompareOp::Lt => "LessThan",
                CompareOp::Le => "LessThanOrEqual",
            };
            let (a, b) = if col_left {
                (col_type, lit_type)
            } else {
                (lit_type, col_type)
            };
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x80060888",
                format!(
                    "A binary operator with incompatible types was detected. Found operand types '{a}' and '{b}' for operator kind '{kind}'."
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Parses and validates the query string against the table.
pub fn parse_options(def: &EntityDef, query: &str) -> ApiResult<QueryOptions> {
    let pairs = query_pairs(query);
    let aliases: mdsync_odata::Aliases = pairs
        .iter()
        .filter(|(k, _)| k.starts_with('@'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut o = QueryOptions {
        select: select_list(def, query)?,
        filter: None,
        orderby: Vec::new(),
        top: None,
        count: false,
        skiptoken: None,
        deltatoken: None,
        expand: Vec::new(),
    };
    for (k, v) in &pairs {
        match k.as_str() {
            "$select" => {}
            "$filter" => {
                let expr = mdsync_odata::parse_filter(v, &aliases)?;
                for c in expr.columns() {
                    if def.column_by_wire(&c).is_none() {
                        return Err(mdsync_odata::ODataError::property_not_found(
                            &c,
                            &def.logical_name,
                        )
                        .into());
                    }
                }
                check_types(def, &expr)?;
                o.filter = Some(expr);
            }
            "$orderby" => {
                for item in mdsync_odata::orderby::parse_orderby_with_aliases(v, &aliases)? {
                    if def.column_by_wire(&item.column).is_none() {
                        return Err(mdsync_odata::ODataError::property_not_found(
                            &item.column,
                            &def.logical_name,
                        )
                        .into());
                    }
                    o.orderby.push((item.column, item.descending));
                }
            }
            "$top" => {
                o.top = Some(v.trim().parse::<usize>().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "0x80060888",
                        format!("Invalid value '{v}' for $top query option found. The $top query option requires a non-negative integer value."),
                    )
                })?);
            }
            "$count" => match v.as_str() {
                "true" => o.count = true,
                "false" => o.count = false,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "0x80060888",
                        format!("'{v}' is not a valid count option."),
                    ));
                }
            },
            "$skiptoken" => o.skiptoken = Some(v.clone()),
            "$deltatoken" => o.deltatoken = Some(v.clone()),
            "$expand" => o.expand = super::expand::parse(def, v)?,
            "$skip" | "$search" | "$format" | "$apply" => return Err(unsupported(k)),
            // Stored queries and the `?sql=` SELECT subset are not emulated: refuse rather than
            // return every row.
            "savedQuery" | "userQuery" | "sql" => return Err(unsupported(k)),
            other if other.starts_with('$') => return Err(unsupported(other)),
            _ => {}
        }
    }
    Ok(o)
}

/// Position state carried in the paging cookie.
#[derive(Debug, Default, Clone)]
pub struct Cookie {
    pub page: u64,
    pub last: Option<String>,
    /// Storage position of the last row returned (keyset paging in storage order).
    pub rowid: Option<i64>,
    pub first: Option<String>,
    pub offset: Option<u64>,
    /// Change-tracking snapshot (initial read) or upper bound (delta read).
    pub version: Option<i64>,
    /// Delta paging: last version already returned.
    pub after: Option<i64>,
    pub tracking: bool,
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Builds the `$skiptoken` value (`<cookie pagenumber=... pagingcookie=... istracking=... />`).
pub fn encode_cookie(pk: &str, c: &Cookie) -> String {
    let mut inner = format!("<cookie page=\"{}\"", c.page);
    if let Some(o) = c.offset {
        inner.push_str(&format!(" offset=\"{o}\""));
    }
    if let Some(v) = c.version {
        inner.push_str(&format!(" version=\"{v}\""));
    }
    if let Some(a) = c.after {
        inner.push_str(&format!(" after=\"{a}\""));
    }
    if let Some(r) = c.rowid {
        inner.push_str(&format!(" rowid=\"{r}\""));
    }
    inner.push('>');
    if let (Some(l), Some(f)) = (&c.last, &c.first) {
        inner.push_str(&format!(
            "<{pk} last=\"{{{}}}\" first=\"{{{}}}\" />",
            l.to_uppercase(),
            f.to_uppercase()
        ));
    }
    inner.push_str("</cookie>");
    format!(
        "<cookie pagenumber=\"{}\" pagingcookie=\"{}\" istracking=\"{}\" />",
        c.page + 1,
        enc(&enc(&inner)),
        if c.tracking { "True" } else { "False" }
    )
}

fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!(" {name}=\"");
    let start = s.find(&pat)? + pat.len();
    let end = s[start..].find('"')? + start;
    Some(&s[start..end])
}

/// Reads a `$skiptoken`; malformed tokens are a 400.
pub fn decode_cookie(token: &str) -> ApiResult<Cookie> {
    let bad = || ApiError::bad_request("The $skiptoken value is not valid.");
    let pc = attr(token, "pagingcookie").ok_or_else(bad)?;
    let once = percent_decode_str(pc).decode_utf8_lossy().to_string();
    let inner = percent_decode_str(&once).decode_utf8_lossy().to_string();
    let page = attr(&inner, "page")
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let strip = |s: &str| {
        s.trim_matches(|c| c == '{' || c == '}')
            .to_ascii_lowercase()
    };
    Ok(Cookie {
        page,
        last: attr(&inner, "last").map(strip),
        first: attr(&inner, "first").map(strip),
        offset: attr(&inner, "offset").and_then(|v| v.parse().ok()),
        version: attr(&inner, "version").and_then(|v| v.parse().ok()),
        after: attr(&inner, "after").and_then(|v| v.parse().ok()),
        rowid: attr(&inner, "rowid").and_then(|v| v.parse().ok()),
        tracking: attr(token, "istracking") == Some("True"),
    })
}

/// Re-encodes the request's query without `$skiptoken`/`$deltatoken` (for links).
pub fn base_query(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let k = percent_decode_str(p.split('=').next().unwrap_or("")).decode_utf8_lossy();
            k != "$skiptoken" && k != "$deltatoken"
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn link(ctx: &Ctx<'_>, req: &Req, extra: &str) -> String {
    let q = base_query(&req.query);
    let sep = if q.is_empty() { "" } else { "&" };
    format!("{}{}?{q}{sep}{extra}", ctx.base, req.path)
}

/// Context URL for a collection (`#accounts(name,fax)`).
pub fn collection_context(ctx: &Ctx<'_>, def: &EntityDef, select: Option<&[String]>) -> String {
    match select {
        Some(cols) => format!("{}$metadata#{}({})", ctx.base, def.set_name, cols.join(",")),
        None => format!("{}$metadata#{}", ctx.base, def.set_name),
    }
}

pub fn eval_context(ctx: &Ctx<'_>) -> mdsync_odata::EvalContext {
    let mut e = mdsync_odata::EvalContext::at(chrono::Utc::now());
    e.user_id = uuid::Uuid::parse_str(&ctx.caller.user_id).ok();
    e.business_unit_id = uuid::Uuid::parse_str(&ctx.caller.business_unit_id).ok();
    e
}

fn page_size(prefer: &Prefer) -> usize {
    match prefer.maxpagesize {
        Some(n) if n > 0 => (n as usize).min(MAX_PAGE),
        _ => MAX_PAGE,
    }
}

/// Whether the order is the primary key alone (keyset paging on the id applies).
fn keyset_order(def: &EntityDef, orderby: &[(String, bool)]) -> Option<bool> {
    match orderby {
        [(c, desc)] if *c == def.primary_key => Some(*desc),
        _ => None,
    }
}

/// Whether keyset paging applies (storage order, or primary-key order).
fn keyset(def: &EntityDef, orderby: &[(String, bool)]) -> bool {
    orderby.is_empty() || keyset_order(def, orderby).is_some()
}

/// Streams matching rows in order starting after the cookie position, calling `f` until it returns false.
pub(crate) fn scan(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    opts: &QueryOptions,
    cookie: Option<&Cookie>,
    mut f: impl FnMut(i64, String, store::Row) -> bool,
) -> ApiResult<()> {
    let ectx = eval_context(ctx);
    let t = table(def);
    // Without $orderby rows come in storage order (rowid), which makes paging a sequential scan.
    let (sql, args): (String, Vec<String>) = match keyset_order(def, &opts.orderby) {
        _ if opts.orderby.is_empty() => match cookie.and_then(|c| c.rowid) {
            Some(r) => (
                format!("SELECT rowid, id, data FROM {t} WHERE rowid > ?1 ORDER BY rowid"),
                vec![r.to_string()],
            ),
            None => (
                format!("SELECT rowid, id, data FROM {t} ORDER BY rowid"),
                vec![],
            ),
        },
        Some(desc) => {
            let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
            match cookie.and_then(|c| c.last.clone()) {
                Some(last) => (
                    format!("SELECT rowid, id, data FROM {t} WHERE id {cmp} ?1 ORDER BY id {dir}"),
                    vec![last],
                ),
                None => (
                    format!("SELECT rowid, id, data FROM {t} ORDER BY id {dir}"),
                    vec![],
                ),
            }
        }
        None => {
            let order: Vec<String> = opts
                .orderby
                .iter()
                .map(|(c, d)| {
                    format!(
                        "json_extract(data, '$.{}') COLLATE NOCASE {}",
                        c.replace('\'', ""),
                        if *d { "DESC" } else { "ASC" }
                    )
                })
                .collect();
            (
                format!(
                    "SELECT rowid, id, data FROM {t} ORDER BY {}, id ASC",
                    order.join(", ")
                ),
                vec![],
            )
        }
    };
    let mut skip = cookie.and_then(|c| c.offset).unwrap_or(0);
    let mut stmt = ctx.conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args.iter()))?;
    while let Some(r) = rows.next()? {
        let rowid: i64 = r.get(0)?;
        let id: String = r.get(1)?;
        let row = parse_row(r.get_ref(2)?.as_str().unwrap_or("{}"));
        if let Some(filter) = &opts.filter
            && !filter.eval(&row, &ectx)
        {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if !f(rowid, id, row) {
            break;
        }
    }
    Ok(())
}

/// Counts matching rows up to `cap`.
fn count_matching(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    opts: &QueryOptions,
    cap: usize,
) -> ApiResult<usize> {
    if opts.filter.is_none() {
        let n: i64 = ctx.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT ?1)",
                table(def)
            ),
            [cap as i64],
            |r| r.get(0),
        )?;
        return Ok(n as usize);
    }
    let mut n = 0usize;
    let plain = QueryOptions {
        select: None,
        filter: opts.filter.clone(),
        orderby: Vec::new(),
        top: None,
        count: false,
        skiptoken: None,
        deltatoken: None,
        expand: Vec::new(),
    };
    scan(ctx, def, &plain, None, |_, _, _| {
        n += 1;
        n < cap
    })?;
    Ok(n)
}

/// `GET <set>` (also the first page of change tracking, and delta reads).
pub fn collection(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check(def, READ)?;
    if let Some((_, xml)) = super::query_pairs(&req.query)
        .into_iter()
        .find(|(k, _)| k == "fetchXml")
    {
        return super::fetch::run(ctx, req, def, &xml);
    }
    let opts = parse_options(def, &req.query)?;
    let prefer = parse_prefer(&req.headers);
    if let Some(token) = &opts.deltatoken {
        return super::changes::delta(ctx, req, def, &opts, &prefer, token);
    }
    let cookie = opts.skiptoken.as_deref().map(decode_cookie).transpose()?;
    let tracking = prefer.track_changes || cookie.as_ref().is_some_and(|c| c.tracking);
    if tracking {
        super::changes::check_tracking_options(def, req)?;
    }
    let paged = prefer.maxpagesize.is_some() || opts.top.is_none() || tracking;
    let limit = if prefer.maxpagesize.is_none() && !tracking {
        opts.top.map(|t| t.min(MAX_PAGE)).unwrap_or(MAX_PAGE)
    } else {
        page_size(&prefer)
    };
    let snapshot = match cookie.as_ref().and_then(|c| c.version) {
        Some(v) => Some(v),
        None if tracking => Some(store::current_version(ctx.conn)?),
        None => None,
    };
    let ann = prefer.annotations();
    let mut value = Vec::with_capacity(limit.min(1024));
    let mut raw_rows: Option<Vec<String>> = None;
    let mut first_id: Option<String> = None;
    let mut last_id: Option<String> = None;
    let mut last_rowid: Option<i64> = None;
    let mut more = false;
    let mut expand_err: Option<ApiError> = None;
    let fast = opts.expand.is_empty()
        && opts.filter.is_none()
        && opts.orderby.is_empty()
        && !ann.any()
        && opts.select.is_some();
    if fast {
        let (rows, f, l, r, m) = fast_page(
            ctx,
            def,
            opts.select.as_deref().unwrap_or_default(),
            cookie.as_ref(),
            limit,
        )?;
        raw_rows = Some(rows);
        (first_id, last_id, last_rowid, more) = (f, l, r, m);
    } else {
        scan(ctx, def, &opts, cookie.as_ref(), |rowid, id, row| {
            if value.len() == limit {
                more = true;
                return false;
            }
            if first_id.is_none() {
                first_id = Some(id.clone());
            }
            let mut projected = records::project_full(
                ctx.conn,
                &ctx.schema,
                def,
                &row,
                opts.select.as_deref(),
                &ann,
            );
            if !opts.expand.is_empty()
                && let Err(e) = super::expand::apply(ctx, def, &row, &mut projected, &opts.expand)
            {
                expand_err = Some(e);
                return false;
            }
            value.push(Value::Object(projected));
            last_id = Some(id);
            last_rowid = Some(rowid);
            true
        })?;
        if let Some(e) = expand_err {
            return Err(e);
        }
    }
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(collection_context(ctx, def, opts.select.as_deref())),
    );
    if opts.count {
        let n = count_matching(ctx, def, &opts, COUNT_CAP)?;
        out.insert("@odata.count".into(), Value::from(n));
    }
    if ann.wants("Microsoft.Dynamics.CRM.totalrecordcount") {
        let n = if opts.count {
            count_matching(ctx, def, &opts, COUNT_CAP)? as i64
        } else {
            -1
        };
        out.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcount".into(),
            Value::from(n),
        );
        out.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded".into(),
            Value::Bool(n >= COUNT_CAP as i64),
        );
    }
    out.insert("value".into(), Value::Array(value));
    let mut tail = Map::new();
    let page_no = cookie.as_ref().map(|c| c.page).unwrap_or(0) + 1;
    if more && paged {
        let prev_offset = cookie.as_ref().and_then(|c| c.offset).unwrap_or(0);
        let next = Cookie {
            page: page_no,
            last: last_id.clone(),
            first: first_id.clone(),
            rowid: opts.orderby.is_empty().then_some(last_rowid).flatten(),
            offset: (!keyset(def, &opts.orderby)).then_some(prev_offset + limit as u64),
            version: snapshot,
            after: None,
            tracking,
        };
        let token = encode_cookie(&def.primary_key, &next);
        tail.insert(
            "@odata.nextLink".into(),
            Value::String(link(ctx, req, &format!("$skiptoken={}", enc(&token)))),
        );
    } else if tracking {
        let v = snapshot.unwrap_or(0);
        tail.insert(
            "@odata.deltaLink".into(),
            Value::String(link(
                ctx,
                req,
                &format!("$deltatoken={}", enc(&super::changes::delta_token(v))),
            )),
        );
    }
    let mut reply = match raw_rows {
        None => {
            out.extend(tail);
            Reply::json(StatusCode::OK, Value::Object(out))
        }
        Some(rows) => {
            out.remove("value");
            let mut body = serde_json::to_string(&out).unwrap_or_else(|_| "{}".into());
            body.pop();
            body.push_str(if out.is_empty() {
                "\"value\":["
            } else {
                ",\"value\":["
            });
            body.push_str(&rows.join(","));
            body.push(']');
            for (k, v) in &tail {
                body.push_str(&format!(",{}:{}", Value::String(k.clone()), v));
            }
            body.push('}');
            Reply {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: super::Body::RawJson(body),
            }
        }
    };
    let mut applied = Vec::new();
    if let Some(n) = prefer.maxpagesize {
        // Values above the 5000-row maximum are capped; the applied preference says so.
        applied.push(format!("odata.maxpagesize={}", n.min(5000)));
    }
    if tracking && prefer.track_changes {
        applied.push("odata.track-changes".to_string());
    }
    if let Some(a) = prefer.applied_annotations() {
        applied.push(a);
    }
    if !applied.is_empty() {
        reply = reply.header("Preference-Applied", applied.join(","));
    }
    Ok(reply)
}

/// `GET <set>/$count` → plain-text number (changes when given a `$deltatoken`).
pub fn count(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check(def, READ)?;
    let opts = parse_options(def, &req.query)?;
    let n = match &opts.deltatoken {
        Some(token) => super::changes::count_changes(ctx, def, token)?,
        None => count_matching(ctx, def, &opts, COUNT_CAP)?,
    };
    Ok(Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: super::Body::Text(n.to_string(), "text/plain"),
    })
}

/// Fast path for the most common sync read (`$select`, storage order, no `$filter`, no annotations):
/// SQLite extracts just the selected properties and rows are rendered straight to JSON text, so no
/// row is parsed into a JSON tree. Returns (rendered rows, first id, last id, last rowid, more).
type FastPage = (
    Vec<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
);

fn fast_page(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    select: &[String],
    cookie: Option<&Cookie>,
    limit: usize,
) -> ApiResult<FastPage> {
    use crate::schema::ColumnType;
    let mut cols: Vec<&crate::schema::ColumnDef> = Vec::new();
    for name in select {
        if let Some(c) = def.column_by_wire(name).or_else(|| def.column(name)) {
            cols.push(c);
        }
    }
    if !select.contains(&def.primary_key)
        && let Some(pk) = def.column(&def.primary_key)
    {
        cols.push(pk);
    }
    let extracts: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "json_extract(data, '$.{}')",
                c.wire_name().replace('\'', "")
            )
        })
        .collect();
    let t = table(def);
    let after = cookie.and_then(|c| c.rowid).unwrap_or(i64::MIN);
    let sql = format!(
        "SELECT rowid, id, versionnumber, {} FROM {t} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        extracts.join(", ")
    );
    let mut stmt = ctx.conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![after, (limit + 1) as i64])?;
    let mut out = Vec::with_capacity(limit.min(5000));
    let (mut first, mut last, mut last_rowid, mut more) = (None, None, None, false);
    while let Some(r) = rows.next()? {
        if out.len() == limit {
            more = true;
            break;
        }
        let rowid: i64 = r.get(0)?;
        let id: String = r.get(1)?;
        let version: i64 = r.get(2)?;
        let mut buf = String::with_capacity(256);
        buf.push_str(&format!("{{\"@odata.etag\":\"W/\\\"{version}\\\"\""));
        for (i, c) in cols.iter().enumerate() {
            buf.push_str(",\"");
            buf.push_str(&c.wire_name());
            buf.push_str("\":");
            match r.get_ref(3 + i)? {
                rusqlite::types::ValueRef::Null => buf.push_str("null"),
                rusqlite::types::ValueRef::Integer(n) => {
                    if matches!(c.ty, ColumnType::Boolean) {
                        buf.push_str(if n != 0 { "true" } else { "false" });
                    } else {
                        buf.push_str(&n.to_string());
                    }
                }
                rusqlite::types::ValueRef::Real(f) => {
                    buf.push_str(&serde_json::to_string(&f).unwrap_or_else(|_| "null".into()))
                }
                rusqlite::types::ValueRef::Text(t) => {
                    let text = std::str::from_utf8(t).unwrap_or_default();
                    buf.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "null".into()));
                }
                rusqlite::types::ValueRef::Blob(_) => buf.push_str("null"),
            }
        }
        buf.push('}');
        out.push(buf);
        if first.is_none() {
            first = Some(id.clone());
        }
        last = Some(id);
        last_rowid = Some(rowid);
    }
    Ok((out, first, last, last_rowid, more))
}
