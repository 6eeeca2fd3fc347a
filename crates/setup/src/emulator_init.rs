//! Config values for a running emulator pair (`mdsync config init --from-emulator…`).
//!
//! From the `mdsync emulate --print-json` line the built-in apps are used as they are: the sync app for
//! `[dynamics]`, the admin app for `[dynamics.admin]`, the emulator as the token authority. From bare URLs
//! (the emulators publish no secrets), new credentials are registered through their `/_emulator/` test
//! surface, and the new admin app gets an application user with System Administrator, made with a token of
//! the seeded administrator — what an admin does in the Power Platform admin centre.

use mdsync_config::{InitValues, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SetupError;

#[derive(Deserialize)]
struct Pair {
    dataverse: DataverseDescription,
    marketo: MarketoDescription,
}

#[derive(Deserialize)]
struct DataverseDescription {
    url: String,
    tenant_id: String,
    admin_client_id: String,
    admin_client_secret: String,
    sync_app_client_id: String,
    sync_app_client_secret: String,
}

#[derive(Deserialize)]
struct MarketoDescription {
    url: String,
    client_id: String,
    client_secret: String,
}

/// Values from `{"dataverse":{..},"marketo":{..}}` (the `mdsync emulate --print-json` line).
pub fn from_description_json(text: &str, state: &str) -> Result<InitValues, SetupError> {
    let pair: Pair = serde_json::from_str(text.trim()).map_err(|e| {
        SetupError::Emulator(format!(
            "not an `mdsync emulate --print-json` line with both emulators ({e})"
        ))
    })?;
    Ok(InitValues {
        dynamics_url: pair.dataverse.url.trim_end_matches('/').to_string(),
        tenant_id: pair.dataverse.tenant_id,
        authority: Some(pair.dataverse.url.trim_end_matches('/').to_string()),
        sync_client_id: pair.dataverse.sync_app_client_id,
        sync_client_secret: Secret::new(pair.dataverse.sync_app_client_secret),
        admin_client_id: pair.dataverse.admin_client_id,
        admin_client_secret: Secret::new(pair.dataverse.admin_client_secret),
        marketo_url: pair.marketo.url.trim_end_matches('/').to_string(),
        marketo_client_id: pair.marketo.client_id,
        marketo_client_secret: Secret::new(pair.marketo.client_secret),
        state: state.to_string(),
    })
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    body: Value,
) -> Result<reqwest::Response, SetupError> {
    let mut request = http.request(method, url).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| SetupError::Emulator(format!("{url}: {}", e.without_url())))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(SetupError::Emulator(format!(
            "{url}: HTTP {status}: {text}"
        )));
    }
    Ok(response)
}

async fn json_of(response: reqwest::Response, what: &str) -> Result<Value, SetupError> {
    response.json().await.map_err(|e| {
        SetupError::Emulator(format!("{what}: unexpected answer ({})", e.without_url()))
    })
}

fn text(v: &Value, pointer: &str, what: &str) -> Result<String, SetupError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| SetupError::Emulator(format!("{what}: no {pointer} in the answer")))
}

/// Registers fresh credentials on running emulators at `dataverse` and `marketo`.
pub async fn from_urls(
    dataverse: &str,
    marketo: &str,
    state: &str,
) -> Result<InitValues, SetupError> {
    let dv = dataverse.trim_end_matches('/');
    let mk = marketo.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| SetupError::Emulator(e.to_string()))?;
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(&url)
                .send()
                .await
                .map_err(|e| SetupError::Emulator(format!("{url}: {}", e.without_url())))?;
            if !r.status().is_success() {
                return Err(SetupError::Emulator(format!(
                    "{url}: HTTP {} (is this a Dataverse emulator?)",
                    r.status()
                )));
            }
            json_of(r, &url).await
        }
    };
    let org = get(format!("{dv}/_emulator/org")).await?;
    let tenant = text(&org, "/tenant_id", "Dataverse emulator org")?;
    let admin_user = text(&org, "/admin_user_id", "Dataverse emulator org")?;
    let root_bu = text(&org, "/root_business_unit_id", "Dataverse emulator org")?;
    let sysadmin = text(
        &org,
        "/roles/System Administrator",
        "Dataverse emulator org",
    )?;
    let post = reqwest::Method::POST;
    let sync_app = json_of(
        call(
            &http,
            post.clone(),
            &format!("{dv}/_emulator/apps"),
            None,
            json!({"name": "mdsync sync app"}),
        )
        .await?,
        "register app",
    )
    .await?;
    let admin_app = json_of(
        call(
            &http,
            post.clone(),
            &format!("{dv}/_emulator/apps"),
            None,
            json!({"name": "mdsync admin app"}),
        )
        .await?,
        "register app",
    )
    .await?;
    let token = json_of(
        call(
            &http,
            post.clone(),
            &format!("{dv}/_emulator/tokens"),
            None,
            json!({"systemuserid": admin_user, "lifetime_seconds": 600}),
        )
        .await?,
        "admin token",
    )
    .await?;
    let token = text(&token, "/access_token", "admin token")?;
    let admin_client_id = text(&admin_app, "/client_id", "register app")?;
    let api = format!("{dv}/api/data/v9.2/");
    let created = call(
        &http,
        post.clone(),
        &format!("{api}systemusers"),
        Some(&token),
        json!({"applicationid": admin_client_id, "businessunitid@odata.bind": format!("/businessunits({root_bu})")}),
    )
    .await?;
    let user_id = created
        .headers()
        .get("odata-entityid")
        .and_then(|v| v.to_str().ok())
        .and_then(mdsync_dataverse_client::id_from_entity_url)
        .ok_or_else(|| {
            SetupError::Emulator("creating the admin app's user: no OData-EntityId".into())
        })?;
    call(
        &http,
        post.clone(),
        &format!("{api}systemusers({user_id})/systemuserroles_association/$ref"),
        Some(&token),
        json!({"@odata.id": format!("{api}roles({sysadmin})")}),
    )
    .await?;
    let email = format!(
        "mdsync-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mk_user = json_of(
        call(
            &http,
            post,
            &format!("{mk}/_emulator/users"),
            None,
            json!({"email": email}),
        )
        .await?,
        "Marketo API user",
    )
    .await?;
    Ok(InitValues {
        dynamics_url: dv.to_string(),
        tenant_id: tenant,
        authority: Some(dv.to_string()),
        sync_client_id: text(&sync_app, "/client_id", "register app")?,
        sync_client_secret: Secret::new(text(&sync_app, "/client_secret", "register app")?),
        admin_client_id,
        admin_client_secret: Secret::new(text(&admin_app, "/client_secret", "register app")?),
        marketo_url: mk.to_string(),
        marketo_client_id: text(&mk_user, "/client_id", "Marketo API user")?,
        marketo_client_secret: Secret::new(text(&mk_user, "/client_secret", "Marketo API user")?),
        state: state.to_string(),
    })
}
