//! The workflow's graph, as the Step Functions console draws it: every state of the ASL and
//! every transition (`Next`, each Choice rule and its `Default`, each `Catch`). [`super::draw`]
//! lays it out into SVG.

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How one state leads to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Next,
    /// A Choice rule; the label is what it tests for (`Opened`, `IsPresent false`, ...).
    Choice(String),
    Default,
    /// A Catch, with the errors it catches.
    Catch(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub name: String,
    /// The ASL `Type`: `Task`, `Choice`, `Wait`, `Succeed`, `Fail`, `Pass`, ...
    pub kind: String,
}

/// The workflow as a graph: its states in the definition's order, and its transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub start: String,
    pub states: Vec<State>,
    pub edges: Vec<Edge>,
}

/// What a Choice rule tests, in a word or two: the value it compares with, else the test.
fn rule_label(rule: &Value) -> String {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        return all.first().map(rule_label).unwrap_or_default();
    }
    let Some(object) = rule.as_object() else {
        return String::new();
    };
    object
        .iter()
        .find(|(key, _)| !matches!(key.as_str(), "Variable" | "Next"))
        .map(|(key, value)| match value {
            Value::String(s) => s.clone(),
            other => format!("{key} {other}"),
        })
        .unwrap_or_default()
}

fn target(state: &str, value: &Value, field: &str) -> Result<String> {
    value
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("state {state}: {field} is not a state name"))
}

impl Graph {
    /// The graph of an ASL definition (top level; this workflow has no Parallel or Map).
    pub fn from_asl(definition: &Value) -> Result<Graph> {
        let start = target("(top)", &definition["StartAt"], "StartAt")?;
        let states = definition["States"]
            .as_object()
            .context("the definition has no States object")?;
        let mut graph = Graph {
            start,
            states: Vec::new(),
            edges: Vec::new(),
        };
        for (name, state) in states {
            let kind = state["Type"].as_str().unwrap_or("?").to_string();
            if matches!(kind.as_str(), "Parallel" | "Map") {
                bail!("state {name}: {kind} states are not drawn (the breaker has none)");
            }
            let mut edge = |to: String, via: Via| {
                graph.edges.push(Edge {
                    from: name.clone(),
                    to,
                    via,
                })
            };
            for rule in state["Choices"].as_array().into_iter().flatten() {
                edge(
                    target(name, &rule["Next"], "a Choice's Next")?,
                    Via::Choice(rule_label(rule)),
                );
            }
            if let Some(default) = state.get("Default") {
                edge(target(name, default, "Default")?, Via::Default);
            }
            if let Some(next) = state.get("Next") {
                edge(target(name, next, "Next")?, Via::Next);
            }
            for catch in state["Catch"].as_array().into_iter().flatten() {
                let errors = catch["ErrorEquals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                edge(
                    target(name, &catch["Next"], "a Catch's Next")?,
                    Via::Catch(errors),
                );
            }
            graph.states.push(State {
                name: name.clone(),
                kind,
            });
        }
        for edge in &graph.edges {
            if !states.contains_key(&edge.to) {
                bail!(
                    "state {} leads to {}, which is not a state",
                    edge.from,
                    edge.to
                );
            }
        }
        Ok(graph)
    }

    /// The states in breadth-first order from the start, then any the start does not reach.
    pub(super) fn breadth_first(&self) -> Vec<&State> {
        let mut order: Vec<&str> = vec![self.start.as_str()];
        let mut at = 0;
        while at < order.len() {
            let from = order[at];
            for edge in self.edges.iter().filter(|e| e.from == from) {
                if !order.contains(&edge.to.as_str()) {
                    order.push(&edge.to);
                }
            }
            at += 1;
        }
        let mut states: Vec<&State> = order
            .iter()
            .filter_map(|name| self.states.iter().find(|s| s.name == *name))
            .collect();
        states.extend(
            self.states
                .iter()
                .filter(|s| !order.contains(&s.name.as_str())),
        );
        states
    }

    /// The transitions between each two states, breadth-first by their source; Next first.
    pub(super) fn merged_edges(&self) -> Vec<((&str, &str), Vec<&Via>)> {
        let mut merged: Vec<((&str, &str), Vec<&Via>)> = Vec::new();
        for state in self.breadth_first() {
            let mut outgoing: Vec<&Edge> =
                self.edges.iter().filter(|e| e.from == state.name).collect();
            outgoing.sort_by_key(|e| match e.via {
                Via::Next => 0,
                Via::Choice(_) | Via::Default => 1,
                Via::Catch(_) => 2,
            });
            for edge in outgoing {
                let key = (edge.from.as_str(), edge.to.as_str());
                match merged.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, vias)) => vias.push(&edge.via),
                    None => merged.push((key, vec![&edge.via])),
                }
            }
        }
        merged
    }

    /// The graph drawn as SVG (see [`super::draw`]).
    pub fn svg(&self) -> String {
        super::draw::svg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn real() -> (Value, Graph) {
        let definition = crate::asl::deployed_definition().expect("the ASL reads");
        let graph = Graph::from_asl(&definition).expect("the ASL is a graph");
        (definition, graph)
    }

    /// Every (from, to) the definition names, read straight from its JSON.
    fn transitions_in(definition: &Value) -> BTreeSet<(String, String, &'static str)> {
        let mut all = BTreeSet::new();
        for (name, state) in definition["States"].as_object().expect("States") {
            let mut add = |to: &Value, via: &'static str| {
                all.insert((name.clone(), to.as_str().expect("a name").to_string(), via));
            };
            if let Some(next) = state.get("Next") {
                add(next, "Next");
            }
            if let Some(default) = state.get("Default") {
                add(default, "Default");
            }
            for rule in state["Choices"].as_array().into_iter().flatten() {
                add(&rule["Next"], "Choice");
            }
            for catch in state["Catch"].as_array().into_iter().flatten() {
                add(&catch["Next"], "Catch");
            }
        }
        all
    }

    fn kind(via: &Via) -> &'static str {
        match via {
            Via::Next => "Next",
            Via::Choice(_) => "Choice",
            Via::Default => "Default",
            Via::Catch(_) => "Catch",
        }
    }

    #[test]
    fn the_real_asl_gives_every_state_and_every_transition() {
        let (definition, graph) = real();
        let names: Vec<&str> = graph.states.iter().map(|s| s.name.as_str()).collect();
        let wanted: Vec<&str> = definition["States"]
            .as_object()
            .expect("States")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, wanted);
        assert_eq!(graph.start, "OpenCircuit");
        let got: BTreeSet<(String, String, &'static str)> = graph
            .edges
            .iter()
            .map(|e| (e.from.clone(), e.to.clone(), kind(&e.via)))
            .collect();
        assert_eq!(got, transitions_in(&definition));
        // One edge per rule, Default and Catch: none merged away in the model.
        let rules: usize = definition["States"]
            .as_object()
            .expect("States")
            .values()
            .map(|s| {
                s["Choices"].as_array().map_or(0, Vec::len)
                    + s["Catch"].as_array().map_or(0, Vec::len)
                    + usize::from(s.get("Next").is_some())
                    + usize::from(s.get("Default").is_some())
            })
            .sum();
        assert_eq!(graph.edges.len(), rules);
    }

    #[test]
    fn choice_and_catch_edges_say_what_they_take() {
        let (_, graph) = real();
        let has = |from: &str, to: &str, via: Via| {
            graph.edges.contains(&Edge {
                from: from.into(),
                to: to.into(),
                via,
            })
        };
        assert!(has(
            "IsCircuitOpen",
            "WaitBeforeProbe",
            Via::Choice("Opened".into())
        ));
        assert!(has(
            "ProbeVerdict",
            "CloseCircuit",
            Via::Choice("Close".into())
        ));
        assert!(has("ProbeVerdict", "UnexpectedState", Via::Default));
        assert!(has(
            "IsCircuitOpen",
            "UnexpectedState",
            Via::Choice("IsPresent false".into())
        ));
        assert!(has("WaitBeforeProbe", "Probe", Via::Next));
        assert!(has(
            "OpenCircuit",
            "NoSingleMapping",
            Via::Catch(vec!["MappingNotFound".into(), "SeveralMappings".into()])
        ));
        assert!(has(
            "Probe",
            "Failsafe",
            Via::Catch(vec!["States.ALL".into()])
        ));
        assert!(has(
            "Failsafe",
            "FailsafeFailed",
            Via::Catch(vec!["States.ALL".into()])
        ));
    }

    #[test]
    fn a_dangling_transition_is_refused() {
        let definition = serde_json::json!({
            "StartAt": "A",
            "States": {"A": {"Type": "Pass", "Next": "B"}}
        });
        let error = Graph::from_asl(&definition).expect_err("B does not exist");
        assert!(error.to_string().contains("B"), "{error}");
    }
}
