//! Throughput of `$filter` evaluation and `$orderby` comparison over generated rows
//! (`cargo bench -p mdsync-odata`). Prints rows/second per expression; no assertions on timing.

use std::hint::black_box;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use mdsync_odata::{Aliases, EvalContext, compare_rows, parse_filter, parse_orderby};
use serde_json::{Map, Value, json};

fn rows(n: usize) -> Vec<Map<String, Value>> {
    (0..n)
        .map(|i| {
            let v = json!({
                "contactid": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
                "firstname": format!("First{}", i % 97),
                "lastname": format!("Last{}", i % 89),
                "emailaddress1": format!("user{i}@example{}.com", i % 13),
                "statecode": i % 2,
                "revenue": (i as f64) * 1.5,
                "modifiedon": format!("2024-05-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24),
                "_parentcustomerid_value": if i % 3 == 0 { Value::Null } else { json!(format!("{:08x}-1111-4000-8000-000000000000", i % 50)) },
            });
            v.as_object().cloned().unwrap_or_default()
        })
        .collect()
}

fn main() {
    let data = rows(200_000);
    let ctx = EvalContext::at(Utc.with_ymd_and_hms(2024, 5, 20, 0, 0, 0).unwrap());
    let filters = [
        "statecode eq 0",
        "lastname eq 'last7' and statecode eq 1",
        "contains(emailaddress1,'example3')",
        "startswith(firstname,'First1') or endswith(lastname,'9')",
        "modifiedon ge 2024-05-10T00:00:00Z and _parentcustomerid_value ne null",
        "Microsoft.Dynamics.CRM.LastXDays(PropertyName='modifiedon',PropertyValue=7)",
        "Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=[\"First1\",\"First2\",\"First3\"])",
    ];
    for f in filters {
        let expr = match parse_filter(f, &Aliases::new()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{f}: {e}");
                continue;
            }
        };
        let start = Instant::now();
        let matched = data.iter().filter(|r| expr.eval(r, &ctx)).count();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:>10.0} rows/s  {matched:>7} matched  {f}",
            data.len() as f64 / secs
        );
    }
    let order = parse_orderby("lastname asc,revenue desc").unwrap_or_default();
    let mut sorted: Vec<&Map<String, Value>> = data.iter().take(50_000).collect();
    let start = Instant::now();
    sorted.sort_by(|a, b| compare_rows(a, b, &order));
    println!(
        "sort 50k rows by 'lastname asc,revenue desc': {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    for spec in ["revenue desc", "lastname", "contactid"] {
        let order = parse_orderby(spec).unwrap_or_default();
        let mut sorted: Vec<&Map<String, Value>> = data.iter().take(50_000).collect();
        let start = Instant::now();
        sorted.sort_by(|a, b| compare_rows(a, b, &order));
        println!(
            "sort 50k rows by '{spec}': {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let start = Instant::now();
    let mut parsed = 0;
    for f in filters.iter().cycle().take(100_000) {
        parsed += usize::from(black_box(parse_filter(f, &Aliases::new())).is_ok());
    }
    println!(
        "parse: {:.0} filters/s ({parsed} ok)",
        100_000.0 / start.elapsed().as_secs_f64()
    );
}
