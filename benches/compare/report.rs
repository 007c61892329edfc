//! What a run writes: the JSON file of every figure, a Markdown table with the ratios, and one
//! SVG chart per workload (medians, log scale), beside the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use plotters::prelude::*;
use serde_json::json;

use crate::{Plan, Record, Sink};

const SYSTEMS: [(&str, &str, RGBColor); 3] = [
    ("triplite", "triplite", RGBColor(0x1f, 0x77, 0xb4)),
    ("triplit", "Triplit 1.x", RGBColor(0xff, 0x7f, 0x0e)),
    ("sqlite", "raw SQLite", RGBColor(0x7f, 0x7f, 0x7f)),
];

pub fn write(plan: &Plan, sink: &Sink, out: &Path) {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let machine = machine();
    let date = command("date", &["-u", "+%Y-%m-%d"]);
    let file = json!({
        "machine": machine,
        "date": date,
        "quick": plan.quick,
        "results": sink.records,
        "notes": sink.notes,
    });
    std::fs::write(out, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
    let stem = out.file_stem().unwrap().to_string_lossy().into_owned();
    let charts = charts(sink, out, &stem);
    std::fs::write(out.with_extension("md"), table(sink, &machine, &date, plan.quick, &charts)).unwrap();
}

fn command(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The machine, as the results file names it.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")?.split(':').nth(1)).unwrap_or("").trim();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gb": (memory_kb / 1024.0 / 1024.0).round(),
        "os": command("uname", &["-sr"]),
        "rustc": command("rustc", &["--version"]),
        "node": command("node", &["--version"]),
    })
}

/// One workload's records by size, then system.
type BySize<'a> = BTreeMap<usize, BTreeMap<&'a str, &'a Record>>;

/// Each workload's records, in the order they were measured.
fn by_workload(sink: &Sink) -> Vec<(&str, BySize<'_>)> {
    let mut order: Vec<&str> = Vec::new();
    let mut grouped: BTreeMap<&str, BySize> = BTreeMap::new();
    for record in &sink.records {
        if !order.contains(&record.workload.as_str()) {
            order.push(&record.workload);
        }
        grouped.entry(&record.workload).or_default().entry(record.size).or_default().insert(record.system, record);
    }
    order.into_iter().map(|w| (w, grouped.remove(w).unwrap())).collect()
}

fn figure(record: Option<&&Record>) -> String {
    let Some(record) = record else { return "—".into() };
    let s = &record.summary;
    let p99 = s.p99.map(|p| format!(", p99 {}", number(p))).unwrap_or_default();
    format!("{}{p99} ({}–{}, n={})", number(s.median), number(s.spread.min), number(s.spread.max), s.n)
}

fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 1000.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 0.1 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}

/// triplite's median over the other's: how many times faster (or more) triplite is.
fn ratio(ours: Option<&&Record>, theirs: Option<&&Record>) -> String {
    let (Some(ours), Some(theirs)) = (ours, theirs) else { return "—".into() };
    let (a, b) = (ours.summary.median, theirs.summary.median);
    let advantage = if ours.better == "higher" { a / b } else { b / a };
    if advantage >= 1.0 { format!("{advantage:.1}× better") } else { format!("{:.1}× worse", 1.0 / advantage) }
}

fn table(sink: &Sink, machine: &serde_json::Value, date: &str, quick: bool, charts: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# triplite against Triplit 1.x and raw SQLite\n");
    let _ = writeln!(
        md,
        "Measured {date} on {} ({} cores, {} GB), {}, {}, Node {}{}. Every figure of this table comes from \
         one run of `bash benches/compare/run.sh`; medians, with p99 where there were 20 samples or more, \
         min–max and the number of samples. Times are milliseconds unless the unit says otherwise. \
         \"× better\" compares medians: how many times faster (or less memory, or more rows per second) \
         triplite is.\n",
        machine["cpu"].as_str().unwrap_or(""),
        machine["cores"],
        machine["memory_gb"],
        machine["os"].as_str().unwrap_or(""),
        machine["rustc"].as_str().unwrap_or(""),
        machine["node"].as_str().unwrap_or(""),
        if quick { " — a --quick run: small sizes, few repetitions" } else { "" },
    );
    let _ = writeln!(
        md,
        "| workload | size | unit | triplite | Triplit 1.x | raw SQLite | triplite vs Triplit | triplite vs SQLite |"
    );
    let _ = writeln!(md, "|---|---:|---|---|---|---|---|---|");
    for (workload, sizes) in by_workload(sink) {
        for (size, systems) in &sizes {
            let unit = systems.values().next().map_or("", |r| r.unit);
            let (ours, theirs, floor) = (systems.get("triplite"), systems.get("triplit"), systems.get("sqlite"));
            let _ = writeln!(
                md,
                "| {workload} | {size} | {unit} | {} | {} | {} | {} | {} |",
                figure(ours),
                figure(theirs),
                figure(floor),
                ratio(ours, theirs),
                ratio(ours, floor)
            );
        }
    }
    if !sink.notes.is_empty() {
        let _ = writeln!(md, "\nNot measured:\n");
        for note in &sink.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let _ = writeln!(md, "\n## Charts\n");
    for (workload, file) in charts {
        let _ = writeln!(md, "![{workload}]({file})");
    }
    md
}

/// One chart per workload: a bar per system and size, medians on a log scale.
fn charts(sink: &Sink, out: &Path, stem: &str) -> Vec<(String, String)> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut written = Vec::new();
    for (workload, sizes) in by_workload(sink) {
        let slug: String = workload
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let file = format!("{stem}-{slug}.svg");
        chart(workload, &sizes, &dir.join(&file)).unwrap_or_else(|e| panic!("chart {file}: {e}"));
        written.push((workload.to_owned(), file));
    }
    written
}

fn chart(workload: &str, sizes: &BySize, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let medians: Vec<f64> = sizes.values().flat_map(|s| s.values().map(|r| r.summary.median)).collect();
    let (lo, hi) = medians.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    let (lo, hi) = (lo / 3.0, hi * 3.0);
    let unit = sizes.values().flat_map(|s| s.values()).next().map_or("", |r| r.unit);
    let labels: Vec<String> = sizes.keys().map(|s| format!("{s}")).collect();
    let root = SVGBackend::new(path, (760, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(workload, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..sizes.len() as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(sizes.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let slot = x - 0.5;
            if slot.fract().abs() < 1e-9 && slot >= 0.0 {
                labels.get(slot as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(format!("{unit} (log scale)"))
        .draw()?;
    for (column, (system, label, color)) in SYSTEMS.iter().enumerate() {
        let bars: Vec<_> = sizes
            .values()
            .enumerate()
            .filter_map(|(slot, systems)| {
                let record = systems.get(system)?;
                let x0 = slot as f64 + 0.15 + column as f64 * 0.23;
                Some(Rectangle::new([(x0, lo), (x0 + 0.2, record.summary.median)], color.filled()))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(bars)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
