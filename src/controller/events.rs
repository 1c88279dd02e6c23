//! Kubernetes events, aggregated into series like kube-runtime's `Recorder`, but keyed by the
//! message too: the same event repeated bumps one series, and an event whose message changed is
//! a new event (kube-runtime's recorder keeps a series' first message).
//!
//! They are written through the core/v1 Events API, with both the new fields (`eventTime`,
//! `series`, `reportingComponent`/`reportingInstance`, `action`) and the older ones every
//! client still reads (`count`, `firstTimestamp`, `lastTimestamp`, `source`): `kubectl get
//! events` shows the count and the last time, and `--sort-by=.lastTimestamp` sorts them. The
//! events.k8s.io/v1 API cannot carry the older ones: the API server refuses an event created
//! there with `deprecatedCount`, `deprecatedFirstTimestamp`, `deprecatedLastTimestamp` or
//! `deprecatedSource` set ("needs to be unset", pkg/apis/core/validation/events.go), and those
//! fields are immutable through it; through core/v1 only the legacy validation applies. Both
//! APIs show the same objects (events.k8s.io/v1 maps `count` to `deprecatedCount` and so on).
//!
//! Events about cluster-scoped objects (IamIdentityMappings) live in namespace `default`, the
//! Kubernetes convention; events about aws-auth live in kube-system.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSeries, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use tokio::sync::Mutex;

/// A repeat within this long joins the series; after it, a new event starts.
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// The events API caps the note at 1 kB.
const MAX_NOTE_BYTES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    warning: bool,
    reason: String,
    note: String,
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
}

#[derive(Debug, Clone)]
struct Series {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes events as one reporting controller instance.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<HashMap<SeriesKey, Series>>,
}

impl EventPublisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> EventPublisher {
        EventPublisher {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the event, or bumps its series when the same event (same message included) was
    /// published recently.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, MAX_NOTE_BYTES);
        let now = Timestamp::now();
        let key = SeriesKey::new(regarding, type_, reason, &note);
        // The cache decides create or patch; the API call runs without holding it, so that
        // events of many mappings are published at once.
        match self.next_call(key, regarding, now).await {
            Call::Patch {
                namespace,
                name,
                count,
            } => self.bump(&namespace, &name, count, now).await,
            Call::Create { namespace, name } => {
                let reporter = Reporter {
                    controller: &self.controller,
                    instance: &self.instance,
                };
                let event = reporter.first_event(
                    namespace.clone(),
                    name,
                    regarding,
                    type_,
                    reason,
                    note,
                    now,
                );
                self.create(&namespace, &event).await
            }
        }
    }

    /// Records the event in the series cache (dropping expired series) and says whether it
    /// starts a new series or repeats a recent one.
    async fn next_call(&self, key: SeriesKey, regarding: &ObjectReference, now: Timestamp) -> Call {
        let mut series = self.series.lock().await;
        series.retain(|_, s| s.last + SERIES_TTL > now);
        match series.get_mut(&key) {
            Some(existing) => {
                existing.count += 1;
                existing.last = now;
                Call::Patch {
                    namespace: existing.namespace.clone(),
                    name: existing.name.clone(),
                    count: existing.count,
                }
            }
            None => {
                let namespace = regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string());
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                );
                series.insert(
                    key,
                    Series {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        count: 1,
                        last: now,
                    },
                );
                Call::Create { namespace, name }
            }
        }
    }

    /// Patches one more repeat into an existing event.
    async fn bump(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&repeat_patch(count, now)),
        )
        .await?;
        Ok(())
    }

    /// Creates the first event of a series.
    async fn create(&self, namespace: &str, event: &Event) -> Result<(), kube::Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), event).await?;
        Ok(())
    }
}

impl SeriesKey {
    /// Events with equal keys belong to one series.
    fn new(regarding: &ObjectReference, type_: EventType, reason: &str, note: &str) -> SeriesKey {
        SeriesKey {
            warning: type_ == EventType::Warning,
            reason: reason.to_string(),
            note: note.to_string(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
        }
    }
}

/// Who publishes: the reporting controller and its instance.
struct Reporter<'a> {
    controller: &'a str,
    instance: &'a str,
}

impl Reporter<'_> {
    /// The first event of a series, as client-go's recorder writes it (count 1, the first and
    /// last timestamps, the source) plus the fields of events.k8s.io/v1.
    #[allow(clippy::too_many_arguments)]
    fn first_event(
        &self,
        namespace: String,
        name: String,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
        now: Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            action: Some("Reconcile".to_string()),
            reason: Some(reason.to_string()),
            message: Some(note),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.controller.to_string()),
            reporting_instance: Some(self.instance.to_string()),
            source: Some(EventSource {
                component: Some(self.controller.to_string()),
                host: None,
            }),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            ..Event::default()
        }
    }
}

/// The merge patch of a repeat: the count and the last time, in both the older fields and the
/// series.
fn repeat_patch(count: i32, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "count": count,
        "lastTimestamp": Time(now),
        "series": EventSeries {
            count: Some(count),
            last_observed_time: Some(MicroTime(now)),
        },
    })
}

/// What publishing an event takes: a new event, or one more in its series.
enum Call {
    Create {
        namespace: String,
        name: String,
    },
    Patch {
        namespace: String,
        name: String,
        count: i32,
    },
}

/// `text` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubectl get events` (core/v1) shows the count and sorts by `lastTimestamp`: both are set
    /// from the first event on, with the source, next to the events.k8s.io/v1 fields.
    #[test]
    fn events_carry_the_count_and_timestamps_kubectl_reads() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let regarding = ObjectReference {
            kind: Some("ConfigMap".into()),
            namespace: Some("kube-system".into()),
            name: Some("aws-auth".into()),
            ..ObjectReference::default()
        };
        let reporter = Reporter {
            controller: "awsauth.dev/aws-auth-operator",
            instance: "pod-1",
        };
        let event = reporter.first_event(
            "kube-system".into(),
            "aws-auth.1".into(),
            &regarding,
            EventType::Warning,
            "RecoveredDeletedAwsAuth",
            "note".into(),
            now,
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["count"], 1);
        assert_eq!(json["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(json["lastTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(json["eventTime"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(json["source"]["component"], "awsauth.dev/aws-auth-operator");
        assert_eq!(json["reportingComponent"], "awsauth.dev/aws-auth-operator");
        assert_eq!(json["reportingInstance"], "pod-1");
        assert_eq!(json["involvedObject"]["name"], "aws-auth");
        assert_eq!(json["message"], "note");
        assert_eq!(json["type"], "Warning");
        assert!(
            json.get("series").is_none(),
            "a series starts at the second event"
        );

        let later = Timestamp::from_second(1_700_000_060).unwrap();
        assert_eq!(
            repeat_patch(2, later),
            serde_json::json!({
                "count": 2,
                "lastTimestamp": "2023-11-14T22:14:20Z",
                "series": {"count": 2, "lastObservedTime": "2023-11-14T22:14:20.000000Z"},
            })
        );
    }

    #[test]
    fn truncation_stays_within_the_limit_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
