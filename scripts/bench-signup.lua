-- wrk script: each request signs up a new address (make bench).
local counter = 0
local prefix = tostring(math.random(1, 1000000000))

request = function()
    counter = counter + 1
    local body = string.format(
        '{"email":"bench-%s-%d-%d@example.org","password":"correct horse battery staple"}',
        prefix, counter, math.random(1, 1000000000))
    return wrk.format("POST", "/signup", { ["Content-Type"] = "application/json" }, body)
end
