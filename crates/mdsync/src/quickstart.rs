//! `mdsync quickstart`: everything that exists, end to end, on the embedded defaults, as a list of steps
//! that each say what they did. Exit status 0 only if every step behaved as stated.

use std::collections::HashSet;
use std::future::Future;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

use crate::emulate::{self, EmulateArgs, Emulators};
use crate::http::{self, DataverseInfo, MarketoInfo};

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Contacts seeded into the Dataverse emulator (read back page by page).
    #[arg(long, default_value_t = 250)]
    pub contacts: u64,
    /// Page size for the paged Dataverse read (`Prefer: odata.maxpagesize`).
    #[arg(long, default_value_t = 100)]
    pub page_size: u64,
}

/// Prints one line per step; a failing step stops the run.
struct Steps {
    passed: usize,
}

impl Steps {
    async fn run<T>(
        &mut self,
        name: &str,
        step: impl Future<Output = anyhow::Result<(T, String)>>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        match step.await {
            Ok((value, detail)) => {
                self.passed += 1;
                println!(
                    "[ok]   {name} ({} ms): {detail}",
                    started.elapsed().as_millis()
                );
                Ok(value)
            }
            Err(err) => {
                println!("[FAIL] {name}: {err:#}");
                Err(err.context(format!("step \"{name}\" failed")))
            }
        }
    }
}

pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    ensure!(args.page_size > 0, "--page-size must be at least 1");
    let mut steps = Steps { passed: 0 };
    println!(
        "mdsync quickstart: both emulators in-process on ephemeral ports, embedded defaults\n"
    );
    let emulators = steps
        .run("start the Dataverse and Marketo emulators", async {
            let emulators = emulate::start(&EmulateArgs {
                dataverse_listen: ([127, 0, 0, 1], 0).into(),
                marketo_listen: ([127, 0, 0, 1], 0).into(),
                state: None,
                print_json: false,
                no_limits: false,
                marketo_solution_version: None,
                only: None,
            })
            .await?;
            let description = emulators.description_json()?;
            let detail = format!(
                "Dataverse at {}, Marketo at {} (temporary state)",
                description["dataverse"]["url"].as_str().unwrap_or("?"),
                description["marketo"]["url"].as_str().unwrap_or("?")
            );
            Ok((emulators, detail))
        })
        .await?;
    let outcome = run_steps(&mut steps, &emulators, &args).await;
    let stopped = steps
        .run("stop both emulators (state flushed)", async {
            emulators.shutdown().await?;
            Ok(((), "clean shutdown".to_owned()))
        })
        .await;
    outcome?;
    stopped?;
    println!("\nall {} steps passed", steps.passed);
    Ok(())
}

async fn run_steps(
    steps: &mut Steps,
    emulators: &Emulators,
    args: &QuickstartArgs,
) -> anyhow::Result<()> {
    let description = emulators.description_json()?;
    let dv: DataverseInfo = serde_json::from_value(description["dataverse"].clone())
        .context("reading the Dataverse description")?;
    let mk: MarketoInfo = serde_json::from_value(description["marketo"].clone())
        .context("reading the Marketo description")?;
    let http = http::client()?;

    steps
        .run("seed Dataverse through its test surface", async {
            let body = json!({"seed": 42, "contacts": args.contacts, "accounts": 20, "leads": 20});
            let response = http
                .post(format!("{}/_emulator/seed", dv.url))
                .json(&body)
                .send()
                .await?;
            let answer = http::json_body(response, "Dataverse seed").await?;
            Ok(((), format!("POST /_emulator/seed {body} -> {answer}")))
        })
        .await?;

    let dv_token = steps
        .run(
            "acquire a Dataverse token (client credentials, admin app)",
            async {
                let token = http::dataverse_token(&http, &dv).await?;
                Ok((
                    token,
                    format!(
                        "POST {}/{}/oauth2/v2.0/token -> bearer token",
                        dv.url, dv.tenant_id
                    ),
                ))
            },
        )
        .await?;

    steps
        .run("call WhoAmI", async {
            let response = http
                .get(format!("{}WhoAmI", dv.api_url))
                .bearer_auth(&dv_token)
                .send()
                .await?;
            let body = http::json_body(response, "WhoAmI").await?;
            let user = body
                .get("UserId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ensure!(!user.is_empty(), "WhoAmI answered without UserId: {body}");
            Ok((
                (),
                format!(
                    "UserId {user}, BusinessUnitId {}",
                    body["BusinessUnitId"].as_str().unwrap_or("?")
                ),
            ))
        })
        .await?;

    steps
        .run("read every contact page by page", async {
            let mut url = format!("{}contacts?$select=fullname,emailaddress1", dv.api_url);
            let mut ids = HashSet::new();
            let mut pages = 0u64;
            loop {
                let response = http
                    .get(&url)
                    .bearer_auth(&dv_token)
                    .header("Prefer", format!("odata.maxpagesize={}", args.page_size))
                    .send()
                    .await?;
                let body = http::json_body(response, "contacts page").await?;
                let Some(rows) = body.get("value").and_then(Value::as_array) else {
                    bail!(
                        "page without a value array: {}",
                        http::truncate(&body.to_string())
                    );
                };
                pages += 1;
                ensure!(
                    rows.len() as u64 <= args.page_size,
                    "page {pages} has {} rows, more than odata.maxpagesize={}",
                    rows.len(),
                    args.page_size
                );
                for row in rows {
                    let id = row
                        .get("contactid")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    ensure!(ids.insert(id.to_owned()), "contact {id:?} returned twice");
                }
                match body.get("@odata.nextLink").and_then(Value::as_str) {
                    Some(next) => url = next.to_owned(),
                    None => break,
                }
            }
            ensure!(
                ids.len() as u64 == args.contacts,
                "read {} contacts, seeded {}",
                ids.len(),
                args.contacts
            );
            Ok((
                (),
                format!(
                    "{} contacts in {pages} pages of at most {}",
                    ids.len(),
                    args.page_size
                ),
            ))
        })
        .await?;

    let mk_token = steps
        .run("acquire a Marketo token (API user)", async {
            let token = http::marketo_token(&http, &mk).await?;
            Ok((
                token,
                format!("GET {}/identity/oauth/token -> access_token", mk.url),
            ))
        })
        .await?;

    let emails = [
        "ada@quickstart.example",
        "grace@quickstart.example",
        "alan@quickstart.example",
    ];
    steps
        .run("sync three Marketo leads (createOrUpdate by email)", async {
            let input: Vec<Value> = emails
                .iter()
                .zip(["Ada", "Grace", "Alan"])
                .map(|(email, first)| json!({"email": email, "firstName": first, "lastName": "Quickstart"}))
                .collect();
            let body = json!({"action": "createOrUpdate", "lookupField": "email", "input": input});
            let created = sync_leads(&http, &mk, &mk_token, &body).await?;
            ensure!(
                created.iter().all(|s| s == "created"),
                "expected three created, got {created:?}"
            );
            let update = json!({"action": "createOrUpdate", "lookupField": "email",
                                "input": [{"email": emails[0], "title": "Analyst"}]});
            let updated = sync_leads(&http, &mk, &mk_token, &update).await?;
            ensure!(updated == ["updated"], "expected one updated, got {updated:?}");
            Ok(((), format!("statuses {created:?}, then {updated:?} for a title change")))
        })
        .await?;

    steps
        .run("query the Marketo leads by email", async {
            let response = http
                .get(format!("{}/rest/v1/leads.json", mk.url))
                .bearer_auth(&mk_token)
                .query(&[
                    ("filterType", "email"),
                    ("filterValues", &emails.join(",")),
                    ("fields", "id,email,firstName,title"),
                ])
                .send()
                .await?;
            let body = http::marketo_result(response, "leads query").await?;
            let rows = body["result"].as_array().cloned().unwrap_or_default();
            ensure!(rows.len() == 3, "expected 3 leads, got {}", rows.len());
            let ada = rows.iter().find(|r| r["email"] == emails[0]);
            ensure!(
                ada.is_some_and(|r| r["title"] == "Analyst"),
                "the update did not stick: {rows:?}"
            );
            let ids: Vec<String> = rows.iter().map(|r| r["id"].to_string()).collect();
            Ok((
                (),
                format!(
                    "3 leads found by email (ids {}), title change visible",
                    ids.join(", ")
                ),
            ))
        })
        .await?;
    Ok(())
}

/// Posts a lead sync and returns the per-record statuses (in input order).
async fn sync_leads(
    http: &reqwest::Client,
    mk: &MarketoInfo,
    token: &str,
    body: &Value,
) -> anyhow::Result<Vec<String>> {
    let response = http
        .post(format!("{}/rest/v1/leads.json", mk.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let answer = http::marketo_result(response, "lead sync").await?;
    let statuses = answer["result"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["status"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    Ok(statuses)
}
