//! `mdsync setup sync-filter`: the Boolean `new_synctomkto` column of Marketo's custom sync filter on each
//! chosen table, created through the metadata API where missing, then published.

use mdsync_dataverse_client::{Client, DataverseError, ErrorKind};
use serde_json::{Value, json};

use crate::org::quote;
use crate::report::{Event, Outcome, StepStatus};

/// What a filter column looks like on one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterColumn {
    Missing,
    Boolean,
    /// Present with another type (the filter cannot work).
    OtherType(String),
    /// The table itself does not exist.
    NoTable,
}

/// Reads the column's metadata on `entity`.
pub async fn filter_column(
    client: &Client,
    entity: &str,
    column: &str,
) -> Result<FilterColumn, DataverseError> {
    let path = format!(
        "EntityDefinitions(LogicalName={})/Attributes(LogicalName={})?$select=LogicalName,AttributeType",
        quote(entity),
        quote(column)
    );
    match client.get_json(&path).await {
        Ok(v) => Ok(match v.get("AttributeType").and_then(Value::as_str) {
            Some("Boolean") => FilterColumn::Boolean,
            other => FilterColumn::OtherType(other.unwrap_or("unknown").to_string()),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let table = format!(
                "EntityDefinitions(LogicalName={})?$select=LogicalName",
                quote(entity)
            );
            match client.get_json(&table).await {
                Ok(_) => Ok(FilterColumn::Missing),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(FilterColumn::NoTable),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn label(text: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}],
    })
}

/// `BooleanAttributeMetadata` for the filter column; default No, as Marketo advises for workflows.
fn column_body(column: &str) -> Value {
    let schema_name = if column == crate::validate::FILTER_FIELD {
        "new_SyncToMkto".to_string()
    } else {
        column.to_string()
    };
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        "AttributeType": "Boolean",
        "AttributeTypeName": {"Value": "BooleanType"},
        "SchemaName": schema_name,
        "DisplayName": label("Sync to Marketo"),
        "Description": label("mdsync: records set to No are not synced to Marketo"),
        "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DefaultValue": false,
        "OptionSet": {
            "@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata",
            "OptionSetType": "Boolean",
            "TrueOption": {"Value": 1, "Label": label("Yes")},
            "FalseOption": {"Value": 0, "Label": label("No")},
        },
    })
}

/// Creates `column` (Boolean) on every table of `entities` lacking it; one step per table, then publish.
pub async fn sync_filter(
    admin: &Client,
    entities: &[String],
    column: &str,
    dry_run: bool,
    sink: &mut dyn FnMut(&Event),
) -> Outcome {
    let mut out = Outcome::default();
    let mut created = 0;
    for entity in entities {
        let step = format!("{column} on {entity}");
        let status = match filter_column(admin, entity, column).await {
            Ok(FilterColumn::Boolean) => {
                StepStatus::AlreadyDone("the Boolean column exists".into())
            }
            Ok(FilterColumn::OtherType(t)) => StepStatus::Failed(format!(
                "the column exists as {t}, not Boolean (Two Options): delete or rename it, then re-run"
            )),
            Ok(FilterColumn::NoTable) => {
                StepStatus::Failed(format!("the org has no table `{entity}`"))
            }
            Ok(FilterColumn::Missing) if dry_run => {
                StepStatus::WouldDo("create the Boolean column (default No)".into())
            }
            Ok(FilterColumn::Missing) => {
                let path = format!(
                    "EntityDefinitions(LogicalName={})/Attributes",
                    quote(entity)
                );
                match admin
                    .send_json(
                        mdsync_dataverse_client::Method::POST,
                        &path,
                        Some(&column_body(column)),
                    )
                    .await
                {
                    Ok(_) => {
                        created += 1;
                        StepStatus::Done("created the Boolean column (default No)".into())
                    }
                    Err(e) => StepStatus::Failed(e.to_string()),
                }
            }
            Err(e) => StepStatus::Failed(e.to_string()),
        };
        out.step(sink, &step, status);
    }
    if created > 0 {
        let status = match admin.call_action("PublishAllXml", None).await {
            Ok(_) => StepStatus::Done("PublishAllXml".into()),
            Err(e) => StepStatus::Failed(format!("{e} (re-run to publish)")),
        };
        out.step(sink, "publish all customizations", status);
        out.note(
            sink,
            format!(
                "records whose `{column}` is No are not synced; empty (existing rows) or Yes syncs. New rows default to No: \
                 set it with a workflow or a bulk update, and tick it in the synced fields"
            ),
        );
    }
    out
}
