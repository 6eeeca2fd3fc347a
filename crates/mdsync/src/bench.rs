//! `mdsync bench emulator`: throughput and peak memory of the emulators with limits off.
//!
//! Each emulator runs as a child process (`mdsync emulate --only X --no-limits --print-json`) so its peak
//! RSS (`VmHWM` in `/proc/<pid>/status`) is its own, not the benchmark client's. Numbers come from real
//! HTTP calls, sequential, one client.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::emulate::Which;
use crate::http::{self, DataverseInfo, MarketoInfo};

#[derive(Args, Debug)]
pub struct BenchEmulatorArgs {
    /// Records stored before measuring; repeat to compare sizes (e.g. --records 100000 --records 1000000).
    #[arg(long, default_values_t = [100_000u64])]
    pub records: Vec<u64>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/emulator.json")]
    pub json: PathBuf,
    /// Benchmark only one emulator.
    #[arg(long, value_enum)]
    pub only: Option<Which>,
    /// UpsertMultiple calls (of 1000 contacts each) in the Dataverse write benchmark.
    #[arg(long, default_value_t = 20)]
    pub upsert_batches: usize,
    /// Lead sync calls (of 300 leads each) in the Marketo write benchmark.
    #[arg(long, default_value_t = 100)]
    pub sync_batches: usize,
}

/// One measured figure, or why it was not measured.
#[derive(Serialize, Debug)]
struct Metric {
    emulator: &'static str,
    records: u64,
    name: &'static str,
    value: Option<f64>,
    unit: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_measured: Option<String>,
}

struct Results {
    emulator: &'static str,
    records: u64,
    metrics: Vec<Metric>,
}

impl Results {
    fn measured(&mut self, name: &'static str, value: f64, unit: &'static str, detail: String) {
        self.metrics.push(Metric {
            emulator: self.emulator,
            records: self.records,
            name,
            value: Some(value),
            unit,
            detail,
            not_measured: None,
        });
    }

    fn missing(&mut self, name: &'static str, unit: &'static str, why: String) {
        self.metrics.push(Metric {
            emulator: self.emulator,
            records: self.records,
            name,
            value: None,
            unit,
            detail: String::new(),
            not_measured: Some(why),
        });
    }

    /// Records `outcome` as the metric or as "not measured"; returns whether it was measured.
    fn record(
        &mut self,
        name: &'static str,
        unit: &'static str,
        outcome: anyhow::Result<(f64, String)>,
    ) -> bool {
        match outcome {
            Ok((value, detail)) => {
                self.measured(name, value, unit, detail);
                true
            }
            Err(err) => {
                self.missing(name, unit, format!("{err:#}"));
                false
            }
        }
    }
}

pub async fn run(args: BenchEmulatorArgs) -> anyhow::Result<()> {
    ensure!(
        !args.records.is_empty(),
        "--records needs at least one value"
    );
    let mut all = Vec::new();
    for &records in &args.records {
        if args.only != Some(Which::Marketo) {
            let mut results = Results {
                emulator: "dataverse",
                records,
                metrics: Vec::new(),
            };
            bench_dataverse(&mut results, args.upsert_batches.max(1)).await;
            all.extend(results.metrics);
        }
        if args.only != Some(Which::Dataverse) {
            let mut results = Results {
                emulator: "marketo",
                records,
                metrics: Vec::new(),
            };
            bench_marketo(&mut results, args.sync_batches.max(1)).await;
            all.extend(results.metrics);
        }
    }
    print_table(&all);
    if let Some(parent) = args.json.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let document = json!({
        "benchmark": "emulator",
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "limits": "off",
        "metrics": all,
    });
    std::fs::write(&args.json, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    println!("\nwrote {}", args.json.display());
    if cfg!(debug_assertions) {
        println!(
            "note: this is a debug build; use `cargo run --release -p mdsync -- bench emulator` for real figures"
        );
    }
    Ok(())
}

fn print_table(metrics: &[Metric]) {
    println!(
        "{:<10} {:>9}  {:<34} {:>14}  {:<10} detail",
        "emulator", "records", "metric", "value", "unit"
    );
    for m in metrics {
        match (&m.value, &m.not_measured) {
            (Some(value), _) => println!(
                "{:<10} {:>9}  {:<34} {:>14.1}  {:<10} {}",
                m.emulator, m.records, m.name, value, m.unit, m.detail
            ),
            (None, why) => println!(
                "{:<10} {:>9}  {:<34} {:>14}  {:<10} not measured: {}",
                m.emulator,
                m.records,
                m.name,
                "-",
                m.unit,
                why.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

/// An emulator child process started with `--print-json`.
struct EmulatorProcess {
    child: Child,
    description: Value,
}

impl EmulatorProcess {
    async fn start(which: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the mdsync executable")?;
        let mut child = Command::new(exe)
            .args(["emulate", "--print-json", "--no-limits", "--only", which])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Keep the child's shutdown chatter out of the table unless the user asked for logs.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .kill_on_drop(true)
            .spawn()
            .context("spawning `mdsync emulate`")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("the emulator did not print its description within 60 s")??;
        ensure!(
            read > 0,
            "the emulator exited before printing its description"
        );
        let description: Value =
            serde_json::from_str(&line).context("the emulator's first line is not JSON")?;
        Ok(Self { child, description })
    }

    /// Peak resident set size of the emulator process, in MiB.
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the emulator already exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading /proc/<pid>/status")?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .context("no VmHWM in /proc/<pid>/status")?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed VmHWM line")?
            .parse()
            .context("malformed VmHWM value")?;
        Ok(kib / 1024.0)
    }

    /// SIGTERM, then wait for a clean exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .context("running kill -TERM")?;
            ensure!(status.success(), "kill -TERM {pid} failed");
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("the emulator did not stop within 60 s of SIGTERM")??;
        ensure!(status.success(), "the emulator exited with {status}");
        Ok(())
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------------------
// Dataverse

const DV_PAGE: u64 = 5000;
const DV_BATCH: usize = 1000;
const DV_CHANGES: usize = 10_000;

async fn bench_dataverse(results: &mut Results, upsert_batches: usize) {
    let process = match EmulatorProcess::start("dataverse").await {
        Ok(process) => process,
        Err(err) => {
            results.missing("emulator start", "", format!("{err:#}"));
            return;
        }
    };
    let outcome = dataverse_metrics(&process, results, upsert_batches).await;
    if let Err(err) = outcome {
        results.missing("(remaining Dataverse metrics)", "", format!("{err:#}"));
    }
    let rss = process
        .peak_rss_mib()
        .map(|mib| (mib, "VmHWM of the emulator process".to_owned()));
    results.record("peak RSS", "MiB", rss);
    if let Err(err) = process.stop().await {
        results.missing("clean shutdown", "", format!("{err:#}"));
    }
}

async fn dataverse_metrics(
    process: &EmulatorProcess,
    results: &mut Results,
    batches: usize,
) -> anyhow::Result<()> {
    let dv: DataverseInfo = serde_json::from_value(process.description["dataverse"].clone())
        .context("reading the Dataverse description")?;
    let http = http::client()?;
    let n = results.records;

    let started = Instant::now();
    let response = http
        .post(format!("{}/_emulator/seed", dv.url))
        .json(&json!({"seed": 42, "contacts": n, "accounts": 0, "leads": 0}))
        .send()
        .await?;
    let seeded = http::json_body(response, "seed").await;
    let seed_ok = results.record(
        "seed contacts",
        "records/s",
        seeded.map(|_| {
            (
                rate(n, started.elapsed()),
                format!("{n} contacts in {:.1} s", started.elapsed().as_secs_f64()),
            )
        }),
    );
    ensure!(seed_ok, "nothing to read without seeded contacts");
    let token = http::dataverse_token(&http, &dv).await?;

    // Paged read of everything, keeping the first ids for later updates.
    let mut ids: Vec<String> = Vec::with_capacity(DV_CHANGES);
    let read = async {
        let started = Instant::now();
        let mut url = format!(
            "{}contacts?$select=fullname,emailaddress1,telephone1,modifiedon",
            dv.api_url
        );
        let mut rows_read = 0u64;
        let mut pages = 0u64;
        loop {
            let response = http
                .get(&url)
                .bearer_auth(&token)
                .header("Prefer", format!("odata.maxpagesize={DV_PAGE}"))
                .send()
                .await?;
            let body = http::json_body(response, "contacts page").await?;
            let rows = body["value"].as_array().context("page without value")?;
            pages += 1;
            rows_read += rows.len() as u64;
            for row in rows {
                if ids.len() < DV_CHANGES
                    && let Some(id) = row["contactid"].as_str()
                {
                    ids.push(id.to_owned());
                }
            }
            match body.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        ensure!(rows_read == n, "read {rows_read} contacts, seeded {n}");
        Ok((
            rate(rows_read, started.elapsed()),
            format!("{rows_read} rows in {pages} pages of {DV_PAGE}"),
        ))
    }
    .await;
    results.record("paged read (5000/page)", "records/s", read);

    // UpsertMultiple: half updates of existing rows, half creates.
    let upsert = async {
        let started = Instant::now();
        for b in 0..batches {
            let targets: Vec<Value> = (0..DV_BATCH)
                .map(|i| {
                    let existing = ids.get((b * DV_BATCH + i) % ids.len().max(1));
                    let id = match existing {
                        Some(id) if i % 2 == 0 => id.clone(),
                        _ => uuid::Uuid::new_v4().to_string(),
                    };
                    json!({
                        "@odata.type": "Microsoft.Dynamics.CRM.contact",
                        "contactid": id,
                        "firstname": "Bench",
                        "lastname": format!("Upsert {b}-{i}"),
                        "emailaddress1": format!("upsert{b}.{i}@bench.example"),
                    })
                })
                .collect();
            upsert_multiple(&http, &dv, &token, targets).await?;
        }
        let count = (batches * DV_BATCH) as u64;
        Ok((
            rate(count, started.elapsed()),
            format!("{batches} UpsertMultiple calls of {DV_BATCH} (half updates)"),
        ))
    }
    .await;
    results.record("UpsertMultiple (1000/call)", "records/s", upsert);

    // Delta read after 10,000 changes.
    let delta = async {
        let mut url = format!("{}contacts?$select=fullname,emailaddress1", dv.api_url);
        let delta_link = loop {
            let response = http
                .get(&url)
                .bearer_auth(&token)
                .header(
                    "Prefer",
                    format!("odata.track-changes,odata.maxpagesize={DV_PAGE}"),
                )
                .send()
                .await?;
            let body = http::json_body(response, "initial change-tracking read").await?;
            if let Some(next) = body.get("@odata.nextLink").and_then(Value::as_str) {
                url = next.to_owned();
            } else if let Some(delta) = body.get("@odata.deltaLink").and_then(Value::as_str) {
                break delta.to_owned();
            } else {
                bail!("last page has neither @odata.nextLink nor @odata.deltaLink");
            }
        };
        let changes = ids.len().min(DV_CHANGES);
        ensure!(changes > 0, "no contact ids to change");
        for (b, chunk) in ids[..changes].chunks(DV_BATCH).enumerate() {
            let targets = chunk
                .iter()
                .map(|id| {
                    json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id,
                           "lastname": format!("Changed {b}")})
                })
                .collect();
            upsert_multiple(&http, &dv, &token, targets).await?;
        }
        let started = Instant::now();
        let mut url = delta_link;
        let mut changed_rows = 0u64;
        loop {
            let response = http
                .get(&url)
                .bearer_auth(&token)
                .header(
                    "Prefer",
                    format!("odata.track-changes,odata.maxpagesize={DV_PAGE}"),
                )
                .send()
                .await?;
            let body = http::json_body(response, "delta read").await?;
            changed_rows += body["value"].as_array().map_or(0, Vec::len) as u64;
            match body.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        ensure!(
            changed_rows >= changes as u64,
            "delta returned {changed_rows} rows after {changes} changes"
        );
        Ok((
            ms,
            format!("{changed_rows} changed rows after {changes} updates"),
        ))
    }
    .await;
    results.record("delta read after 10,000 changes", "ms", delta);
    Ok(())
}

async fn upsert_multiple(
    http: &reqwest::Client,
    dv: &DataverseInfo,
    token: &str,
    targets: Vec<Value>,
) -> anyhow::Result<()> {
    let response = http
        .post(format!(
            "{}contacts/Microsoft.Dynamics.CRM.UpsertMultiple",
            dv.api_url
        ))
        .bearer_auth(token)
        .json(&json!({ "Targets": targets }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("UpsertMultiple: HTTP {status}: {}", http::truncate(&text));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Marketo

const MK_BATCH: usize = 300;

async fn bench_marketo(results: &mut Results, sync_batches: usize) {
    let process = match EmulatorProcess::start("marketo").await {
        Ok(process) => process,
        Err(err) => {
            results.missing("emulator start", "", format!("{err:#}"));
            return;
        }
    };
    if let Err(err) = marketo_metrics(&process, results, sync_batches).await {
        results.missing("(remaining Marketo metrics)", "", format!("{err:#}"));
    }
    let rss = process
        .peak_rss_mib()
        .map(|mib| (mib, "VmHWM of the emulator process".to_owned()));
    results.record("peak RSS", "MiB", rss);
    if let Err(err) = process.stop().await {
        results.missing("clean shutdown", "", format!("{err:#}"));
    }
}

async fn marketo_metrics(
    process: &EmulatorProcess,
    results: &mut Results,
    sync_batches: usize,
) -> anyhow::Result<()> {
    let mk: MarketoInfo = serde_json::from_value(process.description["marketo"].clone())
        .context("reading the Marketo description")?;
    let http = http::client()?;
    let n = results.records;

    let started = Instant::now();
    let response = http
        .post(format!("{}/_emulator/seed", mk.url))
        .json(&json!({"seed": 42, "leads": n, "companies": 0, "opportunities": 0}))
        .send()
        .await?;
    let seeded = http::json_body(response, "seed").await;
    let seed_ok = results.record(
        "seed leads",
        "records/s",
        seeded.map(|_| {
            (
                rate(n, started.elapsed()),
                format!("{n} leads in {:.1} s", started.elapsed().as_secs_f64()),
            )
        }),
    );
    ensure!(seed_ok, "nothing to measure without seeded leads");
    let token = http::marketo_token(&http, &mk).await?;

    let since = iso_utc(chrono::Utc::now() - chrono::Duration::minutes(1));
    let paging = http
        .get(format!("{}/rest/v1/activities/pagingtoken.json", mk.url))
        .bearer_auth(&token)
        .query(&[("sinceDatetime", since.as_str())])
        .send()
        .await?;
    let paging_token = http::marketo_result(paging, "paging token")
        .await
        .and_then(|body| {
            body["nextPageToken"]
                .as_str()
                .map(str::to_owned)
                .context("no nextPageToken")
        });

    let sync = async {
        let started = Instant::now();
        let mut created = 0u64;
        for b in 0..sync_batches {
            let input: Vec<Value> = (0..MK_BATCH)
                .map(|i| {
                    json!({"email": format!("sync{b}.{i}@bench.example"), "firstName": "Bench",
                                 "lastName": format!("Sync {b}-{i}"), "company": "Bench Inc"})
                })
                .collect();
            let response = http
                .post(format!("{}/rest/v1/leads.json", mk.url))
                .bearer_auth(&token)
                .json(&json!({"action": "createOrUpdate", "lookupField": "email", "input": input}))
                .send()
                .await?;
            let body = http::marketo_result(response, "lead sync").await?;
            created += body["result"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|x| x["status"] == "created").count())
                as u64;
        }
        let total = (sync_batches * MK_BATCH) as u64;
        ensure!(created == total, "{created} of {total} leads created");
        Ok((
            rate(total, started.elapsed()),
            format!("{sync_batches} syncs of {MK_BATCH} new leads"),
        ))
    }
    .await;
    results.record("lead sync (300/call)", "records/s", sync);

    let changes = async {
        let mut next = paging_token?;
        let started = Instant::now();
        let mut activities = 0u64;
        let mut calls = 0u64;
        loop {
            let response = http
                .get(format!("{}/rest/v1/activities/leadchanges.json", mk.url))
                .bearer_auth(&token)
                .query(&[
                    ("nextPageToken", next.as_str()),
                    ("fields", "email,firstName,lastName"),
                    ("batchSize", "300"),
                ])
                .send()
                .await?;
            let body = http::marketo_result(response, "lead changes").await?;
            calls += 1;
            activities += body["result"].as_array().map_or(0, Vec::len) as u64;
            let more = body["moreResult"].as_bool().unwrap_or(false);
            match body["nextPageToken"].as_str() {
                Some(token) if more => next = token.to_owned(),
                _ => break,
            }
            ensure!(calls < 1_000_000, "lead changes never ended");
        }
        ensure!(activities > 0, "no activities after the lead sync");
        Ok((
            rate(activities, started.elapsed()),
            format!("{activities} activities in {calls} calls"),
        ))
    }
    .await;
    results.record("lead changes paging", "activities/s", changes);

    let export = bulk_export(&http, &mk, &token, n + (sync_batches * MK_BATCH) as u64).await;
    match export {
        Ok((records, bytes, elapsed)) => {
            results.measured(
                "bulk lead export (streamed)",
                rate(records, elapsed),
                "records/s",
                format!(
                    "{records} rows, {bytes} bytes, {:.1} s create→file end",
                    elapsed.as_secs_f64()
                ),
            );
        }
        Err(err) => results.missing(
            "bulk lead export (streamed)",
            "records/s",
            format!("{err:#}"),
        ),
    }
    Ok(())
}

/// ISO-8601 UTC, seconds precision, as Marketo expects for `sinceDatetime` and export filters.
fn iso_utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Exports every lead created in the last 31 days (the real per-export maximum); returns (rows, bytes,
/// elapsed).
async fn bulk_export(
    http: &reqwest::Client,
    mk: &MarketoInfo,
    token: &str,
    expected: u64,
) -> anyhow::Result<(u64, u64, Duration)> {
    let now = chrono::Utc::now();
    // Marketo allows at most 31 days per export; seeded leads are spread over the last 30.
    let start_at = iso_utc(now - chrono::Duration::days(30) - chrono::Duration::hours(23));
    let end_at = iso_utc(now + chrono::Duration::minutes(30));
    let started = Instant::now();
    let response = http
        .post(format!("{}/bulk/v1/leads/export/create.json", mk.url))
        .bearer_auth(token)
        .json(&json!({
            "fields": ["id", "email", "firstName", "lastName", "company", "updatedAt"],
            "format": "CSV",
            "filter": {"createdAt": {"startAt": start_at, "endAt": end_at}},
        }))
        .send()
        .await?;
    let body = http::marketo_result(response, "export create").await?;
    let export_id = body["result"][0]["exportId"]
        .as_str()
        .context("no exportId")?
        .to_owned();
    let base = format!("{}/bulk/v1/leads/export/{export_id}", mk.url);
    let response = http
        .post(format!("{base}/enqueue.json"))
        .bearer_auth(token)
        .send()
        .await?;
    http::marketo_result(response, "export enqueue").await?;
    loop {
        let response = http
            .get(format!("{base}/status.json"))
            .bearer_auth(token)
            .send()
            .await?;
        let body = http::marketo_result(response, "export status").await?;
        match body["result"][0]["status"].as_str() {
            Some("Completed") => break,
            Some("Failed") | Some("Cancelled") => bail!("export ended: {body}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "export did not complete in an hour"
        );
    }
    let response = http
        .get(format!("{base}/file.json"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "file.json: HTTP {}",
        response.status()
    );
    let mut stream = response.bytes_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let rows = lines.saturating_sub(1);
    let elapsed = started.elapsed();
    if rows < expected {
        tracing::warn!(
            rows,
            expected,
            "the export has fewer rows than leads stored (createdAt window)"
        );
    }
    Ok((rows, bytes, elapsed))
}
