//! The disk's flushes while a paced run goes on: every durable commit on the way from a
//! webhook to its execution waits for PostgreSQL's WAL flush (`fdatasync`), so a disk
//! that stalls its flushes now and then sets the floor of the run's tail latency, whatever
//! Attune does. This probe shows that floor beside the run's figures: a thread writes
//! 8 KiB to a file of its own in the folder given (the private cluster's data dir, or
//! `--disk-probe`) and flushes it with `fdatasync`, every 10 ms, timing each flush.
//! Light by design (100 small flushes a second next to the run's own), and only on paced
//! runs (`--rate`), whose latency is what is measured.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::percentile;

/// One flush every this long.
const EVERY: Duration = Duration::from_millis(10);
/// Bytes written before each flush (a WAL page).
const WRITE: usize = 8192;
/// The file's size: the writes go round it.
const FILE_SIZE: u64 = 1 << 20;
/// A flush at least this slow is a stall (the 200 webhooks/s target's p99 is 10 ms).
pub const STALL: Duration = Duration::from_millis(10);

/// The probe, running until [`Probe::finish`].
pub struct Probe {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Vec<Duration>>>,
}

/// What the probe saw (times in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Flushes {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Flushes of at least [`STALL`].
    pub stalls: usize,
    /// Their time, added up.
    pub stalled: f64,
    /// The folder probed.
    pub dir: PathBuf,
}

impl Probe {
    /// Starts flushing a new file in `dir` (removed at the end).
    pub fn start(dir: &Path) -> anyhow::Result<Probe> {
        let file = tempfile::Builder::new()
            .prefix(".attune-bench-disk-probe-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot make the disk probe's file in {}", dir.display()))?;
        file.as_file().set_len(FILE_SIZE)?;
        file.as_file().sync_all()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || flush_until(file, &stop)
        });
        Ok(Probe { dir: dir.to_path_buf(), stop, thread })
    }

    /// Stops the probe: what it saw.
    pub fn finish(self) -> anyhow::Result<Flushes> {
        self.stop.store(true, Ordering::Release);
        let times = self.thread.join().map_err(|_| anyhow::anyhow!("the disk probe's thread panicked"))??;
        Ok(Flushes::of(times, self.dir))
    }
}

impl Flushes {
    fn of(times: Vec<Duration>, dir: PathBuf) -> Flushes {
        let mut ms: Vec<f64> = times.into_iter().map(|t| t.as_secs_f64() * 1000.0).collect();
        ms.sort_unstable_by(f64::total_cmp);
        let stall = STALL.as_secs_f64() * 1000.0;
        let slow = ms.iter().filter(|t| **t >= stall);
        Flushes {
            count: ms.len(),
            p50: percentile(&ms, 50.0),
            p99: percentile(&ms, 99.0),
            max: percentile(&ms, 100.0),
            stalls: slow.clone().count(),
            // From +0: an empty f64 sum is -0, printed "-0".
            stalled: slow.fold(0.0, |all, t| all + t),
            dir,
        }
    }

    /// The figures' line.
    pub fn print(&self) {
        println!(
            "disk flushes ms:         p50 {:.2}  p99 {:.2}  max {:.2}; {} of {} took ≥ {} ms ({:.0} ms in all) — fdatasync of 8 KiB every {} ms in {}",
            self.p50,
            self.p99,
            self.max,
            self.stalls,
            self.count,
            STALL.as_millis(),
            self.stalled,
            EVERY.as_millis(),
            self.dir.display()
        );
    }
}

/// Flushes `temp` until `stop`, which is then removed: each flush's time.
fn flush_until(temp: tempfile::NamedTempFile, stop: &AtomicBool) -> std::io::Result<Vec<Duration>> {
    let file: &File = temp.as_file();
    let page = vec![0xa5u8; WRITE];
    let mut times = Vec::new();
    let mut offset = 0u64;
    // At least one flush, however short the run.
    loop {
        file.write_all_at(&page, offset)?;
        offset = (offset + WRITE as u64) % FILE_SIZE;
        let started = Instant::now();
        file.sync_data()?;
        times.push(started.elapsed());
        if stop.load(Ordering::Acquire) {
            return Ok(times);
        }
        std::thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_are_counted_and_summed() {
        let ms = Duration::from_millis;
        let mut times: Vec<Duration> = (0..98).map(|_| Duration::from_micros(200)).collect();
        times.extend([ms(12), ms(250)]);
        let f = Flushes::of(times, PathBuf::from("/x"));
        assert_eq!(f.count, 100);
        assert_eq!(f.p50, 0.2);
        // The bench's percentile (nearest rank over n − 1): the 99th of 100 is the 99th value.
        assert_eq!(f.p99, 12.0);
        assert_eq!(f.max, 250.0);
        assert_eq!((f.stalls, f.stalled), (2, 262.0));
        let none = Flushes::of(vec![ms(1); 3], PathBuf::new());
        assert_eq!((none.count, none.stalls, format!("{:.0}", none.stalled)), (3, 0, "0".to_string()));
        assert_eq!(Flushes::of(Vec::new(), PathBuf::new()).count, 0);
    }

    #[test]
    fn the_probe_flushes_a_file_of_its_own_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::start(dir.path()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let f = probe.finish().unwrap();
        // How many depends on the disk (one flush may stall for longer than the wait).
        assert!(f.count >= 1, "{f:?}");
        assert!(f.p50 <= f.p99 && f.p99 <= f.max && f.max > 0.0, "{f:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe's file is removed");
        assert!(Probe::start(&dir.path().join("missing")).is_err());
    }
}
