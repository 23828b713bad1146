//! The rig TLS-only (secure links): test certificates made with openssl, the
//! same redis-servers and sentinels (`redis.conf`, `sentinel.conf`) with
//! `port 0` + `tls-port`, and redis-cli over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{tool, wait_port, Proc, Redis};

/// Test certificates made with the openssl CLI (EC P-256, valid 2 days):
/// `ca` signs `server` (IP SANs 127.0.0.1-6, ::1, localhost), `client`,
/// `named` (only DNS:sentinel.internal) and `expired` (2020-01-01..02);
/// `other-ca` signs nothing.
pub struct Certs {
    pub dir: PathBuf,
}

const CERTS_SH: &str = r#"set -e
cd "$1"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { openssl req -x509 $ec -keyout $1.key -out $1.crt -days 2 -subj "/CN=$1" 2>/dev/null; }
csr() { openssl req -new $ec -keyout $1.key -out $1.csr -subj "/CN=$1" 2>/dev/null; }
ext() { printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' "$1" > $2.ext; }
sign() { openssl x509 -req -in $1.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $1.crt -days 2 -extfile $1.ext 2>/dev/null; }
ca ca; ca other-ca
IPS="IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:127.0.0.5,IP:127.0.0.6,IP:::1,DNS:localhost"
csr server; ext "$IPS" server; sign server
csr client; ext "DNS:sentinel-vip" client; sign client
csr named; ext "DNS:sentinel.internal" named; sign named
csr expired; ext "$IPS" expired
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=ca.srl\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' > ca.cnf
: > index.txt
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext -notext 2>/dev/null
"#;

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir).expect("certs dir");
        let ok = Command::new("sh")
            .args(["-c", CERTS_SH, "certs"])
            .arg(&dir)
            .status()
            .expect("sh runs")
            .success();
        assert!(
            ok,
            "openssl could not make the test certificates (apt: openssl)"
        );
        Certs { dir }
    }
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
    /// A `sentinel_tls:` block (`cert` = with the client certificate).
    pub fn yaml(&self, ca: &str, cert: bool, server_name: Option<&str>) -> String {
        let mut y = format!("sentinel_tls:\n  ca_file: {}\n", self.path(ca));
        if cert {
            y += &format!(
                "  cert_file: {}\n  key_file: {}\n",
                self.path("client.crt"),
                self.path("client.key")
            );
        }
        if let Some(n) = server_name {
            y += &format!("  server_name: {n}\n");
        }
        y
    }
}

/// How the TLS rig's processes are reached: redis-cli with `--tls`.
#[derive(Clone)]
pub struct TlsCli {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl TlsCli {
    pub fn new(c: &Certs) -> TlsCli {
        TlsCli {
            ca: c.path("ca.crt"),
            cert: c.path("client.crt"),
            key: c.path("client.key"),
        }
    }
    pub fn run(&self, host: &str, port: u16, args: &[&str]) -> String {
        let out = Command::new(tool("redis-cli"))
            .args([
                "--tls", "--cacert", &self.ca, "--cert", &self.cert, "--key", &self.key,
            ])
            .args(["-h", host, "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// TLS-only arguments for redis-server / redis-sentinel (`port 0`, `tls-port`,
/// `tls-replication yes`), with the server certificate `cert` (`server`,
/// `expired`, `named`) and `tls-auth-clients yes|no`. Given after the rig's
/// own arguments: the `port 0` here wins.
fn tls_args(c: &Certs, port: u16, cert: &str, auth_clients: bool) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &c.path(&format!("{cert}.crt")),
        "--tls-key-file",
        &c.path(&format!("{cert}.key")),
        "--tls-ca-cert-file",
        &c.path("ca.crt"),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
        "--tls-replication",
        "yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn wait_tls(cli: &TlsCli, host: &str, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli.run(host, port, &["PING"]) != "PONG" {
        if Instant::now() > deadline {
            panic!("{what} did not answer PING over TLS on {host}:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Redis {
    /// The rig with TLS only everywhere: `nodes` redis servers (first is master)
    /// and `sentinels` sentinels, all `port 0` + `tls-port`, replication and
    /// sentinel links over TLS. Sentinels present `sentinel_cert`.
    pub fn start_tls(
        nodes: usize,
        sentinels: usize,
        certs: &Certs,
        sentinel_cert: &str,
        auth_clients: bool,
    ) -> Redis {
        Redis::start_tls_also_plain(nodes, sentinels, certs, sentinel_cert, auth_clients, None)
    }

    /// [`Redis::start_tls`], with the sentinels also listening in plaintext on
    /// `sentinel_plain_port` (Some): the same TLS rig (replication, sentinel to
    /// sentinel and sentinel to redis all TLS) for a watcher that dials
    /// plaintext. `sentinel_addrs()` stays the TLS ports.
    pub fn start_tls_also_plain(
        nodes: usize,
        sentinels: usize,
        certs: &Certs,
        sentinel_cert: &str,
        auth_clients: bool,
        sentinel_plain_port: Option<u16>,
    ) -> Redis {
        let mut r = Redis::unstarted(nodes, sentinels);
        let cli = TlsCli::new(certs);
        for i in 0..nodes {
            let mut cmd = Command::new(tool("redis-server"));
            cmd.args(r.server_args(i))
                .args(tls_args(certs, r.redis_port, "server", auth_clients));
            r.servers
                .push(Some(Proc::spawn(cmd, &format!("redis-{i}"))));
        }
        for host in r.hosts.iter().take(nodes) {
            wait_tls(&cli, host, r.redis_port, "redis-server");
        }
        for i in 0..sentinels {
            let mut cmd = Command::new(tool("redis-server"));
            cmd.arg(r.sentinel_conf_file(i))
                .arg("--sentinel")
                .args(tls_args(
                    certs,
                    r.sentinel_port,
                    sentinel_cert,
                    auth_clients,
                ));
            if let Some(p) = sentinel_plain_port {
                // After `tls_args`' `--port 0`: the last one wins.
                cmd.args(["--port", &p.to_string()]);
            }
            r.sentinels
                .push(Some(Proc::spawn(cmd, &format!("sentinel-{i}"))));
        }
        for host in r.hosts.iter().take(sentinels) {
            wait_port(
                host,
                r.sentinel_port,
                Duration::from_secs(10),
                "redis-sentinel (TLS)",
            );
        }
        r
    }

    /// [`Redis::master_index`] through `cli` (TLS).
    pub fn master_index_with(&self, cli: &TlsCli) -> Option<usize> {
        self.master_index_via(&|h, p, a| cli.run(h, p, a))
    }

    /// [`Redis::wait_ready_for_failover`] + [`Redis::failover`] through `cli`.
    pub async fn failover_with(&self, cli: &TlsCli, replicas: usize) -> usize {
        let run = |h: &str, p: u16, a: &[&str]| cli.run(h, p, a);
        self.wait_ready_for_failover_via(&run, replicas).await;
        self.failover_via(&run).await
    }
}
