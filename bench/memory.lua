-- memory: admits QUOTA distinct values per thread into one rate limit (key KEY), then stops the
-- thread and leaves a marker file DONEDIR/done.TID so the runner knows when to stop wrk.
-- usage: wrk ... -s memory.lua http://127.0.0.1:PORT -- PATH AUTH KEY QUOTA DONEDIR
-- Values are KEY-TT######## (thread, counter); To is +1555TT########.
dofile((string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./") .. "common.lua")
expected = 201
tolerated = { [200] = true }

local path, headers, key, quota, sends, donedir, prefix, healthz
local counter = 0
local answered = 0
local finished = false
local base_response = response

function init(args)
  path = args[1]
  headers = {
    ["Authorization"] = args[2],
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  key = args[3]
  quota = tonumber(args[4])
  -- wrk calls request() once on thread 0 before the run to check the request, and never sends
  -- that one: thread 0 builds one more to send quota values.
  sends = quota + (tid == 0 and 1 or 0)
  donedir = args[5]
  prefix = string.format("%02d", tid)
  healthz = wrk.format("GET", "/healthz", {})
end

function request()
  if counter >= sends then
    -- Connections still open once the quota is sent ask for something harmless.
    return healthz
  end
  counter = counter + 1
  local v = prefix .. string.format("%08d", counter)
  local body = "To=%2B1555" .. v .. "&Channel=sms&RateLimits="
    .. urlencode('{"' .. key .. '":"' .. key .. "-" .. v .. '"}')
  return wrk.format("POST", path, headers, body)
end

function response(status, headers_, body)
  base_response(status, headers_, body)
  if status ~= 200 then answered = answered + 1 end
  if not finished and answered >= quota then
    finished = true
    local f = io.open(donedir .. "/done." .. tid, "w")
    if f then f:write(tostring(answered)) f:close() end
    wrk.thread:stop()
  end
end
