//! `n` spawn → EXIT round trips of the compute guest, 64 in flight on 2 workers, through
//! wasmproc or through bare wasmtime as `spawn_exit/compute` does them: the program that
//! `benches/instructions.sh` runs under callgrind to count the instructions each side spends
//! per spawn. Unlike time on this shared machine, that count does not move between runs.
//!
//!     spawn_instructions wasmproc|bare|bare_metered N

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use wasmproc_runtime::engine::{self, Pool, SLICE_TICKS};
use wasmproc_runtime::{Mailbox, Runtime};
use wasmtime::component::{Component, Linker, Val};
use wasmtime::{Engine, Store, UpdateDeadline};

const IN_FLIGHT: u64 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(side), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: spawn_instructions wasmproc|bare|bare_metered N");
        std::process::exit(2);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match side.as_str() {
        "wasmproc" => wasmproc(root, n),
        "bare" => bare(root, n, false),
        "bare_metered" => bare(root, n, true),
        other => {
            eprintln!("unknown side `{other}`: wasmproc, bare or bare_metered");
            std::process::exit(2);
        }
    }
}

/// The runtime, as `spawn_exit/compute/wasmproc` drives it.
fn wasmproc(root: &Path, n: u64) {
    let rt = Runtime::load(&root.join("bench.yaml")).unwrap();
    let args = [json!(6), json!(7)];
    let mut mailbox = Mailbox::new();
    let (mut spawned, mut done) = (0, 0);
    while done < n {
        while spawned < n && spawned - done < IN_FLIGHT {
            rt.spawn_monitored("bench:compute", "bench:two_workers", &args, &mailbox)
                .unwrap();
            spawned += 1;
        }
        let exit = mailbox.receive_blocking(None).unwrap().unwrap();
        assert!(exit.into_exit().is_some_and(|e| e.outcome.is_ok()));
        done += 1;
    }
}

/// `bare_pooling_tuned` (wasmproc's engine configuration, no runtime), metered like wasmproc's
/// stores or not.
fn bare(root: &Path, n: u64, metered: bool) {
    let mut config = engine::config(Pool::from_env().unwrap(), engine::Fuel::NotCounted);
    config.consume_fuel(metered).epoch_interruption(metered);
    let engine = Engine::new(&config).unwrap();
    let bytes = std::fs::read(root.join("../guests/dist/compute.wasm")).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let export = component.get_export_index(None, "compute").unwrap();
    let pre = Linker::new(&engine).instantiate_pre(&component).unwrap();
    let scheduler = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    scheduler.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (engine, pre) = (engine.clone(), pre.clone());
            tasks.spawn(async move {
                let mut store = Store::new(&engine, ());
                if metered {
                    store.set_fuel(u64::MAX).unwrap();
                    store.set_epoch_deadline(SLICE_TICKS);
                    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(SLICE_TICKS)));
                }
                let instance = pre.instantiate_async(&mut store).await.unwrap();
                let func = instance.get_func(&mut store, export).unwrap();
                let mut result = [Val::S32(0)];
                func.call_async(&mut store, &[Val::S32(6), Val::S32(7)], &mut result)
                    .await
                    .unwrap();
                drop(permit);
                assert_eq!(result[0], Val::S32(42));
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
}
