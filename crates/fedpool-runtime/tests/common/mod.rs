//! Tables the runtime's tests read: the bundled digits with their contract, and the MNIST 10k
//! table the ignored MNIST runs read. MNIST is not shipped: `FEDPOOL_MNIST=PATH`, or
//! `../shared/data/mnist_10k/` beside the repository.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use fedpool_core::Contract;
use fedpool_data::Table;

/// The digits contract and the bundled digits table.
pub fn digits() -> (Contract, Table) {
    let contract = Contract::from_toml(
        include_str!("../../../../contracts/digits.toml"),
        "contracts/digits.toml",
    )
    .unwrap();
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/digits/digits.csv"
    ))
    .unwrap();
    let table = Table::from_csv(file, "digits.csv", &contract.schema, &[]).unwrap();
    (contract, table)
}

pub fn mnist_table(contract: &Contract) -> Table {
    let path = std::env::var_os("FEDPOOL_MNIST").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/mnist_10k/mnist_10k.csv.gz")
        },
        PathBuf::from,
    );
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "cannot open {} ({e}); set FEDPOOL_MNIST to the MNIST 10k CSV",
            path.display()
        )
    });
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut text)
        .unwrap();
    Table::from_csv(text.as_slice(), "mnist_10k.csv", &contract.schema, &[]).unwrap()
}
