//! Builders of small tables for unit tests.

use crate::schema::{ColumnKind, ColumnSpec, LabelKind, LabelSpec, Scaling, Schema};
use crate::table::Table;

/// A classification table with one numeric feature `x`, label `y` in `"0".."{n_classes-1}"`,
/// and a kept column `group` whose value is `groups[row]` (or `g` when `groups` is empty).
pub(crate) fn class_table(labels: &[u32], n_classes: u32, groups: &[&str]) -> Table {
    let schema = Schema {
        label: LabelSpec {
            name: "y".into(),
            kind: LabelKind::Categorical {
                classes: (0..n_classes).map(|c| c.to_string()).collect(),
            },
        },
        columns: vec![x_column()],
        column_ranges: vec![],
        local_standardize: true,
    };
    let mut csv = String::from("x,y,group\n");
    for (row, label) in labels.iter().enumerate() {
        let group = groups.get(row).copied().unwrap_or("g");
        csv.push_str(&format!("{row},{label},{group}\n"));
    }
    Table::from_csv(csv.as_bytes(), "t.csv", &schema, &["group"]).expect("test table loads")
}

/// A regression table of `n_rows` rows.
pub(crate) fn regression_table(n_rows: usize) -> Table {
    let schema = Schema {
        label: LabelSpec {
            name: "y".into(),
            kind: LabelKind::Numeric,
        },
        columns: vec![x_column()],
        column_ranges: vec![],
        local_standardize: true,
    };
    let mut csv = String::from("x,y\n");
    for row in 0..n_rows {
        csv.push_str(&format!("{row},{}\n", row as f32 * 0.5));
    }
    Table::from_csv(csv.as_bytes(), "r.csv", &schema, &[]).expect("test table loads")
}

fn x_column() -> ColumnSpec {
    ColumnSpec {
        name: "x".into(),
        kind: ColumnKind::Numeric {
            scaling: Scaling::None,
        },
    }
}
