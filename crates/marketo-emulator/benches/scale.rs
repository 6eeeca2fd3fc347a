//! Scale benchmark (not a test): with limits off and MDSYNC_BENCH_LEADS leads stored (default 1,000,000),
//! measures lead sync in batches of 300, lead-change paging, a streamed bulk export of every lead, and the
//! process's peak RSS after each phase. Run: `cargo bench -p mdsync-marketo-emulator --bench scale`.

use std::time::{Duration, Instant};

use chrono::Utc;
use mdsync_marketo_emulator::{Config, spawn};
use serde_json::{Value, json};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size (VmHWM) and current RSS of this process, in MiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) this process has used; the machine is shared, so throughput per CPU
/// second is reported next to wall-clock throughput.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/self/stat (11 and 12 after the command name).
    (ticks(11) + ticks(12)) / 100.0
}

fn report(phase: &str, detail: String) {
    let (peak, now) = rss();
    println!("{phase:<28} {detail:<72} rss={now} MiB peak={peak} MiB");
}

/// "N things in W s (X/s wall, Y/s per CPU-second)".
fn rate(count: u64, what: &str, wall: f64, cpu: f64) -> String {
    format!(
        "{count} {what} in {wall:.1} s ({:.0}/s wall, {:.0}/CPU-s)",
        count as f64 / wall,
        count as f64 / cpu.max(1e-9)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leads = env_u64("MDSYNC_BENCH_LEADS", 1_000_000);
    let sync_records = env_u64("MDSYNC_BENCH_SYNC", 150_000);
    let running = spawn(Config {
        limits_enabled: false,
        ..Config::default()
    })
    .await
    .expect("spawn");
    let d = running.description().clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let token: Value = http
        .get(format!("{}/identity/oauth/token", d.url))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", d.client_id.as_str()),
            ("client_secret", d.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    report("start", String::new());

    let started = Instant::now();
    let cpu0 = cpu_secs();
    let seeded: Value = http
        .post(format!("{}/_emulator/seed", d.url))
        .json(&json!({"seed": 42, "leads": leads}))
        .send()
        .await
        .expect("seed")
        .json()
        .await
        .expect("seed json");
    let secs = started.elapsed().as_secs_f64();
    report("seed", rate(leads, "leads", secs, cpu_secs() - cpu0));
    let first_id = seeded["leads"]["firstId"].as_i64().unwrap_or(1);

    // Sync: updates of existing leads by email (each changes the title: one activity per record).
    let paging: Value = http
        .get(format!(
            "{}/rest/v1/activities/pagingtoken.json?sinceDatetime=2000-01-01T00:00:00Z",
            d.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("paging token")
        .json()
        .await
        .expect("paging json");
    let start_token = paging["nextPageToken"].as_str().expect("token").to_string();
    let batches = sync_records.div_ceil(300);
    // Sequential calls first (one client), then two calls in flight (well under the 10 allowed).
    for (clients, round) in [(1u64, 0u64), (2, 1)] {
        let started = Instant::now();
        let cpu0 = cpu_secs();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let http = http.clone();
            let url = d.url.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let mut synced = 0u64;
                for b in (c..batches).step_by(clients as usize) {
                    let input: Vec<Value> = (0..300)
                        .map(|i| {
                            // Scattered over the whole table (a sync touches random leads, not neighbours).
                            let k = (round * batches + b) * 300 + i;
                            let id = first_id + (k.wrapping_mul(2_654_435_761) % leads.max(1)) as i64;
                            json!({"id": id, "title": format!("Bench {round}-{b}"), "city": format!("City {round}")})
                        })
                        .collect();
                    let body: Value = http
                        .post(format!("{url}/rest/v1/leads.json"))
                        .bearer_auth(&token)
                        .json(&json!({"action": "updateOnly", "lookupField": "id", "input": input}))
                        .send()
                        .await
                        .expect("sync")
                        .json()
                        .await
                        .expect("sync json");
                    synced += body["result"].as_array().map(Vec::len).unwrap_or(0) as u64;
                }
                synced
            }));
        }
        let mut synced = 0u64;
        for t in tasks {
            synced += t.await.expect("sync task");
        }
        let secs = started.elapsed().as_secs_f64();
        report(
            &format!("sync updates, {clients} client(s)"),
            rate(synced, "records", secs, cpu_secs() - cpu0),
        );
    }

    // Create path too (new leads by email).
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let mut created = 0u64;
    for b in 0..(batches / 3).max(1) {
        let input: Vec<Value> = (0..300)
            .map(|i| json!({"email": format!("bench{b}-{i}@new.example"), "firstName": "New", "lastName": "Lead"}))
            .collect();
        let body: Value = http
            .post(format!("{}/rest/v1/leads.json", d.url))
            .bearer_auth(&token)
            .json(&json!({"input": input}))
            .send()
            .await
            .expect("sync")
            .json()
            .await
            .expect("sync json");
        created += body["result"].as_array().map(Vec::len).unwrap_or(0) as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        "sync createOrUpdate (new)",
        rate(created, "records", secs, cpu_secs() - cpu0),
    );

    // Lead-change paging over everything logged above.
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let mut token_pos = start_token;
    let mut activities = 0u64;
    let mut pages = 0u64;
    loop {
        let page: Value = http
            .get(format!(
                "{}/rest/v1/activities/leadchanges.json?fields=title,city,firstName&batchSize=300&nextPageToken={token_pos}",
                d.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("leadchanges")
            .json()
            .await
            .expect("leadchanges json");
        pages += 1;
        activities += page["result"].as_array().map(Vec::len).unwrap_or(0) as u64;
        token_pos = page["nextPageToken"].as_str().expect("token").to_string();
        if page["moreResult"] != true {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        "leadchanges paging",
        format!(
            "{pages} pages: {}",
            rate(activities, "activities", secs, cpu_secs() - cpu0)
        ),
    );

    // Bulk export of every lead, downloaded as a stream.
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let job: Value = http
        .post(format!("{}/bulk/v1/leads/export/create.json", d.url))
        .bearer_auth(&token)
        .json(&json!({"fields": ["id", "email", "firstName", "lastName", "company", "title", "city", "updatedAt"],
                      "filter": {"createdAt": {"startAt": fmt(Utc::now() - chrono::Duration::days(30)),
                                               "endAt": fmt(Utc::now() + chrono::Duration::hours(1))}}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("create json");
    let id = job["result"][0]["exportId"]
        .as_str()
        .expect("exportId")
        .to_string();
    http.post(format!("{}/bulk/v1/leads/export/{id}/enqueue.json", d.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("enqueue");
    let status = loop {
        let s: Value = http
            .get(format!("{}/bulk/v1/leads/export/{id}/status.json", d.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json");
        if s["result"][0]["status"] == "Completed" {
            break s["result"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let produced = started.elapsed().as_secs_f64();
    report(
        "bulk export produced",
        format!(
            "{} rows, {} bytes in {produced:.1} s (cpu {:.1} s)",
            status["numberOfRecords"],
            status["fileSize"],
            cpu_secs() - cpu0
        ),
    );
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let mut response = http
        .get(format!("{}/bulk/v1/leads/export/{id}/file.json", d.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("file");
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        bytes += chunk.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        "bulk export downloaded",
        format!(
            "{bytes} bytes in {secs:.1} s ({:.0} MB/s, cpu {:.1} s)",
            bytes as f64 / secs / 1e6,
            cpu_secs() - cpu0
        ),
    );
    running.shutdown().await.expect("shutdown");
}
