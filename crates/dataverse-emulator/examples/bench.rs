//! Scale benchmark of the Dataverse emulator (limits off), over real HTTP on 127.0.0.1:
//! seeding, paged reads of 5000, `UpsertMultiple` batches of 1000, a delta read after 10,000
//! changes, and RSS after 100k and 1M stored contacts.
//!
//! `cargo run --release -p mdsync-dataverse-emulator --example bench -- [contacts] [out.json]`
//! (default 1,000,000 contacts, `target/dataverse-bench.json`).

use std::time::Instant;

use mdsync_dataverse_emulator::{Config, spawn};
use serde_json::{Value, json};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let out = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "target/dataverse-bench.json".into());
    let running = spawn(Config {
        limits_enabled: false,
        ..Config::default()
    })
    .await?;
    let d = running.description().clone();
    let http = reqwest::Client::new();
    let tok: Value = http
        .post(&d.token_url)
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", d.url)),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = tok["access_token"].as_str().ok_or("no token")?.to_string();
    let mut results = serde_json::Map::new();
    let mut rows: Vec<(String, String)> = Vec::new();

    // Seed in steps so RSS can be sampled at 100k and at the end.
    let first = total.min(100_000);
    let t = Instant::now();
    let r = http
        .post(format!("{}/_emulator/seed", d.url))
        .json(&json!({"seed": 1, "contacts": first}))
        .send()
        .await?;
    assert!(r.status().is_success());
    let mut seed_secs = t.elapsed().as_secs_f64();
    let rss_100k = rss_kib("VmRSS:");
    if total > first {
        let t = Instant::now();
        // Different seed → different ids, so the rows add up.
        let r = http
            .post(format!("{}/_emulator/seed", d.url))
            .json(&json!({"seed": 2, "contacts": total - first}))
            .send()
            .await?;
        assert!(r.status().is_success());
        seed_secs += t.elapsed().as_secs_f64();
    }
    let rss_total = rss_kib("VmRSS:");
    results.insert("contacts".into(), json!(total));
    results.insert(
        "seed_records_per_sec".into(),
        json!(total as f64 / seed_secs),
    );
    rows.push((
        "seed".into(),
        format!(
            "{total} contacts in {seed_secs:.1} s ({:.0}/s)",
            total as f64 / seed_secs
        ),
    ));

    // Paged reads of 5000.
    let pages = 40.min(total / 5000).max(1);
    let mut url = format!(
        "{}contacts?$select=fullname,emailaddress1,telephone1",
        d.api_url
    );
    let t = Instant::now();
    let mut read = 0usize;
    for _ in 0..pages {
        let v: Value = http
            .get(&url)
            .bearer_auth(&token)
            .header("Prefer", "odata.maxpagesize=5000")
            .send()
            .await?
            .json()
            .await?;
        read += v["value"].as_array().map(Vec::len).unwrap_or(0);
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    let read_rate = read as f64 / t.elapsed().as_secs_f64();
    results.insert("paged_read_records_per_sec".into(), json!(read_rate));
    rows.push((
        "paged read (5000/page)".into(),
        format!("{read} rows, {read_rate:.0} records/s"),
    ));

    // UpsertMultiple of 1000.
    let batches = 20;
    let t = Instant::now();
    for b in 0..batches {
        let targets: Vec<Value> = (0..1000)
            .map(|i| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": uuid::Uuid::new_v4(), "lastname": format!("Bench{b}-{i}"), "emailaddress1": format!("b{b}.{i}@bench.example")}))
            .collect();
        let r = http
            .post(format!(
                "{}contacts/Microsoft.Dynamics.CRM.UpsertMultiple",
                d.api_url
            ))
            .bearer_auth(&token)
            .json(&json!({"Targets": targets}))
            .send()
            .await?;
        assert_eq!(r.status(), 204);
    }
    let upsert_rate = (batches * 1000) as f64 / t.elapsed().as_secs_f64();
    results.insert("upsert_multiple_records_per_sec".into(), json!(upsert_rate));
    rows.push((
        "UpsertMultiple (1000/request)".into(),
        format!("{upsert_rate:.0} records/s"),
    ));

    // Delta read after 10,000 changes.
    let v: Value = http
        .get(format!("{}leads?$select=lastname", d.api_url))
        .bearer_auth(&token)
        .header("Prefer", "odata.track-changes")
        .send()
        .await?
        .json()
        .await?;
    let delta = v["@odata.deltaLink"]
        .as_str()
        .ok_or("no delta link")?
        .replace("leads?", "contacts?");
    // Delta tokens are positions on the store-wide change clock, so a token taken on a small table
    // is valid for contacts too (avoids an initial read of every contact).
    for b in 0..10 {
        let targets: Vec<Value> = (0..1000)
            .map(|i| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": format!("Change{b}-{i}")}))
            .collect();
        let r = http
            .post(format!(
                "{}contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                d.api_url
            ))
            .bearer_auth(&token)
            .json(&json!({"Targets": targets}))
            .send()
            .await?;
        assert!(r.status().is_success());
    }
    let t = Instant::now();
    let mut changes = 0usize;
    let mut link = delta;
    loop {
        let v: Value = http
            .get(&link)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        changes += v["value"].as_array().map(Vec::len).unwrap_or(0);
        match v["@odata.nextLink"].as_str() {
            Some(n) => link = n.to_string(),
            None => break,
        }
    }
    let delta_secs = t.elapsed().as_secs_f64();
    results.insert("delta_read_changes".into(), json!(changes));
    results.insert("delta_read_seconds".into(), json!(delta_secs));
    rows.push((
        "delta read".into(),
        format!("{changes} changes in {delta_secs:.3} s"),
    ));

    results.insert("rss_kib_at_100k".into(), json!(rss_100k));
    results.insert("rss_kib_at_total".into(), json!(rss_total));
    results.insert("peak_rss_kib".into(), json!(rss_kib("VmHWM:")));
    rows.push((
        "RSS".into(),
        format!(
            "{} MiB at 100k, {} MiB at {total}, peak {} MiB",
            rss_100k / 1024,
            rss_total / 1024,
            rss_kib("VmHWM:") / 1024
        ),
    ));

    println!("{:<32} | result", "benchmark");
    println!("{}", "-".repeat(80));
    for (k, v) in &rows {
        println!("{k:<32} | {v}");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&Value::Object(results))?)?;
    println!("wrote {out}");
    running.shutdown().await?;
    Ok(())
}
