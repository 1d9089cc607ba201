//! [`Store::verify`](crate::Store::verify): reading every stored row back, checking it against
//! its own columns, then verifying the decoded events.

use std::path::Path;

use rusqlite::Connection;

use super::sql_error;
use crate::verify::{Rule, Violation, verify_events};
use crate::{Did, Error, Event, EventId, NetworkId, VerifyReport};

pub(super) fn verify_rows(
    conn: &Connection,
    path: &Path,
    network: &NetworkId,
    rules: &dyn crate::verify::ContractRules,
) -> Result<VerifyReport, Error> {
    let sql = |action| sql_error(path, action);
    let mut events = Vec::new();
    let mut row_violations = Vec::new();
    let mut n_rows = 0;
    for table in ["events", "forks"] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, author, seq, kind, model_id, bytes FROM {table} ORDER BY author, seq"
            ))
            .map_err(sql("cannot read events"))?;
        let mut rows = stmt.query([]).map_err(sql("cannot read events"))?;
        while let Some(row) = rows.next().map_err(sql("cannot read events"))? {
            n_rows += 1;
            let columns = (|| -> rusqlite::Result<_> {
                Ok(StoredColumns {
                    id: row.get(0)?,
                    author: row.get(1)?,
                    seq: row.get(2)?,
                    kind: row.get(3)?,
                    model_id: row.get(4)?,
                    bytes: row.get(5)?,
                })
            })();
            match columns {
                Ok(columns) => check_row(table, columns, &mut events, &mut row_violations),
                Err(err) => row_violations.push(Violation {
                    rule: Rule::Undecodable,
                    event_id: None,
                    author: None,
                    seq: None,
                    detail: format!("{table} row has columns of the wrong type: {err}"),
                }),
            }
        }
    }
    let mut report = verify_events(network, &events, rules);
    report.n_events = report.n_events.max(n_rows);
    row_violations.append(&mut report.violations);
    report.violations = row_violations;
    Ok(report)
}

struct StoredColumns {
    id: String,
    author: String,
    seq: i64,
    kind: String,
    model_id: String,
    bytes: Vec<u8>,
}

/// Decodes one row, recording problems as violations.
fn check_row(
    table: &str,
    row: StoredColumns,
    events: &mut Vec<Event>,
    violations: &mut Vec<Violation>,
) {
    let row_id = row.id.parse::<EventId>().ok();
    let row_seq = u64::try_from(row.seq).ok();
    let event = match Event::decode(&row.bytes) {
        Ok(event) => event,
        Err(err) => {
            violations.push(Violation {
                rule: Rule::Undecodable,
                event_id: row_id,
                author: row.author.parse::<Did>().ok(),
                seq: row_seq,
                detail: format!("{table} row {}: {err}", row.id),
            });
            return;
        }
    };
    let mut mismatches = Vec::new();
    if row_id != Some(event.id()) {
        mismatches.push(format!(
            "id column {} but bytes hash to {}",
            row.id,
            event.id()
        ));
    }
    if row.author != event.author().to_string() {
        mismatches.push(format!(
            "author column {} but bytes say {}",
            row.author,
            event.author()
        ));
    }
    if row_seq != Some(event.seq()) {
        mismatches.push(format!(
            "seq column {} but bytes say {}",
            row.seq,
            event.seq()
        ));
    }
    if row.kind != event.kind().name() {
        mismatches.push(format!(
            "kind column {} but bytes say {}",
            row.kind,
            event.kind()
        ));
    }
    if row.model_id != event.model_column() {
        mismatches.push(format!(
            "model_id column `{}` but bytes say `{}`",
            row.model_id,
            event.model_column()
        ));
    }
    if !mismatches.is_empty() {
        violations.push(Violation {
            rule: Rule::RecordMismatch,
            event_id: Some(event.id()),
            author: Some(event.author()),
            seq: Some(event.seq()),
            detail: format!("{table} row {}: {}", row.id, mismatches.join("; ")),
        });
    }
    events.push(event);
}
