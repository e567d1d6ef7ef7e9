//! `verilimit replay`: what a rate-limit configuration would have done to recorded traffic.
//!
//! Every start of the traffic (JSON Lines or CSV, gzip or not, files or stdin) is decided by the
//! same pure core the server runs (`crate::core`), at the time the record gives: the 60203
//! send-attempts rule as configured by the server's flags, then every bucket of every rate limit
//! named (20429, all or nothing). No HTTP, no database: state lives in memory and is pruned as
//! the records' clock moves on, so memory follows the live windows, not the file size.
//!
//! - `parse`: records (JSON Lines, CSV, times);
//! - `sim`: one configuration's decisions and counters;
//! - `table`: the hash tables its state lives in, laid out so the next records' lookups can be
//!   prefetched while one is decided;
//! - here: the command (inputs, progress, decisions file, table or JSON).

pub mod log;
pub mod parse;
pub mod sim;
pub mod table;

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::core::Policy;
use parse::{CsvHeader, Record};
use sim::{Config, Decision, Plans, Sim};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// `verilimit replay`: run recorded starts through a rate-limit configuration.
#[derive(clap::Args, Clone, Debug)]
pub struct ReplayArgs {
    /// The configuration: a seed file, or what `GET /emulator/v1/Export` returns.
    #[arg(long)]
    pub config: PathBuf,

    /// Traffic files: JSON Lines or CSV (header `time,service_sid,to,channel,rate_limits` or
    /// `rate_limits.NAME` columns), gzip accepted; `-` reads stdin. Replayed in the order given.
    #[arg(required = true)]
    pub traffic: Vec<String>,

    /// A second configuration, replayed over the same traffic and shown beside the first.
    #[arg(long)]
    pub compare: Option<PathBuf>,

    /// `table` for people, `json` for machines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Values refused most to list per rate limit.
    #[arg(long, default_value_t = 10)]
    pub top: usize,

    /// Count and skip malformed lines instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Write every start's decision (of --config) to this file as JSON Lines:
    /// `{"file","line","status","code","rate_limit"}`.
    #[arg(long)]
    pub decisions: Option<PathBuf>,

    /// Never draw the progress bar (it is drawn on stderr only when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// As the server's flag: sends to one `To` per service within --send-attempts-window
    /// (60203 past it); 0 switches the rule off.
    #[arg(long, env = "VERILIMIT_SEND_ATTEMPTS_LIMIT", default_value_t = 5)]
    pub send_attempts_limit: u32,

    /// As the server's flag: seconds of the send-attempts window.
    #[arg(long, env = "VERILIMIT_SEND_ATTEMPTS_WINDOW", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub send_attempts_window: u32,
}

/// `2026-11-30T12:00:00.250Z`.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Counts the bytes read (compressed bytes for gzip), for the progress bar.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

const BUFFER: usize = 1 << 20;

fn open(
    name: &str,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Box<dyn BufRead>, String> {
    let raw: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(name).map_err(|e| format!("cannot open {name}: {e}"))?)
    };
    let mut r = BufReader::with_capacity(BUFFER, Counting { inner: raw, read });
    let gzip = r
        .fill_buf()
        .map_err(|e| format!("cannot read {name}: {e}"))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::bufread::MultiGzDecoder::new(r),
        ))
    } else {
        Box::new(r)
    })
}

struct Progress {
    enabled: bool,
    total: u64,
    last: Instant,
    started: Instant,
}

impl Progress {
    fn tick(&mut self, read: u64, starts: u64, force: bool) {
        if !self.enabled || (!force && self.last.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = starts as f64 / secs;
        let mut err = std::io::stderr().lock();
        if self.total > 0 {
            let frac = (read as f64 / self.total as f64).min(1.0);
            let filled = (frac * 30.0) as usize;
            let _ = write!(
                err,
                "\r[{}{}] {:5.1}%  {} starts  {:.0}/s ",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                frac * 100.0,
                starts,
                rate
            );
        } else {
            let _ = write!(err, "\r{starts} starts  {rate:.0}/s ");
        }
        if force {
            let _ = writeln!(err);
        }
    }
}

/// Runs the command; the report goes to stdout, warnings and the progress bar to stderr.
pub fn run(args: &ReplayArgs) -> Result<(), String> {
    let policy = Policy {
        send_attempts_limit: args.send_attempts_limit,
        send_window_ms: i64::from(args.send_attempts_window) * 1000,
        // Checks and code lifetime do not change whether a start is admitted.
        check_attempts_limit: 0,
        code_ttl_ms: 600_000,
    };
    let mut sims = vec![Sim::new(Config::load(&args.config)?, policy)];
    if let Some(other) = &args.compare {
        sims.push(Sim::new(Config::load(other)?, policy));
    }
    let mut decisions = match &args.decisions {
        Some(p) => {
            Some(std::io::BufWriter::new(File::create(p).map_err(|e| {
                format!("cannot create {}: {e}", p.display())
            })?))
        }
        None => None,
    };
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total: u64 = args
        .traffic
        .iter()
        .filter(|t| *t != "-")
        .filter_map(|t| std::fs::metadata(t).ok())
        .map(|m| m.len())
        .sum();
    let mut progress = Progress {
        enabled: !args.no_progress && std::io::stderr().is_terminal(),
        total: if args.traffic.iter().any(|t| t == "-") {
            0
        } else {
            total
        },
        last: Instant::now(),
        started: Instant::now(),
    };
    let mut invalid = 0u64;
    // Records are read a batch at a time, so that the loads of the next ones overlap the
    // decision of this one (`sim::Plan`, `table`).
    let mut chunk: Vec<u8> = Vec::with_capacity(BATCH * 256);
    let mut spans: Vec<(usize, usize, u64)> = Vec::with_capacity(BATCH);
    let mut plans: Vec<Plans> = sims.iter().map(|_| Plans::default()).collect();
    for name in &args.traffic {
        let mut input = open(name, read.clone())?;
        let mut csv: Option<CsvHeader> = None;
        let mut line_no = 0u64;
        let shown = if name == "-" {
            "<stdin>"
        } else {
            name.as_str()
        };
        let mut eof = false;
        while !eof {
            chunk.clear();
            spans.clear();
            while spans.len() < BATCH {
                let start = chunk.len();
                let n = input
                    .read_until(b'\n', &mut chunk)
                    .map_err(|e| format!("{shown}: cannot read: {e}"))?;
                if n == 0 {
                    eof = true;
                    break;
                }
                line_no += 1;
                let line = trim(&chunk[start..]);
                let end = start + line.len();
                if line.is_empty() {
                    continue;
                }
                if line_no == 1 && line[0] != b'{' {
                    let text = std::str::from_utf8(line)
                        .map_err(|_| format!("{shown}:1: the CSV header is not UTF-8"))?;
                    csv = Some(CsvHeader::parse(text).map_err(|e| format!("{shown}:1: {e}"))?);
                    chunk.truncate(start);
                    continue;
                }
                spans.push((start, end, line_no));
            }
            let records: Vec<Result<Record<'_>, String>> = spans
                .iter()
                .map(|&(start, end, _)| {
                    let line = &chunk[start..end];
                    match &csv {
                        None => parse::json_line(line),
                        Some(h) => std::str::from_utf8(line)
                            .map_err(|_| "not UTF-8".to_owned())
                            .and_then(|t| h.record(t)),
                    }
                })
                .collect();
            let mut valid: Vec<&Record<'_>> = Vec::with_capacity(records.len());
            for (record, &(_, _, line_no)) in records.iter().zip(&spans) {
                match record {
                    Ok(r) => valid.push(r),
                    Err(e) if args.skip_invalid => {
                        if invalid < 5 {
                            eprintln!("verilimit replay: {shown}:{line_no}: {e} (skipped)");
                        }
                        invalid += 1;
                    }
                    Err(e) => {
                        // What came before the bad line is decided (and written) first.
                        decide(&mut sims, &mut plans, &valid, &spans, shown, &mut decisions)?;
                        return Err(format!(
                            "{shown}:{line_no}: {e} (--skip-invalid counts and skips such lines)"
                        ));
                    }
                }
            }
            let ok_spans: Vec<(usize, usize, u64)> = records
                .iter()
                .zip(&spans)
                .filter(|(r, _)| r.is_ok())
                .map(|(_, s)| *s)
                .collect();
            decide(
                &mut sims,
                &mut plans,
                &valid,
                &ok_spans,
                shown,
                &mut decisions,
            )?;
            progress.tick(
                read.load(std::sync::atomic::Ordering::Relaxed),
                sims[0].starts,
                false,
            );
        }
    }
    progress.tick(
        read.load(std::sync::atomic::Ordering::Relaxed),
        sims[0].starts,
        true,
    );
    if let Some(mut out) = decisions {
        out.flush()
            .map_err(|e| format!("cannot write the decisions: {e}"))?;
    }
    if invalid > 0 {
        eprintln!("verilimit replay: {invalid} invalid lines skipped");
    }
    let mut reports: Vec<serde_json::Value> = sims.iter().map(|s| s.report(args.top)).collect();
    for (sim, report) in sims.iter().zip(&mut reports) {
        report["invalid_lines"] = invalid.into();
        warn_unknown(sim, report);
    }
    let mut stdout = std::io::stdout().lock();
    let text = match args.format {
        Format::Json => {
            let mut v = reports[0].clone();
            if let Some(b) = reports.get(1) {
                v["compare"] = b.clone();
            }
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Format::Table => table(&reports, args),
    };
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write the report: {e}"))
}

/// Records read and decided at a time.
const BATCH: usize = 1024;

/// Records whose loads are prefetched together, a group or two ahead of their decisions.
const GROUP: usize = 8;

/// Decides a batch of records in every configuration and writes the first configuration's
/// decisions. Group by group: the slots of the records two groups ahead and the log entries of
/// the next group are loaded before the group's decisions (`Sim::touch_slots`, `touch_logs`).
fn decide(
    sims: &mut [Sim],
    plans: &mut [Plans],
    records: &[&Record<'_>],
    spans: &[(usize, usize, u64)],
    shown: &str,
    decisions: &mut Option<std::io::BufWriter<File>>,
) -> Result<(), String> {
    for (s, (sim, plans)) in sims.iter_mut().zip(plans.iter_mut()).enumerate() {
        plans.clear();
        for r in records {
            sim.plan(r, plans);
        }
        let n = records.len();
        let group = |g: usize| (g * GROUP).min(n)..((g + 1) * GROUP).min(n);
        for g in 0..n.div_ceil(GROUP) {
            for j in group(g + 2) {
                sim.touch_slots(&plans.plans[j], plans);
            }
            for j in group(g + 1) {
                sim.touch_logs(records[j], j, plans);
            }
            for j in group(g) {
                let d = sim.step(records[j], j, plans);
                if s == 0
                    && let Some(out) = decisions
                {
                    let line = spans.get(j).map_or(0, |s| s.2);
                    write_decision(out, sim, shown, line, d)
                        .map_err(|e| format!("cannot write the decisions: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

fn trim(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

fn write_decision(
    out: &mut impl Write,
    sim: &Sim,
    file: &str,
    line: u64,
    d: Option<(usize, Decision)>,
) -> std::io::Result<()> {
    let v = match d {
        None => serde_json::json!({"file": file, "line": line, "status": null, "code": null,
                                   "rate_limit": null, "error": "unknown service"}),
        Some((_, Decision::Admitted)) => serde_json::json!({"file": file, "line": line,
            "status": 201, "code": null, "rate_limit": null}),
        Some((_, Decision::TooManySends)) => serde_json::json!({"file": file, "line": line,
            "status": 429, "code": 60203, "rate_limit": null}),
        Some((s, Decision::Refused { rate_limit })) => serde_json::json!({"file": file,
            "line": line, "status": 429, "code": 20429,
            "rate_limit": sim.unique_name(s, rate_limit)}),
    };
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}

/// Each unknown rate limit name and service once, with its count.
fn warn_unknown(_sim: &Sim, report: &serde_json::Value) {
    for u in report["unknown_rate_limits"]
        .as_array()
        .into_iter()
        .flatten()
    {
        eprintln!(
            "verilimit replay: rate limit {} is not in the configuration of service {}: \
             named by {} starts (ignored in those starts)",
            u["unique_name"], u["service_sid"], u["starts"]
        );
    }
    for u in report["unknown_services"].as_array().into_iter().flatten() {
        eprintln!(
            "verilimit replay: service {} is not in the configuration: {} records skipped",
            u["service_sid"], u["records"]
        );
    }
}

fn num(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// One summary cell of a report.
type Cell = dyn Fn(&serde_json::Value) -> String;

/// The human table: the summary, then one row per rate limit and per bucket (side by side
/// with --compare).
fn table(reports: &[serde_json::Value], args: &ReplayArgs) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let names: Vec<String> = std::iter::once(&args.config)
        .chain(args.compare.as_ref())
        .map(|p| p.display().to_string())
        .collect();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(24);
    let _ = write!(o, "{:<28}", "");
    for n in &names {
        let _ = write!(o, " {n:>w$}");
    }
    o.push('\n');
    let pct = |r: &serde_json::Value| {
        format!(
            "{:.1}% ({} of {})",
            r["share_of_to_met_429"].as_f64().unwrap_or(0.0) * 100.0,
            r["distinct_to_met_429"],
            r["distinct_to"]
        )
    };
    let rows: [(&str, &Cell); 7] = [
        ("starts", &|r| num(&r["starts"])),
        ("admitted", &|r| num(&r["admitted"])),
        ("refused 20429 (rate limits)", &|r| {
            num(&r["refused_by_code"]["20429"])
        }),
        ("refused 60203 (send attempts)", &|r| {
            num(&r["refused_by_code"]["60203"])
        }),
        ("first refusal", &|r| num(&r["refused_since"])),
        ("To that met a 429", &pct),
        ("invalid lines skipped", &|r| num(&r["invalid_lines"])),
    ];
    for (label, f) in rows {
        let _ = write!(o, "{label:<28}");
        for r in reports {
            let _ = write!(o, " {:>w$}", f(r));
        }
        o.push('\n');
    }
    for (k, r) in reports.iter().enumerate() {
        let _ = writeln!(o, "\nRate limits of {}:", names[k]);
        let _ = writeln!(
            o,
            "  {:<24} {:>10} {:>10} {:>10}  {:<24}  top refused values",
            "rate limit / bucket", "admitted", "refused", "full", "refusals began"
        );
        for rl in r["rate_limits"].as_array().into_iter().flatten() {
            let top: Vec<String> = rl["top_refused"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| format!("{} ({})", num(&t["value"]), t["refused"]))
                .collect();
            let _ = writeln!(
                o,
                "  {:<24} {:>10} {:>10} {:>10}  {:<24}  {}",
                num(&rl["unique_name"]),
                num(&rl["admitted"]),
                num(&rl["refused"]),
                "",
                num(&rl["refused_since"]),
                top.join(", ")
            );
            for b in rl["buckets"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "    {:<22} {:>10} {:>10} {:>10}  {:<24}",
                    format!("max {} / {} s", b["max"], b["interval"]),
                    "",
                    "",
                    num(&b["refused_while_full"]),
                    num(&b["full_since"])
                );
            }
        }
    }
    o
}
