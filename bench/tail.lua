-- wrk script of bench/measure.py: a POST with a JSON body when BODY is set (a GET otherwise),
-- and, at the end, the tail wrk's --latency table leaves out: p99.9 and the maximum (µs).
local body = os.getenv("BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  io.write(string.format("tail p99.9=%d max=%d\n", latency:percentile(99.9), latency.max))
end
