-- refuse: the admit request, but one hot value for every rate limit: once its smallest bucket is
-- full (the first few requests are admitted: 201), every request is refused (429 / 20429).
-- usage: wrk ... -s refuse.lua http://127.0.0.1:PORT -- PATH AUTH KEYS [VALUE]
-- To stays distinct per request, so the few admitted ones are real verifications.
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 429
tolerated = { [201] = true }

local path, headers, rate_limits, prefix
local counter = 0

function init(args)
  path = args[1]
  headers = {
    ["Authorization"] = args[2],
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  local value = args[4] or "hot"
  local pairs_ = {}
  for k in string.gmatch(args[3], "[^,]+") do
    pairs_[#pairs_ + 1] = '"' .. k .. '":"' .. value .. '"'
  end
  rate_limits = urlencode("{" .. table.concat(pairs_, ",") .. "}")
  prefix = string.format("%02d", tid)
end

function request()
  counter = counter + 1
  local body = "To=%2B1555" .. prefix .. string.format("%08d", counter)
    .. "&Channel=sms&RateLimits=" .. rate_limits
  return wrk.format("POST", path, headers, body)
end
