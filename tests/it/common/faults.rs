//! A fault-injecting HTTP proxy on 127.0.0.1, in front of a real server
//! (a `docker-registry`, a [`super::ChannelServer`]).
//!
//! Each connection carries one request: the proxy adds `Connection: close`
//! before forwarding it, so the upstream closes after its answer and the
//! whole answer can be read, then changed. A [`Fault`] applies to the
//! first `times` requests whose method and path match, then requests pass
//! through untouched; [`FaultProxy::injected`] lists what was done.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::LoopbackServer;

/// What the proxy does to a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The answer's head and half its body (half its head when it has no
    /// body), then a TCP reset.
    Reset,
    /// The answer's head (its `Content-Length` intact) and half its body
    /// (half its head when it has no body), then a normal close.
    Truncate,
    /// The whole answer with one byte in the middle of its body flipped.
    Flip,
    /// The answer's head and half its body (half its head when it has no
    /// body), then nothing for this long.
    Stall(Duration),
    /// Nothing for this long after the request's head: its body is not
    /// read (a large one fills the socket and blocks its sender), it is
    /// not forwarded, and no answer comes; then a close.
    Deaf(Duration),
    /// This status instead of the upstream's answer (the request is not
    /// forwarded).
    Status(u16),
    /// `429 Too Many Requests` with `Retry-After: SECONDS`.
    TooMany(u64),
    /// `307` to the same path on `base` (`http://HOST:PORT`): a blob store
    /// of its own.
    Redirect(String),
}

#[derive(Debug)]
struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    left: usize,
}

struct State {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    injected: Mutex<Vec<(String, String, String)>>,
    /// Connections in a [`Fault::Stall`] now.
    stalling: AtomicUsize,
}

/// The proxy; dropping it stops it. It keeps no handle on its
/// connections (unlike [`LoopbackServer`]): closing one must really close
/// it, or a reset would never reach the client.
pub struct FaultProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    state: Arc<State>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl FaultProxy {
    /// A proxy on a free port forwarding to `upstream` (`HOST:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            rules: Mutex::new(Vec::new()),
            injected: Mutex::new(Vec::new()),
            stalling: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut connections = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, stop) = (state.clone(), stop.clone());
                    connections.push(std::thread::spawn(move || {
                        let _ = proxy(&state, stream, &stop);
                    }));
                }
                for connection in connections {
                    let _ = connection.join();
                }
            })
        };
        FaultProxy {
            port,
            stop,
            acceptor: Some(acceptor),
            state,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests with `method` whose
    /// path contains `path_contains` (`usize::MAX`: always).
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: usize) {
        self.state.rules.lock().unwrap().push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            fault,
            left: times,
        });
    }

    /// Drops every rule: requests pass through again.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// How many connections are in a stall now: one the client gave up
    /// on is still counted until the stall's time is over.
    pub fn stalling(&self) -> usize {
        self.state.stalling.load(Ordering::SeqCst)
    }

    /// `(method, path, fault)` of every fault applied so far.
    pub fn injected(&self) -> Vec<(String, String, String)> {
        self.state.injected.lock().unwrap().clone()
    }
}

/// A server answering every request with `status` (a blob store that
/// fails), counting the requests that carried an `Authorization` header.
pub struct FailingStore {
    server: LoopbackServer,
    authorized: Arc<Mutex<usize>>,
}

impl FailingStore {
    /// Starts it.
    pub fn start(status: u16) -> FailingStore {
        let authorized = Arc::new(Mutex::new(0));
        let server = {
            let authorized = authorized.clone();
            LoopbackServer::serve(None, move |stream, _| {
                let mut reader = BufReader::new(stream.try_clone()?);
                let head = read_head(&mut reader)?;
                if head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                {
                    *authorized.lock().unwrap() += 1;
                }
                let mut stream = stream;
                stream.write_all(status_answer(status, "").as_bytes())?;
                let _ = stream.shutdown(Shutdown::Both);
                Ok(())
            })
        };
        FailingStore { server, authorized }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.server.host())
    }

    /// How many requests came with credentials.
    pub fn authorized(&self) -> usize {
        *self.authorized.lock().unwrap()
    }
}

fn status_answer(status: u16, extra_headers: &str) -> String {
    format!(
        "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\n{extra_headers}Connection: close\r\n\r\n"
    )
}

/// The request or answer head, up to the blank line (at most 64 KiB).
fn read_head(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || head.len() > 64 << 10 {
            return Err(std::io::Error::other("connection closed in the head"));
        }
        head.push_str(&line);
    }
    Ok(head)
}

fn take_fault(state: &State, method: &str, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| r.left > 0 && r.method == method && path.contains(&r.path_contains))?;
    rule.left -= 1;
    state.injected.lock().unwrap().push((
        method.to_owned(),
        path.to_owned(),
        format!("{:?}", rule.fault),
    ));
    Some(rule.fault.clone())
}

fn proxy(state: &State, client: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let head = read_head(&mut from_client)?;
    let mut words = head.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let fault = take_fault(state, &method, &path);
    match &fault {
        Some(Fault::Status(status)) => return answer_only(client, *status, ""),
        Some(Fault::TooMany(seconds)) => {
            return answer_only(client, 429, &format!("Retry-After: {seconds}\r\n"));
        }
        Some(Fault::Redirect(base)) => {
            return answer_only(client, 307, &format!("Location: {base}{path}\r\n"));
        }
        Some(Fault::Deaf(how_long)) => {
            stall(state, *how_long, stop);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        _ => {}
    }
    let mut upstream = TcpStream::connect(&state.upstream)?;
    let forwarded: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    upstream.write_all(format!("{forwarded}Connection: close\r\n\r\n").as_bytes())?;
    // The request body (any framing) goes on as it comes.
    let body_pump = {
        let mut to_upstream = upstream.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_upstream);
        })
    };
    let mut answer = Vec::new();
    // What arrived before an error is the answer: a server that answers
    // before reading a request's body may close with a reset after it.
    let _ = upstream.take(512 << 20).read_to_end(&mut answer);
    let resets = matches!(fault, Some(Fault::Reset));
    let sent = send_answer(state, &client, answer, fault, stop);
    // The pump holds a duplicate of the client's socket: end its read on
    // every path, or the client waits for an answer until its own timeout.
    // For a reset the last close is ours, with SO_LINGER 0; a shutdown of
    // the write side would send a normal FIN first.
    if resets {
        reset(&client);
        let _ = client.shutdown(Shutdown::Read);
    } else {
        let _ = client.shutdown(Shutdown::Both);
    }
    let _ = body_pump.join();
    sent
}

/// Writes `answer` to the client, changed as `fault` says.
fn send_answer(
    state: &State,
    mut client: &TcpStream,
    mut answer: Vec<u8>,
    fault: Option<Fault>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let body_at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    // An answer without a body (a 201 to an upload) loses half its head.
    let half = match body_at == answer.len() {
        true => answer.len() / 2,
        false => body_at + (answer.len() - body_at) / 2,
    };
    match fault {
        Some(Fault::Reset | Fault::Truncate) => client.write_all(&answer[..half]),
        Some(Fault::Flip) => {
            if half < answer.len() {
                answer[half] ^= 0xff;
            }
            client.write_all(&answer)
        }
        Some(Fault::Stall(how_long)) => {
            client.write_all(&answer[..half])?;
            stall(state, how_long, stop);
            Ok(())
        }
        _ => client.write_all(&answer),
    }
}

/// Sends nothing for `how_long` (or until the proxy stops), counted in
/// [`FaultProxy::stalling`].
fn stall(state: &State, how_long: Duration, stop: &AtomicBool) {
    state.stalling.fetch_add(1, Ordering::SeqCst);
    let until = Instant::now() + how_long;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    state.stalling.fetch_sub(1, Ordering::SeqCst);
}

/// Answers `status` without asking upstream, after reading what the client
/// sent so far (so the answer is not lost to a reset).
fn answer_only(mut client: TcpStream, status: u16, extra_headers: &str) -> std::io::Result<()> {
    client.write_all(status_answer(status, extra_headers).as_bytes())?;
    client.set_read_timeout(Some(Duration::from_millis(200)))?;
    let _ = std::io::copy(&mut (&client).take(64 << 20), &mut std::io::sink());
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Closes with a TCP reset (`SO_LINGER` 0) instead of a normal close.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
