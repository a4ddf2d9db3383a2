//! Ordered parallel compression of independent blocks.
//!
//! The producer cuts its stream into blocks and submits them; `threads` workers compress
//! them in any order; one consumer thread receives the results strictly in submission
//! order (a bounded queue of per-block reply channels), so output is deterministic and
//! memory is bounded by the queue depth, not by the input size. Once the archive is
//! cancelled, queued blocks are dropped instead of compressed, so stopping waits at most
//! for the blocks being compressed at that moment.

use crate::error::Cancel;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Turns one block into compressed output.
pub trait Codec: Send + Sync + 'static {
    type Out: Send + 'static;
    fn compress(&self, data: &[u8]) -> io::Result<Self::Out>;

    /// Compress a block that ends its stream when `last`; by default the same thing.
    fn compress_block(&self, data: &[u8], _last: bool) -> io::Result<Self::Out> {
        self.compress(data)
    }
}

/// What the consumer receives, in order.
pub enum Ticket<O, M> {
    Block(Receiver<io::Result<O>>),
    /// A consumer-defined marker between blocks (e.g. "this zip entry ends here").
    Mark(M),
}

struct Job<O> {
    data: Vec<u8>,
    /// Whether this block ends its stream (the codec may close the stream with it).
    last: bool,
    reply: Sender<io::Result<O>>,
}

pub struct Pipeline<C: Codec, M: Send + 'static, R: Send + 'static> {
    jobs: Option<Sender<Job<C::Out>>>,
    order: Option<Sender<Ticket<C::Out, M>>>,
    workers: Vec<JoinHandle<()>>,
    consumer: Option<JoinHandle<io::Result<R>>>,
    /// Emptied blocks come back here for reuse, so large allocations are not repeated.
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Why the consumer stopped, if it failed: the producer reports that (say, "No space
    /// left on device") rather than that it could not hand over the next block.
    failure: Arc<Mutex<Option<(io::ErrorKind, String)>>>,
    cancel: Cancel,
}

impl<C: Codec, M: Send + 'static, R: Send + 'static> Pipeline<C, M, R> {
    /// Start `threads` workers and the consumer, which drains the ticket queue.
    pub fn new<F>(codec: C, threads: usize, cancel: Cancel, consume: F) -> Self
    where
        F: FnOnce(&Receiver<Ticket<C::Out, M>>) -> io::Result<R> + Send + 'static,
    {
        // Enough blocks in flight to keep every worker busy, no more: each is 1 MiB in
        // and up to 1 MiB out.
        let threads = threads.max(1);
        Self::with_depth(codec, threads, threads * 2, cancel, consume)
    }

    /// [`Pipeline::new`] with `depth` blocks queued for the workers besides those being
    /// compressed: fewer for large blocks, which keep a worker busy longer.
    pub fn with_depth<F>(codec: C, threads: usize, depth: usize, cancel: Cancel, consume: F) -> Self
    where
        F: FnOnce(&Receiver<Ticket<C::Out, M>>) -> io::Result<R> + Send + 'static,
    {
        let threads = threads.max(1);
        let depth = depth.max(1);
        let codec = Arc::new(codec);
        let (jobs, job_rx) = bounded::<Job<C::Out>>(depth);
        let (order, order_rx) = bounded::<Ticket<C::Out, M>>(threads + depth);
        let spare = bounded::<Vec<u8>>(depth);
        let workers = (0..threads)
            .map(|i| {
                let job_rx = job_rx.clone();
                let codec = Arc::clone(&codec);
                let spare_tx = spare.0.clone();
                let cancel = cancel.clone();
                std::thread::Builder::new()
                    .name(format!("conda-pack-compress-{i}"))
                    .spawn(move || {
                        for job in job_rx {
                            let out = match cancel.check_io() {
                                Ok(()) => codec.compress_block(&job.data, job.last),
                                Err(e) => Err(e),
                            };
                            let _ = job.reply.send(out);
                            let mut data = job.data;
                            data.clear();
                            let _ = spare_tx.try_send(data);
                        }
                    })
                    .expect("spawn compression worker")
            })
            .collect();
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let consumer = std::thread::Builder::new()
            .name("conda-pack-output".into())
            .spawn(move || {
                let result = consume(&order_rx);
                if let Err(e) = &result {
                    // Recorded while the queue is still open: a producer finding it closed
                    // finds the reason here.
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((e.kind(), e.to_string()));
                }
                drop(order_rx);
                result
            })
            .expect("spawn output thread");
        Pipeline {
            jobs: Some(jobs),
            order: Some(order),
            workers,
            consumer: Some(consumer),
            spare,
            failure,
            cancel,
        }
    }

    /// The error for a queue the consumer has closed: its own, when it failed.
    fn stopped(&self) -> io::Error {
        match &*self.failure.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((kind, message)) => io::Error::new(*kind, message.clone()),
            None => io::Error::other("compression stopped"),
        }
    }

    /// An empty buffer to fill as the next block.
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        match self.spare.1.try_recv() {
            Ok(v) => v,
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Queue a block; blocks while the queues are full. Fails if the consumer stopped
    /// (its error is returned by [`Pipeline::finish`]).
    pub fn submit(&self, data: Vec<u8>) -> io::Result<()> {
        self.submit_block(data, false)
    }

    /// Queue a block that may end its stream (`last`), for codecs that distinguish it.
    pub fn submit_block(&self, data: Vec<u8>, last: bool) -> io::Result<()> {
        self.cancel.check_io()?;
        let (reply, rx) = bounded(1);
        self.order
            .as_ref()
            .expect("open")
            .send(Ticket::Block(rx))
            .map_err(|_| self.stopped())?;
        self.jobs
            .as_ref()
            .expect("open")
            .send(Job { data, last, reply })
            .map_err(|_| self.stopped())
    }

    pub fn mark(&self, m: M) -> io::Result<()> {
        self.cancel.check_io()?;
        self.order
            .as_ref()
            .expect("open")
            .send(Ticket::Mark(m))
            .map_err(|_| self.stopped())
    }

    /// Wait for every block to be consumed; returns the consumer's result.
    pub fn finish(mut self) -> io::Result<R> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<R> {
        self.order.take();
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.consumer.take() {
            Some(c) => c
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("output thread panicked"))),
            None => Err(io::Error::other("already finished")),
        }
    }
}

impl<C: Codec, M: Send + 'static, R: Send + 'static> Drop for Pipeline<C, M, R> {
    fn drop(&mut self) {
        if self.consumer.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// Receive a block's result in order.
pub fn wait<O>(rx: Receiver<io::Result<O>>) -> io::Result<O> {
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("compression worker stopped")))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Copy;
    impl Codec for Copy {
        type Out = Vec<u8>;
        fn compress(&self, data: &[u8]) -> io::Result<Vec<u8>> {
            Ok(data.to_vec())
        }
    }

    struct Slow;
    impl Codec for Slow {
        type Out = ();
        fn compress(&self, _data: &[u8]) -> io::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        }
    }

    #[test]
    fn a_cancelled_pipeline_drops_its_queued_blocks() {
        let cancel = Cancel::default();
        let pipe: Pipeline<Slow, (), ()> = Pipeline::new(Slow, 1, cancel.clone(), |rx| {
            for ticket in rx {
                if let Ticket::Block(r) = ticket {
                    wait(r)?;
                }
            }
            Ok(())
        });
        // One block compressing, the rest queued: 0.5 s of work if none were dropped.
        for _ in 0..5 {
            pipe.submit(vec![0; 16]).unwrap();
        }
        let start = std::time::Instant::now();
        cancel.cancel();
        assert!(crate::error::is_cancelled_io(
            &pipe.submit(vec![0; 16]).unwrap_err()
        ));
        assert!(pipe.finish().is_err());
        assert!(start.elapsed() < std::time::Duration::from_millis(250));
    }

    #[test]
    fn a_failed_consumer_reports_its_own_error_to_the_producer() {
        let pipe: Pipeline<Copy, (), ()> = Pipeline::new(Copy, 2, Cancel::default(), |rx| {
            let _first = rx.recv();
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        });
        // The queues hold a few blocks; the producer notices within a bounded number.
        let err = (0..100)
            .find_map(|_| pipe.submit(vec![0; 16]).err())
            .expect("submit fails once the consumer is gone");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(pipe.finish().unwrap_err().to_string(), "disk full");
    }
}
