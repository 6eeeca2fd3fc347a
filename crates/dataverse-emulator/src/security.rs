//! Role-based security: privileges per role and table, the caller's effective rights, and the
//! checks every data call makes.
//!
//! Built-in roles (organization-level depth; rights are Create, Read, Write, Delete, Append, AppendTo):
//! - **System Administrator**: every right on every table, customization (custom columns,
//!   `PublishAllXml`), security (role association) and impersonation (`MSCRMCallerID`).
//! - **Salesperson**: create/read/write/delete/append on `account`, `contact`, `lead`,
//!   `opportunity`; read on `systemuser`, `team`, `businessunit`.
//! - **Marketo Sync User**: create/read/write/append/append-to on `lead` and `contact`; read on
//!   `account`, `opportunity`, `systemuser`, `team` and the Marketo configuration
//!   (`mkt_marketoconfig`). No delete anywhere. It also reads the platform tables the Marketo
//!   "Validate Sync Setup" inspects as the sync user (`role`, `businessunit`, `organization`,
//!   `solution`, `solutioncomponent`, `sdkmessageprocessingstep`) — in the real service those come
//!   from baseline privileges such as `prvReadSolution`.
//!
//! Every user may read and update their own `usersettings` row (language), as in the real service.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::schema::{EntityDef, stable_uuid};
use crate::store;

pub const CREATE: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
pub const DELETE: u32 = 8;
pub const APPEND: u32 = 16;
pub const APPEND_TO: u32 = 32;
pub const ALL: u32 = 63;

/// Privilege table key meaning "every table".
pub const ANY_ENTITY: &str = "*";

/// Names of the built-in roles.
pub const ROLE_SYSADMIN: &str = "System Administrator";
pub const ROLE_SALESPERSON: &str = "Salesperson";
pub const ROLE_MARKETO_SYNC: &str = "Marketo Sync User";

/// (entity, rights) pairs a built-in role grants.
pub fn builtin_privileges(role: &str) -> Vec<(&'static str, u32)> {
    match role {
        ROLE_SYSADMIN => vec![(ANY_ENTITY, ALL)],
        ROLE_SALESPERSON => {
            let crwd = CREATE | READ | WRITE | DELETE | APPEND | APPEND_TO;
            vec![
                ("account", crwd),
                ("contact", crwd),
                ("lead", crwd),
                ("opportunity", crwd),
                ("systemuser", READ),
                ("team", READ),
                ("businessunit", READ),
            ]
        }
        ROLE_MARKETO_SYNC => {
            let crw = CREATE | READ | WRITE | APPEND | APPEND_TO;
            vec![
                ("lead", crw),
                ("contact", crw),
                ("account", READ | APPEND_TO),
                ("opportunity", READ),
                ("systemuser", READ),
                ("team", READ),
                ("mkt_marketoconfig", READ),
                ("role", READ),
                ("businessunit", READ),
                ("organization", READ),
                ("solution", READ),
                ("solutioncomponent", READ),
                ("sdkmessageprocessingstep", READ),
            ]
        }
        _ => Vec::new(),
    }
}

/// The authenticated (or impersonated) user a request runs as.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: String,
    pub business_unit_id: String,
    pub fullname: String,
    pub access_mode: i64,
    pub role_count: usize,
    /// entity logical name (or `*`) → rights bitmask.
    pub privileges: HashMap<String, u32>,
    /// The user the token belongs to when impersonating.
    pub calling_user_id: Option<String>,
}

impl Caller {
    pub fn rights(&self, entity: &str) -> u32 {
        self.privileges.get(ANY_ENTITY).copied().unwrap_or(0)
            | self.privileges.get(entity).copied().unwrap_or(0)
    }
    pub fn is_admin(&self) -> bool {
        self.privileges.get(ANY_ENTITY).copied().unwrap_or(0) == ALL
    }
    fn privilege_count(&self) -> u32 {
        self.privileges.values().map(|r| r.count_ones()).sum()
    }

    /// Denies with the platform's `PrivilegeDenied` message naming `prv<Right><Entity>`.
    pub fn deny(&self, privilege: &str, def: Option<&EntityDef>) -> ApiError {
        let (otc, name) = def
            .map(|d| (d.object_type_code, d.logical_name.as_str()))
            .unwrap_or((0, "none"));
        ApiError::privilege_denied(format!(
            "Principal user (Id={}, type=8, roleCount={}, privilegeCount={}, accessMode={}), is missing {} privilege (Id={}) on OTC={} for entity '{}'. context.Caller={}",
            self.user_id,
            self.role_count,
            self.privilege_count(),
            self.access_mode,
            privilege,
            stable_uuid(&format!("privilege:{privilege}")),
            otc,
            name,
            self.calling_user_id.as_deref().unwrap_or(&self.user_id),
        ))
    }

    /// Checks a table-level right, e.g. `check(def, READ)`.
    pub fn check(&self, def: &EntityDef, right: u32) -> ApiResult<()> {
        if self.rights(&def.logical_name) & right == right {
            return Ok(());
        }
        Err(self.deny(&privilege_name(def, right), Some(def)))
    }

    /// Checks a right on one record; self-service tables allow the user's own row.
    pub fn check_record(&self, def: &EntityDef, right: u32, id: &str) -> ApiResult<()> {
        if def.self_service && id.eq_ignore_ascii_case(&self.user_id) && right & DELETE == 0 {
            return Ok(());
        }
        self.check(def, right)
    }

    /// Customization rights (custom columns, publishing) are System Administrator only.
    pub fn check_admin(&self, privilege: &str) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.deny(privilege, None))
        }
    }
}

/// `prvReadLead`-style privilege names.
pub fn privilege_name(def: &EntityDef, right: u32) -> String {
    let r = match right {
        CREATE => "Create",
        READ => "Read",
        WRITE => "Write",
        DELETE => "Delete",
        APPEND => "Append",
        APPEND_TO => "AppendTo",
        _ => "Access",
    };
    format!("prv{r}{}", def.schema_name)
}

/// Loads a user's effective privileges (own roles plus roles of their teams).
pub fn load_caller(conn: &Connection, users: &EntityDef, user_id: &str) -> ApiResult<Caller> {
    let row = store::get(conn, users, user_id)?.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "0x80072560",
            "The user is not a member of the organization.",
        )
    })?;
    if row
        .get("isdisabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "0x80040225",
            format!("The specified user(Id = {user_id}) is disabled. Consider enabling this user."),
        ));
    }
    let mut roles = store::linked_b(conn, "systemuserroles_association", user_id)?;
    for team in store::linked_b(conn, "teammembership_association", user_id)? {
        roles.extend(store::linked_b(conn, "teamroles_association", &team)?);
    }
    roles.sort();
    roles.dedup();
    let mut privileges: HashMap<String, u32> = HashMap::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT entity, rights FROM role_privileges WHERE roleid = ?1")?;
        for role in &roles {
            let rows = stmt.query_map([role], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })?;
            for r in rows {
                let (e, rights) = r?;
                *privileges.entry(e).or_insert(0) |= rights;
            }
        }
    }
    Ok(Caller {
        user_id: user_id.to_string(),
        business_unit_id: row
            .get("_businessunitid_value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        fullname: row
            .get("fullname")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        access_mode: row.get("accessmode").and_then(Value::as_i64).unwrap_or(0),
        role_count: roles.len(),
        privileges,
        calling_user_id: None,
    })
}

/// Grants a role its built-in privileges (used when seeding and when roles are created by name).
pub fn grant_builtin(conn: &Connection, role_id: &str, role_name: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO role_privileges(roleid, entity, rights) VALUES (?1, ?2, ?3)",
    )?;
    for (entity, rights) in builtin_privileges(role_name) {
        stmt.execute(rusqlite::params![role_id, entity, rights])?;
    }
    Ok(())
}
