-- wrk script of the full-build test (pages.rs): GETs the paths given after `--` in
-- turn, counts the answers that are not 200 or whose body does not end with </html>
-- (cut short), and prints, when done, one line the test reads:
--   flotilla-wrk requests=N bad=N connect=N read=N write=N timeout=N status=N
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    paths = args
    sent = 0
    bad = 0
end

function request()
    sent = sent + 1
    return wrk.format("GET", paths[(sent % #paths) + 1])
end

function response(status, headers, body)
    if status ~= 200 or not string.find(body, "</html>%s*$") then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
        total = total + thread:get("bad")
    end
    local e = summary.errors
    io.write(string.format(
        "flotilla-wrk requests=%d bad=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
        summary.requests, total, e.connect, e.read, e.write, e.timeout, e.status))
end
