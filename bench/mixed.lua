-- mixed: the load a user of verilimit meets in a load test. 10,000 values, Zipf-hot (s = 1.1: the
-- hottest value takes about 10% of requests), each value a phone number (To) and an IP (the `ip`
-- rate limit); per request, by weight: 60% a start, 20% a check with a wrong code, 20% a fetch of
-- the verification by To. Starts of hot values are refused (429: the ip buckets, or 60203 after
-- 5 sends to one To); checks and fetches of values with no live verification answer 404; five
-- wrong checks end a verification (429 / 60202). Every one of those is an answer, not an error.
-- usage: wrk ... -s mixed.lua http://127.0.0.1:PORT -- SERVICE_PATH AUTH
--   SERVICE_PATH  /v2/Services/VA…
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 201
tolerated = { [200] = true, [404] = true, [429] = true }

local N = 10000
local S = 1.1
local cdf = {}
local service, headers, get_headers

function init(args)
  service = args[1]
  headers = {
    ["Authorization"] = args[2],
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  get_headers = { ["Authorization"] = args[2] }
  local total = 0
  for i = 1, N do
    total = total + 1 / i ^ S
    cdf[i] = total
  end
  for i = 1, N do
    cdf[i] = cdf[i] / total
  end
  math.randomseed(7919 * (tid + 1))
end

-- The rank of a Zipf-distributed value: binary search of the cumulative distribution.
local function zipf()
  local r = math.random()
  local lo, hi = 1, N
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local v = zipf()
  local to = "%2B1666" .. string.format("%07d", v)
  local roll = math.random(100)
  if roll <= 60 then
    local body = "To=" .. to .. "&Channel=sms&RateLimits=" .. urlencode('{"ip":"10.0.' .. v .. '"}')
    return wrk.format("POST", service .. "/Verifications", headers, body)
  elseif roll <= 80 then
    return wrk.format("POST", service .. "/VerificationCheck", headers, "To=" .. to .. "&Code=000000")
  else
    return wrk.format("GET", service .. "/Verifications/" .. to, get_headers)
  end
end
