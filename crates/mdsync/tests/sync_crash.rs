//! Crash safety: `mdsync sync --once` as a real process, SIGKILLed at seeded-random points of an initial
//! load and of incremental cycles, then restarted until it converges. Every CRM person must end up in
//! Marketo exactly once (no duplicate by msftId) with every field equal to the expected winner.

mod sync_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sync_support::{Pair, id_of};

/// xorshift64*: a seeded, dependency-free RNG so kill points are reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo)
    }
}

/// Starts `mdsync sync --once` and SIGKILLs it after `ms` (unless it finished first). Returns whether it
/// was killed.
async fn kill_after(pair: &Pair, ms: u64) -> bool {
    let args = pair.args(&["sync", "--once", "--page-size", "250"]);
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mdsync"))
            .args(&args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mdsync");
        let deadline = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                // A run that ends before its kill point must have completed its cycle, not failed.
                assert!(status.success(), "sync --once exited early with {status}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        true
    })
    .await
    .expect("join")
}

/// Adds (or removes) latency on every Dataverse and Marketo API call.
async fn slow_down(pair: &Pair, on: bool) {
    let dv = pair.dv.description().url.clone();
    let mk = pair.mk.description().url.clone();
    for (base, path, ms) in [(dv, "/api/data/", 60), (mk, "/rest/", 150)] {
        if on {
            pair.post(
                &base,
                "/_emulator/faults",
                json!({"path_contains": path, "latency_ms": ms}),
            )
            .await;
        } else {
            let r = pair
                .http
                .delete(format!("{base}/_emulator/faults"))
                .send()
                .await
                .expect("clear faults");
            assert!(r.status().is_success());
        }
    }
}

/// Runs complete cycles until one writes nothing (at most 5).
async fn converge(pair: &Pair) {
    for _ in 0..5 {
        let out = pair
            .ok(&["sync", "--once", "--json", "--page-size", "250"])
            .await;
        let report: Value = serde_json::from_str(&out).expect("report");
        if report["marketo_writes"] == 0 && report["crm_writes"] == 0 {
            return;
        }
    }
    panic!("no quiet cycle after 5 complete cycles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_anywhere_then_restart_converges() {
    let pair = Pair::start(false).await;
    pair.seed_crm(json!({"seed": 5, "accounts": 20, "leads": 1200, "contacts": 600}))
        .await;
    let mut rng = Rng(0x5eed_2026_1124);
    let mut killed_initial = 0u32;
    let mut killed_incremental = 0u32;
    // Latency on every API call makes a run last seconds whatever the machine's speed, so the kill
    // points land inside the runs (writes, reads and commits alike).
    slow_down(&pair, true).await;

    // Initial load, killed at five random points.
    for _ in 0..5 {
        let ms = rng.below(150, 2000);
        let k = kill_after(&pair, ms).await;
        eprintln!("run killed after {ms} ms: {k}");
        killed_initial += k as u32;
    }
    // Killed runs committed part of the load (the restart resumes it rather than starting over).
    let status: Value =
        serde_json::from_str(&pair.ok(&["status", "--json"]).await).expect("status");
    let linked: u64 = status["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| e["linked"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        linked > 0 && linked < 1820,
        "partial progress before the restart: {status}"
    );
    slow_down(&pair, false).await;
    converge(&pair).await;
    slow_down(&pair, true).await;

    // Both sides edit: humans in Dynamics (leads), marketers in Marketo (contacts), and both on ten leads.
    let leads = pair.crm_rows("leads", "leadid").await;
    let contacts = pair.crm_rows("contacts", "contactid").await;
    let lead_ids: Vec<_> = leads.iter().map(|r| id_of(r, "leadid")).collect();
    let contact_ids: Vec<_> = contacts.iter().map(|r| id_of(r, "contactid")).collect();
    let before = pair.persons(&lead_ids[..40], &["id"]).await;
    let before_contacts = pair.persons(&contact_ids[..30], &["id"]).await;
    for (i, id) in lead_ids[..40].iter().enumerate() {
        pair.crm(
            reqwest::Method::PATCH,
            &format!("leads({id})"),
            Some(json!({"firstname": format!("Human{i}")})),
        )
        .await;
    }
    for (i, id) in lead_ids[30..40].iter().enumerate() {
        let mid = before[&id.to_string()][0]["id"]
            .as_i64()
            .expect("person id");
        pair.marketer_edit(json!({"leadId": mid, "fields": {"firstName": format!("Marketer{i}")}}))
            .await;
    }
    for (i, id) in contact_ids[..30].iter().enumerate() {
        let mid = before_contacts[&id.to_string()][0]["id"]
            .as_i64()
            .expect("person id");
        pair.marketer_edit(json!({"leadId": mid, "fields": {"title": format!("Title{i}")}}))
            .await;
    }
    // Incremental cycles, killed at three random points.
    for _ in 0..3 {
        let ms = rng.below(100, 900);
        let k = kill_after(&pair, ms).await;
        eprintln!("run killed after {ms} ms: {k}");
        killed_incremental += k as u32;
    }
    slow_down(&pair, false).await;
    converge(&pair).await;
    // Kill points are random and a resumed load shrinks, so some runs may finish first (they must have
    // succeeded, see `kill_after`); most must have been killed mid-way in both phases.
    assert!(
        killed_initial >= 3 && killed_incremental >= 1,
        "too few runs killed mid-way: {killed_initial}/5 initial, {killed_incremental}/3 incremental"
    );

    // Every lead and contact: one person, fields equal to the expected winner on both sides.
    let leads = pair
        .crm_rows("leads", "leadid,firstname,lastname,emailaddress1")
        .await;
    let contacts = pair
        .crm_rows(
            "contacts",
            "contactid,firstname,lastname,emailaddress1,jobtitle",
        )
        .await;
    let all: Vec<_> = leads
        .iter()
        .map(|r| id_of(r, "leadid"))
        .chain(contacts.iter().map(|r| id_of(r, "contactid")))
        .collect();
    let persons = pair
        .persons(
            &all,
            &["firstName", "lastName", "email", "title", "msftType"],
        )
        .await;
    assert_eq!(persons.len(), all.len(), "every CRM person is in Marketo");
    for (row, key, kind) in leads
        .iter()
        .map(|r| (r, "leadid", "Lead"))
        .chain(contacts.iter().map(|r| (r, "contactid", "Contact")))
    {
        let id = id_of(row, key);
        let found = &persons[&id.to_string()];
        assert_eq!(found.len(), 1, "duplicate persons for {id}: {found:?}");
        let p = &found[0];
        assert_eq!(p["msftType"], kind);
        assert_eq!(p["firstName"], row["firstname"], "{id}");
        assert_eq!(p["lastName"], row["lastname"], "{id}");
        assert_eq!(p["email"], row["emailaddress1"], "{id}");
    }
    let by_id: std::collections::HashMap<_, _> =
        leads.iter().map(|r| (id_of(r, "leadid"), r)).collect();
    for (i, id) in lead_ids[..30].iter().enumerate() {
        assert_eq!(by_id[id]["firstname"], format!("Human{i}"));
    }
    // Both sides changed: leads are Marketo-wins.
    for (i, id) in lead_ids[30..40].iter().enumerate() {
        assert_eq!(by_id[id]["firstname"], format!("Marketer{i}"), "{id}");
    }
    let contacts_by_id: std::collections::HashMap<_, _> = contacts
        .iter()
        .map(|r| (id_of(r, "contactid"), r))
        .collect();
    for (i, id) in contact_ids[..30].iter().enumerate() {
        assert_eq!(contacts_by_id[id]["jobtitle"], format!("Title{i}"), "{id}");
        assert_eq!(persons[&id.to_string()][0]["title"], format!("Title{i}"));
    }
}
