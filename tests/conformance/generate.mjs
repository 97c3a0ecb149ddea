#!/usr/bin/env node
// Seeded generator of conformance fixtures in the harness's format (../shared/conformance/
// FIXTURES.md): random pricing models, plans, overlapping and repeated subscriptions, end
// dates in every form, access entries, credit balances, limit callbacks, event quantities.
// The same seed always writes the same files, so a failure is replayed with its seed.
//
//   node tests/conformance/generate.mjs --seed 7 --count 20 --out DIR
//
// The branches of the official entitlement logic each fixture may reach, and what reaches
// them, are listed in tests/conformance/README.md.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// Our deliberate deviations from the official client, declared once (the README's "Where it
// differs from the JavaScript SDK" says why): a branch that would show one is not generated.
const declared = new Set(
  JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "deviations.json"), "utf8")).map((d) => d.id),
);

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const seed = Number(args.seed ?? 1);
const count = Number(args.count ?? 10);
const out = args.out;
if (!out || !Number.isInteger(seed) || !Number.isInteger(count)) {
  console.error("usage: generate.mjs --seed N --count N --out DIR");
  process.exit(2);
}

/** mulberry32: a small, well-mixed 32-bit PRNG. */
function random(state) {
  let a = state >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    bool: (p = 0.5) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

const range = (n) => [...Array(n).keys()];
const PAST = "2020-01-01T00:00:00.000Z";

// End dates: absent, null, empty, and past or future in every form `new Date` reads, plus one
// it cannot; a date-time without an offset is always far from now (near now it is the
// declared `local-time-end-date`), and a date that does not exist only when that deviation
// is not declared.
const END_DATES = [
  undefined,
  null,
  "",
  "2099-12-31T23:59:59.000Z",
  "2020-06-30T00:00:00.000Z",
  "2020-12-31",
  "2099-12-31",
  "2020-06-30T00:00:00",
  "2099-06-30T00:00",
  "2021-01-31T23:59:59+0200",
  "2099-01-31T23:59:59+0200",
  "someday",
  ...(declared.has("impossible-date") ? [] : ["2099-02-30", "2020-02-30"]),
];

function fixture(rand, name) {
  const units = range(rand.int(0, 2)).map((i) => ({ id: `cpu_${i}`, displayName: `Unit ${i}` }));
  const features = range(rand.int(2, 6)).map((i) => ({
    id: `ent_${i}`,
    crossEnvironmentId: `xenv_${i}`,
    name: `Feature ${i}`,
    slug: `feature-${i}`,
    description: "",
    // A feature whose grants have limits has them in every plan: the official client merges
    // a callback-awaiting grant after the others, an order a scenario must not depend on.
    limited: rand.bool(0.35),
  }));
  const grant = (feature) => {
    const included = rand.bool(0.8);
    if (feature.limited) {
      const limit = rand.pick([0, 1, 3, 10]);
      return rand.pick([
        { id: feature.id, included, limit },
        { id: feature.id, included, limit, price: { priceType: "none" } },
        { id: feature.id, included, limit, price: { priceType: "fixed", price: 5, quantity: 1, cadence: "monthly" } },
      ]);
    }
    const kinds = ["onoff", "usage", "usage"].concat(units.length ? ["credit", "credit"] : []);
    switch (rand.pick(kinds)) {
      case "onoff":
        return { id: feature.id, included };
      case "usage": {
        const price = rand.bool()
          ? { priceType: "unit", price: 0.01 }
          : { priceType: "tier", tiers: [{ start: 0, end: null, price: 0.01 }] };
        const maxUsage = rand.pick([undefined, 0, 100, 1000]);
        return { id: feature.id, included: rand.bool(0.9), price, ...(maxUsage === undefined ? {} : { maxUsage }) };
      }
      default: {
        const blockOverage = rand.pick([undefined, true, false]);
        return {
          id: feature.id,
          included: rand.bool(0.9),
          customPricingUnitId: rand.pick(units).id,
          price: { priceType: "unit", price: 1 },
          ...(blockOverage === undefined ? {} : { blockOverage }),
        };
      }
    }
  };
  const plans = range(rand.int(1, 4)).map((p) => {
    const grants = features.filter(() => rand.bool(0.65)).map(grant);
    if (rand.bool(0.1)) grants.push({ id: "ent_missing", included: true });
    return {
      id: `plan_${p}`,
      crossEnvironmentId: `xenv_plan_${p}`,
      isPrivate: false,
      name: `Plan ${p}`,
      description: "",
      status: "available",
      price: { price: 0 },
      prices: {},
      entitlements: grants,
      isTrialAllowed: false,
    };
  });
  const customers = range(rand.int(1, 3)).map((c) => {
    const id = `cus_${name}_${c}`;
    const subscriptions = range(rand.int(0, 3)).map((k) => {
      // A plan the pricing model lacks, unless that deviation is declared.
      const plan = !declared.has("missing-plan") && rand.bool(0.05)
        ? { id: "plan_missing", name: "Missing plan" }
        : rand.pick(plans);
      const endDate = rand.pick(END_DATES);
      return {
        id: `sub_${name}_${c}_${k}`,
        allowCustomerChanges: true,
        status: rand.pick(["active", "trialing", "canceled"]),
        startDate: PAST,
        ...(endDate === undefined ? {} : { endDate }),
        customerId: id,
        merchantId: "merchant",
        planId: plan.id,
        plan: { id: plan.id, isPrivate: false, name: plan.name, description: "", status: "available", externalId: null, merchantId: "merchant", isTrialAllowed: false },
        isTrial: rand.bool(0.2),
      };
    });
    const access = subscriptions.flatMap((subscription) =>
      (plans.find((plan) => plan.id === subscription.planId)?.entitlements ?? []).filter((g) => g.price && !g.customPricingUnitId && g.price.priceType !== "none" && g.price.priceType !== "fixed")
        .filter(() => rand.bool(0.6))
        .map((g, i) => {
          const currentUsage = rand.pick([undefined, 0, 50, 100, 1000]);
          return {
            id: `cba_${subscription.id}_${i}`,
            updatedAt: PAST,
            merchantId: "merchant",
            billableId: rand.bool(0.9) ? g.id : "ent_other",
            subscriptionId: rand.bool(0.9) ? subscription.id : "sub_other",
            customerId: id,
            access: rand.pick([true, false, false]),
            ...(currentUsage === undefined ? {} : { currentUsage }),
          };
        }),
    );
    return {
      id,
      externalId: `customer-${c}`,
      status: "active",
      merchantId: "merchant",
      createdAt: PAST,
      updatedAt: PAST,
      activeSubscriptions: subscriptions,
      upcomingSubscriptions: [],
      conditionalBillableAccess: access,
      customPricingUnits: units.filter(() => rand.bool(0.7)).map((unit) => ({ customPricingUnitId: unit.id, balance: rand.pick([5, 0, -3, 0.5]) })),
      customerPrivatePlans: [],
      isEligibleForTrial: false,
    };
  });
  const limits = Object.fromEntries(
    features
      .filter((f) => f.limited && rand.bool(0.7))
      .map((f) => [f.slug, rand.bool(0.85) ? { usage: rand.pick([0, 1, 2, 3, 9, 10]) } : { error: true }]),
  );
  const slugs = features.map((f) => f.slug);
  const someSlugs = () => {
    const chosen = slugs.filter(() => rand.bool(0.5));
    if (rand.bool(0.2)) chosen.push("feature-unknown");
    if (rand.bool(0.1) && chosen.length) chosen.push(chosen[0]);
    return chosen.length ? chosen : [rand.pick(slugs)];
  };
  const steps = [];
  for (const customer of customers) {
    steps.push({ op: "features", customerId: customer.externalId });
    steps.push({ op: "allowed", customerId: customer.externalId, featureIds: someSlugs() });
  }
  if (rand.bool(0.3)) steps.push({ op: "features", customerId: "customer-new" });
  const customer = rand.pick(customers);
  steps.push({
    op: "events",
    customerId: customer.externalId,
    featureIds: someSlugs(),
    quantity: rand.pick([1, 1, 2.5, 7, 0, -1, "NaN", "Infinity"]),
  });
  steps.push({ op: "flush" }, { op: "platform-events" });
  for (const f of features) delete f.limited;
  return {
    description: `generated: seed ${seed}, ${name}`,
    apiKey: "sk_test_generated",
    merchant: { id: "merchant", mode: "test", isStripeConfigured: true, trialDurationInDays: 0 },
    pricingModel: { customPricingUnits: units, entitlements: features, plans },
    customers,
    scenario: {
      client: { allowUnknownLimits: rand.bool(0.3), limits, eventsFlushInterval: 60000 },
      steps,
    },
  };
}

mkdirSync(out, { recursive: true });
for (const i of range(count)) {
  const rand = random(seed * 100003 + i);
  const name = `gen-${seed}-${i}`;
  writeFileSync(join(out, `${name}.json`), JSON.stringify(fixture(rand, name), null, 1));
}
console.log(`wrote ${count} fixtures of seed ${seed} to ${out}`);
