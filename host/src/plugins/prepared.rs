//! Prepared instances (`limits.prepared_instances`): what makes a JavaScript or Python plugin
//! affordable without giving up a fresh instance per call.
//!
//! Such a component carries its language runtime's whole pre-initialised heap (10-20 MB) as a
//! memory image: instantiating it copies the image (1.5-4.5 ms), while the hook itself takes tens
//! of µs. A plugin with prepared instances gets them from a thread of its own that instantiates
//! them ahead of time, off the request path; a call takes one that is ready, runs its hook in it,
//! and hands it back to that thread to be dropped (unmapping the memory is not free either).
//! Every instance serves exactly one call, so nothing of one request can be seen by another
//! (attacks.md P15), and every limit applies as for a fresh instance (the store's memory cap,
//! CPU deadline and host-call limits are set per call). When none is ready (a burst), the call
//! instantiates its own, as without preparation.
//!
//! The instances held count against `[plugins] max_prepared_instances`, slots the instance pool
//! sets aside for them; a pool stops (and gives its slots back) when its plugin version is
//! dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store};

use super::runtime::CallState;

/// An instance nothing ran in yet, with its store.
pub(crate) struct Ready {
    pub(crate) store: Store<CallState>,
    pub(crate) instance: Instance,
}

#[derive(Default)]
struct Queues {
    ready: VecDeque<Ready>,
    /// Used instances waiting to be dropped.
    retired: Vec<Ready>,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Condvar,
    stop: AtomicBool,
    target: usize,
    /// Instantiations that failed in a row (the pool backs off, calls instantiate their own).
    failures: AtomicUsize,
}

/// Used instances waiting for the pool's thread beyond which a call drops its own (so a burst
/// cannot hold more pool slots than were set aside).
const MAX_RETIRED: usize = 8;

/// The prepared instances of one plugin version.
pub(crate) struct Prepared {
    shared: Arc<Shared>,
    budget: Arc<AtomicUsize>,
}

impl Prepared {
    /// Reserves `target` instances from `budget` and starts the thread that keeps them ready;
    /// `None` when the budget is spent. `new_store` makes each instance's store.
    pub(crate) fn start(
        name: &str,
        target: usize,
        budget: &Arc<AtomicUsize>,
        pre: InstancePre<CallState>,
        new_store: impl Fn(&Engine) -> Store<CallState> + Send + 'static,
    ) -> Option<Prepared> {
        let reserved = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(target)).is_ok();
        if !reserved {
            tracing::warn!(
                plugin = name,
                target,
                "plugins.max_prepared_instances is spent: this plugin's calls instantiate their own"
            );
            return None;
        }
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            target,
            failures: AtomicUsize::new(0),
        });
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("imgate-prepare-{name}"))
            .spawn(move || keep_ready(&thread_shared, &pre, &new_store));
        if spawned.is_err() {
            budget.fetch_add(target, Ordering::SeqCst);
            return None;
        }
        Some(Prepared { shared, budget: budget.clone() })
    }

    /// A ready instance, if one is.
    pub(crate) fn take(&self) -> Option<Ready> {
        let ready = lock(&self.shared.queues).ready.pop_front();
        self.shared.wake.notify_one();
        ready
    }

    /// Hands a used instance back to be dropped off the request path (or drops it here when the
    /// pool's thread is behind).
    pub(crate) fn retire(&self, used: Ready) {
        let mut q = lock(&self.shared.queues);
        if q.retired.len() < MAX_RETIRED {
            q.retired.push(used);
            drop(q);
            self.shared.wake.notify_one();
        } else {
            drop(q);
            drop(used);
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        self.budget.fetch_add(self.shared.target, Ordering::SeqCst);
    }
}

fn lock(m: &Mutex<Queues>) -> std::sync::MutexGuard<'_, Queues> {
    // Each critical section is a queue operation: a poisoned lock still holds consistent queues.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pool's thread: drops what was used, instantiates what is missing, sleeps otherwise.
fn keep_ready(
    shared: &Shared,
    pre: &InstancePre<CallState>,
    new_store: &(impl Fn(&Engine) -> Store<CallState> + Send),
) {
    let engine = pre.engine().clone();
    loop {
        let (retired, missing) = {
            let mut q = lock(&shared.queues);
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let missing = shared.target.saturating_sub(q.ready.len());
                let backing_off = shared.failures.load(Ordering::SeqCst) >= 3;
                if !q.retired.is_empty() || (missing > 0 && !backing_off) {
                    break (std::mem::take(&mut q.retired), if backing_off { 0 } else { missing });
                }
                let (guard, waited) =
                    shared.wake.wait_timeout(q, std::time::Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner());
                q = guard;
                if waited.timed_out() {
                    // After a quiet second, try again even after failures.
                    shared.failures.store(0, Ordering::SeqCst);
                }
            }
        };
        drop(retired);
        for _ in 0..missing {
            let mut store = new_store(&engine);
            match pre.instantiate(&mut store) {
                Ok(instance) => {
                    shared.failures.store(0, Ordering::SeqCst);
                    lock(&shared.queues).ready.push_back(Ready { store, instance });
                }
                Err(e) => {
                    shared.failures.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(error = %format!("{e:#}"), "preparing a plugin instance failed; calls instantiate their own");
                    break;
                }
            }
        }
    }
}
