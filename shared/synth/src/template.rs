//! An application's description as a CloudFormation template.

use shardflow_app::description::address_suffix;
use shardflow_app::{env_var, logical_id, AppDescription, SinkDescription, StageDescription, StageRole};

use crate::policy::{statement, Statement};
use crate::yaml::{get_att, list, map, reference, s, sub, Yaml};

/// What the template needs besides the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Where the functions' zips are, relative to the template: `<code_dir>/<function>.zip`.
    pub code_dir: String,
}

impl Default for SynthOptions {
    /// Zips in `../out/lambda`, where `functions/package` and `infra/build` put them, for a
    /// template one directory below the repository's root.
    fn default() -> Self {
        SynthOptions {
            code_dir: "../out/lambda".to_owned(),
        }
    }
}

/// The resources, parameters and outputs being assembled.
struct Template {
    parameters: Vec<(String, Yaml)>,
    resources: Vec<(String, Yaml)>,
    outputs: Vec<(String, Yaml)>,
}

impl Template {
    fn resource(&mut self, id: impl Into<String>, kind: &str, properties: Yaml) {
        self.resources
            .push((id.into(), map([("Type", s(kind)), ("Properties", properties)])));
    }

    fn output(&mut self, id: impl Into<String>, value: Yaml) {
        self.outputs.push((id.into(), map([("Value", value)])));
    }
}

fn colour_tag() -> Yaml {
    list([map([("Key", s("shardflow:colour")), ("Value", reference("Colour"))])])
}

fn number_parameter(default: i64, min: i64, max: Option<i64>, description: &str) -> Yaml {
    let mut p = map([
        ("Type", s("Number")),
        ("Default", Yaml::Int(default)),
        ("MinValue", Yaml::Int(min)),
    ]);
    if let Some(max) = max {
        p.insert("MaxValue", Yaml::Int(max));
    }
    p.insert("Description", s(description));
    p
}

fn parameters() -> Vec<(String, Yaml)> {
    let choice = |values: &[&str], default: &str, description: &str| {
        map([
            ("Type", s("String")),
            ("AllowedValues", list(values.iter().map(|v| s(*v)))),
            ("Default", s(default)),
            ("Description", s(description)),
        ])
    };
    vec![
        (
            "Colour".into(),
            choice(
                &["blue", "green"],
                "blue",
                "the deployment colour; a blue and a green stack live side by side",
            ),
        ),
        (
            "Architecture".into(),
            choice(
                &["arm64", "x86_64"],
                "arm64",
                "the architecture the function zips were built for",
            ),
        ),
        (
            "StartingPosition".into(),
            choice(
                &["TRIM_HORIZON", "LATEST"],
                "TRIM_HORIZON",
                "where new event source mappings start",
            ),
        ),
        (
            "ShardCount".into(),
            number_parameter(1, 1, None, "shards of each stream the application creates"),
        ),
        (
            "BatchSize".into(),
            number_parameter(500, 1, Some(10_000), "records per batch"),
        ),
        (
            "MaximumBatchingWindowInSeconds".into(),
            number_parameter(1, 0, Some(300), "how long Lambda gathers a batch"),
        ),
        (
            "MaximumRetryAttempts".into(),
            number_parameter(
                -1,
                -1,
                Some(10_000),
                "Lambda's retries of a failed batch (-1: forever; a stage dead-letters poison records itself)",
            ),
        ),
        (
            "MaximumRecordAgeInSeconds".into(),
            number_parameter(
                -1,
                -1,
                Some(604_800),
                "-1 retries records of any age; otherwise 60 to 604800",
            ),
        ),
        (
            "StageMaxAttempts".into(),
            number_parameter(
                3,
                1,
                None,
                "attempts of a failing record before it is dead-lettered as poison",
            ),
        ),
        (
            "FunctionMemorySize".into(),
            number_parameter(256, 128, Some(10_240), "every function's memory, MB"),
        ),
        (
            "FunctionTimeout".into(),
            number_parameter(60, 1, Some(900), "every function's timeout, seconds"),
        ),
        (
            "LogRetentionInDays".into(),
            map([
                ("Type", s("Number")),
                ("Default", Yaml::Int(14)),
                (
                    "AllowedValues",
                    list([1, 3, 5, 7, 14, 30, 60, 90, 180, 365].map(Yaml::Int)),
                ),
                ("Description", s("days the functions' logs are kept")),
            ]),
        ),
        (
            "IteratorAgeAlarmMilliseconds".into(),
            number_parameter(
                60_000,
                1_000,
                None,
                "a stage this far behind its stream raises its alarm",
            ),
        ),
    ]
}

fn encrypted_bucket(expire_state: bool) -> Yaml {
    let mut properties = map([
        (
            "BucketEncryption",
            map([(
                "ServerSideEncryptionConfiguration",
                list([map([(
                    "ServerSideEncryptionByDefault",
                    map([("SSEAlgorithm", s("AES256"))]),
                )])]),
            )]),
        ),
        (
            "PublicAccessBlockConfiguration",
            map([
                ("BlockPublicAcls", Yaml::Bool(true)),
                ("BlockPublicPolicy", Yaml::Bool(true)),
                ("IgnorePublicAcls", Yaml::Bool(true)),
                ("RestrictPublicBuckets", Yaml::Bool(true)),
            ]),
        ),
    ]);
    if expire_state {
        properties.insert(
            "LifecycleConfiguration",
            map([(
                "Rules",
                list([map([
                    ("Id", s("expire-orphaned-spilled-state")),
                    ("Status", s("Enabled")),
                    ("Prefix", s("state/")),
                    ("ExpirationInDays", Yaml::Int(91)),
                ])]),
            )]),
        );
    }
    properties.insert("Tags", colour_tag());
    properties
}

fn string_keyed_table(ttl: bool) -> Yaml {
    let attribute = |name: &str| map([("AttributeName", s(name)), ("AttributeType", s("S"))]);
    let key = |name: &str, kind: &str| map([("AttributeName", s(name)), ("KeyType", s(kind))]);
    let mut properties = map([
        ("BillingMode", s("PAY_PER_REQUEST")),
        ("AttributeDefinitions", list([attribute("pk"), attribute("sk")])),
        ("KeySchema", list([key("pk", "HASH"), key("sk", "RANGE")])),
        ("SSESpecification", map([("SSEEnabled", Yaml::Bool(true))])),
        (
            "PointInTimeRecoverySpecification",
            map([("PointInTimeRecoveryEnabled", Yaml::Bool(true))]),
        ),
    ]);
    if ttl {
        properties.insert(
            "TimeToLiveSpecification",
            map([("AttributeName", s("expires_at")), ("Enabled", Yaml::Bool(true))]),
        );
    }
    properties.insert("Tags", colour_tag());
    properties
}

fn queue() -> Yaml {
    map([
        ("MessageRetentionPeriod", Yaml::Int(1_209_600)),
        ("SqsManagedSseEnabled", Yaml::Bool(true)),
        ("Tags", colour_tag()),
    ])
}

fn alarm(
    description: String,
    namespace: &str,
    metric: &str,
    dimension: (&str, Yaml),
    statistic: &str,
    periods: i64,
    threshold: Yaml,
) -> Yaml {
    map([
        ("AlarmDescription", s(description)),
        ("Namespace", s(namespace)),
        ("MetricName", s(metric)),
        (
            "Dimensions",
            list([map([("Name", s(dimension.0)), ("Value", dimension.1)])]),
        ),
        ("Statistic", s(statistic)),
        ("Period", Yaml::Int(60)),
        ("EvaluationPeriods", Yaml::Int(periods)),
        ("Threshold", threshold),
        ("ComparisonOperator", s("GreaterThanThreshold")),
        ("TreatMissingData", s("notBreaching")),
    ])
}

/// The logical id of the stream with logical name `stream`.
pub fn stream_id(stream: &str) -> String {
    format!("{}Stream", logical_id(stream))
}

/// The logical id of the resource of sink `sink` of stage `stage` (`<Stage><Sink><Kind>`).
pub fn sink_resource_id(stage: &str, sink: &SinkDescription) -> String {
    let kind = match sink.kind.as_str() {
        "sns" => "Topic",
        "sqs" => "Queue",
        "s3" => "Bucket",
        "postgres" => "DatabaseSecret",
        "kinesis" => return stream_id(sink.target.as_deref().unwrap_or_default()),
        _ => "Table",
    };
    format!("{}{}{kind}", logical_id(stage), logical_id(&sink.name))
}

/// A stream's capacity mode, said explicitly: provisioned, with the template's shard count (AWS's
/// default without it; LocalStack's CloudFormation makes such a stream on-demand, of which its
/// Kinesis allows ten).
fn provisioned() -> (&'static str, Yaml) {
    ("StreamModeDetails", map([("StreamMode", s("PROVISIONED"))]))
}

/// The shared resources: streams, state, failure queues and their alarms.
fn shared_resources(app: &AppDescription, t: &mut Template) {
    for stream in app.streams() {
        let id = stream_id(&stream);
        t.resource(
            &id,
            "AWS::Kinesis::Stream",
            map([
                ("ShardCount", reference("ShardCount")),
                provisioned(),
                ("RetentionPeriodHours", Yaml::Int(168)),
                (
                    "StreamEncryption",
                    map([("EncryptionType", s("KMS")), ("KeyId", s("alias/aws/kinesis"))]),
                ),
                ("Tags", colour_tag()),
            ]),
        );
        t.output(format!("{id}Name"), reference(&id));
        t.output(format!("{id}Arn"), get_att(&id, "Arn"));
    }
    shuffle_streams(app, t);
    t.resource("StateTable", "AWS::DynamoDB::Table", string_keyed_table(true));
    t.resource("StateBucket", "AWS::S3::Bucket", encrypted_bucket(true));
    t.resource("DeadLetterQueue", "AWS::SQS::Queue", queue());
    t.resource("FailedBatchesQueue", "AWS::SQS::Queue", queue());
    if app.stages.iter().any(|s| s.dead_letters == "s3") {
        t.resource("DeadLetterBucket", "AWS::S3::Bucket", encrypted_bucket(false));
        t.output("DeadLetterBucketName", reference("DeadLetterBucket"));
    }
    for (id, queue, what) in [
        (
            "DeadLetterQueueDepthAlarm",
            "DeadLetterQueue",
            "records were dead-lettered (undecodable, late beyond allowed lateness, or poison)",
        ),
        (
            "FailedBatchesAlarm",
            "FailedBatchesQueue",
            "Lambda gave up on a batch (retry limit or record age); its position is in the queue",
        ),
    ] {
        t.resource(
            id,
            "AWS::CloudWatch::Alarm",
            alarm(
                what.to_owned(),
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                ("QueueName", get_att(queue, "QueueName")),
                "Maximum",
                1,
                Yaml::Int(0),
            ),
        );
    }
    t.output("StateTableName", reference("StateTable"));
    t.output("StateBucketName", reference("StateBucket"));
    t.output("DeadLetterQueueUrl", reference("DeadLetterQueue"));
    t.output("FailedBatchesQueueUrl", reference("FailedBatchesQueue"));
}

/// The parameter of the shard count of shuffle stream `shuffle`.
pub fn shuffle_shard_count_parameter(shuffle: &str) -> String {
    format!("{}ShardCount", logical_id(shuffle))
}

/// The shuffle streams (issue 13) with their parameters: one shard count each (a shard owns
/// whole key groups; the stream may be split or merged while running), and the retention and
/// idleness every shuffle shares.
fn shuffle_streams(app: &AppDescription, t: &mut Template) {
    let shuffles = app.shuffle_streams();
    if shuffles.is_empty() {
        return;
    }
    t.parameters.push((
        "ShuffleRetentionHours".into(),
        number_parameter(
            24,
            24,
            Some(8_760),
            "retention of the shuffle streams: how long a downstream stage may stall before shuffled records expire unread",
        ),
    ));
    t.parameters.push((
        "ShuffleIdlenessMs".into(),
        number_parameter(
            60_000,
            1_000,
            None,
            "ms of a downstream stage's processing time after which an upstream shard that sent nothing stops holding its watermark back",
        ),
    ));
    for shuffle in shuffles {
        let id = stream_id(&shuffle);
        let count = shuffle_shard_count_parameter(&shuffle);
        t.parameters.push((
            count.clone(),
            number_parameter(
                4,
                1,
                None,
                &format!("shards of the shuffle stream {shuffle}; each owns whole key groups"),
            ),
        ));
        t.resource(
            &id,
            "AWS::Kinesis::Stream",
            map([
                ("ShardCount", reference(&count)),
                provisioned(),
                ("RetentionPeriodHours", reference("ShuffleRetentionHours")),
                (
                    "StreamEncryption",
                    map([("EncryptionType", s("KMS")), ("KeyId", s("alias/aws/kinesis"))]),
                ),
                ("Tags", colour_tag()),
            ]),
        );
        t.output(format!("{id}Name"), reference(&id));
        t.output(format!("{id}Arn"), get_att(&id, "Arn"));
    }
}

/// `SHARDFLOW_JOIN_INPUTS` of the join reading `downstream`'s shuffle: `stage=<input ARN>,..`.
fn join_inputs(app: &AppDescription, upstreams: &[String]) -> Yaml {
    let entries: Vec<String> = upstreams
        .iter()
        .map(|up| {
            let input = app
                .stage(up)
                .and_then(StageDescription::input_stream)
                .unwrap_or_default();
            format!("{up}=${{{}.Arn}}", stream_id(input))
        })
        .collect();
    sub(entries.join(","))
}

/// The role-specific environment and statements of a split stage, and its tick.
fn split_stage(
    app: &AppDescription,
    stage: &StageDescription,
    env: &mut Vec<(String, Yaml)>,
    statements: &mut Vec<Statement>,
    t: &mut Template,
) {
    match &stage.role {
        StageRole::Whole => {}
        StageRole::Upstream { shuffle } => {
            let id = stream_id(shuffle);
            env.push(("SHARDFLOW_SHUFFLE_STREAM".into(), reference(&id)));
            statements.push(statement(
                "WriteShuffle",
                // ListShards: the writer's shard map (read again after a reshard)
                &[
                    "kinesis:PutRecords",
                    "kinesis:PutRecord",
                    "kinesis:ListShards",
                    "kinesis:DescribeStreamSummary",
                ],
                get_att(&id, "Arn"),
            ));
            if let Some(StageRole::Downstream { upstreams }) = app.downstream_of(shuffle).map(|d| &d.role) {
                if upstreams.len() > 1 {
                    env.push(("SHARDFLOW_JOIN_INPUTS".into(), join_inputs(app, upstreams)));
                }
            }
            tick(stage, t);
        }
        StageRole::Downstream { upstreams } => {
            env.push(("SHARDFLOW_IDLENESS_MS".into(), reference("ShuffleIdlenessMs")));
            env.push((
                "SHARDFLOW_INPUT_RETENTION_HOURS".into(),
                reference("ShuffleRetentionHours"),
            ));
            match upstreams.as_slice() {
                [up] => {
                    let input = app
                        .stage(up)
                        .and_then(StageDescription::input_stream)
                        .unwrap_or_default();
                    env.push(("SHARDFLOW_UPSTREAM_STAGE".into(), s(up)));
                    env.push((
                        "SHARDFLOW_UPSTREAM_INPUT_STREAM".into(),
                        get_att(&stream_id(input), "Arn"),
                    ));
                }
                _ => env.push(("SHARDFLOW_JOIN_INPUTS".into(), join_inputs(app, upstreams))),
            }
        }
    }
}

/// The tick of an upstream stage: an EventBridge schedule invoking it every minute with
/// `{"shardflowTick": {}}`, so that it sends a heartbeat to every shuffle shard and its
/// downstream's idleness rule releases upstream shards that went silent (Lambda invokes nothing
/// for them). A window closes downstream at most `ShuffleIdlenessMs` + 1 minute + one batching
/// window after the last active upstream shard's watermark passed it.
fn tick(stage: &StageDescription, t: &mut Template) {
    let name = logical_id(&stage.name);
    let (rule, function) = (format!("{name}TickRule"), format!("{name}Function"));
    t.resource(
        &rule,
        "AWS::Events::Rule",
        map([
            (
                "Description",
                s(format!(
                    "the shuffle tick of {} (heartbeats for idle input shards)",
                    stage.name
                )),
            ),
            ("ScheduleExpression", s("rate(1 minute)")),
            ("State", s("ENABLED")),
            (
                "Targets",
                list([map([
                    ("Id", s(format!("{}-tick", stage.name))),
                    ("Arn", get_att(&function, "Arn")),
                    ("Input", s(r#"{"shardflowTick": {}}"#)),
                ])]),
            ),
        ]),
    );
    t.resource(
        format!("{name}TickPermission"),
        "AWS::Lambda::Permission",
        map([
            ("Action", s("lambda:InvokeFunction")),
            ("FunctionName", reference(&function)),
            ("Principal", s("events.amazonaws.com")),
            ("SourceArn", get_att(&rule, "Arn")),
        ]),
    );
}

/// A sink's resource (or parameter), its environment and its role statements.
fn sink_resources(
    stage: &StageDescription,
    sink: &SinkDescription,
    t: &mut Template,
) -> (Vec<(String, Yaml)>, Vec<Statement>) {
    let id = sink_resource_id(&stage.name, sink);
    let address = env_var(&sink.name, address_suffix(&sink.kind));
    let sid = format!("{}{}", logical_id(&sink.name), "Sink");
    match sink.kind.as_str() {
        "sns" => {
            t.resource(
                &id,
                "AWS::SNS::Topic",
                map([("KmsMasterKeyId", s("alias/aws/sns")), ("Tags", colour_tag())]),
            );
            t.output(format!("{id}Arn"), reference(&id));
            let kms = Statement {
                condition: Some(map([(
                    "ForAnyValue:StringEquals",
                    map([("kms:ResourceAliases", s("alias/aws/sns"))]),
                )])),
                ..statement(
                    &format!("{sid}Encryption"),
                    &["kms:GenerateDataKey", "kms:Decrypt"],
                    list([sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")]),
                )
            };
            (
                vec![(address, reference(&id))],
                vec![statement(&sid, &["sns:Publish"], reference(&id)), kms],
            )
        }
        "sqs" => {
            t.resource(&id, "AWS::SQS::Queue", queue());
            t.output(format!("{id}Url"), reference(&id));
            (
                vec![(address, reference(&id))],
                vec![statement(&sid, &["sqs:SendMessage"], get_att(&id, "Arn"))],
            )
        }
        "s3" => {
            t.resource(&id, "AWS::S3::Bucket", encrypted_bucket(false));
            t.output(format!("{id}Name"), reference(&id));
            let prefix = sink.target.as_deref().unwrap_or_default().trim_matches('/');
            (
                vec![(address, reference(&id))],
                vec![statement(
                    &sid,
                    &["s3:PutObject", "s3:GetObject"],
                    sub(format!("${{{id}.Arn}}/{prefix}/*")),
                )],
            )
        }
        "kinesis" => (
            vec![(address, reference(&id))],
            vec![statement(
                &sid,
                &["kinesis:PutRecord", "kinesis:PutRecords"],
                get_att(&id, "Arn"),
            )],
        ),
        "postgres" => {
            let parameter = format!("{}{}DatabaseUrl", logical_id(&stage.name), logical_id(&sink.name));
            t.parameters.push((
                parameter.clone(),
                map([
                    ("Type", s("String")),
                    ("NoEcho", Yaml::Bool(true)),
                    (
                        "Description",
                        s(format!(
                            "sink `{}` of stage `{}`: the Postgres connection (libpq), kept in a secret only this stage reads",
                            sink.name, stage.name
                        )),
                    ),
                ]),
            ));
            t.resource(
                &id,
                "AWS::SecretsManager::Secret",
                map([
                    (
                        "Description",
                        s(format!("the Postgres connection of sink `{}`", sink.name)),
                    ),
                    ("SecretString", reference(&parameter)),
                    ("Tags", colour_tag()),
                ]),
            );
            (
                vec![(env_var(&sink.name, "DATABASE_SECRET_ARN"), reference(&id))],
                vec![statement(&sid, &["secretsmanager:GetSecretValue"], reference(&id))],
            )
        }
        _ => {
            t.resource(&id, "AWS::DynamoDB::Table", string_keyed_table(false));
            t.output(format!("{id}Name"), reference(&id));
            (
                vec![(address, reference(&id))],
                vec![statement(&sid, &["dynamodb:PutItem"], get_att(&id, "Arn"))],
            )
        }
    }
}

/// One stage: its sinks' resources, log group, role, function, mapping and alarms.
fn stage_resources(app: &AppDescription, stage: &StageDescription, options: &SynthOptions, t: &mut Template) {
    let name = logical_id(&stage.name);
    let source = stage.source.as_ref().map(|s| s.stream.as_str()).unwrap_or_default();
    let input = stream_id(source);
    let (log_group, role, function) = (
        format!("{name}LogGroup"),
        format!("{name}Role"),
        format!("{name}Function"),
    );
    let mut env: Vec<(String, Yaml)> = vec![
        ("SHARDFLOW_STAGE".into(), s(&stage.name)),
        ("SHARDFLOW_COLOUR".into(), reference("Colour")),
        ("SHARDFLOW_STATE_TABLE".into(), reference("StateTable")),
        ("SHARDFLOW_INPUT_STREAM".into(), get_att(&input, "Arn")),
        ("SHARDFLOW_MAX_ATTEMPTS".into(), reference("StageMaxAttempts")),
        ("SHARDFLOW_PARALLELIZATION_FACTOR".into(), s("1")),
        ("RUST_LOG".into(), s("info")),
    ];
    let mut statements = vec![
        statement(
            "Logs",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            get_att(&log_group, "Arn"),
        ),
        statement(
            "ReadInput",
            &[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            get_att(&input, "Arn"),
        ),
        statement(
            "State",
            &[
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem",
            ],
            get_att("StateTable", "Arn"),
        ),
        statement(
            "FailedBatches",
            &["sqs:SendMessage"],
            get_att("FailedBatchesQueue", "Arn"),
        ),
    ];
    if stage.state.spill {
        env.push(("SHARDFLOW_SPILL_BUCKET".into(), reference("StateBucket")));
        statements.push(statement(
            "SpilledState",
            &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            sub("${StateBucket.Arn}/state/*"),
        ));
    }
    if stage.dead_letters == "s3" {
        env.push(("SHARDFLOW_DLQ_BUCKET".into(), reference("DeadLetterBucket")));
        statements.push(statement(
            "DeadLetters",
            &["s3:PutObject"],
            sub("${DeadLetterBucket.Arn}/dead-letters/*"),
        ));
    } else {
        env.push(("SHARDFLOW_DLQ_URL".into(), reference("DeadLetterQueue")));
        statements.push(statement(
            "DeadLetters",
            &["sqs:SendMessage"],
            get_att("DeadLetterQueue", "Arn"),
        ));
    }
    split_stage(app, stage, &mut env, &mut statements, t);
    for sink in &stage.sinks {
        let (sink_env, sink_statements) = sink_resources(stage, sink, t);
        env.extend(sink_env);
        statements.extend(sink_statements);
    }
    t.resource(
        &log_group,
        "AWS::Logs::LogGroup",
        map([
            (
                "LogGroupName",
                sub(format!("/aws/lambda/${{AWS::StackName}}-{}", stage.name)),
            ),
            ("RetentionInDays", reference("LogRetentionInDays")),
        ]),
    );
    t.resource(
        &role,
        "AWS::IAM::Role",
        map([
            ("Description", s(format!("stage {}, least privilege", stage.name))),
            (
                "AssumeRolePolicyDocument",
                map([
                    ("Version", s("2012-10-17")),
                    (
                        "Statement",
                        list([map([
                            ("Effect", s("Allow")),
                            ("Principal", map([("Service", s("lambda.amazonaws.com"))])),
                            ("Action", s("sts:AssumeRole")),
                        ])]),
                    ),
                ]),
            ),
            (
                "Policies",
                list([map([
                    ("PolicyName", s("stage")),
                    (
                        "PolicyDocument",
                        map([
                            ("Version", s("2012-10-17")),
                            ("Statement", list(statements.into_iter().map(Statement::into_yaml))),
                        ]),
                    ),
                ])]),
            ),
            ("Tags", colour_tag()),
        ]),
    );
    let mut function_resource = map([
        ("Type", s("AWS::Lambda::Function")),
        ("DependsOn", s(&log_group)),
        (
            "Properties",
            map([
                ("FunctionName", sub(format!("${{AWS::StackName}}-{}", stage.name))),
                (
                    "Description",
                    s(format!(
                        "stage {} of {} (pipeline {})",
                        stage.name,
                        source,
                        stage.pipeline.as_deref().unwrap_or("-")
                    )),
                ),
                ("Runtime", s("provided.al2023")),
                ("Handler", s("bootstrap")),
                ("Architectures", list([reference("Architecture")])),
                ("MemorySize", reference("FunctionMemorySize")),
                ("Timeout", reference("FunctionTimeout")),
                ("Role", get_att(&role, "Arn")),
                (
                    "Code",
                    s(format!(
                        "{}/{}.zip",
                        options.code_dir.trim_end_matches('/'),
                        stage.function
                    )),
                ),
                ("Environment", map([("Variables", Yaml::Map(env))])),
                ("Tags", colour_tag()),
            ]),
        ),
    ]);
    function_resource.insert("Metadata", map([("shardflow:function", s(&stage.function))]));
    t.resources.push((function.clone(), function_resource));
    t.resource(
        format!("{name}Mapping"),
        "AWS::Lambda::EventSourceMapping",
        map([
            ("EventSourceArn", get_att(&input, "Arn")),
            ("FunctionName", reference(&function)),
            (
                "StartingPosition",
                // a shuffle stream is new with the stack: read from its beginning
                match stage.role {
                    StageRole::Downstream { .. } => s("TRIM_HORIZON"),
                    _ => reference("StartingPosition"),
                },
            ),
            ("BatchSize", reference("BatchSize")),
            (
                "MaximumBatchingWindowInSeconds",
                reference("MaximumBatchingWindowInSeconds"),
            ),
            ("ParallelizationFactor", Yaml::Int(1)),
            ("BisectBatchOnFunctionError", Yaml::Bool(true)),
            ("MaximumRetryAttempts", reference("MaximumRetryAttempts")),
            ("MaximumRecordAgeInSeconds", reference("MaximumRecordAgeInSeconds")),
            ("FunctionResponseTypes", list([s("ReportBatchItemFailures")])),
            (
                "DestinationConfig",
                map([(
                    "OnFailure",
                    map([("Destination", get_att("FailedBatchesQueue", "Arn"))]),
                )]),
            ),
        ]),
    );
    t.resource(
        format!("{name}IteratorAgeAlarm"),
        "AWS::CloudWatch::Alarm",
        alarm(
            format!("the {} stage is falling behind its stream", stage.name),
            "AWS/Lambda",
            "IteratorAge",
            ("FunctionName", reference(&function)),
            "Maximum",
            5,
            reference("IteratorAgeAlarmMilliseconds"),
        ),
    );
    t.resource(
        format!("{name}ErrorsAlarm"),
        "AWS::CloudWatch::Alarm",
        alarm(
            format!(
                "the {} stage's invocations fail (Lambda retries its batches)",
                stage.name
            ),
            "AWS/Lambda",
            "Errors",
            ("FunctionName", reference(&function)),
            "Sum",
            5,
            Yaml::Int(0),
        ),
    );
    t.output(format!("{function}Name"), reference(&function));
}

/// The template of `app` (which must be valid: see [`crate::synthesize`]).
pub(crate) fn template(app: &AppDescription, options: &SynthOptions) -> Yaml {
    let mut t = Template {
        parameters: parameters(),
        resources: Vec::new(),
        outputs: vec![("Colour".into(), map([("Value", reference("Colour"))]))],
    };
    shared_resources(app, &mut t);
    for stage in &app.stages {
        stage_resources(app, stage, options, &mut t);
    }
    map([
        ("AWSTemplateFormatVersion", s("2010-09-09")),
        (
            "Description",
            s(format!(
                "shardflow application {}: {} (synthesized by shardflow synth; edit the application, not this file)",
                app.app,
                app.stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        (
            "Metadata",
            map([(
                "cfn-lint",
                map([(
                    "config",
                    // Code points at local zips on purpose: the deploy commands package them.
                    map([("ignore_checks", list([s("W3002")]))]),
                )]),
            )]),
        ),
        ("Parameters", Yaml::Map(t.parameters)),
        ("Resources", Yaml::Map(t.resources)),
        ("Outputs", Yaml::Map(t.outputs)),
    ])
}
