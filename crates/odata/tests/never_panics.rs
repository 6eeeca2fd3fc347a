//! Property test: every public parser returns `Ok` or a well-formed `ODataError` on arbitrary input, and
//! never panics. Inputs are deterministic (xorshift) mixes of grammar fragments, random Unicode and raw bytes.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use mdsync_odata::batch::{BatchResponse, BatchResponseWriter, ContentIds};
use mdsync_odata::{
    EvalContext, Literal, ODataError, Preferences, compare_rows, parse_batch, parse_filter,
    parse_orderby, parse_resource_path, parse_select,
};
use serde_json::{Map, Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A string of `max` pieces drawn from `pieces` or random characters.
    fn text(&mut self, pieces: &[&str], max: usize) -> String {
        let mut s = String::new();
        for _ in 0..self.below(max + 1) {
            match self.below(10) {
                0 => s.push(char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{fffd}')),
                1 => s.push(char::from(self.below(128) as u8)),
                _ => s.push_str(pieces[self.below(pieces.len())]),
            }
        }
        s
    }
}

fn check(e: &ODataError) {
    assert!((400..600).contains(&e.status), "{e:?}");
    assert!(e.code.starts_with("0x"), "{e:?}");
    assert!(!e.message.is_empty(), "{e:?}");
    let body = e.to_json();
    assert!(body["error"]["message"].is_string());
}

const FILTER: &[&str] = &[
    "name",
    "eq",
    "ne",
    "gt",
    " ",
    "and",
    "or",
    "not",
    "(",
    ")",
    "'",
    "''",
    "'a'",
    ",",
    "@p1",
    "@p2",
    "[",
    "]",
    "\"",
    "contains(",
    "startswith(",
    "endswith(",
    "Microsoft.Dynamics.CRM.",
    "In(",
    "Between(",
    "LastXDays(",
    "Today(",
    "PropertyName=",
    "PropertyValue=",
    "PropertyValues=",
    "=",
    "/",
    "any(",
    "all(",
    "t:",
    "1",
    "-1",
    "1.5",
    "2e9",
    "2021-04-28",
    "2021-04-28T15:19:30Z",
    "+02:00",
    "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70",
    "null",
    "true",
    "false",
    "%",
    "_",
    "[^a]",
    "é",
    "add",
    "$",
    "&",
    "\u{0}",
    "\t",
];

#[test]
fn filters_never_panic() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut aliases = BTreeMap::new();
    aliases.insert("@p1".to_owned(), "'name'".to_owned());
    aliases.insert("@p2".to_owned(), "[\"a\",1,".to_owned());
    let ctx = EvalContext {
        now: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        user_id: None,
        business_unit_id: None,
    };
    let row: Map<String, Value> =
        json!({"name": "Contoso", "n": 5, "d": "2021-04-28T15:19:30Z", "b": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..30_000 {
        let text = rng.text(FILTER, 16);
        match parse_filter(&text, &aliases) {
            Ok(expr) => {
                ok += 1;
                let _ = expr.eval(&row, &ctx);
                let _ = expr.columns();
            }
            Err(e) => {
                err += 1;
                check(&e);
            }
        }
        for p in [
            parse_orderby(&text).err(),
            parse_select(&text).err(),
            Literal::parse(&text).err(),
        ]
        .into_iter()
        .flatten()
        {
            check(&p);
        }
    }
    assert!(ok > 0 && err > 0, "ok={ok} err={err}");
}

#[test]
fn orderby_comparator_is_total_on_mixed_values() {
    let values = [
        json!(null),
        json!(1),
        json!(2.5),
        json!("a"),
        json!("B"),
        json!(true),
        json!([1]),
        json!({"x": 1}),
        json!("2021-04-28T15:19:30Z"),
        json!("5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70"),
    ];
    let order = parse_orderby("v desc").unwrap_or_default();
    let mut rows: Vec<Map<String, Value>> = values
        .iter()
        .map(|v| {
            let mut m = Map::new();
            m.insert("v".into(), v.clone());
            m
        })
        .collect();
    // `sort_by` panics on inconsistent orders in recent Rust; it must not.
    rows.sort_by(|a, b| compare_rows(a, b, &order));
    assert_eq!(rows.last().and_then(|r| r.get("v")), Some(&json!(null)));
}

const PATH: &[&str] = &[
    "accounts",
    "(",
    ")",
    "/",
    "$ref",
    "$count",
    "$1",
    "$batch",
    "$metadata",
    "'",
    "''",
    "=",
    ",",
    "%27",
    "%2F",
    "%",
    "%FF",
    "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70",
    "{",
    "}",
    "name",
    "@p1",
    "['a']",
    "Microsoft.Dynamics.CRM.X",
    "/api/data/v9.2/",
    "1",
    "é",
];

#[test]
fn paths_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF_0BAD_F00D);
    let mut ids = ContentIds::new();
    ids.insert("1", "contacts(5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70)");
    for _ in 0..30_000 {
        let text = rng.text(PATH, 10);
        if let Err(e) = parse_resource_path(&text) {
            check(&e);
        }
        if let Err(e) = ids.resolve_url(&text) {
            check(&e);
        }
        let _ = mdsync_odata::key::split_request_target(&text);
        let prefs =
            Preferences::parse([format!("odata.include-annotations=\"{text}*\",{text}").as_str()]);
        let _ = prefs.wants_annotation(&text);
        let _ = prefs.wants_annotation(&rng.text(PATH, 3));
    }
}

const BATCH: &[&str] = &[
    "--b",
    "--b--",
    "--c",
    "--c--",
    "\r\n",
    "\n",
    "\n\n",
    "Content-Type: application/http",
    "Content-Type: multipart/mixed; boundary=c",
    "Content-Type: multipart/mixed; boundary=\"c\"",
    "Content-ID: 1",
    "Content-Transfer-Encoding: binary",
    "GET ",
    "POST ",
    "accounts",
    " HTTP/1.1",
    "$1",
    "{\"a\":\"$1\"}",
    ":",
    " ",
    "\r",
    "x",
];

#[test]
fn batches_never_panic() {
    let mut rng = Rng(0x0F0F_F0F0_1234_4321);
    let mut parsed = 0;
    for i in 0..20_000 {
        let mut body = rng.text(BATCH, 30).into_bytes();
        if i % 5 == 0 {
            // Raw bytes, including invalid UTF-8.
            for _ in 0..rng.below(40) {
                body.push(rng.below(256) as u8);
            }
        }
        let ct = if i % 7 == 0 {
            rng.text(&["multipart/mixed", ";", "boundary=", "b", "\"", " "], 6)
        } else {
            "multipart/mixed; boundary=b".to_owned()
        };
        match parse_batch(&ct, &body) {
            Ok(parts) => {
                parsed += 1;
                let mut w = BatchResponseWriter::new();
                for _ in &parts {
                    w.add_response(&BatchResponse {
                        status: 204,
                        headers: vec![],
                        body: vec![],
                        content_id: None,
                    });
                }
                assert!(w.finish().starts_with(b"--batchresponse_"));
            }
            Err(e) => check(&e),
        }
        let _ = ContentIds::new().resolve_body(&body);
    }
    assert!(parsed > 0);
}
