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
    /// The thread's CPU time at the first tick of the running call.
    mark: Option<Duration>,
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
            mark: None,
            ticks_left: ticks_per_call,
            ticks_per_call,
        }
    }

    /// Starts a call's count (the caller also sets the deadline one tick away).
    pub(crate) fn arm(&mut self) {
        self.mark = None;
        self.ticks_left = self.ticks_per_call;
    }

    /// The epoch callback: go on for one more tick, or stop the call.
    pub(crate) fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let now = ThreadTime::try_now().ok().map(|t| t.as_duration());
        self.decide(now)
    }

    /// [`Self::on_tick`] with the clock reading given (`None`: unreadable).
    fn decide(&mut self, thread_cpu: Option<Duration>) -> wasmtime::Result<UpdateDeadline> {
        let over = match (thread_cpu, self.mark) {
            (Some(now), None) => {
                self.mark = Some(now);
                false
            }
            (Some(now), Some(start)) => now.saturating_sub(start) >= self.budget,
            (None, _) => {
                self.ticks_left = self.ticks_left.saturating_sub(1);
                self.ticks_left == 0
            }
        };
        if over {
            Err(OverBudget {
                budget_ms: self.budget.as_millis(),
            }
            .into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    }
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
        b.arm();
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
        b.arm();
        assert!(b.decide(ms(7)).is_ok()); // baseline
        assert!(b.decide(ms(40)).is_ok());
        let Err(err) = b.decide(ms(57)) else {
            panic!("57 ms of CPU against a 50 ms budget went on");
        };
        assert!(err.to_string().contains("CPU budget of 50 ms"), "{err}");
    }

    #[test]
    fn each_call_starts_its_own_count() {
        let mut b = CpuBudget::new(Duration::from_millis(50), TICK);
        b.arm();
        assert!(b.decide(ms(0)).is_ok());
        assert!(b.decide(ms(45)).is_ok());
        b.arm();
        assert!(b.decide(ms(45)).is_ok());
        assert!(b.decide(ms(90)).is_ok());
    }

    #[test]
    fn without_a_thread_clock_it_counts_ticks() {
        let mut b = CpuBudget::new(Duration::from_millis(20), TICK);
        b.arm();
        for _ in 0..3 {
            assert!(b.decide(None).is_ok());
        }
        assert!(b.decide(None).is_err());
    }

    #[test]
    fn the_real_clock_reads() {
        let mut b = CpuBudget::new(Duration::from_secs(60), TICK);
        b.arm();
        assert!(b.on_tick().is_ok());
        assert!(
            b.mark.is_some(),
            "thread CPU time is readable on this platform"
        );
    }
}
