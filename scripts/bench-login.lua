-- wrk script: each request signs in the bench account (make bench); the address is
-- passed as the first argument after `--`.
local body

init = function(args)
    body = string.format('{"email":"%s","password":"correct horse battery staple"}', args[1])
end

request = function()
    return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" }, body)
end
