//! A task on a thread of its own, for the chains every decision waits for (the SQLite writer,
//! PostgreSQL's batches of starts).
//!
//! Such a task spends its life in short steps between waits (for its queue, for the database).
//! On the server's runtime each step queued behind the HTTP requests on the runtime's workers,
//! and every request waiting for the chain waited that much longer; on a thread of its own the
//! operating system runs it as soon as it can run.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Runs `task` on a thread named `name` with a runtime of its own (current-thread, with I/O and
/// timers), or on the server's runtime when no thread or runtime can be had. The handle
/// completes when the task has.
pub fn spawn<F>(name: &str, task: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (done, finished) = oneshot::channel::<()>();
    // Whoever runs the task takes it (and what says it is done) from here.
    let slot = Arc::new(Mutex::new(Some((task, done))));
    let server = tokio::runtime::Handle::current();
    let taken = slot.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let Some((task, done)) = take(&taken) else {
                return;
            };
            // As the server's workers: memory this thread freed goes back to the system when
            // asked, the next time it waits (`memory::on_idle`).
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(crate::memory::on_idle)
                .build()
            {
                Ok(runtime) => {
                    runtime.block_on(task);
                    let _ = done.send(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no runtime for a task's own thread; running it on the server's");
                    server.spawn(finish(task, done));
                }
            }
        });
    if let Err(e) = thread {
        tracing::warn!(error = %e, "no thread for a task of its own; running it on the server's runtime");
        if let Some((task, done)) = take(&slot) {
            tokio::spawn(finish(task, done));
        }
    }
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut slot| slot.take())
}

async fn finish<F: Future<Output = ()>>(task: F, done: oneshot::Sender<()>) {
    task.await;
    let _ = done.send(());
}
