//! Runs the operations on one file in the order JavaScript issued them, although the libuv pool may
//! start them on different threads in any order. It must never let a ticket that is dropped unrun
//! (a task torn down with its environment) block the tickets after it.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Turns {
    issued: u64,
    serving: u64,
    abandoned: BTreeSet<u64>,
}

#[derive(Default)]
pub struct OpSequencer {
    turns: Mutex<Turns>,
    changed: Condvar,
}

/// A place in line. Taken on the JS thread when the operation is issued.
pub struct Ticket {
    sequencer: Arc<OpSequencer>,
    number: u64,
    done: bool,
}

impl OpSequencer {
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        let number = turns.issued;
        turns.issued += 1;
        Ticket { sequencer: Arc::clone(self), number, done: false }
    }

    fn finish(&self, number: u64) {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        if turns.serving == number {
            turns.serving += 1;
            loop {
                let next = turns.serving;
                if !turns.abandoned.remove(&next) {
                    break;
                }
                turns.serving += 1;
            }
            self.changed.notify_all();
        } else {
            turns.abandoned.insert(number);
        }
    }
}

impl Ticket {
    /// Blocks until every earlier ticket has finished, runs `op`, then lets the next ticket go.
    pub fn run<T>(mut self, op: impl FnOnce() -> T) -> T {
        {
            let mut turns = self.sequencer.turns.lock().unwrap_or_else(|p| p.into_inner());
            while turns.serving != self.number {
                turns = self.sequencer.changed.wait(turns).unwrap_or_else(|p| p.into_inner());
            }
        }
        // Finishing happens in Drop, so a panicking op still lets the next ticket go.
        let result = op();
        self.done = true;
        self.sequencer.finish(self.number);
        result
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.sequencer.finish(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn runs_in_issue_order_whatever_the_thread_order() {
        let seq = Arc::new(OpSequencer::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<Ticket> = (0..8).map(|_| seq.ticket()).collect();
        let mut handles = Vec::new();
        for (i, t) in tickets.into_iter().enumerate().rev() {
            let log = Arc::clone(&log);
            handles.push(thread::spawn(move || t.run(|| log.lock().unwrap().push(i))));
            thread::sleep(Duration::from_millis(2));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*log.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn abandoned_tickets_do_not_block() {
        let seq = Arc::new(OpSequencer::default());
        let a = seq.ticket();
        let b = seq.ticket();
        let c = seq.ticket();
        drop(b);
        assert_eq!(a.run(|| 1), 1);
        assert_eq!(c.run(|| 3), 3);
        let d = seq.ticket();
        drop(d);
        assert_eq!(seq.ticket().run(|| 5), 5);
    }
}
