//! `brisk checkpoints list|verify|inspect`: a checkpoint directory, offline.
//!
//! - `list DIR`: every checkpoint under DIR (a job's `checkpoint_dir`), newest
//!   first: complete or not, savepoint, finished, when, sizes.
//! - `verify DIR`: reads every complete checkpoint (or one checkpoint
//!   directory) and checks every state file's checksum and every log
//!   segment's header and length; exits with 1 if any is corrupt.
//! - `inspect CHK`: one checkpoint (a `chk-N` or savepoint directory, or
//!   DIR for the newest): bytes and entries per operator and core, per key
//!   group, and the log segments it refers to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use brisk::checkpoint::{format, store};
use brisk::metrics::human_bytes as bytes;

/// What `brisk checkpoints` does.
#[derive(clap::Subcommand)]
pub enum Checkpoints {
    /// Lists the checkpoints under a checkpoint directory, newest first.
    List {
        /// The job's checkpoint directory.
        dir: PathBuf,
    },
    /// Verifies checksums: of every complete checkpoint under DIR, or of
    /// one checkpoint directory.
    Verify {
        /// A checkpoint directory (`chk-N`, a savepoint) or a job's
        /// checkpoint directory.
        dir: PathBuf,
    },
    /// Shows what one checkpoint holds: per operator and core, per key
    /// group, and its log segments.
    Inspect {
        /// A checkpoint directory (`chk-N`, a savepoint), or a job's
        /// checkpoint directory for its newest complete checkpoint.
        dir: PathBuf,
        /// Key groups to show, the largest first (0: all).
        #[arg(long, default_value_t = 10)]
        key_groups: usize,
    },
}

/// Runs `what`; `Ok(false)` when verification found corruption.
pub fn run(what: Checkpoints, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    match what {
        Checkpoints::List { dir } => list(&dir, out).map(|()| true),
        Checkpoints::Verify { dir } => verify(&dir, out),
        Checkpoints::Inspect { dir, key_groups } => inspect(&dir, key_groups, out).map(|()| true),
    }
}

/// Whether `dir` is one checkpoint (it has a manifest) rather than a root.
fn is_checkpoint(dir: &Path) -> bool {
    dir.join("_manifest").exists()
}

fn checkpoints_under(root: &Path) -> anyhow::Result<Vec<(u64, PathBuf, bool)>> {
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    store::list(root).with_context(|| format!("cannot list {}", root.display()))
}

fn list(root: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let all = checkpoints_under(root)?;
    if all.is_empty() {
        writeln!(out, "no checkpoints in {}", root.display())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>6}  {:<10}  {:<24}  {:>9}  {:>5}  {:>12}  {:>12}  flags",
        "id", "status", "triggered (UTC)", "took", "files", "state", "segments"
    )?;
    for (id, path, complete) in all {
        if !complete {
            writeln!(out, "{id:>6}  {:<10}", "incomplete")?;
            continue;
        }
        match store::read_manifest(&path) {
            Ok(m) => {
                let mut flags = Vec::new();
                if m.savepoint {
                    flags.push("savepoint");
                }
                if m.finished {
                    flags.push("finished");
                }
                writeln!(
                    out,
                    "{id:>6}  {:<10}  {:<24}  {:>7}ms  {:>5}  {:>12}  {:>12}  {}",
                    "complete",
                    utc(m.triggered_ms),
                    m.duration_ms,
                    m.files.len(),
                    bytes(m.state_bytes()),
                    bytes(m.segment_bytes()),
                    flags.join(",")
                )?;
            }
            Err(e) => writeln!(out, "{id:>6}  {:<10}  {e}", "unreadable")?,
        }
    }
    Ok(())
}

fn verify(dir: &Path, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let targets: Vec<(String, PathBuf)> = if is_checkpoint(dir) {
        vec![(dir.display().to_string(), dir.to_path_buf())]
    } else {
        checkpoints_under(dir)?
            .into_iter()
            .filter(|(_, _, complete)| *complete)
            .map(|(id, p, _)| (format!("chk-{id}"), p))
            .collect()
    };
    if targets.is_empty() {
        bail!("{}: no complete checkpoint to verify", dir.display());
    }
    let mut ok = true;
    for (name, path) in targets {
        match store::load(&path) {
            Ok(l) => {
                let state: u64 = l.manifest.files.iter().map(|f| f.bytes).sum();
                writeln!(
                    out,
                    "{name}: ok ({} state files, {} verified; {} segments present)",
                    l.manifest.files.len(),
                    bytes(state),
                    l.manifest.segments.len()
                )?;
            }
            Err(e) => {
                ok = false;
                writeln!(out, "{name}: CORRUPT: {e}")?;
            }
        }
    }
    Ok(ok)
}

fn inspect(dir: &Path, key_groups: usize, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let path = if is_checkpoint(dir) {
        dir.to_path_buf()
    } else {
        checkpoints_under(dir)?
            .into_iter()
            .find(|(_, _, complete)| *complete)
            .map(|(_, p, _)| p)
            .with_context(|| format!("{}: no complete checkpoint", dir.display()))?
    };
    let loaded = store::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let m = &loaded.manifest;
    writeln!(
        out,
        "checkpoint {} at {}: {} cores, max parallelism {}{}{}, taken {} in {} ms",
        m.id,
        path.display(),
        m.cores,
        m.max_parallelism,
        if m.savepoint { ", savepoint" } else { "" },
        if m.finished { ", finished" } else { "" },
        utc(m.triggered_ms),
        m.duration_ms
    )?;
    let name = |node: usize| m.nodes.get(node).map_or("?", String::as_str);
    // Per operator and core: files, bytes, entries.
    let mut per_op: BTreeMap<(usize, usize), (u64, u64)> = BTreeMap::new();
    let mut per_group: BTreeMap<(usize, u32), (u64, u64)> = BTreeMap::new();
    for (entry, payload) in &loaded.payloads {
        let op = per_op.entry((entry.node, entry.core)).or_default();
        op.0 += entry.bytes;
        for e in format::entries(payload) {
            let e = e.with_context(|| format!("{}: a corrupt entry", entry.name))?;
            op.1 += 1;
            if e.key_group != format::NO_KEY_GROUP {
                let g = per_group.entry((entry.node, e.key_group)).or_default();
                g.0 += 1;
                g.1 += e.bytes.len() as u64;
            }
        }
    }
    writeln!(out, "\nstate files per operator and core:")?;
    writeln!(out, "  {:<32} {:>4} {:>12} {:>10}", "operator", "core", "bytes", "entries")?;
    for ((node, core), (b, n)) in &per_op {
        writeln!(out, "  {:<32} {:>4} {:>12} {:>10}", name(*node), core, bytes(*b), n)?;
    }
    if !per_group.is_empty() {
        let mut groups: Vec<_> = per_group.into_iter().collect();
        groups.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
        let shown = if key_groups == 0 { groups.len() } else { key_groups.min(groups.len()) };
        writeln!(out, "\nkey groups ({} with state; the {shown} largest):", groups.len())?;
        writeln!(out, "  {:<32} {:>9} {:>10} {:>12}", "operator", "key group", "entries", "bytes")?;
        for ((node, group), (n, b)) in groups.iter().take(shown) {
            writeln!(out, "  {:<32} {:>9} {:>10} {:>12}", name(*node), group, n, bytes(*b))?;
        }
    }
    if !m.segments.is_empty() {
        let mut per_seg: BTreeMap<(usize, usize), (usize, u64)> = BTreeMap::new();
        for s in &m.segments {
            let e = per_seg.entry((s.node, s.core)).or_default();
            e.0 += 1;
            e.1 += s.len;
        }
        writeln!(out, "\nlog segments referred to (incremental state):")?;
        writeln!(out, "  {:<32} {:>4} {:>9} {:>12}", "operator", "core", "segments", "bytes")?;
        for ((node, core), (n, b)) in per_seg {
            writeln!(out, "  {:<32} {:>4} {:>9} {:>12}", name(node), core, n, bytes(b))?;
        }
    }
    Ok(())
}

/// `2026-11-22 01:02:03.456` for epoch ms (UTC).
fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00.001");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(utc(1_795_309_960_123), "2026-11-22 01:12:40.123");
    }
}
