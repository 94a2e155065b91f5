//! One dedicated thread that runs a state's jobs one at a time, in submission order. Pure Rust, no
//! N-API. Between jobs it parks (no spinning: measured on 2 shared cores, spinning for the next job made
//! latency worse, see README). It must never lose a wake-up, nor outlive its handle once the queue is
//! drained, nor keep a thread for a state that is retired (a closed file) and idle.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

/// A job gets the state, or the error that kept a thread from starting (it then runs on the caller's thread).
type Job<S> = Box<dyn FnOnce(Result<&mut S, io::Error>) + Send>;

struct Queue<S> {
    jobs: VecDeque<Job<S>>,
    /// The state while no thread runs (before the first job, after `retire`); None while a thread owns it.
    idle_state: Option<S>,
    /// The running thread, to unpark it.
    thread: Option<Thread>,
    /// The handle was dropped: drain the queue and exit.
    detached: bool,
}

struct Shared<S> {
    queue: Mutex<Queue<S>>,
    retire: fn(&S) -> bool,
    name: String,
}

pub struct SerialWorker<S: Send + 'static> {
    shared: Arc<Shared<S>>,
}

fn lock<S>(shared: &Shared<S>) -> MutexGuard<'_, Queue<S>> {
    shared.queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Send + 'static> SerialWorker<S> {
    /// `retire(state)` true after a job means the thread may exit once the queue is empty (e.g. the file
    /// was closed); a later job starts a new thread. `name` names the thread.
    pub fn new(state: S, retire: fn(&S) -> bool, name: String) -> SerialWorker<S> {
        SerialWorker {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue { jobs: VecDeque::new(), idle_state: Some(state), thread: None, detached: false }),
                retire,
                name,
            }),
        }
    }

    /// Starts the thread now rather than at the first job (spawning takes tens of microseconds).
    pub fn start(&self) -> io::Result<()> {
        let mut queue = lock(&self.shared);
        if queue.thread.is_none() {
            spawn(&self.shared, &mut queue)?;
        }
        Ok(())
    }

    /// Queues `job`; it runs after every job submitted before it, exactly once. If no thread runs and none
    /// can be spawned, it runs right here with the error instead of the state.
    pub fn submit(&self, job: impl FnOnce(Result<&mut S, io::Error>) + Send + 'static) {
        let mut queue = lock(&self.shared);
        if queue.thread.is_none() {
            if let Err(err) = spawn(&self.shared, &mut queue) {
                drop(queue);
                job(Err(err));
                return;
            }
        }
        queue.jobs.push_back(Box::new(job));
        let thread = queue.thread.clone().expect("a thread runs");
        drop(queue);
        // A futex wake only if the thread is parked; otherwise it finds the job before parking again.
        thread.unpark();
    }
}

impl<S: Send + 'static> Drop for SerialWorker<S> {
    fn drop(&mut self) {
        let mut queue = lock(&self.shared);
        queue.detached = true;
        if let Some(thread) = queue.thread.clone() {
            drop(queue);
            thread.unpark();
        }
    }
}

/// Called with the queue locked and no thread running. The new thread takes the idle state once it gets
/// the lock, so a failed spawn leaves the state where it was.
fn spawn<S: Send + 'static>(shared: &Arc<Shared<S>>, queue: &mut Queue<S>) -> io::Result<()> {
    let for_thread = Arc::clone(shared);
    let handle = thread::Builder::new().name(shared.name.clone()).stack_size(256 << 10).spawn(move || {
        let state = lock(&for_thread).idle_state.take().expect("a new thread finds the idle state");
        run(&for_thread, state);
    })?;
    queue.thread = Some(handle.thread().clone());
    Ok(())
}

fn run<S>(shared: &Shared<S>, state: S) {
    let mut state = Some(state);
    loop {
        let job = {
            let mut queue = lock(shared);
            match queue.jobs.pop_front() {
                Some(job) => job,
                None if queue.detached => {
                    queue.thread = None;
                    return;
                }
                None if state.as_ref().is_some_and(|s| (shared.retire)(s)) => {
                    // Give the state back; a later job starts a new thread with it.
                    queue.thread = None;
                    queue.idle_state = state.take();
                    return;
                }
                None => {
                    drop(queue);
                    // submit() and drop() unpark after changing the queue, and an unpark before the
                    // park makes it return at once: no wake-up is lost. Spurious returns just loop.
                    thread::park();
                    continue;
                }
            }
        };
        // A panicking job loses only itself; the thread and the state stay usable.
        let state_ref = state.as_mut().expect("the thread owns the state");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(state_ref))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_jobs_in_order_on_one_thread() {
        let worker = SerialWorker::new(Vec::new(), |_| false, "t".into());
        let (tx, rx) = mpsc::channel();
        for i in 0..1000 {
            let tx = tx.clone();
            worker.submit(move |log: Result<&mut Vec<usize>, _>| {
                let log = log.unwrap();
                log.push(i);
                if i == 999 {
                    tx.send((log.clone(), thread::current().id())).unwrap();
                }
            });
        }
        let (log, id) = rx.recv().unwrap();
        assert_eq!(log, (0..1000).collect::<Vec<_>>());
        assert_ne!(id, thread::current().id());
    }

    #[test]
    fn wakes_after_parking() {
        {
            let worker = SerialWorker::new(0u64, |_| false, "t".into());
            for round in 0..20u64 {
                let (tx, rx) = mpsc::channel();
                worker.submit(move |n: Result<&mut u64, _>| {
                    let n = n.unwrap();
                    *n += 1;
                    tx.send(*n).unwrap();
                });
                assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), round + 1);
                if round % 3 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    #[test]
    fn retired_worker_exits_and_restarts_with_its_state() {
        // State: (closed, count). Closed = retire.
        let worker = SerialWorker::new((false, 0u32), |s| s.0, "t".into());
        let (tx, rx) = mpsc::channel();
        let t1 = tx.clone();
        worker.submit(move |s: Result<&mut (bool, u32), _>| {
            let s = s.unwrap();
            s.0 = true;
            s.1 += 1;
            t1.send(thread::current().id()).unwrap();
        });
        let first = rx.recv().unwrap();
        // Wait for the thread to retire.
        for _ in 0..500 {
            if lock(&worker.shared).thread.is_none() {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert!(lock(&worker.shared).thread.is_none());
        worker.submit(move |s: Result<&mut (bool, u32), _>| {
            let s = s.unwrap();
            s.1 += 1;
            assert_eq!(*s, (true, 2));
            tx.send(thread::current().id()).unwrap();
        });
        assert_ne!(rx.recv().unwrap(), first);
    }

    #[test]
    fn dropped_handle_drains_the_queue_then_the_thread_exits() {
        struct Flag(mpsc::Sender<&'static str>);
        impl Drop for Flag {
            fn drop(&mut self) {
                let _ = self.0.send("state dropped");
            }
        }
        let (tx, rx) = mpsc::channel();
        let worker = SerialWorker::new(Flag(tx.clone()), |_| false, "t".into());
        for _ in 0..3 {
            let tx = tx.clone();
            worker.submit(move |_| {
                thread::sleep(Duration::from_millis(5));
                tx.send("job").unwrap();
            });
        }
        drop(worker);
        let got: Vec<_> = (0..4).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(got, ["job", "job", "job", "state dropped"]);
    }
}
