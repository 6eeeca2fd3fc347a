"""Drives the mdsync Marketo emulator with the unmodified PyPI client `marketorestpython`.

Input: MDSYNC_EMULATOR_JSON = the object printed by `mdsync emulate --print-json` (its "marketo" part is used).
Output: one JSON line per step {"step","ok","detail"|"error"}; exit status 1 if any step failed.
The only change to the client is the documented one: its `host` attribute points at the emulator.
"""
import csv
import io
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

from marketorestpython.client import MarketoClient

raw = os.environ.get("MDSYNC_EMULATOR_JSON")
if not raw:
    print("MDSYNC_EMULATOR_JSON is not set (the --print-json object of `mdsync emulate`)", file=sys.stderr)
    sys.exit(2)
mk = json.loads(raw).get("marketo")
if not mk:
    print('MDSYNC_EMULATOR_JSON has no "marketo" object', file=sys.stderr)
    sys.exit(2)

failures = 0
state = {}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def step(name):
    def run(fn):
        global failures
        try:
            detail = fn()
            print(json.dumps({"step": name, "ok": True, "detail": detail}, default=str), flush=True)
        except Exception as error:  # report every failure, keep going
            failures += 1
            print(json.dumps({"step": name, "ok": False, "error": f"{type(error).__name__}: {error}"}), flush=True)
        return fn
    return run


def iso(at):
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


mc = MarketoClient(mk["munchkin_id"], mk["client_id"], mk["client_secret"], max_retry_time=30, requests_timeout=30)
mc.host = mk["url"]

run_tag = str(int(time.time() * 1000))
emails = [f"lead{i}.{run_tag}@conformance.example" for i in range(10)]
since = iso(datetime.now(timezone.utc) - timedelta(minutes=1))


@step("token")
def _():
    mc.authenticate()
    check(mc.token, "no access token")
    check(mc.token_type == "bearer", f"token_type {mc.token_type!r}")
    check(0 < mc.expires_in <= 3600, f"expires_in {mc.expires_in}")
    check(mc.scope == mk["api_user"], f"scope {mc.scope!r} != {mk['api_user']!r}")
    return {"token_type": mc.token_type, "expires_in": mc.expires_in, "scope": mc.scope}


@step("paging token")
def _():
    token = mc.execute(method="get_paging_token", sinceDatetime=since)
    check(isinstance(token, str) and token, f"paging token {token!r}")
    state["paging_token"] = token
    return {"nextPageToken": token}


@step("create leads")
def _():
    leads = [{"email": e, "firstName": f"First{i}", "lastName": "Conformance"} for i, e in enumerate(emails[:3])]
    result = mc.execute(method="create_update_leads", leads=leads, action="createOnly", lookupField="email")
    statuses = [r["status"] for r in result]
    check(statuses == ["created"] * 3, f"statuses {statuses}")
    state["ids"] = [r["id"] for r in result]
    return {"ids": state["ids"]}


@step("update leads")
def _():
    leads = [{"email": emails[0], "title": "CTO"}, {"email": emails[1], "title": "CFO"}]
    result = mc.execute(method="create_update_leads", leads=leads, action="createOrUpdate", lookupField="email")
    statuses = [r["status"] for r in result]
    check(statuses == ["updated", "updated"], f"statuses {statuses}")
    check([r["id"] for r in result] == state["ids"][:2], "updated ids differ from created ids")
    return {"statuses": statuses}


@step("get leads by filter with paging")
def _():
    more = [{"email": e, "firstName": "More", "lastName": "Conformance"} for e in emails[3:]]
    created = mc.execute(method="create_update_leads", leads=more, action="createOrUpdate", lookupField="email")
    check(all(r["status"] == "created" for r in created), f"statuses {[r['status'] for r in created]}")
    calls_before = mc.API_CALLS_MADE
    leads = mc.execute(method="get_multiple_leads_by_filter_type", filterType="email", filterValues=emails,
                       fields=["email", "firstName", "title"], batchSize=3)
    calls = mc.API_CALLS_MADE - calls_before
    found = sorted(l["email"] for l in leads)
    check(found == sorted(emails), f"found {len(found)} of {len(emails)} leads")
    check(calls >= 4, f"10 leads in batches of 3 took only {calls} calls")
    titles = {l["email"]: l.get("title") for l in leads}
    check(titles[emails[0]] == "CTO", f"title {titles[emails[0]]!r}")
    return {"leads": len(leads), "calls": calls}


@step("get lead by id")
def _():
    result = mc.execute(method="get_lead_by_id", id=state["ids"][0], fields=["email", "title"])
    check(len(result) == 1 and result[0]["email"] == emails[0], f"lead {result}")
    return result[0]


@step("describe")
def _():
    fields = mc.execute(method="describe")
    names = {f["rest"]["name"] for f in fields if f.get("rest")}
    check({"email", "firstName", "lastName", "title", "updatedAt"} <= names, f"describe lacks core fields: {sorted(names)[:20]}")
    fields2 = mc.execute(method="describe2")
    check(fields2 and fields2[0].get("fields"), f"describe2 {str(fields2)[:200]}")
    return {"describe_fields": len(fields), "describe2_fields": len(fields2[0]["fields"])}


@step("lead changes")
def _():
    changes = mc.execute(method="get_lead_changes", fields=["title", "firstName"], nextPageToken=state["paging_token"],
                         batchSize=5)
    ours = [c for c in changes if c["leadId"] in state["ids"]]
    new_leads = [c for c in ours if c["activityTypeId"] == 12]
    title_changes = [c for c in ours if c["activityTypeId"] == 13
                     and any(f["name"] == "title" for f in c.get("fields", []))]
    check(len(new_leads) == 3, f"{len(new_leads)} New Lead activities for our 3 leads")
    check(len(title_changes) == 2, f"{len(title_changes)} title changes, expected 2")
    change = title_changes[0]
    check(change["fields"][0]["newValue"] in ("CTO", "CFO"), f"newValue {change['fields']}")
    return {"activities": len(changes), "ours": len(ours)}


@step("deleted leads")
def _():
    victim = state["ids"][2]
    result = mc.execute(method="delete_lead", id=[victim])
    check(result == [{"id": victim, "status": "deleted"}], f"delete result {result}")
    deleted = mc.execute(method="get_deleted_leads", nextPageToken=state["paging_token"], batchSize=300)
    check(any(d["leadId"] == victim and d["activityTypeId"] == 37 for d in deleted), f"{victim} not in deleted leads")
    return {"deleted": victim, "deleted_activities": len(deleted)}


@step("companies")
def _():
    describe = mc.execute(method="describe_company")
    check(describe and describe[0].get("dedupeFields"), f"describe_company {str(describe)[:200]}")
    external = f"conf-company-{run_tag}"
    result = mc.execute(method="create_update_companies", action="createOrUpdate", dedupeBy="dedupeFields",
                        input=[{"externalCompanyId": external, "company": "Conformance Inc", "industry": "Software"}])
    check(result[0]["status"] == "created", f"sync {result}")
    found = mc.execute(method="get_companies", filterType="externalCompanyId", filterValues=[external],
                       fields=["company", "industry", "externalCompanyId"])
    check(len(found) == 1 and found[0]["company"] == "Conformance Inc", f"query {found}")
    again = mc.execute(method="create_update_companies", action="createOrUpdate", dedupeBy="dedupeFields",
                       input=[{"externalCompanyId": external, "industry": "Hardware"}])
    check(again[0]["status"] == "updated", f"second sync {again}")
    return {"id": result[0]["id"], "dedupeFields": describe[0]["dedupeFields"]}


@step("opportunities")
def _():
    describe = mc.execute(method="describe_opportunity")
    check(describe and describe[0].get("dedupeFields"), f"describe_opportunity {str(describe)[:200]}")
    external = f"conf-opp-{run_tag}"
    result = mc.execute(method="create_update_opportunities", action="createOrUpdate", dedupeBy="dedupeFields",
                        input=[{"externalOpportunityId": external, "name": "Conformance deal", "amount": 1000}])
    check(result[0]["status"] == "created", f"sync {result}")
    found = mc.execute(method="get_opportunities", filterType="externalOpportunityId", filterValues=[external],
                       fields=["name", "amount", "externalOpportunityId"])
    check(len(found) == 1 and found[0]["name"] == "Conformance deal", f"query {found}")
    return {"marketoGUID": result[0].get("marketoGUID"), "found": len(found)}


@step("bulk lead export")
def _():
    now = datetime.now(timezone.utc)
    created = mc.execute(method="create_leads_export_job", fields=["id", "email", "firstName", "title"],
                         filters={"createdAt": {"startAt": iso(now - timedelta(days=1)),
                                                "endAt": iso(now + timedelta(hours=1))}})
    job = created[0]
    check(job["status"] == "Created", f"create {job}")
    export_id = job["exportId"]
    queued = mc.execute(method="enqueue_leads_export_job", job_id=export_id)
    check(queued[0]["status"] in ("Queued", "Processing", "Completed"), f"enqueue {queued}")
    deadline = time.time() + 60
    while True:
        status = mc.execute(method="get_leads_export_job_status", job_id=export_id)[0]
        if status["status"] == "Completed":
            break
        check(status["status"] in ("Queued", "Processing"), f"status {status}")
        check(time.time() < deadline, f"export not completed after 60 s: {status}")
        time.sleep(0.5)
    content = mc.execute(method="get_leads_export_job_file", job_id=export_id)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    exported = {r["email"] for r in rows}
    check(set(emails[:2]) <= exported, f"our leads missing from the export ({len(rows)} rows)")
    check(status.get("numberOfRecords") == len(rows), f"numberOfRecords {status.get('numberOfRecords')} != {len(rows)}")
    return {"exportId": export_id, "rows": len(rows), "fileSize": status.get("fileSize")}


sys.exit(0 if failures == 0 else 1)
