//! What a process may reach on the network: the entry's policy (`network:`), the classes of
//! addresses it treats apart, and its enforcement in `wasi:http` and `wasi:sockets`.

pub mod address;
pub(crate) mod http;
pub(crate) mod http_parts;
pub(crate) mod lookup;
pub(crate) mod name_lookup;
pub mod policy;
pub mod sockets;

pub use policy::NetworkPolicy;
