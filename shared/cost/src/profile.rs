//! What a platform is made of, for the model: its streams, and per stage a profile of the
//! requests one batch makes (measured from the stage's EMF lines, or given in a profile file).

use serde::{Deserialize, Serialize};

use crate::error::{at_least, CostError};

/// Where a stream's records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// The platform's input: one record per event, put by a producer (CDC).
    Source,
    /// A shuffle stream between an upstream and a keyed stage (not needed by Managed Flink,
    /// which shuffles inside the application).
    Shuffle,
    /// A stream a stage writes its results to.
    Output,
}

/// A Kinesis stream of the platform (provisioned mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// Its name.
    pub name: String,
    /// Its shards.
    pub shards: u32,
    /// Its retention, hours (over 24 is billed as extended retention, up to 168).
    pub retention_hours: u32,
    /// Bytes of one record (data plus partition key), for a [`StreamRole::Source`] stream.
    pub record_bytes: f64,
    /// Where its records come from.
    pub role: StreamRole,
}

/// A stage's DynamoDB state, per shard, from which the model derives read and write units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateProfile {
    /// Live state items (key-group slot items) of one shard; 0 for a stage whose checkpoint is
    /// only its position.
    pub live_items: f64,
    /// Bytes of all live state items of one shard.
    pub state_bytes: f64,
    /// Items a batch dirties (key groups changed); a commit writes these plus the checkpoint item.
    pub dirty_items_per_batch: f64,
    /// Bytes of the checkpoint item (position, `ver`, manifest naming every live slot).
    pub checkpoint_item_bytes: f64,
}

impl Default for StateProfile {
    fn default() -> Self {
        StateProfile {
            live_items: 0.0,
            state_bytes: 0.0,
            dirty_items_per_batch: 0.0,
            checkpoint_item_bytes: 300.0,
        }
    }
}

/// DynamoDB units measured directly, instead of derived from [`StateProfile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbUnits {
    /// Read units of loading a shard's state (a batch at per-batch commits; a cold reload).
    pub load_rru: f64,
    /// Read units of the check a warm batch makes between checkpoints.
    pub warm_check_rru: f64,
    /// Write units of one commit (the transactional doubling and the deletes included).
    pub commit_wru: f64,
}

/// Where a stage's results go besides SNS and S3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StageOutput {
    /// One Kinesis record per result (the next stage's input).
    Records {
        /// The stream.
        stream: String,
    },
    /// The upstream half of a shuffle: a batch's records packed into one frame per shard of
    /// the shuffle stream (KPL-style, `shardflow-shuffle`), with its watermark.
    Shuffle {
        /// The shuffle stream.
        stream: String,
        /// Bytes of one shuffled record in a frame (payload, id, key group, timestamp).
        bytes_per_record: f64,
    },
}

/// The requests one batch of a stage makes, and what it is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageProfile {
    /// The stage.
    pub name: String,
    /// The stream it consumes.
    pub input_stream: String,
    /// The function's memory, MB.
    pub memory_mb: f64,
    /// Invocations per batch (1 unless batches are bisected or retried).
    pub invocations_per_batch: f64,
    /// Billed duration of a batch at per-batch commits, ms (load, process, sink, commit).
    pub duration_ms_per_batch: f64,
    /// The part of it spent loading state from DynamoDB, ms.
    pub load_ms: f64,
    /// The part of it spent committing, ms.
    pub commit_ms: f64,
    /// Duration of the check a warm batch makes instead of a load (checkpoint interval), ms.
    pub warm_check_ms: f64,
    /// Records the stage receives per event put into the platform.
    pub records_per_event: f64,
    /// Its state in DynamoDB.
    pub state: StateProfile,
    /// DynamoDB units measured directly; when set they replace the units derived from `state`.
    pub dynamodb_units: Option<DynamoDbUnits>,
    /// Kinesis `GetRecords` calls per batch (free on shared throughput; counted, not billed).
    pub get_records_per_batch: f64,
    /// Results per input record.
    pub results_per_record: f64,
    /// Bytes of one result as a sink writes it.
    pub result_bytes: f64,
    /// SNS messages per result (sent with `PublishBatch`, 10 a request).
    pub sns_messages_per_result: f64,
    /// S3 objects written per result.
    pub s3_puts_per_result: f64,
    /// S3 objects written per batch.
    pub s3_puts_per_batch: f64,
    /// S3 objects written per input shard and hour whatever the rate: one per closed event-time
    /// bucket (`S3KeyMode::EventTimeBuckets`, e.g. 60 for buckets of a minute). Each result's
    /// `result_bytes` are written once, in its bucket's object.
    pub s3_bucket_objects_per_shard_hour: f64,
    /// Bytes of the per-batch objects per input record.
    pub s3_put_bytes_per_record: f64,
    /// S3 GETs per batch (spilled state, for example).
    pub s3_gets_per_batch: f64,
    /// SQS requests per batch (dead letters).
    pub sqs_requests_per_batch: f64,
    /// A Kinesis output, if any.
    pub output: Option<StageOutput>,
    /// Log bytes Lambda writes per invocation (START, END, REPORT lines, 26 B of overhead each).
    pub platform_log_bytes_per_invocation: f64,
    /// Bytes of the stage's EMF line per batch (26 B of overhead included).
    pub emf_bytes_per_batch: f64,
    /// CloudWatch custom metrics the stage's EMF lines define. The line publishes on the
    /// dimension `Stage` only (the shard is a property), so this does not grow with shards.
    /// (Read also under its former name `emf_metrics_per_shard`.)
    #[serde(alias = "emf_metrics_per_shard")]
    pub emf_metrics: f64,
    /// Whether the stage keeps keyed state in windows (so Lambda tumbling windows would hold it).
    pub keyed: bool,
}

impl Default for StageProfile {
    fn default() -> Self {
        StageProfile {
            name: String::new(),
            input_stream: String::new(),
            memory_mb: 256.0,
            invocations_per_batch: 1.0,
            duration_ms_per_batch: 50.0,
            load_ms: 10.0,
            commit_ms: 15.0,
            warm_check_ms: 5.0,
            records_per_event: 1.0,
            state: StateProfile::default(),
            dynamodb_units: None,
            get_records_per_batch: 1.0,
            results_per_record: 0.0,
            result_bytes: 500.0,
            sns_messages_per_result: 0.0,
            s3_puts_per_result: 0.0,
            s3_puts_per_batch: 0.0,
            s3_bucket_objects_per_shard_hour: 0.0,
            s3_put_bytes_per_record: 0.0,
            s3_gets_per_batch: 0.0,
            sqs_requests_per_batch: 0.0,
            output: None,
            platform_log_bytes_per_invocation: crate::shop::PLATFORM_LOG_BYTES,
            emf_bytes_per_batch: crate::shop::EMF_LINE_BYTES + crate::shop::LOG_EVENT_OVERHEAD_BYTES,
            emf_metrics: 12.0,
            keyed: false,
        }
    }
}

impl StageProfile {
    /// Checks every figure is finite and in range.
    pub fn validate(&self) -> Result<(), CostError> {
        let at = |field: &str| format!("stage {}: {field}", self.name);
        at_least(at("memory_mb"), self.memory_mb, 128.0, "at least 128")?;
        let non_negative = [
            ("invocations_per_batch", self.invocations_per_batch),
            ("duration_ms_per_batch", self.duration_ms_per_batch),
            ("load_ms", self.load_ms),
            ("commit_ms", self.commit_ms),
            ("warm_check_ms", self.warm_check_ms),
            ("records_per_event", self.records_per_event),
            ("state.live_items", self.state.live_items),
            ("state.state_bytes", self.state.state_bytes),
            ("state.dirty_items_per_batch", self.state.dirty_items_per_batch),
            ("state.checkpoint_item_bytes", self.state.checkpoint_item_bytes),
            ("get_records_per_batch", self.get_records_per_batch),
            ("results_per_record", self.results_per_record),
            ("result_bytes", self.result_bytes),
            ("sns_messages_per_result", self.sns_messages_per_result),
            ("s3_puts_per_result", self.s3_puts_per_result),
            ("s3_puts_per_batch", self.s3_puts_per_batch),
            (
                "s3_bucket_objects_per_shard_hour",
                self.s3_bucket_objects_per_shard_hour,
            ),
            ("s3_put_bytes_per_record", self.s3_put_bytes_per_record),
            ("s3_gets_per_batch", self.s3_gets_per_batch),
            ("sqs_requests_per_batch", self.sqs_requests_per_batch),
            (
                "platform_log_bytes_per_invocation",
                self.platform_log_bytes_per_invocation,
            ),
            ("emf_bytes_per_batch", self.emf_bytes_per_batch),
            ("emf_metrics", self.emf_metrics),
        ];
        for (field, value) in non_negative {
            at_least(at(field), value, 0.0, "a finite number ≥ 0")?;
        }
        if let Some(units) = &self.dynamodb_units {
            at_least(
                at("dynamodb_units.load_rru"),
                units.load_rru,
                0.0,
                "a finite number ≥ 0",
            )?;
            at_least(
                at("dynamodb_units.warm_check_rru"),
                units.warm_check_rru,
                0.0,
                "a finite number ≥ 0",
            )?;
            at_least(
                at("dynamodb_units.commit_wru"),
                units.commit_wru,
                0.0,
                "a finite number ≥ 0",
            )?;
        }
        if let Some(StageOutput::Shuffle { bytes_per_record, .. }) = &self.output {
            at_least(
                at("output.shuffle.bytes_per_record"),
                *bytes_per_record,
                0.0,
                "a finite number ≥ 0",
            )?;
        }
        Ok(())
    }
}

/// How a figure of the model was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BasisKind {
    /// Measured by this repository (a test, a benchmark, a deployed stack on LocalStack, EMF).
    Measured,
    /// Read off the code or the deployment template.
    FromCode,
    /// Given on the command line or in a profile file.
    Configured,
    /// Assumed: no measurement yet.
    Assumed,
}

/// One figure the model rests on, with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    /// What it is.
    pub figure: String,
    /// How it was obtained.
    pub kind: BasisKind,
    /// The measurement's command, the code or the reasoning.
    pub source: String,
}

impl Basis {
    /// A figure of `kind` from `source`.
    pub fn new(kind: BasisKind, figure: impl Into<String>, source: impl Into<String>) -> Self {
        Basis {
            figure: figure.into(),
            kind,
            source: source.into(),
        }
    }
}

/// A platform: its streams and stages, in order (a stage's input is written before it is read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// Its name.
    pub name: String,
    /// Its Kinesis streams.
    pub streams: Vec<StreamSpec>,
    /// Its stages.
    pub stages: Vec<StageProfile>,
    /// What its figures rest on.
    pub basis: Vec<Basis>,
}

impl Platform {
    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The stage named `name`, for changing it.
    pub fn stage_mut(&mut self, name: &str) -> Result<&mut StageProfile, CostError> {
        let known = self
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.stages
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| CostError::UnknownStage {
                stage: name.to_owned(),
                known,
            })
    }

    /// Checks every stage's figures and that every stream a stage names exists.
    pub fn validate(&self) -> Result<(), CostError> {
        for stream in &self.streams {
            at_least(
                format!("stream {}: shards", stream.name),
                f64::from(stream.shards),
                1.0,
                "at least 1",
            )?;
            crate::error::within(
                format!("stream {}: retention_hours", stream.name),
                f64::from(stream.retention_hours),
                24.0,
                168.0,
                "24 to 168 (longer retention is not modelled)",
            )?;
            at_least(
                format!("stream {}: record_bytes", stream.name),
                stream.record_bytes,
                0.0,
                "a finite number ≥ 0",
            )?;
        }
        for stage in &self.stages {
            stage.validate()?;
            let named = [Some(stage.input_stream.as_str()), stage.output_stream()];
            for stream in named.into_iter().flatten() {
                if self.stream(stream).is_none() {
                    return Err(CostError::UnknownStream {
                        stage: stage.name.clone(),
                        stream: stream.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Replaces the fields of stages that `overrides` (a JSON object `{"stages": [...]}`, each
    /// with a `name` and any fields of [`StageProfile`]) gives; a stage the platform lacks is
    /// added from the defaults.
    pub fn apply_profile(&mut self, overrides: &serde_json::Value, origin: &str) -> Result<(), CostError> {
        let bad = |source: serde_json::Error| CostError::Json {
            path: origin.into(),
            source,
        };
        let shape = |what: &str| bad(serde::de::Error::custom(what));
        let stages = overrides
            .get("stages")
            .and_then(|s| s.as_array())
            .ok_or_else(|| shape("expected an object with an array \"stages\""))?;
        for entry in stages {
            let fields = entry.as_object().ok_or_else(|| shape("each stage must be an object"))?;
            let name = fields
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| shape("each stage needs a \"name\""))?;
            let index = self.stages.iter().position(|s| s.name == name);
            let base = match index {
                Some(i) => &self.stages[i],
                None => &StageProfile {
                    name: name.to_owned(),
                    ..StageProfile::default()
                },
            };
            let mut merged = serde_json::to_value(base).map_err(bad)?;
            merge(&mut merged, entry);
            let stage: StageProfile = serde_json::from_value(merged).map_err(bad)?;
            let keys = fields
                .keys()
                .filter(|k| *k != "name")
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            self.basis.push(Basis::new(
                BasisKind::Configured,
                format!("{name}: {keys}"),
                format!("profile {origin}"),
            ));
            match index {
                Some(i) => self.stages[i] = stage,
                None => self.stages.push(stage),
            }
        }
        Ok(())
    }
}

impl StageProfile {
    /// The stream the stage writes to, if any.
    pub fn output_stream(&self) -> Option<&str> {
        match &self.output {
            Some(StageOutput::Records { stream }) | Some(StageOutput::Shuffle { stream, .. }) => Some(stream),
            None => None,
        }
    }
}

/// Overlays `patch` on `base` key by key; `state` is merged field by field, any other field
/// (`output` and `dynamodb_units` included) is replaced whole.
fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(slot) if key == "state" && value.is_object() && slot.is_object() => merge(slot, value),
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}
