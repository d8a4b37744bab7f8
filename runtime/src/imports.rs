//! The imports allowlist: an entry's `imports:` decides which host interfaces are linked for
//! it, and a binary that imports anything outside them is refused at load.
//!
//! Every family is added to the linker by the same mechanism (`add`), so what the allowlist
//! allows is exactly what gets linked.

use std::collections::BTreeSet;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
use wasmtime_wasi::WasiView;

use crate::manifest::Family;
use crate::store_data::ComponentData;

/// The families an entry may use: those it lists, and those their types need.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grants(BTreeSet<Family>);

impl Grants {
    /// The listed families and those they imply.
    pub fn new(listed: &[Family]) -> Grants {
        let mut set = BTreeSet::new();
        for family in listed {
            set.insert(*family);
            set.extend(family.implies().iter().copied());
        }
        Grants(set)
    }

    /// True when `import` (an interface name) belongs to a granted family.
    pub fn allows(&self, import: &str) -> bool {
        Family::of_import(import).is_some_and(|f| self.0.contains(&f))
    }

    /// True when `family` is granted, listed or implied.
    pub fn has(&self, family: Family) -> bool {
        self.0.contains(&family)
    }

    pub(crate) fn families(&self) -> impl Iterator<Item = Family> + '_ {
        self.0.iter().copied()
    }
}

/// A linker with exactly the granted families.
pub fn linker(engine: &Engine, grants: &Grants) -> wasmtime::Result<Linker<ComponentData>> {
    let mut linker = Linker::new(engine);
    for family in grants.families() {
        add(&mut linker, family)?;
    }
    Ok(linker)
}

/// A linker with exactly the granted families, in WASI 0.2 and, where wasmproc provides it,
/// WASI 0.3 (an engine with concurrency support only: WASI 0.3 functions are async ones).
/// WASI 0.3 guests import both versions, as toolchains build them today.
pub fn concurrent_linker(
    engine: &Engine,
    grants: &Grants,
) -> wasmtime::Result<Linker<ComponentData>> {
    let mut linker = linker(engine, grants)?;
    for family in grants.families() {
        add_p3(&mut linker, family)?;
    }
    Ok(linker)
}

/// Whether wasmproc links the WASI 0.3 interface `import` names (`wasi:filesystem` with the
/// same guard against special files as WASI 0.2's, [`crate::special_files`]; `wasi:sockets`
/// under the same network policy: its sockets are wasmtime-wasi's WASI 0.2 ones, which ask the
/// context's address check before each use; `wasi:http`'s `types` and `client`, whose requests
/// go through the same [`crate::network::http`] sender as WASI 0.2's, under the entry's policy).
pub fn links_p3(import: &str) -> bool {
    match Family::of_import(import) {
        Some(Family::Http) => {
            import.starts_with("wasi:http/types@") || import.starts_with("wasi:http/client@")
        }
        Some(family) => family != Family::Io,
        None => false,
    }
}

fn add_p3(l: &mut Linker<ComponentData>, family: Family) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3;
    match family {
        Family::Cli => p3::cli::add_to_linker(l),
        Family::Clocks => p3::clocks::add_to_linker(l),
        Family::Random => p3::random::add_to_linker(l),
        Family::Filesystem => {
            p3::filesystem::add_to_linker(l)?;
            crate::special_files::guard_open_at_p3(l)?;
            crate::write_quota::p3::charge_writes(l)?;
            crate::directory_listing::list_in_batches(l)?;
            crate::file_operations::p3::take_turns(l)
        }
        Family::Sockets => {
            use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
            p3::bindings::sockets::types::add_to_linker::<_, WasiSockets>(
                l,
                ComponentData::sockets,
            )?;
            crate::network::sockets::guard_creation_p3(l)?;
            // wasmproc's own, each process's lookups bounded.
            crate::network::name_lookup::add_to_linker_p3(l)
        }
        Family::Http => {
            wasmtime_wasi_http::p3::add_to_linker(l)?;
            crate::network::http_parts::guard_p3(l)
        }
        // WASI 0.3 has no `wasi:io`: streams and futures are the component model's own.
        Family::Io => Ok(()),
    }
}

/// `wasi:io` resources live in the store's resource table.
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn add(l: &mut Linker<ComponentData>, family: Family) -> wasmtime::Result<()> {
    type T = ComponentData;
    match family {
        Family::Io => {
            use wasmtime_wasi_io::bindings::wasi::io;
            io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
            io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
            io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
        }
        Family::Clocks => {
            use bindings::clocks;
            clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
            clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        }
        Family::Cli => {
            use bindings::cli;
            cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
            cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        }
        Family::Filesystem => {
            bindings::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
            bindings::filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
            crate::special_files::guard_open_at(l)?;
            crate::write_quota::p2::charge_writes(l)?;
            crate::directory_listing::bound_p2_listings(l)?;
            crate::file_operations::p2::take_turns(l)?;
        }
        Family::Random => {
            use bindings::random;
            random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
            random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
            random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
        }
        Family::Sockets => {
            use bindings::sockets;
            sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
            sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
            sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
            sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
            sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
            sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
            crate::network::sockets::guard_creation(l)?;
            // wasmproc's own, each process's lookups bounded.
            crate::network::name_lookup::add_to_linker(l)?;
        }
        Family::Http => {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
            crate::network::http_parts::guard(l)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_include_the_families_their_types_need() {
        let grants = Grants::new(&[Family::Cli]);
        assert!(grants.allows("wasi:cli/stdout@0.2.12"));
        assert!(grants.allows("wasi:io/streams@0.2.12"));
        assert!(!grants.allows("wasi:filesystem/preopens@0.2.12"));
        assert!(!grants.allows("acme:telemetry/log"));
        let grants = Grants::new(&[Family::Filesystem]);
        assert!(grants.allows("wasi:clocks/wall-clock@0.2.0"));
        assert!(!grants.allows("wasi:cli/environment@0.2.0"));
        assert!(!Grants::new(&[]).allows("wasi:io/poll@0.2.0"));
    }

    #[test]
    fn every_family_links() {
        let engine = Engine::default();
        let all = Grants::new(&Family::ALL);
        linker(&engine, &all).expect("all families link together");
        let pool = crate::engine::Pool {
            processes: 0,
            ..Default::default()
        };
        let concurrent = Engine::new(&crate::engine::concurrent_config(
            pool,
            crate::engine::Fuel::Counted,
        ))
        .unwrap();
        concurrent_linker(&concurrent, &all).expect("both WASI versions link together");
    }
}
