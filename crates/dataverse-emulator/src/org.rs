//! The organization every fresh store starts with: root business unit, users, roles with their
//! privileges, teams, language settings, the Marketo solution with its SDK steps and the Marketo
//! configuration entity's **Default** record.
//!
//! The Marketo solution's logical names are not published; the configuration entity uses the
//! solution publisher's `mkt_` prefix seen on its `mkt_*` lead fields: `mkt_marketoconfig`
//! (set `mkt_marketoconfigs`), primary name `mkt_name`, lookup `mkt_marketouserid`
//! (`_mkt_marketouserid_value`). That naming is an inference.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::records::{compute_fullname, fix_state, now_string, stamp};
use crate::security::{self, Caller, ROLE_MARKETO_SYNC, ROLE_SALESPERSON, ROLE_SYSADMIN};
use crate::store::{self, Schema};

/// Ids and credentials fixed at store creation (kept across resets and restarts).
#[derive(Clone, Serialize, Deserialize)]
pub struct OrgIds {
    pub tenant_id: String,
    pub organization_id: String,
    pub root_business_unit_id: String,
    pub admin_user_id: String,
    pub sales_user_id: String,
    pub service_user_id: String,
    pub admin_app_user_id: String,
    pub role_sysadmin_id: String,
    pub role_salesperson_id: String,
    pub role_marketo_sync_id: String,
    pub default_team_id: String,
    pub marketing_team_id: String,
    pub solution_id: String,
    pub config_id: String,
    pub admin_client_id: String,
    pub admin_client_secret: String,
    pub admin_object_id: String,
    pub sync_client_id: String,
    pub sync_client_secret: String,
    pub sync_object_id: String,
    /// HMAC key signing access tokens.
    pub token_secret: String,
}

impl std::fmt::Debug for OrgIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgIds")
            .field("tenant_id", &self.tenant_id)
            .field("admin_client_id", &self.admin_client_id)
            .field("sync_client_id", &self.sync_client_id)
            .finish_non_exhaustive()
    }
}

/// An Entra-style client secret (`xxx~yyyy`), random.
pub fn new_secret() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.";
    let mut rng = rand::rng();
    let mut s: String = (0..3)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    s.push('8');
    s.push('Q');
    s.push('~');
    s.extend((0..34).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char));
    s
}

fn id() -> String {
    Uuid::new_v4().to_string()
}

impl OrgIds {
    fn generate() -> Self {
        OrgIds {
            tenant_id: id(),
            organization_id: id(),
            root_business_unit_id: id(),
            admin_user_id: id(),
            sales_user_id: id(),
            service_user_id: id(),
            admin_app_user_id: id(),
            role_sysadmin_id: id(),
            role_salesperson_id: id(),
            role_marketo_sync_id: id(),
            default_team_id: id(),
            marketing_team_id: id(),
            solution_id: id(),
            config_id: id(),
            admin_client_id: id(),
            admin_client_secret: new_secret(),
            admin_object_id: id(),
            sync_client_id: id(),
            sync_client_secret: new_secret(),
            sync_object_id: id(),
            token_secret: hex::encode(Uuid::new_v4().as_bytes())
                + &hex::encode(Uuid::new_v4().as_bytes()),
        }
    }

    /// Loads the ids from the store, creating (and persisting) them on first use.
    pub fn load_or_create(conn: &Connection) -> rusqlite::Result<OrgIds> {
        if let Some(text) = store::meta_get(conn, "org")?
            && let Ok(ids) = serde_json::from_str::<OrgIds>(&text)
        {
            return Ok(ids);
        }
        let ids = OrgIds::generate();
        store::meta_set(
            conn,
            "org",
            &serde_json::to_string(&ids).unwrap_or_default(),
        )?;
        for (client, secret, name, oid) in [
            (
                &ids.admin_client_id,
                &ids.admin_client_secret,
                "mdsync admin app",
                &ids.admin_object_id,
            ),
            (
                &ids.sync_client_id,
                &ids.sync_client_secret,
                "Marketo Sync App",
                &ids.sync_object_id,
            ),
        ] {
            conn.execute(
                "INSERT OR REPLACE INTO apps(client_id, secret, name, object_id) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![client, secret, name, oid],
            )?;
        }
        Ok(ids)
    }
}

/// The identity the seeding writes as (SYSTEM-like: the admin user).
fn system_caller(ids: &OrgIds) -> Caller {
    Caller {
        user_id: ids.admin_user_id.clone(),
        business_unit_id: ids.root_business_unit_id.clone(),
        fullname: "Alex Admin".into(),
        access_mode: 0,
        role_count: 1,
        privileges: Default::default(),
        calling_user_id: None,
    }
}

/// Inserts a record with system columns filled (no security checks: seeding only).
pub fn insert_raw(
    conn: &Connection,
    schema: &Schema,
    entity: &str,
    id: &str,
    fields: Value,
    caller: &Caller,
) -> rusqlite::Result<()> {
    let Some(def) = schema.by_logical(entity) else {
        return Ok(());
    };
    let mut row: Map<String, Value> = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    row.insert(def.primary_key.clone(), Value::String(id.to_string()));
    // Lookups given as `_x_value` get their target annotation.
    let lookups: Vec<(String, String)> = def
        .columns
        .iter()
        .filter_map(|c| match &c.ty {
            crate::schema::ColumnType::Lookup { targets } if row.contains_key(&c.wire_name()) => {
                Some((c.wire_name(), targets[0].clone()))
            }
            _ => None,
        })
        .collect();
    for (wire, target) in lookups {
        if !row.contains_key(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname")) {
            row.insert(
                format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                Value::String(target),
            );
        }
    }
    compute_fullname(&def, &mut row);
    let body = row.clone();
    let _ = fix_state(&def, &mut row, &body, id);
    let v = store::next_version(conn)?;
    stamp(&def, &mut row, caller, v, &now_string(), true);
    store::put(conn, &def, id, &row)
}

/// Number of SDK message processing steps the Marketo solution registers.
pub const MARKETO_STEPS: &[&str] = &[
    "Marketo.Crm.Plugins.LeadPlugin: Create of lead",
    "Marketo.Crm.Plugins.LeadPlugin: Update of lead",
    "Marketo.Crm.Plugins.LeadPlugin: Delete of lead",
    "Marketo.Crm.Plugins.ContactPlugin: Create of contact",
    "Marketo.Crm.Plugins.ContactPlugin: Update of contact",
    "Marketo.Crm.Plugins.ContactPlugin: Delete of contact",
    "Marketo.Crm.Plugins.AccountPlugin: Update of account",
    "Marketo.Crm.Plugins.OpportunityPlugin: Update of opportunity",
];

/// Seeds the organization model into an empty store.
pub fn seed(
    conn: &Connection,
    schema: &Schema,
    ids: &OrgIds,
    solution_version: &str,
) -> rusqlite::Result<()> {
    let c = system_caller(ids);
    let bu = ids.root_business_unit_id.as_str();
    insert_raw(
        conn,
        schema,
        "organization",
        &ids.organization_id,
        json!({"name": "mdsync", "languagecode": 1033, "expirechangetrackingindays": 7}),
        &c,
    )?;
    insert_raw(
        conn,
        schema,
        "businessunit",
        bu,
        json!({"name": "mdsync", "_parentbusinessunitid_value": null}),
        &c,
    )?;
    let roles = [
        (
            &ids.role_sysadmin_id,
            ROLE_SYSADMIN,
            Some("627090ff-40a3-4053-8790-584edc5be201"),
        ),
        (&ids.role_salesperson_id, ROLE_SALESPERSON, None),
        (&ids.role_marketo_sync_id, ROLE_MARKETO_SYNC, None),
    ];
    for (rid, name, template) in roles {
        insert_raw(
            conn,
            schema,
            "role",
            rid,
            json!({
                "name": name, "roletemplateid": template, "ismanaged": name == ROLE_MARKETO_SYNC,
                "_businessunitid_value": bu, "_parentrootroleid_value": rid,
            }),
            &c,
        )?;
        security::grant_builtin(conn, rid, name)?;
    }
    let users = [
        (
            &ids.admin_user_id,
            json!({"firstname": "Alex", "lastname": "Admin", "domainname": "admin@mdsync.onmicrosoft.com",
            "internalemailaddress": "admin@mdsync.onmicrosoft.com", "accessmode": 0, "islicensed": true, "title": "CRM Administrator"}),
            Some(&ids.role_sysadmin_id),
        ),
        (
            &ids.sales_user_id,
            json!({"firstname": "Sam", "lastname": "Seller", "domainname": "sam.seller@mdsync.onmicrosoft.com",
            "internalemailaddress": "sam.seller@mdsync.onmicrosoft.com", "accessmode": 0, "islicensed": true, "title": "Account Executive"}),
            Some(&ids.role_salesperson_id),
        ),
        (
            &ids.service_user_id,
            json!({"firstname": "Robin", "lastname": "Reader", "domainname": "robin.reader@mdsync.onmicrosoft.com",
            "internalemailaddress": "robin.reader@mdsync.onmicrosoft.com", "accessmode": 0, "islicensed": true, "title": "Analyst"}),
            None,
        ),
        (
            &ids.admin_app_user_id,
            json!({"firstname": "#", "lastname": "mdsync admin app",
            "domainname": format!("{}@mdsync.onmicrosoft.com", ids.admin_client_id),
            "internalemailaddress": format!("{}@mdsync.onmicrosoft.com", ids.admin_client_id),
            "applicationid": ids.admin_client_id, "azureactivedirectoryobjectid": ids.admin_object_id,
            "accessmode": 4, "islicensed": false}),
            Some(&ids.role_sysadmin_id),
        ),
    ];
    for (uid, mut fields, role) in users {
        if let Value::Object(m) = &mut fields {
            m.insert("_businessunitid_value".into(), Value::String(bu.into()));
            m.insert("isdisabled".into(), Value::Bool(false));
            m.insert("isintegrationuser".into(), Value::Bool(false));
            if !m.contains_key("azureactivedirectoryobjectid") {
                m.insert("azureactivedirectoryobjectid".into(), Value::String(id()));
            }
        }
        insert_raw(conn, schema, "systemuser", uid, fields, &c)?;
        insert_raw(
            conn,
            schema,
            "usersettings",
            uid,
            json!({"uilanguageid": 1033, "helplanguageid": 1033, "localeid": 1033, "timezonecode": 85}),
            &c,
        )?;
        if let Some(r) = role {
            store::associate(conn, "systemuserroles_association", uid, r)?;
        }
        store::associate(
            conn,
            "teammembership_association",
            uid,
            &ids.default_team_id,
        )?;
    }
    insert_raw(
        conn,
        schema,
        "team",
        &ids.default_team_id,
        json!({"name": "mdsync", "teamtype": 0, "isdefault": true, "_businessunitid_value": bu}),
        &c,
    )?;
    insert_raw(
        conn,
        schema,
        "team",
        &ids.marketing_team_id,
        json!({"name": "Marketing", "teamtype": 0, "isdefault": false, "_businessunitid_value": bu}),
        &c,
    )?;
    insert_raw(
        conn,
        schema,
        "solution",
        &ids.solution_id,
        json!({
            "uniquename": "MarketoLeadManagement", "friendlyname": "Marketo Lead Management",
            "version": solution_version, "ismanaged": true, "isvisible": true, "installedon": now_string(),
            "description": "Marketo Lead Management solution for Microsoft Dynamics",
        }),
        &c,
    )?;
    for (i, name) in MARKETO_STEPS.iter().enumerate() {
        let step = crate::schema::stable_uuid(&format!("{}:step:{i}", ids.solution_id)).to_string();
        insert_raw(
            conn,
            schema,
            "sdkmessageprocessingstep",
            &step,
            json!({
                "name": name, "description": name, "stage": 40, "mode": 0, "rank": 1,
                "solutionid": ids.solution_id, "statecode": 0, "statuscode": 1,
            }),
            &c,
        )?;
        let comp =
            crate::schema::stable_uuid(&format!("{}:component:{i}", ids.solution_id)).to_string();
        insert_raw(
            conn,
            schema,
            "solutioncomponent",
            &comp,
            json!({
                "componenttype": 92, "objectid": step, "rootcomponentbehavior": 0, "_solutionid_value": ids.solution_id,
            }),
            &c,
        )?;
    }
    let role_comp =
        crate::schema::stable_uuid(&format!("{}:component:role", ids.solution_id)).to_string();
    insert_raw(
        conn,
        schema,
        "solutioncomponent",
        &role_comp,
        json!({
            "componenttype": 20, "objectid": ids.role_marketo_sync_id, "rootcomponentbehavior": 0, "_solutionid_value": ids.solution_id,
        }),
        &c,
    )?;
    insert_raw(
        conn,
        schema,
        "mkt_marketoconfig",
        &ids.config_id,
        json!({"mkt_name": "Default", "_mkt_marketouserid_value": null, "_ownerid_value": ids.admin_user_id}),
        &c,
    )?;
    store::meta_set(conn, "seeded", "1")?;
    Ok(())
}
