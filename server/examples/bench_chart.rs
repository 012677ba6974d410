//! `bench_chart`: draws the WayRay/waypipe ratios of `scripts/bench-vs-waypipe` as a PNG.
//!
//! Reads the `results.json` the benchmark wrote and draws, per workload, grouped bars of
//! WayRay's figure divided by waypipe's: bytes on the wire (against waypipe's default lz4 and,
//! when it was run, zstd=5; for video, also against WayRay with video regions off) and CPU seconds of the server half, the client half and both (against
//! lz4). The y axis is logarithmic, with lines at 1.0 (same as waypipe) and 0.5 (half of it):
//! below 1 WayRay needs less.
//!
//! ```sh
//! cargo run --release -p wayray-server --example bench_chart -- \
//!     --input out/bench-vs-waypipe/results.json --output out/bench-vs-waypipe/ratios.png
//! ```

use std::path::PathBuf;

use clap::Parser;
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;

/// Grouped bar chart of WayRay/waypipe ratios from bench-vs-waypipe's results.json.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Cli {
    /// results.json written by scripts/bench-vs-waypipe.
    #[arg(long, default_value = "out/bench-vs-waypipe/results.json")]
    input: PathBuf,
    /// PNG to write.
    #[arg(long, default_value = "out/bench-vs-waypipe/ratios.png")]
    output: PathBuf,
    /// TrueType font for the labels (Debian: fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    /// Picture size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1400x760", value_parser = parse_size)]
    size: (u32, u32),
}

fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if !(200..=8000).contains(&w) || !(200..=8000).contains(&h) {
        return Err(format!("{s:?}: width and height must be 200..=8000"));
    }
    Ok((w, h))
}

/// One bar series: a label, which run it divides by, and the figure compared.
struct Series {
    label: &'static str,
    against: &'static str,
    key: &'static str,
    color: RGBColor,
}

const SERIES: [Series; 6] = [
    Series {
        label: "bytes vs waypipe lz4",
        against: "waypipe",
        key: "bytes_total",
        color: RGBColor(31, 119, 180),
    },
    Series {
        label: "bytes vs waypipe zstd=5",
        against: "waypipe-zstd",
        key: "bytes_total",
        color: RGBColor(120, 180, 230),
    },
    Series {
        label: "bytes vs WayRay lossless (--no-video)",
        against: "wayray-lossless",
        key: "bytes_total",
        color: RGBColor(44, 160, 44),
    },
    Series {
        label: "CPU server half",
        against: "waypipe",
        key: "cpu_server",
        color: RGBColor(214, 39, 40),
    },
    Series {
        label: "CPU client half",
        against: "waypipe",
        key: "cpu_client",
        color: RGBColor(255, 127, 14),
    },
    Series {
        label: "CPU total",
        against: "waypipe",
        key: "cpu_total",
        color: RGBColor(148, 103, 189),
    },
];

/// A workload's title and its ratio per series (`None`: not measured or failed).
struct Group {
    title: String,
    ratios: Vec<Option<f64>>,
}

fn groups(results: &Value) -> Result<Vec<Group>> {
    let workloads = results
        .get("workloads")
        .and_then(Value::as_array)
        .ok_or_else(|| miette!("no \"workloads\" array in the results"))?;
    let mut out = Vec::new();
    for wl in workloads {
        let title = wl
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let runs = wl
            .get("runs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let figure = |system: &str, key: &str| -> Option<f64> {
            runs.iter()
                .find(|r| r.get("system").and_then(Value::as_str) == Some(system))
                .filter(|r| r.get("error").is_none())
                .and_then(|r| r.get(key))
                .and_then(Value::as_f64)
        };
        let ratios = SERIES
            .iter()
            .map(|s| {
                let ours = figure("wayray", s.key)?;
                let theirs = figure(s.against, s.key)?;
                (theirs > 0.0 && ours > 0.0).then(|| ours / theirs)
            })
            .collect();
        out.push(Group { title, ratios });
    }
    Ok(out)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.input)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", cli.input.display()))?;
    let results: Value = serde_json::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| format!("{} is not JSON", cli.input.display()))?;
    let groups = groups(&results)?;
    if groups.is_empty() {
        return Err(miette!("{} has no workloads", cli.input.display()));
    }
    let font = std::fs::read(&cli.font)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the font {}", cli.font.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| miette!("{} is not a usable TrueType font", cli.font.display()))?;
    draw(&cli, &groups).map_err(|e| miette!("cannot draw {}: {e}", cli.output.display()))
}

fn draw(cli: &Cli, groups: &[Group]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = groups
        .iter()
        .flat_map(|g| g.ratios.iter().flatten().copied());
    let (lo, hi) = values.fold((0.5f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Whole decades around the data, so every bar and both reference lines fit.
    let lo = 10f64.powf((lo * 0.8).log10().floor());
    let hi = 10f64.powf((hi * 1.25).log10().ceil());
    let n = groups.len();

    let root = BitMapBackend::new(&cli.output, cli.size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "WayRay / waypipe per workload (log scale; below 1 = WayRay needs less)",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())?;
    let titles: Vec<String> = groups.iter().map(|g| g.title.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(2) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < titles.len() {
                titles[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("WayRay / waypipe")
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let width = 0.8 / SERIES.len() as f64;
    for (s, series) in SERIES.iter().enumerate() {
        let color = series.color;
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i as f64 - 0.4 + s as f64 * width, g.ratios[s]?)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                Rectangle::new([(x + 0.005, lo), (x + width - 0.005, v)], color.filled())
            }))?
            .label(series.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(bars.iter().map(|&(x, v)| {
            Text::new(
                format!("{v:.2}"),
                (x, v * 1.08),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))?;
    }
    for (level, style) in [
        (1.0, BLACK.stroke_width(2)),
        (0.5, RGBColor(90, 90, 90).stroke_width(1)),
    ] {
        chart.draw_series(LineSeries::new(
            [(-0.5, level), (n as f64 - 0.5, level)],
            style,
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
