//! The typed pipeline builder: input, transforms, window and trigger, sink.
//!
//! ```
//! use shardflow_engine::{combine::{Count, Sum}, Pipeline, Trigger, Windowing, WatermarkStrategy};
//!
//! #[derive(Clone)]
//! struct Purchase { product: u32, cents: i64, ts: i64 }
//!
//! let revenue = Pipeline::builder("revenue")
//!     .watermarks(WatermarkStrategy::bounded_out_of_orderness(4_000).unwrap())
//!     .event_time(|p: &Purchase| p.ts)
//!     .filter(|p| p.cents > 0)
//!     .key_by(|p| p.product)
//!     .window(Windowing::tumbling(60_000).unwrap())
//!     .trigger(Trigger::at_watermark())
//!     .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |product, window, _pane, (orders, cents)| {
//!         (*product, window.start, orders, cents)
//!     })
//!     .sink("revenue");
//! let mut engine = revenue.engine();
//! let shard = engine.partition("shard-0");
//! engine.process(shard, 0, 0, Purchase { product: 7, cents: 250, ts: 1_000 });
//! engine.finish();
//! assert_eq!(engine.drain_output()[0].value, (7, 0, 1, 250));
//! ```
//!
//! A [`Pipeline`] is a description: it can be instantiated into any number of independent
//! [`Engine`](crate::Engine)s (one per Lambda invocation, one per benchmark run, one per test
//! case).
//!
//! Stateful operators are known by ids; see [`StatefulOperator`].

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::combine::{CollectBySide, Combiner};
use crate::error::PipelineError;
use crate::lift::{can_lift, BatchCombiner, BatchCombinerFactory, Lifted, WindowPartials};
use crate::operators::{
    BucketResults, Deduplicate, EventTimeBuckets, Filter, FilterMap, FlatMap, IntervalJoin, IntervalJoinSide,
    KeyedProcess, KeyedProcessFunction, LiftedWindowAggregate, LookupJoin, LookupTable, Map, Operator, PairFn,
    ResultFn, ShuffleSink, Sink, WindowAggregate,
};
use crate::record::ShuffleOutput;
use crate::schema::{NoMigration, StateMigration, StateSchema};
use crate::state::{key_group, StateKey, DEFAULT_MAX_KEY_GROUPS};
use crate::time::{DurationMs, Timestamp};
use crate::trigger::{PaneInfo, Trigger};
use crate::watermark::WatermarkStrategy;
use crate::window::{Window, Windowing};

/// Builds the operators of a stream's steps in front of `next`, given the final ids of the
/// pipeline's stateful operators (known only at [`Stream::sink`], as a uid follows its step).
type BuildFn<In, T> = Arc<dyn Fn(&[StatefulOperator], Box<dyn Operator<T>>) -> Box<dyn Operator<In>> + Send + Sync>;

/// The kinds of stateful operators, as they appear in their default ids.
pub(crate) const STATEFUL_KINDS: [&str; 5] = [
    WINDOW_AGGREGATE,
    KEYED_PROCESS,
    INTERVAL_JOIN,
    crate::operators::deduplicate::KIND,
    crate::operators::event_time_buckets::KIND,
];
const WINDOW_AGGREGATE: &str = "window_aggregate";
const KEYED_PROCESS: &str = "keyed_process";
const INTERVAL_JOIN: &str = "interval_join";

/// A stateful operator of a pipeline: its kind and the id its state is kept under.
///
/// # Ids
/// Every stateful operator (`aggregate`, `join`, `process`, `interval_join`, `deduplicate`) has
/// an id that names its state in checkpoints, its late records and its result ids. The author
/// sets it with [`Stream::uid`] right after the step that creates the operator; without one, the
/// operator has a *default id*, `{kind}-{n}`: its kind and how many stateful operators of the
/// same kind come before it (`window_aggregate-0`, `window_aggregate-1`, `deduplicate-0`). A
/// default id does not move when stateless steps (`map`, `filter`, `filter_map`, `flat_map`,
/// `lookup_join`) are added or removed, nor when stateful operators of another kind are; it does
/// when an operator of the same kind is added before it — give an operator a uid when the
/// pipeline around it is expected to change. Ids are unique in a pipeline: [`Stream::uid`]
/// refuses one that another operator has or may get.
///
/// Checkpoints of format version 1 named operators by their position among all steps
/// (`{position}-{kind}`); [`Engine::restore`](crate::Engine::restore) reads them under the default
/// ids (see [`crate::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulOperator {
    kind: &'static str,
    default_id: String,
    uid: Option<String>,
    schema: StateSchema,
    migrates_from: Vec<u32>,
}

impl StatefulOperator {
    /// The id its state, late records and result ids are known by: its uid if it has one, its
    /// default id otherwise.
    pub fn id(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.default_id)
    }

    /// Its kind: `window_aggregate` (`aggregate` and `join`), `keyed_process`, `interval_join`
    /// or `deduplicate`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The id it would have without a uid: `{kind}-{n}`, `n` the number of stateful operators of
    /// the same kind before it.
    pub fn default_id(&self) -> &str {
        &self.default_id
    }

    /// The id the author set with [`Stream::uid`], if any.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The schema of its state: version and type (see [`crate::schema`]).
    pub fn schema(&self) -> &StateSchema {
        &self.schema
    }

    /// The older schema versions of its state it migrates from (see [`crate::schema`]).
    pub fn migrates_from(&self) -> &[u32] {
        &self.migrates_from
    }
}

/// What every instance of a pipeline shares: its name, event-time extractor, watermark strategy
/// and key-group count.
pub(crate) struct PipelineDef<In> {
    pub(crate) name: String,
    pub(crate) timestamp_fn: Arc<dyn Fn(&In) -> Timestamp + Send + Sync>,
    pub(crate) watermarks: WatermarkStrategy,
    pub(crate) max_key_groups: u16,
}

/// Entry point: `Pipeline::builder(name)`.
pub struct PipelineBuilder<In> {
    name: String,
    watermarks: WatermarkStrategy,
    max_key_groups: u16,
    _in: PhantomData<fn(In)>,
}

impl<In: Send + 'static> PipelineBuilder<In> {
    /// How watermarks are generated per input partition (default: 4 s out-of-orderness).
    pub fn watermarks(mut self, strategy: WatermarkStrategy) -> Self {
        self.watermarks = strategy;
        self
    }

    /// The number of key groups (default 128). Fixed for the pipeline's life: changing it makes
    /// existing checkpoints unreadable (they are refused, not misread).
    pub fn max_key_groups(mut self, n: u16) -> Self {
        self.max_key_groups = n.max(1);
        self
    }

    /// Declares the input's event time; the stream of input values starts here.
    pub fn event_time(self, f: impl Fn(&In) -> Timestamp + Send + Sync + 'static) -> Stream<In, In> {
        Stream {
            def: Arc::new(PipelineDef {
                name: self.name,
                timestamp_fn: Arc::new(f),
                watermarks: self.watermarks,
                max_key_groups: self.max_key_groups,
            }),
            build: Arc::new(|_, next| next),
            stateful: Vec::new(),
            last_step: None,
            up: Unsplit,
        }
    }
}

/// A stream of `T` values inside a pipeline whose input is `In`.
pub struct Stream<In, T, Up = Unsplit> {
    def: Arc<PipelineDef<In>>,
    build: BuildFn<In, T>,
    /// The stateful operators declared so far, in order.
    stateful: Vec<StatefulOperator>,
    /// The builder step that made this stream: its kind, and the index in `stateful` of the
    /// operator it created, if it is stateful (what [`Stream::uid`] names).
    last_step: Option<(&'static str, Option<usize>)>,
    /// What precedes the shuffle marker, if the stream is past one ([`Upstream`]).
    up: Up,
}

impl<In: Send + 'static, T: Send + 'static, Up> Stream<In, T, Up> {
    /// Appends a stateless step.
    fn then<U: Send + 'static>(
        self,
        kind: &'static str,
        make: impl Fn(Box<dyn Operator<U>>) -> Box<dyn Operator<T>> + Send + Sync + 'static,
    ) -> Stream<In, U, Up> {
        let prev = self.build;
        Stream {
            def: self.def,
            build: Arc::new(move |ids, next| prev(ids, make(next))),
            stateful: self.stateful,
            last_step: Some((kind, None)),
            up: self.up,
        }
    }

    /// Appends a stateful operator of `kind` whose state has `schema` (and migrates from the
    /// versions `migrates_from`), with its default id; `make` gets its final id (a uid may still
    /// follow) and the key-group count.
    fn then_stateful<U: Send + 'static>(
        mut self,
        kind: &'static str,
        (schema, migrates_from): (StateSchema, Vec<u32>),
        make: impl Fn(String, u16, Box<dyn Operator<U>>) -> Box<dyn Operator<T>> + Send + Sync + 'static,
    ) -> Stream<In, U, Up> {
        let slot = self.stateful.len();
        let ordinal = self.stateful.iter().filter(|o| o.kind == kind).count();
        self.stateful.push(StatefulOperator {
            kind,
            default_id: format!("{kind}-{ordinal}"),
            uid: None,
            schema,
            migrates_from,
        });
        let max_key_groups = self.def.max_key_groups;
        let prev = self.build;
        Stream {
            def: self.def,
            build: Arc::new(move |ids, next| {
                // `ids` are this stream's `stateful` with their final uids: `slot` is in range.
                let id = ids.get(slot).map_or_else(String::new, |o| o.id().to_owned());
                prev(ids, make(id, max_key_groups, next))
            }),
            stateful: self.stateful,
            last_step: Some((kind, Some(slot))),
            up: self.up,
        }
    }

    /// Names the stateful operator the previous builder step created (Flink's `uid`): its
    /// state is kept under `uid` in checkpoints, so that it is found again after the pipeline
    /// around it changes, and `uid` names it in late records and result ids. See
    /// [`StatefulOperator`] for the default id an operator has without one.
    ///
    /// Refused, with a [`PipelineError`] naming the id, when:
    /// - the previous step is not a stateful operator (`map`, `filter`, ... or no step at all):
    ///   [`PipelineError::UidOnStatelessStep`];
    /// - that operator already has a uid: [`PipelineError::UidAlreadySet`];
    /// - `uid` is empty, or has the form `{number}-{kind}` of the positional ids of format
    ///   version 1 checkpoints, or is the default id `{kind}-{n}` of an operator of that kind
    ///   declared later (a uid may only take the default id of this operator or of an earlier
    ///   one with a uid of its own: how an operator keeps its state when one of its kind is
    ///   added before it): [`PipelineError::InvalidUid`];
    /// - another operator of the pipeline already has the id: [`PipelineError::DuplicateOperatorId`].
    ///
    /// ```
    /// use shardflow_engine::combine::Sum;
    /// use shardflow_engine::{Pipeline, PipelineError, Windowing};
    ///
    /// # fn main() -> Result<(), PipelineError> {
    /// // (product, event time, cents)
    /// let revenue = Pipeline::builder("revenue")
    ///     .event_time(|r: &(u32, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(60_000)?)
    ///     .aggregate(Sum::of(|r: &(u32, i64, i64)| r.2), |product, _window, _pane, cents| (*product, cents))
    ///     .uid("revenue-window")?
    ///     .sink("revenue");
    /// let ids: Vec<_> = revenue.stateful_operators().iter().map(|o| o.id()).collect();
    /// assert_eq!(ids, ["revenue-window"]);
    /// assert_eq!(revenue.stateful_operators()[0].default_id(), "window_aggregate-0");
    ///
    /// // Two operators cannot share an id.
    /// let twice = Pipeline::builder("dedup")
    ///     .event_time(|r: &(u64, i64)| r.1)
    ///     .deduplicate(|r| r.0, 60_000)
    ///     .uid("once")?
    ///     .deduplicate(|r| r.0, 60_000)
    ///     .uid("once");
    /// assert_eq!(twice.err(), Some(PipelineError::DuplicateOperatorId { id: "once".into() }));
    ///
    /// // A uid names a stateful operator; a map has no state.
    /// let stateless = Pipeline::builder("map").event_time(|r: &(u64, i64)| r.1).map(|r| r.0).uid("m");
    /// assert!(matches!(stateless, Err(PipelineError::UidOnStatelessStep { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn uid(mut self, uid: &str) -> Result<Self, PipelineError> {
        let refuse = |reason: String| PipelineError::InvalidUid {
            uid: uid.to_owned(),
            reason,
        };
        let (step, slot) = match self.last_step {
            Some((step, Some(slot))) if slot < self.stateful.len() => (step, slot),
            Some((step, _)) => {
                return Err(PipelineError::UidOnStatelessStep {
                    step,
                    uid: uid.to_owned(),
                })
            }
            None => {
                return Err(PipelineError::UidOnStatelessStep {
                    step: "event_time",
                    uid: uid.to_owned(),
                })
            }
        };
        if let Some(set) = &self.stateful[slot].uid {
            return Err(PipelineError::UidAlreadySet {
                step,
                uid: set.clone(),
                refused: uid.to_owned(),
            });
        }
        if uid.is_empty() {
            return Err(refuse("an operator id cannot be empty".into()));
        }
        if uid.starts_with(crate::schema::SCHEMA_ENTRY_PREFIX) {
            return Err(refuse(format!(
                "ids starting with {:?} name the state schemas in checkpoints",
                crate::schema::SCHEMA_ENTRY_PREFIX
            )));
        }
        if crate::restore::legacy_id(uid).is_some() {
            return Err(refuse(
                "ids of the form {number}-{kind} are the positional ids of format version 1 checkpoints, \
                 read as the default ids of their operators; choose another"
                    .into(),
            ));
        }
        if let Some((kind, n)) = default_id_parts(uid) {
            let declared = self.stateful.iter().filter(|o| o.kind == kind).count();
            if n >= declared {
                return Err(refuse(format!(
                    "{uid} is the default id of a {kind} operator declared later in this pipeline; \
                     choose another"
                )));
            }
        }
        if self
            .stateful
            .iter()
            .enumerate()
            .any(|(i, o)| i != slot && o.id() == uid)
        {
            return Err(PipelineError::DuplicateOperatorId { id: uid.to_owned() });
        }
        self.stateful[slot].uid = Some(uid.to_owned());
        Ok(self)
    }

    /// Transforms every value.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<In, U, Up> {
        let f: Arc<dyn Fn(T) -> U + Send + Sync> = Arc::new(f);
        self.then("map", move |next| Box::new(Map { f: f.clone(), next }))
    }

    /// Keeps the values for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<In, T, Up> {
        let f: Arc<dyn Fn(&T) -> bool + Send + Sync> = Arc::new(f);
        self.then("filter", move |next| Box::new(Filter { f: f.clone(), next }))
    }

    /// Transforms and filters in one step.
    pub fn filter_map<U: Send + 'static>(
        self,
        f: impl Fn(T) -> Option<U> + Send + Sync + 'static,
    ) -> Stream<In, U, Up> {
        let f: Arc<dyn Fn(T) -> Option<U> + Send + Sync> = Arc::new(f);
        self.then("filter_map", move |next| Box::new(FilterMap { f: f.clone(), next }))
    }

    /// Emits every value `f` returns for a value.
    pub fn flat_map<U: Send + 'static>(self, f: impl Fn(T) -> Vec<U> + Send + Sync + 'static) -> Stream<In, U, Up> {
        let f: Arc<dyn Fn(T) -> Vec<U> + Send + Sync> = Arc::new(f);
        self.then("flat_map", move |next| Box::new(FlatMap { f: f.clone(), next }))
    }

    /// Enriches every value with a row of `table` found by `key`; `join` gets the row or `None`
    /// and returns the result, or `None` to drop the value (an inner join).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::sync::Arc;
    /// use shardflow_engine::{LookupTable, Pipeline};
    ///
    /// let categories: Arc<dyn LookupTable<u32, &str>> = Arc::new(HashMap::from([(7, "books")]));
    /// // (product, event time)
    /// let enriched = Pipeline::builder("lookup")
    ///     .event_time(|r: &(u32, i64)| r.1)
    ///     .lookup_join(categories, |r| r.0, |r, category| category.map(|c| (r.0, c)))
    ///     .sink("enriched");
    /// let mut engine = enriched.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, (7, 1));
    /// engine.process(shard, 1, 0, (8, 2)); // no row: dropped by this inner join
    /// let out: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(out, [(7, "books")]);
    /// ```
    pub fn lookup_join<K: 'static, V: 'static, O: Send + 'static>(
        self,
        table: Arc<dyn LookupTable<K, V>>,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        join: impl Fn(T, Option<V>) -> Option<O> + Send + Sync + 'static,
    ) -> Stream<In, O, Up> {
        let key_fn: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key);
        let join_fn: Arc<dyn Fn(T, Option<V>) -> Option<O> + Send + Sync> = Arc::new(join);
        self.then("lookup_join", move |next| {
            Box::new(LookupJoin {
                table: table.clone(),
                key_fn: key_fn.clone(),
                join_fn: join_fn.clone(),
                next,
            })
        })
    }

    /// Drops every value whose id (`id_fn`) was already seen: makes an at-least-once input, such
    /// as a Kinesis stream written by an upstream stage that may write a result twice, exactly
    /// once. Ids are remembered until the watermark passes their first occurrence's event time
    /// plus `horizon_ms`, which must cover how late a repeat can arrive (a redelivery of the
    /// upstream stage). Dropped repeats are counted in [`crate::EngineMetrics::duplicates_dropped`];
    /// a value too late to be checked goes to the late side output. See
    /// [`crate::operators`] and the operator's module documentation.
    ///
    /// ```
    /// use shardflow_engine::Pipeline;
    ///
    /// // (result id, event time): an upstream stage wrote result 7 twice.
    /// let once = Pipeline::builder("dedup")
    ///     .event_time(|r: &(u64, i64)| r.1)
    ///     .deduplicate(|r| r.0, 60_000)
    ///     .sink("once");
    /// let mut engine = once.engine();
    /// let shard = engine.partition("shard-0");
    /// for (offset, r) in [(7, 1), (8, 2), (7, 1)].into_iter().enumerate() {
    ///     engine.process(shard, offset as u64, 0, r);
    /// }
    /// let out: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(out, [(7, 1), (8, 2)]);
    /// assert_eq!(engine.metrics().duplicates_dropped, 1);
    /// ```
    pub fn deduplicate<I: StateKey>(
        self,
        id_fn: impl Fn(&T) -> I + Send + Sync + 'static,
        horizon_ms: DurationMs,
    ) -> Stream<In, T, Up> {
        self.deduplicate_migrating(id_fn, horizon_ms, NoMigration)
    }

    /// [`Stream::deduplicate`], reading the ids a checkpoint stored at an older schema version
    /// through `migration` (see [`crate::schema::from_version`]): for a change of the id type.
    /// A converted id is remembered until its first occurrence's time plus the horizon, as
    /// before.
    pub fn deduplicate_migrating<I: StateKey>(
        self,
        id_fn: impl Fn(&T) -> I + Send + Sync + 'static,
        horizon_ms: DurationMs,
        migration: impl StateMigration<I>,
    ) -> Stream<In, T, Up> {
        let id_fn: Arc<dyn Fn(&T) -> I + Send + Sync> = Arc::new(id_fn);
        let schema = (StateSchema::of::<I>(migration.version()), migration.migrates_from());
        let migration = Arc::new(migration);
        self.then_stateful(crate::operators::deduplicate::KIND, schema, move |id, max_kg, next| {
            Box::new(Deduplicate::new(
                id,
                max_kg,
                id_fn.clone(),
                horizon_ms,
                migration.clone(),
                next,
            ))
        })
    }

    /// The stream with its results also collected per event-time bucket (the stateful operator
    /// of [`Stream::sink_with_buckets`]).
    fn bucketed(self, buckets: EventTimeBuckets) -> Stream<In, T, Up>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        let schema = (StateSchema::of::<T>(1), Vec::new());
        self.then_stateful(
            crate::operators::event_time_buckets::KIND,
            schema,
            move |id, max_kg, next| Box::new(BucketResults::new(id, max_kg, buckets, next)),
        )
    }

    /// Partitions the stream by key: what follows keeps state per key.
    pub fn key_by<K: StateKey>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<In, K, T, Up> {
        KeyedStream {
            stream: self,
            key_fn: Arc::new(f),
        }
    }
}

impl<In: Send + 'static, T: Send + 'static> Stream<In, T, Unsplit> {
    /// Ends the pipeline as [`Stream::sink`] does, and also collects its results per event-time
    /// bucket in keyed state (a stateful operator of kind `event_time_buckets`, before the sink):
    /// [`Engine::drain_buckets`](crate::Engine::drain_buckets) hands out each bucket once, with
    /// its results sorted by id, when the watermark passes it (see [`EventTimeBuckets`]). The
    /// results still come out one by one as well, with the same ids. What a closed bucket holds
    /// does not depend on how the input was batched, so a sink can write one object per bucket
    /// and stay exactly-once under replays.
    ///
    /// ```
    /// use shardflow_engine::{EventTimeBuckets, Pipeline};
    ///
    /// let p = Pipeline::builder("b")
    ///     .event_time(|r: &(u32, i64)| r.1)
    ///     .sink_with_buckets("out", EventTimeBuckets::new(1_000).expect("positive"));
    /// let mut engine = p.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, (1, 100));
    /// engine.process(shard, 1, 0, (2, 900));
    /// engine.process(shard, 2, 0, (3, 1_500));
    /// assert_eq!(engine.drain_output().len(), 3);
    /// engine.finish();
    /// let buckets = engine.drain_buckets();
    /// let sizes: Vec<_> = buckets.iter().map(|b| (b.start, b.results.len())).collect();
    /// assert_eq!(sizes, [(0, 2), (1_000, 1)]);
    /// ```
    pub fn sink_with_buckets(self, name: &str, buckets: EventTimeBuckets) -> Pipeline<In, T>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        self.bucketed(buckets).sink(name)
    }

    /// Ends the pipeline: its results are drained from the engine and written to the sink named
    /// `name` by whatever runs the pipeline (the local runner, a Lambda stage).
    ///
    /// Cannot fail: every id was checked where it was set ([`Stream::uid`]), and default ids
    /// are unique by construction.
    pub fn sink(self, name: &str) -> Pipeline<In, T> {
        let build = self.build;
        let stateful: Arc<[StatefulOperator]> = self.stateful.into();
        let ids = stateful.clone();
        Pipeline {
            def: self.def,
            build: Arc::new(move || build(&ids, Box::new(Sink::<T> { _t: PhantomData }))),
            stateful,
            sink: name.to_owned(),
            _out: PhantomData,
        }
    }
}

impl<In: Send + 'static, S: Send + 'static, T: Send + 'static> Stream<S, T, Upstream<In, S>> {
    /// Ends a pipeline with a shuffle marker as [`Stream::sink_with_buckets`] ends one without:
    /// the downstream half (and the whole) also collect the results per event-time bucket, so
    /// the keyed stage can write one object per bucket. See [`SplitPipeline`].
    pub fn sink_with_buckets(self, name: &str, buckets: EventTimeBuckets) -> SplitPipeline<In, S, T>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        self.bucketed(buckets).sink(name)
    }

    /// Ends a pipeline with a shuffle marker ([`KeyedStream::shuffle`]): its two halves and the
    /// whole, see [`SplitPipeline`]. Cannot fail, as [`Stream::sink`].
    pub fn sink(self, name: &str) -> SplitPipeline<In, S, T> {
        let Upstream {
            def: up_def,
            build: up_build,
            key_group,
            lift,
        } = self.up;
        let (down_build, down_def) = (self.build, self.def);
        let stateful: Arc<[StatefulOperator]> = self.stateful.into();
        let ids = stateful.clone();
        let (up, down) = (up_build.clone(), down_build.clone());
        let whole = Pipeline {
            def: up_def.clone(),
            build: Arc::new(move || up(&ids, down(&ids, Box::new(Sink::<T> { _t: PhantomData })))),
            stateful: stateful.clone(),
            sink: name.to_owned(),
            _out: PhantomData,
        };
        let upstream = Pipeline {
            def: up_def,
            build: Arc::new(move || up_build(&[], Box::new(ShuffleSink::new(key_group.clone())))),
            stateful: Arc::from(Vec::new()),
            sink: SHUFFLE_SINK.to_owned(),
            _out: PhantomData,
        };
        let ids = stateful.clone();
        let downstream = Pipeline {
            def: down_def,
            build: Arc::new(move || down_build(&ids, Box::new(Sink::<T> { _t: PhantomData }))),
            stateful,
            sink: name.to_owned(),
            _out: PhantomData,
        };
        SplitPipeline {
            whole,
            upstream,
            downstream,
            lift,
        }
    }
}

/// The sink name of a split pipeline's upstream half.
pub const SHUFFLE_SINK: &str = "shuffle";

/// The state of a stream with no shuffle marker before it (the default of [`Stream`]'s last
/// type parameter).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsplit;

/// What precedes the shuffle marker of a stream ([`KeyedStream::shuffle`]): the upstream half's
/// definition and steps, from input `In` to the shuffled values `S`, and how a value's key group
/// is found.
pub struct Upstream<In, S> {
    def: Arc<PipelineDef<In>>,
    build: BuildFn<In, S>,
    key_group: Arc<dyn Fn(&S) -> u16 + Send + Sync>,
    /// The batch combiners of a lifted aggregation ([`WindowedStream::aggregate_lifted`]).
    lift: Option<BatchCombinerFactory<S>>,
}

/// A pipeline cut by a shuffle marker into two halves that run as two stages joined by a
/// shuffle (Flink's `keyBy` between tasks), and the same pipeline whole.
///
/// - `upstream` reads the input: event time, the stateless steps before the marker, the key.
///   Its results are [`ShuffleOutput`]s: each value with its key group and input provenance,
///   at the event time it has; send each to the shuffle shard owning its key group, with the
///   watermark its input partition had just before its input record
///   ([`crate::Engine::partition_watermark`]).
/// - `downstream` is the keyed rest (windows, joins, process), with
///   [`WatermarkStrategy::external`] watermarks: feed each shuffled value with
///   [`crate::Engine::process_from`] (its provenance and timestamp) after raising the watermark to
///   the minimum over the upstream partitions ([`crate::Engine::advance_watermark`]). Its
///   [`Pipeline::event_time`] is not the values' event time (that comes with each value).
/// - `whole` runs both in one engine: the reference the two halves reproduce (same result ids,
///   panes, values and late records).
///
/// The three share the pipeline's name (part of every result id) and key-group count.
pub struct SplitPipeline<In, S, Out> {
    /// The whole pipeline in one engine.
    pub whole: Pipeline<In, Out>,
    /// The half before the shuffle marker.
    pub upstream: Pipeline<In, ShuffleOutput<S>>,
    /// The keyed half after it.
    pub downstream: Pipeline<S, Out>,
    lift: Option<BatchCombinerFactory<S>>,
}

impl<In, S, Out> SplitPipeline<In, S, Out> {
    /// A fresh combiner for one upstream batch if the pipeline's aggregation is lifted
    /// ([`WindowedStream::aggregate_lifted`], [`crate::lift`]); `None` if every value is sent raw.
    pub fn batch_combiner(&self) -> Option<Box<dyn BatchCombiner<S>>> {
        self.lift.as_ref().map(|make| make())
    }

    /// Whether the upstream combines values into partial aggregates (else every value is sent
    /// raw: no lifted aggregation, or one whose trigger or windows fall back).
    pub fn is_lifted(&self) -> bool {
        self.lift.is_some()
    }
}

impl<In, S, Out> Clone for SplitPipeline<In, S, Out> {
    fn clone(&self) -> Self {
        SplitPipeline {
            whole: self.whole.clone(),
            upstream: self.upstream.clone(),
            downstream: self.downstream.clone(),
            lift: self.lift.clone(),
        }
    }
}

/// A stream partitioned by key `K`.
pub struct KeyedStream<In, K, T, Up = Unsplit> {
    stream: Stream<In, T, Up>,
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<In: Send + 'static, K: StateKey, T: Serialize + DeserializeOwned + Send + Sync + 'static>
    KeyedStream<In, K, T, Unsplit>
{
    /// Marks the shuffle: the pipeline runs as two stages, cut here ([`SplitPipeline`]). What
    /// comes before (event time, stateless steps, the key) runs upstream, on the input's
    /// partitions; what follows (windows, joins, process) runs downstream, on the shards of a
    /// shuffle stream that own the values' key groups. Values cross the cut encoded, hence
    /// `T: Serialize + DeserializeOwned`. [`Stream::sink`] then returns the [`SplitPipeline`].
    ///
    /// Refused ([`PipelineError::StatefulBeforeShuffle`]) when a stateful operator precedes the
    /// marker: the upstream half is stateless, so that each shuffled value keeps the provenance
    /// of its input record.
    ///
    /// ```
    /// use shardflow_engine::combine::Sum;
    /// use shardflow_engine::{Pipeline, PipelineError, Windowing};
    ///
    /// # fn main() -> Result<(), PipelineError> {
    /// // (product, event time, cents)
    /// let split = Pipeline::builder("revenue")
    ///     .event_time(|r: &(u32, i64, i64)| r.1)
    ///     .filter(|r| r.2 > 0)
    ///     .key_by(|r| r.0)
    ///     .shuffle()?
    ///     .window(Windowing::tumbling(60_000)?)
    ///     .aggregate(Sum::of(|r: &(u32, i64, i64)| r.2), |product, window, _pane, cents| (*product, window.start, cents))
    ///     .sink("revenue");
    ///
    /// // Upstream: one input partition.
    /// let mut up = split.upstream.engine();
    /// let shard = up.partition("shard-0");
    /// let mut shuffled = Vec::new();
    /// for (offset, r) in [(7, 1_000, 250), (7, 2_000, 100), (8, 61_000, 5)].into_iter().enumerate() {
    ///     let wm_before = up.partition_watermark(shard);
    ///     up.process(shard, offset as u64, 0, r);
    ///     shuffled.extend(up.drain_output().into_iter().map(|o| (wm_before, o)));
    /// }
    ///
    /// // Downstream: each value after the watermark its partition had before it.
    /// let mut down = split.downstream.engine();
    /// let from = down.partition("shard-0");
    /// for (wm_before, o) in shuffled {
    ///     down.advance_watermark(wm_before);
    ///     down.process_from(from, o.value.origin, o.timestamp, 0, o.value.value);
    /// }
    /// down.finish();
    ///
    /// // The whole pipeline in one engine: the same results, with the same ids.
    /// let mut whole = split.whole.engine();
    /// let shard = whole.partition("shard-0");
    /// for (offset, r) in [(7, 1_000, 250), (7, 2_000, 100), (8, 61_000, 5)].into_iter().enumerate() {
    ///     whole.process(shard, offset as u64, 0, r);
    /// }
    /// whole.finish();
    /// let ids = |out: Vec<shardflow_engine::Output<(u32, i64, i64)>>| out.into_iter().map(|o| (o.id, o.value)).collect::<Vec<_>>();
    /// let expected = ids(whole.drain_output());
    /// assert_eq!(ids(down.drain_output()), expected);
    /// assert_eq!(expected.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [(7, 0, 350), (8, 60_000, 5)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn shuffle(self) -> Result<KeyedStream<T, K, T, Upstream<In, T>>, PipelineError> {
        if let Some(op) = self.stream.stateful.first() {
            return Err(PipelineError::StatefulBeforeShuffle {
                operator: op.id().to_owned(),
            });
        }
        let max_key_groups = self.stream.def.max_key_groups;
        let key_fn = self.key_fn;
        let group_of = key_fn.clone();
        let down_def = Arc::new(PipelineDef {
            name: self.stream.def.name.clone(),
            timestamp_fn: Arc::new(|_: &T| crate::time::MIN_TIMESTAMP),
            watermarks: WatermarkStrategy::external(),
            max_key_groups,
        });
        Ok(KeyedStream {
            stream: Stream {
                def: down_def,
                build: Arc::new(|_, next| next),
                stateful: Vec::new(),
                last_step: None,
                up: Upstream {
                    def: self.stream.def,
                    build: self.stream.build,
                    key_group: Arc::new(move |v: &T| key_group(&group_of(v), max_key_groups)),
                    lift: None,
                },
            },
            key_fn,
        })
    }
}

impl<In: Send + 'static, K: StateKey, T: Send + 'static, Up> KeyedStream<In, K, T, Up> {
    /// Groups each key's values into windows (fired by the default trigger unless
    /// [`WindowedStream::trigger`] says otherwise).
    pub fn window(self, windowing: Windowing) -> WindowedStream<In, K, T, Up> {
        WindowedStream {
            keyed: self,
            windowing,
            trigger: Trigger::default(),
        }
    }

    /// Runs user code with per-key state `S` and timers on every value (Flink's
    /// `KeyedProcessFunction`); see [`crate::operators::KeyedProcessFunction`].
    ///
    /// ```
    /// use shardflow_engine::{KeyedProcessFunction, Pipeline, ProcessContext, TimeDomain, Timestamp};
    ///
    /// /// Emits each key's running count, and the total once the watermark passes 100.
    /// struct Counter;
    /// impl KeyedProcessFunction<char, (char, i64), u64, (char, u64)> for Counter {
    ///     fn process(&self, key: &char, _value: (char, i64), cx: &mut ProcessContext<'_, u64, (char, u64)>) {
    ///         let n = *cx.state().get_or_insert(0) + 1;
    ///         *cx.state() = Some(n);
    ///         cx.emit((*key, n));
    ///         cx.register_timer(TimeDomain::EventTime, 100);
    ///     }
    ///     fn on_timer(&self, key: &char, _: Timestamp, _: TimeDomain, cx: &mut ProcessContext<'_, u64, (char, u64)>) {
    ///         let total = cx.state().take().unwrap_or(0);
    ///         cx.emit((key.to_ascii_uppercase(), total));
    ///     }
    /// }
    ///
    /// // (key, event time)
    /// let counts = Pipeline::builder("process")
    ///     .event_time(|r: &(char, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .process(Counter)
    ///     .sink("counts");
    /// let mut engine = counts.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, ('a', 1));
    /// engine.process(shard, 1, 0, ('a', 2));
    /// engine.finish();
    /// let out: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(out, [('a', 1), ('a', 2), ('A', 2)]);
    /// ```
    pub fn process<S, O>(self, function: impl KeyedProcessFunction<K, T, S, O>) -> Stream<In, O, Up>
    where
        S: Serialize + DeserializeOwned + Send + 'static,
        O: Send + 'static,
    {
        self.process_migrating(function, NoMigration)
    }

    /// [`KeyedStream::process`], reading the state a checkpoint stored at an older schema
    /// version through `migration` (see [`crate::schema::from_version`], whose example migrates
    /// a process function's state). Timers are kept as they were.
    pub fn process_migrating<S, O>(
        self,
        function: impl KeyedProcessFunction<K, T, S, O>,
        migration: impl StateMigration<S>,
    ) -> Stream<In, O, Up>
    where
        S: Serialize + DeserializeOwned + Send + 'static,
        O: Send + 'static,
    {
        let key_fn = self.key_fn;
        let function: Arc<dyn KeyedProcessFunction<K, T, S, O>> = Arc::new(function);
        let schema = (StateSchema::of::<S>(migration.version()), migration.migrates_from());
        let migration = Arc::new(migration);
        self.stream
            .then_stateful(KEYED_PROCESS, schema, move |id, max_kg, next| {
                Box::new(KeyedProcess::new(
                    id,
                    max_kg,
                    key_fn.clone(),
                    function.clone(),
                    migration.clone(),
                    next,
                ))
            })
    }

    /// Joins the `Left` and `Right` values of each key where
    /// `left.ts + lower <= right.ts <= left.ts + upper`; `side` classifies values. A match is
    /// emitted as soon as its second value arrives, at the later of the two timestamps.
    ///
    /// ```
    /// use shardflow_engine::{IntervalJoinSide, Pipeline};
    ///
    /// // (user, event time, is a click); clicks within 10 ms after an impression join it.
    /// let clicks = Pipeline::builder("interval")
    ///     .event_time(|r: &(u32, i64, bool)| r.1)
    ///     .key_by(|r| r.0)
    ///     .interval_join(
    ///         |r| if r.2 { IntervalJoinSide::Right } else { IntervalJoinSide::Left },
    ///         0,
    ///         10,
    ///         |user, impression, click| (*user, impression.1, click.1),
    ///     )
    ///     .sink("clicks");
    /// let mut engine = clicks.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, (1, 100, false));
    /// engine.process(shard, 1, 0, (1, 105, true)); // within [100, 110]: joined at once
    /// engine.process(shard, 2, 0, (1, 200, true)); // no impression in [190, 200]
    /// let out = engine.drain_output();
    /// assert_eq!(out.iter().map(|o| (o.timestamp, o.value)).collect::<Vec<_>>(), [(105, (1, 100, 105))]);
    /// ```
    pub fn interval_join<O: Send + 'static>(
        self,
        side: impl Fn(&T) -> IntervalJoinSide + Send + Sync + 'static,
        lower: DurationMs,
        upper: DurationMs,
        join: impl Fn(&K, &T, &T) -> O + Send + Sync + 'static,
    ) -> Stream<In, O, Up>
    where
        T: Clone + Serialize + DeserializeOwned + Sync,
    {
        self.interval_join_migrating(side, lower, upper, join, NoMigration)
    }

    /// [`KeyedStream::interval_join`], reading the values a checkpoint buffered at an older
    /// schema version through `migration` (see [`crate::schema::from_version`]): for a change of
    /// the joined record type, such as a column added to a source table.
    pub fn interval_join_migrating<O: Send + 'static>(
        self,
        side: impl Fn(&T) -> IntervalJoinSide + Send + Sync + 'static,
        lower: DurationMs,
        upper: DurationMs,
        join: impl Fn(&K, &T, &T) -> O + Send + Sync + 'static,
        migration: impl StateMigration<T>,
    ) -> Stream<In, O, Up>
    where
        T: Clone + Serialize + DeserializeOwned + Sync,
    {
        let key_fn = self.key_fn;
        let side_fn: Arc<dyn Fn(&T) -> IntervalJoinSide + Send + Sync> = Arc::new(side);
        let join_fn: PairFn<K, T, O> = Arc::new(join);
        let schema = (StateSchema::of::<T>(migration.version()), migration.migrates_from());
        let migration = Arc::new(migration);
        self.stream
            .then_stateful(INTERVAL_JOIN, schema, move |id, max_kg, next| {
                Box::new(IntervalJoin::new(
                    id,
                    max_kg,
                    key_fn.clone(),
                    side_fn.clone(),
                    lower,
                    upper,
                    join_fn.clone(),
                    migration.clone(),
                    next,
                ))
            })
    }
}

/// A keyed stream grouped into windows.
pub struct WindowedStream<In, K, T, Up = Unsplit> {
    keyed: KeyedStream<In, K, T, Up>,
    windowing: Windowing,
    trigger: Trigger,
}

impl<In: Send + 'static, K: StateKey, T: Send + 'static, Up> WindowedStream<In, K, T, Up> {
    /// When panes fire, how late data is treated, and how panes accumulate.
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Aggregates each key's window with `combiner`; `result` turns each pane into an output value.
    pub fn aggregate<C, O>(
        self,
        combiner: C,
        result: impl Fn(&K, &Window, &PaneInfo, C::Out) -> O + Send + Sync + 'static,
    ) -> Stream<In, O, Up>
    where
        C: Combiner<T>,
        C::Out: Send,
        O: Send + 'static,
    {
        let schema = (
            StateSchema::of::<C::Acc>(combiner.state_version()),
            combiner.migrates_from(),
        );
        let combiner = Arc::new(combiner);
        let result_fn: ResultFn<K, C::Out, O> = Arc::new(result);
        let key_fn = self.keyed.key_fn;
        let (windowing, trigger) = (self.windowing, self.trigger);
        self.keyed
            .stream
            .then_stateful(WINDOW_AGGREGATE, schema, move |id, max_kg, next| {
                Box::new(WindowAggregate::new(
                    id,
                    max_kg,
                    key_fn.clone(),
                    windowing.clone(),
                    trigger,
                    combiner.clone(),
                    result_fn.clone(),
                    next,
                ))
            })
    }

    /// Joins `sides` inputs on the key within each window: `side` tells a value's input index
    /// (`0..sides`); when a pane fires, `join` receives the values of each input (`lists[i]`) and
    /// returns the joined results (an inner join returns nothing if any list is empty; see
    /// [`crate::join::inner`]).
    ///
    /// Each list is in a canonical order (sorted by the values' encoding), not in arrival order,
    /// so that the joined rows — and the result ids, which number the rows of a pane — do not
    /// depend on how the input partitions interleaved. [`crate::join::inner`] joins N inputs.
    ///
    /// ```
    /// use shardflow_engine::{join, Pipeline, Window, Windowing};
    ///
    /// // (order, event time, side: 0 an order, 1 a payment, amount)
    /// let paid = Pipeline::builder("window-join")
    ///     .event_time(|r: &(u32, i64, usize, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .window(Windowing::tumbling(60).unwrap())
    ///     .join(2, |r| r.2, |order, window, lists| {
    ///         join::inner(lists).into_iter().map(|row| (*order, *window, row[0].3, row[1].3)).collect()
    ///     })
    ///     .sink("paid");
    /// let mut engine = paid.engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, (1, 5, 0, 100));
    /// engine.process(shard, 1, 0, (2, 8, 0, 50)); // never paid: no row
    /// engine.process(shard, 2, 0, (1, 30, 1, 100));
    /// engine.finish();
    /// let out: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    /// assert_eq!(out, [(1, Window::new(0, 60), 100, 100)]);
    /// ```
    pub fn join<O: Send + 'static>(
        self,
        sides: usize,
        side: impl Fn(&T) -> usize + Send + Sync + 'static,
        join: impl Fn(&K, &Window, &[Vec<T>]) -> Vec<O> + Send + Sync + 'static,
    ) -> Stream<In, O, Up>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        let windowed = self.aggregate(CollectBySide::new(sides, side), move |k, w, _pane, mut lists| {
            lists.iter_mut().for_each(|list| canonical_order(list));
            join(k, w, &lists)
        });
        let aggregate = windowed.last_step;
        let mut joined = windowed.flat_map(|joined| joined);
        // The flat_map is part of this step: a uid after `join` names its window operator.
        joined.last_step = aggregate;
        joined
    }
}

impl<In, K, T> WindowedStream<T, K, T, Upstream<In, T>>
where
    In: Send + 'static,
    K: StateKey,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// [`WindowedStream::aggregate`] with combiner lifting ([`crate::lift`]): the upstream half
    /// combines each batch's values per (key, window) and shuffles partial accumulators, which
    /// the downstream merges — far fewer shuffled records for the same results (ids, panes,
    /// values, late records). The shuffle carries [`Lifted`] values. Lifting needs a
    /// non-merging window and a trigger firing at the watermark (allowed lateness and late
    /// firings by count are fine); with early firings, late firings by processing time or
    /// session windows the plan falls back to sending every value raw
    /// ([`SplitPipeline::is_lifted`] is false).
    ///
    /// ```
    /// use shardflow_engine::combine::Sum;
    /// use shardflow_engine::{Lifted, Pipeline, PipelineError, Windowing};
    ///
    /// # fn main() -> Result<(), PipelineError> {
    /// // (product, event time, cents)
    /// let split = Pipeline::builder("revenue")
    ///     .event_time(|r: &(u32, i64, i64)| r.1)
    ///     .key_by(|r| r.0)
    ///     .shuffle()?
    ///     .window(Windowing::tumbling(60_000)?)
    ///     .aggregate_lifted(Sum::of(|r: &(u32, i64, i64)| r.2), |product, window, _pane, cents| (*product, window.start, cents))
    ///     .sink("revenue");
    /// assert!(split.is_lifted());
    ///
    /// // One upstream batch of three sales of product 7 in one minute: one partial.
    /// let mut up = split.upstream.engine();
    /// let shard = up.partition("shard-0");
    /// let mut combiner = split.batch_combiner().expect("lifted");
    /// for (offset, r) in [(7, 1_000, 250), (7, 2_000, 100), (7, 3_000, 5)].into_iter().enumerate() {
    ///     let wm_before = up.partition_watermark(shard);
    ///     up.process(shard, offset as u64, 0, r);
    ///     for o in up.drain_output() {
    ///         let raw = shardflow_engine::Shuffled { output: o.value, timestamp: o.timestamp, wm_before };
    ///         assert!(combiner.offer(raw).is_none(), "merged into the partial");
    ///     }
    /// }
    /// let mut partials = Vec::new();
    /// combiner.take_all(&mut partials);
    /// assert_eq!(partials.len(), 1);
    /// assert!(matches!(partials[0].output.value, Lifted::Partial { acc: 355, count: 3, .. }));
    ///
    /// // Downstream: the partial is merged into its window.
    /// let mut down = split.downstream.engine();
    /// let from = down.partition("shard-0");
    /// for p in partials {
    ///     down.advance_watermark(p.wm_before);
    ///     down.process_from(from, p.output.origin, p.timestamp, 0, p.output.value);
    /// }
    /// down.finish();
    /// assert_eq!(down.drain_output()[0].value, (7, 0, 355));
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn aggregate_lifted<C, O>(
        self,
        combiner: C,
        result: impl Fn(&K, &Window, &PaneInfo, C::Out) -> O + Send + Sync + 'static,
    ) -> Stream<Lifted<K, T, C::Acc>, O, Upstream<In, Lifted<K, T, C::Acc>>>
    where
        C: Combiner<T>,
        C::Out: Send,
        O: Send + 'static,
    {
        let WindowedStream {
            keyed,
            windowing,
            trigger,
        } = self;
        let KeyedStream { stream, key_fn } = keyed;
        let max_key_groups = stream.def.max_key_groups;
        // The same state as the unlifted aggregate's: a pipeline can switch between them.
        let schema = (
            StateSchema::of::<C::Acc>(combiner.state_version()),
            combiner.migrates_from(),
        );
        let combiner = Arc::new(combiner);
        let up = stream.up;
        let up_build = up.build;
        let group_of = key_fn.clone();
        let lift: Option<BatchCombinerFactory<Lifted<K, T, C::Acc>>> = can_lift(&windowing, &trigger).then(|| {
            let (key_fn, windowing, combiner) = (key_fn.clone(), windowing.clone(), combiner.clone());
            Arc::new(move || {
                Box::new(WindowPartials::new(
                    key_fn.clone(),
                    windowing.clone(),
                    combiner.clone(),
                    max_key_groups,
                )) as Box<dyn BatchCombiner<Lifted<K, T, C::Acc>>>
            }) as BatchCombinerFactory<Lifted<K, T, C::Acc>>
        });
        let raw: Arc<dyn Fn(T) -> Lifted<K, T, C::Acc> + Send + Sync> = Arc::new(Lifted::Raw);
        let lifted_up = Upstream {
            def: up.def,
            build: Arc::new(move |ids, next| up_build(ids, Box::new(Map { f: raw.clone(), next }))),
            key_group: Arc::new(move |v: &Lifted<K, T, C::Acc>| match v {
                Lifted::Raw(t) => key_group(&group_of(t), max_key_groups),
                Lifted::Partial { key, .. } => key_group(key, max_key_groups),
            }),
            lift,
        };
        let head: Stream<Lifted<K, T, C::Acc>, Lifted<K, T, C::Acc>, _> = Stream {
            def: Arc::new(PipelineDef {
                name: stream.def.name.clone(),
                timestamp_fn: Arc::new(|_: &Lifted<K, T, C::Acc>| crate::time::MIN_TIMESTAMP),
                watermarks: WatermarkStrategy::external(),
                max_key_groups,
            }),
            build: Arc::new(|_, next| next),
            stateful: stream.stateful,
            last_step: None,
            up: lifted_up,
        };
        let result_fn: ResultFn<K, C::Out, O> = Arc::new(result);
        head.then_stateful(WINDOW_AGGREGATE, schema, move |id, max_kg, next| {
            Box::new(LiftedWindowAggregate {
                inner: WindowAggregate::new(
                    id,
                    max_kg,
                    key_fn.clone(),
                    windowing.clone(),
                    trigger,
                    combiner.clone(),
                    result_fn.clone(),
                    next,
                ),
            })
        })
    }
}

/// Sorts values by their stable encoding (stable sort; a value that cannot be encoded sorts first).
fn canonical_order<T: Serialize>(list: &mut [T]) {
    if list.len() > 1 {
        list.sort_by_cached_key(|v| postcard::to_allocvec(v).unwrap_or_default());
    }
}

/// A complete pipeline: input `In`, results `Out`. Cheap to clone; instantiate with
/// [`Pipeline::engine`].
pub struct Pipeline<In, Out> {
    pub(crate) def: Arc<PipelineDef<In>>,
    build: Arc<dyn Fn() -> Box<dyn Operator<In>> + Send + Sync>,
    stateful: Arc<[StatefulOperator]>,
    sink: String,
    _out: PhantomData<fn() -> Out>,
}

impl<In, Out> Clone for Pipeline<In, Out> {
    fn clone(&self) -> Self {
        Pipeline {
            def: self.def.clone(),
            build: self.build.clone(),
            stateful: self.stateful.clone(),
            sink: self.sink.clone(),
            _out: PhantomData,
        }
    }
}

impl Pipeline<(), ()> {
    /// Starts a pipeline named `name` (the name is part of every result id and checkpoint).
    pub fn builder<In: Send + 'static>(name: &str) -> PipelineBuilder<In> {
        PipelineBuilder {
            name: name.to_owned(),
            watermarks: WatermarkStrategy::default(),
            max_key_groups: DEFAULT_MAX_KEY_GROUPS,
            _in: PhantomData,
        }
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The sink's name.
    pub fn sink_name(&self) -> &str {
        &self.sink
    }

    /// The stateful operators, in pipeline order, with the ids their state is kept under
    /// (see [`StatefulOperator`]).
    pub fn stateful_operators(&self) -> &[StatefulOperator] {
        &self.stateful
    }

    /// The key-group count.
    pub fn max_key_groups(&self) -> u16 {
        self.def.max_key_groups
    }

    /// The watermark strategy.
    pub fn watermark_strategy(&self) -> WatermarkStrategy {
        self.def.watermarks
    }

    /// The event time of an input value.
    pub fn event_time(&self, value: &In) -> Timestamp {
        (self.def.timestamp_fn)(value)
    }

    /// A fresh chain of the pipeline's operators, with empty state.
    pub(crate) fn operators(&self) -> Box<dyn Operator<In>> {
        (self.build)()
    }
}

/// The kind and number of a default id `{kind}-{n}` of a stateful kind; `None` for other ids.
pub(crate) fn default_id_parts(id: &str) -> Option<(&'static str, usize)> {
    let (kind, n) = id.rsplit_once('-')?;
    let kind = STATEFUL_KINDS.into_iter().find(|k| *k == kind)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    Some((kind, n.parse().ok()?))
}
