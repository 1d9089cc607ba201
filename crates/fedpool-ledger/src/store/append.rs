//! Appending one event: the authenticity checks, then the chain checks and the insert inside
//! the caller's transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sql_error;
use crate::{AppendOutcome, Did, Error, Event, EventId, NetworkId};

/// The checks that need no database: the network and the signature.
pub(super) fn check_authentic(network: &NetworkId, event: &Event) -> Result<(), Error> {
    if event.network() != network {
        return Err(Error::ForeignNetwork {
            author: event.author(),
            seq: event.seq(),
            id: event.id(),
            expected: network.to_string(),
            found: event.network().to_string(),
        });
    }
    event.verify_signature()
}

/// Begins a write transaction, taking the write lock at once so the chain head read inside
/// it cannot be changed by another connection before the insert.
pub(super) fn begin<'conn>(
    conn: &'conn mut Connection,
    path: &Path,
) -> Result<Transaction<'conn>, Error> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_error(path, "cannot begin transaction"))
}

/// Chain checks and insert for an authentic event.
///
/// The common case (the author's next event) costs one indexed read and one insert: only an
/// event at or below the chain head needs the lookups that tell a duplicate from a fork.
pub(super) fn append_in(
    tx: &Transaction<'_>,
    path: &Path,
    event: &Event,
) -> Result<AppendOutcome, Error> {
    let sql = |action| sql_error(path, action);
    let author_text = event.author().to_string();
    let (head_seq, head_id) = chain_head(tx, path, &event.author(), &author_text)?;

    if event.seq() <= head_seq {
        let occupant: Option<String> = tx
            .prepare_cached("SELECT id FROM events WHERE author = ?1 AND seq = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![author_text, event.seq() as i64], |row| row.get(0))
                    .optional()
            })
            .map_err(sql("cannot look up chain"))?;
        let Some(occupant) = occupant else {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "chain {} has no seq {} below its head seq {head_seq}",
                    event.author(),
                    event.seq()
                ),
            });
        };
        let id_text = event.id().to_string();
        if occupant == id_text {
            return Ok(AppendOutcome::AlreadyPresent);
        }
        let is_recorded_fork: bool = tx
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM forks WHERE id = ?1)")
            .and_then(|mut stmt| stmt.query_row([&id_text], |row| row.get(0)))
            .map_err(sql("cannot look up forks"))?;
        if is_recorded_fork {
            return Ok(AppendOutcome::AlreadyPresent);
        }
        let conflicts_with = parse_stored_id(path, &occupant)?;
        tx.prepare_cached(
            "INSERT INTO forks(id, author, seq, conflicts_with, kind, model_id, timestamp_ms, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id_text,
                author_text,
                event.seq() as i64,
                occupant,
                event.kind().name(),
                event.model_column(),
                event.timestamp_ms() as i64,
                event.encode(),
            ])
        })
        .map_err(sql("cannot record fork"))?;
        return Ok(AppendOutcome::ForkRecorded { conflicts_with });
    }

    if event.seq() != head_seq + 1 {
        return Err(Error::ChainGap {
            author: event.author(),
            seq: event.seq(),
            expected_seq: head_seq + 1,
            id: event.id(),
        });
    }
    // seq = head + 1 here, and events carry a prev exactly when seq > 1, so `prev` and the
    // head are both present or both absent.
    if let (Some(found), Some(expected)) = (event.prev(), head_id)
        && found != expected
    {
        return Err(Error::ChainPrevHash {
            author: event.author(),
            seq: event.seq(),
            expected,
            found,
        });
    }
    tx.prepare_cached(
        "INSERT INTO events(id, author, seq, kind, model_id, timestamp_ms, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            event.id().to_string(),
            author_text,
            event.seq() as i64,
            event.kind().name(),
            event.model_column(),
            event.timestamp_ms() as i64,
            event.encode(),
        ])
    })
    .map_err(sql("cannot insert event"))?;
    Ok(AppendOutcome::Appended)
}

/// The author's last chained seq and id: `(0, None)` if they have none.
pub(super) fn chain_head(
    conn: &Connection,
    path: &Path,
    author: &Did,
    author_text: &str,
) -> Result<(u64, Option<EventId>), Error> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, id FROM events WHERE author = ?1 ORDER BY seq DESC LIMIT 1")
        .and_then(|mut stmt| {
            stmt.query_row([author_text], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sql_error(path, "cannot look up chain head"))?;
    match head {
        None => Ok((0, None)),
        Some((seq, id)) => {
            let id = parse_stored_id(path, &id)?;
            debug_assert!(seq > 0, "chain of {author} holds seq {seq}");
            Ok((seq as u64, Some(id)))
        }
    }
}

fn parse_stored_id(path: &Path, id: &str) -> Result<EventId, Error> {
    id.parse().map_err(|err| Error::StoredEvent {
        path: path.to_path_buf(),
        id: id.to_string(),
        source: Box::new(err),
    })
}
