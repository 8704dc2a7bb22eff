//! The partial batch response (`ReportBatchItemFailures`).

use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::sequence::SequenceNumber;

/// The response for a batch whose records up to (not including) `first_failed` are committed:
/// Lambda checkpoints before `first_failed` and retries from it. `None`: the whole batch succeeded.
pub fn batch_response(first_failed: Option<&SequenceNumber>) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(seq) = first_failed {
        response.add_failure(seq.to_string());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_an_empty_list_and_failure_names_the_sequence_number() {
        let ok = serde_json::to_value(batch_response(None)).unwrap();
        assert_eq!(ok, serde_json::json!({"batchItemFailures": []}));
        let seq = SequenceNumber::parse("49568167373333333334444444444444444444444444444444444444").unwrap();
        let failed = serde_json::to_value(batch_response(Some(&seq))).unwrap();
        assert_eq!(
            failed,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "49568167373333333334444444444444444444444444444444444444"}]})
        );
    }
}
