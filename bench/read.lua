-- read: GET of one bucket (Basic auth, catalog lookup, JSON rendering).
-- usage: wrk ... -s read.lua http://127.0.0.1:PORT/v2/Services/VA…/RateLimits/RK…/Buckets/BL… -- AUTH
-- AUTH is the whole Authorization header value ("Basic …").
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 200

function init(args)
  -- No request() function: wrk builds this static request once per thread.
  wrk.headers["Authorization"] = args[1]
end
