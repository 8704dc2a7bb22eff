//! Highlights: the figures that point a person at a problem, each with what it means.
//!
//! - a stage whose watermark has not moved for longer than its window,
//! - an idle shard holding the watermark back,
//! - a shard whose iterator age grows,
//! - dead letters arriving,
//! - errors logged.

use serde::Serialize;

use crate::format::duration;
use crate::model::{Observations, StageView};

/// A shard counts as idle when its latest batch is older than this (and older than its stage's
/// window).
pub const IDLE_AFTER_MS: i64 = 60_000;
/// Dead letters count as arriving when they came within this long before the wall clock.
pub const RECENT_MS: i64 = 5 * 60_000;
/// An iterator age grows when this many readings in a row each exceed the one before.
pub const GROWING_READINGS: usize = 3;
/// ... and the last exceeds the first by at least this much.
pub const GROWTH_AT_LEAST_MS: i64 = 10_000;

/// What kind of problem a highlight points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HighlightKind {
    /// The stage's watermark has not moved for longer than its window.
    WatermarkStalled,
    /// A shard without records holds the stage's watermark back.
    IdleShardHoldsWatermark,
    /// A shard's iterator age keeps growing.
    IteratorAgeGrowing,
    /// Records are going to the dead-letter destination.
    DeadLettersArriving,
    /// The stage logged errors.
    ErrorsLogged,
}

/// A problem worth a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Highlight {
    /// What kind.
    pub kind: HighlightKind,
    /// The stage.
    pub stage: String,
    /// The shard, when it is one shard's.
    pub shard: Option<String>,
    /// What is seen, in a sentence.
    pub title: String,
    /// What it means and what to look at, in a sentence or two.
    pub meaning: String,
}

/// The highlights of `views` (from [`Observations::overview`] at `now_ms`) and of the iterator
/// age readings in `observations`.
pub fn highlights(observations: &Observations, views: &[StageView], now_ms: i64) -> Vec<Highlight> {
    let mut out = Vec::new();
    for view in views {
        out.extend(watermark_stalled(view, now_ms));
        out.extend(idle_shard(view, now_ms));
        out.extend(dead_letters(observations, view, now_ms));
        out.extend(iterator_age_growing(observations, view));
        out.extend(errors_logged(observations, view, now_ms));
    }
    out
}

/// Most characters of an error line quoted in a highlight's title.
const QUOTED_CHARS: usize = 300;

fn errors_logged(observations: &Observations, view: &StageView, now_ms: i64) -> Option<Highlight> {
    let recent = observations
        .errors
        .iter()
        .filter(|e| e.stage == view.stage && e.at_ms > now_ms - RECENT_MS && e.at_ms <= now_ms)
        .count();
    let latest = view.last_error.as_ref().filter(|_| recent > 0)?;
    let quoted: String = latest.message.chars().take(QUOTED_CHARS).collect();
    Some(Highlight {
        kind: HighlightKind::ErrorsLogged,
        stage: view.stage.clone(),
        shard: None,
        title: format!(
            "{} logged {recent} error line(s) in the last {}; the latest: {quoted}",
            view.stage,
            duration(RECENT_MS)
        ),
        meaning: "An invocation that fails is retried from the shard's last checkpoint: nothing is lost, but the \
                  shard makes no progress while the error lasts (its iterator age grows). The line says what \
                  failed: a sink or the state table unreachable, a restore refused, user code panicking."
            .to_owned(),
    })
}

fn watermark_stalled(view: &StageView, now_ms: i64) -> Option<Highlight> {
    let since = view.watermark_since_ms?;
    let stalled = now_ms.saturating_sub(since);
    (stalled > view.window_ms).then(|| Highlight {
        kind: HighlightKind::WatermarkStalled,
        stage: view.stage.clone(),
        shard: view.held_by.clone(),
        title: format!(
            "The watermark of {} has not moved for {}, longer than its {} window.",
            view.stage,
            duration(stalled),
            duration(view.window_ms)
        ),
        meaning: format!(
            "Windows ending after the watermark cannot close, so their on-time results wait{}. \
             Look at the shard holding it: no new records, or records whose event time stopped advancing.",
            view.held_by
                .as_deref()
                .map(|s| format!(" (it is held by {s})"))
                .unwrap_or_default()
        ),
    })
}

fn idle_shard(view: &StageView, now_ms: i64) -> Option<Highlight> {
    let holder = view.shards.iter().find(|s| Some(&s.shard) == view.held_by.as_ref())?;
    let last = holder.last_batch_ms?;
    let idle = now_ms.saturating_sub(last);
    let others_moved = view.shards.iter().any(|s| {
        s.shard != holder.shard && s.last_batch_ms.is_some_and(|t| t > last) && s.watermark_ms > holder.watermark_ms
    });
    (idle > IDLE_AFTER_MS.max(view.window_ms) && others_moved).then(|| Highlight {
        kind: HighlightKind::IdleShardHoldsWatermark,
        stage: view.stage.clone(),
        shard: Some(holder.shard.clone()),
        title: format!(
            "Shard {} of {} has had no records for {} and holds the stage's watermark back.",
            holder.shard,
            view.stage,
            duration(idle)
        ),
        meaning: "The other shards' watermarks have moved on, but the stage's watermark is the least of its \
                  shards', so windows downstream wait for this quiet shard. If the shard is quiet on purpose, \
                  give the pipeline an idleness timeout (WatermarkStrategy::with_idleness); otherwise check \
                  why its producer stopped writing to it."
            .to_owned(),
    })
}

fn dead_letters(observations: &Observations, view: &StageView, now_ms: i64) -> Option<Highlight> {
    let recent = |b: &&shardflow_stage::EmfRecord| {
        b.metrics.dead_letter_records > 0 && b.timestamp_ms > now_ms - RECENT_MS && b.timestamp_ms <= now_ms
    };
    // The count from the stage's figures (CloudWatch's when read), the shards from its log lines.
    let count: u64 = observations
        .stage_batches(&view.stage)
        .into_iter()
        .filter(recent)
        .map(|b| b.metrics.dead_letter_records)
        .sum();
    let mut shards: Vec<&str> = observations
        .batches
        .iter()
        .filter(|b| b.stage == view.stage)
        .filter(recent)
        .map(|b| b.shard.as_str())
        .collect();
    shards.sort_unstable();
    shards.dedup();
    (count > 0).then(|| Highlight {
        kind: HighlightKind::DeadLettersArriving,
        stage: view.stage.clone(),
        shard: (shards.len() == 1).then(|| shards[0].to_owned()),
        title: format!(
            "{count} record(s) of {} went to the dead letters in the last {}{}.",
            view.stage,
            duration(RECENT_MS),
            if shards.is_empty() {
                String::new()
            } else {
                format!(" (shards {})", shards.join(", "))
            }
        ),
        meaning: "These records could not be decoded, or came later than the allowed lateness: they are not \
                  in the results. Read them in the dead-letter destination to see why (each carries its reason)."
            .to_owned(),
    })
}

fn iterator_age_growing(observations: &Observations, view: &StageView) -> Vec<Highlight> {
    let mut out = Vec::new();
    for shard in &view.shards {
        let mut ages: Vec<(i64, i64)> = observations
            .samples
            .iter()
            .filter(|s| s.stage == view.stage && s.shard == shard.shard)
            .filter_map(|s| Some((s.at_ms, s.iterator_age_ms?)))
            .collect();
        ages.sort_unstable();
        if ages.len() < GROWING_READINGS {
            continue;
        }
        let tail = &ages[ages.len() - GROWING_READINGS..];
        let growing = tail.windows(2).all(|w| w[1].1 > w[0].1);
        let (first, last) = (tail[0], tail[GROWING_READINGS - 1]);
        if growing && last.1 - first.1 >= GROWTH_AT_LEAST_MS {
            out.push(Highlight {
                kind: HighlightKind::IteratorAgeGrowing,
                stage: view.stage.clone(),
                shard: Some(shard.shard.clone()),
                title: format!(
                    "The iterator age of shard {} of {} grew from {} to {} in {}.",
                    shard.shard,
                    view.stage,
                    duration(first.1),
                    duration(last.1),
                    duration(last.0 - first.0)
                ),
                meaning: "The stage reads this shard more slowly than records arrive (or not at all), so its \
                          backlog grows and results come later and later. Look for errors or retries of the \
                          function, a slow sink or commit, or give the shard more throughput (batch size, \
                          parallelization factor, more shards)."
                    .to_owned(),
            });
        }
    }
    out
}
