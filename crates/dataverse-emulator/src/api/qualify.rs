//! The bound action `leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead`: creates the requested
//! account/contact/opportunity from the lead (each with `originatingleadid` set) and closes the
//! lead as Qualified.
//!
//! Column mapping follows the platform's default lead mapping (names, email, phones, job title,
//! address, privacy flags, description; company name → account name; topic → opportunity name).
//! Custom columns that exist under the same logical name on the created table (e.g. `new_synctomkto`)
//! are copied as well, as the real service does once the matching columns are mapped in the
//! lead's relationship mappings (the usual setup for a sync-filter column).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Ctx, Reply, Req, json_body};
use crate::error::{ApiError, ApiResult};
use crate::path::Key;
use crate::records;
use crate::schema::EntityDef;
use crate::security::{CREATE, WRITE};
use crate::store;
use crate::store::Row;

/// Lead columns copied to a new contact.
const CONTACT_COLUMNS: &[&str] = &[
    "firstname",
    "lastname",
    "emailaddress1",
    "telephone1",
    "mobilephone",
    "jobtitle",
    "address1_line1",
    "address1_line2",
    "address1_city",
    "address1_stateorprovince",
    "address1_postalcode",
    "address1_country",
    "donotbulkemail",
    "donotphone",
    "donotemail",
    "description",
];

/// (lead column, account column) copied to a new account.
const ACCOUNT_COLUMNS: &[(&str, &str)] = &[
    ("companyname", "name"),
    ("telephone1", "telephone1"),
    ("emailaddress1", "emailaddress1"),
    ("websiteurl", "websiteurl"),
    ("address1_line1", "address1_line1"),
    ("address1_line2", "address1_line2"),
    ("address1_city", "address1_city"),
    ("address1_stateorprovince", "address1_stateorprovince"),
    ("address1_postalcode", "address1_postalcode"),
    ("address1_country", "address1_country"),
    ("revenue", "revenue"),
    ("numberofemployees", "numberofemployees"),
    ("donotbulkemail", "donotbulkemail"),
    ("donotphone", "donotphone"),
    ("description", "description"),
];

fn flag(body: &Map<String, Value>, name: &str) -> ApiResult<bool> {
    match body.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad_request(format!(
            "Cannot convert the literal '{other}' to the expected type 'Edm.Boolean'."
        ))),
        None => Err(ApiError::bad_request(format!(
            "Missing parameter '{name}' for action 'Microsoft.Dynamics.CRM.QualifyLead'."
        ))),
    }
}

fn def(ctx: &Ctx<'_>, logical: &str) -> ApiResult<std::sync::Arc<EntityDef>> {
    ctx.schema
        .by_logical(logical)
        .ok_or_else(|| ApiError::internal(format!("table {logical} missing from the schema")))
}

fn copy(lead: &Row, from: &str, out: &mut Map<String, Value>, to: &str) {
    if let Some(v) = lead.get(from).filter(|v| !v.is_null()) {
        out.insert(to.to_string(), v.clone());
    }
}

/// Custom columns of the lead that the target table has under the same name.
fn copy_custom(lead_def: &EntityDef, target: &EntityDef, lead: &Row, out: &mut Map<String, Value>) {
    for c in lead_def
        .columns
        .iter()
        .filter(|c| c.custom && !c.is_lookup())
    {
        if target
            .column(&c.logical_name)
            .is_some_and(|t| t.custom && !t.is_lookup())
        {
            copy(lead, &c.logical_name, out, &c.logical_name);
        }
    }
}

fn lookup_id(row: &Row, wire: &str) -> Option<String> {
    row.get(wire).and_then(Value::as_str).map(str::to_string)
}

/// `POST leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead`.
pub fn qualify_lead(
    ctx: &mut Ctx<'_>,
    req: &Req,
    lead_def: &EntityDef,
    key: &Key,
) -> ApiResult<Reply> {
    let body = json_body(req)?;
    let create_account = flag(&body, "CreateAccount")?;
    let create_contact = flag(&body, "CreateContact")?;
    let create_opportunity = flag(&body, "CreateOpportunity")?;
    let status = match body.get("Status") {
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Cannot convert the literal '{v}' to the expected type 'Edm.Int32'."
            ))
        })?,
        None => {
            return Err(ApiError::bad_request(
                "Missing parameter 'Status' for action 'Microsoft.Dynamics.CRM.QualifyLead'.",
            ));
        }
    };
    let lead_id = records::resolve_key(ctx.conn, lead_def, Some(key))?
        .ok_or_else(|| records::not_found_for_key(lead_def, Some(key)))?;
    let account_def = def(ctx, "account")?;
    let contact_def = def(ctx, "contact")?;
    let opp_def = def(ctx, "opportunity")?;
    // The platform checks the caller can update the lead and create each requested record.
    ctx.caller.check_record(lead_def, WRITE, &lead_id)?;
    if create_account {
        ctx.caller.check(&account_def, CREATE)?;
    }
    if create_contact {
        ctx.caller.check(&contact_def, CREATE)?;
    }
    if create_opportunity {
        ctx.caller.check(&opp_def, CREATE)?;
    }
    let lead = store::get(ctx.conn, lead_def, &lead_id)?
        .ok_or_else(|| ApiError::record_not_found(&lead_def.logical_name, &lead_id))?;
    if lead.get("statecode").and_then(Value::as_i64).unwrap_or(0) != 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "The lead is closed. You cannot convert or qualify a lead that is already closed.",
        ));
    }
    let lead_ref = format!("leads({lead_id})");
    let created = store::savepoint(ctx.conn, || {
        let mut created: Vec<(&EntityDef, String)> = Vec::new();
        let mut account_id = None;
        if create_account {
            let mut b = Map::new();
            for (from, to) in ACCOUNT_COLUMNS {
                copy(&lead, from, &mut b, to);
            }
            if !b.contains_key("name") {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "0x80040203",
                    "Cannot create an account from a lead without a company name.",
                ));
            }
            copy_custom(lead_def, &account_def, &lead, &mut b);
            b.insert("originatingleadid@odata.bind".into(), json!(lead_ref));
            let id = uuid::Uuid::new_v4().to_string();
            super::crud::write_record(ctx, &account_def, &id, None, &b)?;
            created.push((&account_def, id.clone()));
            account_id = Some(id);
        }
        let parent_account = account_id
            .clone()
            .or_else(|| lookup_id(&lead, "_parentaccountid_value"));
        let mut contact_id = None;
        if create_contact {
            let mut b = Map::new();
            for c in CONTACT_COLUMNS {
                copy(&lead, c, &mut b, c);
            }
            copy_custom(lead_def, &contact_def, &lead, &mut b);
            b.insert("originatingleadid@odata.bind".into(), json!(lead_ref));
            if let Some(a) = &parent_account {
                b.insert(
                    "parentcustomerid_account@odata.bind".into(),
                    json!(format!("accounts({a})")),
                );
            }
            let id = uuid::Uuid::new_v4().to_string();
            super::crud::write_record(ctx, &contact_def, &id, None, &b)?;
            created.push((&contact_def, id.clone()));
            contact_id = Some(id);
        }
        if let (Some(a), Some(c)) = (&account_id, &contact_id) {
            let account = store::get(ctx.conn, &account_def, a)?;
            let mut b = Map::new();
            b.insert(
                "primarycontactid@odata.bind".into(),
                json!(format!("contacts({c})")),
            );
            super::crud::write_record(ctx, &account_def, a, account, &b)?;
        }
        let parent_contact = contact_id
            .clone()
            .or_else(|| lookup_id(&lead, "_parentcontactid_value"));
        let mut opportunity_id = None;
        if create_opportunity {
            let mut b = Map::new();
            let name = lead
                .get("subject")
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .or_else(|| lead.get("fullname"))
                .cloned()
                .unwrap_or(Value::Null);
            b.insert("name".into(), name);
            copy(&lead, "description", &mut b, "description");
            copy_custom(lead_def, &opp_def, &lead, &mut b);
            b.insert("originatingleadid@odata.bind".into(), json!(lead_ref));
            let customer = match body.get("OpportunityCustomerId") {
                Some(Value::Object(o)) => Some(customer_ref(o)?),
                Some(Value::Null) | None => None,
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "OpportunityCustomerId must be an account or contact entity reference.",
                    ));
                }
            };
            let customer = customer
                .or_else(|| parent_account.clone().map(|a| format!("accounts({a})")))
                .or_else(|| parent_contact.clone().map(|c| format!("contacts({c})")));
            if let Some(cust) = customer {
                let nav = if cust.starts_with("accounts(") {
                    "customerid_account@odata.bind"
                } else {
                    "customerid_contact@odata.bind"
                };
                b.insert(nav.into(), json!(cust));
            }
            if let Some(a) = &parent_account {
                b.insert(
                    "parentaccountid@odata.bind".into(),
                    json!(format!("accounts({a})")),
                );
            }
            if let Some(c) = &parent_contact {
                b.insert(
                    "parentcontactid@odata.bind".into(),
                    json!(format!("contacts({c})")),
                );
            }
            let id = uuid::Uuid::new_v4().to_string();
            super::crud::write_record(ctx, &opp_def, &id, None, &b)?;
            created.push((&opp_def, id.clone()));
            opportunity_id = Some(id);
        }
        // Close the lead; `fix_state` rejects a Status that does not belong to Qualified.
        let mut b = Map::new();
        b.insert("statecode".into(), json!(1));
        b.insert("statuscode".into(), json!(status));
        let mut row = lead.clone();
        if let Some(o) = &opportunity_id {
            row.insert("_qualifyingopportunityid_value".into(), json!(o));
            row.insert(
                "_qualifyingopportunityid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                json!("opportunity"),
            );
        }
        super::crud::write_record(ctx, lead_def, &lead_id, Some(row), &b)?;
        Ok::<_, ApiError>(
            created
                .into_iter()
                .map(|(d, id)| {
                    let mut m = Map::new();
                    m.insert(
                        "@odata.type".into(),
                        json!(format!("#Microsoft.Dynamics.CRM.{}", d.logical_name)),
                    );
                    m.insert(d.primary_key.clone(), json!(id));
                    Value::Object(m)
                })
                .collect::<Vec<_>>(),
        )
    })?;
    Ok(Reply::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)", ctx.base),
            "value": created,
        }),
    ))
}

/// `{"@odata.type":"Microsoft.Dynamics.CRM.account","accountid":"…"}` → `accounts(<id>)`.
fn customer_ref(o: &Map<String, Value>) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(
            "OpportunityCustomerId must be an account or contact entity reference.",
        )
    };
    let ty = o
        .get("@odata.type")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    let ty = ty
        .trim_start_matches('#')
        .trim_start_matches("Microsoft.Dynamics.CRM.");
    let (set, key) = match ty {
        "account" => ("accounts", "accountid"),
        "contact" => ("contacts", "contactid"),
        _ => return Err(bad()),
    };
    let id = o.get(key).and_then(Value::as_str).ok_or_else(bad)?;
    Ok(format!("{set}({id})"))
}
