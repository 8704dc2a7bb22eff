//! Blue/green on the page: each deployment's cutover as its control table holds it (the live
//! colour, the cut, every segment) and what each stage's colour owns.
//!
//! The cutover ([`shardflow_bluegreen::Cutover`]) splits result positions (a window's start, or
//! a result's timestamp — event time, not the wall clock) into segments, each owned by one
//! colour; the **cut** is where the last segment starts: results from it on are written live by
//! the colour that switched, results before it by their earlier owner.

use serde::Serialize;
use shardflow_bluegreen::{ColourControl, Cutover};

use crate::deployment::{Control, DeployedStage};
use crate::format::{clock, html};

/// One segment: results from `from_ms` (`None`: the beginning of time) belong to `colour`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentView {
    /// Its first result position (event time, epoch ms), `None` for the first segment.
    pub from_ms: Option<i64>,
    /// Its owner.
    pub colour: String,
}

/// A stage function of the deployment and what its colour owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageColour {
    /// The function.
    pub function: String,
    /// Its colour.
    pub colour: String,
    /// Whether its colour owns the results from the cut on (the last segment).
    pub live: bool,
    /// The result positions its colour owns, in words.
    pub owns: String,
}

/// A blue/green deployment's cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CutoverView {
    /// Where it is kept.
    pub control: Control,
    /// The colour owning results from the cut on.
    pub live: String,
    /// The cut: where the last segment starts (`None`: never switched, blue owns everything).
    pub cut_ms: Option<i64>,
    /// Every segment, in order.
    pub segments: Vec<SegmentView>,
    /// The item's version (switches so far).
    pub version: u64,
    /// The stage functions reading it.
    pub stages: Vec<StageColour>,
}

/// The positions `colour` owns under `cutover`, in words.
fn owned(cutover: &Cutover, colour: &str) -> String {
    let mut ranges = Vec::new();
    for (i, s) in cutover.segments.iter().enumerate() {
        if s.colour.as_str() != colour {
            continue;
        }
        let from = (s.from_ms != i64::MIN).then_some(s.from_ms);
        let to = cutover.segments.get(i + 1).map(|n| n.from_ms);
        ranges.push(match (from, to) {
            (None, None) => "every result".to_owned(),
            (None, Some(t)) => format!("results before {}", clock(t)),
            (Some(f), None) => format!("results from {} on", clock(f)),
            (Some(f), Some(t)) => format!("results from {} to before {}", clock(f), clock(t)),
        });
    }
    if ranges.is_empty() {
        "no results (a shadow: everything goes to its shadow outputs)".to_owned()
    } else {
        ranges.join("; ")
    }
}

/// The view of `cutover`, kept in `control`, for the `stages` that read it.
pub fn cutover_view(control: &Control, cutover: &Cutover, stages: &[DeployedStage]) -> CutoverView {
    let live = cutover.live().as_str().to_owned();
    let cut_ms = cutover.segments.last().map(|s| s.from_ms).filter(|&f| f != i64::MIN);
    CutoverView {
        control: control.clone(),
        cut_ms,
        segments: cutover
            .segments
            .iter()
            .map(|s| SegmentView {
                from_ms: (s.from_ms != i64::MIN).then_some(s.from_ms),
                colour: s.colour.as_str().to_owned(),
            })
            .collect(),
        version: cutover.version,
        stages: stages
            .iter()
            .filter(|s| s.control.as_ref() == Some(control))
            .map(|s| {
                let colour = s.colour.clone().unwrap_or_else(|| "blue".to_owned());
                StageColour {
                    function: s.function.clone(),
                    live: colour == live,
                    owns: owned(cutover, &colour),
                    colour,
                }
            })
            .collect(),
        live,
    }
}

/// The cutover of every control the `stages` name, read from its table through `dynamodb`;
/// what cannot be read is returned as a problem.
pub async fn read_cutovers(
    dynamodb: &aws_sdk_dynamodb::Client,
    stages: &[DeployedStage],
) -> (Vec<CutoverView>, Vec<String>) {
    let mut controls: Vec<&Control> = stages.iter().filter_map(|s| s.control.as_ref()).collect();
    controls.sort();
    controls.dedup();
    let mut views = Vec::new();
    let mut problems = Vec::new();
    for control in controls {
        match ColourControl::new(dynamodb.clone(), &control.table, &control.deployment)
            .load()
            .await
        {
            Ok(cutover) => views.push(cutover_view(control, &cutover, stages)),
            Err(e) => problems.push(format!("cutover of {} in {}: {e}", control.deployment, control.table)),
        }
    }
    (views, problems)
}

fn badge(colour: &str) -> String {
    format!("<span class=\"colour colour-{c}\">{c}</span>", c = html(colour))
}

/// The cutovers as the page shows them: per deployment the live colour and the cut
/// (`data-field="cut"`), the segments, and what each stage's colour owns.
pub fn cutover_html(views: &[CutoverView]) -> String {
    if views.is_empty() {
        return "<p id=\"no-blue-green\">No stage reads a blue/green control table: every result is written live.</p>"
            .to_owned();
    }
    let mut out = String::new();
    for v in views {
        out.push_str(&format!(
            "<div class=\"cutover\" data-deployment=\"{d}\"><p>Deployment <code>{d}</code> (control table <code>{t}</code>, \
             version {}): live colour <span data-field=\"live\">{}</span>, cut <span data-field=\"cut\">{}</span>.</p>",
            v.version,
            badge(&v.live),
            v.cut_ms
                .map_or_else(|| "none yet (blue owns every result)".to_owned(), clock),
            d = html(&v.control.deployment),
            t = html(&v.control.table),
        ));
        out.push_str(
            "<table class=\"segments\"><thead><tr><th>results from (event time)</th><th>owner</th></tr></thead><tbody>",
        );
        for s in &v.segments {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                s.from_ms.map_or_else(|| "the beginning".to_owned(), clock),
                badge(&s.colour)
            ));
        }
        out.push_str("</tbody></table><table class=\"stage-colours\"><thead><tr><th>function</th><th>colour</th><th>owns results from the cut on</th><th>owns</th></tr></thead><tbody>");
        for s in &v.stages {
            out.push_str(&format!(
                "<tr data-function=\"{f}\"><td>{f}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge(&s.colour),
                if s.live { "yes" } else { "no" },
                html(&s.owns),
                f = html(&s.function),
            ));
        }
        out.push_str("</tbody></table></div>");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shardflow_bluegreen::Colour;

    use super::*;

    fn stage(function: &str, colour: &str, control: &Control) -> DeployedStage {
        DeployedStage {
            function: function.to_owned(),
            stage: "revenue".to_owned(),
            table: "state".to_owned(),
            stream: None,
            mapping_state: None,
            colour: Some(colour.to_owned()),
            control: Some(control.clone()),
            memory_mb: None,
            architecture: None,
            environment: BTreeMap::new(),
        }
    }

    #[test]
    fn after_a_switch_and_a_rollback_the_cut_is_the_last_segments_start_and_each_colour_owns_its_ranges() {
        let control = Control {
            table: "control".to_owned(),
            deployment: "shop".to_owned(),
        };
        let stages = [
            stage("blue-revenue", "blue", &control),
            stage("green-revenue", "green", &control),
        ];
        let never = cutover_view(&control, &Cutover::default(), &stages);
        assert_eq!(never.cut_ms, None);
        assert_eq!(never.live, "blue");
        assert_eq!(never.stages[0].owns, "every result");
        assert!(never.stages[1].owns.starts_with("no results"), "{:?}", never.stages[1]);

        let switched = Cutover::default().switched(Colour::Green, 1_700_000_000_000).unwrap();
        let back = switched.switched(Colour::Blue, 1_700_000_600_000).unwrap();
        let v = cutover_view(&control, &back, &stages);
        assert_eq!(v.cut_ms, Some(1_700_000_600_000));
        assert_eq!(v.live, "blue");
        assert_eq!(v.version, 2);
        assert_eq!(v.segments.len(), 3);
        let blue = &v.stages[0];
        assert!(blue.live);
        assert_eq!(
            blue.owns,
            format!(
                "results before {}; results from {} on",
                clock(1_700_000_000_000),
                clock(1_700_000_600_000)
            )
        );
        let green = &v.stages[1];
        assert!(!green.live);
        assert_eq!(
            green.owns,
            format!(
                "results from {} to before {}",
                clock(1_700_000_000_000),
                clock(1_700_000_600_000)
            )
        );
        let page = cutover_html(&[v]);
        assert!(page.contains(&format!("<span data-field=\"cut\">{}</span>", clock(1_700_000_600_000))));
        assert!(page.contains("<td>no</td>"));
    }
}
