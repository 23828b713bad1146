//! moto_server as the EC2 API: the server, the rig's EC2 objects (VPC, subnet,
//! route tables, one ENI per Redis node) and what tests do to them, and a
//! proxy in front of it that injects faults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

use super::{eventually, free_port, http_client, wait_port, which, Proc, SETUP, VIP};

fn moto_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    which("moto_server").unwrap_or_else(|| {
        panic!("moto_server not found (.venv/bin, PATH or $MOTO_SERVER): {SETUP}")
    })
}

pub struct Moto {
    pub proc: Proc,
    pub port: u16,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut cmd = Command::new(moto_path());
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let proc = Proc::spawn(cmd, "moto");
        wait_port("127.0.0.1", port, Duration::from_secs(30), "moto_server");
        Moto {
            proc,
            port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// The SDK's config for moto at `url` (region us-east-1, the `testing`
/// credentials moto takes).
pub async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .load()
        .await
}

pub async fn ec2_client(url: &str) -> Client {
    Client::new(&sdk_config(url).await)
}

/// EC2 objects made in moto for the rig.
pub struct Vpc {
    pub client: Client,
    pub tables: Vec<String>,
    /// One ENI per Redis node (index = node index).
    pub enis: Vec<String>,
}

impl Vpc {
    pub async fn create(url: &str, tables: usize, nodes: usize) -> Vpc {
        Vpc::create_with(ec2_client(url).await, tables, nodes).await
    }

    /// [`Vpc::create`] through `client` (e.g. with another account's credentials):
    /// a VPC 10.0.0.0/16, a subnet 10.0.1.0/24, `tables` route tables and one
    /// ENI per node, holding 10.0.1.11, .12, ... (as scripts/rig.py makes them).
    pub async fn create_with(client: Client, tables: usize, nodes: usize) -> Vpc {
        let vpc = client
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_owned();
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .expect("CreateSubnet");
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned();
        let mut table_ids = Vec::new();
        for _ in 0..tables {
            let t = client
                .create_route_table()
                .vpc_id(&vpc_id)
                .send()
                .await
                .expect("CreateRouteTable");
            table_ids.push(
                t.route_table()
                    .and_then(|t| t.route_table_id())
                    .expect("rtb id")
                    .to_owned(),
            );
        }
        let mut vpc = Vpc {
            client,
            tables: table_ids,
            enis: Vec::new(),
        };
        for i in 0..nodes {
            let eni = vpc
                .create_eni(&subnet_id, &format!("10.0.1.{}", 11 + i))
                .await;
            vpc.enis.push(eni);
        }
        vpc
    }

    /// The VIP route's target (ENI id, or instance id) per table.
    pub async fn vip_targets(&self) -> Vec<Option<String>> {
        self.routes_to(VIP).await
    }

    /// The target (ENI id, or instance id) of the route to `cidr` (IPv4 or
    /// IPv6 destination) per table.
    pub async fn routes_to(&self, cidr: &str) -> Vec<Option<String>> {
        let out = self
            .client
            .describe_route_tables()
            .filters(
                Filter::builder()
                    .name("route-table-id")
                    .set_values(Some(self.tables.clone()))
                    .build(),
            )
            .send()
            .await
            .expect("DescribeRouteTables");
        let by_id: HashMap<String, Option<String>> = out
            .route_tables()
            .iter()
            .map(|t| {
                let target = t
                    .routes()
                    .iter()
                    .find(|r| {
                        r.destination_cidr_block() == Some(cidr)
                            || r.destination_ipv6_cidr_block() == Some(cidr)
                    })
                    .and_then(|r| {
                        r.network_interface_id()
                            .or(r.instance_id())
                            .map(str::to_owned)
                    });
                (t.route_table_id().unwrap_or_default().to_owned(), target)
            })
            .collect();
        self.tables
            .iter()
            .map(|t| by_id.get(t).cloned().flatten())
            .collect()
    }

    /// Waits until every table's VIP route points at `eni`.
    pub async fn wait_all_point_at(&self, eni: &str, within: Duration) {
        let want = Some(eni.to_owned());
        eventually(
            &format!("every route table's VIP route to point at {eni}"),
            within,
            || async {
                let t = self.vip_targets().await;
                t.iter().all(|x| *x == want).then_some(())
            },
        )
        .await
    }

    pub async fn set_route(&self, table: usize, eni: &str) {
        let r = self
            .client
            .replace_route()
            .route_table_id(&self.tables[table])
            .destination_cidr_block(VIP)
            .network_interface_id(eni)
            .send()
            .await;
        if r.is_err() {
            self.client
                .create_route()
                .route_table_id(&self.tables[table])
                .destination_cidr_block(VIP)
                .network_interface_id(eni)
                .send()
                .await
                .expect("CreateRoute");
        }
    }

    /// The VPC and subnet of the rig's nodes (from the first ENI).
    pub async fn vpc_and_subnet(&self) -> (String, String) {
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(&self.enis[0])
            .send()
            .await
            .expect("DescribeNetworkInterfaces");
        let ni = &out.network_interfaces()[0];
        (
            ni.vpc_id().expect("vpc id").to_owned(),
            ni.subnet_id().expect("subnet id").to_owned(),
        )
    }

    /// Deletes the VIP route of `table` by hand (as an operator might).
    pub async fn delete_route(&self, table: usize) {
        self.client
            .delete_route()
            .route_table_id(&self.tables[table])
            .destination_cidr_block(VIP)
            .send()
            .await
            .expect("DeleteRoute");
    }

    /// Creates an ENI holding `ip` in `subnet`.
    pub async fn create_eni(&self, subnet: &str, ip: &str) -> String {
        self.client
            .create_network_interface()
            .subnet_id(subnet)
            .private_ip_address(ip)
            .send()
            .await
            .expect("CreateNetworkInterface")
            .network_interface()
            .and_then(|n| n.network_interface_id())
            .expect("eni id")
            .to_owned()
    }

    /// Starts an instance in `subnet` (moto accepts its first listed image).
    pub async fn create_instance(&self, subnet: &str) -> String {
        let images = self
            .client
            .describe_images()
            .send()
            .await
            .expect("DescribeImages");
        let ami = images.images()[0].image_id().expect("image id").to_owned();
        self.client
            .run_instances()
            .image_id(ami)
            .min_count(1)
            .max_count(1)
            .subnet_id(subnet)
            .send()
            .await
            .expect("RunInstances")
            .instances()[0]
            .instance_id()
            .expect("instance id")
            .to_owned()
    }

    /// Replaces the ENI `old` by a new one holding the same private IP, attached
    /// to `instance` (what happens when a node's ENI is recreated); returns its id.
    pub async fn replace_eni(&self, old: &str, subnet: &str, ip: &str, instance: &str) -> String {
        self.client
            .delete_network_interface()
            .network_interface_id(old)
            .send()
            .await
            .expect("DeleteNetworkInterface");
        let new = self.create_eni(subnet, ip).await;
        self.client
            .attach_network_interface()
            .network_interface_id(&new)
            .instance_id(instance)
            .device_index(1)
            .send()
            .await
            .expect("AttachNetworkInterface");
        new
    }
}

// --- the fault proxy ---

/// What [`FaultProxy`] does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forwarded to moto.
    Pass = 0,
    /// Answered 503, `RequestLimitExceeded` and `Unavailable` in turn.
    Throttle = 1,
    /// Never answered while the mode lasts (an EC2 endpoint that is
    /// unreachable / stopped).
    Hang = 2,
    /// Route writes (`ReplaceRoute`, `CreateRoute`) refused with 403
    /// `UnauthorizedOperation` (a policy that lost `ec2:ReplaceRoute`);
    /// everything else forwarded.
    DenyWrites = 3,
}

impl Fault {
    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Throttle,
            2 => Fault::Hang,
            3 => Fault::DenyWrites,
            _ => Fault::Pass,
        }
    }
}

pub const PASS: Fault = Fault::Pass;
pub const THROTTLE: Fault = Fault::Throttle;
pub const HANG: Fault = Fault::Hang;
pub const DENY_WRITES: Fault = Fault::DenyWrites;

/// An HTTP proxy in front of moto that can answer 503 / RequestLimitExceeded
/// or hang, as [`FaultProxy::set`] says.
pub struct FaultProxy {
    pub url: String,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// Requests answered with a fault (each 200 ms of a hanging one counts).
    pub faults: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Added before each forwarded request, in ms (a regional endpoint's
    /// round trip; moto itself still serves one request at a time).
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The `Action` of every mutating request forwarded to moto (anything
    /// but `Describe*`/`Get*`/`List*`), in order: what reached EC2.
    pub mutating: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        use std::sync::Arc;
        let mode = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let faults = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mutating = Arc::new(std::sync::Mutex::new(Vec::new()));
        let client = http_client();
        let up = upstream.to_owned();
        let (m, f, d, w) = (
            mode.clone(),
            faults.clone(),
            delay_ms.clone(),
            mutating.clone(),
        );
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (m, f, client, up, w) = (m.clone(), f.clone(), client.clone(), up.clone(), w.clone());
            let delay = Duration::from_millis(d.load(Ordering::SeqCst));
            let now = move || Fault::from_u8(m.load(Ordering::SeqCst));
            async move {
                while now() == Fault::Hang {
                    f.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if now() == Fault::Throttle {
                    let n = f.fetch_add(1, Ordering::SeqCst);
                    let code = if n % 2 == 0 { "RequestLimitExceeded" } else { "Unavailable" };
                    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>test</RequestID></Response>");
                    return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/xml".to_owned())], xml.into_bytes());
                }
                let text = String::from_utf8_lossy(&body);
                if now() == Fault::DenyWrites
                    && (text.contains("Action=ReplaceRoute") || text.contains("Action=CreateRoute"))
                {
                    f.fetch_add(1, Ordering::SeqCst);
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation (injected by the test proxy)</Message></Error></Errors><RequestID>test</RequestID></Response>";
                    return (StatusCode::FORBIDDEN, [("content-type", "text/xml".to_owned())], xml.as_bytes().to_vec());
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let action = text
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("Action="))
                    .unwrap_or("")
                    .to_owned();
                if !action.is_empty() && !["Describe", "Get", "List"].iter().any(|p| action.starts_with(p)) {
                    w.lock().unwrap().push(action);
                }
                let url = format!("{up}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
                let mut req = client.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), url);
                for (k, v) in headers.iter() {
                    if k != "host" && k != "content-length" {
                        req = req.header(k.as_str(), v.as_bytes());
                    }
                }
                match req.body(body.to_vec()).send().await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("text/xml").to_owned();
                        (status, [("content-type", ct)], r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                    }
                    Err(e) => (StatusCode::BAD_GATEWAY, [("content-type", "text/plain".to_owned())], e.to_string().into_bytes()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            url,
            mode,
            faults,
            delay_ms,
            mutating,
        }
    }

    /// Adds `d` before every forwarded request from now on.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set(&self, mode: Fault) {
        self.mode
            .store(mode as u8, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn mode(&self) -> Fault {
        Fault::from_u8(self.mode.load(std::sync::atomic::Ordering::SeqCst))
    }
}
