//! `mdsync setup marketo`: the custom Marketo lead fields mdsync writes (the Dynamics id and type of a person,
//! its deletion flag and creation date), created through `/rest/v1/leads/schema/fields.json` where missing.

use mdsync_marketo_client::{Client, NewLeadField, RecordStatus};

use crate::report::{Event, Outcome, StepStatus};

/// One field mdsync needs: REST name, display name, data type, what it is for.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub display_name: &'static str,
    pub data_type: &'static str,
    pub description: &'static str,
}

/// The fields, in creation order. `msftId` is a string so Marketo makes it searchable (a lookup key).
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "msftId",
        display_name: "mdsync Microsoft Id",
        data_type: "string",
        description: "Dynamics record id (lead or contact) of this person, set by mdsync",
    },
    FieldSpec {
        name: "msftType",
        display_name: "mdsync Microsoft Type",
        data_type: "string",
        description: "Dynamics table of this person (lead or contact); empty for Marketo-only persons",
    },
    FieldSpec {
        name: "msftIsDeleted",
        display_name: "mdsync Microsoft Is Deleted",
        data_type: "boolean",
        description: "The Dynamics record was deleted",
    },
    FieldSpec {
        name: "msftCreatedDate",
        display_name: "mdsync Microsoft Created Date",
        data_type: "datetime",
        description: "createdon of the Dynamics record",
    },
];

/// What a field looks like in the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldState {
    Missing,
    Present,
    WrongType(String),
}

/// Reads each field's state.
pub async fn field_states(
    client: &Client,
) -> Result<Vec<(FieldSpec, FieldState)>, mdsync_marketo_client::Error> {
    let mut states = Vec::with_capacity(FIELDS.len());
    for spec in FIELDS {
        let state = match client.lead_schema_field(spec.name).await? {
            None => FieldState::Missing,
            Some(f) if f.data_type.eq_ignore_ascii_case(spec.data_type) => FieldState::Present,
            Some(f) => FieldState::WrongType(f.data_type),
        };
        states.push((*spec, state));
    }
    Ok(states)
}

/// Creates the missing fields (one call for all of them); one step per field.
pub async fn marketo_fields(
    client: &Client,
    dry_run: bool,
    sink: &mut dyn FnMut(&Event),
) -> Outcome {
    let mut out = Outcome::default();
    let states = match field_states(client).await {
        Ok(s) => s,
        Err(e) => {
            for spec in FIELDS {
                out.step(sink, spec.name, StepStatus::Failed(e.to_string()));
            }
            return out;
        }
    };
    let mut missing = Vec::new();
    for (spec, state) in &states {
        match state {
            FieldState::Present => out.step(sink, spec.name, StepStatus::AlreadyDone(format!("{} field exists", spec.data_type))),
            FieldState::WrongType(t) => out.step(
                sink,
                spec.name,
                StepStatus::Failed(format!(
                    "exists as {t}, expected {}: Marketo cannot change a field's type; delete the field in Admin > Field Management and re-run",
                    spec.data_type
                )),
            ),
            FieldState::Missing if dry_run => out.step(sink, spec.name, StepStatus::WouldDo(format!("create {} field `{}`", spec.data_type, spec.display_name))),
            FieldState::Missing => missing.push(*spec),
        }
    }
    if missing.is_empty() {
        return out;
    }
    let input: Vec<NewLeadField> = missing
        .iter()
        .map(|s| NewLeadField {
            display_name: s.display_name.into(),
            name: s.name.into(),
            data_type: s.data_type.into(),
            description: Some(s.description.into()),
            length: None,
            is_hidden: None,
            is_html_encoding_in_email: None,
            is_sensitive: None,
        })
        .collect();
    match client.create_lead_fields(&input).await {
        Ok(results) => {
            for (spec, result) in missing.iter().zip(results) {
                let status = match (&result.status, result.reasons.first()) {
                    (Some(RecordStatus::Created), _) => StepStatus::Done(format!(
                        "created {} field `{}`",
                        spec.data_type, spec.display_name
                    )),
                    (_, Some(reason)) => StepStatus::Failed(format!(
                        "Marketo refused it: {} {}",
                        reason.code, reason.message
                    )),
                    (status, None) => StepStatus::Failed(format!("unexpected result {status:?}")),
                };
                out.step(sink, spec.name, status);
            }
        }
        Err(e) => {
            for spec in &missing {
                out.step(sink, spec.name, StepStatus::Failed(e.to_string()));
            }
        }
    }
    out
}
