//! Giving freed memory back to the operating system at once, after a sweep emptied much of the
//! cache (a load test's million values expiring together).
//!
//! Both allocators keep what is freed for a while: mimalloc purges free pages after a delay (1 s
//! by default) and only when a thread next allocates, and glibc's heaps (where SQLite allocates)
//! keep free chunks below their top. `give_back` asks both to release everything free now:
//! resident memory then follows live state, which is what an operator watching a container
//! expects after a burst has passed.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Give-backs asked for so far; each async worker remembers the last it acted on.
static ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// A thread that starts after a give-back has nothing of it to collect.
    static DONE: Cell<u64> = Cell::new(ASKED.load(Ordering::Relaxed));
}

/// mimalloc collects one thread's heap at a time (the calling thread's), and purges the free
/// pages of every thread's arenas.
#[allow(unsafe_code)]
fn collect_this_thread() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any time; with
    // `force` it frees nothing live, only purges free pages (mimalloc.h, "mi_collect").
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Releases the free memory of both allocators (a few milliseconds; run it off the async
/// workers), and asks every async worker to release its own heap's when it next goes idle
/// (`on_idle`): mimalloc keeps a thread's free pages with that thread.
#[allow(unsafe_code)]
pub fn give_back() {
    ASKED.fetch_add(1, Ordering::Relaxed);
    collect_this_thread();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer, is thread-safe, and only returns free memory of
    // glibc's heaps to the system (malloc_trim(3)).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Run by each async worker as it goes idle (the runtime's `on_thread_park`): one atomic load,
/// and a collection of its own heap when a give-back was asked since its last.
pub fn on_idle() {
    let asked = ASKED.load(Ordering::Relaxed);
    if DONE.with(|d| d.replace(asked)) != asked {
        collect_this_thread();
    }
}

/// Whether a sweep that dropped `swept` entries (cache entries and expired verifications),
/// leaving `held`, is worth a `give_back`: a burst that has passed — many entries, and at least
/// as many as remain. Under steady load each 5-second sweep drops a small share of what is live
/// (the allocators reuse that memory at once; giving it back would only fault it in again), and
/// small sweeps are left to the allocators' own pace.
pub fn worth_giving_back(swept: usize, held: usize) -> bool {
    swept >= 10_000 && swept >= held
}

#[cfg(test)]
mod tests {
    /// Giving back frees nothing live: what was allocated before reads the same after, from
    /// this thread and another.
    #[test]
    fn giving_back_keeps_what_is_live() {
        let live: Vec<u64> = (0..1_000_000).collect();
        let freed: Vec<Vec<u8>> = (0..1_000).map(|i| vec![i as u8; 4096]).collect();
        drop(freed);
        super::give_back();
        super::on_idle();
        std::thread::spawn(super::on_idle)
            .join()
            .expect("on_idle on another thread");
        std::thread::spawn(super::give_back)
            .join()
            .expect("give_back on another thread");
        assert!(live.iter().enumerate().all(|(i, &v)| v == i as u64));
        let again: Vec<u8> = vec![7; 1 << 20];
        assert!(again.iter().all(|&b| b == 7));
    }

    #[test]
    fn only_a_burst_that_has_passed_is_given_back() {
        // A load test's million values expiring together.
        assert!(super::worth_giving_back(1_000_000, 0));
        assert!(super::worth_giving_back(10_000, 10_000));
        // Steady load: each sweep drops a small share of what is live.
        assert!(!super::worth_giving_back(10_000, 1_200_000));
        // Small sweeps.
        assert!(!super::worth_giving_back(9_999, 0));
    }
}
