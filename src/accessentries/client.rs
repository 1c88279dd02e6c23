//! The EKS API the access-entry loop needs, behind a small trait, implemented with aws-sdk-eks.
//! The SDK's standard retry (exponential backoff with jitter, throttling included) is on, within
//! short timeouts ([`timeouts`]): an EKS API that does not answer is reported within seconds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types::{AccessScope, AccessScopeType};
use thiserror::Error;

use super::AccessEntriesConfig;
use super::spec::AccessEntryType;
use super::sync::{AuthenticationMode, ObservedEntry, ObservedPolicy};
use super::translate::{DesiredPolicy, PolicyScope};

/// Page size of the list calls (the EKS maximum).
pub const LIST_PAGE_SIZE: i32 = 100;
/// Attempts per call, throttling included (the SDK's standard retry, exponential backoff).
pub const MAX_ATTEMPTS: u32 = 5;
/// Longest wait for a TCP (and TLS) connection to the API.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the answer to one attempt of a call. EKS and IAM answer their control-plane
/// calls in well under a second; an attempt that takes this long is a hung API, and is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a call may take, retries and their backoff included: a hung API is an error after
/// this long (before, with the SDK's defaults stretched to 90 s, a mapping showed `Pending` for
/// a minute and a half). Throttling retries fit in it: the backoff is at most [`MAX_BACKOFF`].
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest backoff between two attempts of a call.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The timeouts of every AWS client of the operator (EKS, IAM, STS).
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The retry of every AWS client of the operator: the SDK's standard retry (exponential backoff
/// with jitter; throttling, timeouts and 5xx retried) within [`OPERATION_TIMEOUT`].
pub fn retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(MAX_BACKOFF)
}

/// A failed EKS call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EksError {
    /// EKS answered with an error.
    #[error("{operation}: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("{operation}: cannot reach the EKS API: {message}")]
    Unreachable {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: {message}")]
    Other {
        operation: &'static str,
        message: String,
    },
}

impl EksError {
    pub fn code(&self) -> Option<&str> {
        match self {
            EksError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some("ResourceNotFoundException")
    }

    pub fn is_in_use(&self) -> bool {
        self.code() == Some("ResourceInUseException")
    }

    /// No answer came (a timeout, a refused or reset connection): the API is down or hung, not
    /// refusing this one call.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EksError::Unreachable { .. })
    }

    fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> EksError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        count_failure(operation, &err);
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                EksError::Service {
                    operation,
                    code: inner.code().unwrap_or("Unknown").to_string(),
                    message: inner
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| DisplayErrorContext(inner).to_string()),
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => EksError::Unreachable {
                operation,
                message: DisplayErrorContext(&err).to_string(),
            },
            _ => EksError::Other {
                operation,
                message: DisplayErrorContext(&err).to_string(),
            },
        }
    }
}

/// Counts a failed call in the metrics: every failure passes through [`EksError::from_sdk`].
/// Not-found is the expected answer of a lookup or delete of an entry that is not there, so it
/// counts only for DescribeCluster (the cluster itself is missing).
fn count_failure<E: ProvideErrorMetadata, R>(operation: &'static str, err: &SdkError<E, R>) {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code().unwrap_or("Unknown"),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "Unreachable",
        _ => "Other",
    };
    if code != "ResourceNotFoundException" || operation == "DescribeCluster" {
        crate::server::aws_api_error("eks", operation, code);
    }
}

/// What CreateAccessEntry sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateEntry {
    pub principal_arn: String,
    pub type_: AccessEntryType,
    pub username: Option<String>,
    pub kubernetes_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The EKS calls of the access-entry loop. Not-found on delete/disassociate is success.
pub trait EksApi: Send + Sync + 'static {
    /// DescribeCluster: accessConfig.authenticationMode.
    fn authentication_mode(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<AuthenticationMode, EksError>> + Send;
    /// ListAccessEntries, every page: principal ARNs.
    fn list_access_entries(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<String>, EksError>> + Send;
    /// DescribeAccessEntry (policies not read). None when it does not exist.
    fn describe_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<Option<ObservedEntry>, EksError>> + Send;
    /// ListAssociatedAccessPolicies, every page. None when the entry does not exist.
    fn list_associated_policies(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<Option<Vec<ObservedPolicy>>, EksError>> + Send;
    fn create_access_entry(
        &self,
        cluster: &str,
        entry: &CreateEntry,
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    /// UpdateAccessEntry: the groups, and the username when given.
    fn update_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        username: Option<&str>,
        kubernetes_groups: &[String],
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    fn delete_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    fn associate_access_policy(
        &self,
        cluster: &str,
        principal_arn: &str,
        policy: &DesiredPolicy,
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    fn disassociate_access_policy(
        &self,
        cluster: &str,
        principal_arn: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    fn tag_resource(
        &self,
        resource_arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), EksError>> + Send;
    /// EKS calls made so far (each retry attempt not counted separately).
    fn calls(&self) -> CallCounts {
        CallCounts::default()
    }
}

/// Calls made, by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts(pub BTreeMap<&'static str, u64>);

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `self - earlier`, per operation.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts(
            self.0
                .iter()
                .map(|(op, n)| (*op, n - earlier.0.get(op).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

const OPERATIONS: [&str; 10] = [
    "DescribeCluster",
    "ListAccessEntries",
    "DescribeAccessEntry",
    "ListAssociatedAccessPolicies",
    "CreateAccessEntry",
    "UpdateAccessEntry",
    "DeleteAccessEntry",
    "AssociateAccessPolicy",
    "DisassociateAccessPolicy",
    "TagResource",
];

#[derive(Debug, Default)]
struct Counters([AtomicU64; OPERATIONS.len()]);

impl Counters {
    fn count(&self, operation: &'static str) {
        if let Some(i) = OPERATIONS.iter().position(|op| *op == operation) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> CallCounts {
        CallCounts(
            OPERATIONS
                .iter()
                .zip(&self.0)
                .map(|(op, n)| (*op, n.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}

/// [`EksApi`] over aws-sdk-eks.
#[derive(Debug, Clone)]
pub struct EksClient {
    client: aws_sdk_eks::Client,
    counters: Arc<Counters>,
    page_size: i32,
}

impl EksClient {
    /// From an SDK client (tests build one with aws-smithy-mocks).
    pub fn from_client(client: aws_sdk_eks::Client) -> EksClient {
        EksClient {
            client,
            counters: Arc::new(Counters::default()),
            page_size: LIST_PAGE_SIZE,
        }
    }

    /// With the standard AWS credential chain (IRSA, Pod Identity, environment, profile, ...),
    /// the region from the config (never from instance metadata), the standard retry with
    /// backoff and bounded timeouts.
    pub async fn from_config(config: &AccessEntriesConfig) -> EksClient {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        EksClient::from_client(aws_sdk_eks::Client::from_conf(Self::sdk_config(
            aws_sdk_eks::config::Builder::from(&shared),
        )))
    }

    /// With fixed credentials and endpoint: for tests and the load example against a local EKS
    /// API. Never reaches AWS.
    pub fn for_endpoint(endpoint: &str, region: &str, access_key: &str, secret: &str) -> EksClient {
        let builder = aws_sdk_eks::config::Builder::new()
            .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
            .region(aws_sdk_eks::config::Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_eks::config::Credentials::new(
                access_key, secret, None, None, "static",
            ));
        EksClient::from_client(aws_sdk_eks::Client::from_conf(Self::sdk_config(builder)))
    }

    fn sdk_config(builder: aws_sdk_eks::config::Builder) -> aws_sdk_eks::Config {
        builder
            .retry_config(retry())
            .timeout_config(timeouts())
            .build()
    }

    /// Page size of the list calls (EKS allows at most 100).
    pub fn with_page_size(mut self, page_size: i32) -> EksClient {
        self.page_size = page_size.max(1);
        self
    }

    pub fn sdk(&self) -> &aws_sdk_eks::Client {
        &self.client
    }
}

fn observed_policy(p: &aws_sdk_eks::types::AssociatedAccessPolicy) -> Option<ObservedPolicy> {
    let policy_arn = p.policy_arn()?.to_string();
    let scope = match p.access_scope() {
        Some(scope) if scope.r#type() == Some(&AccessScopeType::Namespace) => {
            PolicyScope::from_namespaces(scope.namespaces())
        }
        _ => PolicyScope::Cluster,
    };
    Some(ObservedPolicy { policy_arn, scope })
}

fn access_scope(scope: &PolicyScope) -> AccessScope {
    match scope {
        PolicyScope::Cluster => AccessScope::builder()
            .r#type(AccessScopeType::Cluster)
            .build(),
        PolicyScope::Namespace(ns) => AccessScope::builder()
            .r#type(AccessScopeType::Namespace)
            .set_namespaces(Some(ns.clone()))
            .build(),
    }
}

impl EksApi for EksClient {
    async fn authentication_mode(&self, cluster: &str) -> Result<AuthenticationMode, EksError> {
        const OP: &str = "DescribeCluster";
        self.counters.count(OP);
        let out = self
            .client
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .map_err(|e| EksError::from_sdk(OP, e))?;
        let mode = out
            .cluster()
            .and_then(|c| c.access_config())
            .and_then(|a| a.authentication_mode())
            .map(|m| m.as_str().to_string());
        Ok(AuthenticationMode::from_api(mode.as_deref()))
    }

    async fn list_access_entries(&self, cluster: &str) -> Result<Vec<String>, EksError> {
        const OP: &str = "ListAccessEntries";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.counters.count(OP);
            let page = self
                .client
                .list_access_entries()
                .cluster_name(cluster)
                .max_results(self.page_size)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| EksError::from_sdk(OP, e))?;
            out.extend(page.access_entries().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn describe_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> Result<Option<ObservedEntry>, EksError> {
        const OP: &str = "DescribeAccessEntry";
        self.counters.count(OP);
        let out = match self
            .client
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = EksError::from_sdk(OP, e);
                return if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        let Some(entry) = out.access_entry() else {
            return Ok(None);
        };
        Ok(Some(ObservedEntry {
            principal_arn: entry.principal_arn().unwrap_or(principal_arn).to_string(),
            access_entry_arn: entry.access_entry_arn().map(str::to_string),
            type_: entry.r#type().unwrap_or("STANDARD").to_string(),
            username: entry
                .username()
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            kubernetes_groups: entry.kubernetes_groups().to_vec(),
            tags: entry
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            policies: None,
        }))
    }

    async fn list_associated_policies(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> Result<Option<Vec<ObservedPolicy>>, EksError> {
        const OP: &str = "ListAssociatedAccessPolicies";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.counters.count(OP);
            let page = match self
                .client
                .list_associated_access_policies()
                .cluster_name(cluster)
                .principal_arn(principal_arn)
                .max_results(self.page_size)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let err = EksError::from_sdk(OP, e);
                    return if err.is_not_found() {
                        Ok(None)
                    } else {
                        Err(err)
                    };
                }
            };
            out.extend(
                page.associated_access_policies()
                    .iter()
                    .filter_map(observed_policy),
            );
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => {
                    out.sort();
                    return Ok(Some(out));
                }
            }
        }
    }

    async fn create_access_entry(
        &self,
        cluster: &str,
        entry: &CreateEntry,
    ) -> Result<(), EksError> {
        const OP: &str = "CreateAccessEntry";
        self.counters.count(OP);
        let mut request = self
            .client
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(&entry.principal_arn)
            .r#type(entry.type_.as_str())
            .set_username(entry.username.clone());
        if entry.type_.is_standard() && !entry.kubernetes_groups.is_empty() {
            request = request.set_kubernetes_groups(Some(entry.kubernetes_groups.clone()));
        }
        for (k, v) in &entry.tags {
            request = request.tags(k, v);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EksError::from_sdk(OP, e))
    }

    async fn update_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        username: Option<&str>,
        kubernetes_groups: &[String],
    ) -> Result<(), EksError> {
        const OP: &str = "UpdateAccessEntry";
        self.counters.count(OP);
        self.client
            .update_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .set_username(username.map(str::to_string))
            .set_kubernetes_groups(Some(kubernetes_groups.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EksError::from_sdk(OP, e))
    }

    async fn delete_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
    ) -> Result<(), EksError> {
        const OP: &str = "DeleteAccessEntry";
        self.counters.count(OP);
        match self
            .client
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = EksError::from_sdk(OP, e);
                if err.is_not_found() { Ok(()) } else { Err(err) }
            }
        }
    }

    async fn associate_access_policy(
        &self,
        cluster: &str,
        principal_arn: &str,
        policy: &DesiredPolicy,
    ) -> Result<(), EksError> {
        const OP: &str = "AssociateAccessPolicy";
        self.counters.count(OP);
        self.client
            .associate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .policy_arn(&policy.policy_arn)
            .access_scope(access_scope(&policy.scope))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EksError::from_sdk(OP, e))
    }

    async fn disassociate_access_policy(
        &self,
        cluster: &str,
        principal_arn: &str,
        policy_arn: &str,
    ) -> Result<(), EksError> {
        const OP: &str = "DisassociateAccessPolicy";
        self.counters.count(OP);
        match self
            .client
            .disassociate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .policy_arn(policy_arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = EksError::from_sdk(OP, e);
                if err.is_not_found() { Ok(()) } else { Err(err) }
            }
        }
    }

    async fn tag_resource(
        &self,
        resource_arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), EksError> {
        const OP: &str = "TagResource";
        self.counters.count(OP);
        let mut request = self.client.tag_resource().resource_arn(resource_arn);
        for (k, v) in tags {
            request = request.tags(k, v);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EksError::from_sdk(OP, e))
    }

    fn calls(&self) -> CallCounts {
        self.counters.snapshot()
    }
}
