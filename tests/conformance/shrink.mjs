#!/usr/bin/env node
// Shrinks a failing conformance fixture to a small one that still fails, to keep in
// tests/conformance/fixtures. Greedy delta debugging over the fixture's lists (steps,
// customers, subscriptions, grants, plans, features, access entries, balances, billing
// records, ids in a step) and its optional fields, repeated until nothing more goes.
//
//   node tests/conformance/shrink.mjs --fixture FILE --out FILE -- <test command...>
//
// The test command gets a candidate fixture's path as its last argument and exits 0 when the
// candidate still shows the failure (creduce's "interestingness test"); `still-differs.sh`
// is the one for the harness. A candidate is offered only if it stays a valid fixture: every
// subscription's plan in the pricing model (a missing plan is a declared deviation, which
// would "fail" for another reason), every referenced unit and feature kept.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dash = process.argv.indexOf("--");
const own = process.argv.slice(2, dash < 0 ? undefined : dash);
const test = dash < 0 ? [] : process.argv.slice(dash + 1);
const option = (name) => {
  const at = own.indexOf(`--${name}`);
  return at < 0 ? undefined : own[at + 1];
};
const input = option("fixture");
const out = option("out");
if (!input || !out || test.length === 0) {
  console.error("usage: shrink.mjs --fixture FILE --out FILE -- <test command...>");
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), "atlas-shrink-"));
let tries = 0;
function stillFails(fixture) {
  tries += 1;
  const file = join(work, "candidate.json");
  writeFileSync(file, JSON.stringify(fixture, null, 1));
  const run = spawnSync(test[0], [...test.slice(1), file], { stdio: "ignore" });
  return run.status === 0;
}

/** The lists a candidate may lose elements of, outermost first. */
function lists(fixture) {
  const found = [];
  // Empty lists count too, so the index of a list stays put while its elements go.
  const add = (owner, key) => Array.isArray(owner?.[key]) && found.push([owner, key]);
  add(fixture.scenario, "steps");
  add(fixture, "customers");
  add(fixture.pricingModel, "plans");
  add(fixture.pricingModel, "entitlements");
  add(fixture.pricingModel, "customPricingUnits");
  for (const customer of fixture.customers ?? []) {
    for (const key of ["activeSubscriptions", "upcomingSubscriptions", "conditionalBillableAccess", "customPricingUnits"]) add(customer, key);
  }
  for (const plan of fixture.pricingModel?.plans ?? []) add(plan, "entitlements");
  for (const step of fixture.scenario?.steps ?? []) add(step, "featureIds");
  for (const table of ["invoices", "invoiceLineItems", "transactions"]) {
    for (const key of Object.keys(fixture[table] ?? {})) add(fixture[table], key);
  }
  return found;
}

const listAt = (fixture, l) => {
  const [owner, key] = lists(fixture)[l] ?? [];
  return owner?.[key];
};

/** Optional fields a candidate may lose: object entries whose absence is itself a case. */
function optionals(fixture) {
  const found = [];
  const add = (owner, key) => owner && key in owner && found.push([owner, key]);
  for (const key of ["invoices", "invoiceLineItems", "transactions", "creditUsage"]) add(fixture, key);
  for (const customer of fixture.customers ?? []) {
    for (const sub of [...(customer.activeSubscriptions ?? []), ...(customer.upcomingSubscriptions ?? [])]) add(sub, "endDate");
    for (const entry of customer.conditionalBillableAccess ?? []) add(entry, "currentUsage");
  }
  for (const plan of fixture.pricingModel?.plans ?? []) {
    for (const grant of plan.entitlements ?? []) for (const key of ["maxUsage", "blockOverage", "limit"]) add(grant, key);
  }
  const client = fixture.scenario?.client;
  for (const key of Object.keys(client?.limits ?? {})) add(client.limits, key);
  add(client, "allowUnknownLimits");
  return found;
}

function valid(fixture) {
  const plans = new Set((fixture.pricingModel.plans ?? []).map((p) => p.id));
  const units = new Set((fixture.pricingModel.customPricingUnits ?? []).map((u) => u.id));
  const features = new Set((fixture.pricingModel.entitlements ?? []).map((f) => f.id));
  const grantedIds = (fixture.pricingModel.plans ?? []).flatMap((p) => p.entitlements ?? []);
  const originalFeatures = new Set(original.pricingModel.entitlements.map((f) => f.id));
  return (
    (fixture.scenario?.steps?.length ?? 0) > 0 &&
    (fixture.customers ?? []).every((c) =>
      [...(c.activeSubscriptions ?? []), ...(c.upcomingSubscriptions ?? [])].every((s) => plans.has(s.planId) || !originalPlans.has(s.planId)),
    ) &&
    grantedIds.every((g) => !g.customPricingUnitId || units.has(g.customPricingUnitId)) &&
    // A grant may name a feature the model lacks on purpose (`ent_missing`); one the shrinker
    // removed would be a different case.
    grantedIds.every((g) => features.has(g.id) || !originalFeatures.has(g.id))
  );
}

const original = JSON.parse(readFileSync(input, "utf8"));
const originalPlans = new Set(original.pricingModel.plans.map((p) => p.id));
if (!stillFails(original)) {
  console.error(`shrink.mjs: ${input} does not fail the test to begin with`);
  rmSync(work, { recursive: true, force: true });
  process.exit(1);
}

let current = structuredClone(original);
const size = (fixture) => JSON.stringify(fixture).length;
const start = size(current);

/** Tries a change on a copy; keeps it when the copy is valid and still fails. */
function attempt(change) {
  const candidate = structuredClone(current);
  if (!change(candidate) || !valid(candidate) || !stillFails(candidate)) return false;
  current = candidate;
  return true;
}

let progress = true;
while (progress) {
  progress = false;
  // Lists: remove halves, then quarters, down to single elements (ddmin's complements). The
  // lists are found again after each change: removing a customer removes its lists.
  for (let l = 0; l < lists(current).length; l += 1) {
    for (let chunk = Math.ceil((listAt(current, l)?.length ?? 0) / 2); chunk > 0; chunk = Math.ceil(chunk / 2)) {
      for (let at = 0; listAt(current, l) && at < listAt(current, l).length; ) {
        const from = at;
        if (attempt((candidate) => listAt(candidate, l)?.splice(from, chunk).length > 0)) progress = true;
        else at += chunk;
      }
      if (chunk === 1 || !listAt(current, l)) break;
    }
  }
  for (let o = 0; o < optionals(current).length; o += 1) {
    if (attempt((candidate) => {
      const [owner, key] = optionals(candidate)[o] ?? [];
      if (!owner) return false;
      delete owner[key];
      return true;
    })) {
      progress = true;
      o -= 1;
    }
  }
}

current.description = `shrunk from ${original.description ?? input}`;
writeFileSync(out, `${JSON.stringify(current, null, 1)}\n`);
rmSync(work, { recursive: true, force: true });
console.log(`shrink.mjs: ${start} → ${size(current)} characters in ${tries} runs; wrote ${out}`);
