//! Metadata API: `EntityDefinitions`, `EntityDefinitions(LogicalName='lead')`, its `Attributes`
//! (list, by logical name or id) and `POST .../Attributes` creating custom columns that then behave
//! like built-in ones everywhere (CRUD, `$select`, `$filter`, `$metadata`).

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{Ctx, Reply, Req, json_body, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::path::{Key, Segment};
use crate::schema::{CUSTOM_PREFIXES, ColumnDef, ColumnType, EntityDef, stable_uuid};
use crate::store;

fn label(text: &str) -> Value {
    let l = json!({"Label": text, "LanguageCode": 1033, "IsManaged": false, "MetadataId": stable_uuid(&format!("label:{text}")), "HasChanged": null});
    json!({"LocalizedLabels": [l.clone()], "UserLocalizedLabel": l})
}

fn type_name_value(c: &ColumnDef) -> &'static str {
    match c.ty.attribute_type() {
        "String" => "StringType",
        "Memo" => "MemoType",
        "Integer" => "IntegerType",
        "BigInt" => "BigIntType",
        "Decimal" => "DecimalType",
        "Money" => "MoneyType",
        "Double" => "DoubleType",
        "Boolean" => "BooleanType",
        "DateTime" => "DateTimeType",
        "Uniqueidentifier" => "UniqueidentifierType",
        "Picklist" => "PicklistType",
        "State" => "StateType",
        "Status" => "StatusType",
        "Customer" => "CustomerType",
        "Owner" => "OwnerType",
        _ => "LookupType",
    }
}

/// AttributeMetadata JSON for a column.
pub fn attribute_json(def: &EntityDef, c: &ColumnDef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#Microsoft.Dynamics.CRM.{}", c.ty.metadata_type())),
    );
    m.insert("MetadataId".into(), json!(c.metadata_id));
    m.insert("LogicalName".into(), json!(c.logical_name));
    m.insert("SchemaName".into(), json!(c.schema_name));
    m.insert("EntityLogicalName".into(), json!(def.logical_name));
    m.insert("AttributeType".into(), json!(c.ty.attribute_type()));
    m.insert(
        "AttributeTypeName".into(),
        json!({"Value": type_name_value(c)}),
    );
    m.insert("IsCustomAttribute".into(), json!(c.custom));
    m.insert(
        "IsPrimaryId".into(),
        json!(c.logical_name == def.primary_key),
    );
    m.insert(
        "IsPrimaryName".into(),
        json!(def.primary_name.as_deref() == Some(c.logical_name.as_str())),
    );
    m.insert("IsValidForCreate".into(), json!(c.valid_for_create));
    m.insert("IsValidForRead".into(), json!(true));
    m.insert("IsValidForUpdate".into(), json!(c.valid_for_update));
    m.insert("IsValidForAdvancedFind".into(), json!({"Value": true, "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifysearchsettings"}));
    m.insert(
        "RequiredLevel".into(),
        json!({"Value": if c.required { "SystemRequired" } else { "None" }, "CanBeChanged": !c.required, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}),
    );
    m.insert("DisplayName".into(), label(&c.display_name));
    match &c.ty {
        ColumnType::String { max_len } | ColumnType::Memo { max_len } => {
            m.insert("MaxLength".into(), json!(max_len));
            m.insert("Format".into(), json!("Text"));
        }
        ColumnType::Lookup { targets } => {
            m.insert("Targets".into(), json!(targets));
        }
        ColumnType::Boolean => {
            m.insert("DefaultValue".into(), json!(false));
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Boolean", "TrueOption": {"Value": 1, "Label": label("Yes")}, "FalseOption": {"Value": 0, "Label": label("No")}}),
            );
        }
        ColumnType::Picklist { options } | ColumnType::State { options } => {
            let opts: Vec<Value> = options
                .iter()
                .map(|(v, l)| json!({"Value": v, "Label": label(l)}))
                .collect();
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Picklist", "Options": opts}),
            );
        }
        ColumnType::Status { options } => {
            let opts: Vec<Value> = options
                .iter()
                .map(|(v, l, s)| json!({"Value": v, "State": s, "Label": label(l)}))
                .collect();
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Status", "Options": opts}),
            );
        }
        _ => {}
    }
    m
}

/// EntityMetadata JSON (without attributes).
pub fn entity_json(def: &EntityDef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("MetadataId".into(), json!(def.metadata_id));
    m.insert("LogicalName".into(), json!(def.logical_name));
    m.insert("SchemaName".into(), json!(def.schema_name));
    m.insert("EntitySetName".into(), json!(def.set_name));
    m.insert("LogicalCollectionName".into(), json!(def.set_name));
    m.insert("PrimaryIdAttribute".into(), json!(def.primary_key));
    m.insert("PrimaryNameAttribute".into(), json!(def.primary_name));
    m.insert("ObjectTypeCode".into(), json!(def.object_type_code));
    m.insert("ChangeTrackingEnabled".into(), json!(def.change_tracking));
    m.insert("IsCustomEntity".into(), json!(def.custom_entity));
    m.insert(
        "OwnershipType".into(),
        json!(if def.user_owned {
            "UserOwned"
        } else {
            "OrganizationOwned"
        }),
    );
    m.insert("DisplayName".into(), label(&def.display_name));
    let keys: Vec<Value> = def
        .alternate_keys
        .iter()
        .map(|k| json!({"LogicalName": k.join("_"), "KeyAttributes": k, "EntityLogicalName": def.logical_name}))
        .collect();
    m.insert("Keys".into(), Value::Array(keys));
    m
}

/// Applies `$select` and `$filter` of a metadata query to JSON objects.
fn shape(items: Vec<Map<String, Value>>, query: &str) -> ApiResult<Vec<Value>> {
    let pairs = query_pairs(query);
    let mut filter = None;
    let mut select: Option<Vec<String>> = None;
    let aliases: mdsync_odata::Aliases = pairs
        .iter()
        .filter(|(k, _)| k.starts_with('@'))
        .cloned()
        .collect();
    for (k, v) in &pairs {
        match k.as_str() {
            "$filter" => filter = Some(mdsync_odata::parse_filter(v, &aliases)?),
            "$select" => select = Some(v.split(',').map(|s| s.trim().to_string()).collect()),
            _ => {}
        }
    }
    let ectx = mdsync_odata::EvalContext::at(chrono::Utc::now());
    Ok(items
        .into_iter()
        .filter(|m| filter.as_ref().is_none_or(|f| f.eval(m, &ectx)))
        .map(|m| match &select {
            None => Value::Object(m),
            Some(cols) => {
                let mut out = Map::new();
                for (k, v) in m {
                    if k == "MetadataId" || k.starts_with('@') || cols.contains(&k) {
                        out.insert(k, v);
                    }
                }
                Value::Object(out)
            }
        })
        .collect())
}

fn find_entity(ctx: &Ctx<'_>, key: &Key) -> ApiResult<std::sync::Arc<EntityDef>> {
    let found = match key {
        Key::Guid(g) => ctx
            .schema
            .entities
            .iter()
            .find(|e| e.metadata_id.to_string() == *g)
            .cloned(),
        Key::Named(p) if p.len() == 1 && p[0].0 == "LogicalName" => {
            p[0].1.as_str().and_then(|n| ctx.schema.by_logical(n))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!(
                "Could not find entity with the specified key: {}",
                key_text(key)
            ),
        )
    })
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Guid(g) => g.clone(),
        Key::Named(p) => p
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        Key::Single(v) => v.to_string(),
        Key::Empty => String::new(),
    }
}

pub fn handle(ctx: &mut Ctx<'_>, req: &Req, segs: &[Segment]) -> ApiResult<Reply> {
    let base = ctx.base.clone();
    match (segs.len(), &segs[0].key) {
        (1, None) => {
            require_get(req)?;
            let items = ctx.schema.entities.iter().map(|e| entity_json(e)).collect();
            let value = shape(items, &req.query)?;
            Ok(Reply::json(
                StatusCode::OK,
                json!({"@odata.context": format!("{base}$metadata#EntityDefinitions"), "value": value}),
            ))
        }
        (1, Some(key)) => {
            require_get(req)?;
            let def = find_entity(ctx, key)?;
            let mut v = shape(vec![entity_json(&def)], &req.query)?;
            let mut m = match v.pop() {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            m.insert(
                "@odata.context".into(),
                json!(format!("{base}$metadata#EntityDefinitions/$entity")),
            );
            Ok(Reply::json(StatusCode::OK, Value::Object(m)))
        }
        (n, Some(key)) if n >= 2 && segs[1].name == "Attributes" => {
            let def = find_entity(ctx, key)?;
            match (&segs[1].key, req.method.clone()) {
                (None, Method::GET) => {
                    let items = def
                        .columns
                        .iter()
                        .map(|c| attribute_json(&def, c))
                        .collect();
                    let value = shape(items, &req.query)?;
                    Ok(Reply::json(
                        StatusCode::OK,
                        json!({"@odata.context": format!("{base}$metadata#EntityDefinitions({})/Attributes", def.metadata_id), "value": value}),
                    ))
                }
                (None, Method::POST) => create_attribute(ctx, req, &def),
                (Some(akey), Method::GET) => {
                    let col = match akey {
                        Key::Guid(g) => {
                            def.columns.iter().find(|c| c.metadata_id.to_string() == *g)
                        }
                        Key::Named(p) if p.len() == 1 && p[0].0 == "LogicalName" => {
                            p[0].1.as_str().and_then(|n| def.column(n))
                        }
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "0x80040217",
                            format!(
                                "Could not find attribute with the specified key: {} on entity {}",
                                key_text(akey),
                                def.logical_name
                            ),
                        )
                    })?;
                    if let Some(cast) = segs.get(2) {
                        let expected = format!("Microsoft.Dynamics.CRM.{}", col.ty.metadata_type());
                        if cast.name != expected {
                            return Err(ApiError::segment_not_found(&cast.name));
                        }
                    }
                    let mut v = shape(vec![attribute_json(&def, col)], &req.query)?;
                    let mut m = match v.pop() {
                        Some(Value::Object(m)) => m,
                        _ => Map::new(),
                    };
                    m.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{base}$metadata#EntityDefinitions({})/Attributes/$entity",
                            def.metadata_id
                        )),
                    );
                    Ok(Reply::json(StatusCode::OK, Value::Object(m)))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        _ => Err(ApiError::segment_not_found(
            segs.get(1)
                .map(|s| s.name.as_str())
                .unwrap_or("EntityDefinitions"),
        )),
    }
}

fn require_get(req: &Req) -> ApiResult<()> {
    if req.method == Method::GET {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn label_text(v: Option<&Value>) -> Option<String> {
    let v = v?;
    v.get("LocalizedLabels")
        .and_then(|l| l.get(0))
        .or_else(|| v.get("UserLocalizedLabel"))
        .and_then(|l| l.get("Label"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `POST EntityDefinitions(...)/Attributes` with an `XxxAttributeMetadata` body.
fn create_attribute(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check_admin("prvCreateAttribute")?;
    let body = json_body(req)?;
    let odata_type = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches('#')
        .trim_start_matches("Microsoft.Dynamics.CRM.")
        .to_string();
    let schema_name = body
        .get("SchemaName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("SchemaName is required to create an attribute."))?
        .to_string();
    let logical = body
        .get("LogicalName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| schema_name.to_lowercase());
    let valid_chars = logical
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_chars
        || !CUSTOM_PREFIXES.iter().any(|p| logical.starts_with(p))
        || !logical.contains('_')
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80044330",
            format!(
                "The schema name {schema_name} for this attribute is not valid. It must start with a valid customization prefix (for example new_) and contain only letters, numbers and underscores."
            ),
        ));
    }
    if def.column(&logical).is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80044363",
            format!(
                "An attribute with the specified name {logical} already exists on entity {}.",
                def.logical_name
            ),
        ));
    }
    let max_len = body
        .get("MaxLength")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .min(4000) as u32;
    let ty = match odata_type.as_str() {
        "BooleanAttributeMetadata" => ColumnType::Boolean,
        "StringAttributeMetadata" => ColumnType::String { max_len },
        "MemoAttributeMetadata" => ColumnType::Memo {
            max_len: body
                .get("MaxLength")
                .and_then(Value::as_u64)
                .unwrap_or(2000)
                .min(1_048_576) as u32,
        },
        "IntegerAttributeMetadata" => ColumnType::Integer,
        "BigIntAttributeMetadata" => ColumnType::BigInt,
        "DecimalAttributeMetadata" => ColumnType::Decimal,
        "MoneyAttributeMetadata" => ColumnType::Money,
        "DoubleAttributeMetadata" => ColumnType::Double,
        "DateTimeAttributeMetadata" => ColumnType::DateTime,
        "PicklistAttributeMetadata" => {
            let options = body
                .get("OptionSet")
                .and_then(|o| o.get("Options"))
                .and_then(Value::as_array)
                .map(|opts| {
                    opts.iter()
                        .filter_map(|o| {
                            Some((
                                o.get("Value")?.as_i64()?,
                                label_text(o.get("Label")).unwrap_or_default(),
                            ))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if options.is_empty() {
                return Err(ApiError::bad_request(
                    "A Picklist attribute needs OptionSet.Options with values.",
                ));
            }
            ColumnType::Picklist { options }
        }
        "" => {
            return Err(ApiError::bad_request(
                "The '@odata.type' of the attribute metadata is required.",
            ));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Creating attributes of type '{other}' is not supported by the emulator."
            )));
        }
    };
    let required = body
        .get("RequiredLevel")
        .and_then(|r| r.get("Value"))
        .and_then(Value::as_str)
        == Some("SystemRequired");
    let col = ColumnDef {
        logical_name: logical.clone(),
        schema_name: schema_name.clone(),
        display_name: label_text(body.get("DisplayName")).unwrap_or_else(|| schema_name.clone()),
        ty,
        required,
        valid_for_create: true,
        valid_for_update: true,
        custom: true,
        metadata_id: stable_uuid(&format!("attr:{}.{logical}", def.logical_name)),
    };
    let id = col.metadata_id;
    store::add_custom_column(ctx.shared.store(), ctx.conn, &def.logical_name, col)?;
    ctx.schema = ctx.shared.store().schema();
    Ok(Reply::no_content().header(
        "OData-EntityId",
        format!(
            "{}EntityDefinitions({})/Attributes({id})",
            ctx.base, def.metadata_id
        ),
    ))
}
