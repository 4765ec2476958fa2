//! Which events a reader asked for: dockerd's `/events` filters (`type`,
//! `event`, `container`, `image`, `label`, `volume`, `network`, `daemon`,
//! `plugin`, `scope`, ...) with its exact matching rules, plus the
//! `since`/`until` window. Applied both to replay from the log and to live
//! events before they enter a listener's queue.

use std::collections::{HashMap, HashSet};

use bollard_stubs::models::{EventMessage, EventMessageTypeEnum};

use crate::filters::Filters;
use crate::images::reference::ImageRef;

/// Actions that, given bare, match every action they prefix: an exec's
/// command and a health status follow a colon in the action itself
/// (`exec_start: sh -c ...`, `health_status: healthy`).
const PREFIX_ACTIONS: [&str; 3] = ["health_status", "exec_create", "exec_start"];

/// Filters matched against the actor's ID or `name` by prefix
/// (`container=web`, `volume=da`).
const NAMED_FIELDS: [&str; 9] = [
    "daemon",
    "container",
    "plugin",
    "volume",
    "network",
    "node",
    "service",
    "secret",
    "config",
];

/// A compiled `filters` value for events. dockerd accepts any filter name
/// here (unknown ones simply never constrain), so construction cannot fail.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    fields: HashMap<String, HashSet<String>>,
}

impl EventFilter {
    /// Compiles parsed filters.
    pub fn new(filters: &Filters) -> EventFilter {
        EventFilter {
            fields: filters
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        self.fields.values().all(HashSet::is_empty)
    }

    /// dockerd's `Filter.Include`: every given filter must match.
    pub fn includes(&self, ev: &EventMessage) -> bool {
        let typ = ev.typ.map(|t| t.to_string()).unwrap_or_default();
        let action = ev.action.as_deref().unwrap_or("");
        let empty = HashMap::new();
        let (id, attrs) = match &ev.actor {
            Some(a) => (
                a.id.as_deref().unwrap_or(""),
                a.attributes.as_ref().unwrap_or(&empty),
            ),
            None => ("", &empty),
        };
        let scope = ev.scope.map(|s| s.to_string()).unwrap_or_default();
        self.match_action(action)
            && self.exact("type", &typ)
            && self.exact("scope", &scope)
            // As in dockerd, each of these applies to every event whatever
            // its type: `container=x` also narrows image events to those
            // whose ID or name starts with x.
            && NAMED_FIELDS
                .iter()
                .all(|field| self.fuzzy(field, id) || self.fuzzy(field, attr(attrs, "name")))
            && self.match_image(ev.typ, id, attrs)
            && self.match_labels(attrs)
    }

    fn values(&self, field: &str) -> Option<&HashSet<String>> {
        self.fields.get(field).filter(|v| !v.is_empty())
    }

    /// `ExactMatch`: no values given matches everything.
    fn exact(&self, field: &str, source: &str) -> bool {
        self.values(field).is_none_or(|v| v.contains(source))
    }

    /// `FuzzyMatch`: exact, or any value is a prefix of `source`.
    fn fuzzy(&self, field: &str, source: &str) -> bool {
        match self.values(field) {
            None => true,
            Some(v) => v.contains(source) || v.iter().any(|p| source.starts_with(p.as_str())),
        }
    }

    /// `event=exec_start` matches `exec_start: sh`; as in dockerd, once
    /// one such bare value is given, every `event` value matches by prefix.
    fn match_action(&self, action: &str) -> bool {
        match self.values("event") {
            None => true,
            Some(v) if v.iter().any(|x| PREFIX_ACTIONS.contains(&x.as_str())) => {
                self.fuzzy("event", action)
            }
            Some(v) => v.contains(action),
        }
    }

    /// `image=` matches an image event's ID or name, or a container
    /// event's `image` attribute, each also with its tag stripped.
    fn match_image(
        &self,
        typ: Option<EventMessageTypeEnum>,
        id: &str,
        attrs: &HashMap<String, String>,
    ) -> bool {
        let Some(values) = self.values("image") else {
            return true;
        };
        let name_attr = if typ == Some(EventMessageTypeEnum::IMAGE) {
            "name"
        } else {
            "image"
        };
        let name = attr(attrs, name_attr);
        [
            id.to_string(),
            name.to_string(),
            strip_tag(id),
            strip_tag(name),
        ]
        .iter()
        .any(|candidate| values.contains(candidate))
    }

    /// `label=k` needs the attribute; `label=k=v` needs that value.
    fn match_labels(&self, attrs: &HashMap<String, String>) -> bool {
        let Some(values) = self.values("label") else {
            return true;
        };
        if attrs.is_empty() {
            return false;
        }
        values.iter().all(|want| match want.split_once('=') {
            Some((k, v)) => attrs.get(k).is_some_and(|have| have == v),
            None => attrs.contains_key(want.as_str()),
        })
    }
}

fn attr<'a>(attrs: &'a HashMap<String, String>, key: &str) -> &'a str {
    attrs.get(key).map(String::as_str).unwrap_or("")
}

/// The familiar repository name of a reference (`busybox:1` → `busybox`),
/// or the input unchanged when it is not a reference.
fn strip_tag(image: &str) -> String {
    if image.is_empty() {
        return String::new();
    }
    ImageRef::parse(image)
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| image.to_string())
}

/// The time window of a request, in Unix nanoseconds; both ends inclusive
/// as in dockerd (`since` keeps events at that instant, `until` too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl TimeWindow {
    /// Whether an event stamped `time_nano` falls in the window.
    pub fn contains(&self, time_nano: i64) -> bool {
        self.since.is_none_or(|s| time_nano >= s) && self.until.is_none_or(|u| time_nano <= u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{EventActor, EventMessageScopeEnum};
    use std::collections::BTreeMap;

    fn filter(pairs: &[(&str, &[&str])]) -> EventFilter {
        let map: BTreeMap<String, Vec<String>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        EventFilter::new(&Filters(map))
    }

    fn ev(
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attrs: &[(&str, &str)],
    ) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: Some(1),
            time_nano: Some(1),
        }
    }

    fn container(action: &str) -> EventMessage {
        ev(
            EventMessageTypeEnum::CONTAINER,
            action,
            "4f2a9c0d11",
            &[("name", "web"), ("image", "busybox:latest"), ("tier", "db")],
        )
    }

    fn image(action: &str) -> EventMessage {
        ev(
            EventMessageTypeEnum::IMAGE,
            action,
            "sha256:aaaa",
            &[("name", "busybox:latest")],
        )
    }

    #[test]
    fn empty_filter_takes_everything() {
        let f = filter(&[]);
        assert!(f.is_empty());
        assert!(f.includes(&container("start")));
        assert!(f.includes(&image("tag")));
    }

    #[test]
    fn type_is_exact() {
        let f = filter(&[("type", &["image"])]);
        assert!(f.includes(&image("tag")));
        assert!(!f.includes(&container("start")));
        let f = filter(&[("type", &["image", "container"])]);
        assert!(f.includes(&container("start")));
        assert!(!filter(&[("type", &["imag"])]).includes(&image("tag")));
    }

    #[test]
    fn event_is_exact_unless_a_prefix_action_is_given() {
        assert!(filter(&[("event", &["die"])]).includes(&container("die")));
        assert!(!filter(&[("event", &["di"])]).includes(&container("die")));
        let exec = container("exec_start: sh -c true");
        assert!(!filter(&[("event", &["exec_start: sh"])]).includes(&exec));
        assert!(filter(&[("event", &["exec_start"])]).includes(&exec));
        assert!(filter(&[("event", &["exec_start: sh -c true"])]).includes(&exec));
        let health = container("health_status: healthy");
        assert!(filter(&[("event", &["health_status"])]).includes(&health));
        assert!(!filter(&[("event", &["health"])]).includes(&health));
        // Once a bare prefix action is present, dockerd fuzzy-matches all.
        assert!(filter(&[("event", &["exec_create", "di"])]).includes(&container("die")));
    }

    #[test]
    fn container_matches_id_or_name_prefix() {
        assert!(filter(&[("container", &["4f2a"])]).includes(&container("start")));
        assert!(filter(&[("container", &["we"])]).includes(&container("start")));
        assert!(filter(&[("container", &["web"])]).includes(&container("start")));
        assert!(!filter(&[("container", &["db"])]).includes(&container("start")));
    }

    #[test]
    fn image_matches_id_name_and_stripped_tag() {
        for v in ["sha256:aaaa", "busybox:latest", "busybox"] {
            assert!(filter(&[("image", &[v])]).includes(&image("tag")), "{v}");
        }
        assert!(!filter(&[("image", &["busy"])]).includes(&image("tag")));
        // Container events match through their `image` attribute.
        assert!(filter(&[("image", &["busybox"])]).includes(&container("start")));
        assert!(!filter(&[("image", &["alpine"])]).includes(&container("start")));
        let full = ev(
            EventMessageTypeEnum::IMAGE,
            "pull",
            "sha256:b",
            &[("name", "docker.io/library/alpine:3")],
        );
        assert!(filter(&[("image", &["alpine"])]).includes(&full));
    }

    #[test]
    fn labels_need_key_and_value() {
        assert!(filter(&[("label", &["tier"])]).includes(&container("start")));
        assert!(filter(&[("label", &["tier=db"])]).includes(&container("start")));
        assert!(!filter(&[("label", &["tier=web"])]).includes(&container("start")));
        assert!(!filter(&[("label", &["tier", "other"])]).includes(&container("start")));
        let bare = ev(EventMessageTypeEnum::CONTAINER, "start", "x", &[]);
        assert!(!filter(&[("label", &["tier"])]).includes(&bare));
    }

    #[test]
    fn volume_network_daemon_and_scope() {
        let vol = ev(
            EventMessageTypeEnum::VOLUME,
            "create",
            "data",
            &[("driver", "local")],
        );
        assert!(filter(&[("volume", &["da"])]).includes(&vol));
        assert!(!filter(&[("volume", &["other"])]).includes(&vol));
        let net = ev(
            EventMessageTypeEnum::NETWORK,
            "connect",
            "9e1f",
            &[("name", "bridge"), ("container", "4f2a")],
        );
        assert!(filter(&[("network", &["bridge"])]).includes(&net));
        assert!(filter(&[("network", &["9e"])]).includes(&net));
        let daemon = ev(
            EventMessageTypeEnum::DAEMON,
            "reload",
            "d1",
            &[("name", "host1")],
        );
        assert!(filter(&[("daemon", &["host1"])]).includes(&daemon));
        assert!(filter(&[("scope", &["local"])]).includes(&daemon));
        assert!(!filter(&[("scope", &["swarm"])]).includes(&daemon));
        // Unknown filter names constrain nothing, as in dockerd.
        assert!(filter(&[("bogus", &["x"])]).includes(&daemon));
    }

    #[test]
    fn filters_combine_with_and() {
        let f = filter(&[("type", &["container"]), ("event", &["die"])]);
        assert!(f.includes(&container("die")));
        assert!(!f.includes(&container("start")));
        assert!(!f.includes(&image("delete")));
    }

    #[test]
    fn window_is_inclusive() {
        let w = TimeWindow {
            since: Some(10),
            until: Some(20),
        };
        assert!(w.contains(10) && w.contains(20) && w.contains(15));
        assert!(!w.contains(9) && !w.contains(21));
        assert!(TimeWindow::default().contains(0));
    }
}
