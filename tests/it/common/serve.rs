//! Servers on loopback, std only.
//!
//! [`LoopbackServer`] is the shared part: it binds `127.0.0.1:0`, accepts
//! on one thread, runs a handler on its own thread per connection
//! (optionally up to a number of connections), and stops and joins
//! everything on drop. The conda channel's [`ChannelServer`] and the
//! hostile registry of the image security tests are built on it.
//!
//! [`ChannelServer`] is a tiny static file server for a conda channel over
//! HTTP. It speaks just enough HTTP/1.1 for conda clients (rattler/reqwest,
//! conda's requests, curl): `GET` and `HEAD`, `Content-Length`, 404 for
//! what is not a file under the root, `Connection: close` on every answer
//! (one request per connection). No `Range`, no compression, no caching
//! headers. It records every request and can corrupt the bytes of chosen
//! files, so tests can count downloads and check that a client verifies
//! the sha256 of what it fetched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a [`LoopbackServer`] runs for each connection: the stream, and the
/// server's stop flag (set once the server is being dropped, so a handler
/// that sends for long can give up). Its errors are ignored: a client that
/// hangs up early is its own problem.
pub type ConnectionHandler = dyn Fn(TcpStream, &AtomicBool) -> std::io::Result<()> + Send + Sync;

/// A handle on each open connection (to shut it down on drop) and its
/// thread. Finished ones are pruned as new connections come in.
type Connections = Mutex<Vec<(TcpStream, JoinHandle<()>)>>;

/// A TCP server on a free port of 127.0.0.1 (never another interface) that
/// runs a handler on its own thread for each connection, at most
/// `max_connections` of them when bounded (it then stops accepting).
/// Stopped on drop: a stop flag, a wake-up connection for the blocked
/// `accept`, open connections shut down, every thread joined.
pub struct LoopbackServer {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<Connections>,
    acceptor: Option<JoinHandle<()>>,
}

impl LoopbackServer {
    /// Binds `127.0.0.1:0` and runs `handler` for every connection, or for
    /// the first `max_connections` when that is `Some`.
    pub fn serve(
        max_connections: Option<usize>,
        handler: impl Fn(TcpStream, &AtomicBool) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> LoopbackServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback server");
        let port = listener
            .local_addr()
            .expect("loopback server address")
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<ConnectionHandler> = Arc::new(handler);
        let acceptor = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::spawn(move || {
                let limit = max_connections.unwrap_or(usize::MAX);
                accept_loop(listener, limit, &stop, &connections, &handler)
            })
        };
        LoopbackServer {
            port,
            stop,
            connections,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(); the loop then sees the flag.
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // No new connections now; end the open ones (a client that went
        // quiet would otherwise hold its thread until the I/O timeout).
        let connections = std::mem::take(&mut *self.connections.lock().unwrap());
        for (stream, thread) in connections {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    limit: usize,
    stop: &Arc<AtomicBool>,
    connections: &Connections,
    handler: &Arc<ConnectionHandler>,
) {
    for stream in listener.incoming().take(limit) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let thread = {
            let (stop, handler) = (stop.clone(), handler.clone());
            std::thread::spawn(move || {
                let _ = handler(stream, &stop);
            })
        };
        let mut connections = connections.lock().unwrap();
        connections.retain(|(_, thread)| !thread.is_finished());
        connections.push((handle, thread));
    }
}

/// Read/write timeout of every served connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection is drained after the answer (so closing it does
/// not reset a client that is still sending).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head accepted (request line plus headers).
const MAX_HEAD: usize = 64 * 1024;

/// A static file server for `root` on `http://127.0.0.1:PORT/`, a
/// [`LoopbackServer`] without a bound on connections; stopped on drop (stop
/// flag, a wake-up connection for the blocked `accept`, open connections
/// shut down, every thread joined).
pub struct ChannelServer {
    server: LoopbackServer,
    state: Arc<ServerState>,
}

struct ServerState {
    root: PathBuf,
    /// `(method, path as sent, status)`, in the order answered.
    requests: Mutex<Vec<(String, String, u16)>>,
    /// Path suffixes whose files are served with one byte flipped.
    corrupt: Mutex<Vec<String>>,
}

impl ChannelServer {
    /// Serves the files under `root` (e.g. a [`super::CondaChannel`]'s
    /// `dir`) on a free port of 127.0.0.1.
    pub fn serve(root: &Path) -> ChannelServer {
        let root = std::path::absolute(root).expect("absolute server root");
        let state = Arc::new(ServerState {
            root,
            requests: Mutex::new(Vec::new()),
            corrupt: Mutex::new(Vec::new()),
        });
        let server = {
            let state = state.clone();
            LoopbackServer::serve(None, move |stream, _| serve_connection(&state, stream))
        };
        ChannelServer { server, state }
    }

    /// `http://127.0.0.1:PORT/` (with a trailing slash): the channel URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.host())
    }

    /// `127.0.0.1:PORT` (for [`super::http_request`]).
    pub fn host(&self) -> String {
        self.server.host()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Every request answered so far, oldest first: `(method, path, status)`
    /// with the path as the client sent it (query included). A request is
    /// recorded before its answer is written, so it is here by the time the
    /// client has read the answer.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many `GET`s answered 200 asked for a path (query left out) ending
    /// with `suffix`, e.g. `".conda"`, `".tar.bz2"`, `"/repodata.json"`.
    /// `HEAD`s and 404s do not count; a corrupted answer does.
    pub fn downloads(&self, suffix: &str) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(method, path, status)| {
                method == "GET" && *status == 200 && strip_query(path).ends_with(suffix)
            })
            .count()
    }

    /// From now on, serves every file whose request path (query left out)
    /// ends with `path_suffix` with the byte in the middle of its body
    /// flipped (XOR 0xff): same length and headers, different sha256 and
    /// md5. E.g. `corrupt("linux-aarch64/cd-arch-1.0-0.conda")`.
    pub fn corrupt(&self, path_suffix: &str) {
        self.state
            .corrupt
            .lock()
            .unwrap()
            .push(path_suffix.to_string());
    }

    /// Undoes [`ChannelServer::corrupt`] for `path_suffix`.
    pub fn restore(&self, path_suffix: &str) {
        self.state
            .corrupt
            .lock()
            .unwrap()
            .retain(|s| s != path_suffix);
    }
}

/// Reads one request, answers it, closes the connection.
fn serve_connection(state: &ServerState, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some((request_line, headers)) = read_head(&mut reader)? else {
        return Ok(()); // closed before a full request (e.g. the wake-up)
    };
    // GET and HEAD carry no body, but read one if sent, so closing does not
    // reset the connection under the client.
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let answer = answer(state, method, target);
    state
        .requests
        .lock()
        .unwrap()
        .push((method.to_string(), target.to_string(), answer.status));

    let mut stream = stream;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.reason,
        answer.content_type,
        answer.body.len()
    );
    if answer.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&answer.body)?;
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Write)?;
    // Drain until the client closes, briefly.
    stream.set_read_timeout(Some(DRAIN_TIMEOUT))?;
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    Ok(())
}

/// The request line and the headers (names lowercased); `None` when the
/// connection ends first.
type Head = (String, Vec<(String, String)>);

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut total = 0;
    let mut next_line = |reader: &mut dyn BufRead| -> std::io::Result<Option<String>> {
        let mut line = Vec::new();
        let read = reader.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
        total += read;
        if read == 0 || !line.ends_with(b"\n") || total > MAX_HEAD {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string()))
    };
    let Some(request_line) = next_line(reader)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let Some(line) = next_line(reader)? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some((request_line, headers)));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

struct Answer {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, reason: &'static str) -> Answer {
        Answer {
            status,
            reason,
            content_type: "text/plain",
            body: format!("{status} {reason}\n").into_bytes(),
        }
    }
}

fn answer(state: &ServerState, method: &str, target: &str) -> Answer {
    if method != "GET" && method != "HEAD" {
        return Answer::text(405, "Method Not Allowed");
    }
    let Some(path) = request_path(target) else {
        return Answer::text(400, "Bad Request");
    };
    let Some(file) = resolve(&state.root, &path) else {
        return Answer::text(404, "Not Found");
    };
    let Ok(mut body) = std::fs::read(&file) else {
        return Answer::text(404, "Not Found");
    };
    let corrupt = state
        .corrupt
        .lock()
        .unwrap()
        .iter()
        .any(|s| path.ends_with(s.as_str()));
    if corrupt && !body.is_empty() {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }
    let content_type = if path.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    Answer {
        status: 200,
        reason: "OK",
        content_type,
        body,
    }
}

fn strip_query(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or_default()
}

/// The decoded path of a request target (origin form `/a/b?q`, or absolute
/// form `http://host/a/b`); `None` when malformed.
fn request_path(target: &str) -> Option<String> {
    let mut path = strip_query(target);
    if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        path = rest.find('/').map_or("/", |slash| &rest[slash..]);
    }
    if !path.starts_with('/') {
        return None;
    }
    percent_decode(path)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The regular file `path` names under `root`; `None` for anything else
/// (missing, a directory, or a `..` escape).
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut file = root.to_path_buf();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains('\\') || s.contains('\0') => return None,
            s => file.push(s),
        }
    }
    file.is_file().then_some(file)
}
