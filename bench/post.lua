-- wrk script for the usage route: a JSON POST, as the quickstart's AI completion expects.
wrk.method = "POST"
wrk.body = '{"prompt":"hello there"}'
wrk.headers["Content-Type"] = "application/json"
