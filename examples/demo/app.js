// The quickstart's demo page: plain JavaScript, no build step. Every request carries the
// chosen demo user's session token; nothing from an answer is ever written as HTML.
"use strict";

const state = { tokens: {}, user: null, model: null, customer: null, features: [] };

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${state.tokens[state.user]}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text };
}

function slugOf(entitlementId) {
  return state.model?.entitlements?.find((e) => e.id === entitlementId)?.slug ?? entitlementId;
}

function planName(planId) {
  return state.model?.plans?.find((p) => p.id === planId)?.name ?? planId;
}

function currentPlans() {
  return (state.customer?.activeSubscriptions ?? []).map((s) => s.plan?.name ?? planName(s.planId));
}

function renderUsers() {
  const users = document.getElementById("users");
  users.replaceChildren(...Object.keys(state.tokens).map((name) =>
    element("button", {
      type: "button",
      "aria-pressed": String(name === state.user),
      "data-user": name,
      onclick: () => choose(name),
    }, name)));
}

function renderPlan() {
  document.getElementById("customer").textContent = state.customer
    ? `${state.customer.name ?? state.customer.externalId} (${state.customer.externalId})`
    : "…";
  const plans = currentPlans();
  document.getElementById("plan").textContent = plans.length ? plans.join(", ") : "no plan";
  const rows = state.features.map((feature) => {
    const limit = feature.limits
      ? `${feature.limits.current ?? "?"} of ${feature.limits.limit ?? "∞"}`
      : feature.usage?.length
        ? feature.usage.map((u) => `${u.current}${u.maxUsage ? ` of ${u.maxUsage}` : ""} used`).join(", ")
        : feature.customPricingUnit
          ? `${feature.customPricingUnit.balance ?? 0} credits`
          : "";
    return element("tr", {},
      element("td", {}, feature.id),
      element("td", { class: feature.allowed ? "yes" : "no" }, feature.allowed ? "yes" : "no"),
      element("td", {}, limit));
  });
  document.getElementById("features").replaceChildren(...rows);
}

function price(plan) {
  const monthly = plan.prices?.monthly?.price ?? plan.price?.price;
  return monthly === undefined || monthly === null ? "" : `$${monthly}/month`;
}

function renderPricing() {
  const current = new Set((state.customer?.activeSubscriptions ?? []).map((s) => s.planId));
  const cards = (state.model?.plans ?? []).map((plan) => {
    const included = plan.entitlements.filter((e) => e.included !== false)
      .map((e) => element("li", {}, e.includedLabel ?? slugOf(e.id)));
    const isCurrent = current.has(plan.id);
    return element("div", { class: `plan${isCurrent ? " current" : ""}`, "data-plan-card": plan.id },
      element("h3", {}, plan.name),
      element("div", { class: "price" }, price(plan) || "Free"),
      element("div", { class: "muted" }, plan.description ?? ""),
      element("ul", {}, ...included),
      isCurrent
        ? element("button", { type: "button", disabled: "" }, "Your plan")
        : element("button", { type: "button", "data-plan": plan.id, onclick: () => subscribe(plan.id) }, `Choose ${plan.name}`));
  });
  document.getElementById("plans").replaceChildren(...cards);
}

async function renderPortal() {
  const subscriptions = (state.customer?.activeSubscriptions ?? []).map((s) =>
    element("p", {}, `${s.plan?.name ?? planName(s.planId)} · ${s.status ?? "active"} · since ${String(s.startDate ?? "").slice(0, 10)}`));
  document.getElementById("subscriptions").replaceChildren(
    element("h4", {}, "Subscriptions"),
    ...(subscriptions.length ? subscriptions : [element("p", { class: "muted" }, "none")]));
  const invoices = await api("/atlas-api/invoices?page=1&pageSize=5");
  const items = (invoices.json?.results ?? []).map((invoice) =>
    element("li", {}, `${invoice.number ?? invoice.id}: ${invoice.total ?? invoice.amountDue ?? ""} ${invoice.currency ?? ""} (${invoice.status ?? ""})`));
  document.getElementById("invoices").replaceChildren(
    ...(items.length ? items : [element("li", { class: "muted" }, invoices.status === 200 ? "no invoices yet" : `invoices: ${invoices.status}`)]));
}

async function refresh() {
  if (!state.user) return;
  const [customer, features, model] = await Promise.all([
    api("/atlas-api/user"), api("/atlas-api/features"), api("/atlas-api/pricing-model"),
  ]);
  if (customer.status === 200) state.customer = customer.json;
  if (features.status === 200) state.features = features.json.features ?? [];
  if (model.status === 200) state.model = model.json;
  renderPlan();
  renderPricing();
  if (!document.getElementById("portal").hidden) await renderPortal();
}

function showResult(label, answer) {
  const ok = answer.status >= 200 && answer.status < 300;
  const parts = [element("div", {},
    element("span", { class: `status ${ok ? "ok" : "denied"}`, "data-status": String(answer.status) }, String(answer.status)),
    ` ${label}`)];
  if (answer.status === 403 && answer.json?.reasons) {
    parts.push(element("p", {}, `Denied: ${answer.json.error}`));
    const denied = Object.entries(answer.json.features ?? {}).filter(([, allowed]) => !allowed).map(([id]) => id);
    const upgrades = (state.model?.plans ?? []).filter((plan) =>
      plan.entitlements.some((e) => e.included !== false && denied.includes(slugOf(e.id))) &&
      !(state.customer?.activeSubscriptions ?? []).some((s) => s.planId === plan.id));
    if (upgrades.length) {
      parts.push(element("p", {}, "Upgrade to unlock it: ",
        ...upgrades.map((plan) => element("button", { type: "button", "data-upgrade": plan.id, onclick: () => subscribe(plan.id) }, `Upgrade to ${plan.name}`))));
    }
  }
  parts.push(element("pre", {}, answer.json ? JSON.stringify(answer.json, null, 2) : answer.text));
  document.getElementById("result").replaceChildren(...parts);
}

const actions = {
  explorer: () => api("/api/data-explorer"),
  seat: () => api("/api/seats", { method: "POST", body: { email: `seat-${Date.now()}@example.com` } }),
  complete: () => api("/api/ai/complete", {
    method: "POST",
    body: { prompt: "Write a haiku about pricing" },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  }),
  summarise: () => api("/api/ai/summarise", {
    method: "POST",
    body: { text: "Pricing pages that hold their quotas make customers trust the bill", maxTokens: 50 },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  }),
  image: () => api("/api/images", {
    method: "POST",
    body: { prompt: "a lighthouse at dawn" },
    headers: { "Idempotency-Key": crypto.randomUUID() },
  }),
};

async function subscribe(planId) {
  const back = `${location.origin}/?user=${encodeURIComponent(state.user)}&checkout=done`;
  const answer = await api(`/atlas-api/plans/${encodeURIComponent(planId)}/subscribe`, {
    method: "POST", body: { billingCadence: "monthly", successUrl: back },
  });
  const note = document.getElementById("checkout");
  if (answer.status !== 200 || !answer.json?.url) {
    showResult(`subscribe to ${planName(planId)}`, answer);
    return;
  }
  note.textContent = `Checkout for ${planName(planId)} opened in a new tab: complete it there, this page updates by itself.`;
  window.open(answer.json.url, "_blank");
}

async function choose(user) {
  state.user = user;
  state.customer = null;
  state.features = [];
  renderUsers();
  document.getElementById("result").textContent = "Press a button.";
  await refresh();
}

async function start() {
  const tokens = await fetch("/demo/tokens");
  state.tokens = await tokens.json();
  const query = new URLSearchParams(location.search);
  if (query.get("checkout") === "done") {
    document.getElementById("checkout").textContent = "Checkout completed: your plan is updated.";
  }
  const wanted = query.get("user");
  await choose(wanted && state.tokens[wanted] ? wanted : Object.keys(state.tokens)[0]);
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      showResult(button.firstChild.textContent.trim(), await actions[action]());
      await refresh();
    });
  }
  const toggle = document.getElementById("portal-toggle");
  toggle.addEventListener("click", async () => {
    const portal = document.getElementById("portal");
    portal.hidden = !portal.hidden;
    toggle.textContent = portal.hidden ? "Open the customer portal" : "Close the customer portal";
    if (!portal.hidden) await renderPortal();
  });
  document.getElementById("payment-method").addEventListener("click", async () => {
    const answer = await api("/atlas-api/user/payment-method", {
      method: "POST", body: { successUrl: `${location.origin}/?user=${encodeURIComponent(state.user)}` },
    });
    if (answer.status === 200 && answer.json?.url) window.open(answer.json.url, "_blank");
    else showResult("update the payment method", answer);
  });
  setInterval(() => { if (!document.hidden) refresh(); }, 2000);
}

start();
