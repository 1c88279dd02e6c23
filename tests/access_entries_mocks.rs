//! EKS errors the local EKS API does not produce, through aws-smithy-mocks: a system: group
//! rejected by EKS, throttling (retried with backoff), a cluster that does not exist.

use std::sync::Arc;
use std::time::Duration;

use aws_auth_operator::accessentries::client::{EksApi, EksClient};
use aws_auth_operator::accessentries::report::{ReportBoard, SyncReason};
use aws_auth_operator::accessentries::runner::Runner;
use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec};
use aws_auth_operator::plan::Settings;
use aws_sdk_eks::Client;
use aws_sdk_eks::error::ErrorMetadata;
use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryError;
use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
use aws_sdk_eks::operation::list_access_entries::ListAccessEntriesOutput;
use aws_sdk_eks::types::error::{InvalidParameterException, ResourceNotFoundException};
use aws_sdk_eks::types::{AccessConfigResponse, AuthenticationMode, Cluster};
use aws_smithy_mocks::{RuleMode, mock, mock_client};

const DEV: &str = "arn:aws:iam::111122223333:role/dev";

fn mapping(name: &str, arn: &str, groups: &[&str]) -> Arc<IamIdentityMapping> {
    let mut m = IamIdentityMapping::new(
        name,
        IamIdentityMappingSpec {
            arn: Some(arn.into()),
            username: Some("dev:{{SessionName}}".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        },
    );
    m.metadata.generation = Some(1);
    Arc::new(m)
}

fn cluster(mode: AuthenticationMode) -> DescribeClusterOutput {
    DescribeClusterOutput::builder()
        .cluster(
            Cluster::builder()
                .name("prod")
                .access_config(
                    AccessConfigResponse::builder()
                        .authentication_mode(mode)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn retry_fast(config: aws_sdk_eks::config::Builder) -> aws_sdk_eks::config::Builder {
    config.retry_config(
        aws_sdk_eks::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    )
}

#[tokio::test]
async fn eks_rejecting_a_create_is_reported_as_eks_error() {
    let describe = mock!(Client::describe_cluster)
        .then_output(|| cluster(AuthenticationMode::ApiAndConfigMap));
    let list = mock!(Client::list_access_entries)
        .then_output(|| ListAccessEntriesOutput::builder().build());
    let create = mock!(Client::create_access_entry).then_error(|| {
        CreateAccessEntryError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("The kubernetes group name system:custom is invalid, it cannot start with system:")
                .meta(ErrorMetadata::builder().code("InvalidParameterException").build())
                .build(),
        )
    });
    let read_back = mock!(Client::describe_access_entry).then_error(|| {
        aws_sdk_eks::operation::describe_access_entry::DescribeAccessEntryError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("No access entry")
                .meta(ErrorMetadata::builder().code("ResourceNotFoundException").build())
                .build(),
        )
    });
    let client = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &list, &create, &read_back],
        retry_fast
    );
    let board = ReportBoard::new();
    let mut runner = Runner::new(
        Arc::new(EksClient::from_client(client)),
        "prod",
        2,
        board.clone(),
        Settings::default(),
    );
    // An explicit group the admission rule would have refused, straight to the planner.
    let mut m = (*mapping("dev", DEV, &["devs"])).clone();
    m.spec.access_entry = Some(aws_auth_operator::accessentries::AccessEntrySpec {
        kubernetes_groups: Some(vec!["custom".into()]),
        ..Default::default()
    });
    let summary = runner.pass(&[Arc::new(m)], true).await;
    assert_eq!((summary.work, summary.failed), (1, 1));
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.synced, report.confirmed_in_place),
        (SyncReason::EksError, false, false)
    );
    assert!(
        report.message.contains("InvalidParameterException"),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("cannot start with system:"),
        "{}",
        report.message
    );
    assert!(report.message.contains("Retrying"), "{}", report.message);
    assert_eq!(create.num_calls(), 1, "a refusal is not retried");
    // The refusal is counted in the metrics by operation and code; the read-back's not-found is
    // an answer (no entry), not a failure.
    let text = aws_auth_operator::server::Metrics::new().encode();
    assert!(
        text.contains("aws_auth_operator_aws_api_errors_total{service=\"eks\",operation=\"CreateAccessEntry\",code=\"InvalidParameterException\"}"),
        "{text}"
    );
    assert!(
        !text.contains("operation=\"DescribeAccessEntry\",code=\"ResourceNotFoundException\""),
        "{text}"
    );
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let describe = mock!(Client::describe_cluster).then_output(|| cluster(AuthenticationMode::Api));
    let throttled = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    let list = mock!(Client::list_access_entries)
        .sequence()
        .http_status(429, Some(throttled.to_string()))
        .times(2)
        .output(|| ListAccessEntriesOutput::builder().build())
        .build();
    let client = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &list],
        retry_fast
    );
    let eks = EksClient::from_client(client);
    let listed = eks
        .list_access_entries("prod")
        .await
        .expect("third attempt succeeds");
    assert!(listed.is_empty());
    assert_eq!(list.num_calls(), 3, "two throttled attempts, then success");
    assert_eq!(eks.calls().total(), 1, "one logical call");

    // Throttled beyond the attempts: an EksError naming the throttling, no panic.
    let describe = mock!(Client::describe_cluster).then_output(|| cluster(AuthenticationMode::Api));
    let always = mock!(Client::list_access_entries)
        .sequence()
        .http_status(429, Some(throttled.to_string()))
        .repeatedly()
        .build();
    let client = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &always],
        retry_fast
    );
    let board = ReportBoard::new();
    let mut runner = Runner::new(
        Arc::new(EksClient::from_client(client)),
        "prod",
        2,
        board.clone(),
        Settings::default(),
    );
    let summary = runner.pass(&[mapping("dev", DEV, &["devs"])], true).await;
    let error = summary.error.expect("fails as a whole");
    assert!(error.contains("ThrottlingException"), "{error}");
    assert_eq!(always.num_calls(), 3);
    assert_eq!(board.get("dev").unwrap().reason, SyncReason::EksError);
}

#[tokio::test]
async fn a_cluster_that_does_not_exist_is_reported() {
    let describe = mock!(Client::describe_cluster).then_error(|| {
        DescribeClusterError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("No cluster found for name: prod.")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_eks, RuleMode::MatchAny, [&describe], retry_fast);
    let board = ReportBoard::new();
    let mut runner = Runner::new(
        Arc::new(EksClient::from_client(client)),
        "prod",
        2,
        board.clone(),
        Settings::default(),
    );
    let summary = runner.pass(&[mapping("dev", DEV, &["devs"])], true).await;
    assert!(
        summary
            .error
            .unwrap()
            .contains("No cluster found for name: prod.")
    );
    let report = board.get("dev").unwrap();
    assert_eq!(report.reason, SyncReason::EksError);
    assert!(
        report.message.contains("ResourceNotFoundException"),
        "{}",
        report.message
    );
    assert_eq!(describe.num_calls(), 1, "not found is not retried");
}

#[test]
fn the_binary_builds_an_eks_client_without_a_crypto_provider_clash() {
    // kube (rustls + aws-lc-rs) and the AWS SDK in one process: building both must not panic
    // ("Could not automatically determine the process-level CryptoProvider").
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Fixed credentials: the default chain could ask the instance metadata service.
        let eks = EksClient::for_endpoint("https://127.0.0.1:1", "eu-west-1", "test", "secret");
        // An https call to a closed port: fails with a connection error, not a panic.
        let err = eks.authentication_mode("prod").await.unwrap_err();
        assert!(
            err.to_string().contains("cannot reach the EKS API"),
            "{err}"
        );
        let kube_config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        kube::Client::try_from(kube_config).expect("a kube client next to the EKS client");
    });
}
