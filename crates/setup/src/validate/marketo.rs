//! The Marketo side of validation: credentials, quota and mdsync's lead fields.

use super::*;
use crate::marketo_fields::{self, FieldState};

pub(super) async fn marketo_check(
    client: &Result<mdsync_marketo_client::Client, mdsync_marketo_client::Error>,
    budget: u64,
) -> (Check, bool) {
    let fix = "check marketo.url, marketo.client_id and marketo.client_secret (Marketo Admin > LaunchPoint > the custom \
               service > View Details)";
    let client = match client {
        Err(e) => return (fail(MARKETO_CREDENTIALS, e.to_string(), fix), false),
        Ok(c) => c,
    };
    if let Err(e) = client.authenticate().await {
        return (fail(MARKETO_CREDENTIALS, e.to_string(), fix), false);
    }
    match client.usage().await {
        Err(mdsync_marketo_client::Error::DailyQuota { message, .. }) => (
            fail(
                MARKETO_CREDENTIALS,
                format!("credentials valid, but the daily API quota is spent (607: {message})"),
                "wait for the quota reset at midnight US Central time, or ask Marketo support for a higher quota",
            ),
            true,
        ),
        Err(e) => (
            fail(MARKETO_CREDENTIALS, format!("authenticated, but {e}"), fix),
            true,
        ),
        Ok(days) => {
            let used = days.first().map_or(0, |d| d.total);
            if used >= budget {
                (
                    fail(
                        MARKETO_CREDENTIALS,
                        format!(
                            "credentials valid; {used} calls used today, at or over sync.marketo_daily_budget = {budget}"
                        ),
                        "raise sync.marketo_daily_budget (the instance quota is shared) or wait for the daily reset",
                    ),
                    true,
                )
            } else {
                (
                    pass(
                        MARKETO_CREDENTIALS,
                        format!(
                            "credentials valid; {used} calls used today, {} left of mdsync's budget {budget}",
                            budget - used
                        ),
                    ),
                    true,
                )
            }
        }
    }
}

pub(super) async fn fields_check(client: Option<&mdsync_marketo_client::Client>) -> Check {
    let fix =
        "run `mdsync setup marketo` (creates msftId, msftType, msftIsDeleted, msftCreatedDate)";
    let Some(client) = client else {
        return fail(
            MARKETO_FIELDS,
            "not checked: the Marketo credentials were rejected",
            "fix marketo_credentials first, then run `mdsync setup marketo`",
        );
    };
    match marketo_fields::field_states(client).await {
        Err(e) => fail(
            MARKETO_FIELDS,
            format!("cannot read the lead schema: {e}"),
            fix,
        ),
        Ok(states) => {
            let problems: Vec<String> = states
                .iter()
                .filter_map(|(spec, state)| match state {
                    FieldState::Present => None,
                    FieldState::Missing => Some(format!("{} missing", spec.name)),
                    FieldState::WrongType(t) => {
                        Some(format!("{} is {t}, expected {}", spec.name, spec.data_type))
                    }
                })
                .collect();
            if problems.is_empty() {
                let names: Vec<&str> = states.iter().map(|(s, _)| s.name).collect();
                // Informational: whether Marketo lets `msftId` be a `filterType` (lookups by Dynamics id).
                let searchable = match client.describe_leads2().await {
                    Ok(d)
                        if d.searchable_fields
                            .iter()
                            .any(|k| k.len() == 1 && k[0] == "msftId") =>
                    {
                        "msftId is searchable"
                    }
                    Ok(_) => {
                        "msftId is not searchable: it cannot be a filterType for lookups by Dynamics id"
                    }
                    Err(_) => "searchability of msftId unknown",
                };
                pass(
                    MARKETO_FIELDS,
                    format!("{} exist; {searchable}", names.join(", ")),
                )
            } else {
                fail(MARKETO_FIELDS, problems.join("; "), fix)
            }
        }
    }
}
