//! Commits that share a transaction. Writers of one partition in one process (the parts of a
//! STOW-RS request, concurrent requests, an import's files) hand their statements to the
//! partition's [`Committer`]: the first runs a transaction, and those that arrive meanwhile
//! are committed together in the next one. A durable commit waits for the disk once for the
//! whole group (SQLite's `synchronous = FULL`, PostgreSQL's WAL flush), a D1 batch is one round
//! trip: one instance per request costs about what one instance in a batch costs.
//!
//! A group whose transaction fails (one write's constraint, a deadlock between replicas) is
//! committed again one write at a time, so each gets its own outcome. A leader that goes away
//! (its request dropped) hands the queue back: the writers it had not committed commit alone.

use super::Statements;
use crate::search::{Dialect, Index, IndexError, Row, Statement};
use futures::channel::oneshot;
use std::sync::Mutex;

/// The most writes of one transaction.
pub(crate) const MAX_GROUP: usize = 64;

/// A partition's shared commits (see the module doc).
#[derive(Debug, Default)]
pub struct Committer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<Waiting>,
    leading: bool,
}

#[derive(Debug)]
struct Waiting {
    statements: Statements,
    /// What the writer reads back once its statements ran.
    read: Statement,
    done: oneshot::Sender<Result<Vec<Row>, IndexError>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clears the leader's mark if its future is dropped mid-way, giving the queue back.
struct Leading<'a>(&'a Committer);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.leading = false;
        // Their senders dropped: those writers commit alone.
        st.queue.clear();
    }
}

impl Committer {
    /// Runs `statements` in a transaction of `index`, possibly with other writers', then the
    /// query `read` ([`Index::execute_then_read`]); returns its rows.
    pub async fn commit(
        &self,
        index: &dyn Index,
        statements: Statements,
        read: Statement,
    ) -> Result<Vec<Row>, IndexError> {
        let (done, result) = oneshot::channel();
        let lead = {
            let mut st = lock(&self.state);
            st.queue.push(Waiting {
                statements: statements.clone(),
                read: read.clone(),
                done,
            });
            !std::mem::replace(&mut st.leading, true)
        };
        if lead {
            let guard = Leading(self);
            loop {
                let group: Vec<Waiting> = {
                    let mut st = lock(&self.state);
                    if st.queue.is_empty() {
                        st.leading = false;
                        break;
                    }
                    let n = st.queue.len().min(MAX_GROUP);
                    st.queue.drain(..n).collect()
                };
                run_group(index, group).await;
            }
            std::mem::forget(guard);
        }
        match result.await {
            Ok(r) => r,
            // The leader went away before committing it: alone, then.
            Err(oneshot::Canceled) => alone(index, statements, read).await,
        }
    }
}

/// One write in its own transaction, and its read.
async fn alone(
    index: &dyn Index,
    statements: Statements,
    read: Statement,
) -> Result<Vec<Row>, IndexError> {
    // Its locks in the one order every transaction takes them, as in a group.
    let statements = combined(index.dialect(), std::iter::once(&statements));
    let mut rows = index.execute_then_read(statements, vec![read]).await?;
    Ok(rows.pop().unwrap_or_default())
}

/// One transaction for the group; on failure, one each.
async fn run_group(index: &dyn Index, group: Vec<Waiting>) {
    if group.len() == 1 {
        let mut group = group;
        let w = group.remove(0);
        let r = alone(index, w.statements, w.read).await;
        let _ = w.done.send(r);
        return;
    }
    let all = combined(index.dialect(), group.iter().map(|w| &w.statements));
    let reads = group.iter().map(|w| w.read.clone()).collect();
    match index.execute_then_read(all, reads).await {
        Ok(rows) if rows.len() == group.len() => {
            for (w, r) in group.into_iter().zip(rows) {
                let _ = w.done.send(Ok(r));
            }
        }
        _ => {
            for w in group {
                let r = alone(index, w.statements, w.read).await;
                let _ = w.done.send(r);
            }
        }
    }
}

/// The statements of several writes as one transaction: PostgreSQL's advisory locks first,
/// each once, in one order (so that two replicas' groups never wait on each other in a cycle).
pub(crate) fn combined<'a>(d: Dialect, writes: impl Iterator<Item = &'a Statements>) -> Statements {
    let is_lock = |s: &Statement| s.sql.starts_with("SELECT pg_advisory_xact_lock");
    let mut locks: Vec<Statement> = Vec::new();
    let mut rest = Vec::new();
    for w in writes {
        for s in w {
            if d == Dialect::Postgres && is_lock(s) {
                if !locks.contains(s) {
                    locks.push(s.clone());
                }
            } else {
                rest.push(s.clone());
            }
        }
    }
    locks.sort_by(|a, b| format!("{:?}", a.params).cmp(&format!("{:?}", b.params)));
    locks.extend(rest);
    locks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::sqlite::SqliteIndex;
    use crate::search::{Row, Value};
    use futures::executor::block_on;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// SQLite counting its transactions.
    #[derive(Debug)]
    struct Counting(SqliteIndex, AtomicUsize);

    #[async_trait::async_trait]
    impl Index for Counting {
        fn dialect(&self) -> Dialect {
            Dialect::Sqlite
        }
        async fn execute(&self, s: Vec<Statement>) -> Result<(), IndexError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            // Long enough for the others to queue behind it.
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.execute_now(&s)
        }
        async fn query(&self, s: Statement) -> Result<Vec<Row>, IndexError> {
            self.0.query_now(&s)
        }
    }

    /// Eight writers at once: fewer transactions than writers, every write committed, and a
    /// write that fails fails alone.
    #[test]
    fn concurrent_commits_share_transactions_and_fail_alone() {
        let index = Arc::new(Counting(
            SqliteIndex::memory().expect("sqlite"),
            AtomicUsize::new(0),
        ));
        index
            .0
            .execute_now(&[Statement::plain("CREATE TABLE t (k INTEGER PRIMARY KEY)")])
            .expect("table");
        let committer = Arc::new(Committer::default());
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let (index, committer) = (index.clone(), committer.clone());
                std::thread::spawn(move || {
                    // Writer 5 inserts a key writer 4 does: one of them fails.
                    let key = if k == 5 { 4 } else { k };
                    block_on(committer.commit(
                        &*index,
                        vec![Statement {
                            sql: "INSERT INTO t (k) VALUES (?1)".into(),
                            params: vec![Value::Int(key)],
                        }],
                        Statement {
                            sql: "SELECT count(*) FROM t WHERE k = ?1".into(),
                            params: vec![Value::Int(key)],
                        },
                    ))
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        // Each writer that succeeded read its own row back.
        for r in results.iter().flatten() {
            assert_eq!(r, &vec![vec![Value::Int(1)]]);
        }
        let rows = index
            .0
            .query_now(&Statement::plain("SELECT count(*) FROM t"))
            .expect("count");
        assert_eq!(rows, vec![vec![Value::Int(7)]]);
        assert!(
            index.1.load(Ordering::Relaxed) < 8 + 2,
            "{} transactions",
            index.1.load(Ordering::Relaxed)
        );
    }
}
