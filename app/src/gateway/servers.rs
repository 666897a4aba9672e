//! The grid's storage servers as the gateway shows them: each one asked for its figures (space
//! used and available, shares held) in one round trip, for the welcome page and
//! `/statistics`. Storage nodes serve no web pages of their own; this is how their figures
//! reach a user.

use std::fmt::Write as _;
use std::time::Duration;

use lafs_core::server_status::{ServerFigures, ServerState};
use serde_json::{json, Value};

use lafs_runtime_std::net::{GridClient, ServerEntry};

/// How long a page or a statistics request waits for the slowest server's answer.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(2);

/// One storage server as shown.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// Base32 of the server id.
    pub id: String,
    pub address: String,
    pub state: ServerState,
}

impl ServerView {
    /// `reachable`, `unreachable`, `timed-out` or `failed`: a CSS class and a JSON value.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ServerState::Answered(_) => "reachable",
            ServerState::Unreachable => "unreachable",
            ServerState::TimedOut => "timed-out",
            ServerState::Failed(_) => "failed",
        }
    }

    pub fn figures(&self) -> Option<&ServerFigures> {
        match &self.state {
            ServerState::Answered(f) => Some(f),
            _ => None,
        }
    }
}

/// Ask every server of `entries` (the gateway's grid, in its order) how it is.
pub fn survey(grid: &GridClient, entries: &[ServerEntry]) -> Vec<ServerView> {
    let states = match grid.grid_status(SURVEY_TIMEOUT) {
        Ok(report) => report.servers,
        Err(e) => {
            tracing::warn!(error = %e, "asking the storage servers for their status failed");
            Vec::new()
        }
    };
    entries
        .iter()
        .map(|entry| ServerView {
            id: lafs_core::base32::encode(&entry.id.0),
            address: entry.addr.to_string(),
            state: states
                .iter()
                .find(|(id, _)| *id == entry.id)
                .map_or(ServerState::Unreachable, |(_, s)| s.clone()),
        })
        .collect()
}

/// Totals over the servers that answered: (reachable, used, available, shares held).
pub fn totals(views: &[ServerView]) -> (usize, u64, u64, u64) {
    views
        .iter()
        .filter_map(ServerView::figures)
        .fold((0, 0, 0, 0), |(n, used, avail, held), f| {
            (
                n + 1,
                used + f.used_space,
                avail.saturating_add(f.available_space),
                held + f.shares_held,
            )
        })
}

/// The `servers` list of `/statistics?t=json`.
pub fn to_json(views: &[ServerView]) -> Value {
    views
        .iter()
        .map(|v| {
            let mut o = json!({ "id": v.id, "address": v.address, "state": v.state_name() });
            if let Some(f) = v.figures() {
                o["used_space"] = f.used_space.into();
                o["available_space"] = f.available_space.into();
                o["shares_held"] = f.shares_held.into();
                o["max_share_size"] = f.max_share_size.into();
            }
            if let ServerState::Failed(why) = &v.state {
                o["error"] = why.clone().into();
            }
            o
        })
        .collect()
}

/// OpenMetrics families of the servers' figures, labelled by server id (to go before `# EOF`).
pub fn to_openmetrics(views: &[ServerView]) -> String {
    let mut out = String::new();
    type Get = fn(&ServerView) -> Option<u64>;
    let families: [(&str, &str, Get); 4] = [
        (
            "lafs_storage_up",
            "1 if the server answered the status query.",
            |v| Some(u64::from(v.figures().is_some())),
        ),
        (
            "lafs_storage_used_bytes",
            "Bytes held by the server's shares and open allocations.",
            |v| v.figures().map(|f| f.used_space),
        ),
        (
            "lafs_storage_available_bytes",
            "Bytes the server can still allocate.",
            |v| v.figures().map(|f| f.available_space),
        ),
        (
            "lafs_storage_shares_held",
            "Committed immutable and mutable shares held.",
            |v| v.figures().map(|f| f.shares_held),
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}");
        for v in views {
            if let Some(value) = get(v) {
                let _ = writeln!(out, "{name}{{server=\"{}\"}} {value}", v.id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, state: ServerState) -> ServerView {
        ServerView {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            state,
        }
    }

    fn answered(used: u64, held: u64) -> ServerState {
        ServerState::Answered(ServerFigures {
            protocol: 2,
            max_share_size: 1 << 40,
            available_space: 1000,
            used_space: used,
            shares_held: held,
        })
    }

    #[test]
    fn totals_json_and_metrics_count_only_servers_that_answered() {
        let views = vec![
            view("aa", answered(10, 3)),
            view("bb", ServerState::Unreachable),
            view("cc", answered(5, 1)),
            view("dd", ServerState::Failed("disk".into())),
        ];
        assert_eq!(totals(&views), (2, 15, 2000, 4));
        let j = to_json(&views);
        assert_eq!(j[0]["shares_held"], 3);
        assert_eq!(j[1]["state"], "unreachable");
        assert!(j[1].get("used_space").is_none());
        assert_eq!(j[3]["error"], "disk");
        let m = to_openmetrics(&views);
        assert!(m.contains("lafs_storage_up{server=\"bb\"} 0"), "{m}");
        assert!(
            m.contains("lafs_storage_shares_held{server=\"cc\"} 1"),
            "{m}"
        );
        assert!(!m.contains("lafs_storage_used_bytes{server=\"bb\"}"), "{m}");
    }
}
