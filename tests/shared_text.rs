//! Text sliced from a file source's shared read buffer (`SharedStr`) stays
//! exactly the line's text while the reader moves on and reuses its
//! buffers: across read boundaries, for multi-byte characters, for lines
//! longer than a read, at any core count; a field that is not UTF-8 is
//! malformed, and only that line is lost.

use std::io::Write;
use std::sync::Arc;

use brisk::io::{LineParser, SharedLine, SharedStr};
use brisk::prelude::*;

mod common;
use common::seed;

/// A line `N,field,field,...` with its fields as shared text.
#[derive(Clone, Debug)]
struct Rec {
    n: u64,
    fields: Vec<SharedStr>,
}

#[derive(Clone, Default)]
struct SharedFields;

impl LineParser<Rec> for SharedFields {
    fn parse(&mut self, line: &[u8]) -> Result<Option<Rec>, String> {
        let buf = Arc::new(line.to_vec());
        self.parse_shared(&SharedLine::of(&buf))
    }

    fn parse_shared(&mut self, line: &SharedLine<'_>) -> Result<Option<Rec>, String> {
        let mut parts = line.bytes().split(|&b| b == b',');
        let n = parts.next().unwrap_or_default();
        let n = std::str::from_utf8(n).ok().and_then(|s| s.parse().ok()).ok_or("no line number")?;
        let fields = parts
            .enumerate()
            .map(|(i, f)| line.text(f).ok_or_else(|| format!("field {} is not UTF-8", i + 2)))
            .collect::<Result<_, _>>()?;
        Ok(Some(Rec { n, fields }))
    }
}

const WORDS: [&str; 6] = ["plain", "héllo", "日本語", "x", "", "emoji🦀crab"];

/// `n` lines, some longer than a read, 1 in 200 with an invalid field:
/// returns the file and each line's fields (`None` for an invalid line).
fn file(seed: u64, n: u64) -> (tempfile::NamedTempFile, Vec<Option<Vec<String>>>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let mut lines = Vec::new();
    for i in 0..n {
        let mut line = i.to_string().into_bytes();
        let mut fields = Vec::new();
        for _ in 0..rng.usize(1..6) {
            let mut field = String::new();
            let long = rng.u32(0..2000) == 0;
            let words = if long { 40_000 } else { rng.usize(0..8) };
            for _ in 0..words {
                field.push_str(WORDS[rng.usize(..WORDS.len())]);
            }
            line.push(b',');
            line.extend_from_slice(field.as_bytes());
            fields.push(field);
        }
        let bad = rng.u32(0..200) == 0;
        if bad {
            line.extend_from_slice(b",ok\xff\xfe");
        }
        line.push(b'\n');
        f.write_all(&line).unwrap();
        lines.push((!bad).then_some(fields));
    }
    f.flush().unwrap();
    (f, lines)
}

#[test]
fn kept_text_is_the_lines_text_while_buffers_are_reused() {
    let seed = seed();
    let (f, lines) = file(seed, 60_000);
    let bytes = std::fs::metadata(f.path()).unwrap().len();
    assert!(
        bytes > 8 * brisk::io::file::READ_CHUNK_BYTES as u64,
        "seed {seed}: {bytes} bytes is too few reads"
    );
    let bad = lines.iter().filter(|l| l.is_none()).count() as u64;
    assert!(bad > 0, "seed {seed} made no invalid line");
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        // Most records are dropped at once, so the reader reuses its buffers;
        // the kept ones must not see that.
        let out = env
            .from_source(FileSource::with_parser(f.path(), SharedFields).on_malformed(MalformedPolicy::Skip))
            .filter(|r: &Rec| r.n.is_multiple_of(5) || r.fields.iter().any(|f| f.len() > 100_000))
            .collect();
        let result = env.execute().unwrap();
        assert_eq!(result.metrics.total("malformed_skipped"), bad, "cores {cores}, seed {seed}");
        let mut kept = out.take();
        kept.sort_by_key(|r| r.n);
        let expected: Vec<(u64, &Vec<String>)> = lines
            .iter()
            .enumerate()
            .filter_map(|(n, l)| Some((n as u64, l.as_ref()?)))
            .filter(|(n, l)| n.is_multiple_of(5) || l.iter().any(|f| f.len() > 100_000))
            .collect();
        assert_eq!(kept.len(), expected.len(), "cores {cores}, seed {seed}");
        for (r, (n, fields)) in kept.iter().zip(&expected) {
            assert_eq!(r.n, *n, "cores {cores}, seed {seed}");
            let got: Vec<&str> = r.fields.iter().map(|f| f.as_str()).collect();
            assert_eq!(got, **fields, "line {n}, cores {cores}, seed {seed}");
        }
    }
}

#[test]
fn an_invalid_field_fails_the_job_at_its_line() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"0,a,b\n1,h\xc3\xa9\n2,ok,\xc3\n3,c\n").unwrap();
    f.flush().unwrap();
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let _ = env.from_source(FileSource::with_parser(f.path(), SharedFields)).collect();
    let msg = env.execute().unwrap_err().to_string();
    assert!(msg.contains("malformed line 3") && msg.contains("field 3 is not UTF-8"), "{msg}");
}
