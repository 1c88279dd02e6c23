//! Kubernetes events (events.k8s.io/v1), aggregated into series like kube-runtime's `Recorder`,
//! but keyed by the message too: the same event repeated bumps one series, and an event whose
//! message changed is a new event (kube-runtime's recorder keeps a series' first message).
//!
//! Events about cluster-scoped objects (IamIdentityMappings) live in namespace `default`, the
//! Kubernetes convention; events about aws-auth live in kube-system.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
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
        let key = SeriesKey {
            warning: type_ == EventType::Warning,
            reason: reason.to_string(),
            note: note.clone(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
        };
        // The cache decides create or patch; the API call runs without holding it, so that
        // events of many mappings are published at once.
        let call = {
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
        };
        match call {
            Call::Patch {
                namespace,
                name,
                count,
            } => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let patch = serde_json::json!({
                    "series": EventSeries {
                        count,
                        last_observed_time: MicroTime(now),
                    }
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Call::Create { namespace, name } => {
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    action: Some("Reconcile".to_string()),
                    reason: Some(reason.to_string()),
                    note: Some(note),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    type_: Some(
                        match type_ {
                            EventType::Normal => "Normal",
                            EventType::Warning => "Warning",
                        }
                        .to_string(),
                    ),
                    ..Event::default()
                };
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                api.create(&PostParams::default(), &event).await?;
            }
        }
        Ok(())
    }
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
    use super::truncate;

    #[test]
    fn truncation_stays_within_the_limit_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
