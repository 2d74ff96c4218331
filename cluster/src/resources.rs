//! What this machine and process have and use, for a node's report and the server's
//! `/metrics`.

/// CPU cores this process may use.
pub(crate) fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// The machine's memory (bytes), from `/proc/meminfo`.
pub(crate) fn memory_bytes() -> u64 {
    proc_field("/proc/meminfo", "MemTotal:").unwrap_or(0) * 1024
}

/// This process's resident memory (bytes), from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0) * 1024
}

/// CPU seconds this process used (user + system), from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, so split after its ')').
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The kernel's clock ticks per second: 100 on every Linux we run on.
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_measured() {
        assert!(super::cores() >= 1);
        assert!(super::memory_bytes() > 0);
        assert!(super::rss_bytes() > 0);
        assert!(super::cpu_seconds() >= 0.0);
    }
}
