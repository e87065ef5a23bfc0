//! A job's dataflow drawn as a graph (SVG): operators in layers from the sources, each
//! vertex coloured by its backpressure and labelled with its parallelism, rows in and
//! out per second and watermark lag; each edge labelled with its partitioning.

use std::collections::HashMap;

use leptos::prelude::*;
use serde_json::Value;

const W: f64 = 210.0;
const H: f64 = 64.0;
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 26.0;

/// The vertex colour for a share of time spent backpressured.
pub fn pressure_class(backpressure: Option<f64>) -> &'static str {
    match backpressure {
        None => "v-idle",
        Some(b) if b >= 0.5 => "v-high",
        Some(b) if b >= 0.1 => "v-mid",
        Some(_) => "v-ok",
    }
}

/// Rows per second, short.
pub fn rate(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M/s", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k/s", v / 1e3),
        v => format!("{v:.0}/s"),
    }
}

/// Draws `graph` (`{"nodes": [...], "edges": [...]}` as the API returns it), with the
/// operators' current rates when given (`[{name, in_per_s, ...}]`).
pub fn draw(graph: &Value, operators: &[Value]) -> impl IntoView + use<> {
    let nodes: Vec<Value> = graph["nodes"].as_array().cloned().unwrap_or_default();
    let edges: Vec<Value> = graph["edges"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = nodes
        .iter()
        .map(|n| n["name"].as_str().unwrap_or("?").to_string())
        .collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let links: Vec<(usize, usize, String)> = edges
        .iter()
        .filter_map(|e| {
            let from = *index.get(e["from"].as_str()?)?;
            let to = *index.get(e["to"].as_str()?)?;
            let mut label = e["partitioning"].as_str().unwrap_or("").to_string();
            if let Some(tag) = e["side_output"].as_str() {
                label = format!("{label} [{tag}]");
            }
            Some((from, to, label))
        })
        .collect();
    // Layer = longest path from a source (the graph is acyclic; bounded passes).
    let mut layer = vec![0usize; names.len()];
    for _ in 0..names.len() {
        let mut changed = false;
        for (from, to, _) in &links {
            if layer[*to] < layer[*from] + 1 {
                layer[*to] = layer[*from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut row_of = vec![0usize; names.len()];
    let mut rows: HashMap<usize, usize> = HashMap::new();
    for (i, l) in layer.iter().enumerate() {
        let r = rows.entry(*l).or_default();
        row_of[i] = *r;
        *r += 1;
    }
    let pos = |i: usize| {
        (
            10.0 + layer[i] as f64 * (W + GAP_X),
            10.0 + row_of[i] as f64 * (H + GAP_Y),
        )
    };
    let width = 20.0 + (layer.iter().max().copied().unwrap_or(0) + 1) as f64 * (W + GAP_X) - GAP_X;
    let height = 20.0 + rows.values().max().copied().unwrap_or(1) as f64 * (H + GAP_Y) - GAP_Y;
    let stats: HashMap<String, Value> = operators
        .iter()
        .filter_map(|o| Some((o["name"].as_str()?.to_string(), o.clone())))
        .collect();
    let edge_views = links
        .iter()
        .map(|(from, to, label)| {
            let (x1, y1) = pos(*from);
            let (x2, y2) = pos(*to);
            let (x1, y1, x2, y2) = (x1 + W, y1 + H / 2.0, x2, y2 + H / 2.0);
            let path = format!(
                "M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}",
                x1 + GAP_X / 2.0,
                x2 - GAP_X / 2.0
            );
            view! {
                <g class="edge">
                    <path d=path marker-end="url(#arrow)"></path>
                    <text x=(x1 + x2) / 2.0 y=(y1 + y2) / 2.0 - 4.0 text-anchor="middle">{label.clone()}</text>
                </g>
            }
        })
        .collect_view();
    let node_views = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (x, y) = pos(i);
            let name = names[i].clone();
            let s = stats.get(&name);
            let bp = s.and_then(|s| s["backpressure"].as_f64());
            let short: String = if name.chars().count() > 28 {
                format!("{}…", name.chars().take(27).collect::<String>())
            } else {
                name.clone()
            };
            let line2 = format!(
                "p={}{}",
                n["parallelism"].as_u64().unwrap_or(1),
                if n["stateful"].as_bool() == Some(true) {
                    " · state"
                } else {
                    ""
                }
            );
            let line3 = match s {
                Some(s) => format!(
                    "in {} · out {}{}",
                    rate(s["in_per_s"].as_f64().unwrap_or(0.0)),
                    rate(s["out_per_s"].as_f64().unwrap_or(0.0)),
                    match s["watermark_lag_ms"].as_i64() {
                        Some(lag) => format!(" · wm −{:.1}s", lag as f64 / 1000.0),
                        None => String::new(),
                    }
                ),
                None => String::new(),
            };
            let title = format!(
                "{name}: backpressure {}",
                bp.map_or("unknown".to_string(), |b| format!("{:.0}%", b * 100.0))
            );
            let label = title.clone();
            view! {
                <g class=format!("vertex {}", pressure_class(bp)) role="listitem" aria-label=label>
                    <title>{title}</title>
                    <rect x=x y=y width=W height=H rx="6"></rect>
                    <text x=x + 8.0 y=y + 18.0 class="v-name">{short}</text>
                    <text x=x + 8.0 y=y + 36.0>{line2}</text>
                    <text x=x + 8.0 y=y + 54.0>{line3}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <div class="graph-scroll">
            <svg class="graph" role="list" aria-label="job graph" width=width height=height
                viewBox=format!("0 0 {width} {height}")>
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"
                        markerHeight="8" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z"></path>
                    </marker>
                </defs>
                {edge_views}
                {node_views}
            </svg>
        </div>
    }
}
