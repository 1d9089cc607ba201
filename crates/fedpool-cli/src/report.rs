//! Writing a simulation's results: `metrics.csv` and a chart of the headline metric per round.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use fedpool_core::Metrics;
use fedpool_runtime::RoundRecord;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans, embedded so charts render on machines without a system font library.
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// `n` and the noun, singular for one: "1 round", "3 rounds".
pub fn count(n: impl TryInto<u64>, noun: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A progress bar of rounds on stderr, when `wanted` and stderr is a terminal: nothing is
/// drawn into pipes, files or `--json` output.
pub fn round_bar(len: u64, wanted: bool) -> Option<ProgressBar> {
    bar(
        len,
        wanted,
        "  round {pos}/{len} {bar:30} {msg} [{elapsed}]",
    )
}

/// A progress bar of setup steps (its message names the step), like [`round_bar`].
pub fn step_bar(len: u64, wanted: bool) -> Option<ProgressBar> {
    bar(len, wanted, "  {msg} {pos}/{len} {bar:30} [{elapsed}]")
}

fn bar(len: u64, wanted: bool, template: &str) -> Option<ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Writes one CSV row per round to `dir/metrics.csv`; returns the path.
pub fn write_metrics_csv(dir: &Path, records: &[RoundRecord]) -> Result<PathBuf> {
    let path = dir.join("metrics.csv");
    let mut writer = csv::Writer::from_path(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writer.write_record([
        "round",
        "completed",
        "accuracy",
        "log_loss",
        "macro_f1",
        "rmse",
        "mae",
        "train_loss",
        "contributors",
        "declined",
        "dropped",
        "epsilon",
        "clip_norm",
        "elapsed_secs",
    ])?;
    for r in records {
        let (acc, ll, f1, rmse, mae) = match r.metrics {
            Metrics::Classification {
                accuracy,
                log_loss,
                macro_f1,
            } => (
                fmt(accuracy),
                fmt(log_loss),
                fmt(macro_f1),
                String::new(),
                String::new(),
            ),
            Metrics::Regression { rmse, mae } => (
                String::new(),
                String::new(),
                String::new(),
                fmt(rmse),
                fmt(mae),
            ),
        };
        writer.write_record([
            r.round.to_string(),
            r.completed.to_string(),
            acc,
            ll,
            f1,
            rmse,
            mae,
            if r.train_loss.is_finite() {
                fmt(r.train_loss)
            } else {
                String::new()
            },
            r.n_contributors.to_string(),
            r.n_declined.to_string(),
            r.n_dropped.to_string(),
            r.epsilon.map(fmt).unwrap_or_default(),
            if r.clip_norm > 0.0 {
                fmt(r.clip_norm)
            } else {
                String::new()
            },
            format!("{:.4}", r.elapsed_secs),
        ])?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn fmt(x: f64) -> String {
    format!("{x:.6}")
}

/// Draws the headline metric per round to `dir/accuracy.png` (or `rmse.png` for regression).
pub fn write_chart(
    dir: &Path,
    title: &str,
    initial: Metrics,
    records: &[RoundRecord],
) -> Result<PathBuf> {
    let name = initial.headline_name();
    let path = dir.join(format!("{name}.png"));
    let points: Vec<(u32, f64)> = std::iter::once((0, initial.headline()))
        .chain(records.iter().map(|r| (r.round, r.metrics.headline())))
        .collect();
    let y_max = match initial {
        Metrics::Classification { .. } => 1.0,
        Metrics::Regression { .. } => {
            let hi = points.iter().map(|p| p.1).fold(0.0, f64::max);
            if hi > 0.0 { hi * 1.05 } else { 1.0 }
        }
    };
    draw_rounds(&path, title, &format!("test {name}"), y_max, &points, None)?;
    Ok(path)
}

/// Draws the ε spent after each round to `dir/epsilon.png`, against the budget when there is
/// one; `None` when no round spent privacy.
pub fn write_epsilon_chart(
    dir: &Path,
    title: &str,
    records: &[RoundRecord],
    budget: Option<f64>,
) -> Result<Option<PathBuf>> {
    let points: Vec<(u32, f64)> = records
        .iter()
        .filter_map(|r| r.epsilon.map(|e| (r.round, e)))
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let path = dir.join("epsilon.png");
    let top = epsilon_axis_top(&points, budget);
    draw_rounds(&path, title, "ε spent", top, &points, budget)?;
    Ok(Some(path))
}

/// The top of an ε chart's axis: above every point and the budget.
pub fn epsilon_axis_top(points: &[(u32, f64)], budget: Option<f64>) -> f64 {
    points
        .iter()
        .map(|p| p.1)
        .chain(budget)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.1
}

/// A line of one value per round, from 0 to `y_max`, with a budget line (and a legend) when
/// `limit` is given.
fn draw_rounds(
    path: &Path,
    title: &str,
    y_desc: &str,
    y_max: f64,
    points: &[(u32, f64)],
    limit: Option<f64>,
) -> Result<()> {
    // Registering twice is harmless; the font is valid TrueType, so this only fails on a bug.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded chart font could not be loaded"))?;
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    draw_rounds_on(&root, title, y_desc, y_max, points, limit)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// [`draw_rounds`] as an SVG document (the node's web page shows these; the browser draws the
/// text with its own sans-serif font).
pub fn rounds_svg(
    title: &str,
    y_desc: &str,
    y_max: f64,
    points: &[(u32, f64)],
    limit: Option<f64>,
) -> Result<String> {
    // Text is measured with the embedded font, whichever backend draws it.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded chart font could not be loaded"))?;
    let mut svg = String::new();
    {
        let root =
            plotters::backend::SVGBackend::with_string(&mut svg, (720, 400)).into_drawing_area();
        draw_rounds_on(&root, title, y_desc, y_max, points, limit)?;
        root.present().map_err(|e| anyhow!("chart: {e}"))?;
    }
    Ok(svg)
}

fn draw_rounds_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    y_max: f64,
    points: &[(u32, f64)],
    limit: Option<f64>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let max_round = points.last().map_or(1, |p| p.0.max(1));
    root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..max_round, 0.0..y_max)
        .map_err(|e| anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("chart: {e}"))?;
    if let Some(limit) = limit {
        chart
            .draw_series(LineSeries::new(
                [(0, limit), (max_round, limit)],
                RED.stroke_width(2),
            ))
            .map_err(|e| anyhow!("chart: {e}"))?
            .label(format!("budget ε = {limit}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| anyhow!("chart: {e}"))?
        .label(y_desc)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
        .map_err(|e| anyhow!("chart: {e}"))?;
    if limit.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
    }
    Ok(())
}

/// Draws each client's reward as a bar to `dir/rewards.png`, coloured by behaviour (honest
/// blue, anything else orange).
pub fn write_rewards_chart(
    dir: &Path,
    title: &str,
    rewards: &[u64],
    honest: &[bool],
    currency: &str,
) -> Result<PathBuf> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded chart font could not be loaded"))?;
    let path = dir.join("rewards.png");
    let top = rewards.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    {
        let root = BitMapBackend::new(&path, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..rewards.len().max(1) as f64 - 0.5, 0f64..top)
            .map_err(|e| anyhow!("chart: {e}"))?;
        // One label per client, under its bar; whole units on the reward axis.
        let client_label = |x: &f64| {
            let nearest = x.round();
            if (x - nearest).abs() < 1e-6 && nearest >= 0.0 {
                format!("{nearest:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rewards.len().clamp(1, 40))
            .x_label_formatter(&client_label)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_desc("client (blue: honest; orange: free rider, duplicate, noisy or attacker)")
            .y_desc(format!("reward ({currency})"))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
        chart
            .draw_series(rewards.iter().zip(honest).enumerate().map(
                |(client, (&reward, &honest))| {
                    let colour = if honest { BLUE } else { RGBColor(230, 120, 20) };
                    Rectangle::new(
                        [
                            (client as f64 - 0.4, 0.0),
                            (client as f64 + 0.4, reward as f64),
                        ],
                        colour.filled(),
                    )
                },
            ))
            .map_err(|e| anyhow!("chart: {e}"))?;
        root.present()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}
