//! Change tracking: delta tokens (`<version>!<MM/dd/yyyy HH:mm:ss>`, like the service), delta reads
//! returning created/updated rows then `$deletedEntity` rows, paged by version ranges.

use axum::http::StatusCode;
use rusqlite::params;
use serde_json::{Map, Value, json};

use super::query::{Cookie, QueryOptions, collection_context, decode_cookie, encode_cookie, link};
use super::{Ctx, Prefer, Reply, Req, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::records;
use crate::schema::EntityDef;
use crate::store::{self, parse_row, table};

/// Days a delta token stays valid (`organization.expirechangetrackingindays` default).
pub const RETENTION_DAYS: i64 = 7;

pub fn delta_token(version: i64) -> String {
    format!(
        "{version}!{}",
        chrono::Utc::now().format("%m/%d/%Y %H:%M:%S")
    )
}

fn expired() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
}

/// Parses a delta token into its version, rejecting malformed, unknown and expired tokens.
pub fn parse_delta_token(ctx: &Ctx<'_>, token: &str) -> ApiResult<i64> {
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80044352",
            format!("The delta token '{token}' is not valid. Please perform a full sync."),
        )
    };
    let (v, ts) = token.split_once('!').ok_or_else(invalid)?;
    let version: i64 = v.trim().parse().map_err(|_| invalid())?;
    let when = chrono::NaiveDateTime::parse_from_str(ts.trim(), "%m/%d/%Y %H:%M:%S")
        .map_err(|_| invalid())?;
    if version > store::current_version(ctx.conn)? || version < 0 {
        return Err(invalid());
    }
    if chrono::Utc::now().naive_utc() - when > chrono::Duration::days(RETENTION_DAYS) {
        return Err(expired());
    }
    Ok(version)
}

/// Rejects `$filter`, `$orderby`, `$expand`, `$top` with change tracking and untracked tables.
pub fn check_tracking_options(def: &EntityDef, req: &Req) -> ApiResult<()> {
    if !def.change_tracking {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80072491",
            format!(
                "Entity {} isn't enabled for change tracking.",
                def.logical_name
            ),
        ));
    }
    for (k, _) in query_pairs(&req.query) {
        if matches!(k.as_str(), "$filter" | "$orderby" | "$expand" | "$top") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x80060888",
                format!(
                    "The \"{k}\" query parameter isn't supported when Change Tracking is enabled."
                ),
            ));
        }
    }
    Ok(())
}

enum Change {
    Upsert(i64, Map<String, Value>),
    Deleted(i64, String),
}

/// `GET <set>?$deltatoken=...`
pub fn delta(
    ctx: &mut Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    opts: &QueryOptions,
    prefer: &Prefer,
    token: &str,
) -> ApiResult<Reply> {
    check_tracking_options(def, req)?;
    let from = parse_delta_token(ctx, token)?;
    let cookie = opts.skiptoken.as_deref().map(decode_cookie).transpose()?;
    let upto = match cookie.as_ref().and_then(|c| c.version) {
        Some(v) => v,
        None => store::current_version(ctx.conn)?,
    };
    let after = cookie.as_ref().and_then(|c| c.after).unwrap_or(from);
    let limit = match prefer.maxpagesize {
        Some(n) if n > 0 => (n as usize).min(super::query::MAX_PAGE),
        _ => super::query::MAX_PAGE,
    };
    let ann = prefer.annotations();
    let t = table(def);
    let mut ups = ctx.conn.prepare_cached(&format!(
        "SELECT versionnumber, data FROM {t} WHERE versionnumber > ?1 AND versionnumber <= ?2 ORDER BY versionnumber"
    ))?;
    let mut dels = ctx.conn.prepare_cached(
        "SELECT versionnumber, id FROM tombstones WHERE entity = ?1 AND versionnumber > ?2 AND versionnumber <= ?3 ORDER BY versionnumber",
    )?;
    let mut up_rows = ups.query(params![after, upto])?;
    let mut del_rows = dels.query(params![def.logical_name, after, upto])?;
    let mut next_up: Option<(i64, String)> = match up_rows.next()? {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    let mut next_del: Option<(i64, String)> = match del_rows.next()? {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    let mut page: Vec<Change> = Vec::new();
    let mut more = false;
    loop {
        let take_up = match (&next_up, &next_del) {
            (None, None) => break,
            (Some(u), Some(d)) => u.0 <= d.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if page.len() == limit {
            more = true;
            break;
        }
        if take_up {
            if let Some((v, data)) = next_up.take() {
                let row = parse_row(&data);
                page.push(Change::Upsert(
                    v,
                    records::project_full(
                        ctx.conn,
                        &ctx.schema,
                        def,
                        &row,
                        opts.select.as_deref(),
                        &ann,
                    ),
                ));
            }
            next_up = match up_rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            };
        } else {
            if let Some((v, id)) = next_del.take() {
                page.push(Change::Deleted(v, id));
            }
            next_del = match del_rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            };
        }
    }
    let last_version = page
        .iter()
        .map(|c| match c {
            Change::Upsert(v, _) | Change::Deleted(v, _) => *v,
        })
        .max()
        .unwrap_or(after);
    let mut value = Vec::with_capacity(page.len());
    let mut deleted = Vec::new();
    for c in page {
        match c {
            Change::Upsert(_, row) => value.push(Value::Object(row)),
            Change::Deleted(_, id) => deleted.push(json!({
                "@odata.context": format!("{}$metadata#{}/$deletedEntity", ctx.base, def.set_name),
                "id": id,
                "reason": "deleted",
            })),
        }
    }
    value.extend(deleted);
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}/$delta",
            collection_context(ctx, def, opts.select.as_deref())
        )),
    );
    out.insert("value".into(), Value::Array(value));
    if more {
        let next = Cookie {
            page: cookie.as_ref().map(|c| c.page).unwrap_or(0) + 1,
            version: Some(upto),
            after: Some(last_version),
            tracking: true,
            ..Default::default()
        };
        let skip = encode_cookie(&def.primary_key, &next);
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        out.insert(
            "@odata.nextLink".into(),
            Value::String(link(
                ctx,
                req,
                &format!("$deltatoken={}&$skiptoken={}", enc(token), enc(&skip)),
            )),
        );
    } else {
        let enc = percent_encoding::utf8_percent_encode(
            &delta_token(upto),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        out.insert(
            "@odata.deltaLink".into(),
            Value::String(link(ctx, req, &format!("$deltatoken={enc}"))),
        );
    }
    let mut reply = Reply::json(StatusCode::OK, Value::Object(out));
    let mut applied = vec!["odata.track-changes".to_string()];
    if let Some(n) = prefer.maxpagesize {
        // Values above the 5000-row maximum are capped; the applied preference says so.
        applied.push(format!("odata.maxpagesize={}", n.min(5000)));
    }
    reply = reply.header("Preference-Applied", applied.join(","));
    Ok(reply)
}

/// Number of changes since a token (`/$count?$deltatoken=`).
pub fn count_changes(ctx: &Ctx<'_>, def: &EntityDef, token: &str) -> ApiResult<usize> {
    let from = parse_delta_token(ctx, token)?;
    let t = table(def);
    let ups: i64 = ctx.conn.query_row(
        &format!("SELECT COUNT(*) FROM {t} WHERE versionnumber > ?1"),
        [from],
        |r| r.get(0),
    )?;
    let dels: i64 = ctx.conn.query_row(
        "SELECT COUNT(*) FROM tombstones WHERE entity = ?1 AND versionnumber > ?2",
        params![def.logical_name, from],
        |r| r.get(0),
    )?;
    Ok((ups + dels) as usize)
}
