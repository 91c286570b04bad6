//! Measurements from the OS: bytes written, disk usage, memory; and the
//! latency summary of an HDR histogram.

use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// `write_bytes` and `cancelled_write_bytes` of `/proc/self/io`: bytes this
/// process (all its threads) caused to be sent to the storage layer,
/// counted when a page is dirtied, and bytes of dirty pages discarded
/// before writeback (truncated or deleted files).
pub fn io_written() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/io").context("read /proc/self/io")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .with_context(|| format!("{name} missing in /proc/self/io"))
    };
    Ok((field("write_bytes:")?, field("cancelled_write_bytes:")?))
}

/// (allocated bytes, apparent bytes) of every file under `dir`.
/// Allocated counts blocks (`st_blocks * 512`), so preallocated space and
/// sparse holes are accounted as the disk sees them.
pub fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut alloc, mut apparent) = (0, 0);
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path())?;
            alloc += a;
            apparent += b;
        } else {
            alloc += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    Ok((alloc, apparent))
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .unwrap_or(0)
}

/// `(VmRSS, RssAnon, RssFile)` of this process now, in KiB: resident
/// memory, its anonymous part (heap: memtables, caches, indexes) and its
/// file-backed part (mapped files, such as SSTables read through mmap,
/// which the kernel can reclaim).
pub fn rss_now_kib() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// The file-system type and device of the mount holding `path`.
pub fn mount_of(path: &Path) -> (String, String) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: (usize, String, String) = (0, "?".into(), "?".into());
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && path.starts_with(f[1]) && f[1].len() >= best.0 {
            best = (f[1].len(), f[2].to_string(), f[0].to_string());
        }
    }
    (best.1, best.2)
}

/// A new latency histogram in nanoseconds (1 ns to 10 min, 3 digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// p50, p99 and max of `h` in microseconds.
pub fn summary_us(h: &Histogram<u64>) -> (f64, f64, f64) {
    let us = |ns: u64| ns as f64 / 1000.0;
    (us(h.value_at_quantile(0.50)), us(h.value_at_quantile(0.99)), us(h.max()))
}

/// Scheduling counters of one thread of this process, from
/// `/proc/self/task/<tid>/{comm,schedstat,status}`.
#[derive(Debug, Clone, Default)]
pub struct ThreadSched {
    pub tid: u32,
    pub comm: String,
    /// Time on a CPU, ns.
    pub cpu_ns: u64,
    /// Time runnable but waiting for a CPU, ns.
    pub wait_ns: u64,
    /// Voluntary context switches (the thread blocked).
    pub voluntary: u64,
    /// Involuntary context switches (the thread was preempted).
    pub involuntary: u64,
}

/// A thread's time on a CPU and time runnable but waiting for one, ns,
/// from its `schedstat` file under `/proc`; zeros if it cannot be read.
fn schedstat(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = text.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// The scheduling counters of every live thread of this process.
pub fn thread_sched() -> Vec<ThreadSched> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else { continue };
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default().trim().to_string();
        let (cpu_ns, wait_ns) = schedstat(&p.join("schedstat"));
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0);
        out.push(ThreadSched {
            tid,
            comm,
            cpu_ns,
            wait_ns,
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        });
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// One line per thread alive at `after`: CPU time, run-queue wait and
/// context switches between `before` and `after`.
pub fn thread_sched_report(before: &[ThreadSched], after: &[ThreadSched]) -> String {
    let mut s = String::new();
    for a in after {
        let b = before.iter().find(|b| b.tid == a.tid).cloned().unwrap_or_default();
        let (cpu, wait) = (a.cpu_ns - b.cpu_ns, a.wait_ns - b.wait_ns);
        if cpu == 0 && wait == 0 {
            continue;
        }
        s += &format!(
            "    {:<18} cpu {:>8.2} s  runq wait {:>7.2} s  voluntary {:>8}  preempted {:>8}\n",
            a.comm,
            cpu as f64 / 1e9,
            wait as f64 / 1e9,
            a.voluntary - b.voluntary,
            a.involuntary - b.involuntary
        );
    }
    s
}

/// One reading of a block device's `/proc/diskstats` counters and of
/// each CPU's steal time.
#[derive(Debug, Clone)]
pub struct DiskSample {
    pub at: std::time::Instant,
    /// Writes completed.
    pub writes: u64,
    /// Discard (TRIM) requests completed.
    pub discards: u64,
    /// 512-byte sectors discarded.
    pub discard_sectors: u64,
    /// Cache flush requests completed.
    pub flushes: u64,
    /// Requests in flight at the moment of the reading.
    pub in_flight: u64,
    /// Per CPU, the time the hypervisor ran something else while this
    /// (virtual) CPU had work, in `USER_HZ` ticks (10 ms) from
    /// `/proc/stat`.
    pub steal: Vec<u64>,
    /// The sampling thread's own run-queue wait so far, ns
    /// (`/proc/thread-self/schedstat`): a gap between two samples far
    /// over 5 ms without run-queue wait means no CPU of the virtual
    /// machine ran it, whatever the steal counters say.
    pub sampler_wait_ns: u64,
}

fn steal_ticks() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| l.split_whitespace().nth(8).and_then(|x| x.parse().ok()).unwrap_or(0))
        .collect()
}

fn disk_sample(dev: &str) -> Option<DiskSample> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    let line = text.lines().find(|l| l.split_whitespace().nth(2) == Some(dev))?;
    let f: Vec<u64> = line.split_whitespace().skip(3).map(|x| x.parse().unwrap_or(0)).collect();
    Some(DiskSample {
        at: std::time::Instant::now(),
        writes: *f.get(4)?,
        in_flight: *f.get(8)?,
        discards: *f.get(11)?,
        discard_sectors: *f.get(13)?,
        flushes: *f.get(15)?,
        steal: steal_ticks(),
        sampler_wait_ns: schedstat(Path::new("/proc/thread-self/schedstat")).1,
    })
}

/// Reads the counters of the block device holding `path` (and the CPUs'
/// steal time) every 5 ms on a thread of its own, until stopped; used to
/// see what the disk and the hypervisor did while a slow write waited.
pub struct DiskSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<DiskSample>>>,
}

impl DiskSampler {
    /// Starts sampling the device of `path`; `None` if it has no line in
    /// `/proc/diskstats` (for example on tmpfs).
    pub fn start(path: &Path) -> Option<DiskSampler> {
        let (_, dev) = mount_of(path);
        let dev = dev.strip_prefix("/dev/")?.to_string();
        disk_sample(&dev)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("disk-sampler".into())
            .spawn(move || {
                let mut out = Vec::new();
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    out.extend(disk_sample(&dev));
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                out
            })
            .ok()?;
        Some(DiskSampler { stop, handle: Some(handle) })
    }

    /// Stops the thread and returns its samples in time order.
    pub fn finish(mut self) -> Vec<DiskSample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

/// Disk and hypervisor activity over a window of samples.
#[derive(Debug, Default)]
pub struct DiskWindow {
    pub discards: u64,
    pub discard_mib: f64,
    pub flushes: u64,
    pub writes: u64,
    /// Most requests in flight at any sample.
    pub in_flight: u64,
    /// Steal time per CPU, ms (10 ms resolution).
    pub steal_ms: Vec<u64>,
    /// The longest time between two consecutive samples, ms (the sampler
    /// sleeps 5 ms between them), and its run-queue wait in that time.
    pub max_gap_ms: f64,
    pub max_gap_wait_ms: f64,
}

/// Activity between the last sample before `from` and the first sample
/// after `to`.
pub fn disk_window(samples: &[DiskSample], from: std::time::Instant, to: std::time::Instant) -> DiskWindow {
    let lo = samples.iter().rposition(|s| s.at <= from).unwrap_or(0);
    let hi = samples.iter().position(|s| s.at >= to).unwrap_or(samples.len().saturating_sub(1));
    if samples.is_empty() || hi <= lo {
        return DiskWindow::default();
    }
    let (a, b) = (&samples[lo], &samples[hi]);
    let (mut max_gap_ms, mut max_gap_wait_ms) = (0.0, 0.0);
    for pair in samples[lo..=hi].windows(2) {
        let gap = pair[1].at.saturating_duration_since(pair[0].at).as_secs_f64() * 1e3;
        if gap > max_gap_ms {
            max_gap_ms = gap;
            max_gap_wait_ms = pair[1].sampler_wait_ns.saturating_sub(pair[0].sampler_wait_ns) as f64 / 1e6;
        }
    }
    DiskWindow {
        discards: b.discards - a.discards,
        discard_mib: (b.discard_sectors - a.discard_sectors) as f64 * 512.0 / (1 << 20) as f64,
        flushes: b.flushes - a.flushes,
        writes: b.writes - a.writes,
        in_flight: samples[lo..=hi].iter().map(|s| s.in_flight).max().unwrap_or(0),
        steal_ms: b.steal.iter().zip(&a.steal).map(|(b, a)| (b - a) * 10).collect(),
        max_gap_ms,
        max_gap_wait_ms,
    }
}

/// A thread's cumulative scheduling counters: `/proc/thread-self/schedstat`
/// (time on a CPU, time runnable but waiting for one) and
/// `getrusage(RUSAGE_THREAD)` (user and system CPU time, page faults,
/// context switches).
#[derive(Debug, Clone, Copy)]
struct SchedCounters {
    cpu_ns: u64,
    wait_ns: u64,
    user_us: u64,
    system_us: u64,
    minor_faults: u64,
    major_faults: u64,
    voluntary: u64,
    involuntary: u64,
}

impl SchedCounters {
    fn of_this_thread() -> SchedCounters {
        let (cpu_ns, wait_ns) = schedstat(Path::new("/proc/thread-self/schedstat"));
        // SAFETY: getrusage only writes the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        SchedCounters {
            cpu_ns,
            wait_ns,
            user_us: us(ru.ru_utime),
            system_us: us(ru.ru_stime),
            minor_faults: ru.ru_minflt as u64,
            major_faults: ru.ru_majflt as u64,
            voluntary: ru.ru_nvcsw as u64,
            involuntary: ru.ru_nivcsw as u64,
        }
    }

    /// Each counter's growth from `earlier` to `self`.
    fn minus(&self, earlier: &SchedCounters) -> SchedCounters {
        SchedCounters {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            user_us: self.user_us.saturating_sub(earlier.user_us),
            system_us: self.system_us.saturating_sub(earlier.system_us),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

/// The calling thread's [`SchedCounters`] and when they were read.
#[derive(Debug, Clone, Copy)]
pub struct ThreadTimes {
    at: std::time::Instant,
    counters: SchedCounters,
}

/// The difference of two [`ThreadTimes`]: a span of wall time split into
/// running (user and system), waiting for a CPU, and the rest (blocked,
/// or the whole machine stopped), with the page faults and context
/// switches in it.
#[derive(Debug, Clone, Copy)]
pub struct ThreadSpan {
    wall_ns: u64,
    counters: SchedCounters,
}

impl ThreadTimes {
    pub fn now() -> ThreadTimes {
        let counters = SchedCounters::of_this_thread();
        ThreadTimes { at: std::time::Instant::now(), counters }
    }

    /// What the thread did from `earlier` to `self`.
    pub fn since(&self, earlier: &ThreadTimes) -> ThreadSpan {
        ThreadSpan {
            wall_ns: self.at.saturating_duration_since(earlier.at).as_nanos() as u64,
            counters: self.counters.minus(&earlier.counters),
        }
    }
}

impl std::fmt::Display for ThreadSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        let c = &self.counters;
        let other = self.wall_ns.saturating_sub(c.cpu_ns + c.wait_ns);
        write!(
            f,
            "{:.1} ms: on CPU {:.1} (user {:.1}, system {:.1}), runnable {:.1}, neither {:.1}; \
             {} minor and {} major faults, {} voluntary and {} involuntary switches",
            ms(self.wall_ns),
            ms(c.cpu_ns),
            c.user_us as f64 / 1e3,
            c.system_us as f64 / 1e3,
            ms(c.wait_ns),
            ms(other),
            c.minor_faults,
            c.major_faults,
            c.voluntary,
            c.involuntary,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadTimes;

    #[test]
    fn a_busy_span_is_mostly_on_cpu_and_prints_every_part() {
        let start = ThreadTimes::now();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(30);
        let mut x = 0u64;
        while std::time::Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let span = ThreadTimes::now().since(&start);
        assert!(span.wall_ns >= 30_000_000);
        assert!(span.counters.cpu_ns > 0, "schedstat read: {span}");
        let text = span.to_string();
        for part in ["on CPU", "user", "system", "runnable", "neither", "minor", "voluntary and"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
