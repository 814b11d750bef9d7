-- wrk: POST one JSON body per request, taken in order from a file (one body a line), each
-- with a bearer token from another file; counts statuses; prints a JSON summary.
--   wrk -t2 -c32 -d20s -s wrk_post.lua URL -- BODIES TOKENS PATH
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads - 1)
end

function init(args)
  bodies, tokens = {}, {}
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  for line in io.lines(args[2]) do tokens[#tokens + 1] = line end
  path = args[3] or "/api/v1/bookings"
  nthreads = tonumber(args[4] or "2")
  index = id
  statuses = {}
end

function request()
  local body = bodies[(index % #bodies) + 1]
  local token = tokens[(index % #tokens) + 1]
  index = index + nthreads
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', status, n) end
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "stdev_us": %.1f, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, latency.stdev,
    table.concat(parts, ", ")))
end
