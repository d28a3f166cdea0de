//! Criterion benchmark of a state record's checksum: the `crc32c` crate
//! against `brisk_state::log::format::checksum` (the same CRC-32C, fed 8
//! bytes at a time from any alignment), on inputs of record sizes starting
//! at offsets spread over a 1 MiB buffer, as records in a segment do.
//!
//! ```text
//! cargo bench -p brisk-bench --bench record_checksum
//! ```

use brisk::state::log::format::checksum;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BUFFER: usize = 1 << 20;
const INPUTS: usize = 4096;

fn record_checksum(c: &mut Criterion) {
    let buf: Vec<u8> = (0..BUFFER).map(|i| (i * 7 + (i >> 5)) as u8).collect();
    // Offsets at every alignment.
    let offsets: Vec<usize> = (0..INPUTS).map(|i| (i * 1237) % (BUFFER - 256)).collect();
    let mut g = c.benchmark_group("record_checksum");
    g.throughput(Throughput::Elements(INPUTS as u64));
    for len in [41usize, 100, 200] {
        g.bench_function(format!("crc32c_crate_{len}_bytes"), |b| {
            b.iter(|| offsets.iter().fold(0u32, |x, &o| x ^ crc32c::crc32c(&buf[o..o + len])))
        });
        g.bench_function(format!("format_checksum_{len}_bytes"), |b| {
            b.iter(|| offsets.iter().fold(0u32, |x, &o| x ^ checksum(&buf[o..o + len])))
        });
    }
    g.finish();
}

criterion_group!(benches, record_checksum);
criterion_main!(benches);
