//! The execution reads every tool shares (`adapters::execution`) against a mocked Step
//! Functions: they follow pages, and stop where the caller asked.

use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
use aws_sdk_sfn::types::{ExecutionListItem, ExecutionStatus, HistoryEvent, HistoryEventType};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::DateTime;
use controller::adapters::execution::{history, list, HistoryRead};

fn event(id: i64) -> HistoryEvent {
    HistoryEvent::builder()
        .id(id)
        .timestamp(DateTime::from_millis(id))
        .r#type(HistoryEventType::PassStateEntered)
        .build()
        .expect("an event")
}

fn listed(n: i64) -> ExecutionListItem {
    ExecutionListItem::builder()
        .execution_arn(format!(
            "arn:aws:states:eu-west-1:123456789012:execution:sm:{n}"
        ))
        .state_machine_arn("arn:aws:states:eu-west-1:123456789012:stateMachine:sm")
        .name(n.to_string())
        .status(ExecutionStatus::Succeeded)
        .start_date(DateTime::from_millis(n * 1000))
        .build()
        .expect("an execution")
}

#[tokio::test]
async fn a_history_is_read_over_every_page_or_up_to_the_newest_asked_for() {
    let first = mock!(aws_sdk_sfn::Client::get_execution_history)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| {
            GetExecutionHistoryOutput::builder()
                .set_events(Some(vec![event(1), event(2)]))
                .next_token("page-2")
                .build()
                .expect("a page")
        });
    let second = mock!(aws_sdk_sfn::Client::get_execution_history)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            GetExecutionHistoryOutput::builder()
                .set_events(Some(vec![event(3)]))
                .build()
                .expect("a page")
        });
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&first, &second]);
    let all = history(&sfn, "arn:e", HistoryRead::ALL)
        .await
        .expect("read");
    assert_eq!(all.iter().map(|e| e.id()).collect::<Vec<_>>(), [1, 2, 3]);
    let newest = history(&sfn, "arn:e", HistoryRead::newest(2))
        .await
        .expect("read");
    assert_eq!(newest.len(), 2);
    // Both reads took the first page; only the whole read went on to the second.
    assert_eq!((first.num_calls(), second.num_calls()), (2, 1));
}

#[tokio::test]
async fn executions_are_listed_newest_first_down_to_the_time_asked_for() {
    let first = mock!(aws_sdk_sfn::Client::list_executions)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| {
            ListExecutionsOutput::builder()
                .set_executions(Some(vec![listed(5), listed(4)]))
                .next_token("page-2")
                .build()
                .expect("a page")
        });
    let second = mock!(aws_sdk_sfn::Client::list_executions)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            ListExecutionsOutput::builder()
                .set_executions(Some(vec![listed(3), listed(2)]))
                .build()
                .expect("a page")
        });
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&first, &second]);
    let names =
        |all: Vec<ExecutionListItem>| all.iter().map(|e| e.name().to_string()).collect::<Vec<_>>();
    let every = list(&sfn, "arn:sm", None, None).await.expect("listed");
    assert_eq!(names(every), ["5", "4", "3", "2"]);
    let since = list(&sfn, "arn:sm", Some(3000), None)
        .await
        .expect("listed");
    assert_eq!(names(since), ["5", "4", "3"]);
    let newest = list(&sfn, "arn:sm", None, Some(1)).await.expect("listed");
    assert_eq!(names(newest), ["5"]);
    assert_eq!((first.num_calls(), second.num_calls()), (3, 2));
}
