//! lafs-sim: deterministic simulation of a lafs grid in virtual time.
//!
//! Real lafs-core state machines (immutable `Upload`/`Download` and mutable `Publish`/`Retrieve`
//! on the client side, `StorageServer` over `MemoryShareStore` on the server side) exchange messages through a
//! modelled network (latency, jitter, one FIFO uplink per node, ordered connections, resets,
//! partitions, stalls) while seeded faults crash servers, fill disks, corrupt and lose shares.
//! One seed drives everything, so `SIM_SEED=N` replays a run exactly.
//!
//! Modules, one concept each:
//! - [`rng`]: per-concern random streams derived from the seed;
//! - [`queue`]: the (virtual time, sequence) event queue;
//! - [`net`]: connections, uplinks, partitions, delay spikes;
//! - [`plan`]: what a run does (grid, workload, faults) as plain data;
//! - [`generate`]: random plans from a seed;
//! - [`dir_model`]: what each directory must link, and the checks against it;
//! - [`world`]: the engine, the drain rule, fault injection and the invariant checks;
//! - [`report`], [`trace`]: what a run found, and its event trace;
//! - [`sweep`]: many seeds; [`seeds`]: `SIM_SEED` / `SIM_SEEDS` parsing;
//! - [`dsl`]: the old Tahoe DSL performance experiment;
//! - [`keys`]: the fixed RSA keys mutable files are created with (no key generation in a run).
//!
//! Operation kinds in the seeded workloads: immutable uploads, re-uploads and downloads (whole
//! and ranged); grid status queries; directory creates, links, unlinks, listings, lookups and
//! renames (model and checks in [`dir_model`]); in-place modifies of MDMF files; mutable
//! creates (SDMF, MDMF small and multi-segment), updates with the writer's last servermap
//! (warm, possibly stale) or cold, bursts of two or three writers updating one file within a
//! few milliseconds (the losers get `Conflict`), and whole or ranged (MDMF) reads, some in the
//! middle of a race. The mutable part comes from its own random stream, so it left every seed's
//! immutable workload as it was.
//!
//! Invariants checked on every run: downloads only ever release the uploaded bytes, in order;
//! an acknowledged upload is happy and its shares are committed where it says; every operation
//! ends before its deadline (a hang is reported with the op's `poll_timeout`); a download of an
//! intact file before any fault succeeds; and, after healing every fault, each acknowledged
//! file with at least k good shares left downloads correctly. For mutable files: a read
//! releases exactly (the asked range of) one version some publish wrote, acknowledged or not
//! (a publish that lost a race may still have landed whole shares) — never a mix; a read that
//! started after version V was acknowledged, and ran while no fault struck, returns V or a newer
//! version whenever k good shares of V sat on the servers it heard from; every share an
//! acknowledged publish claims holds its version or a newer one; and, after healing, each file
//! whose newest acknowledged version kept k good shares reads back. Violations that match a known,
//! still-open lafs-core bug are reported apart ([`Violation::known_core_bug`]).
//!
//! Run it: `cargo run -p lafs-sim --release -- sweep --seeds 0..1000`, replay one seed with
//! `SIM_SEED=N cargo run -p lafs-sim --release -- run --trace`, the DSL experiment with
//! `... -- dsl`; CI's bounded sweep is `cargo test -p lafs-sim` (`SIM_SEEDS=A..B` to widen it).

pub mod dir_model;
pub mod dsl;
pub mod generate;
pub mod keys;
pub mod net;
pub mod plan;
pub mod queue;
pub mod report;
pub mod rng;
pub mod seeds;
pub mod sweep;
pub mod trace;
pub mod world;

pub use generate::{random_plan, WorkloadConfig};
pub use plan::{DirCall, Fault, OpSpec, Plan, PlannedFault, PlannedOp, SimParams, Start};
pub use report::{RunReport, Violation};
pub use sweep::{repro_command, run_seed, SweepSummary};
pub use world::Sim;
