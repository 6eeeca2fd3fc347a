//! `mdsync validate`: the seven checks of Marketo's "Validate Sync Setup" plus mdsync's own, all run every
//! time (never stopping at the first failure), each with what was found and a specific fix.
//!
//! The checks read the org with the administrator app when `[dynamics.admin]` is configured (so one broken
//! piece fails only its own check), otherwise as the sync app, like Marketo's validator does.
//! The identity behind the credentials is `WhoAmI`; when Dataverse refuses `WhoAmI` (user disabled, wrong
//! secret) it is the application user bound to `dynamics.client_id`, which is how Dataverse maps an app
//! token to a user.

mod dynamics;
mod marketo;

use mdsync_config::Config;
use mdsync_dataverse_client::{Client, DataverseError, WhoAmI};
use serde::Serialize;

use crate::org;
use dynamics::*;
use marketo::*;

/// The column of Marketo's custom sync filter.
pub const FILTER_FIELD: &str = "new_synctomkto";

pub const ORG_URL: &str = "dynamics_org_url";
pub const CREDENTIALS: &str = "dynamics_credentials";
pub const ROLE: &str = "sync_user_role";
pub const SOLUTION: &str = "marketo_solution";
pub const STEPS: &str = "solution_steps";
pub const MARKETO_USER_SET: &str = "marketo_user_set";
pub const MARKETO_USER_MATCHES: &str = "marketo_user_is_credentials";
pub const USER_ENABLED: &str = "sync_user_enabled";
pub const USER_LANGUAGE: &str = "sync_user_language";
pub const MARKETO_CREDENTIALS: &str = "marketo_credentials";
pub const MARKETO_FIELDS: &str = "marketo_fields";
pub const FILTER: &str = "sync_filter_field";

/// One check: `fix` is empty when it passed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub found: String,
    pub fix: String,
}

/// Every check, in order; `ok` only when all passed.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }
}

pub(super) fn pass(name: &str, found: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        found: found.into(),
        fix: String::new(),
    }
}

pub(super) fn fail(name: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        found: found.into(),
        fix: fix.into(),
    }
}

pub(super) const RUN_SYNC_USER: &str = "run `mdsync setup sync-user`";

/// Runs every check against the services named by `config`.
pub async fn validate(config: &Config) -> Report {
    let mut checks = vec![org_url(&config.dynamics.url).await];

    // Credentials of the sync app and the identity Dataverse gives them.
    let sync = Client::new(config.dynamics.client_config());
    let (credentials, whoami): (Check, Result<WhoAmI, String>) = match &sync {
        Err(e) => (
            fail(
                CREDENTIALS,
                format!("cannot build the client: {e}"),
                "fix [dynamics] in the config",
            ),
            Err(e.to_string()),
        ),
        Ok(client) => match client.authenticate().await {
            Err(e) => (
                fail(
                    CREDENTIALS,
                    format!("the token endpoint refused the sync app: {}", e.message()),
                    "check dynamics.tenant_id, dynamics.client_id and dynamics.client_secret (or the variable named by \
                     client_secret_env); create a new client secret for the app in Entra ID if it expired",
                ),
                Err(format!(
                    "the Dynamics credentials were rejected ({})",
                    e.message()
                )),
            ),
            Ok(()) => (
                pass(
                    CREDENTIALS,
                    format!(
                        "token issued to client id {} by {}",
                        config.dynamics.client_id, config.dynamics.authority
                    ),
                ),
                client.whoami().await.map_err(|e| describe(&e)),
            ),
        },
    };
    checks.push(credentials);

    // The client that inspects the org: admin when configured, else the sync app.
    let admin = config.dynamics.admin_client_config().map(Client::new);
    let inspector: Result<Client, String> = match (admin, &sync) {
        (Some(Ok(a)), _) => match a.authenticate().await {
            Ok(()) => Ok(a),
            Err(e) => Err(format!(
                "the [dynamics.admin] credentials were rejected ({})",
                e.message()
            )),
        },
        (Some(Err(e)), _) => Err(e.to_string()),
        (None, Ok(s)) => Ok(s.clone()),
        (None, Err(e)) => Err(e.to_string()),
    };

    let user = match &inspector {
        Ok(i) => resolve_user(i, config, whoami.as_ref().ok()).await,
        Err(e) => Err(e.clone()),
    };
    let solution = match &inspector {
        Ok(i) => org::marketo_solution(i).await.map_err(|e| describe(&e)),
        Err(e) => Err(e.clone()),
    };

    checks.push(role_check(&inspector, sync.as_ref().ok(), &user, &whoami, &solution).await);
    checks.push(solution_check(&solution));
    checks.push(steps_check(&inspector, &solution).await);
    let marketo_user = match &inspector {
        Ok(i) => org::default_config(i).await.map_err(|e| describe(&e)),
        Err(e) => Err(e.clone()),
    };
    checks.push(marketo_user_set_check(&inspector, &marketo_user).await);
    checks.push(identity_check(config, &user, &whoami, &marketo_user));
    checks.push(enabled_check(&user));
    checks.push(language_check(&inspector, &user).await);

    let marketo = mdsync_marketo_client::Client::new(config.marketo_client_config());
    let (mk_check, mk_ok) = marketo_check(&marketo, config.sync.marketo_daily_budget).await;
    checks.push(mk_check);
    checks.push(fields_check(marketo.as_ref().ok().filter(|_| mk_ok)).await);
    checks.push(filter_check(&inspector, config).await);

    Report {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The error's message with its code, for `found`.
pub(super) fn describe(e: &DataverseError) -> String {
    match (e.status(), e.code()) {
        (Some(s), Some(c)) => format!("{} (HTTP {s}, {c})", e.message()),
        (Some(s), None) => format!("{} (HTTP {s})", e.message()),
        _ => e.message().to_string(),
    }
}
