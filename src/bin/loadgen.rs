//! `syslog2ban-loadgen`: a syslog load generator for benchmarks.
//!
//! - `send`: a realistic mix (sshd failures from a pool of attacker addresses, sshd lines that
//!   must not count, other programs as noise) over UDP, TCP octet-counted, TCP LF or TLS
//!   (octet-counted, RFC 5425; `--ca`, optional client `--cert`/`--key`), with N
//!   connections, at full speed or a set rate, for a count or a duration. Prints a JSON summary
//!   of what it sent. Messages are rendered once into a pool and then cycled, so sending costs
//!   little CPU besides the socket writes.
//! - `file`: the same mix as classic syslog file lines (for fail2ban-regex and
//!   `syslog2ban regex`).
//! - `ban-latency`: attackers one after another, each sending sshd failures at a set rate over
//!   one held TCP connection while `nft monitor` runs; for each, the time from writing the
//!   maxretry-th failure to nft reporting the address in the set, and how many failures were
//!   sent after the maxretry-th before that (the overshoot).

#[path = "loadgen/latency.rs"]
mod latency;
#[path = "loadgen/mix.rs"]
mod mix;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use mix::{Format, Kind, Mix, MixOptions};

#[derive(Parser)]
#[command(
    name = "syslog2ban-loadgen",
    version,
    about = "Syslog load generator for syslog2ban benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a mix to a syslog listener and print a JSON summary.
    Send(SendArgs),
    /// Write the mix as syslog file lines (no <PRI>) to a file or stdout.
    File(FileArgs),
    /// Measure ban latency and overshoot against a daemon with nftables, using `nft monitor`.
    BanLatency(LatencyArgs),
}

#[derive(Args, Clone)]
struct MixArgs {
    /// Share of sshd failures in the stream.
    #[arg(long, default_value_t = 0.3)]
    sshd_failures: f64,
    /// Share of sshd lines that are not failures.
    #[arg(long, default_value_t = 0.2)]
    sshd_other: f64,
    /// Distinct attacker addresses (IPv4 from 198.18.0.0/15, IPv6 from 2001:db8::/32).
    #[arg(long, default_value_t = 10_000)]
    attackers: u32,
    /// Share of attackers with an IPv6 address.
    #[arg(long, default_value_t = 0.2)]
    ipv6: f64,
    /// No other programs: the rest of the stream is sshd lines that are not failures.
    #[arg(long)]
    no_noise: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0x5eed_2ba0)]
    seed: u64,
}

impl MixArgs {
    fn options(&self, format: Format) -> Result<MixOptions> {
        if !(0.0..=1.0).contains(&self.sshd_failures)
            || !(0.0..=1.0).contains(&self.sshd_other)
            || self.sshd_failures + self.sshd_other > 1.0
            || !(0.0..=1.0).contains(&self.ipv6)
        {
            bail!("shares must be within 0..1 and sshd-failures + sshd-other <= 1");
        }
        Ok(MixOptions {
            sshd_failures: self.sshd_failures,
            sshd_other: self.sshd_other,
            attackers: self.attackers.max(1),
            ipv6: self.ipv6,
            noise: !self.no_noise,
            format,
            seed: self.seed,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// One message per datagram.
    Udp,
    /// TCP, RFC 6587 octet counting (`LEN MSG`).
    TcpOctet,
    /// TCP, LF-terminated (non-transparent framing).
    TcpLf,
    /// TLS over TCP, octet counting (RFC 5425).
    Tls,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WireFormat {
    /// RFC 5424 as rsyslog forwards it (RSYSLOG_SyslogProtocol23Format).
    Rfc5424,
    /// RFC 3164 with host name.
    Rfc3164,
}

#[derive(Args)]
struct SendArgs {
    /// Listener address; given more than once, the connections take them in turn (one
    /// stream split over several collectors, as servers split between them).
    #[arg(long, default_value = "127.0.0.1:5514")]
    target: Vec<SocketAddr>,
    /// Transport and framing.
    #[arg(long, value_enum, default_value_t = Transport::TcpOctet)]
    transport: Transport,
    /// Message header format.
    #[arg(long, value_enum, default_value_t = WireFormat::Rfc5424)]
    format: WireFormat,
    /// Parallel connections (UDP: sockets), each its own task.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Messages per second over all connections; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop after this many messages in total.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this long (e.g. "10s"); default 10s when no count is given.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Distinct messages rendered up front and then cycled.
    #[arg(long, default_value_t = 200_000)]
    pool: usize,
    /// Worker threads of the sender (default: 1; the daemon needs the other core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// TLS: CA certificate (PEM) the listener's certificate must chain to.
    #[arg(long, required_if_eq("transport", "tls"))]
    ca: Option<std::path::PathBuf>,
    /// TLS: name to verify in the listener's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// TLS: client certificate chain (PEM), for listeners that require one.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// TLS: client private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    #[command(flatten)]
    mix: MixArgs,
}

#[derive(Args)]
struct FileArgs {
    /// Lines to write.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Output file ("-" = stdout).
    #[arg(long, default_value = "-")]
    output: String,
    #[command(flatten)]
    mix: MixArgs,
}

#[derive(Args, Clone)]
struct LatencyArgs {
    /// Listener address (TCP, octet-counted).
    #[arg(long, default_value = "127.0.0.1:5514")]
    target: SocketAddr,
    /// Attackers to measure, one after another.
    #[arg(long, default_value_t = 200)]
    attackers: u32,
    /// The jail's maxretry: the failure that reaches it is the threshold message.
    #[arg(long, default_value_t = 5)]
    maxretry: u32,
    /// Failures per second each attacker sends (before and after the threshold).
    #[arg(long, default_value_t = 1000)]
    attacker_rate: u64,
    /// Share of IPv6 attackers.
    #[arg(long, default_value_t = 0.2)]
    ipv6: f64,
    /// First attacker number (addresses do not repeat between runs that use different ones).
    #[arg(long, default_value_t = 100_000)]
    first: u32,
    /// Give up on an attacker after this long without its ban.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    timeout: Duration,
    /// Pause between attackers.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20ms")]
    pause: Duration,
    /// The monitor command (run without a shell); it must print nft's `add element` / `create element` lines.
    #[arg(long, default_value = "nft monitor elements")]
    monitor: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Send(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads.max(1))
                .enable_all()
                .build()?;
            runtime.block_on(send(args))
        }
        Command::File(args) => file(args),
        Command::BanLatency(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(latency::ban_latency(args))
        }
    }
}

/// Framed messages, back to back, with their end offsets and a running count of failures.
struct Pool {
    data: Vec<u8>,
    /// `ends[i]` = end of message i in `data`; message i starts at `ends[i - 1]` (or 0).
    ends: Vec<usize>,
    /// `failures[i]` = failures among messages 0..i.
    failures: Vec<u64>,
}

impl Pool {
    fn build(opts: MixOptions, n: usize, transport: Transport) -> Pool {
        let mut mix = Mix::new(opts);
        let mut data = Vec::with_capacity(n * 180);
        let mut ends = Vec::with_capacity(n);
        let mut failures = Vec::with_capacity(n + 1);
        failures.push(0);
        let mut message = Vec::with_capacity(512);
        for _ in 0..n {
            message.clear();
            let kind = mix.next_into(&mut message);
            match transport {
                Transport::TcpOctet | Transport::Tls => {
                    data.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    data.extend_from_slice(&message);
                }
                Transport::TcpLf => {
                    data.extend_from_slice(&message);
                    data.push(b'\n');
                }
                Transport::Udp => data.extend_from_slice(&message),
            }
            ends.push(data.len());
            let last = *failures.last().unwrap_or(&0);
            failures.push(last + u64::from(matches!(kind, Kind::Failure(_))));
        }
        Pool {
            data,
            ends,
            failures,
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Bytes of messages i..j (j <= len).
    fn span(&self, i: usize, j: usize) -> &[u8] {
        &self.data[self.start(i)..self.start(j)]
    }

    fn failures_in(&self, i: usize, j: usize) -> u64 {
        self.failures[j] - self.failures[i]
    }
}

/// What one connection sent.
#[derive(Default, Clone, Copy)]
struct Sent {
    messages: u64,
    bytes: u64,
    failures: u64,
    errors: u64,
}

#[derive(Clone, Copy)]
struct Plan {
    /// Messages this connection sends, or None for a duration.
    count: Option<u64>,
    deadline: Instant,
    /// Messages per second for this connection; 0 = full speed.
    rate: f64,
    start: Instant,
}

impl Plan {
    /// How many messages may go now, given `sent` so far (at most `chunk`); 0 = wait.
    fn allowed(&self, sent: u64, chunk: u64) -> u64 {
        let mut n = chunk;
        if let Some(count) = self.count {
            n = n.min(count - sent);
        }
        if self.rate > 0.0 {
            let due = (self.start.elapsed().as_secs_f64() * self.rate) as u64;
            n = n.min(due.saturating_sub(sent));
        }
        n
    }

    fn done(&self, sent: u64) -> bool {
        match self.count {
            Some(count) => sent >= count,
            None => Instant::now() >= self.deadline,
        }
    }
}

async fn send(args: SendArgs) -> Result<()> {
    let format = match args.format {
        WireFormat::Rfc5424 => Format::Rfc5424,
        WireFormat::Rfc3164 => Format::Rfc3164,
    };
    let opts = args.mix.options(format)?;
    let connections = args.connections.max(1);
    let pool = Arc::new(Pool::build(opts, args.pool.max(1000), args.transport));
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    let tls = match args.transport {
        Transport::Tls => Some(tls_connector(&args)?),
        _ => None,
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let count = args.count.map(|total| {
            total / connections as u64 + u64::from((c as u64) < total % connections as u64)
        });
        let plan = Plan {
            count,
            deadline: start + duration,
            rate: args.rate as f64 / connections as f64,
            start,
        };
        // Each connection starts at its own place in the pool.
        let offset = pool.len() / connections * c;
        let pool = pool.clone();
        let target = args.target[c % args.target.len()];
        let transport = args.transport;
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            match (transport, tls) {
                (Transport::Udp, _) => send_udp(target, &pool, offset, plan).await,
                (_, Some((connector, name))) => {
                    let tcp = connect_tcp(target).await?;
                    let stream = connector
                        .connect(name, tcp)
                        .await
                        .with_context(|| format!("TLS handshake with {target}"))?;
                    write_stream(stream, &pool, offset, plan).await
                }
                _ => write_stream(connect_tcp(target).await?, &pool, offset, plan).await,
            }
        }));
    }
    let mut total = Sent::default();
    for task in tasks {
        let sent = task.await.context("sender task")??;
        total.messages += sent.messages;
        total.bytes += sent.bytes;
        total.failures += sent.failures;
        total.errors += sent.errors;
    }
    let seconds = start.elapsed().as_secs_f64();
    let summary = json!({
        "transport": match args.transport {
            Transport::Udp => "udp",
            Transport::TcpOctet => "tcp-octet",
            Transport::TcpLf => "tcp-lf",
            Transport::Tls => "tls",
        },
        "format": match args.format { WireFormat::Rfc5424 => "rfc5424", WireFormat::Rfc3164 => "rfc3164" },
        "target": args.target.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        "connections": connections,
        "requested_rate": args.rate,
        "messages": total.messages,
        "sshd_failures": total.failures,
        "bytes": total.bytes,
        "send_errors": total.errors,
        "seconds": (seconds * 1e6).round() / 1e6,
        "rate": (total.messages as f64 / seconds).round(),
        "mbytes_per_second": ((total.bytes as f64 / seconds / 1e6) * 100.0).round() / 100.0,
    });
    println!("{summary}");
    Ok(())
}

/// Messages per write at full speed (about 32 KiB).
const TCP_CHUNK: u64 = 200;

async fn connect_tcp(target: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

type TlsTarget = (
    tokio_rustls::TlsConnector,
    rustls_pki_types::ServerName<'static>,
);

/// A TLS client trusting `--ca`, with the client certificate when given.
fn tls_connector(args: &SendArgs) -> Result<TlsTarget> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let ca = args
        .ca
        .as_ref()
        .context("--ca is required for --transport tls")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("a certificate in {}", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(args.server_name.clone())
        .with_context(|| format!("--server-name {}", args.server_name))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

async fn write_stream<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    pool: &Pool,
    mut at: usize,
    plan: Plan,
) -> Result<Sent> {
    let mut sent = Sent::default();
    while !plan.done(sent.messages) {
        let n = plan.allowed(sent.messages, TCP_CHUNK) as usize;
        if n == 0 {
            tokio::time::sleep(Duration::from_micros(500)).await;
            continue;
        }
        let n = n.min(pool.len() - at);
        let bytes = pool.span(at, at + n);
        stream.write_all(bytes).await.context("writing")?;
        sent.messages += n as u64;
        sent.bytes += bytes.len() as u64;
        sent.failures += pool.failures_in(at, at + n);
        at = (at + n) % pool.len();
    }
    stream.flush().await?;
    stream.shutdown().await?;
    // Read until the receiver closes: a socket closed with unread input (TLS 1.3 session
    // tickets) is reset by the kernel, and the reset throws away what is still in flight.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(sent)
}

/// Datagrams per `sendmmsg` call: one system call per datagram kept the sender on this
/// 2-core VM below 200k msgs/s once the daemon took its share of the CPU.
const UDP_BATCH: usize = 64;

async fn send_udp(target: SocketAddr, pool: &Pool, mut at: usize, plan: Plan) -> Result<Sent> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    let mut sent = Sent::default();
    while !plan.done(sent.messages) {
        let n = plan.allowed(sent.messages, UDP_BATCH as u64) as usize;
        if n == 0 {
            tokio::time::sleep(Duration::from_micros(500)).await;
            continue;
        }
        let datagrams: Vec<usize> = (0..n).map(|i| (at + i) % pool.len()).collect();
        let result = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                send_batch(&socket, pool, &datagrams)
            })
            .await;
        match result {
            Ok(count) => {
                for &datagram in datagrams.iter().take(count) {
                    sent.messages += 1;
                    sent.bytes += pool.span(datagram, datagram + 1).len() as u64;
                    sent.failures += pool.failures_in(datagram, datagram + 1);
                }
                at = (at + count.max(1)) % pool.len();
            }
            // ECONNREFUSED after an ICMP port unreachable, ENOBUFS: counted, not fatal (the
            // first datagram of the batch is skipped).
            Err(_) => {
                sent.errors += 1;
                at = (at + 1) % pool.len();
            }
        }
    }
    Ok(sent)
}

/// One `sendmmsg` of the pool's datagrams `datagrams`: how many the kernel took.
fn send_batch(socket: &UdpSocket, pool: &Pool, datagrams: &[usize]) -> std::io::Result<usize> {
    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let iovs: Vec<[std::io::IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|&d| [std::io::IoSlice::new(pool.span(d, d + 1))])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = datagrams
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut headers: Vec<MMsgHdr<'_>> = iovs
        .iter()
        .zip(controls.iter_mut())
        .map(|(iov, control)| MMsgHdr::new(iov, control))
        .collect();
    Ok(sendmmsg(socket, &mut headers, SendFlags::DONTWAIT)?)
}

fn file(args: FileArgs) -> Result<()> {
    let opts = args.mix.options(Format::File)?;
    let mut mix = Mix::new(opts);
    let out: Box<dyn std::io::Write> = if args.output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.output).with_context(|| args.output.clone())?)
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut line = Vec::with_capacity(512);
    let mut failures = 0u64;
    for _ in 0..args.count {
        line.clear();
        if matches!(mix.next_into(&mut line), Kind::Failure(_)) {
            failures += 1;
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    eprintln!(
        "{}",
        json!({"lines": args.count, "sshd_failures": failures})
    );
    Ok(())
}
