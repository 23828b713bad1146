//! Act: the VPC route tables through aws-sdk-ec2. Thin I/O; decisions live in
//! [`crate::decide::plan`].
//!
//! Throttling, 5xx, timeouts and connection errors are retried by the SDK's
//! standard retry strategy (exponential backoff with jitter) under a per-call
//! deadline; permission and not-found errors are not retried and come back
//! classified so that the caller can say what is missing.
//!
//! Files: `mod.rs` builds the client (per config, per assumed role);
//! `errors.rs` turns SDK errors into classified
//! [`Ec2Error`](crate::decide::facts::Ec2Error)s; `read.rs` reads route
//! tables, network interfaces and instances; `write.rs` points a route at a
//! target (ReplaceRoute/CreateRoute and their fallbacks).

mod eip;
mod eni;
mod errors;
mod read;
mod secondary_ip;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_sdk_ec2::config::SharedCredentialsProvider;
use aws_sdk_ec2::Client;

use crate::config::{AwsConfig, Config, RoleArn, RouteTableId};

pub use eni::Interface;
pub use errors::classify;
pub use read::FoundInterface;

/// One EC2 (or Route 53) call's answer: counted in `/metrics` by operation
/// and result, and an SDK error turned into an [`Ec2Error`] naming the
/// operation and `subject` (built only when it failed).
pub(crate) fn checked<T, E, R, S>(
    operation: &'static str,
    subject: impl FnOnce() -> S,
    r: Result<T, aws_sdk_ec2::error::SdkError<E, R>>,
) -> Result<T, crate::decide::facts::Ec2Error>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
    S: Into<String>,
{
    count_call(operation, r.is_ok());
    r.map_err(|e| crate::decide::facts::Ec2Error::from_sdk(operation, subject(), e))
}

pub(crate) fn count_call(operation: &'static str, ok: bool) {
    crate::ops::metrics::METRICS
        .ec2_calls
        .get_or_create(&vec![
            ("operation", operation.to_owned()),
            ("result", if ok { "ok" } else { "error" }.to_owned()),
        ])
        .inc();
}

/// The EC2 client, configured once and kept warm.
///
/// Route-table calls go through the client of the role that reaches the table
/// (a master's `assume_role_arn`, else `aws.assume_role_arn`, else the default
/// credential chain); every other call goes through the base client
/// (`aws.assume_role_arn` or the default chain).
#[derive(Clone)]
pub struct Ec2 {
    client: Client,
    /// Role of the base client, if any.
    base_role: Option<RoleArn>,
    /// Tables reached through a master's own role: their client and role.
    by_table: std::sync::Arc<HashMap<RouteTableId, (Client, RoleArn)>>,
    region: Option<String>,
    /// Route 53 (a master's `dns` record, `act::dns`), built from the same
    /// configuration: same credentials, role and `endpoint_url`.
    route53: aws_sdk_route53::Client,
    /// Targets' network interfaces (`eni.rs`), shared by the clones.
    interfaces: std::sync::Arc<std::sync::Mutex<HashMap<crate::config::Target, Interface>>>,
}

/// Fetches credentials for one role through STS and says so in the log; the
/// SDK's identity cache in front of it keeps the session until shortly before
/// it expires, so this runs once per session, not once per call.
#[derive(Debug)]
struct AssumedRole {
    role: RoleArn,
    inner: aws_config::sts::AssumeRoleProvider,
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let r = self.inner.provide_credentials().await;
            match &r {
                Ok(c) => tracing::info!(
                    role = %self.role,
                    expires_in_s = c
                        .expiry()
                        .and_then(|e| e.duration_since(std::time::SystemTime::now()).ok())
                        .map(|d| d.as_secs()),
                    "assumed role"
                ),
                Err(e) => tracing::warn!(role = %self.role, error = %e, "cannot assume role"),
            }
            r
        })
    }
}

/// `shared` with its credentials replaced by a cached session of `role`,
/// assumed with `shared`'s own credentials.
async fn with_role(shared: &SdkConfig, role: &RoleArn) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role.as_str())
        .configure(shared)
        .session_name("sentinel-vip")
        .build()
        .await;
    shared
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(AssumedRole {
            role: role.clone(),
            inner: provider,
        }))
        .identity_cache(IdentityCache::lazy().build())
        .build()
}

impl Ec2 {
    /// Builds the client from the default credential chain plus `cfg`
    /// (`aws.assume_role_arn` included; masters' own roles need [`Ec2::for_config`]).
    pub async fn new(cfg: &AwsConfig) -> Ec2 {
        let base = Self::base_config(cfg).await;
        let shared = match &cfg.assume_role_arn {
            Some(role) => with_role(&base, role).await,
            None => base,
        };
        Ec2 {
            client: Client::new(&shared),
            route53: aws_sdk_route53::Client::new(&shared),
            base_role: cfg.assume_role_arn.clone(),
            by_table: Default::default(),
            region: shared.region().map(|r| r.to_string()),
            interfaces: Default::default(),
        }
    }

    /// [`Ec2::new`] plus one client per master role (`masters.<name>.assume_role_arn`)
    /// for that master's route tables. A master's role is assumed with the default
    /// chain's credentials (not chained through `aws.assume_role_arn`). A table
    /// listed under two masters with different roles uses the first master's (by name).
    pub async fn for_config(cfg: &Config) -> Ec2 {
        let mut ec2 = Ec2::new(&cfg.aws).await;
        let mut roles: BTreeMap<&RoleArn, Client> = BTreeMap::new();
        let mut by_table = HashMap::new();
        let mut base = None;
        for (name, m) in &cfg.masters {
            let Some(role) = &m.assume_role_arn else {
                continue;
            };
            if !roles.contains_key(role) {
                if base.is_none() {
                    base = Some(Self::base_config(&cfg.aws).await);
                }
                if let Some(base) = &base {
                    roles.insert(role, Client::new(&with_role(base, role).await));
                }
            }
            let Some(client) = roles.get(role) else {
                continue;
            };
            for t in &m.route_tables {
                match by_table.get(t) {
                    Some((_, other)) if other != role => tracing::warn!(
                        table = %t, master = %name, role = %role, used = %other,
                        "route table listed under masters with different roles; using the first"
                    ),
                    Some(_) => {}
                    None => {
                        by_table.insert(t.clone(), (client.clone(), role.clone()));
                    }
                }
            }
        }
        ec2.by_table = std::sync::Arc::new(by_table);
        ec2
    }

    async fn base_config(cfg: &AwsConfig) -> SdkConfig {
        let attempts = cfg.max_attempts.unwrap_or(5).max(1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(cfg.call_timeout())
                    .build(),
            );
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// The role through which `table` is reached (`None`: the default chain's
    /// own credentials). `check` prints it per table.
    pub fn role_for(&self, table: &RouteTableId) -> Option<&RoleArn> {
        self.by_table
            .get(table)
            .map(|(_, r)| r)
            .or(self.base_role.as_ref())
    }

    /// The region the client resolved (config, environment or profile).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The Route 53 client (`act::dns`).
    pub(crate) fn route53(&self) -> &aws_sdk_route53::Client {
        &self.route53
    }

    fn client_for(&self, table: &RouteTableId) -> &Client {
        self.by_table
            .get(table)
            .map(|(c, _)| c)
            .unwrap_or(&self.client)
    }
}
