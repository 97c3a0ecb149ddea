-- wrk script for the POST routes: a JSON body (BODY, default the AI completion's prompt).
wrk.method = "POST"
wrk.body = os.getenv("BODY") or '{"prompt":"hello there"}'
wrk.headers["Content-Type"] = "application/json"
