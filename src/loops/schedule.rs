//! When the loops without a watch (access entries, principals) run a pass: at once, then on
//! every wake (after a short debounce, so that a burst of changes is one pass) and at every
//! resync (with jitter); a standby replica waits until it leads, then resyncs at once.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// A burst of mapping changes settles into one pass.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The resync period with up to 10% jitter, so that replicas and clusters do not call AWS in
/// step.
pub fn jittered(resync: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let spread = resync.as_millis() as u64 / 10;
    resync + Duration::from_millis(if spread == 0 { 0 } else { random % spread })
}

/// The schedule of one loop's passes.
pub struct PassSchedule {
    resync: Duration,
    next_resync: Instant,
    started: bool,
    /// `None` without leader election: this replica always runs passes.
    leading: Option<watch::Receiver<bool>>,
}

impl PassSchedule {
    pub fn new(resync: Duration, leading: Option<watch::Receiver<bool>>) -> PassSchedule {
        PassSchedule {
            resync,
            next_resync: Instant::now(),
            started: false,
            leading,
        }
    }

    /// Waits for the next pass and says whether it is a resync; `None` once `shutdown` has
    /// completed (or the leadership went away). The first call returns at once.
    pub async fn next<S: Future<Output = ()>>(
        &mut self,
        wake: &Notify,
        mut shutdown: Pin<&mut S>,
    ) -> Option<bool> {
        if self.started {
            tokio::select! {
                () = wake.notified() => {
                    tokio::select! {
                        () = tokio::time::sleep(DEBOUNCE) => {}
                        () = shutdown.as_mut() => return None,
                    }
                }
                () = tokio::time::sleep_until(self.next_resync) => {}
                () = shutdown.as_mut() => return None,
            }
        }
        self.started = true;
        if let Some(leading) = self.leading.as_mut() {
            while !*leading.borrow_and_update() {
                tokio::select! {
                    changed = leading.changed() => {
                        changed.ok()?;
                        // A new leader resyncs at once.
                        self.next_resync = Instant::now();
                    }
                    () = shutdown.as_mut() => return None,
                }
            }
        }
        let resync = Instant::now() >= self.next_resync;
        if resync {
            self.next_resync = Instant::now() + jittered(self.resync);
        }
        Some(resync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(300));
            assert!(
                j >= Duration::from_secs(300) && j < Duration::from_secs(330),
                "{j:?}"
            );
        }
        assert_eq!(jittered(Duration::from_millis(5)), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_at_once_on_wakes_and_at_resyncs() {
        let wake = Notify::new();
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let mut schedule = PassSchedule::new(Duration::from_secs(100), None);
        assert_eq!(schedule.next(&wake, shutdown.as_mut()).await, Some(true));
        wake.notify_one();
        let before = Instant::now();
        assert_eq!(schedule.next(&wake, shutdown.as_mut()).await, Some(false));
        assert_eq!(before.elapsed(), DEBOUNCE);
        // No wake: the resync comes.
        assert_eq!(schedule.next(&wake, shutdown.as_mut()).await, Some(true));
        assert!(before.elapsed() >= Duration::from_secs(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_waits_until_it_leads_then_resyncs() {
        let wake = Notify::new();
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let (lead, leading) = watch::channel(false);
        let mut schedule = PassSchedule::new(Duration::from_secs(100), Some(leading));
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            lead.send(true).expect("the schedule listens");
            std::future::pending::<()>().await
        });
        assert_eq!(schedule.next(&wake, shutdown.as_mut()).await, Some(true));
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn shutdown_ends_the_schedule() {
        let wake = Notify::new();
        let shutdown = std::future::ready(());
        tokio::pin!(shutdown);
        let (_lead, leading) = watch::channel(false);
        let mut schedule = PassSchedule::new(Duration::from_secs(100), Some(leading));
        assert_eq!(schedule.next(&wake, shutdown.as_mut()).await, None);
    }
}
