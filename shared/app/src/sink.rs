//! A stage's sinks, declared in code and addressed from the environment: each kind reads the
//! variables [`crate::env_var`] derives from the sink's name.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use shardflow_connectors::{
    DynamoDbSink, DynamoDbSinkConfig, KinesisSink, KinesisSinkConfig, PostgresRow, PostgresSink, PostgresSinkConfig,
    S3Sink, S3SinkConfig, SnsSink, SnsSinkConfig, SortKey, SqsSink, SqsSinkConfig,
};
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};

use crate::description::{address_suffix, EnvVar, SinkDescription};
use crate::error::AppError;
use crate::names::env_var;
use crate::vars::Vars;

/// What a sink's builder is given: the stage, the variables and the AWS configuration.
pub struct SinkSetup<'a> {
    /// The stage's name.
    pub stage: &'a str,
    /// The sink's name.
    pub sink: &'a str,
    /// Where its variables are read.
    pub vars: &'a dyn Vars,
    /// The AWS SDK configuration of the stage.
    pub sdk: &'a aws_config::SdkConfig,
}

impl SinkSetup<'_> {
    /// The sink's variable with `suffix`, which must be set.
    fn require(&self, suffix: &str, meaning: &str) -> Result<String, AppError> {
        self.vars.require(self.stage, &env_var(self.sink, suffix), meaning)
    }
}

type Built<Out> = BoxFuture<'static, Result<Box<dyn DynSink<Out>>, AppError>>;
type BuildFn<Out> = Arc<dyn Fn(&SinkSetup<'_>) -> Result<Built<Out>, AppError> + Send + Sync>;

/// A sink of a stage's results: its kind, name and target, and how it is built from the
/// environment.
pub struct Sink<Out> {
    name: String,
    kind: &'static str,
    target: Option<String>,
    env: Vec<EnvVar>,
    build: BuildFn<Out>,
}

impl<Out> Clone for Sink<Out> {
    fn clone(&self) -> Self {
        Sink {
            name: self.name.clone(),
            kind: self.kind,
            target: self.target.clone(),
            env: self.env.clone(),
            build: self.build.clone(),
        }
    }
}

fn var(sink: &str, suffix: &str, required: bool, meaning: &str) -> EnvVar {
    EnvVar {
        name: env_var(sink, suffix),
        required,
        meaning: meaning.to_owned(),
    }
}

fn ready<Out: 'static>(sink: impl DynSink<Out> + 'static) -> Result<Built<Out>, AppError> {
    let sink: Box<dyn DynSink<Out>> = Box::new(sink);
    Ok(Box::pin(async move { Ok(sink) }))
}

impl<Out: Serialize + Send + Sync + 'static> Sink<Out> {
    /// An SNS topic, one JSON message per result (idempotence as [`SnsSink`]'s). Variable:
    /// `SHARDFLOW_SINK_<NAME>_TOPIC_ARN`.
    pub fn sns(name: impl Into<String>) -> Self {
        let name = name.into();
        let env = vec![var(&name, address_suffix("sns"), true, "the topic's ARN")];
        Sink {
            name,
            kind: "sns",
            target: None,
            env,
            build: Arc::new(|setup| {
                let topic = setup.require(address_suffix("sns"), "the topic's ARN")?;
                let config = SnsSinkConfig::<Out>::new(topic);
                ready(SnsSink::new(aws_sdk_sns::Client::new(setup.sdk), config))
            }),
        }
    }

    /// An SQS queue, one JSON message per result (idempotence as [`SqsSink`]'s). Variable:
    /// `SHARDFLOW_SINK_<NAME>_QUEUE_URL`.
    pub fn sqs(name: impl Into<String>) -> Self {
        let name = name.into();
        let env = vec![var(&name, address_suffix("sqs"), true, "the queue's URL")];
        Sink {
            name,
            kind: "sqs",
            target: None,
            env,
            build: Arc::new(|setup| {
                let url = setup.require(address_suffix("sqs"), "the queue's URL")?;
                ready(SqsSink::new(
                    aws_sdk_sqs::Client::new(setup.sdk),
                    SqsSinkConfig::<Out>::new(url),
                ))
            }),
        }
    }

    /// An S3 bucket, one JSON object per result under `prefix` (idempotence as [`S3Sink`]'s).
    /// Variable: `SHARDFLOW_SINK_<NAME>_BUCKET`.
    pub fn s3(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        Sink::s3_with(name, prefix, None)
    }

    /// An S3 bucket, one object per key and window under `prefix` holding its latest pane.
    pub fn s3_latest_pane(
        name: impl Into<String>,
        prefix: impl Into<String>,
        key: impl Fn(&Out) -> String + Send + Sync + 'static,
    ) -> Self {
        Sink::s3_with(name, prefix, Some(Arc::new(key)))
    }

    #[allow(clippy::type_complexity)]
    fn s3_with(
        name: impl Into<String>,
        prefix: impl Into<String>,
        key: Option<Arc<dyn Fn(&Out) -> String + Send + Sync>>,
    ) -> Self {
        let name = name.into();
        let prefix = prefix.into();
        let env = vec![var(&name, address_suffix("s3"), true, "the bucket's name")];
        Sink {
            name,
            kind: "s3",
            target: Some(prefix.clone()),
            env,
            build: Arc::new(move |setup| {
                let bucket = setup.require(address_suffix("s3"), "the bucket's name")?;
                let mut config = S3SinkConfig::<Out>::new(bucket, prefix.clone());
                if let Some(key) = key.clone() {
                    config = config.latest_pane(move |v| key(v));
                }
                ready(S3Sink::new(aws_sdk_s3::Client::new(setup.sdk), config))
            }),
        }
    }

    /// A Kinesis stream (logical name `stream`; another stage's source, say), one record per
    /// result with its id, partitioned by `partition_key` (idempotence as [`KinesisSink`]'s).
    /// Variable: `SHARDFLOW_SINK_<NAME>_STREAM`.
    pub fn kinesis(
        name: impl Into<String>,
        stream: impl Into<String>,
        partition_key: impl Fn(&Out) -> String + Send + Sync + 'static,
    ) -> Self {
        let name = name.into();
        let env = vec![var(&name, address_suffix("kinesis"), true, "the stream's name or ARN")];
        let partition_key = Arc::new(partition_key);
        Sink {
            name,
            kind: "kinesis",
            target: Some(stream.into()),
            env,
            build: Arc::new(move |setup| {
                let stream = setup.require(address_suffix("kinesis"), "the stream's name or ARN")?;
                let key = partition_key.clone();
                let config = KinesisSinkConfig::<Out>::new(stream).partition_key(move |o| key(&o.value));
                ready(KinesisSink::new(aws_sdk_kinesis::Client::new(setup.sdk), config))
            }),
        }
    }

    /// A DynamoDB table keeping the latest pane per key (`key`) and window (`sort_key`), the
    /// result's fields as attributes (idempotence as [`DynamoDbSink`]'s). Variables:
    /// `SHARDFLOW_SINK_<NAME>_TABLE`, and optionally `SHARDFLOW_SINK_<NAME>_REGION` (default: the
    /// stage's region).
    pub fn dynamodb(
        name: impl Into<String>,
        key: impl Fn(&Out) -> String + Send + Sync + 'static,
        sort_key: SortKey,
    ) -> Self {
        let name = name.into();
        let env = vec![
            var(&name, address_suffix("dynamodb"), true, "the table's name"),
            var(&name, "REGION", false, "the table's region, if not the stage's"),
        ];
        let key = Arc::new(key);
        Sink {
            name,
            kind: "dynamodb",
            target: None,
            env,
            build: Arc::new(move |setup| {
                let table = setup.require(address_suffix("dynamodb"), "the table's name")?;
                let mut sdk = aws_sdk_dynamodb::config::Builder::from(setup.sdk);
                if let Some(region) = setup.vars.get(&env_var(setup.sink, "REGION")) {
                    sdk = sdk.region(aws_sdk_dynamodb::config::Region::new(region));
                }
                let key = key.clone();
                let config = DynamoDbSinkConfig::<Out>::new(table, move |v| key(v))
                    .sort_key(sort_key)
                    .named(setup.sink);
                ready(DynamoDbSink::new(
                    aws_sdk_dynamodb::Client::from_conf(sdk.build()),
                    config,
                ))
            }),
        }
    }
}

impl<Out: Send + Sync + 'static> Sink<Out> {
    /// A Postgres table `table` upserted with the latest pane of each row ([`PostgresSink`]),
    /// rows made by `row`; the table must exist (or `setup_sql`, run at start, creates it).
    /// Variables: `SHARDFLOW_SINK_<NAME>_DATABASE_URL` (a libpq connection string) or
    /// `SHARDFLOW_SINK_<NAME>_DATABASE_SECRET_ARN` (a Secrets Manager secret holding one).
    pub fn postgres<Row: PostgresRow + Send + Sync + 'static>(
        name: impl Into<String>,
        table: impl Into<String>,
        row: fn(&Out) -> Row,
        setup_sql: Option<&str>,
    ) -> Self {
        let name = name.into();
        let table = table.into();
        let setup_sql = setup_sql.map(str::to_owned);
        let env = vec![
            var(
                &name,
                address_suffix("postgres"),
                false,
                "a libpq connection string (or set the secret's ARN instead)",
            ),
            var(
                &name,
                "DATABASE_SECRET_ARN",
                false,
                "a Secrets Manager secret holding the connection string",
            ),
        ];
        Sink {
            name,
            kind: "postgres",
            target: Some(table.clone()),
            env,
            build: Arc::new(move |setup| {
                let url = setup.vars.get(&env_var(setup.sink, address_suffix("postgres")));
                let secret = setup.vars.get(&env_var(setup.sink, "DATABASE_SECRET_ARN"));
                if url.is_none() && secret.is_none() {
                    setup.require(address_suffix("postgres"), "a libpq connection string")?;
                }
                let stage = setup.stage.to_owned();
                let sm = aws_sdk_secretsmanager::Client::new(setup.sdk);
                let (table, setup_sql) = (table.clone(), setup_sql.clone());
                Ok(Box::pin(async move {
                    let url = match (url, secret) {
                        (Some(url), _) => url,
                        (None, secret) => read_secret(&sm, &stage, secret.unwrap_or_default()).await?,
                    };
                    let config = PostgresSinkConfig::for_row::<Row>().table(table);
                    let sink = PostgresSink::<Row>::connect(&url, config)
                        .await
                        .map_err(|e| AppError::setup(&stage, "connecting to Postgres", e))?;
                    if let Some(sql) = setup_sql {
                        sink.batch_execute(&sql)
                            .await
                            .map_err(|e| AppError::setup(&stage, "preparing the Postgres table", e))?;
                    }
                    let sink: Box<dyn DynSink<Out>> = Box::new(shardflow_stage::MapSink::new(sink, row));
                    Ok(sink)
                }))
            }),
        }
    }
}

/// The string value of the secret `arn`.
async fn read_secret(client: &aws_sdk_secretsmanager::Client, stage: &str, arn: String) -> Result<String, AppError> {
    let secret = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| {
        AppError::setup(
            stage,
            "reading the database secret",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e),
        )
    })?;
    secret.secret_string().map(|s| s.trim().to_owned()).ok_or_else(|| {
        AppError::setup(
            stage,
            "reading the database secret",
            format!("{arn} has no string value"),
        )
    })
}

impl<Out> Sink<Out> {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink's description.
    pub fn description(&self) -> SinkDescription {
        SinkDescription {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            target: self.target.clone(),
            env: self.env.clone(),
        }
    }

    /// Builds the sink from `setup`'s variables.
    pub(crate) async fn build(&self, setup: &SinkSetup<'_>) -> Result<Box<dyn DynSink<Out>>, AppError> {
        (self.build)(setup)?.await
    }
}

/// A [`ResultSink`] behind a pointer (the trait's `async fn` is not object safe).
pub trait DynSink<Out>: Send + Sync {
    /// [`ResultSink::emit`].
    fn emit_dyn<'a>(&'a self, outputs: &'a [Output<Out>]) -> BoxFuture<'a, Result<(), SinkError>>;
}

impl<Out: Sync, S: ResultSink<Out>> DynSink<Out> for S {
    fn emit_dyn<'a>(&'a self, outputs: &'a [Output<Out>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.emit(outputs))
    }
}

/// The sinks of a stage, fed every emit in declaration order. Idempotent because each is; an
/// emit that fails in one fails as a whole and the redelivery writes all again.
pub struct AppSinks<Out> {
    sinks: Vec<Box<dyn DynSink<Out>>>,
}

impl<Out> AppSinks<Out> {
    /// `sinks`, in order.
    pub fn new(sinks: Vec<Box<dyn DynSink<Out>>>) -> Self {
        AppSinks { sinks }
    }
}

impl<Out: Send + Sync> ResultSink<Out> for AppSinks<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        for sink in &self.sinks {
            sink.emit_dyn(outputs).await?;
        }
        Ok(())
    }
}
