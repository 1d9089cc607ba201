//! The embedded SQLite store: the only module (with [`crate::keyfile`]) that touches files.
//!
//! # Schema (version 1)
//!
//! ```sql
//! events(id TEXT PRIMARY KEY, author TEXT, seq INTEGER, kind TEXT, model_id TEXT,
//!        timestamp_ms INTEGER, bytes BLOB, UNIQUE(author, seq))
//! forks(id TEXT PRIMARY KEY, author TEXT, seq INTEGER, conflicts_with TEXT, kind TEXT,
//!       model_id TEXT, timestamp_ms INTEGER, bytes BLOB)
//! meta(key TEXT PRIMARY KEY, value TEXT)   -- 'network'
//! ```
//!
//! `model_id` is `''` for kinds that name no model (wallet links, anchors). With indexes on
//! `events(kind, author, seq)` and `events(model_id, author, seq)` (the
//! `UNIQUE(author, seq)` constraint is the by-author index). `bytes` is the full encoded
//! event; the other columns are copies for querying, checked against the bytes by
//! [`Store::verify`]. `PRAGMA application_id` marks the file as a fedpool ledger and
//! `PRAGMA user_version` holds the schema version.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: every committed append is fsynced
//! before [`Store::append`] returns, so an acknowledged event survives a process kill and a
//! power cut. (`NORMAL` would survive a process kill but could lose the last commits on power
//! loss, and a ledger must not forget a consent revocation it acknowledged.) Batch writes go
//! through [`Store::import`], which commits once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::{
    Body, Did, Error, Event, EventId, EventKind, Keypair, ModelId, NetworkId, VerifyReport,
    decode_bundle, encode_bundle,
};

mod append;
mod rows;

use append::{append_in, begin, chain_head, check_authentic};

/// The database layout version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id` of a fedpool ledger: "fplg" in ASCII.
const APPLICATION_ID: i64 = 0x6670_6c67;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events(
    id TEXT PRIMARY KEY,
    author TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    model_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    UNIQUE(author, seq)
);
CREATE INDEX events_by_kind ON events(kind, author, seq);
CREATE INDEX events_by_model ON events(model_id, author, seq);
CREATE TABLE forks(
    id TEXT PRIMARY KEY,
    author TEXT NOT NULL,
    seq INTEGER NOT NULL,
    conflicts_with TEXT NOT NULL,
    kind TEXT NOT NULL,
    model_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    bytes BLOB NOT NULL
);
";

/// What [`Store::append`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The event extended its author's chain.
    Appended,
    /// The event was already stored (in the chain or as fork evidence); nothing changed.
    AlreadyPresent,
    /// The author already has another event at this seq. The new one is kept as evidence of
    /// the fork; the chain is unchanged.
    ForkRecorded {
        /// The stored event at the same author and seq.
        conflicts_with: EventId,
    },
}

/// An authentic event that conflicts with a stored one (same author and seq, other content).
#[derive(Clone, Debug, PartialEq)]
pub struct ForkEvidence {
    /// The conflicting event.
    pub event: Event,
    /// The chain's event at the same author and seq.
    pub conflicts_with: EventId,
}

/// What [`Store::import`] did with a batch of events.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Events that extended a chain.
    pub n_appended: usize,
    /// Events already present (importing the same file twice yields only these).
    pub n_already_present: usize,
    /// Events recorded as fork evidence.
    pub n_forks: usize,
    /// Events refused (bad signature, foreign network, or not chaining even after sorting),
    /// with the reason.
    pub rejected: Vec<Error>,
}

/// A ledger database file.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    network: NetworkId,
    /// Transactions this handle committed (see [`Store::change_stamp`]).
    own_commits: u64,
}

impl Store {
    /// Opens the ledger at `path` for `network`, creating it if the file does not exist.
    ///
    /// Fails with [`Error::NotALedger`] for a file that is not SQLite or belongs to another
    /// application, [`Error::SchemaVersion`] for another layout version,
    /// [`Error::Corrupt`] if SQLite's quick integrity check fails, and
    /// [`Error::NetworkMismatch`] if the ledger belongs to another network. The integrity check
    /// reads the whole file: about 0.25 s for 100,000 events (a 180 MB database) when cached.
    pub fn open(path: &Path, network: &NetworkId) -> Result<Store, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Store::open_with(path, flags, Some(network))?;
        if &store.network != network {
            return Err(Error::NetworkMismatch {
                path: path.to_path_buf(),
                stored: store.network.to_string(),
                requested: network.to_string(),
            });
        }
        Ok(store)
    }

    /// Opens an existing ledger, whatever its network (e.g. for auditing). Fails if the file
    /// does not exist rather than creating it.
    pub fn open_existing(path: &Path) -> Result<Store, Error> {
        if let Err(source) = fs::metadata(path) {
            return Err(Error::Io {
                path: path.to_path_buf(),
                action: "cannot open ledger",
                source,
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Store::open_with(path, flags, None)
    }

    fn open_with(
        path: &Path,
        flags: OpenFlags,
        create_for: Option<&NetworkId>,
    ) -> Result<Store, Error> {
        let sql = |action| sql_error(path, action);
        let conn = Connection::open_with_flags(path, flags).map_err(sql("cannot open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql("cannot set busy timeout"))?;
        // The bundled SQLite has STAT4, which re-prepares a statement whenever a value bound
        // against an indexed column changes, in case a better plan exists. Our lookups are all
        // point queries on unique indexes, so a stable plan is right, and re-preparing on
        // every append cost ~10% of import time.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(sql("cannot configure the query planner"))?;
        // The first read of the header is where SQLite notices a file that is not a database.
        let application_id: i64 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(|err| not_a_ledger_or(path, err, "cannot read header"))?;
        let schema_version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|err| not_a_ledger_or(path, err, "cannot read header"))?;
        let n_tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|err| not_a_ledger_or(path, err, "cannot read schema"))?;

        let is_empty = application_id == 0 && schema_version == 0 && n_tables == 0;
        if is_empty {
            let Some(network) = create_for else {
                return Err(Error::NotALedger {
                    path: path.to_path_buf(),
                    reason: "the database is empty".into(),
                });
            };
            Store::create_schema(&conn, path, network)?;
        } else if application_id != APPLICATION_ID {
            return Err(Error::NotALedger {
                path: path.to_path_buf(),
                reason: format!(
                    "SQLite application id is {application_id:#x}, a fedpool ledger has {APPLICATION_ID:#x}"
                ),
            });
        } else if schema_version != SCHEMA_VERSION {
            return Err(Error::SchemaVersion {
                path: path.to_path_buf(),
                found: schema_version,
                expected: SCHEMA_VERSION,
            });
        }

        // WAL persists in the file; synchronous is per connection (see the module docs).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("cannot enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("cannot set synchronous"))?;

        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(|err| not_a_ledger_or(path, err, "cannot run integrity check"))?;
        if check != "ok" {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: check,
            });
        }
        let network_name: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'network'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sql("cannot read network"))?;
        let network = network_name
            .as_deref()
            .map(NetworkId::new)
            .transpose()
            .ok()
            .flatten()
            .ok_or_else(|| Error::Corrupt {
                path: path.to_path_buf(),
                detail: "missing or invalid network id in table `meta`".into(),
            })?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            network,
            own_commits: 0,
        })
    }

    fn create_schema(conn: &Connection, path: &Path, network: &NetworkId) -> Result<(), Error> {
        let sql = |action| sql_error(path, action);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("cannot enable WAL"))?;
        let batch = format!(
            "BEGIN IMMEDIATE;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             {SCHEMA}
             INSERT INTO meta(key, value) VALUES ('network', '{network}');
             COMMIT;"
        );
        // `network` is validated to [a-z0-9._-], so it cannot break out of the quotes.
        conn.execute_batch(&batch)
            .map_err(sql("cannot create schema"))
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network this ledger belongs to.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// Appends one event, durably, in one transaction.
    ///
    /// The network and the signature are checked first (they need no database), then, inside
    /// the transaction, the chain: the event must be its author's next (`seq` = last + 1 and
    /// `prev` = last id). An event already present is a no-op; an authentic event at an
    /// occupied seq is kept as fork evidence. Errors: [`Error::ForeignNetwork`],
    /// [`Error::Signature`], [`Error::ChainGap`], [`Error::ChainPrevHash`].
    pub fn append(&mut self, event: &Event) -> Result<AppendOutcome, Error> {
        check_authentic(&self.network, event)?;
        let tx = begin(&mut self.conn, &self.path)?;
        let outcome = append_in(&tx, &self.path, event)?;
        tx.commit()
            .map_err(sql_error(&self.path, "cannot commit append"))?;
        self.own_commits += 1;
        Ok(outcome)
    }

    /// Signs `body` as `keypair`'s next event and appends it, reading the chain head inside
    /// the same write transaction: processes sharing this database (a running node and a CLI
    /// command) take turns on SQLite's write lock, so an author's chain never forks through a
    /// race. The timestamp is `now_ms` or the previous event's, if that is later.
    pub fn append_next(
        &mut self,
        keypair: &Keypair,
        now_ms: u64,
        body: impl Into<Body>,
    ) -> Result<Event, Error> {
        self.append_next_at(keypair, now_ms, None, body.into())
    }

    /// [`Store::append_next`], only if the event gets seq `seq`; otherwise (another writer
    /// appended first) nothing is written and the error says which seq is next. For bodies that
    /// name their own seq (a wallet's signature of a link does).
    pub fn append_at_seq(
        &mut self,
        keypair: &Keypair,
        now_ms: u64,
        seq: u64,
        body: impl Into<Body>,
    ) -> Result<Event, Error> {
        self.append_next_at(keypair, now_ms, Some(seq), body.into())
    }

    fn append_next_at(
        &mut self,
        keypair: &Keypair,
        now_ms: u64,
        expected_seq: Option<u64>,
        body: Body,
    ) -> Result<Event, Error> {
        let author = keypair.did();
        let tx = begin(&mut self.conn, &self.path)?;
        let (head_seq, head_id) = chain_head(&tx, &self.path, &author, &author.to_string())?;
        let moved_on = expected_seq.filter(|&seq| seq != head_seq + 1);
        let last_timestamp_ms = match head_id {
            Some(id) => tx
                .query_row(
                    "SELECT timestamp_ms FROM events WHERE id = ?1",
                    [id.to_string()],
                    |row| row.get::<_, i64>(0),
                )
                .map_err(sql_error(&self.path, "cannot read the chain head"))?
                as u64,
            None => 0,
        };
        let event = Event::sign(
            &self.network,
            keypair,
            moved_on.unwrap_or(head_seq + 1),
            head_id,
            now_ms.max(last_timestamp_ms),
            body,
        )?;
        if let Some(seq) = moved_on {
            // Dropping the transaction writes nothing.
            return Err(Error::ChainGap {
                author,
                seq,
                expected_seq: head_seq + 1,
                id: event.id(),
            });
        }
        append_in(&tx, &self.path, &event)?;
        tx.commit()
            .map_err(sql_error(&self.path, "cannot commit append"))?;
        self.own_commits += 1;
        Ok(event)
    }

    /// Appends many events in one transaction, tolerating out-of-order arrival: events are
    /// sorted per author by seq first. Events that still do not chain, and events with bad
    /// signatures or of another network, are reported in [`ImportReport::rejected`]; the rest
    /// are stored. Only database failures abort the import (and roll it back).
    pub fn import(
        &mut self,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<ImportReport, Error> {
        let mut by_author: BTreeMap<Did, Vec<Event>> = BTreeMap::new();
        for event in events {
            by_author.entry(event.author()).or_default().push(event);
        }
        let mut report = ImportReport::default();
        let tx = begin(&mut self.conn, &self.path)?;
        for (_, mut chain) in by_author {
            chain.sort_by_key(Event::seq);
            for event in chain {
                if let Err(err) = check_authentic(&self.network, &event) {
                    report.rejected.push(err);
                    continue;
                }
                match append_in(&tx, &self.path, &event) {
                    Ok(AppendOutcome::Appended) => report.n_appended += 1,
                    Ok(AppendOutcome::AlreadyPresent) => report.n_already_present += 1,
                    Ok(AppendOutcome::ForkRecorded { .. }) => report.n_forks += 1,
                    Err(err @ (Error::ChainGap { .. } | Error::ChainPrevHash { .. })) => {
                        report.rejected.push(err);
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        tx.commit()
            .map_err(sql_error(&self.path, "cannot commit import"))?;
        self.own_commits += 1;
        Ok(report)
    }

    /// Imports an export file written by [`Store::export_file`] (possibly by another node).
    /// The file must be for this store's network.
    pub fn import_file(&mut self, path: &Path) -> Result<ImportReport, Error> {
        let bytes = fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            action: "cannot read ledger export",
            source,
        })?;
        let in_file = |err| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(err),
        };
        let (network, events) = decode_bundle(&bytes).map_err(in_file)?;
        if network != self.network {
            return Err(in_file(Error::NetworkMismatch {
                path: self.path.clone(),
                stored: self.network.to_string(),
                requested: network.to_string(),
            }));
        }
        self.import(events)
    }

    /// Writes every event, chains first in (author, seq) order and then fork evidence, to an
    /// export file at `path` (replacing it atomically). Returns the number of events written.
    pub fn export_file(&self, path: &Path) -> Result<usize, Error> {
        let mut events = self.events()?;
        events.extend(self.forks()?.into_iter().map(|fork| fork.event));
        let bytes = encode_bundle(&self.network, &events);
        crate::keyfile::replace_file(path, &bytes)?;
        Ok(events.len())
    }

    /// The event with this id, from the chains or the fork evidence.
    pub fn get(&self, id: &EventId) -> Result<Option<Event>, Error> {
        let id_text = id.to_string();
        for table in ["events", "forks"] {
            let bytes: Option<Vec<u8>> = self
                .conn
                .prepare_cached(&format!("SELECT bytes FROM {table} WHERE id = ?1"))
                .and_then(|mut stmt| stmt.query_row([&id_text], |row| row.get(0)).optional())
                .map_err(sql_error(&self.path, "cannot look up event"))?;
            if let Some(bytes) = bytes {
                return self.decode_row(&id_text, &bytes).map(Some);
            }
        }
        Ok(None)
    }

    /// Every chained event (not fork evidence), in (author, seq) order.
    pub fn events(&self) -> Result<Vec<Event>, Error> {
        self.query_events("SELECT id, bytes FROM events ORDER BY author, seq", [])
    }

    /// One author's chain, in seq order.
    pub fn events_by_author(&self, author: &Did) -> Result<Vec<Event>, Error> {
        self.query_events(
            "SELECT id, bytes FROM events WHERE author = ?1 ORDER BY seq",
            [author.to_string()],
        )
    }

    /// Part of one author's chain: events with `seq >= from_seq`, in seq order, at most
    /// `limit` of them (what a peer catching up asks for).
    pub fn chain_range(
        &self,
        author: &Did,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        self.query_events(
            "SELECT id, bytes FROM events WHERE author = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            rusqlite::params![author.to_string(), from_seq as i64, i64::from(limit)],
        )
    }

    /// Every author's chain head: `(author, seq, id)` of its last chained event, in author
    /// order. Two stores that hold the same events have the same heads.
    pub fn heads(&self) -> Result<Vec<(Did, u64, EventId)>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT author, max(seq), id FROM events GROUP BY author ORDER BY author",
            )
            .map_err(sql_error(&self.path, "cannot list chain heads"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_error(&self.path, "cannot list chain heads"))?;
        rows.into_iter()
            .map(|(author, seq, id)| {
                let stored = |source: Error| Error::StoredEvent {
                    path: self.path.clone(),
                    id: id.clone(),
                    source: Box::new(source),
                };
                Ok((
                    Did::parse_unchecked(&author).map_err(stored)?,
                    seq as u64,
                    id.parse().map_err(stored)?,
                ))
            })
            .collect()
    }

    /// Every chained event of one kind, in (author, seq) order.
    pub fn events_by_kind(&self, kind: EventKind) -> Result<Vec<Event>, Error> {
        self.query_events(
            "SELECT id, bytes FROM events WHERE kind = ?1 ORDER BY author, seq",
            [kind.name().to_string()],
        )
    }

    /// Every chained event about one model, in (author, seq) order.
    pub fn events_by_model(&self, model_id: &ModelId) -> Result<Vec<Event>, Error> {
        self.query_events(
            "SELECT id, bytes FROM events WHERE model_id = ?1 ORDER BY author, seq",
            [model_id.as_str().to_string()],
        )
    }

    /// Every recorded fork, in (author, seq) order.
    pub fn forks(&self) -> Result<Vec<ForkEvidence>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, bytes, conflicts_with FROM forks ORDER BY author, seq, id")
            .map_err(sql_error(&self.path, "cannot list forks"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_error(&self.path, "cannot list forks"))?;
        rows.into_iter()
            .map(|(id, bytes, conflicts_with)| {
                let event = self.decode_row(&id, &bytes)?;
                let conflicts_with = conflicts_with.parse().map_err(|err| Error::StoredEvent {
                    path: self.path.clone(),
                    id: id.clone(),
                    source: Box::new(err),
                })?;
                Ok(ForkEvidence {
                    event,
                    conflicts_with,
                })
            })
            .collect()
    }

    /// A value that changes whenever the database may have changed: a commit through this
    /// handle, or (SQLite's `data_version`) one by any other connection, such as a CLI command
    /// sharing a node's home. Lets a caller poll for new events without querying them.
    pub fn change_stamp(&self) -> Result<(u64, i64), Error> {
        let data_version: i64 = self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(sql_error(&self.path, "cannot read data_version"))?;
        Ok((self.own_commits, data_version))
    }

    /// The seq and `prev` an author's next event must carry: `(1, None)` for a new author.
    pub fn next_seq_and_prev(&self, author: &Did) -> Result<(u64, Option<EventId>), Error> {
        let (head_seq, head_id) = chain_head(&self.conn, &self.path, author, &author.to_string())?;
        Ok((head_seq + 1, head_id))
    }

    /// Number of chained events (fork evidence not counted).
    pub fn n_events(&self) -> Result<u64, Error> {
        self.conn
            .query_row("SELECT count(*) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql_error(&self.path, "cannot count events"))
    }

    /// Verifies the whole ledger (see [`crate::verify`]), including fork evidence. Rows whose
    /// bytes do not decode, or disagree with their `id`, `author`, `seq`, `kind` or
    /// `model_id` columns, are reported as violations rather than errors, so a damaged
    /// database still yields a full report.
    pub fn verify(&self, rules: &dyn crate::ContractRules) -> Result<VerifyReport, Error> {
        rows::verify_rows(&self.conn, &self.path, &self.network, rules)
    }

    fn query_events<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<Vec<Event>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(sql_error(&self.path, "cannot query events"))?;
        let rows = stmt
            .query_map(params, |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_error(&self.path, "cannot query events"))?;
        rows.iter()
            .map(|(id, bytes)| self.decode_row(id, bytes))
            .collect()
    }

    /// Decodes a stored event and checks it is the one its `id` column names.
    fn decode_row(&self, id: &str, bytes: &[u8]) -> Result<Event, Error> {
        let stored_event_error = |source| Error::StoredEvent {
            path: self.path.clone(),
            id: id.to_string(),
            source: Box::new(source),
        };
        let event = Event::decode(bytes).map_err(stored_event_error)?;
        if event.id().to_string() != id {
            return Err(stored_event_error(Error::EventIdParse {
                input: id.to_string(),
                reason: format!("the stored bytes hash to {}", event.id()),
            }));
        }
        Ok(event)
    }
}

fn sql_error<'a>(path: &'a Path, action: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |source| Error::Sqlite {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Maps SQLite's "not a database" to [`Error::NotALedger`], anything else to [`Error::Sqlite`].
fn not_a_ledger_or(path: &Path, err: rusqlite::Error, action: &'static str) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotALedger {
            path: path.to_path_buf(),
            reason: "the file is not a SQLite database".into(),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
        _ => sql_error(path, action)(err),
    }
}
