//! A deterministic, seeded generator of the online shop's change-data-capture stream.
//!
//! # The workload
//! A discrete-event simulation of a shop, in compressed time:
//! - at the start, a snapshot (`op = r`) of the existing customers;
//! - orders arrive as a Poisson process; checkout is one transaction: the customer row is
//!   inserted (a new customer) or updated (`orders_count`, `last_order_at_ms`), the order is
//!   inserted `pending`, and its 1-4 lines (distinct products, popular products more likely);
//! - 2-30 s later a payment is inserted `authorized`; 1-10 s later it is `captured` and the
//!   order `paid` (or, for 4 % of orders, the payment `failed` and the order `cancelled`);
//! - 20-90 s later a shipment is inserted `shipped` and the order `shipped`;
//! - 30-90 s later the shipment is `delivered` and the order `completed`.
//!
//! # Delivery
//! Each change is routed to a shard by its partition key (`table:primary_key`, as the CDC
//! reader does, so one row's changes stay in order in one shard). A change's event time is its
//! commit time (`source.ts_ms`); it reaches the stream after a delay (`ts_ms`, the time the
//! connector handled it): 0-2 s of jitter (bounded out-of-orderness), plus, for a small fraction,
//! 70-250 s (late, but within the pipelines' 5 min allowed lateness) or 400-600 s (later than
//! the allowed lateness, so the late side output is exercised). A row's changes never overtake
//! each other. Each shard is emitted in arrival order; the stream is the first `events` changes
//! by arrival.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shardflow_local::{Input, InputError, Item};
use shardflow_schemas::{
    ChangeEvent, Customer, Entity, Op, Order, OrderLine, OrderStatus, Payment, PaymentStatus, Row, Shipment,
    ShipmentStatus, Source,
};

/// 2024-01-01T00:00:00Z, the start of simulated time of [`ShopConfig::new`]: fixed, so that the
/// demo, the tests and their golden files are reproducible (`shardflow gen shop` starts at the
/// current time unless given `--start`).
pub const DEFAULT_START_MS: i64 = 1_704_067_200_000;

/// Parameters of the generated workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopConfig {
    /// Seed of the random generator: the same config gives the same stream.
    pub seed: u64,
    /// Number of change events to emit.
    pub events: u64,
    /// Number of shards.
    pub shards: u32,
    /// Simulated time of the first commit (ms since the epoch).
    pub start_ms: i64,
    /// Orders per second of simulated time.
    pub orders_per_sec: f64,
    /// Customers in the initial snapshot.
    pub initial_customers: u64,
    /// Products in the catalog.
    pub products: u32,
    /// Largest normal delivery delay (the stream's out-of-orderness).
    pub max_jitter_ms: i64,
    /// Fraction of changes delayed 70-250 s (late within the allowed lateness).
    pub late_fraction: f64,
    /// Fraction of changes delayed 400-600 s (later than the allowed lateness).
    pub too_late_fraction: f64,
}

impl ShopConfig {
    /// The default workload for `events` changes over `shards` shards: 20 orders/s, a customer
    /// base of about one customer per 30 events, 500 products, 0.5 % late and 0.1 % too late.
    pub fn new(seed: u64, events: u64, shards: u32) -> Self {
        ShopConfig {
            seed,
            events,
            shards: shards.max(1),
            start_ms: DEFAULT_START_MS,
            orders_per_sec: 20.0,
            initial_customers: (events / 30).clamp(10, 50_000),
            products: 500,
            max_jitter_ms: 2_000,
            late_fraction: 0.005,
            too_late_fraction: 0.001,
        }
    }

    /// A short text that identifies the stream (for a runner's `input_id`).
    pub fn id(&self) -> String {
        format!(
            "shop-v1 seed={} events={} shards={} start={} rate={} customers={} products={} jitter={} late={} too_late={}",
            self.seed,
            self.events,
            self.shards,
            self.start_ms,
            self.orders_per_sec,
            self.initial_customers,
            self.products,
            self.max_jitter_ms,
            self.late_fraction,
            self.too_late_fraction
        )
    }
}

/// The shard of a partition key among `shards` (a stable hash, like Kinesis' hash-key ranges).
pub fn shard_of(partition_key: &str, shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(partition_key.as_bytes()) % u64::from(shards.max(1))) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Authorize,
    Capture,
    Ship,
    Deliver,
}

struct OrderState {
    order: Order,
    payment: Option<Payment>,
    shipment: Option<Shipment>,
}

/// An event waiting for its arrival, ordered by (arrival, sequence).
struct Pending {
    arrival: i64,
    seq: u64,
    shard: u32,
    event: ChangeEvent,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.arrival, self.seq) == (o.arrival, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.arrival, self.seq).cmp(&(o.arrival, o.seq))
    }
}

type Change = (Op, Option<Entity>, Option<Entity>);

/// The generator (see the module documentation). Read it as an [`Input`] of `shards`
/// partitions named `shard-0`, `shard-1`, ..., or take events in arrival order with
/// [`ShopGenerator::next_event`].
pub struct ShopGenerator {
    config: ShopConfig,
    rng: ChaCha8Rng,
    prices: Vec<i64>,
    customers: Vec<Customer>,
    orders: HashMap<i64, OrderState>,
    steps: BinaryHeap<Reverse<(i64, u64, Step, i64)>>,
    pending: BinaryHeap<Reverse<Pending>>,
    row_arrival: HashMap<String, i64>,
    queues: Vec<VecDeque<ChangeEvent>>,
    now: i64,
    next_order_at: i64,
    snapshot_done: bool,
    seq: u64,
    lsn: u64,
    tx_id: i64,
    next_order_id: i64,
    next_payment_id: i64,
    next_shipment_id: i64,
    emitted: u64,
    /// In commit-order mode ([`ShopGenerator::in_commit_order`]): committed transactions not yet taken.
    committed: Option<VecDeque<Vec<ChangeEvent>>>,
}

impl ShopGenerator {
    /// A generator of the stream `config` describes.
    pub fn new(config: ShopConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let prices = (0..config.products).map(|_| rng.random_range(199..=19_999)).collect();
        let shards = config.shards as usize;
        ShopGenerator {
            now: config.start_ms,
            next_order_at: config.start_ms + 1_000,
            config,
            rng,
            prices,
            customers: Vec::new(),
            orders: HashMap::new(),
            steps: BinaryHeap::new(),
            pending: BinaryHeap::new(),
            row_arrival: HashMap::new(),
            queues: vec![VecDeque::new(); shards],
            snapshot_done: false,
            seq: 0,
            lsn: 0x0100_0000,
            tx_id: 1_000,
            next_order_id: 100_000,
            next_payment_id: 500_000,
            next_shipment_id: 900_000,
            emitted: 0,
            committed: None,
        }
    }

    /// A generator of the same workload that yields whole transactions in commit order
    /// ([`ShopGenerator::next_transaction`]) instead of events in arrival order, e.g. to execute
    /// them against a database. Its `n`-th transaction holds the same changes as the `n`-th
    /// transaction of [`ShopGenerator::new`]'s stream; `ts_ms` (arrival) is meaningless here.
    pub fn in_commit_order(config: ShopConfig) -> Self {
        let mut generator = Self::new(config);
        generator.committed = Some(VecDeque::new());
        generator
    }

    /// The next transaction in commit order (its changes in statement order), until at least
    /// `config.events` changes were returned (whole transactions: the last one may cross it).
    /// Always `None` for a generator made with [`ShopGenerator::new`].
    pub fn next_transaction(&mut self) -> Option<Vec<ChangeEvent>> {
        loop {
            let queue = self.committed.as_mut()?;
            if let Some(tx) = queue.pop_front() {
                self.emitted += tx.len() as u64;
                return Some(tx);
            }
            if self.emitted >= self.config.events {
                return None;
            }
            self.step();
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ShopConfig {
        &self.config
    }

    /// Events emitted so far (into shard queues).
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The next event in arrival order over all shards, with its shard; `None` after
    /// `config.events` events, and always for a generator made with
    /// [`ShopGenerator::in_commit_order`].
    pub fn next_event(&mut self) -> Option<(u32, ChangeEvent)> {
        if self.committed.is_some() {
            return None;
        }
        loop {
            if let Some(Reverse(p)) = self.pending.peek() {
                if p.arrival <= self.now {
                    if self.emitted >= self.config.events {
                        return None;
                    }
                    let Reverse(p) = self.pending.pop()?;
                    self.emitted += 1;
                    return Some((p.shard, p.event));
                }
            }
            if self.emitted >= self.config.events {
                return None;
            }
            self.step();
        }
    }

    /// Advances the simulation by one transaction.
    fn step(&mut self) {
        if !self.snapshot_done {
            self.snapshot_done = true;
            let t = self.config.start_ms;
            for _ in 0..self.config.initial_customers {
                let age = self.rng.random_range(86_400_000..=400 * 86_400_000i64);
                let c = self.new_customer(t - age);
                self.commit(t, vec![(Op::Read, None, Some(Entity::Customer(c)))]);
            }
            return;
        }
        let next_step = self.steps.peek().map(|Reverse((t, ..))| *t);
        match next_step {
            Some(t) if t < self.next_order_at => {
                if let Some(Reverse((t, _, step, order_id))) = self.steps.pop() {
                    self.now = self.now.max(t);
                    self.advance_order(t, step, order_id);
                }
            }
            _ => {
                let t = self.next_order_at;
                self.now = self.now.max(t);
                self.place_order(t);
                let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
                let gap = (-u.ln() / self.config.orders_per_sec * 1_000.0).round() as i64;
                self.next_order_at = t + gap.max(1);
            }
        }
    }

    fn new_customer(&mut self, created: i64) -> Customer {
        const NAMES: [&str; 8] = [
            "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances",
        ];
        const COUNTRIES: [&str; 6] = ["DE", "FR", "NL", "ES", "IT", "PL"];
        let id = self.customers.len() as i64 + 1;
        let name = NAMES[self.rng.random_range(0..NAMES.len())];
        let c = Customer {
            customer_id: id,
            name: format!("{name} {id}"),
            email: format!("{}.{id}@example.com", name.to_ascii_lowercase()),
            country: COUNTRIES[self.rng.random_range(0..COUNTRIES.len())].to_owned(),
            orders_count: 0,
            last_order_at_ms: 0,
            created_at_ms: created,
            updated_at_ms: created,
        };
        self.customers.push(c.clone());
        c
    }

    fn schedule(&mut self, t: i64, step: Step, order_id: i64) {
        self.seq += 1;
        self.steps.push(Reverse((t, self.seq, step, order_id)));
    }

    fn place_order(&mut self, t: i64) {
        let mut changes: Vec<Change> = Vec::new();
        let idx = if self.customers.is_empty() || self.rng.random_bool(0.1) {
            let c = self.new_customer(t);
            changes.push((Op::Create, None, Some(Entity::Customer(c))));
            self.customers.len() - 1
        } else {
            self.rng.random_range(0..self.customers.len())
        };
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let n_lines = [1, 1, 1, 2, 2, 2, 3, 3, 4][self.rng.random_range(0..9)];
        let mut products: Vec<i64> = Vec::with_capacity(n_lines);
        while products.len() < n_lines {
            let u: f64 = self.rng.random();
            let p = ((u * u) * f64::from(self.config.products)) as i64 + 1;
            if !products.contains(&p) {
                products.push(p);
            }
        }
        let lines: Vec<OrderLine> = products
            .iter()
            .enumerate()
            .map(|(i, &product_id)| OrderLine {
                order_id,
                line_no: i as i32 + 1,
                product_id,
                quantity: self.rng.random_range(1..=3),
                unit_price_cents: self.prices[(product_id - 1) as usize],
                currency: "EUR".into(),
                created_at_ms: t,
            })
            .collect();
        let total = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price_cents).sum();
        let customer = &mut self.customers[idx];
        let before = customer.clone();
        customer.orders_count += 1;
        customer.last_order_at_ms = t;
        customer.updated_at_ms = t;
        let after = customer.clone();
        match changes.first_mut() {
            Some(created) => created.2 = Some(Entity::Customer(after)),
            None => changes.push((
                Op::Update,
                Some(Entity::Customer(before)),
                Some(Entity::Customer(after)),
            )),
        }
        let order = Order {
            order_id,
            customer_id: idx as i64 + 1,
            status: OrderStatus::Pending as i32,
            total_cents: total,
            currency: "EUR".into(),
            line_count: lines.len() as i32,
            created_at_ms: t,
            updated_at_ms: t,
        };
        changes.push((Op::Create, None, Some(Entity::Order(order.clone()))));
        changes.extend(
            lines
                .into_iter()
                .map(|l| (Op::Create, None, Some(Entity::OrderLine(l)))),
        );
        self.commit(t, changes);
        self.orders.insert(
            order_id,
            OrderState {
                order,
                payment: None,
                shipment: None,
            },
        );
        let at = t + self.rng.random_range(2_000..=30_000);
        self.schedule(at, Step::Authorize, order_id);
    }

    fn advance_order(&mut self, t: i64, step: Step, order_id: i64) {
        let Some(mut st) = self.orders.remove(&order_id) else {
            return;
        };
        let mut changes: Vec<Change> = Vec::new();
        let set_order = |st: &mut OrderState, status: OrderStatus, changes: &mut Vec<Change>| {
            let before = st.order.clone();
            st.order.status = status as i32;
            st.order.updated_at_ms = t;
            changes.push((
                Op::Update,
                Some(Entity::Order(before)),
                Some(Entity::Order(st.order.clone())),
            ));
        };
        let next = match step {
            Step::Authorize => {
                let p = Payment {
                    payment_id: self.next_payment_id,
                    order_id,
                    customer_id: st.order.customer_id,
                    status: PaymentStatus::Authorized as i32,
                    amount_cents: st.order.total_cents,
                    currency: st.order.currency.clone(),
                    method: ["card", "card", "paypal", "bank_transfer"][self.rng.random_range(0..4)].into(),
                    created_at_ms: t,
                    updated_at_ms: t,
                };
                self.next_payment_id += 1;
                changes.push((Op::Create, None, Some(Entity::Payment(p.clone()))));
                st.payment = Some(p);
                Some((Step::Capture, self.rng.random_range(1_000..=10_000)))
            }
            Step::Capture => {
                let failed = self.rng.random_bool(0.04);
                if let Some(p) = st.payment.as_mut() {
                    let before = p.clone();
                    p.status = if failed {
                        PaymentStatus::Failed
                    } else {
                        PaymentStatus::Captured
                    } as i32;
                    p.updated_at_ms = t;
                    changes.push((
                        Op::Update,
                        Some(Entity::Payment(before)),
                        Some(Entity::Payment(p.clone())),
                    ));
                }
                if failed {
                    set_order(&mut st, OrderStatus::Cancelled, &mut changes);
                    None
                } else {
                    set_order(&mut st, OrderStatus::Paid, &mut changes);
                    Some((Step::Ship, self.rng.random_range(20_000..=90_000)))
                }
            }
            Step::Ship => {
                let s = Shipment {
                    shipment_id: self.next_shipment_id,
                    order_id,
                    customer_id: st.order.customer_id,
                    status: ShipmentStatus::Shipped as i32,
                    carrier: ["DHL", "UPS", "DPD", "PostNL"][self.rng.random_range(0..4)].into(),
                    tracking_number: format!("TRK{:010}", self.rng.random_range(0..10_000_000_000u64)),
                    created_at_ms: t,
                    updated_at_ms: t,
                };
                self.next_shipment_id += 1;
                changes.push((Op::Create, None, Some(Entity::Shipment(s.clone()))));
                st.shipment = Some(s);
                set_order(&mut st, OrderStatus::Shipped, &mut changes);
                Some((Step::Deliver, self.rng.random_range(30_000..=90_000)))
            }
            Step::Deliver => {
                if let Some(s) = st.shipment.as_mut() {
                    let before = s.clone();
                    s.status = ShipmentStatus::Delivered as i32;
                    s.updated_at_ms = t;
                    changes.push((
                        Op::Update,
                        Some(Entity::Shipment(before)),
                        Some(Entity::Shipment(s.clone())),
                    ));
                }
                set_order(&mut st, OrderStatus::Completed, &mut changes);
                None
            }
        };
        self.commit(t, changes);
        if let Some((step, delay)) = next {
            self.schedule(t + delay, step, order_id);
            self.orders.insert(order_id, st);
        }
    }

    /// One transaction committed at `t`: envelopes with consecutive LSNs and their delays.
    fn commit(&mut self, t: i64, changes: Vec<Change>) {
        self.tx_id += 1;
        let mut transaction = Vec::with_capacity(changes.len());
        for (op, before, after) in changes {
            self.lsn += 56 + self.rng.random_range(0..200);
            let Some(entity) = after.as_ref().or(before.as_ref()) else {
                continue;
            };
            let table = entity.table();
            let key = format!("{table}:{}", entity.primary_key());
            let terminal = matches!(
                &after,
                Some(Entity::Order(o)) if matches!(o.status(), OrderStatus::Completed | OrderStatus::Cancelled)
            ) || matches!(&after, Some(Entity::Shipment(s)) if s.status() == ShipmentStatus::Delivered)
                || matches!(&after, Some(Entity::Payment(p)) if p.status() == PaymentStatus::Failed)
                || table == shardflow_schemas::Table::OrderLines;
            let mut delay = self.rng.random_range(0..=self.config.max_jitter_ms);
            let r: f64 = self.rng.random();
            if r < self.config.too_late_fraction {
                delay += self.rng.random_range(400_000..=600_000);
            } else if r < self.config.too_late_fraction + self.config.late_fraction {
                delay += self.rng.random_range(70_000..=250_000);
            }
            let mut arrival = t + delay;
            if let Some(prev) = self.row_arrival.get(&key) {
                arrival = arrival.max(*prev);
            }
            if terminal {
                self.row_arrival.remove(&key);
            } else {
                self.row_arrival.insert(key.clone(), arrival);
            }
            let event = ChangeEvent {
                op: op as i32,
                before: before.map(Row::from),
                after: after.map(Row::from),
                source: Some(Source {
                    connector: "postgresql".into(),
                    db: "shop".into(),
                    schema: "public".into(),
                    table: table.as_str().into(),
                    lsn: self.lsn,
                    tx_id: self.tx_id,
                    ts_ms: t,
                }),
                ts_ms: arrival,
            };
            self.seq += 1;
            if self.committed.is_some() {
                transaction.push(event);
                continue;
            }
            self.pending.push(Reverse(Pending {
                arrival,
                seq: self.seq,
                shard: shard_of(&key, self.config.shards),
                event,
            }));
        }
        if let Some(queue) = self.committed.as_mut() {
            queue.push_back(transaction);
        }
    }
}

impl Input<ChangeEvent> for ShopGenerator {
    fn partitions(&self) -> Vec<String> {
        (0..self.config.shards).map(|i| format!("shard-{i}")).collect()
    }

    fn next(&mut self, p: usize) -> Result<Option<Item<ChangeEvent>>, InputError> {
        while self.queues.get(p).is_some_and(VecDeque::is_empty) {
            match self.next_event() {
                Some((shard, e)) => {
                    if let Some(q) = self.queues.get_mut(shard as usize) {
                        q.push_back(e);
                    }
                }
                None => break,
            }
        }
        Ok(self.queues.get_mut(p).and_then(VecDeque::pop_front).map(Item::Value))
    }
}

/// Writes the stream as one length-delimited Protobuf file per shard (`shard-<i>.pb` in `dir`),
/// replacing every `corrupt_every`-th event (if given) with an undecodable record (its first
/// byte damaged) so that dead letters can be seen. Calls `progress` with the number of events
/// written every few thousand events. Returns the files, in shard order.
pub fn write_shard_files(
    config: &ShopConfig,
    dir: &Path,
    corrupt_every: Option<u64>,
    mut progress: impl FnMut(u64),
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = (0..config.shards).map(|i| dir.join(format!("shard-{i}.pb"))).collect();
    let mut files = paths
        .iter()
        .map(|p| File::create(p).map(|f| BufWriter::with_capacity(1 << 16, f)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut generator = ShopGenerator::new(config.clone());
    let mut buf = Vec::with_capacity(512);
    let mut prefix = Vec::with_capacity(10);
    let mut n = 0u64;
    while let Some((shard, event)) = generator.next_event() {
        n += 1;
        buf.clear();
        event.encode(&mut buf)?;
        if corrupt_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
            buf[0] = 0x07; // field 0 / wire type 7: no decoder accepts this
        }
        let f = &mut files[shard as usize];
        prefix.clear();
        prost::encoding::encode_varint(buf.len() as u64, &mut prefix);
        f.write_all(&prefix)?;
        f.write_all(&buf)?;
        if n.is_multiple_of(16_384) {
            progress(n);
        }
    }
    for f in &mut files {
        f.flush()?;
    }
    progress(n);
    Ok(paths)
}
