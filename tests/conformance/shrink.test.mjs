// The shrinker on a failure whose cause is known: a fixture "fails" when a customer has a
// subscription ending "someday" (an unreadable date) to a plan with a usage grant capped at 0.
// Whatever else the generated fixture holds must go; that cause must stay.
//
//   node --test tests/conformance/shrink.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;

const cause = (fixture) =>
  fixture.customers.some((customer) =>
    customer.activeSubscriptions.some(
      (sub) =>
        sub.endDate === "someday" &&
        fixture.pricingModel.plans.some((plan) => plan.id === sub.planId && plan.entitlements.some((g) => g.maxUsage === 0)),
    ),
  );

test("a generated fixture shrinks to its cause", () => {
  const work = mkdtempSync(join(tmpdir(), "shrink-test-"));
  try {
    spawnSync("node", [join(here, "generate.mjs"), "--seed", "3", "--count", "60", "--out", work], { stdio: "ignore" });
    const name = readdirSync(work).sort().find((file) => cause(JSON.parse(readFileSync(join(work, file), "utf8"))));
    assert.ok(name, "seed 3 holds a fixture with the cause");
    const input = JSON.parse(readFileSync(join(work, name), "utf8"));
    const predicate = join(work, "predicate.mjs");
    writeFileSync(
      predicate,
      `import { readFileSync } from "node:fs";\nconst cause = ${cause.toString()};\n` +
        "process.exit(cause(JSON.parse(readFileSync(process.argv[2], 'utf8'))) ? 0 : 1);\n",
    );
    const out = join(work, "shrunk.json");
    const run = spawnSync("node", [join(here, "shrink.mjs"), "--fixture", join(work, name), "--out", out, "--", "node", predicate], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    const shrunk = JSON.parse(readFileSync(out, "utf8"));

    assert.ok(cause(shrunk), "the cause is kept");
    assert.equal(shrunk.customers.length, 1);
    assert.equal(shrunk.customers[0].activeSubscriptions.length, 1);
    assert.deepEqual(shrunk.customers[0].conditionalBillableAccess, []);
    assert.equal(shrunk.pricingModel.plans.length, 1);
    assert.deepEqual(shrunk.pricingModel.plans[0].entitlements.map((g) => g.maxUsage), [0]);
    assert.equal(shrunk.pricingModel.entitlements.length, 1, "features no grant names are gone");
    assert.equal(shrunk.scenario.steps.length, 1);
    assert.ok(!("invoices" in shrunk) && !("transactions" in shrunk), "billing records are gone");
    assert.ok(JSON.stringify(shrunk).length < JSON.stringify(input).length / 3);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test("a fixture that does not fail is refused, not shrunk", () => {
  const work = mkdtempSync(join(tmpdir(), "shrink-test-"));
  try {
    spawnSync("node", [join(here, "generate.mjs"), "--seed", "3", "--count", "1", "--out", work], { stdio: "ignore" });
    const run = spawnSync("node", [join(here, "shrink.mjs"), "--fixture", join(work, "gen-3-0.json"), "--out", join(work, "out.json"), "--", "false"], { encoding: "utf8" });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /does not fail the test to begin with/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
