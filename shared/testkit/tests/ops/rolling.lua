-- wrk script of the rolling-restart test (rolling.rs): counts the answers by status in
-- every thread and prints, when done, one line the test reads:
--   flotilla-wrk requests=N duration_us=N p99_us=N max_us=N connect=N read=N write=N
--   timeout=N status_200=N …
-- Arguments after `--`: METHOD [BODY] (default GET, no body).
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    if args[1] then wrk.method = args[1] end
    if args[2] then wrk.body = args[2] end
    statuses = {}
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
    local e = summary.errors
    io.write(string.format(
        "flotilla-wrk requests=%d duration_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d timeout=%d",
        summary.requests, summary.duration, latency:percentile(99), latency.max,
        e.connect, e.read, e.write, e.timeout))
    for status, n in pairs(counts) do
        io.write(string.format(" status_%d=%d", status, n))
    end
    io.write("\n")
end
