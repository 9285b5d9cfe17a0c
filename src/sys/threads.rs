//! How a CPU run shares its cores between libtorch's parallel regions and the workers.
//!
//! The workers (decoding, preprocessing, drawing, encoding) are `--threads` parallel threads, and
//! the inference thread runs the models with libtorch's intra-op threads (OpenMP). Two things
//! waste the cores if left alone:
//! - a worker's own libtorch ops (the uint8 resize, normalising) open an OpenMP team of
//!   `--threads` each, so `--threads` workers put `--threads`² busy threads on the cores;
//! - when the workers are the bottleneck (small models, large images), a forward pass spread
//!   over every core spends part of each core waiting at its barriers: CPU the workers need
//!   (`bench/README.md` has the figures).
//!
//! So each worker runs libtorch on its own thread only ([`torch_single_threaded`]), and
//! [`IntraOpThreads`] lowers the models' thread count while the inference thread waits for
//! the workers and raises it again when the models hold up a run that leaves cores idle. At a
//! count below `--threads`, more inference lanes run batches side by side (`run::lanes`), each at
//! that count: the models' CPU cost per image falls, and they keep up with the workers.
//!
//! The thread count can change the floats: oneDNN picks its blocking by thread count, so the
//! order of a convolution's sums may differ (SSD300-R50, batch 8: up to 1.8e-4 between 1 and 2
//! threads; the ResNet-18s and the demo detector came out bit-identical). A run's results must
//! not depend on timing, so a count below `--threads` is used only once a batch of the same size
//! gave the very same outputs with it as with `--threads` ([`IntraOpThreads::needs_check`]); a
//! count that did not becomes the floor.

use std::collections::HashSet;
use std::time::Duration;

/// Makes libtorch ops called on this thread run on this thread alone, leaving every other
/// thread's count as it was.
pub fn torch_single_threaded() {
    // ATen sets a thread's OpenMP count from the process default on the thread's first call;
    // make that call now, so that it cannot undo the setting below later.
    let _ = tch::get_num_threads();
    #[cfg(unix)]
    // SAFETY: dlsym with RTLD_DEFAULT only looks a symbol up; `omp_set_num_threads` (OpenMP's
    // C API, from the libgomp that libtorch loads) takes one int and sets the calling thread's
    // count. `at::set_num_threads` (which sets the calling thread's OpenMP and MKL counts, as the
    // inference lanes want) is not used because it also changes the process default, the count
    // that a thread's first libtorch call starts it at.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"omp_set_num_threads".as_ptr());
        if !f.is_null() {
            let set: extern "C" fn(libc::c_int) = std::mem::transmute(f);
            set(1);
        }
    }
}

/// The inference thread's intra-op thread count on a CPU run, adjusted after every batch from
/// how long the thread waited (for the next prepared batch, or for room to hand its results on)
/// against how long it ran the models, and from how busy the process kept the cores.
///
/// - Waiting more than 10% of the model time in 2 batches running: the workers are the
///   bottleneck, so fewer threads (not below 1): at least one fewer, and down to the count that
///   would fill the wait if the forward pass scaled perfectly. The forward pass gets slower, but
///   it costs less CPU, and the workers get the difference.
/// - Waiting under 2% in 4 batches running while the process used under 85% of its cores: the
///   models are the bottleneck and there is CPU to spare, so one thread more (not above the
///   maximum). Without spare CPU a thread more would only take it from the workers.
///
/// The first batch is not judged: its wait is the pipeline filling up.
#[derive(Debug)]
pub struct IntraOpThreads {
    max: usize,
    now: usize,
    /// The lowest count allowed: above every count whose outputs differed from `max`'s.
    floor: usize,
    /// (count, batch size) pairs whose outputs equalled `max`'s.
    same: HashSet<(usize, usize)>,
    /// Consecutive batches that waited (negative) or did not (positive).
    streak: i32,
    judged: bool,
}

impl IntraOpThreads {
    /// Starts at `max` (the run's `--threads`).
    pub fn new(max: usize) -> IntraOpThreads {
        IntraOpThreads::starting_at(max, max)
    }

    /// Starts at `now` (clamped to 1..=`max`) instead of `max`.
    pub fn starting_at(max: usize, now: usize) -> IntraOpThreads {
        let max = max.max(1);
        IntraOpThreads { max, now: now.clamp(1, max), floor: 1, same: HashSet::new(), streak: 0, judged: false }
    }

    /// The current count.
    pub fn now(&self) -> usize {
        self.now
    }

    /// The maximum (`--threads`): the count whose outputs are the run's.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether a batch of `batch` images must also run with [`max`](Self::max) threads, to check
    /// that the current count gives the same outputs. Report the answer with
    /// [`checked`](Self::checked), and use `max`'s outputs.
    pub fn needs_check(&self, batch: usize) -> bool {
        self.now < self.max && !self.same.contains(&(self.now, batch))
    }

    /// Records whether `count` gave `max`'s outputs on a batch of `batch` images (a lane may have
    /// run at a count that has changed since). If it did not, no count at or below it is used
    /// again; returns the count to use from now on.
    pub fn checked(&mut self, count: usize, batch: usize, same: bool) -> usize {
        if same {
            self.same.insert((count, batch));
        } else if count >= self.floor {
            self.floor = (count + 1).min(self.max);
            if self.now < self.floor {
                self.now = self.floor;
                self.streak = 0;
            }
        }
        self.now
    }

    /// Records a batch: the time the inference thread `waited` and ran the `models`, and the
    /// share of the run's cores the whole process used meanwhile (CPU time / (wall time ×
    /// threads)). Returns the new count when it changes.
    pub fn after_batch(&mut self, waited: Duration, models: Duration, cpu_share: f64) -> Option<usize> {
        if !std::mem::replace(&mut self.judged, true) {
            return None;
        }
        if waited * 10 > models {
            self.streak = self.streak.min(0) - 1;
            if self.streak <= -2 && self.now > self.floor {
                // Time the models could take without holding up the workers, scaled as if the
                // forward pass scaled perfectly with threads (it scales worse, so this keeps more
                // than needed): 16 cores of small models go to 2 at once instead of one by one.
                let share = models.as_secs_f64() / (models + waited).as_secs_f64();
                let to = ((self.now as f64 * share).ceil() as usize).clamp(self.floor, self.now - 1);
                return Some(self.step(to as isize - self.now as isize));
            }
        } else if waited * 50 < models && cpu_share < 0.85 {
            self.streak = self.streak.max(0) + 1;
            if self.streak >= 4 && self.now < self.max {
                return Some(self.step(1));
            }
        } else {
            self.streak = 0;
        }
        None
    }

    fn step(&mut self, by: isize) -> usize {
        self.now = self.now.saturating_add_signed(by);
        self.streak = 0;
        self.now
    }
}

/// Lowers the calling thread to nice +10. On a CPU run the models' threads and the workers share
/// the cores, and libtorch's parallel regions wait for their slowest thread, so a worker that
/// preempts one stalls the whole forward pass. At nice +10 the workers fill the gaps the models
/// leave (waits, batch edges) and take the cores whenever the models wait for input. Not
/// SCHED_IDLE: on a machine busy with other work that would all but stop them, and the run too.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with who = 0 changes the calling thread's nice value only (Linux);
    // failure only leaves the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// The process left half of its cores idle / kept them all busy.
    const SPARE: f64 = 0.5;
    const FULL: f64 = 0.98;

    #[test]
    fn fewer_threads_while_the_models_wait_more_while_they_hold_up_a_half_idle_run() {
        let mut t = IntraOpThreads::new(4);
        assert_eq!(t.after_batch(500 * MS, 100 * MS, FULL), None, "the first batch fills the pipeline");
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), None, "one batch is not a trend");
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(3));
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), None, "the streak starts again after a step");
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(2));
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), None);
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(1));
        for _ in 0..10 {
            assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), None, "never below one thread");
        }
        for _ in 0..3 {
            assert_eq!(t.after_batch(MS, 100 * MS, SPARE), None);
        }
        assert_eq!(t.after_batch(MS, 100 * MS, SPARE), Some(2));
        assert_eq!(t.now(), 2);
    }

    #[test]
    fn a_long_wait_drops_many_threads_at_once_never_below_the_floor() {
        let mut t = IntraOpThreads::new(16);
        t.after_batch(Duration::ZERO, 10 * MS, FULL);
        assert_eq!(t.after_batch(100 * MS, 10 * MS, FULL), None);
        // 16 threads busy 10 of every 110 ms: ceil(16 * 10 / 110) = 2.
        assert_eq!(t.after_batch(100 * MS, 10 * MS, FULL), Some(2));
        assert_eq!(t.checked(2, 8, false), 3, "2 threads changed the outputs");
        t.after_batch(100 * MS, 10 * MS, FULL);
        assert_eq!(t.after_batch(100 * MS, 10 * MS, FULL), None, "3 is the floor now");
        assert_eq!(t.now(), 3);
    }

    #[test]
    fn no_thread_more_when_the_cores_are_already_busy() {
        let mut t = IntraOpThreads::new(2);
        t.after_batch(Duration::ZERO, 100 * MS, FULL);
        t.after_batch(50 * MS, 100 * MS, FULL);
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(1));
        for _ in 0..20 {
            assert_eq!(
                t.after_batch(Duration::ZERO, 100 * MS, FULL),
                None,
                "the models would take it from the workers"
            );
        }
        for _ in 0..3 {
            t.after_batch(Duration::ZERO, 100 * MS, SPARE);
        }
        assert_eq!(t.after_batch(Duration::ZERO, 100 * MS, SPARE), Some(2));
    }

    #[test]
    fn a_wait_between_the_thresholds_resets_the_streak_and_the_count_stays_in_range() {
        let mut t = IntraOpThreads::new(2);
        t.after_batch(Duration::ZERO, 100 * MS, SPARE);
        for _ in 0..20 {
            assert_eq!(t.after_batch(Duration::ZERO, 100 * MS, SPARE), None, "never above the maximum");
        }
        t.after_batch(20 * MS, 100 * MS, SPARE);
        assert_eq!(t.after_batch(5 * MS, 100 * MS, SPARE), None, "5% is neither waiting nor busy");
        assert_eq!(t.after_batch(20 * MS, 100 * MS, SPARE), None, "so the streak of waits restarted");
        assert_eq!(t.after_batch(20 * MS, 100 * MS, SPARE), Some(1));
        assert_eq!(IntraOpThreads::new(0).now(), 1);
        assert_eq!(IntraOpThreads::starting_at(4, 9).now(), 4);
    }

    #[test]
    fn a_lower_count_is_used_only_where_it_gave_the_maximums_outputs() {
        let mut t = IntraOpThreads::new(3);
        assert!(!t.needs_check(8), "the maximum is the reference itself");
        t.after_batch(Duration::ZERO, 100 * MS, FULL);
        t.after_batch(50 * MS, 100 * MS, FULL);
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(2));
        assert!(t.needs_check(8));
        assert_eq!(t.checked(2, 8, true), 2);
        assert!(!t.needs_check(8), "checked once per batch size");
        assert!(t.needs_check(3), "a last, smaller batch is checked again");
        t.after_batch(50 * MS, 100 * MS, FULL);
        assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), Some(1));
        assert!(t.needs_check(8), "and so is every new count");
        assert_eq!(t.checked(1, 8, false), 2, "a count that changed the outputs is left at once");
        for _ in 0..10 {
            assert_eq!(t.after_batch(50 * MS, 100 * MS, FULL), None, "and never used again");
        }
        assert!(!t.needs_check(8));
        assert_eq!(t.checked(2, 3, false), 3, "a count can fail for another batch size too");
        assert_eq!(t.now(), t.max());
    }

    #[test]
    fn a_check_from_a_lane_that_ran_at_an_older_count_is_kept_for_that_count() {
        let mut t = IntraOpThreads::starting_at(4, 1);
        // A lane ran a batch at 3 threads, and the count dropped to 1 meanwhile.
        assert_eq!(t.checked(3, 8, true), 1);
        t.now = 3;
        assert!(!t.needs_check(8), "3 threads were checked on batches of 8");
        t.now = 1;
        assert!(t.needs_check(8), "1 thread was not");
        assert_eq!(t.checked(2, 8, false), 3, "2 threads failed: the floor is 3, and the count rises to it");
        assert_eq!(t.checked(1, 8, false), 3, "a lower count failing later changes nothing");
        assert!(!t.needs_check(8));
    }

    #[test]
    fn single_threaded_torch_affects_the_calling_thread_only() {
        tch::set_num_threads(2);
        let here = tch::get_num_threads();
        let worker = std::thread::spawn(|| {
            torch_single_threaded();
            // A parallel op after the call must not bring the default back.
            let _ = tch::Tensor::ones([64, 1024], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Float);
            tch::get_num_threads()
        })
        .join()
        .expect("worker");
        assert_eq!(worker, 1);
        assert_eq!(tch::get_num_threads(), here, "the calling thread's count is untouched");
        let other = std::thread::spawn(tch::get_num_threads).join().expect("other");
        assert_eq!(other, 2, "a new thread still starts from the process default");
    }
}
