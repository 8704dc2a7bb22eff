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

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::combine::{CollectBySide, Combiner};
use crate::operators::{
    Deduplicate, Filter, FilterMap, FlatMap, IntervalJoin, IntervalJoinSide, KeyedProcess, KeyedProcessFunction,
    LookupJoin, LookupTable, Map, Operator, PairFn, ResultFn, Sink, WindowAggregate,
};
use crate::state::{StateKey, DEFAULT_MAX_KEY_GROUPS};
use crate::time::{DurationMs, Timestamp};
use crate::trigger::{PaneInfo, Trigger};
use crate::watermark::WatermarkStrategy;
use crate::window::{Window, Windowing};

type BuildFn<In, T> = Arc<dyn Fn(Box<dyn Operator<T>>) -> Box<dyn Operator<In>> + Send + Sync>;

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
            build: Arc::new(|next| next),
            operators: 0,
        }
    }
}

/// A stream of `T` values inside a pipeline whose input is `In`.
pub struct Stream<In, T> {
    def: Arc<PipelineDef<In>>,
    build: BuildFn<In, T>,
    operators: usize,
}

impl<In: Send + 'static, T: Send + 'static> Stream<In, T> {
    fn then<U: Send + 'static>(
        self,
        kind: &str,
        make: impl Fn(String, u16, Box<dyn Operator<U>>) -> Box<dyn Operator<T>> + Send + Sync + 'static,
    ) -> Stream<In, U> {
        let id = format!("{}-{kind}", self.operators);
        let max_key_groups = self.def.max_key_groups;
        let prev = self.build;
        Stream {
            def: self.def,
            build: Arc::new(move |next| prev(make(id.clone(), max_key_groups, next))),
            operators: self.operators + 1,
        }
    }

    /// Transforms every value.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<In, U> {
        let f: Arc<dyn Fn(T) -> U + Send + Sync> = Arc::new(f);
        self.then("map", move |_, _, next| Box::new(Map { f: f.clone(), next }))
    }

    /// Keeps the values for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<In, T> {
        let f: Arc<dyn Fn(&T) -> bool + Send + Sync> = Arc::new(f);
        self.then("filter", move |_, _, next| Box::new(Filter { f: f.clone(), next }))
    }

    /// Transforms and filters in one step.
    pub fn filter_map<U: Send + 'static>(self, f: impl Fn(T) -> Option<U> + Send + Sync + 'static) -> Stream<In, U> {
        let f: Arc<dyn Fn(T) -> Option<U> + Send + Sync> = Arc::new(f);
        self.then("filter_map", move |_, _, next| {
            Box::new(FilterMap { f: f.clone(), next })
        })
    }

    /// Emits every value `f` returns for a value.
    pub fn flat_map<U: Send + 'static>(self, f: impl Fn(T) -> Vec<U> + Send + Sync + 'static) -> Stream<In, U> {
        let f: Arc<dyn Fn(T) -> Vec<U> + Send + Sync> = Arc::new(f);
        self.then("flat_map", move |_, _, next| Box::new(FlatMap { f: f.clone(), next }))
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
    ) -> Stream<In, O> {
        let key_fn: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key);
        let join_fn: Arc<dyn Fn(T, Option<V>) -> Option<O> + Send + Sync> = Arc::new(join);
        self.then("lookup_join", move |_, _, next| {
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
    ) -> Stream<In, T> {
        let id_fn: Arc<dyn Fn(&T) -> I + Send + Sync> = Arc::new(id_fn);
        self.then(crate::operators::deduplicate::KIND, move |id, max_kg, next| {
            Box::new(Deduplicate::new(id, max_kg, id_fn.clone(), horizon_ms, next))
        })
    }

    /// Partitions the stream by key: what follows keeps state per key.
    pub fn key_by<K: StateKey>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<In, K, T> {
        KeyedStream {
            stream: self,
            key_fn: Arc::new(f),
        }
    }

    /// Ends the pipeline: its results are drained from the engine and written to the sink named
    /// `name` by whatever runs the pipeline (the local runner, a Lambda stage).
    pub fn sink(self, name: &str) -> Pipeline<In, T> {
        let build = self.build;
        Pipeline {
            def: self.def,
            build: Arc::new(move || build(Box::new(Sink::<T> { _t: PhantomData }))),
            sink: name.to_owned(),
            _out: PhantomData,
        }
    }
}

/// A stream partitioned by key `K`.
pub struct KeyedStream<In, K, T> {
    stream: Stream<In, T>,
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<In: Send + 'static, K: StateKey, T: Send + 'static> KeyedStream<In, K, T> {
    /// Groups each key's values into windows (fired by the default trigger unless
    /// [`WindowedStream::trigger`] says otherwise).
    pub fn window(self, windowing: Windowing) -> WindowedStream<In, K, T> {
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
    pub fn process<S, O>(self, function: impl KeyedProcessFunction<K, T, S, O>) -> Stream<In, O>
    where
        S: Serialize + DeserializeOwned + Send + 'static,
        O: Send + 'static,
    {
        let key_fn = self.key_fn;
        let function: Arc<dyn KeyedProcessFunction<K, T, S, O>> = Arc::new(function);
        self.stream.then("keyed_process", move |id, max_kg, next| {
            Box::new(KeyedProcess::new(id, max_kg, key_fn.clone(), function.clone(), next))
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
    ) -> Stream<In, O>
    where
        T: Clone + Serialize + DeserializeOwned + Sync,
    {
        let key_fn = self.key_fn;
        let side_fn: Arc<dyn Fn(&T) -> IntervalJoinSide + Send + Sync> = Arc::new(side);
        let join_fn: PairFn<K, T, O> = Arc::new(join);
        self.stream.then("interval_join", move |id, max_kg, next| {
            Box::new(IntervalJoin::new(
                id,
                max_kg,
                key_fn.clone(),
                side_fn.clone(),
                lower,
                upper,
                join_fn.clone(),
                next,
            ))
        })
    }
}

/// A keyed stream grouped into windows.
pub struct WindowedStream<In, K, T> {
    keyed: KeyedStream<In, K, T>,
    windowing: Windowing,
    trigger: Trigger,
}

impl<In: Send + 'static, K: StateKey, T: Send + 'static> WindowedStream<In, K, T> {
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
    ) -> Stream<In, O>
    where
        C: Combiner<T>,
        C::Out: Send,
        O: Send + 'static,
    {
        let combiner = Arc::new(combiner);
        let result_fn: ResultFn<K, C::Out, O> = Arc::new(result);
        let key_fn = self.keyed.key_fn;
        let (windowing, trigger) = (self.windowing, self.trigger);
        self.keyed.stream.then("window_aggregate", move |id, max_kg, next| {
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
    ) -> Stream<In, O>
    where
        T: Clone + Serialize + DeserializeOwned,
    {
        self.aggregate(CollectBySide::new(sides, side), move |k, w, _pane, mut lists| {
            lists.iter_mut().for_each(|list| canonical_order(list));
            join(k, w, &lists)
        })
        .flat_map(|joined| joined)
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
    sink: String,
    _out: PhantomData<fn() -> Out>,
}

impl<In, Out> Clone for Pipeline<In, Out> {
    fn clone(&self) -> Self {
        Pipeline {
            def: self.def.clone(),
            build: self.build.clone(),
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
