//! Bus-level tests: replay then live without loss or duplicates, the
//! since/until cases, gap notices for a paused reader, listener counts
//! and shutdown.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::filters::Filters;

fn tag(bus: &EventBus, n: usize) {
    bus.publish(
        EventMessageTypeEnum::IMAGE,
        "tag",
        &format!("sha256:{n}"),
        HashMap::from([("name".to_string(), format!("img{n}:latest"))]),
    );
}

fn start(bus: &EventBus, n: usize) {
    bus.publish(
        EventMessageTypeEnum::CONTAINER,
        "start",
        &format!("c{n}"),
        HashMap::new(),
    );
}

fn only(pairs: &[(&str, &str)]) -> EventFilter {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k.to_string()).or_default().push(v.to_string());
    }
    EventFilter::new(&Filters(map))
}

fn actor_id(m: &EventMessage) -> String {
    m.actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default()
}

/// Everything a stream yields until it pauses for `idle`.
async fn drain(stream: &mut EventStream, idle: Duration) -> Vec<EventMessage> {
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(idle, stream.next()).await {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn live_stream_sees_only_matching_events() {
    let bus = EventBus::new();
    let mut s = bus.listen(only(&[("type", "image")]), TimeWindow::default());
    assert_eq!(bus.stats().listeners, 1);
    tag(&bus, 1);
    start(&bus, 1);
    tag(&bus, 2);
    let got = drain(&mut s, Duration::from_millis(100)).await;
    let ids: Vec<String> = got.iter().map(actor_id).collect();
    assert_eq!(ids, ["sha256:1", "sha256:2"]);
    drop(s);
    assert_eq!(bus.stats().listeners, 0);
}

#[tokio::test]
async fn replay_then_live_has_no_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(dir.path(), Retention::default()).unwrap();
    for n in 0..50 {
        tag(&bus, n);
    }
    let mut s = bus.listen(
        EventFilter::default(),
        TimeWindow {
            since: Some(0),
            until: None,
        },
    );
    for n in 50..60 {
        tag(&bus, n);
    }
    let got = drain(&mut s, Duration::from_millis(200)).await;
    let ids: Vec<String> = got.iter().map(actor_id).collect();
    let want: Vec<String> = (0..60).map(|n| format!("sha256:{n}")).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn past_until_replays_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(dir.path(), Retention::default()).unwrap();
    tag(&bus, 1);
    start(&bus, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let until = now_nanos();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tag(&bus, 2);
    let mut s = bus.listen(
        only(&[("type", "image")]),
        TimeWindow {
            since: Some(until - 3_600_000_000_000),
            until: Some(until),
        },
    );
    assert_eq!(
        bus.stats().listeners,
        0,
        "a past-only stream has no live part"
    );
    let first = s.next().await.unwrap();
    assert_eq!(actor_id(&first), "sha256:1");
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn future_until_streams_live_then_ends() {
    let bus = EventBus::new();
    let until = now_nanos() + 300_000_000;
    let mut s = bus.listen(
        EventFilter::default(),
        TimeWindow {
            since: None,
            until: Some(until),
        },
    );
    tag(&bus, 1);
    assert_eq!(actor_id(&s.next().await.unwrap()), "sha256:1");
    // Ends by itself once `until` passes.
    let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
    assert_eq!(end.unwrap(), None);
}

#[tokio::test]
async fn future_since_holds_back_earlier_live_events() {
    let bus = EventBus::new();
    let since = now_nanos() + 200_000_000;
    let mut s = bus.listen(
        EventFilter::default(),
        TimeWindow {
            since: Some(since),
            until: None,
        },
    );
    tag(&bus, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tag(&bus, 2);
    let got = drain(&mut s, Duration::from_millis(100)).await;
    let ids: Vec<String> = got.iter().map(actor_id).collect();
    assert_eq!(ids, ["sha256:2"]);
}

#[tokio::test]
async fn paused_reader_gets_a_gap_notice_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(dir.path(), Retention::default()).unwrap();
    bus.set_daemon_actor("engine-id", "host1");
    bus.set_listener_queue(100);
    let mut slow = bus.listen(EventFilter::default(), TimeWindow::default());
    let mut fast = bus.listen(EventFilter::default(), TimeWindow::default());
    // The fast reader keeps up; the slow one reads nothing meanwhile.
    let fast_reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(m) = fast.next().await {
            assert_ne!(m.action.as_deref(), Some(GAP_ACTION));
            n += 1;
            if n == 10_000 {
                break;
            }
        }
        n
    });
    for n in 0..10_000 {
        tag(&bus, n);
        if n % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(fast_reader.await.unwrap(), 10_000);
    let stats = bus.stats();
    assert_eq!(stats.published, 10_000);
    assert_eq!(stats.dropped, 9_900);
    assert_eq!(stats.gaps, 1);

    let got = drain(&mut slow, Duration::from_millis(100)).await;
    assert_eq!(got.len(), 101);
    let notice = &got[100];
    assert_eq!(notice.typ, Some(EventMessageTypeEnum::DAEMON));
    assert_eq!(notice.action.as_deref(), Some(GAP_ACTION));
    let actor = notice.actor.as_ref().unwrap();
    assert_eq!(actor.id.as_deref(), Some("engine-id"));
    let attrs = actor.attributes.as_ref().unwrap();
    assert_eq!(attrs["dropped"], "9900");
    assert_eq!(attrs["name"], "host1");
    // The notice says where the missing events are; they replay from the log.
    let since = crate::filters::parse_timestamp(&attrs["since"]).unwrap();
    assert!(since > 0);
    let (sec, nanos) = attrs["since"].split_once('.').unwrap();
    let since_ns = sec.parse::<i64>().unwrap() * 1_000_000_000 + nanos.parse::<i64>().unwrap();
    let (sec, nanos) = attrs["until"].split_once('.').unwrap();
    let until_ns = sec.parse::<i64>().unwrap() * 1_000_000_000 + nanos.parse::<i64>().unwrap();
    let mut refetch = bus.listen(
        EventFilter::default(),
        TimeWindow {
            since: Some(since_ns),
            until: Some(until_ns),
        },
    );
    let missed = drain(&mut refetch, Duration::from_millis(500)).await;
    assert_eq!(missed.len(), 9_900);
    assert_eq!(actor_id(&missed[0]), "sha256:100");
    // Later events reach the slow reader again.
    tag(&bus, 10_000);
    let more = drain(&mut slow, Duration::from_millis(100)).await;
    assert_eq!(more.len(), 1);
    assert_eq!(actor_id(&more[0]), "sha256:10000");
}

#[tokio::test]
async fn log_survives_a_new_bus() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EventBus::open(dir.path(), Retention::default()).unwrap();
        tag(&bus, 1);
        tag(&bus, 2);
    }
    let bus = EventBus::open(dir.path(), Retention::default()).unwrap();
    tag(&bus, 3);
    let mut s = bus.listen(
        EventFilter::default(),
        TimeWindow {
            since: Some(0),
            until: Some(now_nanos()),
        },
    );
    let got = drain(&mut s, Duration::from_millis(200)).await;
    let ids: Vec<String> = got.iter().map(actor_id).collect();
    assert_eq!(ids, ["sha256:1", "sha256:2", "sha256:3"]);
}

#[tokio::test]
async fn close_ends_live_streams() {
    let bus = EventBus::new();
    let mut s = bus.listen(EventFilter::default(), TimeWindow::default());
    tag(&bus, 1);
    bus.close_listeners();
    assert!(s.next().await.is_some());
    assert!(s.next().await.is_none());
    assert_eq!(bus.stats().listeners, 0);
}

#[test]
fn timestamps_format_for_since() {
    assert_eq!(
        format_timestamp(1_700_000_000_000_000_001),
        "1700000000.000000001"
    );
    assert_eq!(format_timestamp(5), "0.000000005");
}

#[tokio::test]
async fn daemon_events_carry_id_and_name() {
    let bus = EventBus::new();
    bus.set_daemon_actor("abc", "host1");
    let mut rx = bus.subscribe();
    bus.publish_daemon(
        "reload",
        HashMap::from([("debug".to_string(), "true".to_string())]),
    );
    let m = rx.try_recv().unwrap();
    assert_eq!(m.typ, Some(EventMessageTypeEnum::DAEMON));
    assert_eq!(actor_id(&m), "abc");
    let attrs = m.actor.unwrap().attributes.unwrap();
    assert_eq!(attrs["name"], "host1");
    assert_eq!(attrs["debug"], "true");
}
