//! Read-only lookups in the Dynamics org, shared by `setup` and `validate`.
//!
//! Names used (from the Marketo solution as the emulator models it): solution `MarketoLeadManagement`,
//! role **Marketo Sync User**, table `mkt_marketoconfig` with the **Default** record and its
//! `mkt_marketouserid` lookup. SDK steps are the solution's components of type 92.

use futures::TryStreamExt;
use mdsync_dataverse_client::{Client, DataverseError, QueryOptions, Row};
use serde_json::Value;
use uuid::Uuid;

/// Display name of the security role the sync user must hold.
pub const SYNC_ROLE: &str = "Marketo Sync User";
/// Unique name of the Marketo solution.
pub const SOLUTION_UNIQUE_NAME: &str = "MarketoLeadManagement";
/// Primary name of the configuration record the solution reads.
pub const DEFAULT_CONFIG: &str = "Default";
/// From this solution version on, only the sync user needs the sync role.
pub const ROLE_ONLY_SYNC_USER_FROM: &str = "4.0.0.14";
/// `uilanguageid` of English (United States).
pub const ENGLISH: i64 = 1033;
/// Solution component type of an SDK message processing step.
const STEP_COMPONENT: i64 = 92;

/// A user as setup and validation see it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub fullname: String,
    pub domainname: String,
    pub application_id: Option<String>,
    pub access_mode: i64,
    pub licensed: bool,
    pub disabled: bool,
}

impl User {
    pub(crate) fn from_row(row: &Row) -> Option<User> {
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(User {
            id: row.get("systemuserid")?.as_str()?.parse().ok()?,
            fullname: text("fullname"),
            domainname: text("domainname"),
            application_id: row
                .get("applicationid")
                .and_then(Value::as_str)
                .map(str::to_string),
            access_mode: row.get("accessmode").and_then(Value::as_i64).unwrap_or(0),
            licensed: row
                .get("islicensed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            disabled: row
                .get("isdisabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// `accessmode` as the admin centre names it.
    pub fn access_mode_name(&self) -> &'static str {
        match self.access_mode {
            0 => "Read-Write",
            1 => "Administrative",
            2 => "Read",
            3 => "Support User",
            4 => "Non-interactive",
            5 => "Delegated Admin",
            _ => "unknown",
        }
    }

    /// "Alex Admin <admin@x>" for messages.
    pub fn label(&self) -> String {
        format!("{} <{}> ({})", self.fullname, self.domainname, self.id)
    }
}

pub(crate) const USER_COLUMNS: &[&str] = &[
    "systemuserid",
    "fullname",
    "domainname",
    "applicationid",
    "accessmode",
    "islicensed",
    "isdisabled",
];

/// An OData string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn first(
    client: &Client,
    set: &str,
    options: QueryOptions,
) -> Result<Option<Row>, DataverseError> {
    client.query_first(set, &options).await
}

/// The application user bound to `client_id`, if any.
pub async fn app_user(client: &Client, client_id: &str) -> Result<Option<User>, DataverseError> {
    let Ok(app) = client_id.trim().parse::<Uuid>() else {
        return Ok(None);
    };
    let row = first(
        client,
        "systemusers",
        QueryOptions::new()
            .select(USER_COLUMNS.iter().copied())
            .filter(format!("applicationid eq {app}")),
    )
    .await?;
    Ok(row.as_ref().and_then(User::from_row))
}

/// A user by sign-in name (`domainname`) or primary email.
pub async fn named_user(client: &Client, name: &str) -> Result<Option<User>, DataverseError> {
    let q = quote(name);
    let row = first(
        client,
        "systemusers",
        QueryOptions::new()
            .select(USER_COLUMNS.iter().copied())
            .filter(format!("domainname eq {q} or internalemailaddress eq {q}")),
    )
    .await?;
    Ok(row.as_ref().and_then(User::from_row))
}

/// A user by id.
pub async fn user(client: &Client, id: Uuid) -> Result<Option<User>, DataverseError> {
    match client.retrieve("systemusers", id, USER_COLUMNS).await {
        Ok(row) => Ok(User::from_row(&row)),
        Err(e) if e.kind() == mdsync_dataverse_client::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The root business unit (the one without a parent).
pub async fn root_business_unit(client: &Client) -> Result<Option<Uuid>, DataverseError> {
    let row = first(
        client,
        "businessunits",
        QueryOptions::new()
            .select(["businessunitid", "name"])
            .filter("_parentbusinessunitid_value eq null"),
    )
    .await?;
    Ok(row.as_ref().and_then(|r| guid(r, "businessunitid")))
}

/// The sync role of the root business unit.
pub async fn sync_role(client: &Client, root_bu: Uuid) -> Result<Option<Uuid>, DataverseError> {
    let row = first(
        client,
        "roles",
        QueryOptions::new()
            .select(["roleid", "name"])
            .filter(format!(
                "name eq {} and _businessunitid_value eq {root_bu}",
                quote(SYNC_ROLE)
            )),
    )
    .await?;
    Ok(row.as_ref().and_then(|r| guid(r, "roleid")))
}

/// Names and ids of the roles assigned directly to a user.
pub async fn user_roles(
    client: &Client,
    user: Uuid,
) -> Result<Vec<(Uuid, String)>, DataverseError> {
    let value = client
        .get_json(&format!(
            "systemusers({user})/systemuserroles_association?$select=roleid,name"
        ))
        .await?;
    Ok(value
        .get("value")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    let id = r.get("roleid")?.as_str()?.parse().ok()?;
                    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                    Some((id, name.to_string()))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Users holding a role directly (a role has few holders; read as one collection).
pub async fn role_holders(client: &Client, role: Uuid) -> Result<Vec<User>, DataverseError> {
    let value = client
        .get_json(&format!(
            "roles({role})/systemuserroles_association?$select={}",
            USER_COLUMNS.join(",")
        ))
        .await?;
    Ok(value
        .get("value")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.as_object().and_then(User::from_row))
                .collect()
        })
        .unwrap_or_default())
}

/// The Marketo solution: its id and version.
#[derive(Clone, Debug)]
pub struct Solution {
    pub id: Uuid,
    pub name: String,
    pub version: String,
}

pub async fn marketo_solution(client: &Client) -> Result<Option<Solution>, DataverseError> {
    let row = first(
        client,
        "solutions",
        QueryOptions::new()
            .select(["solutionid", "friendlyname", "version"])
            .filter(format!("uniquename eq {}", quote(SOLUTION_UNIQUE_NAME))),
    )
    .await?;
    Ok(row.and_then(|r| {
        Some(Solution {
            id: guid(&r, "solutionid")?,
            name: r
                .get("friendlyname")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            version: r
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }))
}

/// An SDK step of the solution.
#[derive(Clone, Debug)]
pub struct Step {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
}

/// The solution's SDK steps (through `solutioncomponents`), in component order.
pub async fn solution_steps(client: &Client, solution: Uuid) -> Result<Vec<Step>, DataverseError> {
    let pages = client.query(
        "solutioncomponents",
        &QueryOptions::new()
            .select(["objectid", "componenttype"])
            .filter(format!(
                "_solutionid_value eq {solution} and componenttype eq {STEP_COMPONENT}"
            ))
            .page_size(500),
    );
    futures::pin_mut!(pages);
    let mut steps = Vec::new();
    while let Some(page) = pages.try_next().await? {
        for row in page.rows {
            let Some(id) = guid(&row, "objectid") else {
                continue;
            };
            match client
                .retrieve("sdkmessageprocessingsteps", id, &["name", "statecode"])
                .await
            {
                Ok(step) => steps.push(Step {
                    id,
                    name: step
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    enabled: step.get("statecode").and_then(Value::as_i64) == Some(0),
                }),
                Err(e) if e.kind() == mdsync_dataverse_client::ErrorKind::NotFound => {
                    steps.push(Step {
                        id,
                        name: format!("missing step {id}"),
                        enabled: false,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(steps)
}

/// The Default configuration record: its id and the Marketo User it names.
pub async fn default_config(
    client: &Client,
) -> Result<Option<(Uuid, Option<Uuid>)>, DataverseError> {
    let row = first(
        client,
        "mkt_marketoconfigs",
        QueryOptions::new()
            .select([
                "mkt_marketoconfigid",
                "mkt_name",
                "_mkt_marketouserid_value",
            ])
            .filter(format!("mkt_name eq {}", quote(DEFAULT_CONFIG))),
    )
    .await?;
    Ok(row.and_then(|r| {
        Some((
            guid(&r, "mkt_marketoconfigid")?,
            guid(&r, "_mkt_marketouserid_value"),
        ))
    }))
}

/// A user's UI language (`usersettings.uilanguageid`).
pub async fn ui_language(client: &Client, user: Uuid) -> Result<Option<i64>, DataverseError> {
    let row = client
        .retrieve("usersettingscollection", user, &["uilanguageid"])
        .await?;
    Ok(row.get("uilanguageid").and_then(Value::as_i64))
}

fn guid(row: &Row, key: &str) -> Option<Uuid> {
    row.get(key)?.as_str()?.parse().ok()
}

/// Compares dotted versions numerically (`4.0.0.9` < `4.0.0.14`); non-numeric parts count as 0.
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.trim()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parts(version), parts(minimum));
    let n = a.len().max(b.len());
    let at = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..n {
        match at(&a, i).cmp(&at(&b, i)) {
            std::cmp::Ordering::Equal => continue,
            other => return other == std::cmp::Ordering::Greater,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("4.0.0.14", "4.0.0.14"));
        assert!(version_at_least("5.0.2.1", "4.0.0.14"));
        assert!(!version_at_least("4.0.0.13", "4.0.0.14"));
        assert!(!version_at_least("4.0.0.9", "4.0.0.14"));
        assert!(version_at_least("4.1", "4.0.0.14"));
    }

    #[test]
    fn string_literals_escape_quotes() {
        assert_eq!(quote("O'Brien"), "'O''Brien'");
    }
}
