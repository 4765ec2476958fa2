//! The event bus: every engine mutation calls [`EventBus::publish`] once.
//! Subscribers (API streams, the on-disk log, metrics) read from it.
//! Grows into the full bounded, persistent bus of the monitoring issue.

use std::sync::Mutex;

use bollard_stubs::models::{EventActor, EventMessage, EventMessageTypeEnum};
use std::collections::HashMap;
use tokio::sync::broadcast;

/// Fans events out to subscribers.
pub struct EventBus {
    sender: broadcast::Sender<EventMessage>,
    recent: Mutex<std::collections::VecDeque<EventMessage>>,
}

const RECENT: usize = 1024;

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        EventBus {
            sender,
            recent: Mutex::new(Default::default()),
        }
    }

    /// Publishes one event about `id` of type `typ`.
    pub fn publish(
        &self,
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let msg = EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            scope: Some(bollard_stubs::models::EventMessageScopeEnum::LOCAL),
            time: Some(now.timestamp()),
            time_nano: Some(now.timestamp_nanos_opt().unwrap_or_default()),
        };
        tracing::debug!(?msg, "event");
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(msg.clone());
        }
        let _ = self.sender.send(msg);
    }

    /// A receiver of events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.sender.subscribe()
    }
}
