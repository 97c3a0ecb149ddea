#!/usr/bin/env node
// The baseline of the load benchmark: the official @runonatlas/core 2.8.0 doing the check its
// Express middleware does (`areFeaturesAllowed`) behind a plain node:http server, with the
// customer id taken from the `x-customer-id` header (no token verification: atlas-actix's
// side verifies a Clerk token on every request, so the comparison is conservative).
//
//   ATLAS_HOST=http://127.0.0.1:4010 ATLAS_API_KEY=... PORT=0 node bench/node-baseline.mjs
// Routes: GET /api/data-explorer (feature data-explorer), GET /api/limited/data-explorer
// (feature seats, whose limit callback answers at once, as the quickstart's counts seats).

import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(process.env.ATLAS_SHARED ?? path.join(here, "../../shared"));
const { depsRequire } = await import(pathToFileURL(path.join(shared, "conformance/lib/deps.mjs")));
const { AtlasClient } = depsRequire()("@runonatlas/core");

const seats = { org_standard_corp: 3 };
const client = new AtlasClient({
  apiKey: process.env.ATLAS_API_KEY,
  _atlasHost: process.env.ATLAS_HOST,
  limits: { seats: async (customer) => seats[customer] ?? 1 },
  verboseLevel: "silent",
  prettyPrint: false,
});
await client.waitInitialization();

const report = JSON.stringify({
  report: "revenue by month",
  rows: [["2026-09", 1200], ["2026-10", 1350], ["2026-11", 1510]],
});
const routes = { "/api/data-explorer": ["data-explorer"], "/api/limited/data-explorer": ["seats"] };

const server = http.createServer(async (req, res) => {
  const features = routes[req.url];
  if (!features) {
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"Not found"}');
    return;
  }
  const customer = req.headers["x-customer-id"];
  if (!customer) {
    res.writeHead(401, { "content-type": "application/json" }).end('{"error":"Unauthorized"}');
    return;
  }
  try {
    const { ok, features: result } = await client.areFeaturesAllowed(customer, features);
    if (!ok) {
      res.writeHead(403, { "content-type": "application/json" }).end(JSON.stringify({ error: "Forbidden", features: result }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(report);
  } catch {
    res.writeHead(503, { "content-type": "application/json" }).end('{"error":"unavailable"}');
  }
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
