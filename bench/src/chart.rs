//! The bar chart: TCP Gbit/s per scenario, one stream and `-P N` side by side.
//!
//! plotters draws text with `ab_glyph` from a TrueType file read at run time
//! (fonts-dejavu-core, installed by the bench when missing), so it needs neither
//! fontconfig nor FreeType.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

/// The font the chart is labelled with, from Debian's fonts-dejavu-core.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One group of bars: a scenario's 1-stream and N-stream Gbit/s.
pub struct Group {
    pub label: String,
    pub one: Option<f64>,
    pub many: Option<f64>,
}

pub fn draw(path: &Path, title: &str, streams: u32, groups: &[Group]) -> Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("cannot read the font {FONT}"))?;
    // plotters keeps fonts for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into()))
        .map_err(|_| anyhow!("{FONT} is not a font plotters can read"))?;

    let top = groups
        .iter()
        .flat_map(|g| [g.one, g.many])
        .flatten()
        .fold(1.0, f64::max)
        * 1.15;
    let n = groups.len() as f64;
    let root = BitMapBackend::new(path, (1200, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            match groups.get(i as usize) {
                Some(g) if (x - i).abs() < 1e-6 && i >= 0.0 => g.label.clone(),
                _ => String::new(),
            }
        })
        .y_desc("Gbit/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let bars = [
        ("1 stream".to_string(), BLUE.mix(0.75), -0.36),
        (
            format!("{streams} streams (-P {streams})"),
            RED.mix(0.65),
            0.02,
        ),
    ];
    for (k, (name, colour, offset)) in bars.into_iter().enumerate() {
        let values: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| [g.one, g.many][k].map(|v| (i as f64 + offset, v)))
            .collect();
        chart
            .draw_series(
                values
                    .iter()
                    .map(|&(x, v)| Rectangle::new([(x, 0.0), (x + 0.34, v)], colour.filled())),
            )?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart.draw_series(values.iter().map(|&(x, v)| {
            Text::new(
                format!("{v:.2}"),
                (x + 0.04, v + top * 0.035),
                ("sans-serif", 15),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
