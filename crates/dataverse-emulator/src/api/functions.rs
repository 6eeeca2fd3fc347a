//! Unbound functions and actions: `WhoAmI`, `RetrieveVersion`, `PublishAllXml`, `Merge`.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{Ctx, Reply, Req};
use crate::error::{ApiError, ApiResult};
use crate::path::Segment;

/// The version `RetrieveVersion` reports.
pub const SERVER_VERSION: &str = "9.2.24101.194";

/// Answers function/action paths; `Ok(None)` when the path is not one of them.
pub fn handle(ctx: &mut Ctx<'_>, req: &Req, segs: &[Segment]) -> ApiResult<Option<Reply>> {
    if segs.len() != 1 {
        return Ok(None);
    }
    let name = segs[0].name.as_str();
    let reply = match name {
        "WhoAmI" => {
            expect(req, Method::GET)?;
            Reply::json(
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.base),
                    "BusinessUnitId": ctx.caller.business_unit_id,
                    "UserId": ctx.caller.user_id,
                    "OrganizationId": ctx.shared.ids.organization_id,
                }),
            )
        }
        "RetrieveVersion" => {
            expect(req, Method::GET)?;
            Reply::json(
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.RetrieveVersionResponse", ctx.base),
                    "Version": SERVER_VERSION,
                }),
            )
        }
        "RetrieveTotalRecordCount" => {
            expect(req, Method::GET)?;
            retrieve_total_record_count(ctx, req, &segs[0])?
        }
        "PublishAllXml" => {
            expect(req, Method::POST)?;
            ctx.caller.check_admin("prvPublishCustomization")?;
            ctx.conn.execute(
                "INSERT INTO publish_log(at, systemuserid) VALUES (?1, ?2)",
                rusqlite::params![crate::records::now_string(), ctx.caller.user_id],
            )?;
            Reply::no_content()
        }
        "Merge" => {
            expect(req, Method::POST)?;
            super::merge::merge(ctx, req)?
        }
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

/// `RetrieveTotalRecordCount(EntityNames=['account','contact'])` or `(EntityNames=@p1)?@p1=[...]`.
/// The real service answers from a daily snapshot; the emulator counts live rows.
fn retrieve_total_record_count(ctx: &Ctx<'_>, req: &Req, seg: &Segment) -> ApiResult<Reply> {
    let missing = || ApiError::bad_request("The parameter 'EntityNames' is required.");
    let raw = match &seg.key {
        Some(crate::path::Key::Named(p)) => p
            .iter()
            .find(|(k, _)| k == "EntityNames")
            .map(|(_, v)| v.clone())
            .ok_or_else(missing)?,
        _ => return Err(missing()),
    };
    let value = match raw {
        serde_json::Value::String(alias) if alias.starts_with('@') => {
            super::query_pairs(&req.query)
                .into_iter()
                .find(|(k, _)| *k == alias)
                .and_then(|(_, v)| serde_json::from_str(&v.replace('\'', "\"")).ok())
                .ok_or_else(missing)?
        }
        other => other,
    };
    let names: Vec<String> = value
        .as_array()
        .ok_or_else(missing)?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut counts = Vec::with_capacity(names.len());
    for name in &names {
        let def = ctx.schema.by_logical(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x80040217",
                format!("The entity with a name = '{name}' was not found in the MetadataCache."),
            )
        })?;
        ctx.caller.check(&def, crate::security::READ)?;
        let n: i64 = ctx.conn.query_row(
            &format!("SELECT COUNT(*) FROM {}", crate::store::table(&def)),
            [],
            |r| r.get(0),
        )?;
        counts.push(n);
    }
    Ok(Reply::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse", ctx.base),
            "EntityRecordCountCollection": {"Count": names.len(), "IsReadOnly": false, "Keys": names, "Values": counts},
        }),
    ))
}

fn expect(req: &Req, m: Method) -> ApiResult<()> {
    if req.method == m {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}
