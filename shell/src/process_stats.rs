//! This process's CPU time and peak memory, read from `/proc` (Linux); `None` elsewhere.
//! Used for the shutdown summary and load reports, never on the tick path.

use std::time::Duration;

/// CPU time (user + system) consumed by this process so far.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s on every mainstream configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident memory (VmHWM), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_exist_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::peak_rss_bytes().is_some_and(|b| b > 0));
            assert!(super::cpu_time().is_some());
        }
    }
}
