//! The e2e driver over lafs-sim: the same scenario in virtual time.
//!
//! The simulator runs a whole [`Plan`] at once, so this driver keeps the plan of everything
//! asked so far and, at each call, appends the new step and simulates the plan again from the
//! start. A run is a pure function of its plan and seed, so the earlier steps replay exactly
//! and the new step's outcome is read from the fresh report. Steps are placed one after
//! another in virtual time; a server "stopped" is a loud crash whose restart time is filled
//! in when the suite restarts it. Downloaded bytes are checked by the simulator itself against
//! the uploaded ones (any mismatch is a violation, which fails the test here), so a successful
//! download returns [`contents`].

use std::collections::BTreeMap;

use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::time::{Duration, Instant};
use lafs_sim::net::NetConfig;
use lafs_sim::report::{OpKind, OpTiming};
use lafs_sim::world::DirResult;
use lafs_sim::{
    DirCall, Fault, OpSpec, Plan, PlannedFault, PlannedOp, RunReport, Sim, SimParams, Start,
};

use super::{
    contents, path, DirDriver, Driver, Fetched, Op, OpResult, Setup, Uploaded, CONTENT_SEED,
};

/// A crashed server stays down this long unless restarted.
const FOREVER: Duration = Duration::from_secs(1_000_000);
/// Virtual time between consecutive steps.
const STEP_GAP: Duration = Duration::from_millis(1);

/// A simulated grid of `StorageServer`s over memory stores and one client.
#[derive(Debug)]
pub struct SimDriver {
    plan: Plan,
    /// When the next step starts.
    cursor: Instant,
    /// For each server down now, the index of its crash in `plan.faults`.
    down: BTreeMap<usize, usize>,
    /// The latest run (for share queries) and its report.
    sim: Option<Sim>,
    report: RunReport,
}

impl SimDriver {
    /// Simulate the plan so far; any invariant violation fails the test.
    fn run(&mut self) {
        let mut sim = Sim::new(&self.plan, false);
        let report = sim.run_to_end();
        assert!(
            report.violations.is_empty(),
            "lafs-sim found violations: {:#?}",
            report.violations
        );
        self.sim = Some(sim);
        self.report = report;
    }

    fn push_op(&mut self, at: Instant, spec: OpSpec) {
        self.plan.ops.push(PlannedOp {
            start: Start::At(at),
            client: 0,
            spec,
        });
    }

    fn push_fault(&mut self, fault: Fault) -> usize {
        self.plan.faults.push(PlannedFault {
            at: self.cursor,
            fault,
        });
        self.cursor = self.cursor + STEP_GAP;
        self.plan.faults.len() - 1
    }

    /// File `file` is plan file `file`: add the sizes of any files not planned yet.
    fn plan_file(&mut self, file: usize, size: u64) {
        if self.plan.files.len() <= file {
            self.plan.files.resize(file + 1, 0);
        }
        self.plan.files[file] = size;
    }

    fn timing(&self, kind: OpKind, file: usize, start: Instant) -> OpTiming {
        self.report
            .timings
            .iter()
            .find(|t| t.kind == kind && t.file == file && t.start == start)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind:?} of file {file} at {start:?}"))
    }

    fn uploaded(&self, file: usize, t: &OpTiming) -> Result<Uploaded, String> {
        if !t.ok {
            return Err(format!("upload failed: {:?}", self.report.failure_reasons));
        }
        let sim = self.sim.as_ref().expect("a run happened");
        let holders = match sim.storage_index(file) {
            Some(si) => (0..self.plan.net.servers)
                .filter(|&s| {
                    sim.store(s)
                        .list_shares(&si)
                        .is_ok_and(|shares| !shares.is_empty())
                })
                .collect(),
            None => Default::default(),
        };
        Ok(Uploaded { holders })
    }

    fn fetched(&self, file: usize, t: &OpTiming, corrupt_before: u64) -> Result<Fetched, String> {
        if !t.ok {
            return Err(format!(
                "download failed: {:?}",
                self.report.failure_reasons
            ));
        }
        Ok(Fetched {
            bytes: contents(file, self.plan.files[file]),
            corrupt_shares: (self.report.corrupt_shares_detected - corrupt_before) as usize,
        })
    }

    /// How the publish of mutable `file` that started at `start` ended.
    fn published(&self, file: usize, start: Instant) -> Result<(), String> {
        let t = self.timing(OpKind::Publish, file, start);
        if t.ok {
            Ok(())
        } else {
            Err(format!(
                "mutable write failed: {:?}",
                self.report.failure_reasons
            ))
        }
    }

    /// Run the plan with the ops just appended (all starting at `start`), and move the cursor
    /// past the last of them.
    fn run_step(&mut self, start: Instant) {
        self.run();
        let end = self
            .report
            .timings
            .iter()
            .filter(|t| t.start == start)
            .map(|t| t.end)
            .max()
            .unwrap_or(start);
        self.cursor = end + STEP_GAP;
    }
}

use lafs_core::store::ShareStore as _;

impl Driver for SimDriver {
    const NAME: &'static str = "lafs-sim";

    fn start(setup: Setup) -> Self {
        let params = SimParams {
            encoding: setup.encoding,
            request_timeout: Duration::from_secs(5),
            final_check: false,
            codec: setup.codec,
            ..SimParams::default()
        };
        let plan = Plan {
            seed: CONTENT_SEED,
            params,
            // 2 ms one-way, 100 MB/s uplinks: a loopback-like LAN.
            net: NetConfig::uniform(
                1,
                setup.servers,
                Duration::from_millis(2),
                100_000_000,
                100_000_000,
            ),
            files: Vec::new(),
            ops: Vec::new(),
            faults: Vec::new(),
            dir_calls: Vec::new(),
        };
        SimDriver {
            plan,
            cursor: Instant(1_000),
            down: BTreeMap::new(),
            sim: None,
            report: RunReport::default(),
        }
    }

    /// Every codec: `SimParams::codec` picks the uploads' code.
    fn supports(_codec: CodecKind) -> bool {
        true
    }

    fn upload(&mut self, file: usize, size: u64) -> Result<Uploaded, String> {
        self.plan_file(file, size);
        let start = self.cursor;
        self.push_op(start, OpSpec::Upload { file });
        self.run_step(start);
        let t = self.timing(OpKind::Upload, file, start);
        self.uploaded(file, &t)
    }

    fn upload_killing(
        &mut self,
        file: usize,
        size: u64,
        server: usize,
    ) -> Result<Uploaded, String> {
        // Dry run to learn when the upload would be half-way, then crash the server then.
        self.plan_file(file, size);
        let start = self.cursor;
        self.push_op(start, OpSpec::Upload { file });
        self.run();
        let t = self.timing(OpKind::Upload, file, start);
        let mid = Instant(t.start.0 + (t.end.0 - t.start.0) / 2);
        self.plan.faults.push(PlannedFault {
            at: mid,
            fault: Fault::Crash {
                server,
                loud: true,
                down_for: FOREVER,
            },
        });
        self.down.insert(server, self.plan.faults.len() - 1);
        self.run_step(start);
        let t = self.timing(OpKind::Upload, file, start);
        self.uploaded(file, &t)
    }

    fn download(&mut self, file: usize) -> Result<Fetched, String> {
        let corrupt_before = self.report.corrupt_shares_detected;
        let start = self.cursor;
        self.push_op(start, OpSpec::Download { file });
        self.run_step(start);
        let t = self.timing(OpKind::Download, file, start);
        self.fetched(file, &t, corrupt_before)
    }

    fn concurrently(&mut self, ops: &[Op]) -> Vec<OpResult> {
        let start = self.cursor;
        for op in ops {
            match *op {
                Op::Upload { file, size } => {
                    self.plan_file(file, size);
                    self.push_op(start, OpSpec::Upload { file });
                }
                Op::Download { file } => self.push_op(start, OpSpec::Download { file }),
            }
        }
        let corrupt_before = self.report.corrupt_shares_detected;
        self.run_step(start);
        ops.iter()
            .map(|op| match *op {
                Op::Upload { file, .. } => {
                    let t = self.timing(OpKind::Upload, file, start);
                    OpResult::Uploaded(self.uploaded(file, &t))
                }
                Op::Download { file } => {
                    let t = self.timing(OpKind::Download, file, start);
                    OpResult::Downloaded(self.fetched(file, &t, corrupt_before))
                }
            })
            .collect()
    }

    fn stop(&mut self, server: usize) {
        let i = self.push_fault(Fault::Crash {
            server,
            loud: true,
            down_for: FOREVER,
        });
        self.down.insert(server, i);
    }

    fn restart(&mut self, server: usize) {
        if let Some(i) = self.down.remove(&server) {
            let crash = &mut self.plan.faults[i];
            let down_for = self.cursor.saturating_since(crash.at);
            if let Fault::Crash { down_for: d, .. } = &mut crash.fault {
                *d = down_for;
            }
            self.cursor = self.cursor + STEP_GAP;
        }
    }

    fn corrupt(&mut self, server: usize, file: usize) {
        self.push_fault(Fault::Corrupt {
            server: Some(server),
            file: Some(file),
        });
    }

    fn fill(&mut self, server: usize) {
        self.push_fault(Fault::DiskFull {
            server,
            duration: FOREVER,
        });
    }

    fn create_mutable(
        &mut self,
        file: usize,
        format: MutableFormat,
        size: u64,
    ) -> Result<(), String> {
        let start = self.cursor;
        self.push_op(start, OpSpec::MutableCreate { file, format, size });
        self.run_step(start);
        self.published(file, start)
    }

    fn update_mutable(&mut self, file: usize, size: u64) -> Result<(), String> {
        let start = self.cursor;
        self.push_op(
            start,
            OpSpec::MutableUpdate {
                file,
                size,
                warm: true,
            },
        );
        self.run_step(start);
        self.published(file, start)
    }

    fn read_mutable(&mut self, file: usize, range: Option<(u64, u64)>) -> Result<Vec<u8>, String> {
        let start = self.cursor;
        let op = self.plan.ops.len();
        self.push_op(start, OpSpec::MutableRead { file, range });
        self.run_step(start);
        let t = self.timing(OpKind::Retrieve, file, start);
        if !t.ok {
            return Err(format!(
                "mutable read failed: {:?}",
                self.report.failure_reasons
            ));
        }
        let sim = self.sim.as_ref().expect("a run happened");
        sim.read_bytes(op)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "the read did not finish".to_string())
    }
}

impl SimDriver {
    /// Run directory call `call` as the next step: what it returned, or its error message.
    fn dir_call(&mut self, call: DirCall) -> Result<DirResult, String> {
        let start = self.cursor;
        let op = self.plan.ops.len();
        self.plan.dir_calls.push(call);
        let call = self.plan.dir_calls.len() - 1;
        self.push_op(start, OpSpec::DirCall { call });
        self.run_step(start);
        let sim = self.sim.as_ref().expect("a run happened");
        sim.dir_outcome(op)
            .cloned()
            .unwrap_or_else(|| Err("the directory operation did not run".to_string()))
    }

    fn cap_of(&mut self, call: DirCall) -> Result<Cap, String> {
        match self.dir_call(call)? {
            DirResult::Cap(cap) => Ok(cap),
            other => Err(format!("expected a cap, got {other:?}")),
        }
    }

    fn done(&mut self, call: DirCall) -> Result<(), String> {
        self.dir_call(call).map(|_| ())
    }
}

impl DirDriver for SimDriver {
    fn mkdir(&mut self) -> Result<Cap, String> {
        self.cap_of(DirCall::Mkdir)
    }

    fn mkdir_at(&mut self, root: &Cap, at: &[&str], parents: bool) -> Result<Cap, String> {
        self.cap_of(DirCall::MkdirAt {
            root: root.clone(),
            path: path(at),
            parents,
        })
    }

    fn link_file(
        &mut self,
        root: &Cap,
        at: &[&str],
        file: usize,
        replace: bool,
    ) -> Result<(), String> {
        self.done(DirCall::Link {
            root: root.clone(),
            path: path(at),
            file,
            replace,
        })
    }

    fn list(&mut self, root: &Cap, at: &[&str]) -> Result<Vec<String>, String> {
        let dir = if at.is_empty() {
            root.clone()
        } else {
            self.lookup(root, at)?
        };
        match self.dir_call(DirCall::List { dir })? {
            DirResult::Names(names) => Ok(names),
            other => Err(format!("expected a listing, got {other:?}")),
        }
    }

    fn lookup(&mut self, root: &Cap, at: &[&str]) -> Result<Cap, String> {
        self.cap_of(DirCall::Lookup {
            root: root.clone(),
            path: path(at),
        })
    }

    fn unlink(&mut self, root: &Cap, at: &[&str]) -> Result<(), String> {
        self.done(DirCall::Unlink {
            root: root.clone(),
            path: path(at),
        })
    }

    fn move_link(&mut self, root: &Cap, from: &[&str], to: &[&str]) -> Result<(), String> {
        self.done(DirCall::Move {
            root: root.clone(),
            from: path(from),
            to: path(to),
        })
    }

    fn file_cap(&self, file: usize) -> Option<Cap> {
        self.sim.as_ref()?.file_cap(file).cloned()
    }
}
