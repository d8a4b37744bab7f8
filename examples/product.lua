-- A script with arguments and a result: spawns compute a * b and returns what came back.
--   cargo run -q -p wasmproc -- lua examples/product.lua --manifest conformance/apps/seed.yaml 6 7
local a, b = ...
local pid, err = process.spawn_monitored("myns:compute_worker", "myns:processes", a, b)
if not pid then
    return nil, err
end
local event = process.receive(time.seconds(10))
if not event then
    return nil, "no EXIT within 10 s"
end
return { product = event.result.value, args = { a, b } }
