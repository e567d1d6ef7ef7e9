-- Shared by the bench scripts (loaded with dofile from each of them).
--
-- wrk runs setup() and done() in one Lua state and every thread in a state of its own: each
-- thread counts the statuses it sees in response(), and done() collects those per-thread counters
-- through the thread objects kept by setup() (wrk's documented pattern). done() prints one line
-- `BENCH_RESULT {json}` that bench/bench.py parses.
--
-- A script sets `expected` (the status every response should have) and may set `tolerated`
-- (statuses that are not counted as bad, e.g. the first 201s of the refuse scenario).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

statuses = {}
bad_status = nil
bad_body = nil
tolerated = tolerated or {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if bad_status == nil and status ~= expected and not tolerated[status] then
    bad_status = status
    bad_body = string.sub(body or "", 1, 400)
  end
end

function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local merged = {}
  local first_bad = "null"
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for code, n in pairs(s) do
      merged[code] = (merged[code] or 0) + n
    end
    local bs = t:get("bad_status")
    if bs ~= nil and first_bad == "null" then
      first_bad = string.format('{"status":%d,"body":%s}', bs, json_string(t:get("bad_body") or ""))
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d":%d', code, n)
  end
  local ok = {}
  for code, _ in pairs(tolerated) do
    ok[#ok + 1] = string.format("%d", code)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"expected":%d,"tolerated":[%s],"statuses":{%s},"first_bad":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    expected, table.concat(ok, ","), table.concat(parts, ","), first_bad))
end

