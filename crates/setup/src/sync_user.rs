//! `mdsync setup sync-user`: the seed page's steps as an idempotent plan, applied in order.
//!
//! 1. **Sync user**: find or create the dedicated user (the application user of the sync app, or a named
//!    user), enabled, with English as its language.
//! 2. **Sync role**: assign **Marketo Sync User**; on solution ≥ 4.0.0.14 warn about (or revoke) other
//!    holders, on older solutions explain that every user needs it (or assign it to all).
//! 3. **Marketo User**: point the **Default** `mkt_marketoconfig` record's `mkt_marketouserid` at it.
//! 4. **Publish**: `PublishAllXml`, when this run (or an interrupted earlier one) changed something.
//!
//! Invariant: every step reads before it writes, so a run that stopped half way is completed by a re-run.
//! The "publish pending" marker file records a change whose publish has not happened yet.

use std::path::PathBuf;

use mdsync_dataverse_client::{Client, ErrorKind, QueryOptions};
use serde_json::json;
use uuid::Uuid;

use crate::SetupError;
use crate::org::{self, ENGLISH, ROLE_ONLY_SYNC_USER_FROM, SYNC_ROLE, User};
use crate::report::{Event, Outcome, StepStatus};

pub const STEP_USER: &str = "sync user";
pub const STEP_ROLE: &str = "Marketo Sync User role";
pub const STEP_CONFIG: &str = "Marketo User on Default config";
pub const STEP_PUBLISH: &str = "publish all customizations";

/// Which user becomes the sync user.
#[derive(Clone, Debug)]
pub enum SyncUserIdentity {
    /// The application user of this Entra app (server-to-server; the normal case).
    Application { client_id: String },
    /// A named (non-application) user: its sign-in name and email.
    Named { user_name: String, email: String },
}

/// Flags of `mdsync setup sync-user`.
#[derive(Clone, Debug, Default)]
pub struct SyncUserOptions {
    /// Print the plan; send no write.
    pub dry_run: bool,
    /// Accept an existing human user as the sync user.
    pub force: bool,
    /// Solution ≥ 4.0.0.14: take the sync role away from every other user.
    pub revoke_others: bool,
    /// Solution < 4.0.0.14: give the sync role to every enabled user.
    pub assign_all: bool,
    /// Marker file meaning "something changed, publish still pending" (survives a crash).
    pub publish_marker: Option<PathBuf>,
}

/// Runs the four steps with the administrator client; `sink` sees each step as it finishes.
pub async fn sync_user(
    admin: &Client,
    identity: &SyncUserIdentity,
    options: &SyncUserOptions,
    sink: &mut dyn FnMut(&Event),
) -> Result<Outcome, SetupError> {
    let mut out = Outcome::default();
    let mut changed = false;
    let user = match ensure_user(admin, identity, options, &mut out, sink, &mut changed).await {
        Ok(u) => u,
        Err(reason) => {
            out.step(sink, STEP_USER, reason);
            skip_rest(
                &mut out,
                sink,
                &[STEP_ROLE, STEP_CONFIG, STEP_PUBLISH],
                STEP_USER,
            );
            return Ok(out);
        }
    };
    if let Err(reason) = ensure_role(admin, user, options, &mut out, sink, &mut changed).await {
        out.step(sink, STEP_ROLE, reason);
        skip_rest(&mut out, sink, &[STEP_CONFIG, STEP_PUBLISH], STEP_ROLE);
        return Ok(out);
    }
    if let Err(reason) = ensure_config(admin, user, options, &mut out, sink, &mut changed).await {
        out.step(sink, STEP_CONFIG, reason);
        skip_rest(&mut out, sink, &[STEP_PUBLISH], STEP_CONFIG);
        return Ok(out);
    }
    publish(admin, options, changed, &mut out, sink).await;
    Ok(out)
}

fn skip_rest(out: &mut Outcome, sink: &mut dyn FnMut(&Event), steps: &[&str], failed: &str) {
    for step in steps {
        out.step(
            sink,
            step,
            StepStatus::Skipped(format!(
                "not run because `{failed}` did not complete; re-run after fixing it"
            )),
        );
    }
}

fn failed(e: impl std::fmt::Display) -> StepStatus {
    StepStatus::Failed(e.to_string())
}

/// Records that a publish is owed before the first write of a run.
fn mark_pending(options: &SyncUserOptions, changed: &mut bool) -> Result<(), StepStatus> {
    if !*changed && let Some(marker) = &options.publish_marker {
        if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(marker, b"PublishAllXml pending\n").map_err(|e| {
            StepStatus::Failed(format!(
                "cannot write the publish marker {}: {e}",
                marker.display()
            ))
        })?;
    }
    *changed = true;
    Ok(())
}

/// Why `user` must not become the sync user, if it looks like a person's account.
fn human_reasons(user: &User, other_roles: &[String]) -> Vec<String> {
    let mut reasons = Vec::new();
    if matches!(user.access_mode, 0..=3 | 5) {
        reasons.push(format!(
            "its access mode is {} (an interactive account)",
            user.access_mode_name()
        ));
    }
    if user.licensed && user.application_id.is_none() {
        reasons.push("it holds a Dynamics license".to_string());
    }
    if !other_roles.is_empty() {
        reasons.push(format!(
            "it holds other security roles ({})",
            other_roles.join(", ")
        ));
    }
    reasons
}

async fn ensure_user(
    admin: &Client,
    identity: &SyncUserIdentity,
    options: &SyncUserOptions,
    out: &mut Outcome,
    sink: &mut dyn FnMut(&Event),
    changed: &mut bool,
) -> Result<Option<Uuid>, StepStatus> {
    let existing = match identity {
        SyncUserIdentity::Application { client_id } => org::app_user(admin, client_id).await,
        SyncUserIdentity::Named { user_name, email } => {
            match org::named_user(admin, user_name).await {
                Ok(None) => org::named_user(admin, email).await,
                other => other,
            }
        }
    }
    .map_err(failed)?;
    let Some(user) = existing else {
        return create_user(admin, identity, options, out, sink, changed).await;
    };
    let roles = org::user_roles(admin, user.id).await.map_err(failed)?;
    let others: Vec<String> = roles
        .iter()
        .filter(|(_, name)| name != SYNC_ROLE)
        .map(|(_, name)| name.clone())
        .collect();
    let reasons = human_reasons(&user, &others);
    if !reasons.is_empty() {
        let why = format!(
            "{} looks like an existing person's account: {}. The seed page requires a dedicated sync user, not an \
             existing CRM user's account: every change the sync user makes in Dynamics is never synced back to \
             Marketo, so that person's own edits would silently stop syncing, and its roles would widen what the sync can touch",
            user.label(),
            reasons.join("; ")
        );
        if !options.force {
            return Err(StepStatus::Failed(format!(
                "refused: {why}. Use a dedicated user (or an application user), or, if this account was created only for the sync (a licensed dedicated user, as the seed page describes), pass --force"
            )));
        }
        out.note(sink, format!("--force: using it anyway although {why}"));
    }
    let mut fixes = Vec::new();
    if user.disabled {
        fixes.push("re-enable it");
    }
    let language = org::ui_language(admin, user.id).await.map_err(failed)?;
    if language != Some(ENGLISH) {
        fixes.push("set its language to English (1033)");
    }
    if fixes.is_empty() {
        out.step(
            sink,
            STEP_USER,
            StepStatus::AlreadyDone(format!("{} exists, enabled, English", user.label())),
        );
        return Ok(Some(user.id));
    }
    if options.dry_run {
        out.step(
            sink,
            STEP_USER,
            StepStatus::WouldDo(format!("{}: {}", user.label(), fixes.join(", "))),
        );
        return Ok(Some(user.id));
    }
    mark_pending(options, changed)?;
    if user.disabled {
        admin
            .update("systemusers", user.id, &json!({"isdisabled": false}))
            .await
            .map_err(failed)?;
    }
    if language != Some(ENGLISH) {
        admin
            .update(
                "usersettingscollection",
                user.id,
                &json!({"uilanguageid": ENGLISH}),
            )
            .await
            .map_err(failed)?;
    }
    out.step(
        sink,
        STEP_USER,
        StepStatus::Done(format!("{}: {}", user.label(), fixes.join(", "))),
    );
    Ok(Some(user.id))
}

async fn create_user(
    admin: &Client,
    identity: &SyncUserIdentity,
    options: &SyncUserOptions,
    out: &mut Outcome,
    sink: &mut dyn FnMut(&Event),
    changed: &mut bool,
) -> Result<Option<Uuid>, StepStatus> {
    let bu = org::root_business_unit(admin)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepStatus::Failed("the org has no root business unit".into()))?;
    let (body, what) = match identity {
        SyncUserIdentity::Application { client_id } => {
            let Ok(app) = client_id.trim().parse::<Uuid>() else {
                return Err(StepStatus::Failed(format!(
                    "dynamics.client_id `{client_id}` is not an Entra application (client) id (a GUID)"
                )));
            };
            (
                json!({"applicationid": app, "businessunitid@odata.bind": format!("/businessunits({bu})")}),
                format!("application user for app {app} in the root business unit"),
            )
        }
        SyncUserIdentity::Named { user_name, email } => (
            json!({
                "domainname": user_name, "internalemailaddress": email,
                "firstname": "Marketo", "lastname": "Sync User", "accessmode": 4,
                "businessunitid@odata.bind": format!("/businessunits({bu})"),
            }),
            format!("non-interactive user {user_name} <{email}> in the root business unit"),
        ),
    };
    if options.dry_run {
        out.step(
            sink,
            STEP_USER,
            StepStatus::WouldDo(format!("create the {what}")),
        );
        return Ok(None);
    }
    mark_pending(options, changed)?;
    let id = admin.create("systemusers", &body).await.map_err(failed)?;
    out.step(
        sink,
        STEP_USER,
        StepStatus::Done(format!("created the {what} ({id})")),
    );
    Ok(Some(id))
}

async fn ensure_role(
    admin: &Client,
    user: Option<Uuid>,
    options: &SyncUserOptions,
    out: &mut Outcome,
    sink: &mut dyn FnMut(&Event),
    changed: &mut bool,
) -> Result<(), StepStatus> {
    let solution = org::marketo_solution(admin).await.map_err(failed)?.ok_or_else(|| {
        StepStatus::Failed("the Marketo Lead Management solution is not installed (seed step 1): import it first".into())
    })?;
    let bu = org::root_business_unit(admin)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepStatus::Failed("the org has no root business unit".into()))?;
    let role = org::sync_role(admin, bu).await.map_err(failed)?.ok_or_else(|| {
        StepStatus::Failed(format!(
            "the `{SYNC_ROLE}` role is missing from the root business unit: re-import the Marketo solution"
        ))
    })?;
    match user {
        None => out.step(
            sink,
            STEP_ROLE,
            StepStatus::WouldDo(format!("assign `{SYNC_ROLE}` to the new user")),
        ),
        Some(user) => {
            let has = org::user_roles(admin, user)
                .await
                .map_err(failed)?
                .iter()
                .any(|(id, _)| *id == role);
            if has {
                out.step(
                    sink,
                    STEP_ROLE,
                    StepStatus::AlreadyDone(format!("the sync user holds `{SYNC_ROLE}`")),
                );
            } else if options.dry_run {
                out.step(
                    sink,
                    STEP_ROLE,
                    StepStatus::WouldDo(format!("assign `{SYNC_ROLE}` to the sync user")),
                );
            } else {
                mark_pending(options, changed)?;
                associate_role(admin, user, role).await.map_err(failed)?;
                out.step(
                    sink,
                    STEP_ROLE,
                    StepStatus::Done(format!("assigned `{SYNC_ROLE}` to the sync user")),
                );
            }
        }
    }
    if org::version_at_least(&solution.version, ROLE_ONLY_SYNC_USER_FROM) {
        let others: Vec<User> = org::role_holders(admin, role)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|u| Some(u.id) != user)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let list = others
            .iter()
            .map(User::label)
            .collect::<Vec<_>>()
            .join("; ");
        if !options.revoke_others {
            out.note(
                sink,
                format!(
                    "warning: on solution {} (>= {ROLE_ONLY_SYNC_USER_FROM}) only the sync user should hold `{SYNC_ROLE}`, \
                     but {} other user(s) do: {list}. Re-run with --revoke-others to remove it from them",
                    solution.version,
                    others.len()
                ),
            );
        } else if options.dry_run {
            out.note(sink, format!("would revoke `{SYNC_ROLE}` from: {list}"));
        } else {
            for other in &others {
                admin
                    .disassociate(
                        "systemusers",
                        other.id,
                        "systemuserroles_association",
                        Some(role),
                    )
                    .await
                    .map_err(failed)?;
            }
            out.note(sink, format!("revoked `{SYNC_ROLE}` from: {list}"));
        }
    } else if !options.assign_all {
        out.note(
            sink,
            format!(
                "solution {} is older than {ROLE_ONLY_SYNC_USER_FROM}: before that version every Dynamics user needs the \
                 `{SYNC_ROLE}` role, not only the sync user. Re-run with --assign-all to assign it to every enabled user \
                 (or upgrade the solution)",
                solution.version
            ),
        );
    } else {
        let assigned = assign_all(admin, role, options.dry_run)
            .await
            .map_err(failed)?;
        let verb = if options.dry_run {
            "would assign"
        } else {
            "assigned"
        };
        out.note(
            sink,
            format!(
                "{verb} `{SYNC_ROLE}` to {assigned} more enabled user(s) (solution {})",
                solution.version
            ),
        );
    }
    Ok(())
}

/// `$ref` association; a duplicate (another run got there first) counts as done.
async fn associate_role(
    admin: &Client,
    user: Uuid,
    role: Uuid,
) -> Result<(), mdsync_dataverse_client::DataverseError> {
    match admin
        .associate(
            "systemusers",
            user,
            "systemuserroles_association",
            "roles",
            role,
        )
        .await
    {
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(()),
        other => other,
    }
}

/// Gives the role to every enabled user lacking it, one page of users at a time.
async fn assign_all(
    admin: &Client,
    role: Uuid,
    dry_run: bool,
) -> Result<u64, mdsync_dataverse_client::DataverseError> {
    use futures::TryStreamExt;
    let pages = admin.query(
        "systemusers",
        &QueryOptions::new()
            .select(org::USER_COLUMNS.iter().copied())
            .filter("isdisabled eq false")
            .page_size(500),
    );
    futures::pin_mut!(pages);
    let mut count = 0;
    while let Some(page) = pages.try_next().await? {
        for user in page.rows.iter().filter_map(User::from_row) {
            if org::user_roles(admin, user.id)
                .await?
                .iter()
                .any(|(id, _)| *id == role)
            {
                continue;
            }
            if !dry_run {
                associate_role(admin, user.id, role).await?;
            }
            count += 1;
        }
    }
    Ok(count)
}

async fn ensure_config(
    admin: &Client,
    user: Option<Uuid>,
    options: &SyncUserOptions,
    out: &mut Outcome,
    sink: &mut dyn FnMut(&Event),
    changed: &mut bool,
) -> Result<(), StepStatus> {
    let (config, current) = org::default_config(admin).await.map_err(failed)?.ok_or_else(|| {
        StepStatus::Failed(
            "the Marketo Config record `Default` is missing: re-import the Marketo solution (it creates the record)".into(),
        )
    })?;
    match user {
        None => out.step(
            sink,
            STEP_CONFIG,
            StepStatus::WouldDo("set Marketo User on `Default` to the new user".into()),
        ),
        Some(user) if current == Some(user) => out.step(
            sink,
            STEP_CONFIG,
            StepStatus::AlreadyDone(format!("`Default` names the sync user ({user})")),
        ),
        Some(user) => {
            let was = current.map_or("empty".to_string(), |u| u.to_string());
            if options.dry_run {
                out.step(
                    sink,
                    STEP_CONFIG,
                    StepStatus::WouldDo(format!(
                        "set Marketo User on `Default` to {user} (now {was})"
                    )),
                );
            } else {
                mark_pending(options, changed)?;
                admin
                    .update(
                        "mkt_marketoconfigs",
                        config,
                        &json!({"mkt_marketouserid@odata.bind": format!("/systemusers({user})")}),
                    )
                    .await
                    .map_err(failed)?;
                out.step(
                    sink,
                    STEP_CONFIG,
                    StepStatus::Done(format!(
                        "set Marketo User on `Default` to {user} (was {was})"
                    )),
                );
            }
        }
    }
    Ok(())
}

async fn publish(
    admin: &Client,
    options: &SyncUserOptions,
    changed: bool,
    out: &mut Outcome,
    sink: &mut dyn FnMut(&Event),
) {
    let pending = options.publish_marker.as_ref().is_some_and(|m| m.exists());
    if !changed && !pending {
        let status = if options.dry_run
            && out
                .steps
                .iter()
                .any(|s| matches!(s.status, StepStatus::WouldDo(_)))
        {
            StepStatus::WouldDo("PublishAllXml after the changes above".into())
        } else {
            StepStatus::AlreadyDone("nothing changed since the last publish".into())
        };
        out.step(sink, STEP_PUBLISH, status);
        return;
    }
    if options.dry_run {
        out.step(
            sink,
            STEP_PUBLISH,
            StepStatus::WouldDo(
                "PublishAllXml (an earlier run changed the org but did not publish)".into(),
            ),
        );
        return;
    }
    match admin.call_action("PublishAllXml", None).await {
        Ok(_) => {
            if let Some(marker) = &options.publish_marker {
                let _ = std::fs::remove_file(marker);
            }
            let why = if changed {
                "after this run's changes"
            } else {
                "completing an interrupted earlier run"
            };
            out.step(
                sink,
                STEP_PUBLISH,
                StepStatus::Done(format!("PublishAllXml {why}")),
            );
        }
        Err(e) => out.step(sink, STEP_PUBLISH, failed(e)),
    }
}
