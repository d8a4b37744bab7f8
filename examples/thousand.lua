-- 1,000 processes spawned from Lua; every EXIT collected, each once.
local pending = {}
for i = 1, 1000 do
    local pid, err = process.spawn_monitored("myns:compute_worker", "myns:processes", i, 2)
    assert(pid, err)
    pending[tostring(pid)] = i * 2
end
for _ = 1, 1000 do
    local event = process.receive(time.seconds(30))
    assert(event, "an EXIT is missing")
    local key = tostring(event.from)
    assert(pending[key] == event.value, "unexpected EXIT from " .. key)
    pending[key] = nil
end
assert(next(pending) == nil, "some EXITs never came")
assert(process.receive(time.milliseconds(50)) == nil, "an EXIT came twice")
print("1000 EXITs")
