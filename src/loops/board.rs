//! Where a loop publishes what it found, one report per mapping name, for the aws-auth
//! reconcile (the single status writer) and the other loops to read.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

#[derive(Debug)]
struct Published<R> {
    reports: BTreeMap<String, R>,
    /// Bumped whenever a report changes.
    version: u64,
}

/// The shared, cheaply cloneable map of reports by mapping name, with a `Notify` for the loops
/// that read it.
#[derive(Debug)]
pub struct Board<R> {
    published: Arc<RwLock<Published<R>>>,
    changed: Arc<Notify>,
}

// Derived impls would ask `R: Clone` and `R: Default`; the board shares its reports instead.
impl<R> Clone for Board<R> {
    fn clone(&self) -> Self {
        Board {
            published: self.published.clone(),
            changed: self.changed.clone(),
        }
    }
}

impl<R> Default for Board<R> {
    fn default() -> Self {
        Board {
            published: Arc::new(RwLock::new(Published {
                reports: BTreeMap::new(),
                version: 0,
            })),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl<R: Clone + PartialEq> Board<R> {
    pub fn new() -> Board<R> {
        Board::default()
    }

    fn read<T>(&self, f: impl FnOnce(&Published<R>) -> T) -> T {
        // A writer that panicked left whole reports behind: still worth reading.
        let guard = self.published.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// The report of one mapping.
    pub fn get(&self, name: &str) -> Option<R> {
        self.read(|p| p.reports.get(name).cloned())
    }

    /// Every report.
    pub fn snapshot(&self) -> BTreeMap<String, R> {
        self.read(|p| p.reports.clone())
    }

    /// A number that changes whenever a report changes (cheap change detection).
    pub fn version(&self) -> u64 {
        self.read(|p| p.version)
    }

    /// Notified after every change of a report.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Replaces every report (mappings that are gone disappear). Notifies only when a report
    /// changed, so that an idle pass wakes nobody. Returns whether it did.
    pub fn publish(&self, reports: BTreeMap<String, R>) -> bool {
        let changed = {
            let mut guard = self.published.write().unwrap_or_else(|e| e.into_inner());
            let changed = guard.reports != reports;
            if changed {
                guard.reports = reports;
                guard.version += 1;
            }
            changed
        };
        if changed {
            // Every reader waiting now, and a permit for one that comes late.
            self.changed.notify_waiters();
            self.changed.notify_one();
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn reports(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[tokio::test]
    async fn publish_notifies_and_bumps_the_version_only_on_change() {
        let board = Board::new();
        let notify = board.changed();
        assert!(board.publish(reports(&[("a", 1)])));
        // The permit stored by notify_one is there for a waiter that comes late.
        tokio::time::timeout(Duration::from_secs(1), notify.notified())
            .await
            .expect("notified");
        let version = board.version();
        assert!(!board.publish(reports(&[("a", 1)])));
        assert_eq!(board.version(), version);
        assert_eq!(board.get("a"), Some(1));
        assert!(board.publish(reports(&[("b", 2)])));
        assert!(board.version() > version);
        assert_eq!(board.get("a"), None, "gone mappings disappear");
        assert_eq!(board.snapshot(), reports(&[("b", 2)]));
    }

    #[test]
    fn clones_share_their_reports() {
        let board = Board::new();
        let reader = board.clone();
        board.publish(reports(&[("a", 1)]));
        assert_eq!(reader.get("a"), Some(1));
    }
}
