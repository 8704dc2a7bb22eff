//! AWS clients configured from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials),
//! as the AWS CLI would be.

/// The clients the operations commands use.
pub struct Clients {
    /// DynamoDB (state tables).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (savepoints, spilled state, the archive).
    pub s3: aws_sdk_s3::Client,
    /// Kinesis (streams and their shards).
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS (dead-letter queues).
    pub sqs: aws_sdk_sqs::Client,
    /// Lambda (functions and their event source mappings).
    pub lambda: aws_sdk_lambda::Client,
}

impl Clients {
    /// Loads the shared configuration once. S3 uses path-style addressing when a custom endpoint
    /// is set (emulators such as LocalStack serve buckets that way).
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let custom_endpoint =
            std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(custom_endpoint)
            .build();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
        }
    }
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
