-- floor: GET /healthz, the cheapest route (the server's HTTP ceiling on this machine).
-- usage: wrk ... -s floor.lua http://127.0.0.1:PORT/healthz
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 200
