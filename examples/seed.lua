-- The seed's snippet, verbatim, then a check of what it received.
--   cargo run -q -p wasmproc -- lua examples/seed.lua --manifest conformance/apps/seed.yaml
local process = require("process")
local time = require("time")

-- Spawn with monitoring
local pid, err = process.spawn_monitored(
    "myns:compute_worker",   -- entry ID
    "myns:processes",        -- process group
    6, 7                     -- arguments passed to the WASM function
)

if err then
    error("spawn failed: " .. tostring(err))
end

-- Wait for the process to complete
local event = process.receive(time.seconds(10))
if event and event.type == "EXIT" then
    local result = event.value  -- return value from the WASM function
    print("EXIT from " .. tostring(event.from) .. ": " .. tostring(result))
    assert(result == 42, "expected 42, got " .. tostring(result))
    assert(event.from == pid)
else
    error("no EXIT within 10 seconds")
end
