//! Single-record calls, `$ref` associations, functions and actions, and the `*Multiple` bulk messages.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{ApiRequest, ApiResponse, Client, headers};
use crate::error::{DataverseError, ErrorKind};
use crate::path::{RecordKey, check_name, encode_component, literal, record_path};
use crate::query::Row;

/// The caller's identity as `WhoAmI` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WhoAmI {
    #[serde(rename = "UserId")]
    pub user_id: Uuid,
    #[serde(rename = "BusinessUnitId")]
    pub business_unit_id: Uuid,
    #[serde(rename = "OrganizationId")]
    pub organization_id: Uuid,
}

/// Condition headers for an upsert (`PATCH`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Create or update.
    #[default]
    None,
    /// `If-Match`: `*` = update only (404 when missing), or an ETag (412 when changed).
    IfMatch(String),
    /// `If-None-Match: *` = create only (412 when the row exists).
    IfNoneMatch(String),
}

/// The record id at the end of an `OData-EntityId`/`Location` URL: `.../accounts(<guid>)`.
pub fn id_from_entity_url(url: &str) -> Option<Uuid> {
    let inner = url.trim().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    Uuid::parse_str(&inner[open + 1..]).ok()
}

fn json_body(value: &Value) -> Option<(bytes::Bytes, String)> {
    Some((
        value.to_string().into(),
        "application/json; charset=utf-8".to_string(),
    ))
}

fn decode_json<T: serde::de::DeserializeOwned>(
    response: &ApiResponse,
    operation: &str,
) -> Result<T, DataverseError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        DataverseError::new(
            ErrorKind::Decode,
            operation,
            format!("unexpected response body: {e}"),
        )
        .with_source(e)
    })
}

/// `Name(P1=@p1,P2=@p2)?@p1=…&@p2=…`, aliases so any literal is safely encoded in the query string.
fn function_call(
    name: &str,
    params: &[(&str, Value)],
    operation: &str,
) -> Result<String, DataverseError> {
    if params.is_empty() {
        return Ok(format!("{name}()"));
    }
    let mut args = Vec::new();
    let mut aliases = Vec::new();
    for (i, (param, value)) in params.iter().enumerate() {
        check_name(param, "parameter", operation)?;
        args.push(format!("{param}=@p{}", i + 1));
        aliases.push(format!("@p{}={}", i + 1, encode_component(&literal(value))));
    }
    Ok(format!("{name}({})?{}", args.join(","), aliases.join("&")))
}

impl Client {
    async fn call(
        &self,
        method: Method,
        relative: &str,
        headers: HeaderMap,
        body: Option<&Value>,
        operation: String,
        idempotent: bool,
    ) -> Result<ApiResponse, DataverseError> {
        let url = self.url(relative, &operation)?;
        self.execute(ApiRequest {
            method,
            url,
            headers,
            body: body.and_then(json_body),
            operation,
            idempotent,
            raw: false,
        })
        .await
    }

    /// `GET WhoAmI()`: the user behind the credentials.
    pub async fn whoami(&self) -> Result<WhoAmI, DataverseError> {
        let response = self
            .call(
                Method::GET,
                "WhoAmI()",
                HeaderMap::new(),
                None,
                "whoami".into(),
                true,
            )
            .await?;
        decode_json(&response, "whoami")
    }

    /// `GET RetrieveVersion()`: the org's version string, e.g. `9.2.24054.180`.
    pub async fn retrieve_version(&self) -> Result<String, DataverseError> {
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "Version")]
            version: String,
        }
        let response = self
            .call(
                Method::GET,
                "RetrieveVersion()",
                HeaderMap::new(),
                None,
                "retrieve version".into(),
                true,
            )
            .await?;
        decode_json::<Version>(&response, "retrieve version").map(|v| v.version)
    }

    /// One row by key; `select` empty = all columns. Missing → [`ErrorKind::NotFound`].
    pub async fn retrieve<S: AsRef<str>>(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
        select: &[S],
    ) -> Result<Row, DataverseError> {
        let key = key.into();
        let operation = format!("retrieve {}", key.describe(entity_set));
        let mut relative = record_path(entity_set, &key, &operation)?;
        if !select.is_empty() {
            let columns: Vec<&str> = select.iter().map(AsRef::as_ref).collect();
            for column in &columns {
                check_name(column, "column", &operation)?;
            }
            relative.push_str(&format!("?$select={}", columns.join(",")));
        }
        self.get_decoded(&relative, &operation).await
    }

    /// `POST entity_set`; the new id comes from `OData-EntityId`.
    pub async fn create(&self, entity_set: &str, row: &Value) -> Result<Uuid, DataverseError> {
        let operation = format!("create {entity_set}");
        check_name(entity_set, "entity set", &operation)?;
        let response = self
            .call(
                Method::POST,
                entity_set,
                HeaderMap::new(),
                Some(row),
                operation.clone(),
                false,
            )
            .await?;
        response
            .header("odata-entityid")
            .or_else(|| response.header("location"))
            .and_then(id_from_entity_url)
            .ok_or_else(|| {
                DataverseError::new(
                    ErrorKind::Decode,
                    operation,
                    "the response has no OData-EntityId with an id",
                )
            })
    }

    /// `PATCH` with `If-Match: *`: updates an existing row, never creates one (missing → NotFound).
    pub async fn update(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
        row: &Value,
    ) -> Result<(), DataverseError> {
        let key = key.into();
        let operation = format!("update {}", key.describe(entity_set));
        self.patch(
            entity_set,
            &key,
            row,
            Precondition::IfMatch("*".into()),
            operation,
        )
        .await
    }

    /// `PATCH` that creates the row with this key when it does not exist, with an optional condition.
    pub async fn upsert(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
        row: &Value,
        condition: Precondition,
    ) -> Result<(), DataverseError> {
        let key = key.into();
        let operation = format!("upsert {}", key.describe(entity_set));
        self.patch(entity_set, &key, row, condition, operation)
            .await
    }

    async fn patch(
        &self,
        entity_set: &str,
        key: &RecordKey,
        row: &Value,
        condition: Precondition,
        operation: String,
    ) -> Result<(), DataverseError> {
        let relative = record_path(entity_set, key, &operation)?;
        let headers = match condition {
            Precondition::None => HeaderMap::new(),
            Precondition::IfMatch(tag) => headers(&[("if-match", tag)], &operation)?,
            Precondition::IfNoneMatch(tag) => headers(&[("if-none-match", tag)], &operation)?,
        };
        self.call(
            Method::PATCH,
            &relative,
            headers,
            Some(row),
            operation,
            true,
        )
        .await
        .map(drop)
    }

    /// `DELETE entity_set(key)`; missing → NotFound.
    pub async fn delete(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
    ) -> Result<(), DataverseError> {
        let key = key.into();
        let operation = format!("delete {}", key.describe(entity_set));
        let relative = record_path(entity_set, &key, &operation)?;
        self.call(
            Method::DELETE,
            &relative,
            HeaderMap::new(),
            None,
            operation,
            true,
        )
        .await
        .map(drop)
    }

    /// `POST entity_set(id)/nav/$ref {"@odata.id": "<base>target_set(target_id)"}` (N:N or 1:N).
    pub async fn associate(
        &self,
        entity_set: &str,
        id: Uuid,
        navigation: &str,
        target_set: &str,
        target_id: Uuid,
    ) -> Result<(), DataverseError> {
        let operation =
            format!("associate {entity_set}({id})/{navigation} with {target_set}({target_id})");
        check_name(navigation, "navigation property", &operation)?;
        check_name(target_set, "entity set", &operation)?;
        let relative = format!(
            "{}/{navigation}/$ref",
            record_path(entity_set, &id.into(), &operation)?
        );
        let body = serde_json::json!({ "@odata.id": format!("{}{target_set}({target_id})", self.api_base()) });
        self.call(
            Method::POST,
            &relative,
            HeaderMap::new(),
            Some(&body),
            operation,
            false,
        )
        .await
        .map(drop)
    }

    /// Sets a single-valued navigation property: `PUT entity_set(id)/nav/$ref`.
    pub async fn set_reference(
        &self,
        entity_set: &str,
        id: Uuid,
        navigation: &str,
        target_set: &str,
        target_id: Uuid,
    ) -> Result<(), DataverseError> {
        let operation = format!("set {entity_set}({id})/{navigation} to {target_set}({target_id})");
        check_name(navigation, "navigation property", &operation)?;
        check_name(target_set, "entity set", &operation)?;
        let relative = format!(
            "{}/{navigation}/$ref",
            record_path(entity_set, &id.into(), &operation)?
        );
        let body = serde_json::json!({ "@odata.id": format!("{}{target_set}({target_id})", self.api_base()) });
        self.call(
            Method::PUT,
            &relative,
            HeaderMap::new(),
            Some(&body),
            operation,
            true,
        )
        .await
        .map(drop)
    }

    /// `DELETE entity_set(id)/nav(target_id)/$ref` for a collection, or `.../nav/$ref` (target `None`) for a
    /// single-valued navigation property.
    pub async fn disassociate(
        &self,
        entity_set: &str,
        id: Uuid,
        navigation: &str,
        target_id: Option<Uuid>,
    ) -> Result<(), DataverseError> {
        let operation = match target_id {
            Some(t) => format!("disassociate {entity_set}({id})/{navigation}({t})"),
            None => format!("clear {entity_set}({id})/{navigation}"),
        };
        check_name(navigation, "navigation property", &operation)?;
        let record = record_path(entity_set, &id.into(), &operation)?;
        let relative = match target_id {
            Some(t) => format!("{record}/{navigation}({t})/$ref"),
            None => format!("{record}/{navigation}/$ref"),
        };
        self.call(
            Method::DELETE,
            &relative,
            HeaderMap::new(),
            None,
            operation,
            true,
        )
        .await
        .map(drop)
    }

    /// An unbound function: `GET Name(P=@p1)?@p1=<literal>` (strings quoted, arrays/objects as JSON).
    pub async fn call_function(
        &self,
        name: &str,
        params: &[(&str, Value)],
    ) -> Result<Value, DataverseError> {
        let operation = format!("call function {name}");
        check_name(name, "function", &operation)?;
        let relative = function_call(name, params, &operation)?;
        self.get_decoded(&relative, &operation).await
    }

    /// A function bound to a record: `GET entity_set(key)/Microsoft.Dynamics.CRM.Name(...)`.
    pub async fn call_bound_function(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
        name: &str,
        params: &[(&str, Value)],
    ) -> Result<Value, DataverseError> {
        let key = key.into();
        let operation = format!("call function {name} on {}", key.describe(entity_set));
        check_name(name, "function", &operation)?;
        let relative = format!(
            "{}/{}",
            record_path(entity_set, &key, &operation)?,
            function_call(name, params, &operation)?
        );
        self.get_decoded(&relative, &operation).await
    }

    /// An unbound action: `POST Name` with JSON parameters; `None` when it answers 204.
    pub async fn call_action(
        &self,
        name: &str,
        params: Option<&Value>,
    ) -> Result<Option<Value>, DataverseError> {
        let operation = format!("call action {name}");
        check_name(name, "action", &operation)?;
        self.post_action(name, params, &operation).await
    }

    /// An action bound to a record: `POST entity_set(key)/Microsoft.Dynamics.CRM.Name`.
    pub async fn call_bound_action(
        &self,
        entity_set: &str,
        key: impl Into<RecordKey>,
        name: &str,
        params: Option<&Value>,
    ) -> Result<Option<Value>, DataverseError> {
        let key = key.into();
        let operation = format!("call action {name} on {}", key.describe(entity_set));
        check_name(name, "action", &operation)?;
        let relative = format!("{}/{name}", record_path(entity_set, &key, &operation)?);
        self.post_action(&relative, params, &operation).await
    }

    /// A read (function call or raw GET) decoded as JSON; reads are safe to retry.
    async fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        relative: &str,
        operation: &str,
    ) -> Result<T, DataverseError> {
        let response = self
            .call(
                Method::GET,
                relative,
                HeaderMap::new(),
                None,
                operation.to_owned(),
                true,
            )
            .await?;
        decode_json(&response, operation)
    }

    /// An action (bound or unbound); actions may have effects, so no blind retries.
    async fn post_action(
        &self,
        relative: &str,
        params: Option<&Value>,
        operation: &str,
    ) -> Result<Option<Value>, DataverseError> {
        let response = self
            .call(
                Method::POST,
                relative,
                HeaderMap::new(),
                params,
                operation.to_owned(),
                false,
            )
            .await?;
        optional_json(&response, operation)
    }

    /// `CreateMultiple` (atomic on standard tables): returns the new ids in target order.
    pub async fn create_multiple(
        &self,
        entity_set: &str,
        logical_name: &str,
        targets: Vec<Row>,
    ) -> Result<Vec<Uuid>, DataverseError> {
        #[derive(Deserialize)]
        struct Ids {
            #[serde(rename = "Ids")]
            ids: Vec<Uuid>,
        }
        let operation = format!("create {} {entity_set} (CreateMultiple)", targets.len());
        let response = self
            .multiple(
                entity_set,
                logical_name,
                "CreateMultiple",
                targets,
                &operation,
                false,
            )
            .await?;
        decode_json::<Ids>(&response, &operation).map(|ids| ids.ids)
    }

    /// `UpdateMultiple`: every target carries its primary key.
    pub async fn update_multiple(
        &self,
        entity_set: &str,
        logical_name: &str,
        targets: Vec<Row>,
    ) -> Result<(), DataverseError> {
        let operation = format!("update {} {entity_set} (UpdateMultiple)", targets.len());
        self.multiple(
            entity_set,
            logical_name,
            "UpdateMultiple",
            targets,
            &operation,
            true,
        )
        .await
        .map(drop)
    }

    /// `UpsertMultiple`: targets identified by primary key or `@odata.id` with an alternate key.
    pub async fn upsert_multiple(
        &self,
        entity_set: &str,
        logical_name: &str,
        targets: Vec<Row>,
    ) -> Result<(), DataverseError> {
        let operation = format!("upsert {} {entity_set} (UpsertMultiple)", targets.len());
        self.multiple(
            entity_set,
            logical_name,
            "UpsertMultiple",
            targets,
            &operation,
            true,
        )
        .await
        .map(drop)
    }

    async fn multiple(
        &self,
        entity_set: &str,
        logical_name: &str,
        message: &str,
        mut targets: Vec<Row>,
        operation: &str,
        idempotent: bool,
    ) -> Result<ApiResponse, DataverseError> {
        check_name(entity_set, "entity set", operation)?;
        check_name(logical_name, "logical name", operation)?;
        if targets.is_empty() {
            return Err(DataverseError::new(
                ErrorKind::InvalidInput,
                operation,
                "no targets",
            ));
        }
        let odata_type = format!("Microsoft.Dynamics.CRM.{logical_name}");
        for target in &mut targets {
            target
                .entry("@odata.type")
                .or_insert_with(|| Value::String(odata_type.clone()));
        }
        let body = serde_json::json!({ "Targets": targets });
        let relative = format!("{entity_set}/Microsoft.Dynamics.CRM.{message}");
        self.call(
            Method::POST,
            &relative,
            HeaderMap::new(),
            Some(&body),
            operation.to_string(),
            idempotent,
        )
        .await
    }

    /// Escape hatch for reads this client has no typed call for (`EntityDefinitions(...)`, `$metadata`
    /// excluded: JSON only). `relative` is below the API root and must already be encoded.
    pub async fn get_json(&self, relative: &str) -> Result<Value, DataverseError> {
        let operation = format!("GET {}", relative.split('?').next().unwrap_or(relative));
        self.get_decoded(relative, &operation).await
    }

    /// Escape hatch for writes: any method, JSON body, JSON (or no) answer. Treated as not idempotent
    /// unless the method is PUT/PATCH/DELETE.
    pub async fn send_json(
        &self,
        method: Method,
        relative: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, DataverseError> {
        let operation = format!(
            "{method} {}",
            relative.split('?').next().unwrap_or(relative)
        );
        let idempotent = matches!(
            method,
            Method::PUT | Method::PATCH | Method::DELETE | Method::GET
        );
        let response = self
            .call(
                method,
                relative,
                HeaderMap::new(),
                body,
                operation.clone(),
                idempotent,
            )
            .await?;
        optional_json(&response, &operation)
    }
}

fn optional_json(response: &ApiResponse, operation: &str) -> Result<Option<Value>, DataverseError> {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        decode_json(response, operation).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entity_ids_come_from_the_url_tail() {
        let id = "a59c24f3-fafc-e411-80dd-00155d2a68cb";
        assert_eq!(
            id_from_entity_url(&format!("https://o/api/data/v9.2/tasks({id})")),
            Some(Uuid::parse_str(id).unwrap())
        );
        assert_eq!(
            id_from_entity_url("https://o/api/data/v9.2/accounts(accountnumber='1')"),
            None
        );
        assert_eq!(id_from_entity_url(""), None);
    }

    #[test]
    fn function_parameters_travel_as_encoded_aliases() {
        assert_eq!(function_call("WhoAmI", &[], "t").unwrap(), "WhoAmI()");
        assert_eq!(
            function_call(
                "RetrieveTotalRecordCount",
                &[("EntityNames", json!(["account", "contact"]))],
                "t"
            )
            .unwrap(),
            "RetrieveTotalRecordCount(EntityNames=@p1)?@p1=%5B%22account%22%2C%22contact%22%5D"
        );
        assert_eq!(
            function_call("F", &[("Name", json!("O'Neil")), ("N", json!(2))], "t").unwrap(),
            "F(Name=@p1,N=@p2)?@p1='O''Neil'&@p2=2"
        );
        assert!(function_call("F", &[("bad)", json!(1))], "t").is_err());
    }

    #[test]
    fn whoami_deserializes_the_documented_body() {
        let body = json!({"@odata.context":"x","BusinessUnitId":"00000000-0000-0000-0000-000000000001",
            "UserId":"00000000-0000-0000-0000-000000000002","OrganizationId":"00000000-0000-0000-0000-000000000003"});
        let who: WhoAmI = serde_json::from_value(body).unwrap();
        assert_eq!(who.user_id.as_u128(), 2);
    }
}
