-- wrk script: a light probe, one request per connection every 10 ms (about 100/s a
-- connection), so that measuring a route's latency does not take the CPU it measures.
function delay()
    return 10
end
