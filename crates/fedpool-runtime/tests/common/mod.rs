//! The MNIST 10k table the ignored MNIST runs read. It is not shipped: `FEDPOOL_MNIST=PATH`, or
//! `../shared/data/mnist_10k/` beside the repository.

use std::io::Read;
use std::path::PathBuf;

use fedpool_core::Contract;
use fedpool_data::Table;

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
