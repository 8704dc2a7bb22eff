//! The pause barrier of a savepoint: disable a function's Kinesis event source mappings, wait
//! until they report `Disabled`, and enable them again afterwards (see `savepoint`,
//! "Consistency").

use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;

use crate::error::LifecycleError;

/// `UpdateEventSourceMapping` is refused while a mapping is being created or updated; it is
/// retried this many times.
const UPDATE_ATTEMPTS: u32 = 20;

/// A mapping as the barrier found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingState {
    /// The mapping's UUID.
    pub uuid: String,
    /// Its source (a Kinesis stream or consumer ARN).
    pub event_source_arn: String,
    /// Its state when it was listed (`Enabled`, `Disabled`, `Creating`, ...).
    pub state: String,
    /// Whether it was polling (or about to): the barrier enables it again afterwards.
    pub was_enabled: bool,
}

/// Pauses and resumes the Kinesis event source mappings of one function.
#[derive(Debug, Clone)]
pub struct EventSourceBarrier {
    client: Client,
    function: String,
    timeout: Duration,
    poll: Duration,
}

impl EventSourceBarrier {
    /// The barrier of `function` (name or ARN); waits up to 5 minutes for a state change.
    pub fn new(client: Client, function: &str) -> Self {
        EventSourceBarrier {
            client,
            function: function.to_owned(),
            timeout: Duration::from_secs(300),
            poll: Duration::from_millis(500),
        }
    }

    /// How long to wait for a mapping to become `Disabled` or `Enabled`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The function.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The function's event source mappings whose source is Kinesis.
    pub async fn kinesis_mappings(&self) -> Result<Vec<MappingState>, LifecycleError> {
        let mut mappings = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_event_source_mappings()
                .function_name(&self.function)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| LifecycleError::aws("Lambda", "ListEventSourceMappings", e))?;
            for m in out.event_source_mappings() {
                let arn = m.event_source_arn().unwrap_or_default();
                if !arn.starts_with("arn:aws:kinesis:") && !arn.contains(":kinesis:") {
                    continue;
                }
                let state = m.state().unwrap_or_default().to_owned();
                mappings.push(MappingState {
                    uuid: m.uuid().unwrap_or_default().to_owned(),
                    event_source_arn: arn.to_owned(),
                    was_enabled: !matches!(state.as_str(), "Disabled" | "Disabling"),
                    state,
                });
            }
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => return Ok(mappings),
            }
        }
    }

    /// Disables every Kinesis mapping of the function that is not disabled and waits until each
    /// reports `Disabled`. Returns every mapping with what it was before, for [`Self::resume`].
    pub async fn pause(&self) -> Result<Vec<MappingState>, LifecycleError> {
        let mappings = self.kinesis_mappings().await?;
        for m in &mappings {
            if m.state != "Disabled" {
                tracing::info!(function = %self.function, uuid = %m.uuid, state = %m.state, "disabling event source mapping");
                self.set_enabled(&m.uuid, false).await?;
            }
        }
        for m in &mappings {
            self.wait_for(&m.uuid, "Disabled").await?;
        }
        Ok(mappings)
    }

    /// Enables again the mappings that were enabled before [`Self::pause`] and waits until each
    /// reports `Enabled`.
    pub async fn resume(&self, paused: &[MappingState]) -> Result<(), LifecycleError> {
        for m in paused.iter().filter(|m| m.was_enabled) {
            tracing::info!(function = %self.function, uuid = %m.uuid, "enabling event source mapping");
            self.set_enabled(&m.uuid, true).await?;
        }
        for m in paused.iter().filter(|m| m.was_enabled) {
            self.wait_for(&m.uuid, "Enabled").await?;
        }
        Ok(())
    }

    async fn set_enabled(&self, uuid: &str, enabled: bool) -> Result<(), LifecycleError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(enabled)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if attempt < UPDATE_ATTEMPTS
                        && e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(LifecycleError::aws("Lambda", "UpdateEventSourceMapping", e)),
            }
        }
    }

    /// The mapping's current state.
    pub async fn state_of(&self, uuid: &str) -> Result<String, LifecycleError> {
        let out = self
            .client
            .get_event_source_mapping()
            .uuid(uuid)
            .send()
            .await
            .map_err(|e| LifecycleError::aws("Lambda", "GetEventSourceMapping", e))?;
        Ok(out.state().unwrap_or_default().to_owned())
    }

    async fn wait_for(&self, uuid: &str, wanted: &str) -> Result<(), LifecycleError> {
        let started = Instant::now();
        loop {
            let state = self.state_of(uuid).await?;
            if state == wanted {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(LifecycleError::Barrier {
                    uuid: uuid.to_owned(),
                    wanted: wanted.to_owned(),
                    state,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
