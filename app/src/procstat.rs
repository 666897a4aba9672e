//! CPU time and memory of a process, read from Linux's `/proc` (for `/statistics` and
//! `lafs load`). On other systems every figure is `None`.

use std::time::Duration;

/// Linux reports CPU time in clock ticks of 1/100 s on every architecture lafs runs on
/// (`USER_HZ`, fixed by the kernel ABI).
const TICKS_PER_SECOND: u64 = 100;

/// What `/proc/PID` says about a process right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessFigures {
    /// Resident set size.
    pub rss_bytes: Option<u64>,
    /// The largest resident set size so far.
    pub peak_rss_bytes: Option<u64>,
    /// User plus system CPU time since the process started.
    pub cpu_time: Option<Duration>,
}

/// Figures of this process.
pub fn this_process() -> ProcessFigures {
    read("self")
}

/// Figures of process `pid` (`None`s if it is gone or unreadable).
pub fn process(pid: u32) -> ProcessFigures {
    read(&pid.to_string())
}

fn read(which: &str) -> ProcessFigures {
    let status = std::fs::read_to_string(format!("/proc/{which}/status")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).unwrap_or_default();
    ProcessFigures {
        rss_bytes: status_kib(&status, "VmRSS:").map(|k| k * 1024),
        peak_rss_bytes: status_kib(&status, "VmHWM:").map(|k| k * 1024),
        cpu_time: cpu_ticks(&stat).map(|t| Duration::from_millis(t * 1000 / TICKS_PER_SECOND)),
    }
}

/// `VmRSS:    1234 kB` → 1234.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime + stime from `/proc/PID/stat` (fields 14 and 15, counted after the parenthesised
/// command name, which may itself contain spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
        assert_eq!(status_kib("Name:\tx\n", "VmRSS:"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu_on_linux() {
        if cfg!(target_os = "linux") {
            let f = this_process();
            assert!(f.rss_bytes.unwrap() > 0);
            assert!(f.peak_rss_bytes.unwrap() >= f.rss_bytes.unwrap() / 2);
            assert!(f.cpu_time.is_some());
        }
    }
}
