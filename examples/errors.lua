-- Spawn errors come back as nil, err; a receive with nothing to receive returns nil.
local pid, err = process.spawn_monitored("myns:no_such_entry", "myns:processes")
assert(pid == nil, "spawn of an unknown entry returned a PID")
assert(string.find(err, "unknown_entry", 1, true), err)
local _, err2 = process.spawn_monitored("myns:compute_worker", "myns:processes", "six", 7)
assert(string.find(err2, "bad_argument", 1, true), err2)
assert(process.receive(time.milliseconds(50)) == nil, "an event out of nowhere")
-- Wippy's current event shape, and a trap's error.
local p = process.spawn_monitored("myns:compute_worker", "myns:processes", 2, 21)
local e = process.receive(time.seconds(10))
assert(e.kind == process.event.EXIT and e.from == p and e.result.value == 42)
print("ok")
