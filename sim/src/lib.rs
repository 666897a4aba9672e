//! lafs-sim: deterministic simulation of a lafs grid in virtual time.
//!
//! Real lafs-core state machines (immutable `Upload`/`Download` on the client side,
//! `StorageServer` over `MemoryShareStore` on the server side) exchange messages through a
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
//! - [`world`]: the engine, the drain rule, fault injection and the invariant checks;
//! - [`report`], [`trace`]: what a run found, and its event trace;
//! - [`sweep`]: many seeds; [`seeds`]: `SIM_SEED` / `SIM_SEEDS` parsing;
//! - [`dsl`]: the old Tahoe DSL performance experiment.
//!
//! Invariants checked on every run: downloads only ever release the uploaded bytes, in order;
//! an acknowledged upload is happy and its shares are committed where it says; every operation
//! ends before its deadline (a hang is reported with the op's `poll_timeout`); a download of an
//! intact file before any fault succeeds; and, after healing every fault, each acknowledged
//! file with at least k good shares left downloads correctly. Violations that match a known,
//! still-open lafs-core bug are reported apart ([`Violation::known_core_bug`]).
//!
//! Run it: `cargo run -p lafs-sim --release -- sweep --seeds 0..1000`, replay one seed with
//! `SIM_SEED=N cargo run -p lafs-sim --release -- run --trace`, the DSL experiment with
//! `... -- dsl`; CI's bounded sweep is `cargo test -p lafs-sim` (`SIM_SEEDS=A..B` to widen it).

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
pub use plan::{Fault, OpSpec, Plan, PlannedFault, PlannedOp, SimParams, Start};
pub use report::{RunReport, Violation};
pub use sweep::{repro_command, run_seed, SweepSummary};
pub use world::Sim;
