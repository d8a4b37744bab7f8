-- The sandbox's replacements for the parts of Lua's standard library that could escape it or
-- hold a worker where the script cannot be preempted. Runs once per script, before the script,
-- with the host's hooks as arguments:
--   pending     the marker a wait yields up to the scheduler
--   steps       bounded pattern searches (pattern_api.rs); steps.MORE means "call again"
--   guard       guard.ended(): the script is being stopped (terminated, or past a limit);
--               guard.preempted(): the coroutine that just yielded was preempted by the hook;
--               guard.slice_over(): the script has computed for its slice;
--               guard.running(thread): the script now runs this thread (see step)
local pending, steps, guard = ...

local type, error, select, tostring, rawget = type, error, select, tostring, rawget
local pack, unpack, concat = table.pack, table.unpack, table.concat
local sub, byte, format = string.sub, string.byte, string.format
local ended, preempted, slice_over = guard.ended, guard.preempted, guard.slice_over
local running = guard.running
local MORE, FAIL = steps.MORE, steps.FAIL

-- This file's bytecode carries no names or lines (it is stripped: every script's state holds
-- it). So an argument the raw function would refuse is refused here first, naming the
-- function the script called, at the script's line: argument n of name, as Lua words it.
local function expect(ok, n, name, expected, v)
    if not ok then
        error(format("bad argument #%d to '%s' (%s expected, got %s)", n, name, expected,
            type(v)), 3)
    end
end

---------------------------------------------------------------------------------------------
-- Text chunks only: a binary chunk is bytecode, which Lua does not verify (a corrupted one
-- crashes the host). No string.dump to make one.
local raw_load = load
load = function(chunk, chunkname, mode, ...)
    local kind = type(chunk)
    expect(kind == "string" or kind == "function", 1, "load", "string", chunk)
    kind = type(chunkname)
    expect(chunkname == nil or kind == "string" or kind == "number", 2, "load", "string",
        chunkname)
    if select("#", ...) == 0 then
        return raw_load(chunk, chunkname, "t")
    end
    return raw_load(chunk, chunkname, "t", (...))
end
string.dump = nil

---------------------------------------------------------------------------------------------
-- require resolves the built-in modules and what the script put in package.preload; no file
-- is ever read, whatever the script sets in package.
local loaded = {
    string = string, table = table, math = math, utf8 = utf8, coroutine = coroutine,
}
local preload = {}
package = { loaded = loaded, preload = preload, path = "", cpath = "", config = "/\n;\n?\n!\n-\n" }
loaded.package = package
loaded._G = _G
require = function(name)
    if type(name) ~= "string" then
        error(format("bad argument #1 to 'require' (string expected, got %s)", type(name)), 2)
    end
    local module = loaded[name]
    if module ~= nil then
        return module
    end
    local loader = preload[name]
    if loader == nil then
        error(format("module '%s' not found: wasmproc scripts can require the built-in modules "
            .. "(process, time, channel, string, table, math, utf8, coroutine) and those in "
            .. "package.preload, never files", name), 2)
    end
    module = loader(name, ":preload:")
    if module == nil then
        module = true
    end
    loaded[name] = module
    return module
end

---------------------------------------------------------------------------------------------
-- A script being stopped cannot catch that: pcall and xpcall pass the error on.
local raw_pcall, raw_xpcall = pcall, xpcall
local function caught(ok, ...)
    if not ok and ended() then
        error((...), 0)
    end
    return ok, ...
end
pcall = function(f, ...)
    return caught(raw_pcall(f, ...))
end
xpcall = function(f, handler, ...)
    expect(type(handler) == "function", 2, "xpcall", "function", handler)
    return caught(raw_xpcall(f, handler, ...))
end

---------------------------------------------------------------------------------------------
-- Finalizers run inside the collector, where nothing can be preempted.
local raw_setmetatable = setmetatable
setmetatable = function(t, mt)
    expect(type(t) == "table", 1, "setmetatable", "table", t)
    expect(mt == nil or type(mt) == "table", 2, "setmetatable", "nil or table", mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("wasmproc scripts cannot set finalizers (__gc): they run where the script "
            .. "cannot be preempted", 2)
    end
    return raw_setmetatable(t, mt)
end

-- A full collection of a large heap is one long call: "collect" and "step" do nothing (the
-- incremental collector still runs as the script allocates).
local raw_collectgarbage = collectgarbage
local GC_OPTIONS = {
    stop = true, restart = true, count = true, isrunning = true, incremental = true,
    generational = true, setpause = true, setstepmul = true,
}
collectgarbage = function(opt, ...)
    if opt == nil or opt == "collect" then
        return 0
    elseif opt == "step" then
        return false
    end
    expect(type(opt) == "string", 1, "collectgarbage", "string", opt)
    if not GC_OPTIONS[opt] then
        error(format("bad argument #1 to 'collectgarbage' (invalid option '%s')", opt), 2)
    end
    return raw_collectgarbage(opt, ...)
end

---------------------------------------------------------------------------------------------
-- Coroutines: a wait inside a coroutine yields the pending marker, which reaches the
-- coroutine's resumer; a preemption (the hook yields the running coroutine) likewise. Both are
-- passed on up to the scheduler, and the coroutine resumed when the script is.
local raw_resume, raw_yield, raw_create, raw_status, raw_isyieldable =
    coroutine.resume, coroutine.yield, coroutine.create, coroutine.status, coroutine.isyieldable
local raw_running = coroutine.running
local PREEMPTED = {}
local CANNOT_WAIT = "cannot wait here: a coroutine waiting inside a metamethod or a library's "
    .. "callback cannot yield to the scheduler (it was closed)"

-- Resumes co once, the host told which thread computes meanwhile (its CPU-time alarm taps that
-- one when a single instruction runs long).
local function step(co, ...)
    local me = raw_running()
    running(co)
    local r = pack(raw_resume(co, ...))
    running(me)
    return r
end

-- Closing a coroutine runs its pending __close handlers in it, where they cannot yield: the
-- alarm taps that thread meanwhile, and the script's ending is passed on as resume does.
local raw_close = coroutine.close
local function closed(co)
    local me = raw_running()
    running(co)
    local r = pack(raw_close(co))
    running(me)
    return r
end

local function resume(co, ...)
    -- Checked inline: resume runs at every wait and preemption of a coroutine.
    if type(co) ~= "thread" then
        expect(false, 1, "resume", "coroutine", co)
    end
    local r = step(co, ...)
    while r[1] and raw_status(co) == "suspended" do
        if r.n == 2 and r[2] == pending then
            if not raw_isyieldable() then
                -- Nothing passes the wait up from here (a metamethod, a library's callback):
                -- closed, the coroutine lets go of what it waited on (host memory, outside the
                -- script's limit) instead of holding it for a resume that never comes. The
                -- resume fails, as when the coroutine raises an error.
                local c = closed(co)
                r = c[1] and pack(false, CANNOT_WAIT) or c
                break
            end
            r = step(co, raw_yield(pending))
        elseif (r.n == 1 and preempted()) or (r.n == 2 and r[2] == PREEMPTED) then
            if raw_isyieldable() then
                raw_yield(PREEMPTED)
            end
            r = step(co)
        else
            break
        end
    end
    if not r[1] and ended() then
        error(r[2], 0)
    end
    return unpack(r, 1, r.n)
end

local function wrap(f)
    expect(type(f) == "function", 1, "wrap", "function", f)
    local co = raw_create(f)
    return function(...)
        local r = pack(resume(co, ...))
        if not r[1] then
            error(r[2], 0)
        end
        return unpack(r, 2, r.n)
    end
end

local function close(co)
    expect(type(co) == "thread", 1, "close", "coroutine", co)
    local r = closed(co)
    if not r[1] and ended() then
        error(r[2], 0)
    end
    return unpack(r, 1, r.n)
end

coroutine.resume = resume
coroutine.wrap = wrap
coroutine.close = close

-- The hook looks at the clock every so many instructions; code that spends its time in long
-- library calls (a sliced search, a long move) runs few instructions, so it offers to yield
-- itself between calls.
local function checkpoint()
    if slice_over() and raw_isyieldable() then
        raw_yield(PREEMPTED)
    end
end

-- table.move loops in C, as many times as asked (`table.move({}, 1, 1e12, 1)`): in Lua here.
table.move = function(a1, f, e, t, a2)
    if a2 == nil then
        a2 = a1
    end
    for _, v in ipairs({ a1, a2 }) do
        if type(v) ~= "table" then
            error(format("bad argument #1 to 'move' (table expected, got %s)", type(v)), 2)
        end
    end
    f, e, t = math.tointeger(f), math.tointeger(e), math.tointeger(t)
    if f == nil or e == nil or t == nil then
        error("bad argument to 'move' (number has no integer representation)", 2)
    end
    if e >= f then
        if t > e or t <= f or a1 ~= a2 then
            for i = 0, e - f do
                a2[t + i] = a1[f + i]
                if i & 0xffff == 0xffff then
                    checkpoint()
                end
            end
        else
            for i = e - f, 0, -1 do
                a2[t + i] = a1[f + i]
                if i & 0xffff == 0 then
                    checkpoint()
                end
            end
        end
    end
    return a2
end

---------------------------------------------------------------------------------------------
-- Pattern matching: bounded searches in slices (pattern_api.rs), the loops here.
local find_step, match_step, gmatch_step, gsub_step =
    steps.find, steps.match, steps.gmatch, steps.gsub

-- Raises a step's error as Lua's own functions do: a string, at the script's line.
local function checked(r)
    if r[1] == FAIL then
        error(r[2], 3)
    end
    return r
end

local function again(step, s, p, init, plain, r)
    while checked(r)[1] == MORE do
        checkpoint()
        r = pack(step(s, p, init, plain, r[2]))
    end
    return unpack(r, 1, r.n)
end

string.find = function(s, p, init, plain)
    return again(find_step, s, p, init, plain, pack(find_step(s, p, init, plain)))
end

string.match = function(s, p, init)
    return again(match_step, s, p, init, nil, pack(match_step(s, p, init)))
end

string.gmatch = function(s, p, init)
    local step = checked(pack(gmatch_step(s, p, init)))[1]
    return function()
        local r = pack(step())
        while checked(r)[1] == MORE do
            checkpoint()
            r = pack(step())
        end
        return unpack(r, 1, r.n)
    end
end

local function checkstring(v, n)
    local t = type(v)
    if t == "string" then
        return v
    elseif t == "number" then
        return tostring(v)
    end
    error(format("bad argument #%d to 'gsub' (string expected, got %s)", n,
        v == nil and "no value" or t), 3)
end

string.gsub = function(s, p, repl, max_n)
    s, p = checkstring(s, 1), checkstring(p, 2)
    local tr = type(repl)
    if tr == "number" then
        repl, tr = tostring(repl), "string"
    elseif tr ~= "string" and tr ~= "function" and tr ~= "table" then
        error(format("bad argument #3 to 'gsub' (string/function/table expected, got %s)",
            repl == nil and "no value" or tr), 2)
    end
    if max_n == nil then
        max_n = #s + 1
    elseif math.type(max_n) ~= "integer" then
        local n = math.tointeger(max_n)
        if n == nil then
            error(format("bad argument #4 to 'gsub' (number has no integer representation)"), 2)
        end
        max_n = n
    end
    local anchor = byte(p, 1) == 94 -- '^'
    if anchor then
        p = sub(p, 2)
    end
    local out, nout, n, changed, src, last = {}, 0, 0, false, 1, nil
    local srepl = tr == "string" and repl or nil
    while n < max_n do
        local r = pack(gsub_step(s, p, anchor, src, last, srepl))
        while checked(r)[1] == MORE do
            checkpoint()
            r = pack(gsub_step(s, p, anchor, r[2], last, srepl))
        end
        local start, e = r[1], r[2]
        if start == nil then
            break
        end
        if start > src then
            nout = nout + 1
            out[nout] = sub(s, src, start - 1)
        end
        n = n + 1
        local value
        if tr == "string" then
            value = r[3]
        elseif tr == "function" then
            value = repl(unpack(r, 3, r.n))
        else
            value = repl[r[3]]
        end
        if not value then
            value = sub(s, start, e)
        elseif type(value) == "string" or type(value) == "number" then
            changed = true
        else
            error(format("invalid replacement value (a %s)", type(value)), 2)
        end
        nout = nout + 1
        out[nout] = value
        src, last = e + 1, e
        if anchor then
            break
        end
    end
    if not changed then
        return s, n
    end
    nout = nout + 1
    out[nout] = sub(s, src)
    return concat(out), n
end

---------------------------------------------------------------------------------------------
-- table.sort calls its comparator from C, where the script cannot be preempted: a merge sort
-- here instead (stable, O(n log n) comparisons whatever the comparator answers).
local function less_than(a, b)
    return a < b
end

table.sort = function(t, lt)
    if type(t) ~= "table" then
        error(format("bad argument #1 to 'sort' (table expected, got %s)",
            t == nil and "no value" or type(t)), 2)
    end
    if lt == nil then
        lt = less_than
    elseif type(lt) ~= "function" then
        error(format("bad argument #2 to 'sort' (function expected, got %s)", type(lt)), 2)
    end
    local n = #t
    if n < 2 then
        return
    end
    local a, b = {}, {}
    for i = 1, n do
        a[i] = t[i]
    end
    local width = 1
    while width < n do
        local i = 1
        while i <= n do
            local mid, hi = i + width, i + 2 * width
            if mid > n + 1 then mid = n + 1 end
            if hi > n + 1 then hi = n + 1 end
            local l, r, k = i, mid, i
            while l < mid and r < hi do
                if lt(a[r], a[l]) then
                    b[k], r = a[r], r + 1
                else
                    b[k], l = a[l], l + 1
                end
                k = k + 1
            end
            while l < mid do
                b[k], l, k = a[l], l + 1, k + 1
            end
            while r < hi do
                b[k], r, k = a[r], r + 1, k + 1
            end
            i = hi
        end
        a, b = b, a
        width = width * 2
    end
    for i = 1, n do
        t[i] = a[i]
    end
end
