//! What the operator knows of its IamIdentityMapping cache: has it been listed, is its watch
//! healthy, what went wrong last.
//!
//! One task drives the mapping watch, and only it feeds a [`CacheTracker`]. Everything that needs
//! the cache (the aws-auth reconcile loop, the principal resolver, the access-entry loop,
//! `/readyz`) reads a [`CacheWatch`] of it, a `tokio::sync::watch` that wakes every reader.
//! Nobody waits on the reflector's `Store::wait_until_ready()`: in kube-runtime 5 it is a
//! `DelayedInit` over a oneshot that keeps a single waker, so of several tasks waiting on it only
//! the one that polled last is woken, and the others hang.
//!
//! The cache is *current* when a complete list has been applied and no watch error came after
//! the last event: then every mapping that exists is in the store and every deletion was seen.
//! A managed aws-auth entry is removed only while the cache is current: a re-list after an
//! expired resourceVersion, an API server restart or the CRD coming back leaves the store with
//! the previous list until the new one is complete, and mappings created meanwhile are missing.

use std::sync::Arc;

use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::api::IamIdentityMapping;

/// The state of the mapping cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheState {
    /// A complete list has been applied to the store (at least once).
    pub synced: bool,
    /// Synced, and no watch error since the last event or complete list.
    pub current: bool,
    /// The last watch error, until the watch delivers again.
    pub last_error: Option<String>,
    /// Watch errors since the start (a list that keeps failing shows here).
    pub errors: u64,
}

impl CacheState {
    /// The state after one item of the watch stream.
    pub fn after<K>(&self, item: &Result<watcher::Event<K>, watcher::Error>) -> CacheState {
        match item {
            Ok(event) => self.after_event(event),
            Err(error) => self.after_error(error),
        }
    }

    /// The state after one watch event (applied to the store already).
    pub fn after_event<K>(&self, event: &watcher::Event<K>) -> CacheState {
        let mut next = self.clone();
        match event {
            // A list starts (at start, or again after an error): until it is complete the
            // store holds the previous one.
            watcher::Event::Init => next.current = false,
            watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                next.synced = true;
                next.current = true;
                next.last_error = None;
            }
            // A watch resumed from its resourceVersion delivers every change since: an event
            // after an error means nothing was missed.
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                next.current = next.synced;
                next.last_error = None;
            }
        }
        next
    }

    /// The state after a watch error.
    pub fn after_error(&self, error: &watcher::Error) -> CacheState {
        CacheState {
            current: false,
            last_error: Some(describe_error(error)),
            errors: self.errors + 1,
            ..self.clone()
        }
    }

    /// What is missing, for logs and `/readyz`: `None` once current.
    pub fn missing(&self) -> Option<String> {
        let error = self
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        match (self.synced, self.current) {
            (_, true) => None,
            (false, false) => Some(format!(
                "the list of IamIdentityMappings has not completed ({} watch errors){error}",
                self.errors
            )),
            (true, false) => Some(format!(
                "the IamIdentityMapping watch is re-listing or reconnecting{error}"
            )),
        }
    }
}

/// A watch error in words, with what to do when the CRD is missing.
fn describe_error(error: &watcher::Error) -> String {
    let not_found = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        watcher::Error::WatchError(status) => status.code == 404,
        _ => false,
    };
    if not_found {
        format!(
            "{error}: the IamIdentityMapping CRD ({}) is not installed; install it with `aws-auth-operator crd | kubectl apply --server-side -f -` (or the Helm chart); the operator waits for it",
            crate::api::CRD_NAME
        )
    } else {
        error.to_string()
    }
}

/// Feeds the cache's state from the watch events; held by the task that drives the watch.
#[derive(Debug)]
pub struct CacheTracker {
    state: watch::Sender<CacheState>,
}

impl CacheTracker {
    pub fn new() -> (CacheTracker, CacheWatch) {
        let (state, receiver) = watch::channel(CacheState::default());
        (CacheTracker { state }, CacheWatch { state: receiver })
    }

    /// Records one item of the mapping watch (after the reflector applied it to the store).
    pub fn observe<K>(&self, item: &Result<watcher::Event<K>, watcher::Error>) {
        self.update(|state| state.after(item));
    }

    fn update(&self, next: impl FnOnce(&CacheState) -> CacheState) {
        self.state.send_if_modified(|state| {
            let next = next(state);
            let changed = next != *state;
            *state = next;
            changed
        });
    }
}

/// A mapping cache fed event by event by its caller (tests, tools that replay a watch), with
/// the same bookkeeping as the operator's watch.
pub fn mapping_cache() -> (MappingCache, CacheFeed) {
    let (store, writer) = reflector::store::<IamIdentityMapping>();
    let (tracker, watch) = CacheTracker::new();
    (MappingCache { store, watch }, CacheFeed { writer, tracker })
}

/// The feeding end of [`mapping_cache`].
pub struct CacheFeed {
    writer: Writer<IamIdentityMapping>,
    tracker: CacheTracker,
}

impl CacheFeed {
    /// Applies a watch event to the store, then to the cache's state.
    pub fn apply(&mut self, event: &watcher::Event<IamIdentityMapping>) {
        self.writer.apply_watcher_event(event);
        self.tracker.update(|state| state.after_event(event));
    }

    /// A complete list of `mappings`.
    pub fn list(&mut self, mappings: impl IntoIterator<Item = IamIdentityMapping>) {
        self.apply(&watcher::Event::Init);
        for mapping in mappings {
            self.apply(&watcher::Event::InitApply(mapping));
        }
        self.apply(&watcher::Event::InitDone);
    }

    /// A watch error.
    pub fn fail(&self, error: &watcher::Error) {
        self.tracker.update(|state| state.after_error(error));
    }
}

/// A reader of the cache's state; clone one per task.
#[derive(Debug, Clone)]
pub struct CacheWatch {
    state: watch::Receiver<CacheState>,
}

impl CacheWatch {
    /// Waits until the cache has synced; `false` when the tracker is gone first (the watch
    /// task ended), so that the caller stops instead of waiting forever.
    pub async fn synced(&mut self) -> bool {
        self.state.wait_for(|state| state.synced).await.is_ok()
    }

    /// Waits for the next change of the state; `false` when the tracker is gone.
    pub async fn changed(&mut self) -> bool {
        self.state.changed().await.is_ok()
    }

    pub fn state(&self) -> CacheState {
        self.state.borrow().clone()
    }

    pub fn is_current(&self) -> bool {
        self.state.borrow().current
    }
}

/// The mapping store and the state of the watch that fills it.
#[derive(Debug, Clone)]
pub struct MappingCache {
    pub store: Store<IamIdentityMapping>,
    pub watch: CacheWatch,
}

/// The mappings at one moment, and whether they were complete then.
#[derive(Debug, Clone)]
pub struct MappingSnapshot {
    pub mappings: Vec<Arc<IamIdentityMapping>>,
    /// The cache was current when the snapshot was taken: a mapping missing from it was deleted.
    pub complete: bool,
}

impl MappingCache {
    /// A cache of `mappings`, listed completely.
    pub fn listed(mappings: impl IntoIterator<Item = IamIdentityMapping>) -> MappingCache {
        let (cache, mut feed) = mapping_cache();
        feed.list(mappings);
        // Dropping the feed keeps the last state readable.
        cache
    }

    /// The mappings now. Completeness is read before the store: an error after that only
    /// means deletions not seen yet (entries kept a little longer), never a re-list's old store
    /// taken for a complete one.
    pub fn snapshot(&self) -> MappingSnapshot {
        let complete = self.watch.is_current();
        MappingSnapshot {
            complete,
            mappings: self.store.state(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Event = Result<watcher::Event<IamIdentityMapping>, watcher::Error>;

    fn mapping(name: &str) -> IamIdentityMapping {
        IamIdentityMapping::new(name, Default::default())
    }

    fn expired() -> Event {
        Err(watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("too old resource version: 1 (100)", "Expired")
                .with_code(410),
        )))
    }

    fn state_after(events: Vec<Event>) -> CacheState {
        events
            .iter()
            .fold(CacheState::default(), |state, event| state.after(event))
    }

    #[test]
    fn a_complete_list_makes_the_cache_synced_and_current() {
        let state = state_after(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(mapping("a"))),
        ]);
        assert!(!state.synced && !state.current);
        assert!(state.missing().unwrap().contains("has not completed"));
        let state = state.after_event(&watcher::Event::<IamIdentityMapping>::InitDone);
        assert!(state.synced && state.current);
        assert_eq!(state.missing(), None);
    }

    /// After an expired resourceVersion the watcher lists again; until that list is complete
    /// the store still holds the old one, so the cache is not current.
    #[test]
    fn a_relist_after_an_error_is_not_current_until_it_completes() {
        let listed = state_after(vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)]);
        let failed = listed.after(&expired());
        assert!(failed.synced && !failed.current);
        assert!(
            failed
                .missing()
                .unwrap()
                .contains("too old resource version")
        );
        let relisting = failed
            .after_event(&watcher::Event::<IamIdentityMapping>::Init)
            .after_event(&watcher::Event::InitApply(mapping("a")));
        assert!(!relisting.current, "{relisting:?}");
        let relisted = relisting.after_event(&watcher::Event::<IamIdentityMapping>::InitDone);
        assert!(relisted.current && relisted.last_error.is_none());
    }

    /// A watch that reconnects from its resourceVersion misses nothing: its first event makes
    /// the cache current again.
    #[test]
    fn an_event_after_a_reconnect_makes_the_cache_current() {
        let state = state_after(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitDone),
            expired(),
            Ok(watcher::Event::Apply(mapping("a"))),
        ]);
        assert!(state.current);
        // Before the first complete list an event cannot make it current.
        let state = state_after(vec![expired(), Ok(watcher::Event::Delete(mapping("a")))]);
        assert!(!state.current && !state.synced);
    }

    #[test]
    fn a_missing_crd_says_how_to_install_it() {
        let not_found = Err(watcher::Error::InitialListFailed(kube::Error::Api(
            Box::new(
                kube::core::Status::failure(
                    "the server could not find the requested resource",
                    "NotFound",
                )
                .with_code(404),
            ),
        )));
        let state = state_after(vec![not_found]);
        let missing = state.missing().unwrap();
        assert!(
            missing.contains("CRD") && missing.contains("aws-auth-operator crd"),
            "{missing}"
        );
    }

    /// The start-up hang of kube-runtime's `Store::wait_until_ready()`: several tasks wait for
    /// the same cache, each first polled in a different order; every one must proceed once the
    /// list completes. Run for every order of three waiters.
    #[tokio::test]
    async fn every_waiter_proceeds_whatever_order_they_were_polled_in() {
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let (cache, mut feed) = mapping_cache();
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            let mut tasks = Vec::new();
            for waiter in order {
                let (mut watch, done) = (cache.watch.clone(), done_tx.clone());
                tasks.push(tokio::spawn(async move {
                    assert!(watch.synced().await);
                    done.send(waiter).unwrap();
                }));
                // Each waiter is polled (and parked) before the next one starts.
                tokio::task::yield_now().await;
            }
            feed.list([mapping("a")]);
            let mut proceeded = Vec::new();
            for _ in 0..3 {
                let waiter = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
                    .await
                    .unwrap_or_else(|_| panic!("order {order:?}: proceeded only {proceeded:?}"))
                    .unwrap();
                proceeded.push(waiter);
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(cache.snapshot().mappings.len(), 1);
            assert!(cache.snapshot().complete);
        }
    }

    /// A waiter whose cache task ended does not wait forever.
    #[tokio::test]
    async fn a_waiter_stops_when_the_watch_task_is_gone() {
        let (tracker, mut watch) = CacheTracker::new();
        drop(tracker);
        assert!(!watch.synced().await);
    }
}
