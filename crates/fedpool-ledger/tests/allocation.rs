//! A small import file must not force a huge allocation (issue 9, finding 7): counts read from
//! untrusted bytes are never used to reserve memory. The test binary counts the largest single
//! allocation made while decoding a crafted bundle.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use fedpool_ledger::decode_bundle;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// A well-framed bundle (valid magic, version, network and checksum) whose event count claims
/// as many events as its `filler` bytes could frame, and whose events are garbage.
fn crafted_bundle(filler: usize) -> Vec<u8> {
    let mut bytes = b"FPLEDGER".to_vec();
    bytes.push(1);
    let network = b"fedpool-test";
    bytes.extend_from_slice(&(network.len() as u32).to_be_bytes());
    bytes.extend_from_slice(network);
    bytes.extend_from_slice(&((filler / 5) as u64).to_be_bytes());
    // Each "event" is a 1-byte frame: never decodes, but the count fits the 5-bytes rule.
    for _ in 0..filler / 5 {
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.push(0);
    }
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    bytes
}

#[test]
fn a_small_import_file_cannot_force_a_huge_allocation() {
    let bundle = crafted_bundle(1 << 20);
    LARGEST.store(0, Ordering::Relaxed);
    let result = decode_bundle(&bundle);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(result.is_err(), "garbage events decoded");
    // Before the fix one allocation took ~127 MB for this 1 MiB file (count × decoded size).
    assert!(
        largest <= 2 * bundle.len(),
        "decoding a {}-byte bundle allocated {largest} bytes at once",
        bundle.len()
    );
}
