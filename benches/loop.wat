;; A guest that only computes: `run(n)` sums (i * i) mod 1,000,003 for i below n, in a loop
;; that calls nothing. `guest_loop` times it through wasmproc (fuel counted or not) beside bare
;; wasmtime, to show what metering costs a guest's own code.
(component
  (core module $m
    (func (export "run") (param $n i64) (result i64)
      (local $i i64) (local $acc i64)
      (loop $next
        (local.set $acc
          (i64.add (local.get $acc)
            (i64.rem_u (i64.mul (local.get $i) (local.get $i)) (i64.const 1000003))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br_if $next (i64.lt_u (local.get $i) (local.get $n))))
      (local.get $acc)))
  (core instance $i (instantiate $m))
  (func (export "run") (param "n" u64) (result u64) (canon lift (core func $i "run"))))
