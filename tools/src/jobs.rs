//! `brisk jobs list|show|cancel|savepoint`: a running job, through its REST
//! API (a job started with `--web-ui`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// What `brisk jobs` does.
#[derive(clap::Args)]
pub struct Jobs {
    /// The job's REST address (its --web-ui).
    #[arg(long, global = true, default_value = brisk::cli::WEB_UI_DEFAULT, value_name = "HOST:PORT")]
    address: String,
    /// The job's token, for cancel and savepoint (BRISK_WEB_TOKEN when not
    /// given).
    #[arg(long, global = true, env = "BRISK_WEB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    what: JobsCommand,
}

#[derive(clap::Subcommand)]
enum JobsCommand {
    /// The job served at the address: name, state, uptime, records.
    List,
    /// The job in detail: operators per core, watermarks, checkpoints,
    /// exceptions.
    Show,
    /// Cancels the job (its output since the last checkpoint is not
    /// committed).
    Cancel,
    /// Takes a savepoint and prints where it went.
    Savepoint {
        /// Where to write it (must not exist; default: under the job's
        /// checkpoint directory).
        #[arg(long)]
        dir: Option<String>,
        /// Stop the job once the savepoint is complete.
        #[arg(long)]
        stop: bool,
    },
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.agent.get(&format!("{}{path}", self.base)).call();
        self.body(path, r)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut req =
            self.agent.post(&format!("{}{path}", self.base)).set("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let r = req.send_string(&body.to_string());
        self.body(path, r)
    }

    fn body(&self, path: &str, r: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
        match r {
            Ok(resp) => {
                let text = resp.into_string().context("cannot read the answer")?;
                serde_json::from_str(&text).with_context(|| format!("{path}: not JSON: {text}"))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or(text);
                bail!("{path}: {code}: {msg}")
            }
            Err(e) => bail!("cannot reach the job at {}: {e}", self.base),
        }
    }
}

/// Runs `brisk jobs ...`, printing to `out`.
pub fn run(jobs: Jobs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let client = Client {
        base: format!("http://{}", jobs.address),
        token: jobs.token,
        // A savepoint takes as long as a checkpoint of the job's state.
        agent: ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(3600))
            .build(),
    };
    match jobs.what {
        JobsCommand::List => {
            let o = client.get("/api/overview")?;
            writeln!(
                out,
                "{:<32} {:<11} {:>6} {:>12} {:>14} {:>12}",
                "job", "state", "cores", "uptime", "records in", "rate/s"
            )?;
            writeln!(
                out,
                "{:<32} {:<11} {:>6} {:>11}s {:>14} {:>12.0}",
                o["name"].as_str().unwrap_or("?"),
                o["state"].as_str().unwrap_or("?"),
                o["cores"],
                o["uptime_ms"].as_u64().unwrap_or(0) / 1000,
                o["records_from_sources"],
                o["source_rate_per_s"].as_f64().unwrap_or(0.0)
            )?;
        }
        JobsCommand::Show => show(&client, out)?,
        JobsCommand::Cancel => {
            client.post("/api/cancel", &Value::Null)?;
            writeln!(out, "cancelling the job at {}", jobs.address)?;
        }
        JobsCommand::Savepoint { dir, stop } => {
            let body = match dir {
                Some(d) => serde_json::json!({ "dir": d }),
                None => serde_json::json!({}),
            };
            let r = client.post(if stop { "/api/stop" } else { "/api/savepoint" }, &body)?;
            let path = r["savepoint"].as_str().unwrap_or("?");
            if stop {
                writeln!(out, "savepoint {path}; the job stops")?;
            } else {
                writeln!(out, "savepoint {path}")?;
            }
        }
    }
    Ok(())
}

fn show(client: &Client, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let o = client.get("/api/overview")?;
    writeln!(
        out,
        "{} — {} on {} cores, up {} s, {} restarts, checkpoints {} ok / {} failed",
        o["name"].as_str().unwrap_or("?"),
        o["state"].as_str().unwrap_or("?"),
        o["cores"],
        o["uptime_ms"].as_u64().unwrap_or(0) / 1000,
        o["restarts"],
        o["checkpoints_completed"],
        o["checkpoints_failed"]
    )?;
    let ops = client.get("/api/operators")?;
    writeln!(
        out,
        "\n{:<32} {:>4} {:>14} {:>12} {:>20}",
        "operator", "core", "records out", "rate/s", "watermark"
    )?;
    for op in ops["operators"].as_array().into_iter().flatten() {
        let rate = op["rates_per_s"]["records_out"].as_f64();
        for (i, c) in op["per_core"].as_array().into_iter().flatten().enumerate() {
            writeln!(
                out,
                "{:<32} {:>4} {:>14} {:>12} {:>20}",
                if i == 0 { op["name"].as_str().unwrap_or("?") } else { "" },
                c["core"],
                c["records_out"].as_u64().map_or("-".into(), |n| n.to_string()),
                if i == 0 { rate.map_or("-".into(), |r| format!("{r:.0}")) } else { String::new() },
                c["watermark"].as_i64().map_or("-".into(), |w| w.to_string())
            )?;
        }
    }
    let cps = client.get("/api/checkpoints")?;
    writeln!(
        out,
        "\n{:>6} {:<10} {:>10} {:>12} {:>10} {:>10}",
        "id", "status", "duration", "bytes", "sync", "alignment"
    )?;
    for c in cps["history"].as_array().into_iter().flatten().take(10) {
        writeln!(
            out,
            "{:>6} {:<10} {:>8}ms {:>12} {:>8}µs {:>8}µs {}",
            c["id"],
            c["status"].as_str().unwrap_or("?"),
            c["duration_ms"],
            c["bytes"],
            c["sync_us"],
            c["alignment_us"],
            c["reason"].as_str().unwrap_or("")
        )?;
    }
    let lat = client.get("/api/latency")?;
    for s in lat["sinks"].as_array().into_iter().flatten() {
        let ms = |k: &str| s[k].as_u64().unwrap_or(0) as f64 / 1000.0;
        writeln!(
            out,
            "latency at {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} markers)",
            s["sink"].as_str().unwrap_or("?"),
            ms("p50_us"),
            ms("p99_us"),
            ms("p999_us"),
            ms("max_us"),
            s["count"]
        )?;
    }
    let ex = client.get("/api/exceptions")?;
    let list = ex["exceptions"].as_array().cloned().unwrap_or_default();
    if !list.is_empty() {
        writeln!(out, "\nexceptions:")?;
        for e in list {
            writeln!(out, "  {}", e["message"].as_str().unwrap_or("?"))?;
        }
    }
    Ok(())
}
