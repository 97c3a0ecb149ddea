#!/usr/bin/env node
// The frontend check: the official Atlas React SDK's AtlasClient, the class every pricing page
// and customer portal built with @runonatlas/react uses, driven from Node against the running
// quickstart (an Actix backend on atlas-actix), compared with what the official
// @runonatlas/core answers for the same customer on the reference platform.
//
//   node check.mjs [path of the quickstart binary]
//
// The quickstart runs in demo mode on its embedded emulator; the reference platform is
// ../shared/conformance/refplatform.mjs seeded from the same data file.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AtlasClient } from "@runonatlas/react";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const shared = path.resolve(process.env.ATLAS_SHARED ?? path.join(root, "../shared"));
const dataFile = path.join(root, "examples/atlas-data.json");
const quickstart = path.resolve(process.argv[2] ?? path.join(root, "target/release/examples/quickstart"));
const TIMEOUT_MS = 120_000;

const { startPlatform } = await import(pathToFileURL(path.join(shared, "conformance/refplatform.mjs")));
const { depsRequire } = await import(pathToFileURL(path.join(shared, "conformance/lib/deps.mjs")));
const { AtlasClient: CoreClient } = depsRequire()("@runonatlas/core");

const watchdog = setTimeout(() => {
  process.stderr.write(`frontend check: no result within ${TIMEOUT_MS / 1000} s\n`);
  process.exit(1);
}, TIMEOUT_MS);

/** Drops null and absent keys, sorts features and usage, so both sides compare as data. */
function normalise(value) {
  if (Array.isArray(value)) {
    const items = value.map(normalise);
    if (items.every((item) => item && typeof item === "object" && "id" in item && "allowed" in item)) {
      items.sort((a, b) => (a.id < b.id ? -1 : 1));
    }
    return items;
  }
  if (value && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      if (value[key] === null || value[key] === undefined) continue;
      out[key] = normalise(value[key]);
      if (key === "usage" && Array.isArray(out[key])) {
        out[key].sort((a, b) => (a.subscriptionId < b.subscriptionId ? -1 : 1));
      }
    }
    return out;
  }
  return value;
}

let passed = 0;
let failed = 0;
function report(name, ok, detail = "") {
  if (ok) passed += 1;
  else failed += 1;
  process.stdout.write(`${ok ? "PASS" : "FAIL"} ${name}${ok || !detail ? "" : `\n    ${detail}`}\n`);
}

async function compare(name, ours, reference) {
  try {
    const [a, b] = await Promise.all([ours(), reference()]);
    const left = JSON.stringify(normalise(a));
    const right = JSON.stringify(normalise(b));
    report(name, left === right, `atlas-actix: ${left.slice(0, 600)}\n    official:    ${right.slice(0, 600)}`);
  } catch (err) {
    report(name, false, String(err?.stack ?? err));
  }
}

async function check(name, body) {
  try {
    const detail = await body();
    report(name, detail === undefined, detail);
  } catch (err) {
    report(name, false, String(err?.stack ?? err));
  }
}

/** Starts the quickstart on a free port; resolves with its base URL. */
function startQuickstart() {
  if (!fs.existsSync(quickstart)) throw new Error(`no quickstart binary at ${quickstart}: build it first`);
  const env = { ...process.env, PORT: "0", BIND: "127.0.0.1", ATLAS_DATA_FILE: dataFile, RUST_LOG: "warn" };
  for (const name of ["ATLAS_API_KEY", "ATLAS_HOST", "CLERK_JWT_KEY", "CLERK_JWKS_URL"]) delete env[name];
  const child = spawn(quickstart, [], { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = /listening (http:\/\/\S+)/.exec(output);
      if (match) resolve({ child, base: match[1] });
    });
    child.on("exit", (code) => reject(new Error(`the quickstart exited (${code}) before listening`)));
  });
}

const data = JSON.parse(fs.readFileSync(dataFile, "utf8"));
const reference = await startPlatform({ fixturePath: dataFile, port: 0 });
// The quickstart seats every organisation member and every other customer: the same counts.
const seatsOf = (customer) => data.customers.find((c) => c.externalId === customer)?.demoMembers?.length ?? 1;
const core = new CoreClient({
  apiKey: data.apiKey,
  _atlasHost: reference.url,
  limits: { seats: async (customer) => seatsOf(customer) },
  verboseLevel: "silent",
  prettyPrint: false,
});
await core.waitInitialization();

const { child, base } = await startQuickstart();
let exitCode = 1;
try {
  const tokens = await (await fetch(`${base}/demo/tokens`)).json();
  const client = (name) => new AtlasClient({ host: base, getAuth: async () => tokens[name] });
  const alice = client("Alice");
  const org = "org_standard_corp";

  await compare("status", () => alice.getStatus(), async () => ({ apiKey: true, ...(await core.waitInitialization()) }));
  await compare("features (an organisation member gets the organisation's)", () => alice.getFeaturesAllowed(), () => core.getCustomerFeatures(org));
  await compare("pricing model", () => alice.getPricingModel(), () => core.getPublicPricingModel(org));
  await compare("user", () => alice.getUserDetails(), () => core.getCustomerDetails(org));
  await compare("invoices", () => alice.getInvoices({ page: 1, limit: 2 }), () => core.getInvoices(org, { page: 1, pageSize: 2 }));
  await compare("invoice line items", () => alice.getInvoiceLineItems("inv_standard_1"), () => core.getInvoiceLineItems(org, "inv_standard_1"));
  await compare("draft invoice line items", () => alice.getDraftInvoiceLineItems(), async () => {
    const all = await core.getInvoices(org, { all: true });
    const drafts = all.results.filter((invoice) => invoice.status === "draft");
    return (await Promise.all(drafts.map((invoice) => core.getInvoiceLineItems(org, invoice.id)))).flat();
  });
  await compare("subscription", () => alice.getSubscription("sub_standard_team"), () => core.getSubscription("sub_standard_team"));
  await compare("credit usage", () => alice.getCreditUsage("cpu_image_credits"), () => core.getCreditUsage("cpu_image_credits", org));
  const page = { page: 1, pageSize: 1, orderBy: "createdAt", order: "desc" };
  await compare("transactions", () => alice.getTransactions(page), () => core.getTransactions(org, page));

  await check("another customer's subscription is refused", async () => {
    try {
      await alice.getSubscription("sub_dave_free");
      return "Alice read Dave's subscription";
    } catch {
      return undefined;
    }
  });
  await check("feature registration and SDK version", async () => {
    await alice.registerFeatureUsage(["data-explorer", "seats"]);
    await alice.reportSDKVersion("react", "2.8.0");
  });

  await check("denial reasons type-check as the React SDK's FeatureNotAllowedReason", async () => {
    const call = async (url, name, init = {}) => {
      const response = await fetch(`${base}${url}`, {
        ...init,
        headers: { authorization: `Bearer ${tokens[name]}`, "content-type": "application/json" },
      });
      return [response.status, await response.json()];
    };
    const [explorerStatus, explorer] = await call("/api/data-explorer", "Dave Free");
    const emails = Array.from({ length: 8 }, (_, i) => `extra${i}@standard.example`);
    const [bulkStatus, bulk] = await call("/api/seats/bulk", "Alice", { method: "POST", body: JSON.stringify({ emails }) });
    if (explorerStatus !== 403 || explorer.reasons?.[0]?.reason !== "notIncluded") return `data explorer: ${explorerStatus} ${JSON.stringify(explorer)}`;
    if (bulkStatus !== 403 || bulk.reasons?.[0]?.reason !== "limitReached") return `bulk seats: ${bulkStatus} ${JSON.stringify(bulk)}`;
    const file = path.join(here, ".reasons-check.ts");
    fs.writeFileSync(
      file,
      `import type { FeatureNotAllowedReason } from "@runonatlas/react";\n` +
        `export const reasons: FeatureNotAllowedReason[] = ${JSON.stringify([...explorer.reasons, ...bulk.reasons])};\n`,
    );
    try {
      const tsc = path.join(here, "node_modules/typescript/bin/tsc");
      const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", file];
      const result = spawnSync(process.execPath, [tsc, ...args], { cwd: here, encoding: "utf8" });
      return result.status === 0 ? undefined : `tsc refused the reasons: ${result.stdout}${result.stderr}`;
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  const dave = client("Dave Free");
  const explorer = async () => (await dave.getFeaturesAllowed()).find((f) => f.id === "data-explorer")?.allowed === true;
  const guarded = async () => (await fetch(`${base}/api/data-explorer`, { headers: { authorization: `Bearer ${tokens["Dave Free"]}` } })).status;
  await check("subscribe, checkout, unlocked", async () => {
    if (await explorer()) return "Dave has the data explorer before subscribing";
    if ((await guarded()) !== 403) return "the guarded route let Dave in before subscribing";
    const successUrl = "https://app.example.com/billing/done";
    const session = await dave.subscribeToPlan("plan_pro", { billingCadence: "monthly", successUrl });
    if (!session.url?.includes("/__checkout/")) return `no checkout page: ${JSON.stringify(session)}`;
    const visit = await fetch(session.url, { redirect: "manual" });
    if (visit.status !== 302 || visit.headers.get("location") !== successUrl) return `checkout answered ${visit.status}`;
    if (!(await explorer())) return "the data explorer is still locked after the checkout";
    const status = await guarded();
    if (status !== 200) return `the guarded route answered ${status} after the checkout`;
    return undefined;
  });
  exitCode = failed === 0 ? 0 : 1;
} finally {
  child.kill("SIGTERM");
  await reference.close();
  clearTimeout(watchdog);
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(exitCode);
