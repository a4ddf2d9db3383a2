//! Parallel work handed back in order, with bounded lookahead.
//!
//! Workers claim items in order and may finish them in any order; one consumer takes the
//! results in item order. An item is claimed only while the cost of the items claimed and
//! not yet consumed stays within a budget, so memory is bounded by that budget however
//! many items there are. There is no barrier between groups of items: a slow item holds
//! back only the consumer, while the other workers go on with the items after it until
//! the budget is spent. (Batches with a barrier left a core idle whenever one file of a
//! batch took longer than the rest: a quarter of the CPU on the binaries of the benchmark
//! env.)

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct Window<T> {
    state: Mutex<State<T>>,
    /// Signalled when the consumer's next result arrives, or on stop.
    ready: Condvar,
    /// Signalled when the consumer frees budget, or on stop.
    room: Condvar,
    budget: u64,
    max_ahead: usize,
}

struct State<T> {
    /// Items handed to workers so far (they are claimed in order).
    claimed: usize,
    /// Items taken by the consumer so far.
    consumed: usize,
    /// Summed cost of the items `consumed..claimed`.
    in_flight: u64,
    /// Result and cost of each item `consumed..claimed`; `None` while a worker has it.
    slots: VecDeque<(Option<T>, u64)>,
    stopped: bool,
    /// Who is waiting, so that a hand-over wakes someone only if there is someone to wake
    /// (each wake is a system call, and there are two per file).
    consumer_waiting: bool,
    workers_waiting: usize,
}

impl<T> Window<T> {
    /// At most `budget` of cost and `max_ahead` items between the consumer and the
    /// furthest worker; the consumer's next item is always claimable, whatever it costs.
    pub fn new(budget: u64, max_ahead: usize) -> Self {
        Window {
            state: Mutex::new(State {
                claimed: 0,
                consumed: 0,
                in_flight: 0,
                slots: VecDeque::new(),
                stopped: false,
                consumer_waiting: false,
                workers_waiting: 0,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            budget,
            max_ahead: max_ahead.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A worker that panicked is caught by its caller; the state itself stays sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next of `n` items for a worker, waiting for budget; `None` once every item is
    /// claimed or the window is stopped.
    pub fn claim(&self, n: usize, cost: impl Fn(usize) -> u64) -> Option<usize> {
        let mut s = self.lock();
        loop {
            if s.stopped || s.claimed >= n {
                return None;
            }
            let i = s.claimed;
            let c = cost(i);
            let ahead = i - s.consumed;
            if ahead == 0 || (ahead < self.max_ahead && s.in_flight + c <= self.budget) {
                s.claimed += 1;
                s.in_flight += c;
                s.slots.push_back((None, c));
                return Some(i);
            }
            s.workers_waiting += 1;
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
            s.workers_waiting -= 1;
        }
    }

    /// Hand in the result of item `i`.
    pub fn finish(&self, i: usize, value: T) {
        let mut s = self.lock();
        if s.stopped {
            return;
        }
        let k = i - s.consumed;
        s.slots[k].0 = Some(value);
        if k == 0 && s.consumer_waiting {
            self.ready.notify_one();
        }
    }

    /// The next result in item order, waiting for it; `None` once stopped. The caller
    /// knows how many items there are and stops asking after the last.
    pub fn take(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if s.stopped {
                return None;
            }
            if matches!(s.slots.front(), Some((Some(_), _))) {
                let (value, cost) = s.slots.pop_front().expect("front checked");
                s.consumed += 1;
                s.in_flight -= cost;
                if s.workers_waiting > 0 {
                    self.room.notify_all();
                }
                return value;
            }
            s.consumer_waiting = true;
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
            s.consumer_waiting = false;
        }
    }

    /// Release every waiting worker and the consumer; nothing more is claimed or taken.
    pub fn stop(&self) {
        let mut s = self.lock();
        s.stopped = true;
        s.slots.clear();
        self.ready.notify_all();
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    fn run(n: usize, workers: usize, budget: u64, cost: fn(usize) -> u64) -> (Vec<usize>, u64) {
        let window = Window::new(budget, 64);
        let peak = AtomicU64::new(0);
        let held = AtomicU64::new(0);
        let mut order = Vec::new();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(i) = window.claim(n, cost) {
                        let now = held.fetch_add(cost(i), Ordering::SeqCst) + cost(i);
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Uneven work, so results arrive out of order.
                        std::thread::sleep(Duration::from_micros((i as u64 * 37) % 300));
                        window.finish(i, i);
                    }
                });
            }
            for _ in 0..n {
                let i = window.take().expect("not stopped");
                held.fetch_sub(cost(i), Ordering::SeqCst);
                order.push(i);
            }
        });
        (order, peak.load(Ordering::SeqCst))
    }

    #[test]
    fn results_come_in_order_within_the_budget() {
        let (order, peak) = run(500, 4, 100, |i| (i % 7) as u64 * 10);
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        // The budget, plus the item the consumer is still holding.
        assert!(peak <= 100 + 60, "peak {peak}");
    }

    #[test]
    fn an_item_costlier_than_the_budget_still_goes_through_alone() {
        let (order, peak) = run(50, 3, 100, |i| if i % 10 == 5 { 1000 } else { 30 });
        assert_eq!(order, (0..50).collect::<Vec<_>>());
        assert!(peak <= 100 + 1000, "peak {peak}");
    }

    #[test]
    fn stop_releases_waiting_workers_and_consumer() {
        let window: Window<usize> = Window::new(10, 64);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    // Item 0 is never finished, so the budget stays spent and these wait.
                    while let Some(i) = window.claim(100, |_| 10) {
                        if i > 0 {
                            window.finish(i, i);
                        }
                    }
                });
            }
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                window.stop();
            });
            assert_eq!(window.take(), None);
        });
    }
}
