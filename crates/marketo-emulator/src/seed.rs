//! Deterministic, realistic test data: leads, companies and opportunities from a seed number, written in
//! one transaction with prepared statements (a million leads take seconds, not minutes).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::params;
use serde_json::{Map, Value, json};

use crate::store::{Store, StoreError};

/// What `POST /_emulator/seed` accepts.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub leads: u64,
    #[serde(default)]
    pub companies: u64,
    #[serde(default)]
    pub opportunities: u64,
}

const FIRST: &[&str] = &[
    "Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Amelia", "Ethan",
    "Harper", "Yuki", "Priya", "Chen", "Fatima", "Jonas", "Ingrid", "Diego", "Zoe", "Omar", "Lena",
    "Kai", "Nora",
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Müller", "Rossi", "Tanaka", "Kim", "Nguyen", "Silva", "Novak",
    "Dubois", "Okafor", "Kowalski", "Hansen", "Patel", "Cohen", "Larsen", "Moreau", "Ibrahim",
    "Jensen",
];
const COMPANY_A: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Massive",
];
const COMPANY_B: &[&str] = &[
    "Industries",
    "Labs",
    "Systems",
    "Group",
    "Holdings",
    "Logistics",
    "Analytics",
    "Foods",
];
const TITLES: &[&str] = &[
    "CEO",
    "CFO",
    "VP Marketing",
    "Marketing Manager",
    "Sales Director",
    "Engineer",
    "Analyst",
    "Buyer",
    "Operations Lead",
    "Product Manager",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Chicago", "IL", "United States"),
    ("Austin", "TX", "United States"),
    ("Seattle", "WA", "United States"),
    ("Toronto", "ON", "Canada"),
    ("London", "", "United Kingdom"),
    ("Berlin", "", "Germany"),
    ("Seoul", "", "South Korea"),
    ("Sydney", "NSW", "Australia"),
];
const SOURCES: &[&str] = &[
    "Website",
    "Trade Show",
    "Webinar",
    "Partner",
    "Paid Search",
    "Referral",
];
const STATUSES: &[&str] = &["Open", "Contacted", "Qualified", "Nurture", "Disqualified"];
const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Proposal",
    "Negotiation",
    "Closed Won",
    "Closed Lost",
];

fn pick<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn company_name(rng: &mut StdRng) -> String {
    format!("{} {}", pick(rng, COMPANY_A), pick(rng, COMPANY_B))
}

/// Inserts the requested records and answers what was created.
pub fn seed(store: &Store, request: &SeedRequest) -> Result<Value, StoreError> {
    let mut rng = StdRng::seed_from_u64(request.seed);
    let now = crate::time::now();
    let mut conn = store.lock();
    let tx = conn.transaction()?;
    let catalog = crate::fields::load(&tx)?;
    let tag = request.seed;
    let mut out = Map::new();

    if request.leads > 0 {
        let mut first_id = None;
        let mut last_id = 0;
        for n in 0..request.leads {
            let first = pick(&mut rng, FIRST);
            let last = pick(&mut rng, LAST);
            let (city, state, country) = CITIES[rng.random_range(0..CITIES.len())];
            let mut data = Map::new();
            data.insert("firstName".into(), json!(first));
            data.insert("lastName".into(), json!(last));
            data.insert(
                "email".into(),
                json!(format!(
                    "{}.{}.{tag}-{n}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase().replace('ü', "u")
                )),
            );
            data.insert("company".into(), json!(company_name(&mut rng)));
            data.insert("title".into(), json!(pick(&mut rng, TITLES)));
            data.insert(
                "phone".into(),
                json!(format!(
                    "+1 555 {:03} {:04}",
                    rng.random_range(100..999),
                    rng.random_range(0..9999)
                )),
            );
            data.insert("city".into(), json!(city));
            if !state.is_empty() {
                data.insert("state".into(), json!(state));
            }
            data.insert("country".into(), json!(country));
            data.insert("leadSource".into(), json!(pick(&mut rng, SOURCES)));
            data.insert("leadStatus".into(), json!(pick(&mut rng, STATUSES)));
            data.insert("unsubscribed".into(), json!(rng.random_ratio(1, 20)));
            let created = now - rng.random_range(0..30 * 86_400);
            let id = crate::lead_store::insert(&tx, &catalog, 1, created, &data)?;
            first_id.get_or_insert(id);
            last_id = id;
        }
        out.insert(
            "leads".into(),
            json!({"created": request.leads, "firstId": first_id, "lastId": last_id}),
        );
    }

    let insert_object = |kind: &str,
                         dedupe: String,
                         data: Map<String, Value>|
     -> Result<i64, StoreError> {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO objects(kind, guid, dedupe, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?;
        stmt.execute(params![
            kind,
            uuid::Uuid::new_v4().to_string(),
            dedupe,
            serde_json::to_string(&data)?,
            now
        ])?;
        Ok(tx.last_insert_rowid())
    };
    if request.companies > 0 {
        for n in 0..request.companies {
            let mut data = Map::new();
            let ext = format!("C-{tag}-{n}");
            data.insert("externalCompanyId".into(), json!(ext));
            data.insert("company".into(), json!(company_name(&mut rng)));
            data.insert("industry".into(), json!(pick(&mut rng, COMPANY_B)));
            data.insert(
                "numberOfEmployees".into(),
                json!(rng.random_range(5..50_000)),
            );
            insert_object("company", json!([ext]).to_string(), data)?;
        }
        out.insert("companies".into(), json!({"created": request.companies}));
    }
    if request.opportunities > 0 {
        for n in 0..request.opportunities {
            let mut data = Map::new();
            let ext = format!("O-{tag}-{n}");
            data.insert("externalOpportunityId".into(), json!(ext));
            data.insert(
                "name".into(),
                json!(format!("{} renewal {n}", company_name(&mut rng))),
            );
            data.insert("amount".into(), json!(rng.random_range(1_000..500_000)));
            data.insert("stage".into(), json!(pick(&mut rng, STAGES)));
            if request.companies > 0 {
                data.insert(
                    "externalCompanyId".into(),
                    json!(format!(
                        "C-{tag}-{}",
                        rng.random_range(0..request.companies)
                    )),
                );
            }
            insert_object("opportunity", json!([ext]).to_string(), data)?;
        }
        out.insert(
            "opportunities".into(),
            json!({"created": request.opportunities}),
        );
    }
    tx.commit()?;
    Ok(Value::Object(out))
}
