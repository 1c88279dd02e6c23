//! The IAM (and STS) calls the principal resolver needs, behind a small trait, implemented with
//! aws-sdk-iam and aws-sdk-sts. The SDK's standard retry (backoff with jitter, throttling
//! included) is on; the resolver bounds how many calls are in flight.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

use super::PrincipalsConfig;
use super::sso::IamPrincipal;
use crate::accessentries::client::CallCounts;

/// Attempts per call, throttling included.
pub const MAX_ATTEMPTS: u32 = 5;

/// A failed IAM or STS call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{operation}: {message}")]
pub struct IamError {
    pub operation: &'static str,
    /// The service's error code (`AccessDenied`, `Throttling`, ...), when it answered.
    pub code: Option<String>,
    pub message: String,
}

impl IamError {
    pub fn new(operation: &'static str, message: impl Into<String>) -> IamError {
        IamError {
            operation,
            code: None,
            message: message.into(),
        }
    }

    fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> IamError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        count_failure(operation, &err);
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown").to_string();
                let message = inner.message().unwrap_or_default();
                IamError {
                    operation,
                    message: format!("{code}: {message}"),
                    code: Some(code),
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => IamError::new(
                operation,
                format!("cannot reach IAM: {}", DisplayErrorContext(&err)),
            ),
            _ => IamError::new(operation, DisplayErrorContext(&err).to_string()),
        }
    }

    fn is_no_such_entity(&self) -> bool {
        self.code.as_deref() == Some("NoSuchEntity")
    }
}

/// Counts a failed call in the metrics: every failure passes through [`IamError::from_sdk`].
/// NoSuchEntity is how IAM says a looked-up role or user is not there, an answer rather than a
/// failure.
fn count_failure<E: ProvideErrorMetadata, R>(operation: &'static str, err: &SdkError<E, R>) {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code().unwrap_or("Unknown"),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "Unreachable",
        _ => "Other",
    };
    let service = if operation == "GetCallerIdentity" {
        "sts"
    } else {
        "iam"
    };
    if code != "NoSuchEntity" {
        crate::server::aws_api_error(service, operation, code);
    }
}

/// What the resolver asks IAM and STS.
pub trait IamApi: Send + Sync + 'static {
    /// Every role whose path starts with `path_prefix` (all pages).
    fn list_roles(
        &self,
        path_prefix: &str,
    ) -> impl Future<Output = Result<Vec<IamPrincipal>, IamError>> + Send;
    /// Every user (all pages).
    fn list_users(&self) -> impl Future<Output = Result<Vec<IamPrincipal>, IamError>> + Send;
    /// The role of that name, or None.
    fn get_role(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<IamPrincipal>, IamError>> + Send;
    /// The user of that name, or None.
    fn get_user(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<IamPrincipal>, IamError>> + Send;
    /// The account of the operator's credentials (STS GetCallerIdentity).
    fn own_account(&self) -> impl Future<Output = Result<String, IamError>> + Send;
    /// Calls made so far, by operation.
    fn calls(&self) -> CallCounts {
        CallCounts::default()
    }
}

const OPERATIONS: [&str; 5] = [
    "ListRoles",
    "ListUsers",
    "GetRole",
    "GetUser",
    "GetCallerIdentity",
];

/// [`IamApi`] over aws-sdk-iam and aws-sdk-sts.
#[derive(Debug, Clone)]
pub struct IamClient {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    counters: Arc<[AtomicU64; OPERATIONS.len()]>,
}

/// The retry and timeouts of the EKS client: an IAM that does not answer is an error within
/// [`OPERATION_TIMEOUT`](crate::accessentries::client::OPERATION_TIMEOUT), not after minutes.
fn retry() -> aws_config::retry::RetryConfig {
    crate::accessentries::client::retry()
}

fn timeouts() -> aws_config::timeout::TimeoutConfig {
    crate::accessentries::client::timeouts()
}

impl IamClient {
    /// With the standard AWS credential chain (IRSA, Pod Identity, environment, profile, ...).
    /// IAM is global, but requests are signed for a region: `config.region` (never looked up
    /// from instance metadata); without one, an error that says so.
    pub async fn from_config(config: &PrincipalsConfig) -> Result<IamClient, IamError> {
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                IamError::new(
                    "configure",
                    "no AWS region: set --region or AWS_REGION (IAM requests are signed for the cluster's region)",
                )
            })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .retry_config(retry())
            .timeout_config(timeouts());
        if let Some(endpoint) = &config.iam_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        Ok(IamClient::from_clients(
            aws_sdk_iam::Client::new(&shared),
            aws_sdk_sts::Client::new(&shared),
        ))
    }

    /// With fixed credentials and endpoint (tests, against a local IAM). Never reaches AWS.
    pub fn for_endpoint(endpoint: &str, region: &str, access_key: &str, secret: &str) -> IamClient {
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                aws_sdk_iam::config::Credentials::new(access_key, secret, None, None, "static"),
            ))
            .retry_config(retry().with_max_attempts(2))
            .timeout_config(timeouts())
            .build();
        IamClient::from_clients(
            aws_sdk_iam::Client::new(&shared),
            aws_sdk_sts::Client::new(&shared),
        )
    }

    fn from_clients(iam: aws_sdk_iam::Client, sts: aws_sdk_sts::Client) -> IamClient {
        IamClient {
            iam,
            sts,
            counters: Arc::new(Default::default()),
        }
    }

    pub fn sdk(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    fn count(&self, operation: &'static str) {
        if let Some(i) = OPERATIONS.iter().position(|op| *op == operation) {
            self.counters[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn principal(name: &str, path: &str, arn: &str) -> IamPrincipal {
    IamPrincipal {
        name: name.to_string(),
        path: path.to_string(),
        arn: arn.to_string(),
    }
}

/// A Get call's answer: the principal, or None when IAM says there is no such entity.
fn absent_if_no_such_entity<E, R>(
    operation: &'static str,
    answer: Result<Option<IamPrincipal>, SdkError<E, R>>,
) -> Result<Option<IamPrincipal>, IamError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    answer.or_else(|err| {
        let err = IamError::from_sdk(operation, err);
        if err.is_no_such_entity() {
            Ok(None)
        } else {
            Err(err)
        }
    })
}

impl IamApi for IamClient {
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<IamPrincipal>, IamError> {
        const OP: &str = "ListRoles";
        let mut pages = self
            .iam
            .list_roles()
            .path_prefix(path_prefix)
            .into_paginator()
            .send();
        let mut roles = Vec::new();
        while let Some(page) = pages.next().await {
            self.count(OP);
            let page = page.map_err(|e| IamError::from_sdk(OP, e))?;
            roles.extend(
                page.roles()
                    .iter()
                    .map(|r| principal(r.role_name(), r.path(), r.arn())),
            );
        }
        Ok(roles)
    }

    async fn list_users(&self) -> Result<Vec<IamPrincipal>, IamError> {
        const OP: &str = "ListUsers";
        let mut pages = self.iam.list_users().into_paginator().send();
        let mut users = Vec::new();
        while let Some(page) = pages.next().await {
            self.count(OP);
            let page = page.map_err(|e| IamError::from_sdk(OP, e))?;
            users.extend(
                page.users()
                    .iter()
                    .map(|u| principal(u.user_name(), u.path(), u.arn())),
            );
        }
        Ok(users)
    }

    async fn get_role(&self, name: &str) -> Result<Option<IamPrincipal>, IamError> {
        const OP: &str = "GetRole";
        self.count(OP);
        let answer = self.iam.get_role().role_name(name).send().await;
        absent_if_no_such_entity(
            OP,
            answer.map(|out| {
                out.role()
                    .map(|r| principal(r.role_name(), r.path(), r.arn()))
            }),
        )
    }

    async fn get_user(&self, name: &str) -> Result<Option<IamPrincipal>, IamError> {
        const OP: &str = "GetUser";
        self.count(OP);
        let answer = self.iam.get_user().user_name(name).send().await;
        absent_if_no_such_entity(
            OP,
            answer.map(|out| {
                out.user()
                    .map(|u| principal(u.user_name(), u.path(), u.arn()))
            }),
        )
    }

    async fn own_account(&self) -> Result<String, IamError> {
        const OP: &str = "GetCallerIdentity";
        self.count(OP);
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| IamError::from_sdk(OP, e))?;
        out.account()
            .map(str::to_string)
            .ok_or_else(|| IamError::new(OP, "STS returned no account"))
    }

    fn calls(&self) -> CallCounts {
        CallCounts(
            OPERATIONS
                .iter()
                .zip(self.counters.iter())
                .map(|(op, n)| (*op, n.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
}
