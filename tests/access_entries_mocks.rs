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

/// A local "EKS API" that answers DescribeCluster and ListAccessEntries (when `answer_reads`)
/// and never answers anything else: it accepts the connection, reads the request and holds it.
/// That is what a hung endpoint (a stopped process, a black-holed route) looks like to a client.
async fn hung_eks(answer_reads: bool, listed: Vec<String>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let list_body = serde_json::json!({ "accessEntries": listed }).to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let list_body = list_body.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    buffer.drain(..end + 4);
                    let path = head.split_whitespace().nth(1).unwrap_or_default();
                    let body = match path.split('?').next().unwrap_or_default() {
                        "/clusters/prod" if answer_reads => serde_json::json!({
                            "cluster": {"name": "prod", "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"}}
                        })
                        .to_string(),
                        "/clusters/prod/access-entries" if answer_reads => list_body.clone(),
                        _ => {
                            // Never answer; keep the connection open.
                            futures::future::pending::<()>().await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The bound a person sees "EKS is not answering" within, from the start of a pass.
const NOT_ANSWERING_BOUND: Duration = Duration::from_secs(15);

/// An EKS API that accepts connections and never answers: the pass fails within the operation
/// timeout (not the SDK's minute and a half), every mapping says EKS is not answering, and the
/// board carries the problem for /readyz and the metric.
#[tokio::test]
async fn a_hung_eks_api_is_reported_within_seconds() {
    let endpoint = hung_eks(false, Vec::new()).await;
    let eks = Arc::new(EksClient::for_endpoint(
        &endpoint,
        "us-east-1",
        "test",
        "test",
    ));
    let board = ReportBoard::new();
    let mut problems = board.eks_problem();
    let mut runner = Runner::new(eks, "prod", 4, board.clone(), Settings::default());
    let mappings = vec![
        mapping("dev", DEV, &["devs"]),
        mapping("ops", "arn:aws:iam::111122223333:role/ops", &["ops"]),
    ];
    let started = std::time::Instant::now();
    let summary = runner.pass(&mappings, true).await;
    let elapsed = started.elapsed();
    eprintln!(
        "hung EKS API reported after {elapsed:?}: {:?}",
        summary.error
    );
    assert!(elapsed < NOT_ANSWERING_BOUND, "{elapsed:?}");
    let error = summary.error.expect("the pass failed");
    assert!(error.contains("cannot reach the EKS API"), "{error}");
    for name in ["dev", "ops"] {
        let report = board.get(name).expect("a report");
        assert_eq!(report.reason, SyncReason::EksError);
        assert!(
            report.message.starts_with("EKS is not answering"),
            "{}",
            report.message
        );
    }
    let problem = problems.borrow_and_update().clone().expect("a problem");
    assert!(problem.starts_with("EKS is not answering"), "{problem}");
    assert_eq!(board.cluster().eks_problem, Some(problem));
}

/// EKS answers the list, then hangs on every entry: the pass does not wait for one timeout per
/// entry (20 entries, 4 at a time, would be 50 s); the first call that gets no answer ends the
/// calls not started yet.
#[tokio::test]
async fn a_hang_in_the_middle_of_a_pass_costs_one_timeout() {
    let arns: Vec<String> = (0..20)
        .map(|i| format!("arn:aws:iam::111122223333:role/r{i}"))
        .collect();
    let endpoint = hung_eks(true, arns.clone()).await;
    let eks = Arc::new(EksClient::for_endpoint(
        &endpoint,
        "us-east-1",
        "test",
        "test",
    ));
    let board = ReportBoard::new();
    let mut runner = Runner::new(eks, "prod", 4, board.clone(), Settings::default());
    let mappings: Vec<_> = arns
        .iter()
        .enumerate()
        .map(|(i, arn)| mapping(&format!("m{i}"), arn, &["devs"]))
        .collect();
    let started = std::time::Instant::now();
    let summary = runner.pass(&mappings, true).await;
    let elapsed = started.elapsed();
    eprintln!("pass over 20 hung entries took {elapsed:?}");
    assert!(elapsed < NOT_ANSWERING_BOUND, "{elapsed:?}");
    assert!(summary.error.is_none(), "the list went through");
    assert_eq!(summary.work, 0, "nothing is decided on entries not read");
    for i in 0..20 {
        let report = board.get(&format!("m{i}")).expect("a report");
        assert_eq!(report.reason, SyncReason::EksError, "{}", report.message);
    }
    let problem = board.cluster().eks_problem.expect("a problem");
    assert!(problem.starts_with("EKS is not answering"), "{problem}");
}

/// The IAM client of the principal resolver has the same bound.
#[tokio::test]
async fn a_hung_iam_api_is_an_error_within_seconds() {
    use aws_auth_operator::principals::iam::{IamApi, IamClient};
    let endpoint = hung_eks(false, Vec::new()).await;
    let iam = IamClient::for_endpoint(&endpoint, "us-east-1", "test", "test");
    let started = std::time::Instant::now();
    let result = iam.list_roles("/aws-reserved/sso.amazonaws.com/").await;
    let elapsed = started.elapsed();
    eprintln!("hung IAM API reported after {elapsed:?}: {result:?}");
    assert!(elapsed < NOT_ANSWERING_BOUND, "{elapsed:?}");
    let error = result.expect_err("no answer");
    assert!(error.message.contains("cannot reach IAM"), "{error}");
}
