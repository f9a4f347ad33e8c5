//! The workflow's graph as SVG, top to bottom like the Step Functions console, legible in a
//! 1600-pixel window without zooming.
//!
//! The `layout-rs` crate (Graphviz's layered layout) places the states with the transitions
//! taken when nothing fails (`Next`, each Choice rule, `Default`). Catch transitions are
//! left out of that layout: the breaker has some thirty of them, nearly all into the two
//! states at the bottom, and the layout threads each long edge through a placeholder on
//! every rank it crosses, which made the graph three times as wide as a screen. They are
//! drawn afterwards, by the crate, in one curve from their state to their target, each hidden
//! (`display="none"`) for the page to show on demand. A Catch is laid out only when it is
//! the one way into its target, so that state gets a rank under its source.

use super::graph::{Graph, Via};
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::geometry::{Point, Position};
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::render_arrow;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::BTreeMap;

/// The widest the graph may be: the graph panel of a 1600-pixel window (less the page's
/// margins and a scrollbar), where it is then drawn at its own size.
pub const MAX_WIDTH: f64 = 1530.0;

/// The size of a state's name, in SVG units: CSS pixels when the graph is drawn at its own
/// size, as it is in a 1600-pixel window.
pub const NAME_FONT: usize = 14;

/// How wide a character of a name is, in ems: a sans-serif's capitals and lower case mixed
/// (the page draws names in its own font; the crate's estimate is a whole em).
const CHAR_EM: f64 = 0.62;

/// Room between two states of a rank, and between two ranks.
const GAP: Point = Point { x: 12.0, y: 30.0 };

/// Names longer than this are written on two lines.
const WRAP_OVER: usize = 16;

/// A state's name as written in its box: a long one on two lines, cut between two words of
/// its camel case as near its middle as can be. A name's longest line sets its box's width,
/// and the widest ranks hold long names side by side.
pub fn written(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= WRAP_OVER {
        return name.to_string();
    }
    let cut = (1..chars.len())
        .filter(|&at| chars[at].is_uppercase() && chars[at - 1].is_lowercase())
        .min_by_key(|&at| at.max(chars.len() - at));
    match cut {
        Some(at) => format!(
            "{}\n{}",
            chars[..at].iter().collect::<String>(),
            chars[at..].iter().collect::<String>()
        ),
        None => name.to_string(),
    }
}

/// A state's box: its written name at [`NAME_FONT`] with some padding.
fn box_size(text: &str) -> Point {
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(1) as f64;
    let lines = text.lines().count().max(1) as f64;
    let font = NAME_FONT as f64;
    Point::new(widest * CHAR_EM * font + 20.0, lines * font * 1.2 + 12.0)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What takes a transition, as the page shows it on hover: `Opened`, `Default`,
/// `Catch States.ALL`, joined with ` | ` when two transitions join the same two states.
fn label(vias: &[&Via]) -> String {
    vias.iter()
        .filter_map(|via| match via {
            Via::Next => None,
            Via::Choice(label) => Some(label.clone()),
            Via::Default => Some("Default".into()),
            Via::Catch(errors) => Some(format!("Catch {}", errors.join(", "))),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn edge_properties(class: &str, from: &str, to: &str, label: &str) -> String {
    format!(
        "class=\"{class}\" data-from=\"{}\" data-to=\"{}\" data-label=\"{}\"",
        escape(from),
        escape(to),
        escape(label)
    )
}

fn arrow(style: LineStyleKind, properties: String) -> Arrow {
    Arrow::with_properties(
        LineEndKind::None,
        LineEndKind::Arrow,
        style,
        "",
        &StyleAttr::new(Color::fast("gray"), 1, None, 0, 11),
        properties,
        &None,
        &None,
    )
}

/// The graph as SVG: each state a `<g class="state KIND" data-state="NAME">` (its name in a
/// `<text>` after it), each transition a `<g class="edge" data-from data-to data-label>`;
/// two transitions between the same states (a Choice rule and the Default, say) are one
/// arrow with both labels. Catch-only arrows are `<g class="edge catch" display="none">`.
/// Labels are not written on the arrows (each would take a place in its rank and widen the
/// graph): the page shows them on hover.
pub fn svg(graph: &Graph) -> String {
    let orientation = Orientation::TopToBottom;
    let mut visual = VisualGraph::new(orientation);
    let mut handles = BTreeMap::new();
    let start_node = visual.add_node(Element::create_with_properties(
        ShapeKind::new_circle(""),
        StyleAttr::new(
            Color::fast("gray"),
            1,
            Some(Color::fast("gray")),
            0,
            NAME_FONT,
        ),
        orientation,
        Point::splat(16.0),
        "class=\"start\"",
    ));
    let merged = graph.merged_edges();
    let is_catch = |vias: &[&Via]| vias.iter().all(|v| matches!(v, Via::Catch(_)));
    // Nodes go in breadth-first from the start: the layout breaks each cycle at the edge
    // that closes it, so the loops' last edges (back to `WaitBeforeProbe`, `HoldOpen`,
    // `WaitForBacklog`) are the ones drawn upwards, as in the console.
    for state in graph.breadth_first() {
        let text = written(&state.name);
        let size = box_size(&text);
        let mut element = Element::create_with_properties(
            ShapeKind::new_box(&text),
            StyleAttr::new(
                Color::fast("gray"),
                1,
                Some(Color::fast("white")),
                6,
                NAME_FONT,
            ),
            orientation,
            size,
            format!(
                "class=\"state {}\" data-state=\"{}\"",
                escape(&state.kind.to_lowercase()),
                escape(&state.name)
            ),
        );
        element.pos = Position::new(Point::zero(), size, Point::zero(), GAP);
        handles.insert(state.name.as_str(), visual.add_node(element));
    }
    if let Some(first) = handles.get(graph.start.as_str()) {
        visual.add_edge(Arrow::simple(""), start_node, *first);
    }
    // A state is reached without a failure when a non-Catch transition leads to it.
    let reached: Vec<&str> = merged
        .iter()
        .filter(|(_, vias)| !is_catch(vias))
        .map(|((_, to), _)| *to)
        .chain([graph.start.as_str()])
        .collect();
    let mut catches = Vec::new();
    for ((from, to), vias) in &merged {
        let (Some(&a), Some(&b)) = (handles.get(from), handles.get(to)) else {
            continue;
        };
        if !is_catch(vias) {
            let properties = edge_properties("edge", from, to, &label(vias));
            visual.add_edge(arrow(LineStyleKind::Normal, properties), a, b);
            continue;
        }
        if !reached.contains(to) {
            // Laid out (it gives the state its rank), drawn with the other Catches.
            visual.add_edge(arrow(LineStyleKind::None, String::new()), a, b);
        }
        catches.push((a, b, *from, *to, label(vias)));
    }
    let mut writer = SVGWriter::new();
    visual.do_it(false, false, false, &mut writer);
    for (a, b, from, to, label) in catches {
        let properties = format!(
            "{} display=\"none\"",
            edge_properties("edge catch", from, to, &label)
        );
        let ends = [visual.element(a).clone(), visual.element(b).clone()];
        render_arrow(
            &mut writer,
            false,
            &ends,
            &arrow(LineStyleKind::Dashed, properties),
        );
    }
    let bottom = handles
        .values()
        .map(|&node| visual.pos(node).bbox(false).1.y)
        .fold(0.0, f64::max);
    // Inlined in HTML: the XML declaration is not wanted there.
    let svg = writer.finalize();
    let svg = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]);
    ending_at(svg, (bottom + 10.0).ceil())
}

/// `svg` with its height cut to `height`: the crate grows the picture by ten units per
/// character below each name it writes, which leaves a long blank under the last state.
fn ending_at(svg: &str, height: f64) -> String {
    let Some(end) = svg.find('>') else {
        return svg.to_string();
    };
    let width = svg[..end]
        .split("width=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|w| w.parse::<f64>().ok());
    match width.map(f64::ceil) {
        Some(width) => format!(
            "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             xmlns=\"http://www.w3.org/2000/svg\">{}",
            &svg[end + 1..]
        ),
        None => svg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use roxmltree::{Document, Node};
    use std::collections::BTreeSet;

    fn real() -> Graph {
        let definition = crate::asl::deployed_definition().expect("the ASL reads");
        Graph::from_asl(&definition).expect("the ASL is a graph")
    }

    fn edges<'a>(doc: &'a Document) -> impl Iterator<Item = Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| n.attribute("data-from").is_some())
    }

    fn hidden(node: &Node) -> bool {
        node.attribute("display") == Some("none")
    }

    /// The box of each state: (left, top, width, height).
    fn boxes(doc: &Document) -> Vec<(String, [f64; 4])> {
        doc.descendants()
            .filter_map(|g| {
                let name = g.attribute("data-state")?;
                let rect = g.children().find(|c| c.has_tag_name("rect"))?;
                let at = |a: &str| rect.attribute(a).and_then(|v| v.parse::<f64>().ok());
                Some((
                    name.to_string(),
                    [at("x")?, at("y")?, at("width")?, at("height")?],
                ))
            })
            .collect()
    }

    #[test]
    fn the_svg_names_every_state_and_draws_every_transition() {
        let graph = real();
        let svg = graph.svg();
        let doc = Document::parse(&svg).expect("well-formed SVG");
        let drawn: BTreeSet<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-state"))
            .collect();
        let names: BTreeSet<&str> = graph.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(drawn, names);
        let arrows: BTreeSet<(&str, &str)> = edges(&doc)
            .filter_map(|n| Some((n.attribute("data-from")?, n.attribute("data-to")?)))
            .collect();
        let wanted: BTreeSet<(&str, &str)> = graph
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(arrows, wanted);
        let label = |from: &str, to: &str| {
            edges(&doc)
                .find(|n| {
                    n.attribute("data-from") == Some(from) && n.attribute("data-to") == Some(to)
                })
                .and_then(|n| n.attribute("data-label"))
                .map(str::to_string)
        };
        assert_eq!(
            label("IsCircuitOpen", "WaitBeforeProbe").as_deref(),
            Some("Opened")
        );
        assert_eq!(
            label("ProbeVerdict", "UnexpectedState").as_deref(),
            Some("IsPresent false | Default")
        );
        assert_eq!(
            label("Probe", "Failsafe").as_deref(),
            Some("Catch States.ALL")
        );
        // Each state's name is written, whole, on its one or two lines.
        let written: BTreeSet<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|t| {
                t.descendants()
                    .filter(|n| n.is_text())
                    .filter_map(|n| n.text())
                    .map(str::trim)
                    .collect::<String>()
            })
            .collect();
        for name in names {
            assert!(written.contains(name), "{name} is not written");
        }
    }

    #[test]
    fn no_catch_is_drawn_by_default_and_every_other_transition_is() {
        let graph = real();
        let svg = graph.svg();
        let doc = Document::parse(&svg).expect("well-formed SVG");
        let catch_only: BTreeSet<(&str, &str)> = graph
            .merged_edges()
            .into_iter()
            .filter(|(_, vias)| vias.iter().all(|v| matches!(v, Via::Catch(_))))
            .map(|(key, _)| key)
            .collect();
        assert!(catch_only.len() > 20, "{catch_only:?}");
        let mut shown = BTreeSet::new();
        for edge in edges(&doc) {
            let key = (
                edge.attribute("data-from").unwrap_or_default(),
                edge.attribute("data-to").unwrap_or_default(),
            );
            let catch = edge.attribute("class") == Some("edge catch");
            assert_eq!(catch, catch_only.contains(&key), "{key:?}");
            // A Catch is drawn but hidden, for the page to show; nothing else is hidden.
            assert_eq!(hidden(&edge), catch, "{key:?}");
            assert!(edge.children().any(|c| c.has_tag_name("path")), "{key:?}");
            if !catch {
                shown.insert(key);
            }
        }
        let not_catch: BTreeSet<(&str, &str)> = graph
            .edges
            .iter()
            .filter(|e| !matches!(e.via, Via::Catch(_)))
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(shown, not_catch);
    }

    #[test]
    fn the_graph_runs_top_to_bottom_within_a_1600_pixel_window() {
        let svg = real().svg();
        let doc = Document::parse(&svg).expect("well-formed SVG");
        let root = doc.root_element();
        let width: f64 = root
            .attribute("width")
            .and_then(|w| w.parse().ok())
            .expect("a width");
        let height: f64 = root
            .attribute("height")
            .and_then(|h| h.parse().ok())
            .expect("a height");
        assert!(width <= MAX_WIDTH, "{width} wide");
        assert_eq!(
            root.attribute("viewBox"),
            Some(format!("0 0 {width} {height}").as_str()),
            "drawn at its own size"
        );
        let boxes = boxes(&doc);
        let at = |name: &str| {
            boxes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| *b)
                .expect(name)
        };
        // Down the happy path and the probe loop to giving up, each state below the last.
        let path = [
            "OpenCircuit",
            "IsCircuitOpen",
            "WaitBeforeProbe",
            "Probe",
            "ProbeVerdict",
            "StartRejitter",
            "WaitForBacklog",
            "CheckBacklog",
            "BacklogSpread",
            "StopRejitter",
            "SlowStartOrClose",
            "StartSlowStart",
            "RampVerdict",
            "CloseCircuit",
            "CircuitClosed",
        ];
        for pair in path.windows(2) {
            let (above, below) = (at(pair[0]), at(pair[1]));
            assert!(above[1] + above[3] < below[1], "{pair:?}");
        }
        for [x, y, w, h] in boxes.iter().map(|(_, b)| *b) {
            assert!(x >= 0.0 && x + w <= width && y >= 0.0 && y + h <= height);
        }
        // Names at a readable size, in boxes as wide as their names.
        const { assert!(NAME_FONT >= 14) };
        assert!(svg.contains(&format!(".a{NAME_FONT} {{ font-size: {NAME_FONT}px")));
        for (name, [_, _, w, _]) in &boxes {
            let widest = written(name).lines().map(|l| l.chars().count()).max();
            let need = widest.unwrap_or(0) as f64 * CHAR_EM * NAME_FONT as f64;
            assert!(*w >= need, "{name}: {w} < {need}");
        }
    }

    #[test]
    fn long_names_are_cut_between_words_near_their_middle() {
        assert_eq!(written("Probe"), "Probe");
        assert_eq!(written("SlowStartOrClose"), "SlowStartOrClose");
        assert_eq!(
            written("AnotherExecutionOwnsCircuit"),
            "AnotherExecution\nOwnsCircuit"
        );
        assert_eq!(
            written("CircuitClosedElsewhere"),
            "CircuitClosed\nElsewhere"
        );
        assert_eq!(
            written("no_camel_case_at_all_here"),
            "no_camel_case_at_all_here"
        );
    }

    proptest! {
        #[test]
        fn a_written_name_is_the_name_on_at_most_two_lines(name in "[A-Za-z]{1,40}") {
            let text = written(&name);
            prop_assert_eq!(text.replace('\n', ""), name.clone());
            prop_assert!(text.lines().count() <= 2);
            if text.contains('\n') {
                prop_assert!(name.chars().count() > WRAP_OVER);
                for line in text.lines() {
                    prop_assert!(line.chars().count() < name.chars().count());
                }
            }
        }
    }

    #[test]
    fn the_picture_ends_under_its_last_state() {
        let svg = r#"<svg width="10.5" height="900" viewBox="0 0 10.5 900" xmlns="x"><g/></svg>"#;
        assert_eq!(
            ending_at(svg, 40.0),
            r#"<svg width="11" height="40" viewBox="0 0 11 40" xmlns="http://www.w3.org/2000/svg"><g/></svg>"#
        );
    }
}
