;; The least a WASI 0.3 sleeping process can be: a component whose `sleep(ms)` is an async
;; export with the callback ABI. It starts `wasi:clocks/monotonic-clock` `wait-for` as a
;; subtask, returns WAIT on a waitable set holding it, and its callback, called when the
;; subtask returned, returns the value with `task.return`. One core instance, no memory or
;; table. `sleepers/100k` runs it beside `minimal_sleeper.wat` (the same with WASI 0.2, which
;; blocks on a pollable) to show what waiting with the async ABI costs.
(component
  (import "wasi:clocks/monotonic-clock@0.3.0" (instance $clock
    (export "wait-for" (func async (param "how-long" u64)))))
  (core func $wait_for (canon lower (func $clock "wait-for") async))
  (core func $set_new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $drop (canon subtask.drop))
  (core func $return (canon task.return (result u32)))
  (core module $m
    (import "host" "wait-for" (func $wait_for (param i64) (result i32)))
    (import "host" "waitable-set.new" (func $set_new (result i32)))
    (import "host" "waitable.join" (func $join (param i32 i32)))
    (import "host" "subtask.drop" (func $drop (param i32)))
    (import "host" "task.return" (func $return (param i32)))
    (global $ms (mut i32) (i32.const 0))
    ;; Callback codes: EXIT 0, WAIT 2 (with the set's handle above 4 bits); a subtask's
    ;; status: RETURNED 2 (with its handle above 4 bits when it did not return at once).
    (func (export "sleep") (param $ms i32) (result i32)
      (local $status i32)
      (local $set i32)
      (global.set $ms (local.get $ms))
      (local.set $status
        (call $wait_for (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      (if (i32.eq (i32.and (local.get $status) (i32.const 0xf)) (i32.const 2))
        (then
          (call $return (local.get $ms))
          (return (i32.const 0))))
      (local.set $set (call $set_new))
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (local.get $set))
      (i32.or (i32.const 2) (i32.shl (local.get $set) (i32.const 4))))
    ;; Called with the SUBTASK event (1) when `wait-for` returned.
    (func (export "callback") (param $event i32) (param $subtask i32) (param $state i32) (result i32)
      (call $join (local.get $subtask) (i32.const 0))
      (call $drop (local.get $subtask))
      (call $return (global.get $ms))
      (i32.const 0)))
  (core instance $host
    (export "wait-for" (func $wait_for))
    (export "waitable-set.new" (func $set_new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $drop))
    (export "task.return" (func $return)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "sleep") async (param "ms" u32) (result u32)
    (canon lift (core func $i "sleep") async (callback (core func $i "callback")))))
