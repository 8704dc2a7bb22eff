//! An application's description: what `shardflow synth` needs to build its infrastructure, as
//! JSON (an app's function binary prints it with `--describe`). Plain data; [`AppDescription::validate`]
//! refuses what cannot be deployed, with the fix in each message.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::names::{env_var, is_valid_name};

/// The input formats a source can decode.
pub const FORMATS: &[&str] = &["json", "protobuf", "cdc"];
/// The format of a shuffle stream: what a [`StageRole::Downstream`] stage reads.
pub const SHUFFLE_FORMAT: &str = "shuffle";
/// Most inputs a join across streams takes (sides of a `Tagged` value).
pub const MAX_JOIN_INPUTS: usize = 65_536;
/// The sink kinds a stage can write to.
pub const SINK_KINDS: &[&str] = &["sns", "sqs", "s3", "postgres", "kinesis", "dynamodb"];
/// The dead-letter destinations.
pub const DEAD_LETTER_KINDS: &[&str] = &["sqs", "s3"];

/// An application: its name and stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDescription {
    /// The application's name (`[a-z][a-z0-9-]*`): the prefix of its resources.
    pub app: String,
    /// Its stages, in declaration order.
    pub stages: Vec<StageDescription>,
}

/// One stage: a Lambda function reading one Kinesis stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDescription {
    /// The stage's name (`[a-z][a-z0-9-]*`), also its state's name in the state table.
    pub name: String,
    /// The function crate (and zip, `<function>.zip`) that runs it.
    pub function: String,
    /// The pipeline's name (`None`: no pipeline was given).
    pub pipeline: Option<String>,
    /// Its input (`None`: no source was given).
    pub source: Option<SourceDescription>,
    /// Its outputs.
    pub sinks: Vec<SinkDescription>,
    /// Where records it cannot process go: `sqs` or `s3`.
    pub dead_letters: String,
    /// What state it keeps.
    pub state: StateNeeds,
    /// The environment variables the stage reads (besides its sinks'), with their meaning.
    pub env: Vec<EnvVar>,
    /// Where the stage sits in a split pipeline (default: a whole pipeline).
    #[serde(default)]
    pub role: StageRole,
}

/// Where a stage sits in the application's topology (issue 13). A pipeline cut by
/// `key_by(..).shuffle()` runs as an [`StageRole::Upstream`] stage writing a *shuffle stream*
/// and a [`StageRole::Downstream`] stage reading it; a join across several input streams is
/// one upstream stage per input stream, all writing one shuffle stream, and one downstream
/// stage naming them all (side `i` = the `i`-th upstream, `SHARDFLOW_JOIN_INPUTS`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageRole {
    /// Source, pipeline and sinks in one stage.
    #[default]
    Whole,
    /// The upstream half of a split pipeline: decodes its source, keys (and may combine) the
    /// records, and writes them to the shuffle stream `shuffle` (logical name). Needs no sink;
    /// an EventBridge tick makes it release idle shards downstream.
    Upstream {
        /// The shuffle stream it writes.
        shuffle: String,
    },
    /// The keyed downstream half: reads the shuffle stream its source names (format
    /// [`SHUFFLE_FORMAT`]), written by the stages `upstreams`; more than one is a join across
    /// their input streams.
    Downstream {
        /// The upstream stages, in side order.
        upstreams: Vec<String>,
    },
}
/// A stage's input stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDescription {
    /// The stream's logical name (`[a-z][a-z0-9-]*`); a Kinesis sink of another stage may write it.
    pub stream: String,
    /// How a record decodes: one of [`FORMATS`].
    pub format: String,
}

/// One output of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDescription {
    /// The sink's name, unique in its stage (`[a-z][a-z0-9-]*`).
    pub name: String,
    /// One of [`SINK_KINDS`].
    pub kind: String,
    /// The kind's target inside its resource: the key prefix (s3), the stream's logical name
    /// (kinesis), the table (postgres); `None` for the others.
    pub target: Option<String>,
    /// The environment variables that address it, with their meaning.
    pub env: Vec<EnvVar>,
}

/// One environment variable a stage reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// The variable.
    pub name: String,
    /// Whether the stage refuses to start without it.
    pub required: bool,
    /// What it holds.
    pub meaning: String,
}

/// What state a stage keeps: the state table always holds its positions; key groups need it
/// for operator state, and large groups spill to the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateNeeds {
    /// The ids of the pipeline's stateful operators (empty: positions only).
    pub operators: Vec<String>,
    /// Whether key groups too large for an item spill to S3.
    pub spill: bool,
}

/// A description that cannot be deployed, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}: {fix}")]
pub struct ConfigError {
    /// What is wrong, naming the stage and sink.
    pub problem: String,
    /// What to change.
    pub fix: String,
}

/// Every problem of a description (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the application's configuration is refused:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn problem(problem: String, fix: impl Into<String>) -> ConfigError {
    ConfigError {
        problem,
        fix: fix.into(),
    }
}

impl AppDescription {
    /// The description, or every reason it cannot be deployed: names that are not
    /// `[a-z][a-z0-9-]*` or repeat, a stage without a pipeline, source or sink, an unknown format,
    /// sink kind or dead-letter destination, a sink without its target (an S3 prefix, a Kinesis
    /// stream, a Postgres table) or without the variables that address it.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if !is_valid_name(&self.app) {
            errors.push(problem(
                format!("the application name {:?} is not a resource name", self.app),
                "use lower-case letters, digits and '-', starting with a letter",
            ));
        }
        if self.stages.is_empty() {
            errors.push(problem(
                format!("application `{}` has no stage", self.app),
                "add one with `.stage(StageDef::new(\"name\")...)`",
            ));
        }
        let mut stage_names = BTreeSet::new();
        for stage in &self.stages {
            if !stage_names.insert(stage.name.as_str()) {
                errors.push(problem(
                    format!("stage `{}` is declared twice", stage.name),
                    "give every stage its own name",
                ));
            }
            stage.validate(&mut errors);
        }
        self.validate_shuffles(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Every stream the application reads or writes, by logical name, sorted, except its
    /// shuffle streams ([`AppDescription::shuffle_streams`]).
    pub fn streams(&self) -> BTreeSet<String> {
        let shuffles = self.shuffle_streams();
        let read = self
            .stages
            .iter()
            .filter_map(|s| s.source.as_ref().map(|s| s.stream.clone()))
            .filter(|s| !shuffles.contains(s));
        let written = self
            .stages
            .iter()
            .flat_map(|s| &s.sinks)
            .filter(|k| k.kind == "kinesis")
            .filter_map(|k| k.target.clone());
        read.chain(written).collect()
    }

    /// The shuffle streams: those upstream stages write, by logical name, sorted.
    pub fn shuffle_streams(&self) -> BTreeSet<String> {
        self.stages
            .iter()
            .filter_map(|s| match &s.role {
                StageRole::Upstream { shuffle } => Some(shuffle.clone()),
                _ => None,
            })
            .collect()
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageDescription> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The downstream stage reading shuffle stream `shuffle`.
    pub fn downstream_of(&self, shuffle: &str) -> Option<&StageDescription> {
        self.stages
            .iter()
            .find(|s| matches!(s.role, StageRole::Downstream { .. }) && s.input_stream() == Some(shuffle))
    }

    /// The topology of shuffles: every upstream's shuffle stream is read by one downstream stage
    /// that names it; every downstream's upstreams exist and write its shuffle stream; a shuffle
    /// stream is nobody else's input or sink; a join's inputs are distinct streams.
    fn validate_shuffles(&self, errors: &mut Vec<ConfigError>) {
        let shuffles = self.shuffle_streams();
        for stage in &self.stages {
            let name = &stage.name;
            match &stage.role {
                StageRole::Whole => {
                    if let Some(stream) = stage.input_stream().filter(|s| shuffles.contains(*s)) {
                        errors.push(problem(
                            format!("stage `{name}` reads the shuffle stream `{stream}` as a plain input"),
                            "read a shuffle stream only from its downstream stage: declare the stage's role as `Downstream { upstreams }`",
                        ));
                    }
                }
                StageRole::Upstream { shuffle } => self.validate_upstream(stage, shuffle, errors),
                StageRole::Downstream { upstreams } => self.validate_downstream(stage, upstreams, &shuffles, errors),
            }
            for sink in stage.sinks.iter().filter(|k| k.kind == "kinesis") {
                if let Some(target) = sink.target.as_deref().filter(|t| shuffles.contains(*t)) {
                    errors.push(problem(
                        format!(
                            "stage `{name}`: sink `{}` writes the shuffle stream `{target}`",
                            sink.name
                        ),
                        "only upstream stages write a shuffle stream (role `Upstream { shuffle }`): write another stream",
                    ));
                }
            }
        }
    }

    fn validate_upstream(&self, stage: &StageDescription, shuffle: &str, errors: &mut Vec<ConfigError>) {
        let name = &stage.name;
        if !is_valid_name(shuffle) {
            errors.push(problem(
                format!("stage `{name}` writes the shuffle stream {shuffle:?}, not a resource name"),
                "name the shuffle stream with lower-case letters, digits and '-', starting with a letter",
            ));
        }
        if stage.input_stream() == Some(shuffle) {
            errors.push(problem(
                format!("stage `{name}` reads and writes the stream `{shuffle}`"),
                "give the shuffle stream its own name",
            ));
        }
        let readers: Vec<&StageDescription> = self
            .stages
            .iter()
            .filter(|s| matches!(s.role, StageRole::Downstream { .. }) && s.input_stream() == Some(shuffle))
            .collect();
        match readers.as_slice() {
            [] => errors.push(problem(
                format!("the shuffle stream `{shuffle}` that stage `{name}` writes has no downstream stage"),
                format!(
                    "add a downstream stage that reads `{shuffle}` (format `shuffle`) with `{name}` among its upstreams (role `Downstream {{ upstreams }}`)"
                ),
            )),
            [reader] => {
                let named = matches!(&reader.role, StageRole::Downstream { upstreams } if upstreams.iter().any(|u| u == name));
                if !named {
                    errors.push(problem(
                        format!(
                            "stage `{name}` writes the shuffle stream `{shuffle}`, but its downstream stage `{}` does not name it",
                            reader.name
                        ),
                        format!("add \"{name}\" to the upstreams of stage `{}`", reader.name),
                    ));
                }
            }
            _ => errors.push(problem(
                format!(
                    "the shuffle stream `{shuffle}` is read by {} downstream stages",
                    readers.len()
                ),
                "one downstream stage reads a shuffle stream: give each downstream stage its own shuffle stream",
            )),
        }
    }

    fn validate_downstream(
        &self,
        stage: &StageDescription,
        upstreams: &[String],
        shuffles: &BTreeSet<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        let name = &stage.name;
        let Some(source) = &stage.source else {
            return; // refused by the stage's own validation
        };
        if source.format != SHUFFLE_FORMAT || !shuffles.contains(&source.stream) {
            errors.push(problem(
                format!(
                    "downstream stage `{name}` reads `{}` ({}), not a shuffle stream an upstream stage writes",
                    source.stream, source.format
                ),
                "read the shuffle stream its upstream stages write (format `shuffle`), and give them role `Upstream { shuffle }`",
            ));
        }
        if upstreams.is_empty() {
            errors.push(problem(
                format!("downstream stage `{name}` names no upstream stage"),
                "name the stages that write its shuffle stream: role `Downstream { upstreams: [\"<stage>\", ..] }`",
            ));
        }
        if upstreams.len() > MAX_JOIN_INPUTS {
            errors.push(problem(
                format!("downstream stage `{name}` joins {} input streams", upstreams.len()),
                format!("join at most {MAX_JOIN_INPUTS} streams in one stage"),
            ));
        }
        let mut seen_stages = BTreeSet::new();
        let mut seen_inputs = BTreeSet::new();
        for upstream in upstreams {
            if !seen_stages.insert(upstream.as_str()) {
                errors.push(problem(
                    format!("downstream stage `{name}` names upstream `{upstream}` twice"),
                    "name each upstream stage once (one side of the join each)",
                ));
            }
            match self.stage(upstream) {
                None => errors.push(problem(
                    format!("downstream stage `{name}` names the upstream `{upstream}`, which is not a stage"),
                    format!("add stage `{upstream}` (role `Upstream {{ shuffle: \"{}\" }}`) or remove it from the upstreams", source.stream),
                )),
                Some(up) => {
                    let writes = matches!(&up.role, StageRole::Upstream { shuffle } if *shuffle == source.stream);
                    if !writes {
                        errors.push(problem(
                            format!(
                                "downstream stage `{name}` names `{upstream}`, which does not write its shuffle stream `{}`",
                                source.stream
                            ),
                            format!("give stage `{upstream}` role `Upstream {{ shuffle: \"{}\" }}`", source.stream),
                        ));
                    }
                    if let Some(input) = up.input_stream() {
                        if !seen_inputs.insert(input) {
                            errors.push(problem(
                                format!(
                                    "downstream stage `{name}` joins the stream `{input}` twice (upstream `{upstream}`)"
                                ),
                                "read each input stream of a join with one upstream stage",
                            ));
                        }
                    }
                }
            }
        }
    }
}

impl StageDescription {
    /// The stream the stage reads (its source's), if it has a source.
    pub fn input_stream(&self) -> Option<&str> {
        self.source.as_ref().map(|s| s.stream.as_str())
    }

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        let stage = &self.name;
        if !is_valid_name(stage) {
            errors.push(problem(
                format!("the stage name {stage:?} is not a resource name"),
                "use lower-case letters, digits and '-', starting with a letter",
            ));
        }
        if self.pipeline.is_none() {
            errors.push(problem(
                format!("stage `{stage}` has no pipeline"),
                "add `.pipeline(Pipeline::builder(..)...)`",
            ));
        }
        match &self.source {
            None => errors.push(problem(
                format!("stage `{stage}` has no source"),
                "add `.source(Source::json(\"<stream>\"))` (or `Source::protobuf`, `Source::cdc`)",
            )),
            Some(source) => {
                let downstream = matches!(self.role, StageRole::Downstream { .. });
                let shuffle_format = source.format == SHUFFLE_FORMAT;
                if shuffle_format && !downstream {
                    errors.push(problem(
                        format!("stage `{stage}` reads the shuffle format but is not a downstream stage"),
                        "give it role `Downstream { upstreams }`, or read a stream of json, protobuf or cdc",
                    ));
                } else if !shuffle_format && !FORMATS.contains(&source.format.as_str()) {
                    errors.push(problem(
                        format!("stage `{stage}` reads the unknown format {:?}", source.format),
                        format!("use one of {}", FORMATS.join(", ")),
                    ));
                }
                if !is_valid_name(&source.stream) {
                    errors.push(problem(
                        format!(
                            "stage `{stage}` reads the stream {:?}, not a resource name",
                            source.stream
                        ),
                        "name the stream with lower-case letters, digits and '-', starting with a letter",
                    ));
                }
            }
        }
        let upstream = matches!(self.role, StageRole::Upstream { .. });
        if self.sinks.is_empty() && !upstream {
            errors.push(problem(
                format!("stage `{stage}` has no sink"),
                "add `.sink(Sink::s3(..))` or another sink: results nobody keeps are lost",
            ));
        }
        if !DEAD_LETTER_KINDS.contains(&self.dead_letters.as_str()) {
            errors.push(problem(
                format!(
                    "stage `{stage}` sends dead letters to the unknown destination {:?}",
                    self.dead_letters
                ),
                format!("use one of {}", DEAD_LETTER_KINDS.join(", ")),
            ));
        }
        let mut sink_names = BTreeSet::new();
        for sink in &self.sinks {
            if !sink_names.insert(sink.name.as_str()) {
                errors.push(problem(
                    format!("stage `{stage}` has two sinks named `{}`", sink.name),
                    "give every sink of a stage its own name",
                ));
            }
            sink.validate(stage, errors);
        }
    }
}

impl SinkDescription {
    fn validate(&self, stage: &str, errors: &mut Vec<ConfigError>) {
        let sink = &self.name;
        if !is_valid_name(sink) {
            errors.push(problem(
                format!("stage `{stage}`: the sink name {sink:?} is not a resource name"),
                "use lower-case letters, digits and '-', starting with a letter",
            ));
        }
        if !SINK_KINDS.contains(&self.kind.as_str()) {
            errors.push(problem(
                format!("stage `{stage}`: sink `{sink}` is of the unknown kind {:?}", self.kind),
                format!("use one of {}", SINK_KINDS.join(", ")),
            ));
            return;
        }
        let target = self.target.as_deref().unwrap_or("");
        let needs_target = match self.kind.as_str() {
            "s3" => Some("a key prefix: `Sink::s3(name, \"<prefix>\")`"),
            "kinesis" => Some("the stream it writes: `Sink::kinesis(name, \"<stream>\", ..)`"),
            "postgres" => Some("the table it upserts into: `Sink::postgres(name, \"<table>\", ..)`"),
            _ => None,
        };
        if let Some(fix) = needs_target {
            if target.is_empty() {
                errors.push(problem(
                    format!("stage `{stage}`: sink `{sink}` ({}) has no address", self.kind),
                    format!("give it {fix}"),
                ));
            }
        }
        if self.kind == "kinesis" && !target.is_empty() && !is_valid_name(target) {
            errors.push(problem(
                format!("stage `{stage}`: sink `{sink}` writes the stream {target:?}, not a resource name"),
                "name the stream with lower-case letters, digits and '-', starting with a letter",
            ));
        }
        let expected = env_var(sink, address_suffix(&self.kind));
        if !self.env.iter().any(|v| v.name == expected) {
            errors.push(problem(
                format!(
                    "stage `{stage}`: sink `{sink}` ({}) has no address variable {expected}",
                    self.kind
                ),
                "describe the app with this version of shardflow-app (the variable names are derived from the sink's name)",
            ));
        }
    }
}

/// The suffix of the variable that addresses a sink of `kind` ([`env_var`]): `TOPIC_ARN`,
/// `QUEUE_URL`, `BUCKET`, `DATABASE_URL`, `STREAM` or `TABLE`.
pub fn address_suffix(kind: &str) -> &'static str {
    match kind {
        "sns" => "TOPIC_ARN",
        "sqs" => "QUEUE_URL",
        "s3" => "BUCKET",
        "postgres" => "DATABASE_URL",
        "kinesis" => "STREAM",
        _ => "TABLE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(kind: &str, target: Option<&str>) -> SinkDescription {
        SinkDescription {
            name: "out".into(),
            kind: kind.into(),
            target: target.map(str::to_owned),
            env: vec![EnvVar {
                name: env_var("out", address_suffix(kind)),
                required: true,
                meaning: String::new(),
            }],
        }
    }

    fn stage() -> StageDescription {
        StageDescription {
            name: "sessions".into(),
            function: "clickstream-sessions".into(),
            pipeline: Some("sessions".into()),
            source: Some(SourceDescription {
                stream: "page-views".into(),
                format: "json".into(),
            }),
            sinks: vec![sink("dynamodb", None)],
            dead_letters: "sqs".into(),
            state: StateNeeds {
                operators: vec![],
                spill: true,
            },
            env: vec![],
            role: StageRole::Whole,
        }
    }

    fn refused(stage: StageDescription) -> String {
        AppDescription {
            app: "clicks".into(),
            stages: vec![stage],
        }
        .validate()
        .expect_err("refused")
        .to_string()
    }

    #[test]
    fn a_complete_description_is_accepted() {
        let app = AppDescription {
            app: "clicks".into(),
            stages: vec![stage()],
        };
        assert_eq!(app.validate(), Ok(()));
        assert_eq!(app.streams(), BTreeSet::from(["page-views".to_owned()]));
    }

    #[test]
    fn a_stage_without_a_source_is_refused_with_the_call_that_adds_one() {
        let message = refused(StageDescription {
            source: None,
            ..stage()
        });
        assert!(message.contains("stage `sessions` has no source"), "{message}");
        assert!(message.contains("add `.source(Source::json("), "{message}");
    }

    #[test]
    fn an_unknown_format_is_refused_with_the_known_ones() {
        let message = refused(StageDescription {
            source: Some(SourceDescription {
                stream: "page-views".into(),
                format: "avro".into(),
            }),
            ..stage()
        });
        assert!(message.contains("unknown format \"avro\""), "{message}");
        assert!(message.contains("use one of json, protobuf, cdc"), "{message}");
    }

    #[test]
    fn a_sink_without_its_address_is_refused_with_what_to_give_it() {
        let message = refused(StageDescription {
            sinks: vec![sink("kinesis", None)],
            ..stage()
        });
        assert!(message.contains("sink `out` (kinesis) has no address"), "{message}");
        assert!(message.contains("the stream it writes"), "{message}");
        let message = refused(StageDescription {
            sinks: vec![SinkDescription {
                env: vec![],
                ..sink("sns", None)
            }],
            ..stage()
        });
        assert!(
            message.contains("has no address variable SHARDFLOW_SINK_OUT_TOPIC_ARN"),
            "{message}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let message = refused(StageDescription {
            name: "Bad Name".into(),
            sinks: vec![],
            dead_letters: "email".into(),
            ..stage()
        });
        for expected in ["not a resource name", "has no sink", "unknown destination \"email\""] {
            assert!(message.contains(expected), "{expected} in {message}");
        }
    }
}
