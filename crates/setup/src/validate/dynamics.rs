//! The Dynamics side of validation: the org, the sync user, the Marketo solution and the sync filter.

use std::time::Duration;

use mdsync_config::Config;
use mdsync_dataverse_client::{Client, ErrorKind, QueryOptions, WhoAmI};
use uuid::Uuid;

use super::*;
use crate::org::{self, ENGLISH, ROLE_ONLY_SYNC_USER_FROM, SYNC_ROLE, User};
use crate::sync_filter::{FilterColumn, filter_column};

pub(super) async fn org_url(url: &str) -> Check {
    let fix = "set dynamics.url to the org root, e.g. https://contoso.crm.dynamics.com (Settings > Customizations > \
               Developer Resources shows it), and check the network path to it";
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(ORG_URL, format!("cannot build an HTTP client: {e}"), fix),
    };
    let target = format!("{url}/api/data/v9.2/");
    match http.get(&target).send().await {
        Err(e) => fail(
            ORG_URL,
            format!("{target} is unreachable: {}", e.without_url()),
            fix,
        ),
        Ok(r) => {
            let challenge = r
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let status = r.status().as_u16();
            if status == 401 && challenge.starts_with("Bearer") {
                let uri = challenge
                    .split([',', ' '])
                    .find_map(|p| p.strip_prefix("authorization_uri="))
                    .unwrap_or("?");
                pass(
                    ORG_URL,
                    format!(
                        "{target} answers as a Dataverse Web API (401 Bearer challenge, authorization_uri={uri})"
                    ),
                )
            } else {
                fail(
                    ORG_URL,
                    format!(
                        "{target} answered HTTP {status} without a Dataverse Bearer challenge: not a Dataverse org"
                    ),
                    fix,
                )
            }
        }
    }
}

/// The sync user: `dynamics.sync_user` when set, else the `WhoAmI` user, else the app's application user.
pub(super) async fn resolve_user(
    inspector: &Client,
    config: &Config,
    whoami: Option<&WhoAmI>,
) -> Result<Option<User>, String> {
    let found = if let Some(name) = &config.dynamics.sync_user {
        org::named_user(inspector, name).await
    } else if let Some(me) = whoami {
        org::user(inspector, me.user_id).await
    } else {
        org::app_user(inspector, &config.dynamics.client_id).await
    };
    found.map_err(|e| describe(&e))
}

pub(super) fn no_user_found(config_hint: &str) -> String {
    format!("no sync user: {config_hint}")
}

pub(super) async fn role_check(
    inspector: &Result<Client, String>,
    sync: Option<&Client>,
    user: &Result<Option<User>, String>,
    whoami: &Result<WhoAmI, String>,
    solution: &Result<Option<org::Solution>, String>,
) -> Check {
    let fix = format!("{RUN_SYNC_USER} (assigns the `{SYNC_ROLE}` role to the sync user)");
    let (i, user) = match (inspector, user) {
        (Err(e), _) | (_, Err(e)) => return fail(ROLE, format!("not checked: {e}"), fix),
        (_, Ok(None)) => {
            return fail(
                ROLE,
                no_user_found("the sync app has no application user in this org"),
                format!("{RUN_SYNC_USER} (creates the application user and assigns `{SYNC_ROLE}`)"),
            );
        }
        (Ok(i), Ok(Some(u))) => (i, u),
    };
    let roles = match org::user_roles(i, user.id).await {
        Ok(r) => r,
        Err(e) => {
            return fail(
                ROLE,
                format!(
                    "cannot read the roles of {}: {}",
                    user.label(),
                    describe(&e)
                ),
                fix,
            );
        }
    };
    let names: Vec<&str> = roles.iter().map(|(_, n)| n.as_str()).collect();
    let legacy = match solution {
        Ok(Some(s)) if !org::version_at_least(&s.version, ROLE_ONLY_SYNC_USER_FROM) => format!(
            "; solution {} predates {ROLE_ONLY_SYNC_USER_FROM}, so every user needs the role (`mdsync setup sync-user --assign-all`)",
            s.version
        ),
        _ => String::new(),
    };
    if !names.contains(&SYNC_ROLE) {
        // Show what the service itself says when the sync user works without the role.
        let refusal = match (sync, whoami) {
            (Some(s), Ok(_)) => match s
                .query_first("leads", &QueryOptions::new().select(["leadid"]))
                .await
            {
                Err(e) if e.kind() == ErrorKind::PrivilegeDenied => {
                    format!("; Dataverse refuses it: {}", describe(&e))
                }
                _ => String::new(),
            },
            _ => String::new(),
        };
        let held = if names.is_empty() {
            "no roles".to_string()
        } else {
            names.join(", ")
        };
        return fail(
            ROLE,
            format!(
                "{} holds {held}, not `{SYNC_ROLE}`{refusal}{legacy}",
                user.label()
            ),
            fix,
        );
    }
    let mut others = String::new();
    if let (Ok(Some(s)), Some((role, _))) = (solution, roles.iter().find(|(_, n)| n == SYNC_ROLE))
        && org::version_at_least(&s.version, ROLE_ONLY_SYNC_USER_FROM)
        && let Ok(holders) = org::role_holders(i, *role).await
    {
        let names: Vec<String> = holders
            .iter()
            .filter(|u| u.id != user.id)
            .map(User::label)
            .collect();
        if !names.is_empty() {
            others = format!(
                "; warning: {} other user(s) also hold it ({}): `mdsync setup sync-user --revoke-others` removes it",
                names.len(),
                names.join("; ")
            );
        }
    }
    pass(
        ROLE,
        format!("{} holds `{SYNC_ROLE}`{legacy}{others}", user.label()),
    )
}

pub(super) fn solution_check(solution: &Result<Option<org::Solution>, String>) -> Check {
    let fix = "install the Marketo Lead Management solution: Marketo Admin > CRM > Microsoft > Download Marketo Solution, \
               then import it in Dynamics (Settings > Solutions > Import, SDK option ticked) and publish; mdsync cannot install it";
    match solution {
        Err(e) => fail(SOLUTION, format!("not checked: {e}"), fix),
        Ok(None) => fail(
            SOLUTION,
            format!("no solution `{}` in the org", org::SOLUTION_UNIQUE_NAME),
            fix,
        ),
        Ok(Some(s)) => pass(SOLUTION, format!("{} {} installed", s.name, s.version)),
    }
}

pub(super) async fn steps_check(
    inspector: &Result<Client, String>,
    solution: &Result<Option<org::Solution>, String>,
) -> Check {
    let fix = "enable the listed SDK message processing steps (Settings > Customizations > Customize the System > SDK Message \
               Processing Steps > Activate, or PATCH sdkmessageprocessingsteps(<id>) with statecode 0, statuscode 1); \
               no `mdsync setup` command changes the solution's plug-in steps";
    let (i, s) = match (inspector, solution) {
        (Err(e), _) | (_, Err(e)) => return fail(STEPS, format!("not checked: {e}"), fix),
        (_, Ok(None)) => {
            return fail(
                STEPS,
                "not checked: the Marketo solution is not installed",
                "install the Marketo solution first (see marketo_solution)",
            );
        }
        (Ok(i), Ok(Some(s))) => (i, s),
    };
    match org::solution_steps(i, s.id).await {
        Err(e) => fail(
            STEPS,
            format!("cannot read the solution's steps: {}", describe(&e)),
            fix,
        ),
        Ok(steps) if steps.is_empty() => fail(
            STEPS,
            "the solution registers no SDK steps: it was imported without the SDK option",
            "re-import the Marketo solution with the SDK option ticked",
        ),
        Ok(steps) => {
            let disabled: Vec<String> = steps
                .iter()
                .filter(|s| !s.enabled)
                .map(|s| format!("{} ({})", s.name, s.id))
                .collect();
            if disabled.is_empty() {
                pass(
                    STEPS,
                    format!("{} of {} steps enabled", steps.len(), steps.len()),
                )
            } else {
                fail(
                    STEPS,
                    format!(
                        "{} of {} steps disabled: {}",
                        disabled.len(),
                        steps.len(),
                        disabled.join("; ")
                    ),
                    fix,
                )
            }
        }
    }
}

pub(super) async fn marketo_user_set_check(
    inspector: &Result<Client, String>,
    config: &Result<Option<(Uuid, Option<Uuid>)>, String>,
) -> Check {
    let fix = format!("{RUN_SYNC_USER} (sets Marketo User on the Default Marketo Config record)");
    match (inspector, config) {
        (Err(e), _) | (_, Err(e)) => fail(MARKETO_USER_SET, format!("not checked: {e}"), fix),
        (_, Ok(None)) => fail(
            MARKETO_USER_SET,
            "the Marketo Config record `Default` does not exist",
            "re-import the Marketo solution (it creates the `Default` record), then run `mdsync setup sync-user`",
        ),
        (_, Ok(Some((_, None)))) => {
            fail(MARKETO_USER_SET, "Marketo User on `Default` is empty", fix)
        }
        (Ok(i), Ok(Some((_, Some(u))))) => match org::user(i, *u).await {
            Ok(Some(user)) => pass(
                MARKETO_USER_SET,
                format!("Marketo User on `Default` is {}", user.label()),
            ),
            Ok(None) => fail(
                MARKETO_USER_SET,
                format!("Marketo User on `Default` names user {u}, which does not exist"),
                fix,
            ),
            Err(e) => fail(
                MARKETO_USER_SET,
                format!("cannot read user {u}: {}", describe(&e)),
                fix,
            ),
        },
    }
}

pub(super) fn identity_check(
    config: &Config,
    user: &Result<Option<User>, String>,
    whoami: &Result<WhoAmI, String>,
    marketo_user: &Result<Option<(Uuid, Option<Uuid>)>, String>,
) -> Check {
    let fix = format!(
        "{RUN_SYNC_USER} (points Marketo User on `Default` at the user behind dynamics.client_id)"
    );
    let marketo = match marketo_user {
        Err(e) => return fail(MARKETO_USER_MATCHES, format!("not checked: {e}"), fix),
        Ok(None) | Ok(Some((_, None))) => {
            return fail(
                MARKETO_USER_MATCHES,
                "no Marketo User to compare (see marketo_user_set)",
                fix,
            );
        }
        Ok(Some((_, Some(m)))) => *m,
    };
    let (me, how) = match (whoami, user) {
        (Ok(w), _) => (w.user_id, "WhoAmI".to_string()),
        (Err(why), Ok(Some(u))) if config.dynamics.sync_user.is_none() => (
            u.id,
            format!(
                "the application user of client id {} (WhoAmI unavailable: {why})",
                config.dynamics.client_id
            ),
        ),
        (Err(why), _) => {
            return fail(
                MARKETO_USER_MATCHES,
                format!("not verifiable: {why}"),
                format!("fix the failing checks above, then {RUN_SYNC_USER}"),
            );
        }
    };
    if me == marketo {
        pass(
            MARKETO_USER_MATCHES,
            format!("Marketo User {marketo} is the identity behind the credentials ({how})"),
        )
    } else {
        fail(
            MARKETO_USER_MATCHES,
            format!("Marketo User is {marketo}, but the credentials act as {me} ({how})"),
            fix,
        )
    }
}

pub(super) fn enabled_check(user: &Result<Option<User>, String>) -> Check {
    match user {
        Err(e) => fail(USER_ENABLED, format!("not checked: {e}"), RUN_SYNC_USER),
        Ok(None) => fail(
            USER_ENABLED,
            no_user_found("the sync app has no application user"),
            format!("{RUN_SYNC_USER} (creates it)"),
        ),
        Ok(Some(u)) if u.disabled => fail(
            USER_ENABLED,
            format!("{} is disabled", u.label()),
            format!("{RUN_SYNC_USER} (re-enables it)"),
        ),
        Ok(Some(u)) => pass(
            USER_ENABLED,
            format!("{} is enabled ({})", u.label(), u.access_mode_name()),
        ),
    }
}

pub(super) async fn language_check(
    inspector: &Result<Client, String>,
    user: &Result<Option<User>, String>,
) -> Check {
    let fix = format!(
        "{RUN_SYNC_USER} (sets the sync user's language to English), or set it in the user's Personal Options"
    );
    match (inspector, user) {
        (Err(e), _) | (_, Err(e)) => fail(USER_LANGUAGE, format!("not checked: {e}"), fix),
        (_, Ok(None)) => fail(
            USER_LANGUAGE,
            no_user_found("nothing to check"),
            format!("{RUN_SYNC_USER} (creates it, in English)"),
        ),
        (Ok(i), Ok(Some(u))) => match org::ui_language(i, u.id).await {
            Ok(Some(ENGLISH)) => pass(USER_LANGUAGE, "UI language 1033 (English)"),
            Ok(Some(other)) => fail(
                USER_LANGUAGE,
                format!("UI language is {other}, not 1033 (English)"),
                fix,
            ),
            Ok(None) => fail(USER_LANGUAGE, "the user has no UI language set", fix),
            Err(e) => fail(
                USER_LANGUAGE,
                format!("cannot read the user's settings: {}", describe(&e)),
                fix,
            ),
        },
    }
}

pub(super) async fn filter_check(inspector: &Result<Client, String>, config: &Config) -> Check {
    let Some(field) = &config.sync.filter_field else {
        return pass(
            FILTER,
            "no sync.filter_field configured: every record syncs",
        );
    };
    let entities = config.sync.entities.join(",");
    let fix = format!(
        "run `mdsync setup sync-filter --entities {entities}` (creates the Boolean `{field}` column where missing)"
    );
    let i = match inspector {
        Err(e) => return fail(FILTER, format!("not checked: {e}"), fix),
        Ok(i) => i,
    };
    let mut problems = Vec::new();
    for entity in &config.sync.entities {
        match filter_column(i, entity, field).await {
            Ok(FilterColumn::Boolean) => {}
            Ok(FilterColumn::Missing) => problems.push(format!("missing on {entity}")),
            Ok(FilterColumn::OtherType(t)) => {
                problems.push(format!("on {entity} it is {t}, not Boolean"))
            }
            Ok(FilterColumn::NoTable) => problems.push(format!("no table {entity}")),
            Err(e) => problems.push(format!("{entity}: {}", describe(&e))),
        }
    }
    if problems.is_empty() {
        pass(FILTER, format!("Boolean `{field}` exists on {entities}"))
    } else {
        fail(FILTER, format!("`{field}`: {}", problems.join("; ")), fix)
    }
}
