//! Scale, against the in-memory API: status writes run concurrently within the
//! configured bound, exactly one per mapping (none again while the watch cache lags, no event
//! per new mapping), an idle cluster still sees no writes; and at aws-auth's 1 MiB limit the
//! youngest mappings that do not fit are refused, nothing partial is written, and the entries
//! that fit stay served.

mod support;

use std::time::Duration;

use aws_auth_operator::awsauth::{MAX_CONFIGMAP_DATA_BYTES, data_size, parse_data};
use aws_auth_operator::controller::reconcile::{Context, reconcile};
use aws_auth_operator::plan::Settings;
use aws_auth_operator::status::{READY, STALLED};
use support::*;

fn many(count: usize, username_bytes: usize) -> Vec<aws_auth_operator::api::IamIdentityMapping> {
    (0..count)
        .map(|i| {
            role_mapping(
                &format!("m-{i:05}"),
                &format!("arn:aws:iam::{ACCOUNT}:role/scale-{i:05}"),
                &format!("user-{i}-{}", "x".repeat(username_bytes)),
                &["view"],
                i as i64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_are_concurrent_within_the_bound_and_one_per_mapping() {
    let fake = FakeApi::start_with_latency(Duration::from_millis(5));
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let ctx = Context {
        status_concurrency: 8,
        ..context_with_events(&fake, Settings::default())
    };
    store(&fake, many(200, 0));

    // The reflector store has not seen the statuses yet when the next reconcile runs: it
    // still holds the mappings as created.
    let stale = fake.mappings();
    let report = reconcile(&ctx, &stale, time(1)).await.unwrap();
    assert_eq!(report.status_writes, 200);
    let max = fake.state().status_patches_in_flight_max;
    assert!(
        (2..=8).contains(&max),
        "{max} status patches in flight at once; the bound is 8"
    );
    fake.clear_calls();
    let again = reconcile(&ctx, &stale, time(2)).await.unwrap();
    assert_eq!(
        (again.status_writes, fake.status_writes()),
        (0, 0),
        "a status already patched is not patched again while the cache lags"
    );
    // No event per new mapping: 200 renders cost 200 writes, not 400.
    assert!(
        fake.events().is_empty(),
        "{:?}",
        fake.events().iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    for name in ["m-00000", "m-00199"] {
        assert_eq!(cond2(&fake, name, READY), is("True", "Rendered"));
    }

    // Idle, with the statuses the watch now shows: no writes of any kind.
    fake.clear_calls();
    reconcile(&ctx, &fake.mappings(), time(3)).await.unwrap();
    assert_eq!(fake.count(|c| c.method != http::Method::GET), 0);
}

/// ~9,000 mappings with long usernames are more than 1 MiB of aws-auth: the oldest that fit
/// are written, the rest are refused with DoesNotFit (saying why), and aws-auth stays within
/// the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_1_mib_limit_the_youngest_mappings_are_refused_and_nothing_partial_is_written() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let ctx = context(&fake, Settings::default());
    let count = 9_000;
    store(&fake, many(count, 40));
    reconcile(&ctx, &fake.mappings(), time(1)).await.unwrap();

    let data = fake.aws_auth_data();
    let bytes = data_size(&data);
    assert!(bytes <= MAX_CONFIGMAP_DATA_BYTES, "{bytes} bytes");
    let written = parse_data(&data).entries.roles.len() - 1;
    assert!(
        (6_000..count).contains(&written),
        "{written} of {count} entries written"
    );
    // The oldest fit, the youngest do not.
    let oldest = format!("m-{:05}", 0);
    let youngest = format!("m-{:05}", count - 1);
    assert_eq!(cond2(&fake, &oldest, READY), is("True", "Rendered"));
    let (stalled, reason, message) = cond(&fake, &youngest, STALLED);
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "DoesNotFit"));
    assert!(message.contains("1048576-byte limit"), "{message}");
    assert!(message.contains("nothing is rendered"), "{message}");
    let refused = (0..count)
        .filter(|i| cond2(&fake, &format!("m-{i:05}"), READY) == is("False", "DoesNotFit"))
        .count();
    assert_eq!(written + refused, count);
    // The refused are exactly the youngest.
    assert_eq!(
        cond2(&fake, &format!("m-{:05}", written - 1), READY),
        is("True", "Rendered")
    );
    assert_eq!(
        cond2(&fake, &format!("m-{written:05}"), READY),
        is("False", "DoesNotFit")
    );
}

/// Deleting many mappings at once (an application removed from Git) costs one aws-auth write
/// and one event that sums the removals up, not an event per removed entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_many_mappings_is_one_write_and_one_event() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let ctx = context_with_events(&fake, Settings::default());
    store(&fake, many(200, 0));
    reconcile(&ctx, &fake.mappings(), time(1)).await.unwrap();

    assert!(fake.events().is_empty());
    let kept: Vec<_> = fake.mappings().into_iter().take(20).collect();
    let report = reconcile(&ctx, &kept, time(2)).await.unwrap();
    assert_eq!(report.aws_auth_writes, 1);
    let removed: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("EntryRemoved"))
        .collect();
    assert_eq!(removed.len(), 1, "one event for 180 removals");
    let note = removed[0].note.clone().unwrap_or_default();
    assert!(
        note.starts_with("removed 180 entries no mapping renders any more: ")
            && note.ends_with(" and 175 more"),
        "{note}"
    );
    let roles = parse_data(&fake.aws_auth_data()).entries.roles;
    assert_eq!(roles.len(), 21, "20 kept mappings and the node role");
}
