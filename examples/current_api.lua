-- Wippy's current form: an events channel, and channel.select with a timeout.
local process = require("process")
local time = require("time")
local channel = require("channel")

local pid, err = process.spawn_monitored("myns:compute_worker", "myns:processes", 6, 7)
assert(pid, err)
local events = process.events()
local event = events:receive()
if event and event.kind == process.event.EXIT then
    local result = event.result.value
    assert(result == 42, "expected 42, got " .. tostring(result))
end

-- With a timeout: the EXIT wins over a 10 s timer...
process.spawn_monitored("myns:compute_worker", "myns:processes", 2, 3)
local timeout = time.after(time.seconds(10))
local fired = channel.select({ events:case_receive(), timeout:case_receive() })
assert(fired.channel == events and fired.ok and fired.value.result.value == 6)

-- ...and a 50 ms timer wins when nothing comes.
local quick = time.after(time.milliseconds(50))
fired = channel.select({ events:case_receive(), quick:case_receive() })
assert(fired.channel == quick, "expected the timer to fire")
print("ok")
