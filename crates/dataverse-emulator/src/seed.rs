//! Deterministic generated data (`POST /_emulator/seed`): realistic names, emails and companies;
//! contacts linked to accounts, opportunities to accounts and contacts. Written in one transaction
//! with prepared statements so a million rows take seconds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use crate::admin::SeedRequest;
use crate::records::now_string;
use crate::schema::stable_uuid;
use crate::state::Shared;
use crate::store::{self, table};

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Paul",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Joshua",
    "Donna",
    "Kenneth",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Yuki",
    "Min-jun",
    "Priya",
    "Lukas",
    "Sofia",
    "Mateo",
    "Chloé",
    "Björn",
    "Aisha",
    "Wei",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Kim",
    "Müller",
    "O'Brien",
    "Tanaka",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Novak",
    "Patel",
    "Schmidt",
];
const COMPANY_A: &[&str] = &[
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Adventure Works",
    "Tailspin",
    "Litware",
    "Proseware",
    "Wingtip",
    "Alpine Ski",
    "Blue Yonder",
    "Coho",
    "Fourth Coffee",
    "Graphic Design",
    "Humongous",
    "Lucerne",
    "Margie's",
    "Trey Research",
    "Wide World",
    "Woodgrove",
    "Datum",
];
const COMPANY_B: &[&str] = &[
    "Inc.", "Ltd", "GmbH", "Group", "Holdings", "Labs", "Partners", "Systems", "Traders",
    "Airlines",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Seattle", "WA", "United States"),
    ("Redmond", "WA", "United States"),
    ("New York", "NY", "United States"),
    ("Chicago", "IL", "United States"),
    ("Austin", "TX", "United States"),
    ("San Francisco", "CA", "United States"),
    ("Toronto", "ON", "Canada"),
    ("London", "", "United Kingdom"),
    ("Berlin", "", "Germany"),
    ("Paris", "", "France"),
    ("Tokyo", "", "Japan"),
    ("Seoul", "", "South Korea"),
    ("Sydney", "NSW", "Australia"),
    ("Madrid", "", "Spain"),
];
const TITLES: &[&str] = &[
    "Marketing Manager",
    "VP Sales",
    "CTO",
    "Purchasing Agent",
    "Director of Operations",
    "Analyst",
    "CEO",
    "Product Manager",
    "Engineer",
    "Office Manager",
];

fn pick<'a>(rng: &mut StdRng, list: &'a [&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

fn slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            'ü' => Some('u'),
            'é' => Some('e'),
            'ö' => Some('o'),
            _ => None,
        })
        .collect()
}

fn seeded_id(seed: u64, kind: &str, i: u64) -> String {
    stable_uuid(&format!("seed:{seed}:{kind}:{i}")).to_string()
}

struct Writer<'c> {
    conn: &'c Connection,
    now: String,
    user: String,
    bu: String,
}

impl Writer<'_> {
    fn put(
        &self,
        entity: &str,
        id: &str,
        mut row: Map<String, Value>,
        version: i64,
    ) -> rusqlite::Result<()> {
        let sys = Value::String("systemuser".into());
        let user = Value::String(self.user.clone());
        row.insert("createdon".into(), Value::String(self.now.clone()));
        row.insert("modifiedon".into(), Value::String(self.now.clone()));
        row.insert("versionnumber".into(), Value::from(version));
        row.insert("statecode".into(), Value::from(0));
        row.insert("statuscode".into(), Value::from(1));
        for k in ["_createdby_value", "_modifiedby_value", "_ownerid_value"] {
            row.insert(k.into(), user.clone());
            row.insert(
                format!("{k}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                sys.clone(),
            );
        }
        row.insert(
            "_owningbusinessunit_value".into(),
            Value::String(self.bu.clone()),
        );
        let sql = format!(
            "INSERT OR REPLACE INTO rec_{entity}(id, versionnumber, createdon, modifiedon, data) VALUES (?1, ?2, ?3, ?3, ?4)"
        );
        self.conn.prepare_cached(&sql)?.execute(params![
            id,
            version,
            self.now,
            serde_json::to_string(&row).unwrap_or_default()
        ])?;
        Ok(())
    }
}

fn person(rng: &mut StdRng, i: u64, domain_hint: Option<&str>) -> (String, String, String) {
    let f = pick(rng, FIRST).to_string();
    let l = pick(rng, LAST).to_string();
    let domain = domain_hint
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.example.com", slug(pick(rng, COMPANY_A))));
    let email = format!("{}.{}{}@{}", slug(&f), slug(&l), i, domain);
    (f, l, email)
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "+1 {:03}-{:03}-{:04}",
        rng.random_range(200..999),
        rng.random_range(200..999),
        rng.random_range(0..9999)
    )
}

/// Inserts the requested records; returns the counts written.
pub fn seed(sh: &Shared, conn: &Connection, req: &SeedRequest) -> rusqlite::Result<Value> {
    let mut rng = StdRng::seed_from_u64(req.seed);
    let total = (req.accounts + req.contacts + req.leads + req.opportunities) as i64;
    conn.execute_batch("BEGIN")?;
    let result = (|| -> rusqlite::Result<()> {
        let mut version = store::reserve_versions(conn, total.max(1))?;
        let w = Writer {
            conn,
            now: now_string(),
            user: sh.ids.admin_user_id.clone(),
            bu: sh.ids.root_business_unit_id.clone(),
        };
        let mut account_names = Vec::new();
        for i in 0..req.accounts {
            let id = seeded_id(req.seed, "account", i);
            let name = format!(
                "{} {} {}",
                pick(&mut rng, COMPANY_A),
                pick(&mut rng, COMPANY_B),
                i
            );
            let (city, state, country) = CITIES[rng.random_range(0..CITIES.len())];
            let row = json!({
                "accountid": id, "name": name, "accountnumber": format!("ACC-{:07}", i),
                "emailaddress1": format!("info@{}.example.com", slug(&name)), "telephone1": phone(&mut rng),
                "websiteurl": format!("https://www.{}.example.com", slug(&name)),
                "address1_city": city, "address1_stateorprovince": state, "address1_country": country,
                "revenue": rng.random_range(100_000..500_000_000) as f64, "numberofemployees": rng.random_range(5..50_000),
            });
            if account_names.len() < 10_000 {
                account_names.push(slug(&name));
            }
            if let Value::Object(m) = row {
                w.put("account", &id, m, version)?;
            }
            version += 1;
        }
        for i in 0..req.contacts {
            let id = seeded_id(req.seed, "contact", i);
            let account = (req.accounts > 0).then(|| rng.random_range(0..req.accounts));
            let domain = account
                .and_then(|a| account_names.get(a as usize))
                .map(|s| format!("{s}.example.com"));
            let (f, l, email) = person(&mut rng, i, domain.as_deref());
            let (city, state, country) = CITIES[rng.random_range(0..CITIES.len())];
            let mut m = Map::new();
            m.insert("contactid".into(), json!(id));
            m.insert("firstname".into(), json!(f));
            m.insert("lastname".into(), json!(l));
            m.insert("fullname".into(), json!(format!("{f} {l}")));
            m.insert("emailaddress1".into(), json!(email));
            m.insert("telephone1".into(), json!(phone(&mut rng)));
            m.insert("jobtitle".into(), json!(pick(&mut rng, TITLES)));
            m.insert("address1_city".into(), json!(city));
            m.insert("address1_stateorprovince".into(), json!(state));
            m.insert("address1_country".into(), json!(country));
            m.insert("donotbulkemail".into(), json!(rng.random_bool(0.05)));
            m.insert("donotphone".into(), json!(rng.random_bool(0.05)));
            if let Some(a) = account {
                m.insert(
                    "_parentcustomerid_value".into(),
                    json!(seeded_id(req.seed, "account", a)),
                );
                m.insert(
                    "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    json!("account"),
                );
            }
            w.put("contact", &id, m, version)?;
            version += 1;
        }
        for i in 0..req.leads {
            let id = seeded_id(req.seed, "lead", i);
            let company = format!(
                "{} {}",
                pick(&mut rng, COMPANY_A),
                pick(&mut rng, COMPANY_B)
            );
            let (f, l, email) = person(
                &mut rng,
                i,
                Some(&format!("{}.example.com", slug(&company))),
            );
            let (city, state, country) = CITIES[rng.random_range(0..CITIES.len())];
            let row = json!({
                "leadid": id, "firstname": f, "lastname": l, "fullname": format!("{f} {l}"), "companyname": company,
                "emailaddress1": email, "telephone1": phone(&mut rng), "jobtitle": pick(&mut rng, TITLES),
                "subject": format!("Interested in {}", pick(&mut rng, &["pricing", "a demo", "the webinar", "partnership", "support"])),
                "address1_city": city, "address1_stateorprovince": state, "address1_country": country,
                "leadsourcecode": rng.random_range(1..=10), "donotbulkemail": rng.random_bool(0.05), "donotphone": rng.random_bool(0.05),
            });
            if let Value::Object(m) = row {
                w.put("lead", &id, m, version)?;
            }
            version += 1;
        }
        for i in 0..req.opportunities {
            let id = seeded_id(req.seed, "opportunity", i);
            let mut m = Map::new();
            m.insert("opportunityid".into(), json!(id));
            m.insert(
                "name".into(),
                json!(format!(
                    "{} units of {}",
                    rng.random_range(1..500),
                    pick(
                        &mut rng,
                        &[
                            "Product A",
                            "Service Plan",
                            "Licenses",
                            "Hardware",
                            "Consulting"
                        ]
                    )
                )),
            );
            m.insert(
                "estimatedvalue".into(),
                json!(rng.random_range(1_000..2_000_000) as f64),
            );
            m.insert("closeprobability".into(), json!(rng.random_range(0..=100)));
            if req.accounts > 0 {
                let a = seeded_id(req.seed, "account", rng.random_range(0..req.accounts));
                m.insert("_customerid_value".into(), json!(a));
                m.insert(
                    "_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    json!("account"),
                );
                m.insert("_parentaccountid_value".into(), json!(a));
                m.insert(
                    "_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    json!("account"),
                );
            }
            if req.contacts > 0 {
                let c = seeded_id(req.seed, "contact", rng.random_range(0..req.contacts));
                m.insert("_parentcontactid_value".into(), json!(c));
                m.insert(
                    "_parentcontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    json!("contact"),
                );
            }
            w.put("opportunity", &id, m, version)?;
            version += 1;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    let _ = table;
    Ok(
        json!({"accounts": req.accounts, "contacts": req.contacts, "leads": req.leads, "opportunities": req.opportunities}),
    )
}
