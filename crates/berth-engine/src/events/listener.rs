//! One `/events` reader's bounded queue. The bus offers each matching
//! event without ever waiting; when the queue is full the event is counted
//! into a gap marker at the queue's tail instead, so the reader later sees
//! exactly where, and how many, events it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::filter::{EventFilter, TimeWindow};
use super::Event;

/// Events a reader missed, in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub dropped: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// timeNano of the first and last event missed.
    pub first_time: i64,
    pub last_time: i64,
}

/// What a reader takes from its queue.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Arc<Event>),
    Gap(Gap),
}

/// What happened to an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The reader did not ask for it.
    Filtered,
    /// The queue was full; `opened` when this starts a new gap.
    Dropped {
        opened: bool,
    },
}

struct Inner {
    items: VecDeque<Item>,
    /// Events (not gap markers) in `items`.
    events: usize,
    closed: bool,
}

/// A reader's queue, shared between the bus (producer) and the stream.
pub struct ListenerQueue {
    pub id: u64,
    filter: EventFilter,
    window: TimeWindow,
    capacity: usize,
    inner: Mutex<Inner>,
    notify: Notify,
}

impl ListenerQueue {
    pub fn new(id: u64, filter: EventFilter, window: TimeWindow, capacity: usize) -> Self {
        ListenerQueue {
            id,
            filter,
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                events: 0,
                closed: false,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event` if the reader wants it; never blocks beyond the
    /// queue's own short lock.
    pub fn offer(&self, event: &Arc<Event>) -> Offer {
        let time = event.message.time_nano.unwrap_or(0);
        if !self.window.contains(time) || !self.filter.includes(&event.message) {
            return Offer::Filtered;
        }
        let mut inner = self.lock();
        if inner.closed {
            return Offer::Filtered;
        }
        let offer = if inner.events < self.capacity {
            inner.items.push_back(Item::Event(Arc::clone(event)));
            inner.events += 1;
            Offer::Queued
        } else if let Some(Item::Gap(gap)) = inner.items.back_mut() {
            gap.dropped += 1;
            gap.last_seq = event.seq;
            gap.last_time = time;
            Offer::Dropped { opened: false }
        } else {
            inner.items.push_back(Item::Gap(Gap {
                dropped: 1,
                first_seq: event.seq,
                last_seq: event.seq,
                first_time: time,
                last_time: time,
            }));
            Offer::Dropped { opened: true }
        };
        drop(inner);
        if offer == Offer::Queued || offer == (Offer::Dropped { opened: true }) {
            self.notify.notify_one();
        }
        offer
    }

    /// The next item; `None` once closed and drained.
    pub async fn recv(&self) -> Option<Item> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(item) = inner.items.pop_front() {
                    if matches!(item, Item::Event(_)) {
                        inner.events -= 1;
                    }
                    return Some(item);
                }
                if inner.closed {
                    return None;
                }
            }
            // notify_one stores a permit when nobody waits, so an offer
            // between the check above and this await is not missed.
            self.notify.notified().await;
        }
    }

    /// Ends the stream after what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::EventMessage;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            message: EventMessage {
                action: Some("x".into()),
                time_nano: Some(seq as i64 * 10),
                ..Default::default()
            },
        })
    }

    fn queue(capacity: usize) -> ListenerQueue {
        ListenerQueue::new(1, EventFilter::default(), TimeWindow::default(), capacity)
    }

    #[tokio::test]
    async fn overflow_becomes_one_gap_in_order() {
        let q = queue(2);
        assert_eq!(q.offer(&event(1)), Offer::Queued);
        assert_eq!(q.offer(&event(2)), Offer::Queued);
        assert_eq!(q.offer(&event(3)), Offer::Dropped { opened: true });
        assert_eq!(q.offer(&event(4)), Offer::Dropped { opened: false });
        let Some(Item::Event(e)) = q.recv().await else {
            panic!()
        };
        assert_eq!(e.seq, 1);
        // Room again: the next event goes after the gap, not before it.
        assert_eq!(q.offer(&event(5)), Offer::Queued);
        assert_eq!(q.offer(&event(6)), Offer::Dropped { opened: true });
        let mut got = Vec::new();
        q.close();
        while let Some(item) = q.recv().await {
            got.push(match item {
                Item::Event(e) => format!("e{}", e.seq),
                Item::Gap(g) => format!("gap{}-{}x{}", g.first_seq, g.last_seq, g.dropped),
            });
        }
        assert_eq!(got, ["e2", "gap3-4x2", "e5", "gap6-6x1"]);
    }

    #[tokio::test]
    async fn window_and_filter_apply_before_queueing() {
        let q = ListenerQueue::new(
            1,
            EventFilter::default(),
            TimeWindow {
                since: Some(20),
                until: Some(30),
            },
            1,
        );
        assert_eq!(q.offer(&event(1)), Offer::Filtered);
        assert_eq!(q.offer(&event(2)), Offer::Queued);
        assert_eq!(q.offer(&event(4)), Offer::Filtered);
    }

    #[tokio::test]
    async fn recv_wakes_on_offer() {
        let q = Arc::new(queue(4));
        let reader = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.recv().await.map(|i| matches!(i, Item::Event(_))) })
        };
        tokio::task::yield_now().await;
        q.offer(&event(1));
        assert_eq!(reader.await.unwrap(), Some(true));
    }
}
