//! What the machine spent while the load test sent: the busy share of its CPUs (`/proc/stat`) and the CPU
//! seconds of each program (`/proc/<pid>/stat`), Linux only. On one machine the pipeline, the local cloud, the
//! cache server and the load generator share the cores, so the latencies of a run are read against these: a
//! saturated machine queues every step, and the per-program split says which part of the pipeline pays.

use std::collections::BTreeMap;

/// Linux reports process CPU time in `USER_HZ` ticks, fixed at 100 per second for user space on every
/// architecture Rust targets (`sysconf(_SC_CLK_TCK)`); the test below checks it against a measured spin.
const TICKS_PER_SEC: f64 = 100.0;

/// The machine's CPU time so far, (busy, total) in clock ticks, from `/proc/stat`; `None` elsewhere. Busy is
/// everything but idle and I/O wait.
pub fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Every live process's CPU ticks so far (user + system) and its program name, by pid.
#[derive(Debug, Clone, Default)]
pub struct Processes(BTreeMap<u32, (String, u64)>);

impl Processes {
    /// Reads `/proc`; empty where there is none. Processes that end between the directory listing and the
    /// read are skipped.
    pub fn now() -> Processes {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Processes(out);
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((comm, ticks)) = parse_stat(&stat) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.insert(pid, (program_name(&cmdline, comm), ticks));
        }
        Processes(out)
    }

    /// CPU seconds spent since `earlier`, per program name (largest first): a pid in both counts its growth,
    /// a pid started since counts all of its time. Processes that ended in between are not seen (the load
    /// test's are long-lived: the local cloud, its function instances, the cache server, this process).
    pub fn since(&self, earlier: &Processes) -> Vec<(String, f64)> {
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        for (pid, (name, ticks)) in &self.0 {
            let before = match earlier.0.get(pid) {
                Some((n, t)) if n == name => *t,
                _ => 0,
            };
            *by_name.entry(name).or_default() += ticks.saturating_sub(before);
        }
        let mut out: Vec<(String, f64)> = by_name
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(n, t)| (n.to_owned(), t as f64 / TICKS_PER_SEC))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// `(comm, utime + stime)` of a `/proc/<pid>/stat` line. The command name is in parentheses and may itself
/// hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3 of proc(5)), …, utime (14), stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The program a process runs: its first argument's file name, or `[comm]` for kernel threads (no command
/// line).
fn program_name(cmdline: &[u8], comm: &str) -> String {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    if argv0.is_empty() {
        return format!("[{comm}]");
    }
    let argv0 = String::from_utf8_lossy(argv0);
    // Some servers rewrite their title into the first argument (`valkey-server 127.0.0.1:6379 [cluster]`).
    let program = argv0.split(' ').next().unwrap_or(&argv0);
    program.rsplit('/').next().unwrap_or(program).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse_from_the_last_parenthesis() {
        let line =
            "4242 (tally (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("tally (x) y", 1290)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat("no parentheses at all"), None);
    }

    #[test]
    fn programs_are_named_by_their_first_argument_or_kernel_name() {
        assert_eq!(
            program_name(b"target/release/tally-collect\0--x\0", "tally-collect"),
            "tally-collect"
        );
        assert_eq!(
            program_name(b"valkey-server\0--port\0", "valkey-serve"),
            "valkey-server"
        );
        assert_eq!(
            program_name(
                b"valkey-server 127.0.0.1:34619 [cluster]\0\0",
                "valkey-server"
            ),
            "valkey-server"
        );
        assert_eq!(program_name(b"", "kworker/0:1"), "[kworker/0:1]");
    }

    #[test]
    fn a_spin_of_this_process_is_seen_in_its_cpu_seconds() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let me = program_name(&std::fs::read("/proc/self/cmdline").unwrap_or_default(), "");
        let before = Processes::now();
        // About 0.4 s of CPU on this thread.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(400) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let spent = Processes::now().since(&before);
        let mine = spent
            .iter()
            .find(|(n, _)| *n == me)
            .map_or(0.0, |(_, s)| *s);
        // The spin's wall time bounds its CPU time (one busy thread; the harness's others wait), and a busy
        // machine still gives it some: nothing means the ticks are misread, more than the wall time that
        // USER_HZ is not 100.
        let wall = start.elapsed().as_secs_f64();
        assert!(
            mine >= 0.02 && mine <= wall + 0.05,
            "{me}: {mine} s of CPU in {wall} s: {spent:?}"
        );
    }
}
