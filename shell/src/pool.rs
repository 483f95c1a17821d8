//! [`LanePool`]: the threads one zone's tick runs its packet lanes on ([`crate::host::lanes`]).
//!
//! Built on the zone's own tick thread, which is one of the pool's threads (rayon's
//! `use_current_thread`): the tick hands its lanes to the pool without leaving its thread or
//! queueing anything on the heap, and its thread builds a lane itself. So a steady tick
//! allocates nothing here. It never does I/O; sockets stay with the loop.

use rayon::prelude::*;

use crate::host::lanes::{MAX_LANES, Parallel};

/// A zone tick's compute threads (see the module docs).
#[derive(Debug)]
pub struct LanePool {
    pool: rayon::ThreadPool,
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the packet lane threads: {0}")]
pub struct PoolError(#[from] rayon::ThreadPoolBuildError);

impl LanePool {
    /// A pool of `threads` threads (capped at [`MAX_LANES`]), the calling thread one of them:
    /// call it on the thread that will run the ticks. A thread belongs to one pool at most.
    pub fn on_this_thread(threads: usize, name: &str) -> Result<Self, PoolError> {
        let name = name.to_owned();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.clamp(1, MAX_LANES))
            .use_current_thread()
            .thread_name(move |i| format!("{name}-lane-{i}"))
            .build()?;
        Ok(Self { pool })
    }
}

impl Parallel for LanePool {
    fn width(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run(&self, jobs: &mut [&mut (dyn FnMut() + Send)]) {
        if let [job] = jobs {
            job();
            return;
        }
        self.pool
            .install(|| jobs.par_iter_mut().with_max_len(1).for_each(|job| job()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_once_on_the_pool() {
        let pool = LanePool::on_this_thread(2, "test").unwrap();
        assert_eq!(pool.width(), 2);
        let counts: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        let mut jobs: Vec<_> = counts
            .iter()
            .map(|c| {
                move || {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })
            .collect();
        let mut refs: Vec<&mut (dyn FnMut() + Send)> = jobs
            .iter_mut()
            .map(|j| j as &mut (dyn FnMut() + Send))
            .collect();
        for _ in 0..3 {
            pool.run(&mut refs);
        }
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 3));
    }
}
