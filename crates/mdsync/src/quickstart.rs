//! `mdsync quickstart`: the whole story on the embedded defaults, as a numbered list of steps.
//!
//! Both emulators run in-process (ephemeral ports, service limits on as in the real services); the
//! config and the state DB live in a temp dir (or `--workdir`). Every step is checked against the
//! *other side's* data read back through the public APIs, not only against mdsync's own report, and
//! the run exits 0 only if every step behaved as stated (otherwise non-zero, naming the failed step).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::Args;
use futures::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mdsync_dataverse_client::{Client as CrmClient, QueryOptions};
use mdsync_engine::{CycleOptions, CycleReport, Progress};
use mdsync_marketo_client::{Client as MarketoClient, ObjectKind};
use mdsync_setup::{Event, Outcome, SyncUserIdentity, SyncUserOptions};
use mdsync_state::{DeadLetterQuery, SqliteStateStore, StateStore};
use mdsync_sync_core::mapping::ConflictPolicy;
use mdsync_sync_core::record::{CrmEntity, Flow, Side};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::emulate::{self, EmulateArgs, Emulators};

const FILTER_FIELD: &str = "new_synctomkto";
/// What shows whether a Dynamics row was written again: `versionnumber` grows on every write.
const LEAD_A_COLUMNS: &[&str] = &[
    "firstname",
    "modifiedon",
    "versionnumber",
    "_modifiedby_value",
];
const PERSON_FIELDS: &[&str] = &["id", "msftId", "msftType", "email", "firstName", "title"];

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Leads seeded into Dynamics.
    #[arg(long, default_value_t = 2000)]
    pub leads: u64,
    /// Contacts seeded into Dynamics.
    #[arg(long, default_value_t = 2000)]
    pub contacts: u64,
    /// Accounts seeded into Dynamics.
    #[arg(long, default_value_t = 200)]
    pub accounts: u64,
    /// Opportunities seeded into Dynamics.
    #[arg(long, default_value_t = 300)]
    pub opportunities: u64,
    /// Persons seeded only in Marketo (they must stay out of Dynamics).
    #[arg(long, default_value_t = 300)]
    pub marketo_only: u64,
    /// Leads (and as many contacts) a human creates with `new_synctomkto = false`.
    #[arg(long, default_value_t = 10)]
    pub filtered: u64,
    /// Keep the config (`mdsync.toml`) and state DB here; default: a temp dir removed at the end.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
}

/// Runs the steps in order, one block per step; the first failing step stops the story.
#[derive(Default)]
struct Steps {
    started: usize,
    passed: usize,
}

impl Steps {
    async fn run<T>(
        &mut self,
        name: &str,
        step: impl std::future::Future<Output = anyhow::Result<(T, String)>>,
    ) -> anyhow::Result<T> {
        self.started += 1;
        let number = self.started;
        let started = Instant::now();
        match step.await {
            Ok((value, detail)) => {
                self.passed += 1;
                println!(
                    "[ok]   {number:>2}. {name} ({} ms)",
                    started.elapsed().as_millis()
                );
                for line in detail.lines() {
                    println!("         {line}");
                }
                Ok(value)
            }
            Err(err) => {
                println!("[FAIL] {number:>2}. {name}: {err:#}");
                Err(err.context(format!("step {number} \"{name}\" failed")))
            }
        }
    }
}

/// The working directory: the caller's `--workdir`, or a temp dir removed on drop.
struct Workdir {
    path: PathBuf,
    remove: bool,
}

impl Workdir {
    fn new(requested: Option<PathBuf>) -> anyhow::Result<Workdir> {
        let (path, remove) = match requested {
            Some(p) => (p, false),
            None => (
                std::env::temp_dir().join(format!("mdsync-quickstart-{}", Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let state = path.join("mdsync.db");
        ensure!(
            !state.exists(),
            "{} already holds a state DB from an earlier run (the emulators start empty): use an empty --workdir",
            path.display()
        );
        Ok(Workdir { path, remove })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let workdir = Workdir::new(args.workdir.clone())?;
    let mut steps = Steps::default();
    println!(
        "mdsync quickstart: Dynamics 365 and Marketo emulators in-process, embedded defaults, work dir {}\n",
        workdir.path.display()
    );
    let emulators = steps
        .run(
            "start the Dataverse and Marketo emulators (ephemeral ports, service limits on)",
            async {
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
                let d = emulators.description_json()?;
                let detail = format!(
                    "Dataverse {} , Marketo {} (temporary emulator state)",
                    d["dataverse"]["url"].as_str().unwrap_or("?"),
                    d["marketo"]["url"].as_str().unwrap_or("?")
                );
                Ok((emulators, detail))
            },
        )
        .await?;
    let outcome = story(&mut steps, &emulators, &args, &workdir).await;
    let stopped = steps
        .run("stop both emulators", async {
            emulators.shutdown().await?;
            Ok(((), "clean shutdown".to_owned()))
        })
        .await;
    outcome?;
    stopped?;
    println!(
        "\nall {} steps passed in {:.1} s",
        steps.passed,
        started.elapsed().as_secs_f64()
    );
    if args.workdir.is_some() {
        println!(
            "config and state kept in {} (the emulators are gone)",
            workdir.path.display()
        );
    }
    Ok(())
}

/// What the story needs to act on and read both sides.
struct World {
    /// Whether the work dir goes away at exit (no `--workdir`).
    temporary: bool,
    http: reqwest::Client,
    dv_url: String,
    api_url: String,
    mk_url: String,
    human_token: String,
    /// The seeded salesperson (a licensed human user) the human edits are made as.
    salesperson: String,
    admin: CrmClient,
    marketo: MarketoClient,
    config_path: PathBuf,
    state_path: PathBuf,
}

/// What the initial load left, for the later steps.
#[derive(Default)]
struct Loaded {
    /// A few synced ids of each kind (the later steps edit them).
    synced_leads: Vec<Uuid>,
    synced_contacts: Vec<Uuid>,
    lead_count: u64,
    contact_count: u64,
    filtered_leads: Vec<Uuid>,
}

/// The cycles run so far (the summary adds them up).
#[derive(Default)]
struct Totals {
    cycles: u64,
    marketo_calls: u64,
    marketo_writes: u64,
    crm_writes: u64,
}

impl Totals {
    fn add(&mut self, r: &CycleReport) {
        self.cycles += 1;
        self.marketo_calls += r.marketo_calls;
        self.marketo_writes += r.marketo_writes;
        self.crm_writes += r.crm_writes;
    }
}

async fn story(
    steps: &mut Steps,
    emulators: &Emulators,
    args: &QuickstartArgs,
    dir: &Workdir,
) -> anyhow::Result<()> {
    let workdir = dir.path.as_path();
    let description = emulators.description_json()?;
    let config_path = workdir.join("mdsync.toml");
    let state_path = workdir.join("mdsync.db");

    let config = steps
        .run(
            "write mdsync.toml for the emulator pair (config init)",
            async {
                let values = mdsync_setup::emulator_init::from_description_json(
                    &description.to_string(),
                    &state_path.display().to_string(),
                )?;
                let commented = format!("# filter_field = \"{FILTER_FIELD}\"");
                let text = mdsync_config::render(&values).replacen(
                    &commented,
                    &format!("filter_field = \"{FILTER_FIELD}\""),
                    1,
                );
                let config = mdsync_config::parse(&config_path, &text)
                    .context("the generated config does not load")?;
                ensure!(
                    config.sync.filter_field.as_deref() == Some(FILTER_FIELD),
                    "the config has no [sync] filter_field"
                );
                std::fs::write(&config_path, text)
                    .with_context(|| format!("writing {}", config_path.display()))?;
                let detail = format!(
                    "{} (sync filter {FILTER_FIELD}, entities {}); state DB {}",
                    config_path.display(),
                    config.sync.entities.join(", "),
                    state_path.display()
                );
                Ok((config, detail))
            },
        )
        .await?;

    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let dv_url = description["dataverse"]["url"]
        .as_str()
        .context("Dataverse URL")?
        .to_owned();
    let api_url = description["dataverse"]["api_url"]
        .as_str()
        .context("Dataverse API URL")?
        .to_owned();
    let mk_url = description["marketo"]["url"]
        .as_str()
        .context("Marketo URL")?
        .to_owned();
    let admin = CrmClient::new(
        config
            .dynamics
            .admin_client_config()
            .context("the generated config has no [dynamics.admin]")?,
    )?;
    let marketo = MarketoClient::new(config.marketo_client_config())?;
    let org = get_json(&http, &format!("{dv_url}/_emulator/org")).await?;

    steps
        .run("setup sync-user (mdsync-setup)", async {
            let mut events = Vec::new();
            let options = SyncUserOptions {
                publish_marker: Some(workdir.join("mdsync.db.publish-pending")),
                ..SyncUserOptions::default()
            };
            let identity = SyncUserIdentity::Application {
                client_id: config.dynamics.client_id.clone(),
            };
            let outcome = mdsync_setup::sync_user(&admin, &identity, &options, &mut |e: &Event| {
                events.push(event_line(e))
            })
            .await?;
            setup_result(&outcome, events)
        })
        .await?;
    let sync_user = mdsync_setup::org::app_user(&admin, &config.dynamics.client_id)
        .await?
        .context("the sync user is missing after setup")?
        .id;

    let entities: Vec<String> = ["lead", "contact", "account", "opportunity"]
        .map(String::from)
        .to_vec();
    steps
        .run(
            "setup sync-filter --entities lead,contact,account,opportunity",
            async {
                let mut events = Vec::new();
                let outcome = mdsync_setup::sync_filter::sync_filter(
                    &admin,
                    &entities,
                    FILTER_FIELD,
                    false,
                    &mut |e: &Event| events.push(event_line(e)),
                )
                .await;
                setup_result(&outcome, events)
            },
        )
        .await?;

    steps
        .run("setup marketo (mdsync's custom lead fields)", async {
            let mut events = Vec::new();
            let outcome =
                mdsync_setup::marketo_fields::marketo_fields(&marketo, false, &mut |e: &Event| {
                    events.push(event_line(e))
                })
                .await;
            setup_result(&outcome, events)
        })
        .await?;

    let human_token = human_token(&http, &dv_url, &org).await?;
    let world = World {
        temporary: dir.remove,
        http,
        dv_url,
        api_url,
        mk_url,
        human_token,
        salesperson: org["salesperson_user_id"]
            .as_str()
            .context("the emulator's org has no salesperson")?
            .to_owned(),
        admin,
        marketo,
        config_path,
        state_path,
    };

    steps
        .run(
            "seed Dynamics (test surface), checked by counting through the Web API",
            async {
                let body = json!({"seed": 12, "accounts": args.accounts, "contacts": args.contacts,
                              "leads": args.leads, "opportunities": args.opportunities});
                let answer = post_json(
                    &world.http,
                    &format!("{}/_emulator/seed", world.dv_url),
                    &body,
                )
                .await?;
                let mut found = Vec::new();
                for (entity, expected) in [
                    (CrmEntity::Lead, args.leads),
                    (CrmEntity::Contact, args.contacts),
                    (CrmEntity::Account, args.accounts),
                    (CrmEntity::Opportunity, args.opportunities),
                ] {
                    let n = world.crm_count(entity, None).await?;
                    ensure!(
                        n == expected,
                        "{}: {n} rows, seeded {expected} ({answer})",
                        entity.entity_set()
                    );
                    found.push(format!("{n} {}", entity.entity_set()));
                }
                Ok(((), found.join(", ")))
            },
        )
        .await?;

    let filtered = steps
        .run(
            &format!("a salesperson creates {} leads and {} contacts with {FILTER_FIELD} = No", args.filtered, args.filtered),
            async {
                let mut leads = Vec::new();
                let mut contacts = Vec::new();
                for i in 0..args.filtered {
                    leads.push(world.human_create("leads", json!({
                        "firstname": "Private", "lastname": format!("Lead{i}"),
                        "emailaddress1": format!("private.lead{i}@quickstart.example"), FILTER_FIELD: false
                    })).await?);
                    contacts.push(world.human_create("contacts", json!({
                        "firstname": "Private", "lastname": format!("Contact{i}"),
                        "emailaddress1": format!("private.contact{i}@quickstart.example"), FILTER_FIELD: false
                    })).await?);
                }
                let filter = format!("{FILTER_FIELD} eq false");
                let (l, c) = (
                    world.crm_count(CrmEntity::Lead, Some(&filter)).await?,
                    world.crm_count(CrmEntity::Contact, Some(&filter)).await?,
                );
                ensure!(
                    l >= args.filtered && c >= args.filtered,
                    "Dynamics holds {l} leads and {c} contacts with {filter}, expected at least {}",
                    args.filtered
                );
                let detail = format!("Dynamics now holds {l} leads and {c} contacts with {filter} (created as the salesperson)");
                let _ = contacts;
                Ok((leads, detail))
            },
        )
        .await?;

    let marketo_only = steps
        .run(
            &format!("seed {} persons only in Marketo (plus 2 a marketer creates)", args.marketo_only),
            async {
                let answer = post_json(
                    &world.http,
                    &format!("{}/_emulator/seed", world.mk_url),
                    &json!({"seed": 34, "leads": args.marketo_only}),
                )
                .await?;
                let mut emails = Vec::new();
                for i in 1..=2 {
                    let email = format!("only-in-marketo-{i}@quickstart.example");
                    world
                        .marketer_edit(json!({"create": {"email": email, "firstName": "Only", "lastName": format!("Marketo{i}")}}))
                        .await?;
                    emails.push(email);
                }
                let found = world.persons_by("email", &emails).await?;
                ensure!(found.len() == 2, "the marketer's persons are not in Marketo: {found:?}");
                Ok((emails, format!("seed answered {answer}; marketer persons {}", found.iter().map(|p| p["id"].to_string()).collect::<Vec<_>>().join(", "))))
            },
        )
        .await?;

    steps
        .run("validate (every check green)", async {
            let report = mdsync_setup::validate::validate(&config).await;
            let table = crate::cli_validate::table(&report);
            if !report.ok {
                bail!("failed checks {:?}:\n{table}", report.failed());
            }
            Ok(((), table))
        })
        .await?;

    let engine = crate::cli_sync::engine(&world.config_path).await?;
    let mut totals = Totals::default();

    let load = steps
        .run("initial sync (mdsync-engine; progress bar on a terminal)", async {
            let bars = Arc::new(Bars::new());
            let report = engine
                .run_cycle(CycleOptions {
                    progress: Some(bars.clone()),
                    ..CycleOptions::default()
                })
                .await
                .context("the initial cycle could not run")?;
            bars.clear();
            totals.add(&report);
            ensure!(report.mode == "initial", "the first cycle ran in mode {:?}", report.mode);
            ensure!(
                report.entities.iter().all(|e| e.load_completed),
                "the initial load did not complete in one cycle: {:?}",
                report.entities
            );
            ensure!(report.dead_letters == 0, "{} dead letters in the load:\n{}", report.dead_letters, report.table());
            let rows: u64 = report.entities.iter().map(|e| e.rows_read).sum();
            let detail = format!(
                "{rows} Dynamics rows read, {} Marketo records written in {} Marketo calls, {:.1} s\n{}",
                report.marketo_writes,
                report.marketo_calls,
                report.duration_ms as f64 / 1000.0,
                report.table().trim_end()
            );
            Ok((report, detail))
        })
        .await?;
    let _ = load;

    let loaded = steps
        .run("check the load on the Marketo side (every synced person once, none filtered)", async {
            let mut loaded = Loaded {
                filtered_leads: filtered.clone(),
                ..Loaded::default()
            };
            let (leads, skipped_leads) = world.check_persons(CrmEntity::Lead, "Lead", &mut loaded.synced_leads).await?;
            let (contacts, skipped_contacts) = world.check_persons(CrmEntity::Contact, "Contact", &mut loaded.synced_contacts).await?;
            loaded.lead_count = leads;
            loaded.contact_count = contacts;
            let companies = world.check_objects(CrmEntity::Account, ObjectKind::Companies, "externalCompanyId").await?;
            let opportunities = world.check_objects(CrmEntity::Opportunity, ObjectKind::Opportunities, "externalOpportunityId").await?;
            let detail = format!(
                "{leads} leads and {contacts} contacts each have exactly one Marketo person (msftId, msftType);\n\
                 {skipped_leads} leads and {skipped_contacts} contacts with {FILTER_FIELD} = No have none;\n\
                 {companies} accounts are Marketo companies, {opportunities} opportunities are Marketo opportunities"
            );
            Ok((loaded, detail))
        })
        .await?;

    steps
        .run("Marketo-only persons stayed out of Dynamics", async {
            let persons = world.persons_by("email", &marketo_only).await?;
            ensure!(persons.len() == marketo_only.len(), "expected {} persons, found {persons:?}", marketo_only.len());
            for p in &persons {
                ensure!(
                    p.get("msftId").is_none_or(|v| v.is_null() || v == ""),
                    "a Marketo-only person got linked: {p:?}"
                );
            }
            for email in &marketo_only {
                for entity in [CrmEntity::Lead, CrmEntity::Contact] {
                    let n = world
                        .crm_count(entity, Some(&format!("emailaddress1 eq '{email}'")))
                        .await?;
                    ensure!(n == 0, "{email} was created in Dynamics as a {entity}");
                }
            }
            let (leads, contacts) = (
                world.crm_count(CrmEntity::Lead, None).await?,
                world.crm_count(CrmEntity::Contact, None).await?,
            );
            ensure!(
                leads == args.leads + args.filtered && contacts == args.contacts + args.filtered,
                "Dynamics now holds {leads} leads and {contacts} contacts: the sync created some"
            );
            Ok(((), format!(
                "{} have no msftId and no lead or contact in Dynamics;\n\
                 Dynamics still holds exactly the {leads} leads and {contacts} contacts it had (none of the {} Marketo-only persons was created)",
                marketo_only.join(", "),
                args.marketo_only + 2
            )))
        })
        .await?;

    steps
        .run("the first incremental cycles after the load write nothing (Marketo backlog drained)", async {
            let mut cycles = 0u64;
            let mut read = 0u64;
            let mut echoes = 0u64;
            loop {
                let r = engine.run_cycle(CycleOptions::default()).await?;
                totals.add(&r);
                cycles += 1;
                read += r.marketo_changes_read;
                echoes += count(&r, |e, _| e.echoes);
                ensure!(
                    r.marketo_writes + r.crm_writes == 0,
                    "cycle {cycles} after the load wrote {} Marketo and {} Dynamics records:\n{}",
                    r.marketo_writes,
                    r.crm_writes,
                    r.table()
                );
                if !r.marketo_backlog {
                    break;
                }
                ensure!(cycles < 60, "the Marketo change backlog did not drain in 60 cycles");
            }
            Ok(((), format!("{cycles} cycle(s): {read} Marketo change(s) read, {echoes} echo(es) dropped, 0 writes on either side")))
        })
        .await?;

    let lead_a = *loaded.synced_leads.first().context("no synced lead")?;
    let lead_b = *loaded.synced_leads.get(1).context("a second synced lead")?;
    let contact_c = *loaded
        .synced_contacts
        .first()
        .context("no synced contact")?;

    let lead_a_after = steps
        .run("a salesperson edits a lead in Dynamics -> Marketo", async {
            let before = world.person(lead_a).await?;
            world.human_patch("leads", lead_a, json!({"firstname": "Zed"})).await?;
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            let after = world.person(lead_a).await?;
            ensure!(after["firstName"] == "Zed", "Marketo person {} has firstName {}", after["id"], after["firstName"]);
            let row = world.crm_row(CrmEntity::Lead, lead_a, LEAD_A_COLUMNS).await?;
            let detail = format!(
                "leads({lead_a}).firstname {} -> \"Zed\" by the salesperson; Marketo person {} firstName is now {} ({} Marketo write(s))",
                before["firstName"], after["id"], after["firstName"], r.marketo_writes
            );
            Ok((row, detail))
        })
        .await?;

    let contact_after = steps
        .run("a marketer edits a person in Marketo -> Dynamics", async {
            let person = world.person(contact_c).await?;
            let id = person["id"].as_i64().context("person id")?;
            let before = world.crm_row(CrmEntity::Contact, contact_c, &["jobtitle"]).await?;
            world.marketer_edit(json!({"leadId": id, "fields": {"title": "CFO"}})).await?;
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            let row = world
                .crm_row(CrmEntity::Contact, contact_c, &["jobtitle", "modifiedon", "_modifiedby_value"])
                .await?;
            ensure!(row["jobtitle"] == "CFO", "contacts({contact_c}).jobtitle is {}", row["jobtitle"]);
            let detail = format!(
                "Marketo person {id} title {} -> \"CFO\" by a marketer; contacts({contact_c}).jobtitle was {}, is now {} ({} Dynamics write(s))",
                person.get("title").unwrap_or(&Value::Null),
                before.get("jobtitle").unwrap_or(&Value::Null), row["jobtitle"], r.crm_writes
            );
            let person = world.person(contact_c).await?;
            // mdsync's own Marketo write for the lead edited before came back in this cycle's changes.
            let marketo_echoes = count(&r, |c, flow| {
                if flow == Flow::ToDynamics {
                    c.echoes
                } else {
                    0
                }
            });
            let echo_read = (r.marketo_changes_read, marketo_echoes);
            Ok(((row, person, echo_read), detail))
        })
        .await?;

    steps
        .run("echo suppressed: mdsync's own writes do not come back", async {
            let (contact_row, contact_person, (marketo_read, marketo_echoes)) = &contact_after;
            ensure!(
                contact_row["_modifiedby_value"].as_str().and_then(|s| Uuid::parse_str(s).ok()) == Some(sync_user),
                "contacts({contact_c}) was not last modified by the sync user {sync_user}: {contact_row:?}"
            );
            let lead_syncs_before = world.marketo_counter("POST /rest/v1/leads.json").await?;
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            let lead_syncs_after = world.marketo_counter("POST /rest/v1/leads.json").await?;
            ensure!(
                lead_syncs_after == lead_syncs_before,
                "Marketo received {} lead sync call(s) during the echo cycle",
                lead_syncs_after - lead_syncs_before
            );
            let echoes = count(&r, |c, flow| if flow == Flow::ToMarketo { c.echoes } else { 0 });
            ensure!(
                r.marketo_writes + r.crm_writes == 0,
                "the echo cycle wrote {} Marketo and {} Dynamics records:\n{}",
                r.marketo_writes, r.crm_writes, r.table()
            );
            ensure!(echoes >= 1, "the sync user's contact change was not seen as an echo:\n{}", r.table());
            let person = world.person(contact_c).await?;
            ensure!(
                person.get("updatedAt") == contact_person.get("updatedAt") && person["title"] == "CFO",
                "the Marketo person was written again: {contact_person:?} -> {person:?}"
            );
            ensure!(
                *marketo_echoes >= 1,
                "mdsync's Marketo write for leads({lead_a}) was not read back as an echo ({marketo_read} Marketo changes read)"
            );
            let lead_row = world.crm_row(CrmEntity::Lead, lead_a, LEAD_A_COLUMNS).await?;
            ensure!(
                lead_row["versionnumber"] == lead_a_after["versionnumber"]
                    && lead_row["_modifiedby_value"] == world.salesperson.as_str()
                    && lead_row["firstname"] == "Zed",
                "leads({lead_a}) was written back from Marketo: {lead_a_after:?} -> {lead_row:?}"
            );
            let detail = format!(
                "contacts({contact_c}) was last modified by the sync user {sync_user} (mdsync's write of jobtitle \"CFO\");\n\
                 its change came back from Dynamics and was dropped as an echo ({echoes} echo(es), 0 writes):\n\
                 Marketo received no lead sync call in that cycle and person {} still has updatedAt {};\n\
                 mdsync's Marketo write for leads({lead_a}) came back too (step before: {marketo_read} Marketo change(s) read, {marketo_echoes} echo(es) dropped):\n\
                 leads({lead_a}) still has versionnumber {}, last modified by the salesperson (not written back to Dynamics)",
                person["id"], person.get("updatedAt").unwrap_or(&Value::Null), lead_row["versionnumber"]
            );
            Ok(((), detail))
        })
        .await?;

    steps
        .run("conflicts: both sides edit the same field; each field's policy decides", async {
            let contact_d = *loaded.synced_contacts.get(1).context("a second synced contact")?;
            let cases = [
                Conflict { entity: CrmEntity::Lead, crm_id: lead_b, crm_field: "firstname", marketo_field: "firstName", crm_value: "Dynamics-Dana", marketo_value: "Marketo-Mara" },
                Conflict { entity: CrmEntity::Contact, crm_id: contact_d, crm_field: "jobtitle", marketo_field: "title", crm_value: "VP Sales (Dynamics)", marketo_value: "Growth Lead (Marketo)" },
            ];
            for case in &cases {
                let id = world.person(case.crm_id).await?["id"].as_i64().context("person id")?;
                world
                    .human_patch(case.entity.entity_set(), case.crm_id, json!({case.crm_field: case.crm_value}))
                    .await?;
                world
                    .marketer_edit(json!({"leadId": id, "fields": {case.marketo_field: case.marketo_value}}))
                    .await?;
            }
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            ensure!(r.conflicts >= 2, "{} conflict(s) reported, expected 2:\n{}", r.conflicts, r.table());
            let mut lines = Vec::new();
            for case in &cases {
                lines.push(world.check_conflict(case).await?);
            }
            Ok(((), lines.join("\n")))
        })
        .await?;

    steps
        .run(&format!("filtered record skipped ({FILTER_FIELD} = No)"), async {
            let lead = *loaded.filtered_leads.first().context("no filtered lead")?;
            world.human_patch("leads", lead, json!({"firstname": "StillPrivate"})).await?;
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            let skips = count(&r, |c, flow| if flow == Flow::ToMarketo { c.skips } else { 0 });
            ensure!(skips >= 1, "no skip reported:\n{}", r.table());
            let persons = world.persons_by("msftId", &[lead.to_string()]).await?;
            ensure!(persons.is_empty(), "the filtered lead reached Marketo: {persons:?}");
            ensure!(r.marketo_writes == 0, "{} Marketo writes for a filtered edit", r.marketo_writes);
            Ok(((), format!("leads({lead}) edited by the salesperson, skipped by mdsync ({skips} skip(s)); Marketo has no person with msftId {lead}")))
        })
        .await?;

    let good = steps
        .run("a bad record goes to the dead-letter list with a clear reason; the cycle continues", async {
            let bad = world
                .human_create("leads", json!({"firstname": "Bad", "lastname": "Email", "emailaddress1": "not-an-email", FILTER_FIELD: true}))
                .await?;
            let good = world
                .human_create("leads", json!({"firstname": "Good", "lastname": "Email", "emailaddress1": "good.email@quickstart.example", FILTER_FIELD: true}))
                .await?;
            let r = engine.run_cycle(CycleOptions::default()).await?;
            totals.add(&r);
            ensure!(r.dead_letters >= 1, "no dead letter reported:\n{}", r.table());
            let persons = world.persons_by("msftId", &[bad.to_string()]).await?;
            ensure!(persons.is_empty(), "the bad lead reached Marketo: {persons:?}");
            let synced = world.person(good).await?;
            ensure!(synced["firstName"] == "Good", "the good lead did not sync: {synced:?}");
            let letters = world.store()?.dead_letters(&DeadLetterQuery { entity: Some(CrmEntity::Lead), ..DeadLetterQuery::default() })?;
            let dl = letters
                .iter()
                .find(|d| d.crm_id == Some(bad))
                .context("the bad lead is not in the dead-letter list")?;
            ensure!(!dl.code.is_empty() && !dl.message.is_empty(), "dead letter without a reason: {dl:?}");
            let detail = format!(
                "leads({bad}) with emailaddress1 \"not-an-email\": dead letter #{} {} {} {}, code {}: {}\n\
                 the good lead created with it synced (Marketo person {}); see `mdsync errors list`",
                dl.id, dl.entity, dl.operation, dl.direction, dl.code, dl.message, synced["id"]
            );
            Ok((good, detail))
        })
        .await?;

    steps
        .run("final summary (state DB and both sides)", async {
            let store = world.store()?;
            let status = mdsync_engine::Status::read(&store, &[CrmEntity::Lead, CrmEntity::Contact, CrmEntity::Account, CrmEntity::Opportunity])?;
            let lead_links = store.link_count(Some(CrmEntity::Lead))?;
            let contact_links = store.link_count(Some(CrmEntity::Contact))?;
            let expected_leads = loaded.lead_count + 1;
            ensure!(
                lead_links == expected_leads,
                "{lead_links} leads linked, expected {expected_leads} (load + the good lead)"
            );
            ensure!(
                contact_links == loaded.contact_count,
                "{contact_links} contacts linked, expected {}",
                loaded.contact_count
            );
            ensure!(status.dead_letters == 1, "{} open dead letters, expected 1", status.dead_letters);
            ensure!(status.conflicts_logged == 2, "{} conflicts logged, expected 2", status.conflicts_logged);
            let marketo_good = world.persons_by("msftId", &[good.to_string()]).await?;
            ensure!(marketo_good.len() == 1, "the good lead has {} Marketo persons", marketo_good.len());
            let mut detail = String::new();
            for e in &status.entities {
                detail.push_str(&format!("{:<12} {:<12} {} linked\n", e.entity.entity_set(), e.phase, e.linked));
            }
            detail.push_str(&format!(
                "{} cycles, {} Marketo calls, {} Marketo writes, {} Dynamics writes; {} dead letter(s), {} conflict(s) logged\n\
                 config {} , state DB {}{}",
                totals.cycles, totals.marketo_calls, totals.marketo_writes, totals.crm_writes,
                status.dead_letters, status.conflicts_logged,
                world.config_path.display(), world.state_path.display(),
                if world.temporary { " (removed at exit; --workdir DIR keeps them)" } else { "" }
            ));
            Ok(((), detail))
        })
        .await?;
    drop(engine);
    Ok(())
}

impl World {
    fn store(&self) -> anyhow::Result<SqliteStateStore> {
        SqliteStateStore::open(&self.state_path)
            .with_context(|| format!("opening {}", self.state_path.display()))
    }

    /// Rows of `entity` (optionally filtered), counted page by page through the Web API.
    async fn crm_count(&self, entity: CrmEntity, filter: Option<&str>) -> anyhow::Result<u64> {
        let mut options = QueryOptions::new()
            .select([entity.primary_key()])
            .page_size(5000);
        if let Some(f) = filter {
            options = options.filter(f.to_owned());
        }
        let mut pages = std::pin::pin!(self.admin.query(entity.entity_set(), &options));
        let mut n = 0u64;
        while let Some(page) = pages.try_next().await? {
            n += page.rows.len() as u64;
        }
        Ok(n)
    }

    async fn crm_row(
        &self,
        entity: CrmEntity,
        id: Uuid,
        select: &[&str],
    ) -> anyhow::Result<Map<String, Value>> {
        Ok(self.admin.retrieve(entity.entity_set(), id, select).await?)
    }

    /// Marketo persons by a filter field (300 values per call).
    async fn persons_by(
        &self,
        field: &str,
        values: &[String],
    ) -> anyhow::Result<Vec<Map<String, Value>>> {
        let mut out = Vec::new();
        let mut fields = PERSON_FIELDS.to_vec();
        fields.push("updatedAt");
        for chunk in values.chunks(300) {
            let mut pager = self
                .marketo
                .leads_by_filter(field, chunk, &fields, Some(300))?;
            while let Some(page) = pager.next_page().await? {
                out.extend(page);
            }
        }
        Ok(out)
    }

    /// The one Marketo person linked to a CRM id.
    async fn person(&self, crm_id: Uuid) -> anyhow::Result<Map<String, Value>> {
        let mut found = self.persons_by("msftId", &[crm_id.to_string()]).await?;
        ensure!(
            found.len() == 1,
            "{} Marketo persons with msftId {crm_id}",
            found.len()
        );
        Ok(found.remove(0))
    }

    /// Every CRM person of `entity`, page by page: one Marketo person each unless the filter says No.
    /// Returns (synced, filtered) counts and collects the synced ids.
    async fn check_persons(
        &self,
        entity: CrmEntity,
        msft_type: &str,
        synced: &mut Vec<Uuid>,
    ) -> anyhow::Result<(u64, u64)> {
        let key = entity.primary_key();
        let options = QueryOptions::new()
            .select([key, FILTER_FIELD])
            .page_size(5000);
        let mut pages = std::pin::pin!(self.admin.query(entity.entity_set(), &options));
        let (mut linked, mut skipped) = (0u64, 0u64);
        while let Some(page) = pages.try_next().await? {
            let mut expected = std::collections::HashMap::new();
            for row in &page.rows {
                let id = row
                    .get(key)
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .with_context(|| format!("{} row without {key}", entity.entity_set()))?;
                expected.insert(id.to_string(), row.get(FILTER_FIELD) != Some(&json!(false)));
            }
            let ids: Vec<String> = expected.keys().cloned().collect();
            let mut seen: std::collections::HashMap<String, u64> = Default::default();
            for p in self.persons_by("msftId", &ids).await? {
                ensure!(
                    p["msftType"] == msft_type,
                    "person {} has msftType {}",
                    p["id"],
                    p["msftType"]
                );
                let id = p["msftId"].as_str().unwrap_or_default().to_owned();
                *seen.entry(id).or_default() += 1;
            }
            for (id, should_sync) in &expected {
                let n = seen.get(id).copied().unwrap_or(0);
                if *should_sync {
                    ensure!(
                        n == 1,
                        "{}({id}) has {n} Marketo persons, expected 1",
                        entity.entity_set()
                    );
                    linked += 1;
                    if synced.len() < 16 {
                        synced.push(Uuid::parse_str(id)?);
                    }
                } else {
                    ensure!(
                        n == 0,
                        "{}({id}) has {FILTER_FIELD} = No but {n} Marketo person(s)",
                        entity.entity_set()
                    );
                    skipped += 1;
                }
            }
        }
        synced.sort();
        Ok((linked, skipped))
    }

    /// Every CRM row of `entity` has one Marketo object keyed by its id.
    async fn check_objects(
        &self,
        entity: CrmEntity,
        kind: ObjectKind,
        key_field: &str,
    ) -> anyhow::Result<u64> {
        let key = entity.primary_key();
        let options = QueryOptions::new().select([key]).page_size(5000);
        let mut pages = std::pin::pin!(self.admin.query(entity.entity_set(), &options));
        let mut total = 0u64;
        while let Some(page) = pages.try_next().await? {
            let ids: Vec<String> = page
                .rows
                .iter()
                .filter_map(|r| r.get(key).and_then(Value::as_str).map(str::to_owned))
                .collect();
            for chunk in ids.chunks(300) {
                let mut pager =
                    self.marketo
                        .query_objects(kind, key_field, chunk, &[key_field], Some(300))?;
                let mut found = 0usize;
                while let Some(page) = pager.next_page().await? {
                    found += page.len();
                }
                ensure!(
                    found == chunk.len(),
                    "{} of {} {} have a Marketo object ({key_field})",
                    found,
                    chunk.len(),
                    entity.entity_set()
                );
                total += found as u64;
            }
        }
        Ok(total)
    }

    /// A salesperson's update (a human Dynamics user, not the sync user).
    async fn human_patch(&self, entity_set: &str, id: Uuid, body: Value) -> anyhow::Result<()> {
        let url = format!("{}{entity_set}({id})", self.api_url);
        let r = self
            .http
            .patch(&url)
            .bearer_auth(&self.human_token)
            .header("If-Match", "*")
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "PATCH {url}: {status} {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A salesperson's create; returns the new record's id.
    async fn human_create(&self, entity_set: &str, body: Value) -> anyhow::Result<Uuid> {
        let url = format!("{}{entity_set}", self.api_url);
        let r = self
            .http
            .post(&url)
            .bearer_auth(&self.human_token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let location = r
            .headers()
            .get("OData-EntityId")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            bail!(
                "POST {url}: {status} {}",
                r.text().await.unwrap_or_default()
            );
        }
        location
            .as_deref()
            .and_then(mdsync_dataverse_client::id_from_entity_url)
            .with_context(|| format!("POST {url}: no OData-EntityId header"))
    }

    /// Requests the Marketo emulator served on one route (`"METHOD /route"`), from its test surface.
    async fn marketo_counter(&self, key: &str) -> anyhow::Result<u64> {
        let v = get_json(&self.http, &format!("{}/_emulator/counters", self.mk_url)).await?;
        Ok(v["counters"][key].as_u64().unwrap_or(0))
    }

    /// An edit in Marketo's UI as a marketer (the emulator's test surface).
    async fn marketer_edit(&self, body: Value) -> anyhow::Result<Value> {
        post_json(
            &self.http,
            &format!("{}/_emulator/marketer-edits", self.mk_url),
            &body,
        )
        .await
    }
}

/// One field both sides edit in the same cycle.
struct Conflict {
    entity: CrmEntity,
    crm_id: Uuid,
    crm_field: &'static str,
    marketo_field: &'static str,
    crm_value: &'static str,
    marketo_value: &'static str,
}

impl World {
    /// The conflict is recorded with both values, its outcome follows the field's policy, and both
    /// sides now hold the winner's value.
    async fn check_conflict(&self, case: &Conflict) -> anyhow::Result<String> {
        let store = self.store()?;
        let mut recorded = None;
        let mut after = 0;
        loop {
            let page = store.conflicts(after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            if let Some(c) = page.into_iter().find(|c| {
                c.conflict.crm_id == case.crm_id && c.conflict.crm_field == case.crm_field
            }) {
                recorded = Some(c.conflict);
            }
        }
        let set = case.entity.entity_set();
        let id = case.crm_id;
        let c = recorded.with_context(|| {
            format!(
                "the conflict on {set}({id}).{} was not recorded in the state DB",
                case.crm_field
            )
        })?;
        ensure!(
            c.crm_value == case.crm_value && c.marketo_value == case.marketo_value,
            "recorded values {} / {} for {set}({id})",
            c.crm_value,
            c.marketo_value
        );
        let expected = match c.policy {
            ConflictPolicy::MarketoWins => Some(Side::Marketo),
            ConflictPolicy::DynamicsWins => Some(Side::Crm),
            _ => None,
        };
        if let Some(side) = expected {
            ensure!(
                c.outcome == side,
                "{set}({id}): policy {} but outcome {:?}",
                c.policy.as_str(),
                c.outcome
            );
        }
        let (winner, side) = match c.outcome {
            Side::Marketo => (c.marketo_value.clone(), "Marketo"),
            Side::Crm => (c.crm_value.clone(), "Dynamics"),
        };
        let row = self.crm_row(case.entity, id, &[case.crm_field]).await?;
        let person = self.person(id).await?;
        ensure!(
            row.get(case.crm_field) == Some(&winner)
                && person.get(case.marketo_field) == Some(&winner),
            "{set}({id}) not converged on {winner}: Dynamics {:?}, Marketo {:?}",
            row.get(case.crm_field),
            person.get(case.marketo_field)
        );
        Ok(format!(
            "{set}({id}).{}: Dynamics {} vs Marketo person {} {} {}; policy {} -> winner {side}: both sides now read {winner}",
            case.crm_field,
            c.crm_value,
            person["id"],
            case.marketo_field,
            c.marketo_value,
            c.policy.as_str()
        ))
    }
}

/// A token for the seeded salesperson (a licensed human user), from the emulator's test surface.
async fn human_token(http: &reqwest::Client, dv_url: &str, org: &Value) -> anyhow::Result<String> {
    let user = org
        .get("salesperson_user_id")
        .cloned()
        .context("the emulator's org has no salesperson")?;
    let answer = post_json(
        http,
        &format!("{dv_url}/_emulator/tokens"),
        &json!({"systemuserid": user}),
    )
    .await?;
    answer
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no access_token for the salesperson")
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http.get(url).send().await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "GET {url}: {status} {text}");
    serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let r = http.post(url).json(body).send().await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "POST {url}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn event_line(event: &Event) -> String {
    match event {
        Event::Step(step) => step.to_string(),
        Event::Note(note) => format!("note: {note}"),
    }
}

fn setup_result(outcome: &Outcome, events: Vec<String>) -> anyhow::Result<((), String)> {
    let text = events.join("\n");
    ensure!(outcome.ok(), "setup failed:\n{text}");
    Ok(((), text))
}

/// Sums a count over the report's rows (per flow).
fn count(report: &CycleReport, f: impl Fn(&mdsync_sync_core::plan::OpCounts, Flow) -> u64) -> u64 {
    report.counts.iter().map(|r| f(&r.counts, r.flow)).sum()
}

/// Initial-load bars with rate and ETA on stderr; hidden when stderr is not a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<Vec<(CrmEntity, ProgressBar)>>,
}

impl Bars {
    fn new() -> Bars {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(Vec::new()),
        }
    }

    fn bar(&self, entity: CrmEntity) -> Option<ProgressBar> {
        self.bars
            .lock()
            .iter()
            .find(|(e, _)| *e == entity)
            .map(|(_, b)| b.clone())
    }

    fn clear(&self) {
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn start(&self, entity: CrmEntity, total: Option<u64>) {
        let bar = self.multi.add(match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        });
        let style =
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {rate} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", state.per_sec());
                    },
                )
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(entity.entity_set());
        self.bars.lock().push((entity, bar));
    }

    fn advance(&self, entity: CrmEntity, rows: u64) {
        if let Some(bar) = self.bar(entity) {
            bar.inc(rows);
        }
    }

    fn finish(&self, entity: CrmEntity) {
        if let Some(bar) = self.bar(entity) {
            bar.finish();
        }
    }
}
