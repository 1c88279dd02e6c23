//! What the loops without a watch of their own (the access-entry loop, the principal resolver)
//! share: when they start, when they run a pass ([`schedule`]) and where they publish what
//! they found ([`board`]). Neutral ground: the loops and the controller that starts them both
//! depend on it, and it depends on none of them.

pub mod board;
pub mod schedule;

use std::future::Future;
use std::pin::Pin;

use tracing::warn;

use crate::cache::CacheWatch;

pub use board::Board;
pub use schedule::PassSchedule;

/// Waits until the mapping cache has synced: before its first complete list an empty store
/// would read as "every mapping was deleted". False when the loop named `what` must not start:
/// `shutdown` completed first, or the mapping watch ended before the cache synced.
pub async fn wait_until_synced<S: Future>(
    cache: &CacheWatch,
    shutdown: Pin<&mut S>,
    what: &'static str,
) -> bool {
    let mut synced = cache.clone();
    tokio::select! {
        listed = synced.synced() => {
            if !listed {
                warn!(task = what, "the mapping watch ended before the cache synced; stopping");
            }
            listed
        }
        _ = shutdown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::mapping_cache;

    #[tokio::test]
    async fn a_synced_cache_lets_the_loop_start() {
        let (cache, mut feed) = mapping_cache();
        feed.list([]);
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        assert!(wait_until_synced(&cache.watch, shutdown.as_mut(), "test loop").await);
    }

    #[tokio::test]
    async fn shutdown_before_the_sync_stops_the_loop() {
        let (cache, _feed) = mapping_cache();
        let shutdown = std::future::ready(());
        tokio::pin!(shutdown);
        assert!(!wait_until_synced(&cache.watch, shutdown.as_mut(), "test loop").await);
    }

    #[tokio::test]
    async fn a_watch_that_ends_unsynced_stops_the_loop() {
        let (cache, feed) = mapping_cache();
        drop(feed);
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        assert!(!wait_until_synced(&cache.watch, shutdown.as_mut(), "test loop").await);
    }
}
