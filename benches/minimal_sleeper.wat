;; The least a sleeping process can be: a component whose `sleep(ms)` subscribes to the
;; monotonic clock and blocks on the pollable, with one core instance and no linear memory or
;; table. `sleepers/100k` runs it beside the `hostile` guest's `sleep` (a Rust WASI 0.2 guest:
;; three core instances, a 17-page memory) to tell what the runtime costs per process from what
;; the guest's own shape does.
(component $C
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p'))))))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $drop (canon resource.drop $pollable))
  (core module $m
    (import "host" "block" (func $block (param i32)))
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "drop" (func $drop (param i32)))
    (func (export "sleep") (param $ms i32) (result i32)
      (local $p i32)
      (local.set $p
        (call $subscribe (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      (call $block (local.get $p))
      (call $drop (local.get $p))
      (local.get $ms)))
  (core instance $host
    (export "block" (func $block))
    (export "subscribe" (func $subscribe))
    (export "drop" (func $drop)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "sleep") (param "ms" u32) (result u32) (canon lift (core func $i "sleep"))))
