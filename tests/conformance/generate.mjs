#!/usr/bin/env node
// Seeded generator of conformance fixtures in the harness's format (../shared/conformance/
// FIXTURES.md): random pricing models, plans, overlapping and repeated subscriptions, end
// dates in every form, access entries, credit balances, limit callbacks, event quantities,
// billing records (invoices, line items, transactions, credit usage) and their paginated reads.
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

const INVOICE_STATUSES = ["paid", "paid", "open", "draft", "void", "paused", "uncollectible"];
const TRANSACTION_TYPES = ["planAllocation", "usage", "manualAddition", "expiration"];
const day = (n) => new Date(Date.UTC(2023, 0, 1 + n)).toISOString();

/** Billing records of the fixture's customers, and the steps that read them back. */
function billing(rand, name, customers, units) {
  const invoices = {};
  const invoiceLineItems = {};
  const transactions = {};
  const creditUsage = {};
  const steps = [];
  const readBy = new Map();
  const pageOf = () => (rand.bool(0.3) ? {} : { page: rand.int(1, 4), pageSize: rand.pick([1, 2, 3, 5, 10, 25]) });
  for (const [c, customer] of customers.entries()) {
    const subscription = customer.activeSubscriptions[0]?.id ?? null;
    // Days are drawn without repeats: two records of one date have no order a platform pins.
    const days = range(40).filter(() => rand.bool(0.5));
    invoices[customer.externalId] = range(Math.min(rand.int(0, 14), days.length)).map((k) => {
      const id = `inv_${name}_${c}_${k}`;
      const items = range(rand.int(0, 3)).map((j) => {
        const amount = rand.pick([0, 125, 4900, 99.5]);
        return {
          id: `li_${name}_${c}_${k}_${j}`,
          invoiceId: id,
          amount,
          description: `Line ${j}`,
          startDate: day(days[k]),
          endDate: day(days[k] + 30),
          merchantId: "merchant",
          priceId: `price_${j}`,
          price: { entityType: "entitlement", billable: { showOnInvoice: rand.bool(0.8), hidden: rand.bool(0.2) } },
          details: { quantity: rand.int(1, 3), unitPrice: amount },
        };
      });
      if (items.length) invoiceLineItems[id] = items;
      // Without `amount`, the platform gives the sum of the line items.
      const amount = rand.bool(0.3) ? undefined : rand.pick([0, 1000, 4900, 4910, 12.25]);
      return {
        id,
        createdAt: day(days[k]),
        updatedAt: day(days[k] + 1),
        issueDate: day(days[k]),
        dueDate: day(days[k] + 14),
        status: rand.pick(INVOICE_STATUSES),
        vanityId: 1000 + k,
        vanityIdString: `GEN-${1000 + k}`,
        customerId: customer.id,
        merchantId: "merchant",
        subscriptionId: subscription,
        externalId: null,
        ...(amount === undefined ? {} : { amount }),
      };
    });
    let balance = 0;
    transactions[customer.externalId] = range(Math.min(rand.int(0, 8), days.length)).map((k) => {
      const amount = rand.pick([1000, -120, -80, 200, -500, 0.5]);
      const record = {
        id: `tx_${name}_${c}_${k}`,
        amount,
        type: rand.pick(TRANSACTION_TYPES),
        previousBalance: balance,
        newBalance: balance + amount,
        createdAt: day(days[days.length - 1 - k]),
        updatedAt: day(days[days.length - 1 - k]),
        allocationBlockId: `alloc_${name}_${c}`,
        merchantId: "merchant",
        allocationBlock: { id: `alloc_${name}_${c}`, amount: 1000 },
      };
      balance += amount;
      return record;
    });
    const usage = units.filter(() => rand.bool(0.6)).map((unit) => [
      unit.id,
      {
        customPricingUnitId: unit.id,
        displayName: unit.displayName,
        totalAllocated: 1000,
        totalUsed: rand.pick([0, 500, 1000]),
        remaining: rand.pick([1000, 500, 0]),
        ...(rand.bool() ? { nextExpiring: { amount: 200, expiration: "2099-01-31T00:00:00.000Z" } } : {}),
      },
    ]);
    if (usage.length) creditUsage[customer.externalId] = Object.fromEntries(usage);

    const who = customer.externalId;
    steps.push({ op: "invoices", customerId: who, ...pageOf() });
    if (rand.bool(0.5)) steps.push({ op: "invoices", customerId: who, ...pageOf() });
    // Line items are cached by invoice id alone in the official client: an invoice read by two
    // customers shows the declared `line-items-per-customer` deviation, so, while it is
    // declared, each invoice is read by one customer at most.
    const free = (invoice) => !declared.has("line-items-per-customer") || [undefined, who].includes(readBy.get(invoice.id));
    const own = invoices[who].filter(free);
    if (own.length) {
      const invoice = rand.pick(own);
      readBy.set(invoice.id, who);
      steps.push({ op: "invoice-line-items", customerId: who, invoiceId: invoice.id });
    }
    const others = customers
      .filter((other) => other !== customer)
      .flatMap((other) => invoices[other.externalId] ?? [])
      .filter((invoice) => !declared.has("line-items-per-customer") || !readBy.has(invoice.id));
    if (others.length && rand.bool(0.4)) {
      const invoice = rand.pick(others);
      readBy.set(invoice.id, who);
      steps.push({ op: "invoice-line-items", customerId: who, invoiceId: invoice.id, comment: "another customer's invoice" });
    }
    steps.push({
      op: "transactions",
      customerId: who,
      ...pageOf(),
      ...(rand.bool(0.6) ? { orderBy: rand.pick(["createdAt", "amount"]), order: rand.pick(["asc", "desc"]) } : {}),
    });
    if (units.length) steps.push({ op: "credit-usage", customerId: who, customPricingUnitId: rand.pick(units).id });
    if (rand.bool(0.4)) steps.push({ op: "customer", customerId: who });
    if (subscription && rand.bool(0.4)) steps.push({ op: "subscription", subscriptionId: subscription });
  }
  if (rand.bool(0.3)) steps.push({ op: "invoices", customerId: "customer-unknown", ...pageOf() });
  if (rand.bool(0.3)) steps.push({ op: "pricing-model" });
  if (rand.bool(0.3)) steps.push({ op: "public-pricing-model", ...(rand.bool() ? { customerId: customers[0].externalId } : {}) });
  return { records: { invoices, invoiceLineItems, transactions, creditUsage }, steps };
}

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
  const billed = rand.bool(0.4) ? billing(rand, name, customers, units) : { records: {}, steps: [] };
  steps.push(...billed.steps);
  for (const f of features) delete f.limited;
  return {
    description: `generated: seed ${seed}, ${name}`,
    apiKey: "sk_test_generated",
    merchant: { id: "merchant", mode: "test", isStripeConfigured: true, trialDurationInDays: 0 },
    pricingModel: { customPricingUnits: units, entitlements: features, plans },
    customers,
    ...billed.records,
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
