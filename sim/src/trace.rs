//! The run's trace: a hash of every event in order (always kept, for the determinism check) and,
//! on request, a readable line per event (for replaying a failing seed).

use lafs_core::time::Instant;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Self {
        Trace {
            hash: FNV_OFFSET,
            lines: keep_lines.then(Vec::new),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// Mixes a number into the hash (e.g. a message's length on the wire).
    pub fn word(&mut self, w: u64) {
        self.bytes(&w.to_le_bytes());
    }

    /// One event taken from the queue.
    pub fn event(&mut self, at: Instant, seq: u64, summary: &str) {
        self.word(at.0);
        self.word(seq);
        self.text(at, summary);
    }

    /// Something that happened inside an event (an operation's event, a fault's target).
    pub fn text(&mut self, at: Instant, line: &str) {
        self.bytes(line.as_bytes());
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>10.3} ms  {line}", at.0 as f64 / 1000.0));
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_traces_hash_equal() {
        let run = |x: &str| {
            let mut t = Trace::new(false);
            t.event(Instant(1), 0, "a");
            t.text(Instant(1), x);
            t.hash()
        };
        assert_eq!(run("b"), run("b"));
        assert_ne!(run("b"), run("c"));
    }
}
