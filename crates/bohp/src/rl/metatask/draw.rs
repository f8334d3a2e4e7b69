//! A task's state graph as SVG: the states on a circle (state 0 at the top, with what each
//! shows), an arrow for every transition of positive probability (action 0 blue, action 1
//! orange, labelled with its probability when below 1), and the rules written underneath.

use std::fmt::Write;

use super::MetaTask;

const WIDTH: f64 = 640.0;
const RADIUS: f64 = 170.0;
const NODE: f64 = 34.0;
const CENTRE: (f64, f64) = (WIDTH / 2.0, 230.0);
const COLOURS: [&str; 2] = ["#1f77b4", "#ff7f0e"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG text of `task`'s state graph.
pub fn svg(task: &MetaTask) -> String {
    let n = task.states();
    let pos = |s: usize| {
        let angle = -std::f64::consts::FRAC_PI_2 + std::f64::consts::TAU * s as f64 / n as f64;
        if n == 1 {
            CENTRE
        } else {
            (
                CENTRE.0 + RADIUS * angle.cos(),
                CENTRE.1 + RADIUS * angle.sin(),
            )
        }
    };
    let rule_lines = task.rule_lines();
    let height = 460.0 + 18.0 * rule_lines.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        out,
        r#"<defs>{}</defs><rect width="100%" height="100%" fill="white"/>"#,
        (0..2)
            .map(|a| format!(
                r#"<marker id="arrow{a}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{}"/></marker>"#,
                COLOURS[a]
            ))
            .collect::<String>()
    );
    let title = if task.name.is_empty() {
        "task"
    } else {
        &task.name
    };
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text><text x="10" y="38" fill="{}">action 0</text><text x="80" y="38" fill="{}">action 1</text>"#,
        escape(title),
        COLOURS[0],
        COLOURS[1]
    );
    for (s, row) in task.transitions.iter().enumerate() {
        for (a, dist) in row.iter().enumerate() {
            for (t, p) in dist.iter().enumerate() {
                if *p <= 0.0 {
                    continue;
                }
                let label = if *p < 1.0 {
                    format!("{}", (p * 1000.0).round() / 1000.0)
                } else {
                    String::new()
                };
                let (x0, y0) = pos(s);
                if s == t {
                    // A loop above (action 0) or below (action 1) the node.
                    let dy = if a == 0 { -1.0 } else { 1.0 };
                    let (ya, yb) = (y0 + dy * NODE, y0 + dy * (NODE + 40.0));
                    let _ = writeln!(
                        out,
                        r#"<path d="M {} {ya} C {} {yb}, {} {yb}, {} {ya}" fill="none" stroke="{}" stroke-width="1.6" marker-end="url(#arrow{a})"/><text x="{}" y="{}" fill="{}">{label}</text>"#,
                        x0 - 12.0,
                        x0 - 30.0,
                        x0 + 30.0,
                        x0 + 12.0,
                        COLOURS[a],
                        x0 + 26.0,
                        yb,
                        COLOURS[a],
                    );
                    continue;
                }
                let (x1, y1) = pos(t);
                let (dx, dy) = (x1 - x0, y1 - y0);
                let len = (dx * dx + dy * dy).sqrt();
                let (ux, uy) = (dx / len, dy / len);
                // The two actions' arrows bend to opposite sides.
                let bend = if a == 0 { 28.0 } else { -28.0 };
                let (mx, my) = ((x0 + x1) / 2.0 - uy * bend, (y0 + y1) / 2.0 + ux * bend);
                let (sx, sy) = (x0 + ux * NODE, y0 + uy * NODE);
                let (ex, ey) = (x1 - ux * NODE, y1 - uy * NODE);
                let _ = writeln!(
                    out,
                    r#"<path d="M {sx:.1} {sy:.1} Q {mx:.1} {my:.1} {ex:.1} {ey:.1}" fill="none" stroke="{}" stroke-width="1.6" marker-end="url(#arrow{a})"/><text x="{:.1}" y="{:.1}" fill="{}">{label}</text>"#,
                    COLOURS[a],
                    // The curve's midpoint, halfway between the chord's and the control point.
                    (mx + (x0 + x1) / 2.0) / 2.0 + 4.0,
                    (my + (y0 + y1) / 2.0) / 2.0 - 4.0,
                    COLOURS[a]
                );
            }
        }
    }
    for s in 0..n {
        let (x, y) = pos(s);
        let _ = writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{NODE}" fill="{}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{s}</text><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            if s == 0 { "#eeeeee" } else { "white" },
            y - 3.0,
            y + 14.0,
            task.stimuli[s]
        );
    }
    for (i, line) in rule_lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}">{}</text>"#,
            460.0 + 18.0 * i as f64,
            escape(line)
        );
    }
    out.push_str("</svg>\n");
    out
}
