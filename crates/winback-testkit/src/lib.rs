//! Test support for winback: an SMTP sink on loopback. It speaks enough SMTP for a real client
//! (lettre) to deliver to it, records every message with its envelope, and answers each
//! recipient as a rule says: accept, a temporary 4xx refusal, or a permanent 5xx one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the sink answers a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 250.
    Accept,
    /// 450 4.2.1: try again later (a soft bounce).
    Temporary,
    /// 452 4.2.2: mailbox full (a soft bounce).
    MailboxFull,
    /// 550 5.1.1: no such user (a hard bounce).
    Permanent,
}

/// A relay-wide failure the sink can be told to answer with, at the stage real relays do:
/// none of them is about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `554 5.7.1` at the greeting: this client's address is blocked.
    Greeting,
    /// `535 5.7.8` at AUTH: wrong credentials (the sink offers AUTH PLAIN and LOGIN).
    Auth,
    /// `554 5.7.1` at MAIL FROM: the sending IP is on a blocklist.
    MailFromBlocked,
    /// `421 4.7.0` at MAIL FROM, then the connection closes: throttled.
    Throttled,
    /// `550 5.7.1` after DATA: the content was rejected.
    Content,
}

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `MAIL FROM`.
    pub from: String,
    /// Accepted `RCPT TO`s.
    pub to: Vec<String>,
    /// The message as sent, dot-unstuffed, with CRLF line ends.
    pub data: String,
    /// Its `Message-ID` header.
    pub message_id: Option<String>,
    /// When it was accepted (Unix micros).
    pub at_micros: i64,
}

type Rule = dyn Fn(&str) -> Reply + Send + Sync;

/// A running sink; it stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<Vec<(String, Reply)>>>,
    fault: Arc<Mutex<Option<Fault>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Starts a sink on 127.0.0.1 and an ephemeral port that accepts everyone.
    pub async fn start() -> std::io::Result<Self> {
        Self::with_rule(|_| Reply::Accept).await
    }

    /// Starts a sink that answers each recipient by `rule`.
    pub async fn with_rule(
        rule: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        Self::with_rule_and_delay(rule, std::time::Duration::ZERO).await
    }

    /// Like [`SmtpSink::with_rule`], taking `delay` to accept each message's data, as a busy
    /// relay does (a crash test needs sends in flight when it kills a worker).
    pub async fn with_rule_and_delay(
        rule: impl Fn(&str) -> Reply + Send + Sync + 'static,
        delay: std::time::Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(None));
        let rule: Arc<Rule> = Arc::new(rule);
        let task = {
            let (received, refused, fault) = (received.clone(), refused.clone(), fault.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (received, refused, rule, fault) = (
                        received.clone(),
                        refused.clone(),
                        rule.clone(),
                        fault.clone(),
                    );
                    tokio::spawn(async move {
                        let ctx = Session {
                            received: &received,
                            refused: &refused,
                            rule: rule.as_ref(),
                            delay,
                            fault: &fault,
                        };
                        // A client that vanishes mid-conversation (a killed worker) is normal.
                        let _ = session(stream, ctx).await;
                    });
                }
            })
        };
        Ok(Self {
            addr,
            received,
            refused,
            fault,
            task,
        })
    }

    /// From now on, answer every conversation with `fault` (or, with `None`, recover).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().expect("sink lock") = fault;
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().expect("sink lock").clone()
    }

    /// Recipients refused so far, with the reply they got.
    pub fn refused(&self) -> Vec<(String, Reply)> {
        self.refused.lock().expect("sink lock").clone()
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn angle(arg: &str) -> String {
    let s = arg.trim();
    let s = s.split_once(':').map_or(s, |(_, r)| r).trim();
    let s = s.split_whitespace().next().unwrap_or("");
    s.trim_start_matches('<').trim_end_matches('>').to_owned()
}

/// What one conversation shares with the sink.
struct Session<'a> {
    received: &'a Mutex<Vec<Received>>,
    refused: &'a Mutex<Vec<(String, Reply)>>,
    rule: &'a Rule,
    delay: std::time::Duration,
    fault: &'a Mutex<Option<Fault>>,
}

async fn session(stream: TcpStream, ctx: Session<'_>) -> std::io::Result<()> {
    let Session {
        received,
        refused,
        rule,
        delay,
        fault,
    } = ctx;
    let fault = || *fault.lock().expect("sink lock");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if fault() == Some(Fault::Greeting) {
        write
            .write_all(b"554 5.7.1 Service unavailable; client host blocked\r\n")
            .await?;
        return Ok(());
    }
    write.write_all(b"220 sink.winback.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.winback.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.winback.test\r\n"
        } else if upper.starts_with("AUTH") {
            if fault() == Some(Fault::Auth) {
                b"535 5.7.8 Authentication credentials invalid\r\n"
            } else {
                b"235 2.7.0 Authentication successful\r\n"
            }
        } else if upper.starts_with("MAIL FROM") {
            match fault() {
                Some(Fault::MailFromBlocked) => {
                    b"554 5.7.1 Sending IP listed on a blocklist\r\n" as &[u8]
                }
                Some(Fault::Throttled) => {
                    write
                        .write_all(b"421 4.7.0 Too many messages, try again later\r\n")
                        .await?;
                    return Ok(());
                }
                _ => {
                    from = angle(&line);
                    to.clear();
                    b"250 2.1.0 OK\r\n"
                }
            }
        } else if upper.starts_with("RCPT TO") {
            let rcpt = angle(&line);
            match rule(&rcpt) {
                Reply::Accept => {
                    to.push(rcpt);
                    b"250 2.1.5 OK\r\n"
                }
                r @ Reply::Temporary => {
                    refused.lock().expect("sink lock").push((rcpt, r));
                    b"450 4.2.1 Mailbox busy, try again later\r\n"
                }
                r @ Reply::MailboxFull => {
                    refused.lock().expect("sink lock").push((rcpt, r));
                    b"452 4.2.2 Mailbox full\r\n"
                }
                r @ Reply::Permanent => {
                    refused.lock().expect("sink lock").push((rcpt, r));
                    b"550 5.1.1 No such user\r\n"
                }
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                write
                    .write_all(b"554 5.5.1 No valid recipients\r\n")
                    .await?;
                continue;
            }
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    // Cut off mid-message: nothing was accepted.
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }

                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fault() == Some(Fault::Content) {
                to.clear();
                write
                    .write_all(b"550 5.7.1 Message content rejected\r\n")
                    .await?;
                continue;
            }
            let message_id = data.lines().take_while(|l| !l.is_empty()).find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id")
                    .then(|| value.trim().to_owned())
            });
            let queue_id = {
                let mut r = received.lock().expect("sink lock");
                r.push(Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                    message_id,
                    at_micros: now_micros(),
                });
                format!("SINK{:06}", r.len())
            };
            // As Postfix answers: the queue id the relay's logs know the message by.
            write
                .write_all(format!("250 2.0.0 Ok: queued as {queue_id}\r\n").as_bytes())
                .await?;
            continue;
        } else if upper == "RSET" {
            to.clear();
            b"250 2.0.0 OK\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 Command not recognised\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// Certificates and keys made the way a shop makes them: with the `openssl` command.
pub mod openssl {
    use std::path::Path;
    use std::process::Command;

    /// Runs `openssl ARGS` in `dir`; panics with its error output when it fails.
    pub fn run(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `openssl ARGS` in `dir` succeeds.
    pub fn succeeds(dir: &Path, args: &[&str]) -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed")
            .status
            .success()
    }

    /// A stand-in for Apple's WWDR intermediate (`ca.pem`, `ca.key`) and a pass type
    /// certificate it issued (`pass.pem`) for `pass.com.shop.winback`, with its key
    /// (`pass.key`) in PKCS #8 (`genpkey`) or, with `traditional`, PKCS #1 (`genrsa
    /// -traditional`) PEM: (certificate, key, WWDR) as read from the files.
    pub fn pass_certificates(dir: &Path, traditional: bool) -> (Vec<u8>, String, Vec<u8>) {
        run(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=Test WWDR/O=Test",
            ],
        );
        if traditional {
            run(dir, &["genrsa", "-traditional", "-out", "pass.key", "2048"]);
        } else {
            rsa_key(dir, "pass.key");
        }
        run(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "pass.key",
                "-out",
                "pass.csr",
                "-subj",
                "/UID=pass.com.shop.winback/CN=Pass Type ID: pass.com.shop.winback/OU=TEAM123456/O=The Shop",
            ],
        );
        run(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "pass.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "pass.pem",
                "-days",
                "30",
            ],
        );
        (
            std::fs::read(dir.join("pass.pem")).expect("pass.pem"),
            std::fs::read_to_string(dir.join("pass.key")).expect("pass.key"),
            std::fs::read(dir.join("ca.pem")).expect("ca.pem"),
        )
    }

    /// A 2048-bit RSA key in PKCS #8 PEM (`openssl genpkey`) at `dir/name`.
    pub fn rsa_key(dir: &Path, name: &str) {
        run(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                name,
            ],
        );
    }

    /// Whether `openssl cms -verify` accepts `dir/signature` as a detached DER signature of
    /// `dir/manifest.json` issued under `dir/ca.pem`.
    pub fn cms_verifies(dir: &Path) -> bool {
        succeeds(
            dir,
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "signature",
                "-content",
                "manifest.json",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        )
    }
}
