//! Writes a config file (`mdsync config init`): the documented shape with known values filled in.

use mdsync_secret::Secret;

/// What `mdsync config init` knows about the two services.
#[derive(Clone, Debug)]
pub struct InitValues {
    pub dynamics_url: String,
    pub tenant_id: String,
    /// The token authority; `None` = Entra ID's default.
    pub authority: Option<String>,
    pub sync_client_id: String,
    pub sync_client_secret: Secret,
    pub admin_client_id: String,
    pub admin_client_secret: Secret,
    pub marketo_url: String,
    pub marketo_client_id: String,
    pub marketo_client_secret: Secret,
    pub state: String,
}

/// A commented `mdsync.toml` holding `values` (secrets inline: the file is as sensitive as they are).
pub fn render(values: &InitValues) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let authority = match &values.authority {
        Some(a) => format!(
            "authority = {}          # token authority (the emulator itself here)\n",
            q(a)
        ),
        None => "# authority = \"https://login.microsoftonline.com\"\n".to_string(),
    };
    format!(
        r#"# mdsync configuration. Secrets may instead come from the environment:
# replace `client_secret = "..."` with `client_secret_env = "NAME_OF_VARIABLE"`.

[dynamics]
url = {url}                 # org root
tenant_id = {tenant}
client_id = {sync_id}       # the sync app (its application user is the sync user)
client_secret = {sync_secret}
{authority}
[dynamics.admin]            # used only by `mdsync setup`
client_id = {admin_id}
client_secret = {admin_secret}

[marketo]
url = {mkto_url}
client_id = {mkto_id}
client_secret = {mkto_secret}

[sync]
state = {state}
# filter_field = "new_synctomkto"   # sync only records whose flag is not explicitly No
# entities = ["lead", "contact", "account", "opportunity"]
# match_existing_by_email = false
# marketo_daily_budget = 10000
# interval_seconds = 1              # Dataverse poll; Marketo is polled as the daily budget allows
"#,
        url = q(&values.dynamics_url),
        tenant = q(&values.tenant_id),
        sync_id = q(&values.sync_client_id),
        sync_secret = q(values.sync_client_secret.expose()),
        authority = authority,
        admin_id = q(&values.admin_client_id),
        admin_secret = q(values.admin_client_secret.expose()),
        mkto_url = q(&values.marketo_url),
        mkto_id = q(&values.marketo_client_id),
        mkto_secret = q(values.marketo_client_secret.expose()),
        state = q(&values.state),
    )
}
