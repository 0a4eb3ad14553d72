-- wrk script: the admin console's user search (make bench), a mix of what an operator
-- asks: the first pages (newest first, each filter), prefix searches of 1 to 4 letters
-- (any case, some with a filter), and, one request in two after a page with more, the
-- next page of the search before it (its `next` cursor). The bearer token comes with
-- -H "Authorization: Bearer …". Each thread keeps its own cursor: run it with one
-- connection per thread (-tN -cN), so that a thread's answers come in its order.
local searches = {
    "", "?status=verified", "?status=unverified", "?status=disabled", "?status=closed",
    "?role=admin", "?role=user&status=verified",
    "?q=a", "?q=m", "?q=j", "?q=s", "?q=t", "?q=x",
    "?q=jo", "?q=ma", "?q=da", "?q=bl", "?q=Li", "?q=ze",
    "?q=ada", "?q=mar", "?q=smi", "?q=tur", "?q=Dav", "?q=zen", "?q=nov",
    "?q=john", "?q=blue", "?q=hopp", "?q=oliv", "?q=sofi", "?q=rust",
    "?q=ada&status=verified", "?q=mi&status=unverified", "?q=s&role=user",
}
local last, cursor

init = function(args)
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

request = function()
    local path
    if cursor and math.random() < 0.5 then
        local sep = (last == "" and "?") or "&"
        path = "/admin/users" .. last .. sep .. "after=" .. cursor
    else
        last = searches[math.random(#searches)]
        path = "/admin/users" .. last
    end
    return wrk.format("GET", path)
end

response = function(status, headers, body)
    cursor = body and body:match('"next":"([%w_%-]+)"')
end
