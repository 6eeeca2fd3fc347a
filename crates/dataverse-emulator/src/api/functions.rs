//! Unbound functions and actions: `WhoAmI`, `RetrieveVersion`, `PublishAllXml`.

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
        "PublishAllXml" => {
            expect(req, Method::POST)?;
            ctx.caller.check_admin("prvPublishCustomization")?;
            ctx.conn.execute(
                "INSERT INTO publish_log(at, systemuserid) VALUES (?1, ?2)",
                rusqlite::params![crate::records::now_string(), ctx.caller.user_id],
            )?;
            Reply::no_content()
        }
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

fn expect(req: &Req, m: Method) -> ApiResult<()> {
    if req.method == m {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}
