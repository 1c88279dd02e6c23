//! A local EKS API for the access-entry tests: `ministack` (PyPI), installed by `.ci/run` into a
//! venv named by `AWS_AUTH_OPERATOR_MINISTACK_VENV` (locally, `.venv-ci` of the repository is
//! used when it exists). Each test starts its own on a free port of 127.0.0.1 and kills it when
//! dropped. Without the venv the tests say so and skip, except under CI=true, where they fail.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_auth_operator::accessentries::client::EksClient;

pub const REGION: &str = "eu-west-1";
/// ministack treats the access key `test` as the account root: creating a cluster with it gives
/// the root (the "cluster creator") an access entry with AmazonEKSClusterAdminPolicy.
pub const ACCESS_KEY: &str = "test";
pub const ACCOUNT: &str = "000000000000";
pub const CREATOR_ARN: &str = "arn:aws:iam::000000000000:root";

pub struct Ministack {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn executable() -> Option<PathBuf> {
    let venv = std::env::var_os("AWS_AUTH_OPERATOR_MINISTACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ci"));
    let bin = venv.join("bin").join("ministack");
    bin.is_file().then_some(bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Ministack {
    /// Starts ministack, or returns None (after saying so) when it is not installed. Under
    /// CI=true a missing ministack is a failure.
    pub fn start(test: &str) -> Option<Ministack> {
        let Some(bin) = executable() else {
            let message = "ministack is not installed: run `bash .ci/run` once (it creates .venv-ci), or set AWS_AUTH_OPERATOR_MINISTACK_VENV";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {message}");
            }
            eprintln!("SKIPPED {test}: {message}");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("ministack.log")).expect("log file");
        let child = Command::new(&bin)
            .current_dir(dir.path())
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut ministack = Ministack {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = ministack.child.try_wait() {
                let log = std::fs::read_to_string(ministack._dir.path().join("ministack.log"))
                    .unwrap_or_default();
                panic!("ministack exited ({status}) before answering:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "ministack did not answer on {addr} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ministack)
    }

    /// The operator's client, pointed at this ministack. ministack's ListAccessEntries does not
    /// paginate (it returns at most maxResults, without a nextToken), so the page is made large
    /// enough for the tests; real EKS pages by 100.
    pub fn client(&self) -> EksClient {
        EksClient::for_endpoint(&self.endpoint, REGION, ACCESS_KEY, "secret").with_page_size(10_000)
    }

    /// Creates a cluster in the given authentication mode (as the account root).
    pub async fn create_cluster(&self, name: &str, mode: &str) {
        use aws_sdk_eks::types::{AuthenticationMode, CreateAccessConfigRequest, VpcConfigRequest};
        self.client()
            .sdk()
            .create_cluster()
            .name(name)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/eks-cluster"))
            .resources_vpc_config(VpcConfigRequest::builder().build())
            .access_config(
                CreateAccessConfigRequest::builder()
                    .authentication_mode(AuthenticationMode::from(mode))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCluster {name}: {e:?}"));
    }
}

impl Drop for Ministack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
