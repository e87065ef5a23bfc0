//! Small line charts (SVG) of a job's history.

use leptos::prelude::*;

const W: f64 = 320.0;
const H: f64 = 120.0;
const PAD: f64 = 28.0;

/// One line: a label, its CSS class and its points (time in ms, value).
pub struct Series {
    /// What the line is.
    pub label: &'static str,
    /// Its class (colour).
    pub class: &'static str,
    /// Its points, oldest first.
    pub points: Vec<(f64, f64)>,
}

/// A chart titled `title` of `series`, values shown with `format`.
pub fn line_chart(
    title: &'static str,
    series: Vec<Series>,
    format: fn(f64) -> String,
) -> impl IntoView {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut t0, mut t1, mut max) = (f64::MAX, f64::MIN, 0.0f64);
    for (t, v) in all {
        t0 = t0.min(*t);
        t1 = t1.max(*t);
        max = max.max(*v);
    }
    let empty = t0 > t1;
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let span = (t1 - t0).max(1.0);
    let x = move |t: f64| PAD + (t - t0) / span * (W - PAD - 6.0);
    let y = move |v: f64| H - 18.0 - v / max * (H - 30.0);
    let lines = series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect::<Vec<_>>()
                .join(" ");
            view! { <polyline class=format!("line {}", s.class) points=points></polyline> }
        })
        .collect_view();
    let legend = series
        .iter()
        .map(|s| {
            let last = s.points.last().map(|p| format(p.1 + 0.0)).unwrap_or_else(|| "–".into());
            view! { <span class=format!("legend {}", s.class)>{format!("{} {last}", s.label)}</span> }
        })
        .collect_view();
    let seconds = if empty { 0.0 } else { span / 1000.0 };
    view! {
        <figure class="chart">
            <figcaption>{title}" "{legend}</figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=title>
                <line class="axis" x1=PAD y1=H - 18.0 x2=W - 6.0 y2=H - 18.0></line>
                <line class="axis" x1=PAD y1="8" x2=PAD y2=H - 18.0></line>
                <text x="2" y="16" class="tick">{format(max)}</text>
                <text x=PAD y=H - 4.0 class="tick">{format!("−{seconds:.0} s")}</text>
                <text x=W - 30.0 y=H - 4.0 class="tick">"now"</text>
                {lines}
                {empty.then(|| view! { <text x=W / 2.0 y=H / 2.0 text-anchor="middle" class="tick">"no data yet"</text> })}
            </svg>
        </figure>
    }
}
