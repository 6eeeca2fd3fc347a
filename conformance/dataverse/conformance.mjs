// Drives the mdsync Dataverse emulator with the unmodified npm client `dynamics-web-api`.
//
// Input: MDSYNC_EMULATOR_JSON = the object printed by `mdsync emulate --print-json` (its "dataverse" part is used).
// Output: one JSON line per step {"step","ok","detail"|"error"}; exit status 1 if any step failed.
import { DynamicsWebApi } from "dynamics-web-api";
import { randomUUID } from "node:crypto";

const raw = process.env.MDSYNC_EMULATOR_JSON;
if (!raw) {
  console.error("MDSYNC_EMULATOR_JSON is not set (the --print-json object of `mdsync emulate`)");
  process.exit(2);
}
const dv = JSON.parse(raw).dataverse;
if (!dv) {
  console.error("MDSYNC_EMULATOR_JSON has no \"dataverse\" object");
  process.exit(2);
}

let failures = 0;
const state = {};
function check(condition, message) {
  if (!condition) throw new Error(message);
}
async function step(name, fn) {
  try {
    const detail = await fn();
    console.log(JSON.stringify({ step: name, ok: true, detail: detail ?? null }));
  } catch (error) {
    failures += 1;
    const message = error && (error.message || JSON.stringify(error));
    console.log(JSON.stringify({ step: name, ok: false, error: message, status: error?.status ?? null }));
  }
}

// Token acquisition: client credentials against the emulator's Entra ID-style endpoint.
let cachedToken = null;
async function acquireToken() {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: dv.admin_client_id,
    client_secret: dv.admin_client_secret,
    scope: `${dv.url}/.default`,
  });
  const response = await fetch(`${dv.url}/${dv.tenant_id}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  const json = await response.json();
  if (!response.ok || !json.access_token) {
    throw new Error(`token endpoint answered ${response.status}: ${JSON.stringify(json)}`);
  }
  return json;
}

const api = new DynamicsWebApi({
  serverUrl: dv.url,
  dataApi: { version: "9.2" },
  onTokenRefresh: async () => {
    if (!cachedToken) cachedToken = (await acquireToken()).access_token;
    return cachedToken;
  },
});

const tag = `Conformance${Date.now()}`;

await step("token", async () => {
  const token = await acquireToken();
  check(token.token_type === "Bearer", `token_type ${token.token_type}`);
  check(Number(token.expires_in) > 0, `expires_in ${token.expires_in}`);
  cachedToken = token.access_token;
  return { token_type: token.token_type, expires_in: token.expires_in };
});

await step("callFunction WhoAmI", async () => {
  const who = await api.callFunction("WhoAmI");
  check(who && who.UserId && who.BusinessUnitId && who.OrganizationId, `WhoAmI: ${JSON.stringify(who)}`);
  state.userId = who.UserId;
  return who;
});

await step("create", async () => {
  const id = await api.create({
    collection: "contacts",
    data: { firstname: "Ada", lastname: tag, emailaddress1: "ada@conformance.example" },
  });
  check(typeof id === "string" && /^[0-9a-f-]{36}$/i.test(id), `create returned ${JSON.stringify(id)}`);
  state.contactId = id;
  return { id };
});

await step("retrieve", async () => {
  const contact = await api.retrieve({
    collection: "contacts",
    key: state.contactId,
    select: ["firstname", "lastname", "emailaddress1"],
  });
  check(contact.lastname === tag, `lastname ${contact.lastname}`);
  check(contact.emailaddress1 === "ada@conformance.example", `email ${contact.emailaddress1}`);
  check(contact.contactid === state.contactId, `contactid ${contact.contactid}`);
  check(typeof contact["@odata.etag"] === "string", "no @odata.etag");
  return { contactid: contact.contactid, etag: contact["@odata.etag"] };
});

await step("create 11 more for paging", async () => {
  for (let i = 0; i < 11; i++) {
    await api.create({ collection: "contacts", data: { firstname: `P${i}`, lastname: tag } });
  }
  return { created: 11 };
});

await step("retrieveMultiple with maxPageSize", async () => {
  const request = { collection: "contacts", select: ["firstname", "lastname"], filter: `lastname eq '${tag}'`, maxPageSize: 5 };
  const first = await api.retrieveMultiple(request);
  check(first.value.length === 5, `first page has ${first.value.length} rows`);
  check(typeof first.oDataNextLink === "string", "no @odata.nextLink on the first page");
  const second = await api.retrieveMultiple(request, first.oDataNextLink);
  check(second.value.length === 5, `second page has ${second.value.length} rows`);
  const ids = new Set([...first.value, ...second.value].map((r) => r.contactid));
  check(ids.size === 10, "pages overlap");
  return { first: first.value.length, second: second.value.length, nextLink: first.oDataNextLink };
});

await step("retrieveAll", async () => {
  const all = await api.retrieveAll({ collection: "contacts", select: ["lastname"], filter: `lastname eq '${tag}'`, maxPageSize: 5 });
  check(all.value.length === 12, `retrieveAll returned ${all.value.length} rows, expected 12`);
  return { rows: all.value.length };
});

await step("update", async () => {
  await api.update({ collection: "contacts", key: state.contactId, data: { jobtitle: "Engineer" } });
  const contact = await api.retrieve({ collection: "contacts", key: state.contactId, select: ["jobtitle"] });
  check(contact.jobtitle === "Engineer", `jobtitle ${contact.jobtitle}`);
  return { jobtitle: contact.jobtitle };
});

await step("upsert with ifnonematch", async () => {
  const key = randomUUID();
  await api.upsert({ collection: "contacts", key, data: { firstname: "Grace", lastname: tag }, ifnonematch: "*" });
  const created = await api.retrieve({ collection: "contacts", key, select: ["firstname"] });
  check(created.firstname === "Grace", `upsert did not create: ${JSON.stringify(created)}`);
  // Second upsert with If-None-Match: * must not update an existing row (412, which the client maps to null).
  const second = await api.upsert({ collection: "contacts", key, data: { firstname: "Changed" }, ifnonematch: "*" });
  check(second === null, `second upsert returned ${JSON.stringify(second)}`);
  const after = await api.retrieve({ collection: "contacts", key, select: ["firstname"] });
  check(after.firstname === "Grace", `existing row was updated: ${after.firstname}`);
  state.upsertedId = key;
  return { created: key, secondUpsert: "412 -> null" };
});

await step("delete", async () => {
  await api.deleteRecord({ collection: "contacts", key: state.upsertedId });
  let status = null;
  try {
    await api.retrieve({ collection: "contacts", key: state.upsertedId });
  } catch (error) {
    status = error.status;
  }
  check(status === 404, `retrieve after delete: status ${status}`);
  return { deleted: state.upsertedId };
});

await step("associate a role", async () => {
  const roles = await api.retrieveMultiple({ collection: "roles", select: ["name"], filter: "name eq 'Salesperson'" });
  check(roles.value.length >= 1, "no Salesperson role");
  const roleId = roles.value[0].roleid;
  await api.associate({
    collection: "systemusers",
    primaryKey: state.userId,
    relationshipName: "systemuserroles_association",
    relatedCollection: "roles",
    relatedKey: roleId,
  });
  const assigned = await api.retrieveMultiple({
    collection: `systemusers(${state.userId})/systemuserroles_association`,
    select: ["name"],
  });
  const names = assigned.value.map((r) => r.name);
  check(names.includes("Salesperson"), `roles after associate: ${names}`);
  await api.disassociate({
    collection: "systemusers",
    primaryKey: state.userId,
    relationshipName: "systemuserroles_association",
    relatedKey: roleId,
  });
  return { roleId, roles: names };
});

await step("executeBatch with a change set", async () => {
  api.startBatch();
  api.create({ collection: "accounts", data: { name: `${tag} Inc` }, contentId: "1" });
  api.create({
    collection: "contacts",
    data: { firstname: "Batch", lastname: tag, "parentcustomerid_account@odata.bind": "$1" },
  });
  const responses = await api.executeBatch();
  check(Array.isArray(responses) && responses.length === 2, `batch responses ${JSON.stringify(responses)}`);
  const [accountId, contactId] = responses;
  const contact = await api.retrieve({ collection: "contacts", key: contactId, select: ["_parentcustomerid_value"] });
  check(contact._parentcustomerid_value === accountId, `parentcustomerid ${contact._parentcustomerid_value} != ${accountId}`);
  return { accountId, contactId };
});

await step("change tracking via the delta link", async () => {
  const request = { collection: "contacts", select: ["firstname", "lastname"], trackChanges: true };
  const initial = await api.retrieveAll(request);
  check(typeof initial.oDataDeltaLink === "string", "no @odata.deltaLink after the initial read");
  const created = await api.create({ collection: "contacts", data: { firstname: "Delta", lastname: tag } });
  await api.update({ collection: "contacts", key: state.contactId, data: { firstname: "Ada Lovelace" } });
  await api.deleteRecord({ collection: "contacts", key: created });
  const delta = await api.retrieveMultiple(request, initial.oDataDeltaLink);
  const changed = delta.value.filter((r) => r.contactid).map((r) => r.contactid);
  const deleted = delta.value.filter((r) => r.reason === "deleted").map((r) => r.id);
  check(changed.includes(state.contactId), `updated contact missing from delta: ${JSON.stringify(delta.value)}`);
  check(deleted.includes(created), `deleted contact missing from delta: ${JSON.stringify(delta.value)}`);
  check(typeof delta.oDataDeltaLink === "string", "no new @odata.deltaLink");
  return { initialRows: initial.value.length, changed: changed.length, deleted: deleted.length };
});

process.exit(failures === 0 ? 0 : 1);
