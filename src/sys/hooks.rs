//! Every test and fault-injection hook, read here and nowhere else. Each is an environment
//! variable that only the test suite sets; a run without them behaves as documented.

use std::sync::OnceLock;

fn number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `BOXWALK_TEST_LANES=N`: a run gets N inference lanes instead of one per `--threads` (CPU) or
/// two (GPU), so that a test can compare one lane with several.
pub fn lanes() -> Option<usize> {
    number("BOXWALK_TEST_LANES")
}

/// `BOXWALK_TEST_MODEL_THREADS=N`: a CPU run's models start at N threads instead of
/// `--threads`, so that the check of lower counts runs without waiting for a run to need one.
pub fn model_threads() -> Option<usize> {
    number("BOXWALK_TEST_MODEL_THREADS")
}

/// `BOXWALK_TEST_BATCHED_PREPROCESSING=1`: a CPU run prepares its network inputs a batch at a
/// time, as a GPU run does, so that the tests run that path without a GPU.
pub fn batched_preprocessing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("BOXWALK_TEST_BATCHED_PREPROCESSING").is_ok_and(|v| v == "1"))
}

/// `BOXWALK_FAULT_OOM_ABOVE=N`: every batch of more than N images fails as if the device ran out
/// of memory (a panic, as tch raises libtorch's errors), in the models and in preparing a batch's
/// inputs, so that the retry paths run without a GPU.
pub fn out_of_memory(images: usize) {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| number("BOXWALK_FAULT_OOM_ABOVE"));
    if limit.is_some_and(|limit| images > limit) {
        panic!("CUDA out of memory (injected by BOXWALK_FAULT_OOM_ABOVE)");
    }
}

/// `BOXWALK_FAULT_WRITE=ERRNO@N`: from the Nth annotated copy of a run on (counting from 0),
/// every write fails with the OS error ERRNO (e.g. `5@40`, EIO from the 41st), so that faults
/// that cannot be made on demand, such as a failing disk or a quota, run without one.
pub fn write_fault() -> Option<std::io::Error> {
    static FAULT: OnceLock<Option<(i32, usize)>> = OnceLock::new();
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (errno, from) = (*FAULT.get_or_init(|| {
        let v = std::env::var("BOXWALK_FAULT_WRITE").ok()?;
        let (errno, from) = v.split_once('@')?;
        Some((errno.parse().ok()?, from.parse().ok()?))
    }))?;
    let k = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (k >= from).then(|| std::io::Error::from_raw_os_error(errno))
}
