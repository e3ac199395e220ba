//! Processes known by pid *and* start time, so that a recycled pid is never
//! mistaken for the pause or container process the shim recorded.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat: clock ticks after boot.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The identity of a live process now, if it exists.
    pub fn of(pid: i32) -> Option<ProcessIdentity> {
        let stat = Stat::read(pid)?;
        Some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs (a zombie does not).
    pub fn is_alive(&self) -> bool {
        match Stat::read(self.pid) {
            Some(stat) => stat.start_time == self.start_time && stat.state != 'Z',
            None => false,
        }
    }

    /// Sends `signal` if this very process still runs.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> bool {
        self.is_alive()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal).is_ok()
    }
}

struct Stat {
    state: char,
    start_time: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Stat> {
        if pid <= 0 {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses; the
        // fields after its last ')' are plain.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first()?.chars().next()?;
        // After ')' the state is field 3, so start time (22) is index 19.
        let start_time = fields.get(19)?.parse().ok()?;
        Some(Stat { state, start_time })
    }
}

/// Pids of processes whose command line contains `needle` (for leak checks
/// and diagnostics).
pub fn find_by_cmdline(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcessIdentity::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        assert!(ProcessIdentity::of(-1).is_none());
    }
}
