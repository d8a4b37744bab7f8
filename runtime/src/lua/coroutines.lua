-- Lets a wait (receive, sleep, select, a channel) work inside coroutines a script creates.
-- A wait suspends the script by yielding a "pending" marker up to the scheduler; inside a
-- coroutine, that yield reaches the coroutine's resumer instead. These wrappers pass the marker
-- on up, and resume the coroutine when the scheduler resumes the script.
local pending = ...
local raw_resume, raw_yield, raw_create, raw_status =
    coroutine.resume, coroutine.yield, coroutine.create, coroutine.status

local function resume(co, ...)
    local r = table.pack(raw_resume(co, ...))
    while r[1] and r.n == 2 and r[2] == pending and raw_status(co) == "suspended" do
        r = table.pack(raw_resume(co, raw_yield(pending)))
    end
    return table.unpack(r, 1, r.n)
end

local function wrap(f)
    local co = raw_create(f)
    return function(...)
        local r = table.pack(resume(co, ...))
        if not r[1] then
            error(r[2], 0)
        end
        return table.unpack(r, 2, r.n)
    end
end

coroutine.resume = resume
coroutine.wrap = wrap
