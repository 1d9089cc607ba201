//! Table tests: loading errors name file, line and column; encoding; IDX.

use proptest::prelude::*;

use super::load_idx::{IMAGES_MAGIC, LABELS_MAGIC};
use super::*;
use crate::error::DataError;
use crate::schema::{ColumnRange, ColumnSpec, LabelKind, LabelSpec};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Label `y` in {a, b}; features `x` (standardised), `color` (one-hot), `w` (range 0..10).
fn mixed_schema() -> Schema {
    Schema {
        label: LabelSpec {
            name: "y".into(),
            kind: LabelKind::Categorical {
                classes: strings(&["a", "b"]),
            },
        },
        columns: vec![
            ColumnSpec {
                name: "x".into(),
                kind: ColumnKind::Numeric {
                    scaling: Scaling::Standardize { bounds: None },
                },
            },
            ColumnSpec {
                name: "color".into(),
                kind: ColumnKind::Categorical {
                    categories: strings(&["red", "green", "blue"]),
                },
            },
            ColumnSpec {
                name: "w".into(),
                kind: ColumnKind::Numeric {
                    scaling: Scaling::Range {
                        min: 0.0,
                        max: 10.0,
                    },
                },
            },
        ],
        column_ranges: vec![],
        local_standardize: true,
    }
}

/// Pixels `p0..p{n_pixels}` scaled from 0..255, label classes "0".."{n_classes-1}".
fn pixel_schema(n_pixels: usize, n_classes: usize) -> Schema {
    Schema {
        label: LabelSpec {
            name: "label".into(),
            kind: LabelKind::Categorical {
                classes: (0..n_classes).map(|c| c.to_string()).collect(),
            },
        },
        columns: vec![],
        column_ranges: vec![ColumnRange {
            prefix: "p".into(),
            count: n_pixels,
            scaling: Scaling::Range {
                min: 0.0,
                max: 255.0,
            },
        }],
        local_standardize: true,
    }
}

fn load(csv: &[u8], schema: &Schema, keep: &[&str]) -> Result<Table, DataError> {
    Table::from_csv(csv, "t.csv", schema, keep)
}

/// Loads `csv` against the mixed schema keeping `site`, and compares the error message.
fn check_error(csv: &[u8], expect: &str) {
    match load(csv, &mixed_schema(), &["site"]) {
        Ok(table) => panic!(
            "expected error {expect:?}, loaded {} rows from {:?}",
            table.n_rows(),
            String::from_utf8_lossy(csv)
        ),
        Err(error) => assert_eq!(
            error.to_string(),
            expect,
            "input {:?}",
            String::from_utf8_lossy(csv)
        ),
    }
}

#[test]
fn malformed_csv_errors_name_file_line_and_column() {
    let header = "site,x,color,w,y\n";
    let with_rows = |rows: &str| format!("{header}s1,1,red,2,a\n{rows}");
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "t.csv: the file is empty (no header line)"),
        ("\n\n".into(), "t.csv: the file is empty (no header line)"),
        (
            header.into(),
            "t.csv: the header is present but there are no data rows",
        ),
        (
            "site,x,color,y\ns1,1,red,a\n".into(),
            "t.csv line 1: column \"w\" is required by the schema as a feature but is not in the \
             header (the header has \"site\", \"x\", \"color\", \"y\")",
        ),
        (
            "site,x,color,w\ns1,1,red,2\n".into(),
            "t.csv line 1: column \"y\" is required by the schema as the label but is not in the \
             header (the header has \"site\", \"x\", \"color\", \"w\")",
        ),
        (
            "x,color,w,y\n1,red,2,a\n".into(),
            "t.csv line 1: column \"site\" is required by the caller as a kept column but is not \
             in the header (the header has \"x\", \"color\", \"w\", \"y\")",
        ),
        (
            "site,x,color,w,y,x\ns1,1,red,2,a,1\n".into(),
            "t.csv line 1: column \"x\" appears more than once in the header",
        ),
        (
            with_rows("s1,abc,red,2,a\n"),
            "t.csv line 3, column \"x\": expected a number, found \"abc\"",
        ),
        (
            with_rows("s1,1,red,2,a\ns1,1.5.2,red,2,a\n"),
            "t.csv line 4, column \"x\": expected a number, found \"1.5.2\"",
        ),
        (
            with_rows("s1,,red,2,a\n"),
            "t.csv line 3, column \"x\": empty cell",
        ),
        (
            with_rows("s1,1,  ,2,a\n"),
            "t.csv line 3, column \"color\": empty cell",
        ),
        (
            with_rows("s1,1,red,2,\n"),
            "t.csv line 3, column \"y\": empty cell",
        ),
        (
            with_rows("s1,1,red,NaN,a\n"),
            "t.csv line 3, column \"w\": \"NaN\" is not a finite number",
        ),
        (
            with_rows("s1,-inf,red,2,a\n"),
            "t.csv line 3, column \"x\": \"-inf\" is not a finite number",
        ),
        (
            with_rows("s1,1e39,red,2,a\n"),
            "t.csv line 3, column \"x\": \"1e39\" exceeds the f32 range (±3.4e38)",
        ),
        (
            with_rows("s1,1,red,2,c\n"),
            "t.csv line 3, column \"y\": unknown label \"c\"; the schema's classes are \"a\", \"b\"",
        ),
        (
            with_rows("s1,1,Red,2,a\n"),
            "t.csv line 3, column \"color\": unknown category \"Red\"; the schema allows \"red\", \
             \"green\", \"blue\"",
        ),
        (
            with_rows("s1,1,red,2\n"),
            "t.csv line 3: expected 5 fields (as many as the header), found 4",
        ),
        (
            with_rows("s1,1,red,2,a,extra\n"),
            "t.csv line 3: expected 5 fields (as many as the header), found 6",
        ),
        // csv skips blank lines but still counts them, so the line is the file's line.
        (
            format!("{header}\n\ns1,x,red,2,a\n"),
            "t.csv line 4, column \"x\": expected a number, found \"x\"",
        ),
        (
            format!("\n\n{header}s1,1,red,2,a\n\ns1,x,red,2,a\n"),
            "t.csv line 6, column \"x\": expected a number, found \"x\"",
        ),
        (
            "site,x,color,w,y\r\n\r\ns1,1,red,2,a\r\ns1,1,red,2,q\r\n".into(),
            "t.csv line 4, column \"y\": unknown label \"q\"; the schema's classes are \"a\", \"b\"",
        ),
        (
            "\u{feff}site,x,color,w,y\ns1,x,red,2,a\n".into(),
            "t.csv line 2, column \"x\": expected a number, found \"x\"",
        ),
        (
            "\n\nsite,x,color,w\n".into(),
            "t.csv line 3: column \"y\" is required by the schema as the label but is not in \
             the header (the header has \"site\", \"x\", \"color\", \"w\")",
        ),
        // A quoted cell spanning lines: the row starts on line 2, and the bad cell is on it.
        (
            format!("{header}\"s\n1\",1,red,2,a\ns1,1,red,2,zz\n"),
            "t.csv line 4, column \"y\": unknown label \"zz\"; the schema's classes are \"a\", \"b\"",
        ),
    ];
    for (csv, expect) in cases {
        check_error(csv.as_bytes(), expect);
    }
    check_error(
        b"site,x,color,w,y\ns\xff,1,red,2,a\n",
        "t.csv line 2, column \"site\": the cell is not valid UTF-8",
    );
    check_error(
        b"site,x,color,w,y\ns1,1,r\xffd,2,a\n",
        "t.csv line 2, column \"color\": unknown category \"r\u{fffd}d\"; the schema allows \
         \"red\", \"green\", \"blue\"",
    );
}

#[test]
fn long_class_lists_and_cells_are_truncated_in_messages() {
    let mut schema = pixel_schema(1, 30);
    schema.label.name = "label".into();
    let csv = format!("p0,label\n1,{}\n", "9".repeat(60));
    let error = load(csv.as_bytes(), &schema, &[]).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "t.csv line 2, column \"label\": unknown label \"{}…\"; the schema's classes are \
             \"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\", \"9\", \"10\", \"11\" \
             … and 18 more",
            "9".repeat(40)
        )
    );
}

#[test]
fn invalid_schemas_are_rejected_before_reading() {
    let check = |edit: fn(&mut Schema), expect: &str| {
        let mut schema = mixed_schema();
        edit(&mut schema);
        let error = load(b"x,color,w,y\n1,red,2,a\n", &schema, &[]).unwrap_err();
        assert_eq!(error.to_string(), expect);
    };
    check(
        |s| s.columns.clear(),
        "invalid schema: the schema has no feature columns",
    );
    check(
        |s| s.columns[2].name = "x".into(),
        "invalid schema: column \"x\" is named more than once",
    );
    check(
        |s| s.label.name = "color".into(),
        "invalid schema: column \"color\" is named more than once",
    );
    check(
        |s| s.label.kind = LabelKind::Categorical { classes: vec![] },
        "invalid schema: label \"y\" lists no classes",
    );
    check(
        |s| {
            s.label.kind = LabelKind::Categorical {
                classes: strings(&["a", "a"]),
            }
        },
        "invalid schema: label \"y\" lists class \"a\" twice",
    );
    check(
        |s| s.columns[1].kind = ColumnKind::Categorical { categories: vec![] },
        "invalid schema: column \"color\" lists no categories",
    );
    check(
        |s| {
            s.columns[2].kind = ColumnKind::Numeric {
                scaling: Scaling::Range { min: 1.0, max: 1.0 },
            }
        },
        "invalid schema: column \"w\" has range [1, 1]; it needs finite min < max",
    );
}

#[test]
fn columns_in_any_order_extra_ignored_and_kept_columns_retained() {
    let csv = b"extra, y ,w,color,site,x\n\
                zz,a,5,green,north,1\r\n\
                zz,b,10,blue,\"south, east\",2\n\
                ,a,0,red,north,3\n";
    let table = load(csv, &mixed_schema(), &["site", "color", "site"]).unwrap();
    assert_eq!(table.n_rows(), 3);
    assert_eq!(table.source(), "t.csv");
    assert_eq!(table.class_labels(), Some(&[0, 1, 0][..]));
    assert_eq!(table.real_targets(), None);
    assert_eq!(table.kept_columns(), ["site", "color"]);
    assert_eq!(
        table.column("site").unwrap(),
        ["north", "south, east", "north"]
    );
    assert_eq!(table.column("color").unwrap(), ["green", "blue", "red"]);
    assert_eq!(table.column("extra"), None);
    assert_eq!(
        format!("{table:?}"),
        "Table { source: \"t.csv\", n_rows: 3, n_features: 5, classification: true, \
         kept_columns: [\"site\", \"color\"], .. }"
    );
}

#[test]
fn numeric_labels_are_real_targets() {
    let mut schema = mixed_schema();
    schema.label.kind = LabelKind::Numeric;
    let table = load(b"x,color,w,y\n1,red,2,0.5\n2,red,2,-3\n", &schema, &[]).unwrap();
    assert_eq!(table.class_labels(), None);
    assert_eq!(table.real_targets(), Some(&[0.5, -3.0][..]));
    assert_eq!(
        table.encode(&[1, 0]).targets,
        Targets::Real(vec![-3.0, 0.5])
    );
    let error = load(b"x,color,w,y\n1,red,2,b\n", &schema, &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "t.csv line 2, column \"y\": expected a number, found \"b\""
    );
}

/// Encodes `rows` of a mixed-schema table and compares features row by row (to 1e-5).
fn check_encode(csv: &str, rows: &[usize], expect: &[&[f32]]) {
    let table = load(csv.as_bytes(), &mixed_schema(), &[]).unwrap();
    let dataset = table.encode(rows);
    assert_eq!(dataset.n_features, 5);
    assert_eq!(dataset.n_rows(), expect.len());
    for (row_idx, want) in expect.iter().enumerate() {
        let got = dataset.row(row_idx);
        let close = got.iter().zip(*want).all(|(g, w)| (g - w).abs() < 1e-5);
        assert!(
            close,
            "rows {rows:?}, row {row_idx}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn encode_one_hot_and_scaling() {
    let csv = "x,color,w,y\n1,red,0,a\n2,green,5,b\n3,blue,10,a\n100,green,2.5,b\n";
    let sqrt_2_3 = (2.0f32 / 3.0).sqrt();
    // Feature layout: x, red, green, blue, w.
    check_encode(
        csv,
        &[0, 1, 2],
        &[
            &[-1.0 / sqrt_2_3, 1.0, 0.0, 0.0, 0.0],
            &[0.0, 0.0, 1.0, 0.0, 0.5],
            &[1.0 / sqrt_2_3, 0.0, 0.0, 1.0, 1.0],
        ],
    );
    // Standardisation uses only the rows given: row 3's x = 100 changes nothing above, and
    // here it is the whole population of a two-row node.
    check_encode(
        csv,
        &[3, 0],
        &[&[1.0, 0.0, 1.0, 0.0, 0.25], &[-1.0, 1.0, 0.0, 0.0, 0.0]],
    );
    // A column constant on the node is centred, not divided by zero.
    check_encode(csv, &[3], &[&[0.0, 0.0, 1.0, 0.0, 0.25]]);
    check_encode(csv, &[], &[]);
}

#[test]
fn encode_width_order_and_targets_follow_the_schema() {
    let mut schema = mixed_schema();
    schema.columns[0].kind = ColumnKind::Numeric {
        scaling: Scaling::None,
    };
    schema.column_ranges.push(ColumnRange {
        prefix: "q".into(),
        count: 2,
        scaling: Scaling::None,
    });
    let csv = b"q1,q0,y,w,color,x\n7,6,b,10,blue,-2\n";
    let table = load(csv, &schema, &[]).unwrap();
    let dataset = table.encode(&[0, 0]);
    assert_eq!(dataset.n_features, schema.n_features());
    assert_eq!(
        dataset.features,
        [
            -2.0, 0.0, 0.0, 1.0, 1.0, 6.0, 7.0, -2.0, 0.0, 0.0, 1.0, 1.0, 6.0, 7.0
        ]
    );
    assert_eq!(
        dataset.targets,
        Targets::Classes {
            labels: vec![1, 1],
            n_classes: 2
        }
    );
}

/// IDX bytes for `images` (each `n_rows × n_cols` bytes) and `labels`.
fn idx_files(n_rows: u32, n_cols: u32, images: &[&[u8]], labels: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut image_bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
    for dim in [images.len() as u32, n_rows, n_cols] {
        image_bytes.extend_from_slice(&dim.to_be_bytes());
    }
    for image in images {
        image_bytes.extend_from_slice(image);
    }
    let mut label_bytes = LABELS_MAGIC.to_be_bytes().to_vec();
    label_bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    label_bytes.extend_from_slice(labels);
    (image_bytes, label_bytes)
}

#[test]
fn idx_matches_the_equivalent_csv() {
    let (images, labels) = idx_files(
        2,
        2,
        &[&[0, 255, 51, 0], &[1, 2, 3, 4], &[9, 9, 9, 9]],
        &[0, 2, 1],
    );
    let schema = pixel_schema(4, 3);
    let from_idx = Table::from_idx(&images[..], &labels[..], "mini-idx", &schema).unwrap();
    let csv = "label,p0,p1,p2,p3\n0,0,255,51,0\n2,1,2,3,4\n1,9,9,9,9\n";
    let from_csv = load(csv.as_bytes(), &schema, &[]).unwrap();
    assert_eq!(from_idx.n_rows(), 3);
    assert_eq!(from_idx.source(), "mini-idx");
    assert_eq!(from_idx.class_labels(), Some(&[0, 2, 1][..]));
    assert_eq!(from_idx.encode(&[0, 1, 2]), from_csv.encode(&[0, 1, 2]));
    let first = from_idx.encode(&[0]).features;
    let expect = [0.0, 1.0, 0.2, 0.0];
    assert!(
        first
            .iter()
            .zip(expect)
            .all(|(got, want)| (got - want).abs() < 1e-6),
        "{first:?}"
    );
}

#[test]
fn idx_classes_may_be_listed_in_any_order() {
    let (images, labels) = idx_files(1, 1, &[&[7], &[8]], &[1, 0]);
    let mut schema = pixel_schema(1, 2);
    schema.label.kind = LabelKind::Categorical {
        classes: strings(&["1", "0"]),
    };
    let table = Table::from_idx(&images[..], &labels[..], "m", &schema).unwrap();
    assert_eq!(table.class_labels(), Some(&[0, 1][..]));
}

/// Loads IDX bytes against `schema` and compares the error message.
fn check_idx_error(images: &[u8], labels: &[u8], schema: &Schema, expect: &str) {
    match Table::from_idx(images, labels, "m", schema) {
        Ok(table) => panic!("expected {expect:?}, loaded {} rows", table.n_rows()),
        Err(error) => assert_eq!(error.to_string(), expect),
    }
}

#[test]
fn malformed_idx_errors() {
    let schema = pixel_schema(4, 3);
    let (images, labels) = idx_files(2, 2, &[&[1, 2, 3, 4], &[5, 6, 7, 8]], &[0, 1]);
    let mut swapped_magic = images.clone();
    swapped_magic[3] = 0x01;
    let mut trailing = labels.clone();
    trailing.push(0);
    let (three_images, _) = idx_files(2, 2, &[&[0; 4], &[0; 4], &[0; 4]], &[]);
    let (_, bad_label) = idx_files(2, 2, &[], &[0, 7]);
    let (big_images, _) = idx_files(3, 3, &[&[0; 9], &[0; 9]], &[]);
    let mut huge_claim = images.clone();
    huge_claim[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut huge_labels = labels.clone();
    huge_labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let cases: Vec<(&[u8], &[u8], &str)> = vec![
        (
            &labels,
            &labels,
            "m (images): not an IDX images file: magic number is 0x00000801, expected 0x00000803",
        ),
        (
            &images,
            &images,
            "m (labels): not an IDX labels file: magic number is 0x00000803, expected 0x00000801",
        ),
        (
            &swapped_magic,
            &labels,
            "m (images): not an IDX images file: magic number is 0x00000801, expected 0x00000803",
        ),
        (
            b"",
            &labels,
            "m (images): truncated: expected 16 bytes of header, found 0",
        ),
        (
            &images[..10],
            &labels,
            "m (images): truncated: expected 16 bytes of header, found 10",
        ),
        (
            &images,
            &labels[..6],
            "m (labels): truncated: expected 8 bytes of header, found 6",
        ),
        (
            &images[..images.len() - 1],
            &labels,
            "m (images): truncated: expected 8 bytes of items, found 7",
        ),
        (
            &images,
            &labels[..9],
            "m (labels): truncated: expected 2 bytes of items, found 1",
        ),
        (
            &images,
            &trailing,
            "m (labels): unexpected bytes after the 2 items the header declares",
        ),
        (
            &three_images,
            &labels,
            "m: the images file holds 3 images but the labels file 2 labels",
        ),
        (
            &huge_claim,
            &huge_labels,
            "m (images): truncated: expected 17179869180 bytes of items, found 8",
        ),
        (
            &images,
            &bad_label,
            "m (labels) item 1: unknown label \"7\"; the schema's classes are \"0\", \"1\", \"2\"",
        ),
        (
            &big_images,
            &labels,
            "m: the IDX data does not fit the schema: images are 3×3 = 9 pixels but the schema's \
             run \"p\" has 4 columns",
        ),
    ];
    for (images, labels, expect) in cases {
        check_idx_error(images, labels, &schema, expect);
    }

    let mut numeric_label = schema.clone();
    numeric_label.label.kind = LabelKind::Numeric;
    check_idx_error(
        &images,
        &labels,
        &numeric_label,
        "m: the IDX data does not fit the schema: IDX labels are classes but the label \"label\" \
         is numeric",
    );
    check_idx_error(
        &images,
        &labels,
        &mixed_schema(),
        "m: the IDX data does not fit the schema: the features must be a single column run (e.g. \
         prefix \"p\", count 784), but the schema has 3 named columns and 0 runs",
    );
    let (no_images, no_labels) = idx_files(2, 2, &[], &[]);
    check_idx_error(
        &no_images,
        &no_labels,
        &schema,
        "m: the header is present but there are no data rows",
    );
}

#[test]
fn idx_read_errors_keep_the_io_error_as_source() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let (images, _) = idx_files(1, 1, &[&[0]], &[]);
    let error = Table::from_idx(&images[..], Failing, "m", &pixel_schema(1, 1)).unwrap_err();
    assert_eq!(error.to_string(), "m (labels): read failed");
    let cause = std::error::Error::source(&error).map(|c| c.to_string());
    assert_eq!(cause.as_deref(), Some("disk on fire"));
}

#[test]
fn number_parsing_fast_path_agrees_with_the_float_parser() {
    use super::load_csv::{NumberError, parse_number};
    for text in [
        "0", "7", "255", "1234567", "12345678", "0.5", "-3", "+4", "1e3", " ",
    ] {
        let slow = text.parse::<f32>().map_err(|_| NumberError::NotANumber);
        assert_eq!(parse_number(text.as_bytes()), slow, "{text:?}");
    }
    assert_eq!(parse_number(b""), Err(NumberError::Empty));
    assert_eq!(parse_number(b"nan"), Err(NumberError::NonFinite));
    assert_eq!(parse_number(b"inf"), Err(NumberError::NonFinite));
    assert_eq!(parse_number(b"1e39"), Err(NumberError::OutOfRange));
    assert_eq!(parse_number(b"-4e38"), Err(NumberError::OutOfRange));
    assert_eq!(parse_number(b"3e38"), Ok(3e38));
}

proptest! {
    /// No byte string makes the CSV loader panic; it loads or returns an error.
    #[test]
    fn csv_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = load(&bytes, &mixed_schema(), &["site"]);
    }

    /// Near-valid CSV (a valid file with one byte replaced) never panics either.
    #[test]
    fn csv_loader_never_panics_on_mutated_files(position in 0usize..60, byte in any::<u8>()) {
        let mut csv = b"site,x,color,w,y\ns1,1,red,2,a\ns2,2.5,blue,3,b\n".to_vec();
        let position = position % csv.len();
        csv[position] = byte;
        let _ = load(&csv, &mixed_schema(), &["site"]);
    }

    /// No IDX bytes make the IDX loader panic, including valid headers over random bodies.
    #[test]
    fn idx_loader_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        labels_body in proptest::collection::vec(any::<u8>(), 0..8),
        n_images in 0u32..5,
        n_labels in 0u32..5,
    ) {
        let mut images = IMAGES_MAGIC.to_be_bytes().to_vec();
        for dim in [n_images, 2, 2] {
            images.extend_from_slice(&dim.to_be_bytes());
        }
        images.extend_from_slice(&body);
        let mut labels = LABELS_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&n_labels.to_be_bytes());
        labels.extend_from_slice(&labels_body);
        let schema = pixel_schema(4, 3);
        let _ = Table::from_idx(&images[..], &labels[..], "m", &schema);
        let _ = Table::from_idx(&body[..], &labels_body[..], "m", &schema);
    }
}
