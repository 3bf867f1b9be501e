//! PNG plots for evaluation reports: confusion matrix and reliability diagram.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::metrics::ReliabilityBin;

/// Plots render with an embedded font (DejaVu Sans), so no system fonts are needed.
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// Confusion matrix: rows are the truth, columns the prediction; each cell shows its count
/// and is shaded by the row-normalised share (recall on the diagonal).
pub fn confusion_matrix(
    path: &Path,
    matrix: &[Vec<u64>],
    labels: &[String],
    title: &str,
) -> Result<()> {
    fonts();
    let k = labels.len();
    let cell = 64i32;
    let (left, top) = (110i32, 80i32);
    let size = (
        (left + cell * k as i32 + 30) as u32,
        (top + cell * k as i32 + 60) as u32,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let font = |px: i32| ("sans-serif", px).into_font();
    root.draw(&Text::new(
        title.to_owned(),
        (10, 10),
        font(18).style(FontStyle::Bold),
    ))
    .map_err(plot_error)?;
    root.draw(&Text::new("predicted →", (left, top - 45), font(14)))
        .map_err(plot_error)?;
    root.draw(&Text::new("true ↓", (10, top - 45), font(14)))
        .map_err(plot_error)?;
    for (j, label) in labels.iter().enumerate() {
        let x = left + cell * j as i32 + 8;
        root.draw(&Text::new(label.clone(), (x, top - 22), font(14)))
            .map_err(plot_error)?;
        root.draw(&Text::new(
            label.clone(),
            (10, top + cell * j as i32 + 24),
            font(14),
        ))
        .map_err(plot_error)?;
    }
    for (i, row) in matrix.iter().enumerate() {
        let support: u64 = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let share = if support > 0 {
                count as f64 / support as f64
            } else {
                0.0
            };
            let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
            let colour = RGBColor(shade, shade, 255);
            let (x0, y0) = (left + cell * j as i32, top + cell * i as i32);
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell, y0 + cell)],
                colour.filled(),
            ))
            .map_err(plot_error)?;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell, y0 + cell)],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_error)?;
            let text_colour = if share > 0.55 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x0 + 8, y0 + 14),
                font(15).color(&text_colour),
            ))
            .map_err(plot_error)?;
            if i == j && support > 0 {
                root.draw(&Text::new(
                    format!("{:.0}%", share * 100.0),
                    (x0 + 8, y0 + 36),
                    font(12).color(&text_colour),
                ))
                .map_err(plot_error)?;
            }
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Reliability diagram: accuracy against confidence per bin, before and after temperature
/// scaling, with the diagonal of perfect calibration.
pub fn reliability_diagram(
    path: &Path,
    before: &[ReliabilityBin],
    after: &[ReliabilityBin],
    ece_before: f64,
    ece_after: f64,
) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (640, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Reliability diagram (every class weighted equally)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("confidence (top probability)")
        .y_desc("class-balanced accuracy")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    // Bars: calibrated accuracy per bin.
    chart
        .draw_series(after.iter().filter_map(|b| {
            let acc = b.accuracy?;
            Some(Rectangle::new(
                [(b.lower + 0.004, 0.0), (b.upper - 0.004, acc)],
                RGBColor(120, 160, 230).mix(0.6).filled(),
            ))
        }))
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (bins, colour, name) in [
        (
            before,
            RED,
            format!("before calibration (ECE {ece_before:.3})"),
        ),
        (
            after,
            BLUE,
            format!("after calibration (ECE {ece_after:.3})"),
        ),
    ] {
        draw_curve(&mut chart, bins, colour, name)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One reliability curve: mean confidence against accuracy per non-empty bin, with markers.
fn draw_curve(
    chart: &mut Chart<'_, '_>,
    bins: &[ReliabilityBin],
    colour: RGBColor,
    name: String,
) -> Result<()> {
    let points: Vec<(f64, f64)> = bins
        .iter()
        .filter_map(|b| Some((b.mean_confidence?, b.accuracy?)))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
        .map_err(plot_error)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )
        .map_err(plot_error)?;
    Ok(())
}
