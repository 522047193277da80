//! The CPU budget of one call into the guest, measured in CPU time of the thread
//! that runs it, not in wall time.
//!
//! wasmtime interrupts a call at an epoch deadline; the epoch ticker advances
//! every [`EPOCH_TICK`](crate::sandbox::EPOCH_TICK) of wall time. Counting ticks
//! alone would charge a call for time its thread spent descheduled, so on a
//! loaded machine a healthy tenant would be stopped for no fault of its own.
//! Instead every call arms a deadline one tick away; each time it is reached the
//! epoch callback reads the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`, or
//! `GetThreadTimes` on Windows) and lets the call go on while its CPU time is
//! under the budget. The first reading of a call is its baseline, so a call may
//! run for up to one tick of CPU before its count starts; the trap comes at most
//! one tick after the budget is spent. Calls that end before the next tick (all
//! of the relay's) never read the clock.
//!
//! At each tick under budget the call also *yields* to the async executor
//! (`UpdateDeadline::YieldCustom`), so a long call holds a tokio worker — and the
//! tenants queued on it — for one tick at a time, as Zed's extension host does.
//! A yielded call may resume on another thread, and its old thread runs other
//! tasks meanwhile; so the CPU clock is read again when the call *resumes*
//! (inside the yield future, on the resuming thread), and a call is charged only
//! for what its thread spent between a resume and the next tick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpu_time::ThreadTime;
use wasmtime::UpdateDeadline;

/// Why a call was stopped (the text the tenant's `state` reason carries).
#[derive(Debug, thiserror::Error)]
#[error("the guest used more than its CPU budget of {budget_ms} ms in one call")]
pub(crate) struct OverBudget {
    budget_ms: u128,
}

/// One store's budget state.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    budget: Duration,
    /// CPU time the running call was charged so far.
    spent: Duration,
    /// The running thread's CPU time when the call's current stretch began: set
    /// at its first tick, then by each resume after a yield.
    mark: Arc<Mutex<Option<Duration>>>,
    /// Whether the running call may yield: an async call may, a synchronous
    /// entry (instantiation runs the guest's start code) may not.
    yielding: bool,
    /// Ticks left in this call when the thread CPU clock cannot be read (the
    /// budget then falls back to wall time, as whole ticks).
    ticks_left: u64,
    ticks_per_call: u64,
}

impl CpuBudget {
    /// A budget of `budget` CPU time per call; `tick` is the epoch tick.
    pub(crate) fn new(budget: Duration, tick: Duration) -> Self {
        let ticks_per_call = (budget.as_micros() / tick.as_micros().max(1)).max(1) as u64;
        CpuBudget {
            budget,
            spent: Duration::ZERO,
            mark: Arc::default(),
            yielding: false,
            ticks_left: ticks_per_call,
            ticks_per_call,
        }
    }

    /// Starts a call's count (the caller also sets the deadline one tick away);
    /// `yielding` when the call is async.
    pub(crate) fn arm(&mut self, yielding: bool) {
        self.yielding = yielding;
        self.spent = Duration::ZERO;
        *lock(&self.mark) = None;
        self.ticks_left = self.ticks_per_call;
    }

    /// The epoch callback: yield, then go on for one more tick; or stop the call.
    pub(crate) fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        self.decide(thread_cpu())?;
        if !self.yielding {
            return Ok(UpdateDeadline::Continue(1));
        }
        let mark = self.mark.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                // Resumed, perhaps on another thread: its clock counts from here.
                *lock(&mark) = thread_cpu();
            }),
        ))
    }

    /// Charges the stretch that ended at this tick (`None`: the clock is
    /// unreadable); `Err` once the call is over budget.
    fn decide(&mut self, thread_cpu: Option<Duration>) -> wasmtime::Result<()> {
        let over = match (thread_cpu, lock(&self.mark).take()) {
            // The call's first tick: its baseline.
            (Some(_), None) => false,
            (Some(now), Some(start)) => {
                self.spent += now.saturating_sub(start);
                self.spent >= self.budget
            }
            (None, _) => {
                self.ticks_left = self.ticks_left.saturating_sub(1);
                self.ticks_left == 0
            }
        };
        if over {
            return Err(OverBudget {
                budget_ms: self.budget.as_millis(),
            }
            .into());
        }
        // Until a resume sets it, the stretch goes on from this reading.
        *lock(&self.mark) = thread_cpu;
        Ok(())
    }
}

fn thread_cpu() -> Option<Duration> {
    ThreadTime::try_now().ok().map(|t| t.as_duration())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(5);

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn descheduled_time_is_not_charged() {
        let mut b = CpuBudget::new(Duration::from_millis(50), TICK);
        b.arm(true);
        // 100 ticks (half a second of wall time) with the thread barely running.
        assert!(b.decide(ms(1000)).is_ok());
        for i in 0..100 {
            assert!(b
                .decide(Some(
                    Duration::from_millis(1000) + Duration::from_micros(i * 100)
                ))
                .is_ok());
        }
    }

    #[test]
    fn spinning_past_the_budget_stops_the_call() {
        let mut b = CpuBudget::new(Duration::from_millis(50), TICK);
        b.arm(true);
        assert!(b.decide(ms(7)).is_ok()); // baseline
        assert!(b.decide(ms(40)).is_ok());
        let Err(err) = b.decide(ms(57)) else {
            panic!("57 ms of CPU against a 50 ms budget went on");
        };
        assert!(err.to_string().contains("CPU budget of 50 ms"), "{err}");
    }

    #[test]
    fn time_between_a_yield_and_its_resume_is_not_charged() {
        let mut b = CpuBudget::new(Duration::from_millis(50), TICK);
        b.arm(true);
        assert!(b.decide(ms(0)).is_ok()); // baseline
        assert!(b.decide(ms(30)).is_ok()); // 30 charged
                                           // Yielded; the thread ran other tenants for 400 ms, then the call
                                           // resumed (on any thread) at 400 ms of that thread's clock.
        *lock(&b.mark) = ms(400);
        assert!(b.decide(ms(410)).is_ok(), "40 ms charged, not 410");
        assert!(b.decide(ms(420)).is_err(), "50 ms charged");
    }

    #[test]
    fn each_call_starts_its_own_count() {
        let mut b = CpuBudget::new(Duration::from_millis(50), TICK);
        b.arm(true);
        assert!(b.decide(ms(0)).is_ok());
        assert!(b.decide(ms(45)).is_ok());
        b.arm(true);
        assert!(b.decide(ms(45)).is_ok());
        assert!(b.decide(ms(90)).is_ok());
    }

    #[test]
    fn without_a_thread_clock_it_counts_ticks() {
        let mut b = CpuBudget::new(Duration::from_millis(20), TICK);
        b.arm(true);
        for _ in 0..3 {
            assert!(b.decide(None).is_ok());
        }
        assert!(b.decide(None).is_err());
    }

    #[test]
    fn the_real_clock_reads() {
        let mut b = CpuBudget::new(Duration::from_secs(60), TICK);
        b.arm(true);
        assert!(b.on_tick().is_ok());
        assert!(
            lock(&b.mark).is_some(),
            "thread CPU time is readable on this platform"
        );
    }
}
