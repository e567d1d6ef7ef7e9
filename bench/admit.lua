-- admit: POST /v2/Services/{sid}/Verifications with a distinct To and a distinct value for every
-- rate limit in every request, so every bucket check passes and each request is admitted (201).
-- usage: wrk ... -s admit.lua http://127.0.0.1:PORT -- PATH AUTH KEYS [OFFSET]
--   PATH    /v2/Services/VA…/Verifications
--   AUTH    the Authorization header value ("Basic …")
--   KEYS    comma-separated rate limit unique names (e.g. ip,phone,session)
--   OFFSET  added to the thread number (default 0), so that several wrk processes driving
--           one service (one per server instance) never send the same value
-- To is +1555 followed by the thread number (2 digits) and a per-thread counter (8 digits).
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 201

local path, headers, prefix
-- The body is "To=%2B1555<v>&Channel=sms&RateLimits=" followed by the URL-encoded JSON
-- {"ip":"ip-<v>",...}: its constant pieces are encoded once in init(), so that per request the
-- load generator only formats the digits of <v> (which need no encoding) and joins strings.
local pieces = {}
local counter = 0

function init(args)
  path = args[1]
  headers = {
    ["Authorization"] = args[2],
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  local keys = {}
  for k in string.gmatch(args[3], "[^,]+") do keys[#keys + 1] = k end
  prefix = string.format("%02d", tid + tonumber(args[4] or "0"))
  -- pieces[i] precedes the i-th copy of <v> in the encoded JSON; the last one closes it.
  for i, k in ipairs(keys) do
    pieces[i] = urlencode((i == 1 and "{" or '",') .. '"' .. k .. '":"' .. k .. "-")
  end
  pieces[#keys + 1] = urlencode('"}')
end

function request()
  counter = counter + 1
  local v = prefix .. string.format("%08d", counter)
  local parts = { "To=%2B1555", v, "&Channel=sms&RateLimits=" }
  for i = 1, #pieces - 1 do
    parts[#parts + 1] = pieces[i]
    parts[#parts + 1] = v
  end
  parts[#parts + 1] = pieces[#pieces]
  return wrk.format("POST", path, headers, table.concat(parts))
end
