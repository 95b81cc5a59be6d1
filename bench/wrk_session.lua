-- wrk script for bench/serving.py: rotates logged-in sessions over the requests, builds batches of
-- unique recommendation events, and counts what the server acknowledged. Its one argument (after
-- "--") is a Lua file returning the run's config: mode ("get" or "events"), path, headers,
-- sessions ({cookie, csrf, slates}), challenges, batch, tag.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  config = dofile(args[1])
  counter = 0
  events_sent = 0
  acked, duplicates, not_ok = 0, 0, 0
end

local function event_json(session)
  -- Each (type, slate, challenge) is new, so no event collapses on the server's natural key.
  local n = session.events or 0
  session.events = n + 1
  events_sent = events_sent + 1
  local kinds = #config.challenges * 2
  local slate = session.slates[math.floor(n / kinds) % #session.slates + 1]
  return string.format(
    '{"event_id":"%s-%04x-4000-8000-%012x","type":"%s","challenge_id":%d,"slate_id":"%s","position":%d}',
    config.tag, index, events_sent, n % 2 == 0 and "impression" or "click",
    config.challenges[math.floor(n / 2) % #config.challenges + 1], slate, n % 6)
end

function request()
  counter = counter + 1
  local session = config.sessions[counter % #config.sessions + 1]
  local headers = {}
  for name, value in pairs(config.headers) do headers[name] = value end
  if session.cookie then headers["Cookie"] = session.cookie end
  if config.mode ~= "events" then
    return wrk.format("GET", config.path, headers)
  end
  headers["Content-Type"] = "application/json"
  headers["X-CSRFToken"] = session.csrf
  local events = {}
  for i = 1, config.batch do events[i] = event_json(session) end
  return wrk.format("POST", config.path, headers, '{"events":[' .. table.concat(events, ",") .. "]}")
end

function response(status, headers, body)
  if status ~= 200 and status ~= 201 then
    not_ok = not_ok + 1
    return
  end
  if config.mode == "events" then
    acked = acked + tonumber(body:match('"stored":%s*(%d+)') or "0")
    duplicates = duplicates + tonumber(body:match('"duplicates":%s*(%d+)') or "0")
  end
end

function done(summary, latency, requests)
  local totals = {acked = 0, duplicates = 0, not_ok = 0, events_sent = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + (thread:get(name) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d},' ..
    '"not_ok":%d,"acked":%d,"duplicates":%d,"events_sent":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    totals.not_ok, totals.acked, totals.duplicates, totals.events_sent))
end
