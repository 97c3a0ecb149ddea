#!/usr/bin/env node
// The browser test: headless Chromium (Debian's package) driven by puppeteer-core, used as a
// person uses the quickstart's demo page. Dave opens the page; the data explorer is denied with
// its reason; he upgrades to Pro through the emulator's checkout (in a new tab, as the page
// opens it); the page shows Pro without a reload (push invalidation, then its refresh) and the
// data explorer answers 200; Alice sees Standard Corp's Team plan; the page at phone width.
// Screenshots of each step go to target/browser-test/.
//
//   node browser.mjs [path of the quickstart binary]

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const quickstart = path.resolve(process.argv[2] ?? path.join(root, "target/release/examples/quickstart"));
const shots = path.join(root, "target/browser-test");
const TIMEOUT_MS = 120_000;
const STEP_MS = 20_000;

const watchdog = setTimeout(() => {
  process.stderr.write(`browser test: no result within ${TIMEOUT_MS / 1000} s\n`);
  process.exit(1);
}, TIMEOUT_MS);

function chromium() {
  for (const name of [process.env.CHROMIUM, "chromium", "chromium-browser", "google-chrome"]) {
    if (!name) continue;
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`]).toString().trim();
    } catch { /* next */ }
  }
  throw new Error("no Chromium: apt-get install -y chromium");
}

/** Starts the quickstart in demo mode on a free port; resolves with its address. */
function startQuickstart() {
  const env = { ...process.env, PORT: "0", RUST_LOG: "warn" };
  for (const name of ["ATLAS_API_KEY", "ATLAS_HOST", "CLERK_JWT_KEY", "CLERK_JWKS_URL", "ATLAS_REDIS_URL", "BIND"]) delete env[name];
  const child = spawn(quickstart, [], { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = output.match(/listening (\S+)/);
      if (match) resolve({ child, base: match[1] });
    });
    child.on("exit", (code) => reject(new Error(`the quickstart exited (${code}) before listening`)));
  });
}

let passed = 0;
let failed = 0;
async function step(name, body) {
  try {
    await body();
    passed += 1;
    process.stdout.write(`PASS ${name}\n`);
  } catch (err) {
    failed += 1;
    process.stdout.write(`FAIL ${name}\n    ${String(err?.stack ?? err).split("\n").slice(0, 4).join("\n    ")}\n`);
    throw err;
  }
}

fs.mkdirSync(shots, { recursive: true });
const { child, base } = await startQuickstart();
const browser = await puppeteer.launch({
  executablePath: chromium(),
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let exitCode = 1;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.setDefaultTimeout(STEP_MS);
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const textOf = (selector) => page.$eval(selector, (node) => node.textContent);
  const waitForText = (selector, text) =>
    page.waitForFunction((s, t) => document.querySelector(s)?.textContent.includes(t), {}, selector, text);

  await step("the page opens, in demo mode, with the demo users", async () => {
    await page.goto(`${base}/`, { waitUntil: "networkidle0" });
    const banner = await textOf(".banner");
    if (!banner.includes("Demo mode")) throw new Error(`no demo-mode notice: ${banner}`);
    for (const user of ["Alice", "Dave Free", "Erin Pro"]) {
      if (!(await page.$(`[data-user="${user}"]`))) throw new Error(`no button for ${user}`);
    }
    await waitForText("#plans", "Pro");
    await shot("01-page");
  });

  await step("Dave on Free: the data explorer is denied, with its reason and the upgrade", async () => {
    await page.click('[data-user="Dave Free"]');
    await waitForText("#plan", "Free");
    await page.click('[data-action="explorer"]');
    await page.waitForSelector('#result [data-status="403"]');
    await waitForText("#result", "Denied");
    await page.waitForSelector('#result [data-upgrade="plan_pro"]');
    await shot("02-dave-denied");
  });

  await step("Dave upgrades to Pro through checkout; the page shows it without a reload", async () => {
    const opened = new Promise((resolve) => browser.once("targetcreated", (target) => resolve(target.page())));
    await page.click('#result [data-upgrade="plan_pro"]');
    const checkout = await opened;
    // The emulator's checkout completes on visit and sends the browser back to the page.
    await checkout.waitForFunction(() => location.search.includes("checkout=done"), { timeout: STEP_MS });
    await checkout.waitForFunction(() => document.querySelector("#plan")?.textContent.includes("Pro"), { timeout: STEP_MS });
    await checkout.setViewport({ width: 1280, height: 800 });
    await checkout.screenshot({ path: path.join(shots, "03-checkout-returned.png"), fullPage: true });
    await checkout.close();
    // The first tab was never reloaded: it polls, and sees the plan the platform pushed.
    await waitForText("#plan", "Pro");
    await page.click('[data-action="explorer"]');
    await page.waitForSelector('#result [data-status="200"]');
    await shot("04-dave-unlocked");
  });

  await step("the customer portal shows Dave's subscription", async () => {
    await page.click("#portal-toggle");
    await waitForText("#subscriptions", "Pro");
    await shot("05-portal");
  });

  await step("Alice sees Standard Corp's Team plan", async () => {
    await page.click('[data-user="Alice"]');
    await waitForText("#plan", "Team");
    await waitForText("#customer", "org_standard_corp");
    await shot("06-alice-team");
  });

  await step("readable at phone width", async () => {
    await page.setViewport({ width: 390, height: 844 });
    await page.reload({ waitUntil: "networkidle0" });
    await waitForText("#plan", "Team");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`the page is ${overflow}px wider than the screen`);
    await shot("07-phone");
  });
  exitCode = failed === 0 ? 0 : 1;
} catch {
  exitCode = 1;
} finally {
  await browser.close();
  child.kill("SIGTERM");
  clearTimeout(watchdog);
}
process.stdout.write(`${passed} passed, ${failed} failed; screenshots in ${path.relative(root, shots)}/\n`);
process.exit(exitCode);
