//! Many hosts, one network: what switchd shares through a cluster store (etcd v3).
//!
//! Every node registers its VTEP under a lease; global networks, their VNIs and VLANs,
//! and the addresses of global networks are claimed with compare-and-set transactions;
//! each node's endpoints are published under its lease. Every node watches the whole
//! prefix and turns what it sees into its switch's configuration: other nodes' VTEPs
//! become tunnel peers, their endpoints static FDB entries behind those peers and ARP
//! answers of the router (ARP suppression), other nodes' addresses are never handed out.
//!
//! This module is pure, like the rest of the core: the key layout and records
//! ([`keys`]), transactions and events as values with an in-memory store of etcd's
//! semantics ([`store`]), the node's picture of the store ([`view`]) and the keys it owns
//! ([`own`]). switchd's cluster thread runs the transactions against etcd and feeds the
//! watch into a [`view::ClusterView`]; the controller turns the view's
//! [`view::Remote`] into its model (`Controller::cluster_update`).
//!
//! Contract:
//! * **Forwarding never waits on the store.** The store is read into the model, and the
//!   datapath only ever reads the model's published configuration.
//! * **Requests that need the store** (creating or removing a global network, an
//!   address of one) wait for it at most a bounded time (switchd: 2 s) and fail with
//!   `store_unavailable` ("cluster store unreachable at ..."), changing nothing.
//! * **Nothing lost, nothing twice.** The view applies events strictly after its
//!   revision; a compacted watch restarts from a fresh snapshot.
//! * **Fencing.** A node writes only its own keys (see [`keys`]).

pub mod keys;
pub mod own;
pub mod store;
pub mod view;

#[cfg(test)]
mod tests;

pub use keys::{AddressRecord, EndpointRecord, Key, NetworkRecord, NodeRecord, PREFIX};
pub use own::OwnKeys;
pub use store::{Compare, Event, EventKind, FakeStore, KeyValue, Op, Snapshot, StoreError, Txn};
pub use view::{ClusterView, Remote, RemoteEndpoint};

/// How long a node's registration outlives its last keep-alive, by default (seconds).
pub const DEFAULT_LEASE_TTL: i64 = 10;
