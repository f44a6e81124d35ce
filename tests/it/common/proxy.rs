//! A recording HTTP proxy on loopback, to see which `Authorization` header
//! reaches which host (registries' access logs do not show it).
//!
//! Each [`RecordingProxy`] is its own host (`127.0.0.1:PORT`): it records
//! every request's method, path and `Authorization`, then answers as its
//! [`Route`] says: a redirect elsewhere, or the request passed on to an
//! upstream registry (with the proxy's own login, if given, in place of
//! the client's; upload locations in the answer optionally pointed at
//! another host). One request per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::serve::LoopbackServer;

/// What a proxy does with one request.
pub enum Route {
    /// Answer `307` with `Location: URL`.
    Redirect(String),
    /// Answer `200` with this JSON body itself (a registry feature the
    /// upstream lacks, such as the referrers API).
    Json(String),
    /// Pass it to `upstream` (`127.0.0.1:PORT`).
    Forward {
        /// The registry that answers.
        upstream: String,
        /// The `Authorization` to send there instead of the client's
        /// (`None`: the client's, if any).
        authorization: Option<String>,
        /// Point the answer's `Location` at this host instead of its own.
        location_host: Option<String>,
    },
}

/// One request a proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The client's `Authorization` header, if it sent one.
    pub authorization: Option<String>,
}

/// A proxy on a free port of 127.0.0.1; stopped on drop.
pub struct RecordingProxy {
    server: LoopbackServer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingProxy {
    /// Starts a proxy that routes each request (method, path) by `route`.
    pub fn start(route: impl Fn(&str, &str) -> Route + Send + Sync + 'static) -> RecordingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = LoopbackServer::serve(None, move |stream, _stop: &AtomicBool| {
            handle(stream, &route, &log)
        });
        RecordingProxy { server, seen }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A request's head (lines without their CRLF) and body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return Err(std::io::Error::other(
            "chunked request bodies are not proxied",
        ));
    }
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(request)
}

fn handle(
    stream: TcpStream,
    route: &(dyn Fn(&str, &str) -> Route + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // A TLS hello (a client probing for HTTPS) is hung up on at once, as
    // a plain-HTTP registry does.
    // (The server keeps a handle on the stream: shut it down, or the
    // client waits out its TLS timeout.)
    if reader.fill_buf()?.first() == Some(&0x16) {
        return stream.shutdown(Shutdown::Both);
    }
    let request = read_request(&mut reader)?;
    let mut words = request.head[0].split(' ');
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        authorization: request.header("authorization").map(str::to_owned),
    });
    let answer = match route(&method, &path) {
        Route::Redirect(url) => format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        Route::Json(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        Route::Forward {
            upstream,
            authorization,
            location_host,
        } => forward(&request, &upstream, authorization, location_host)?,
    };
    let mut stream = stream;
    stream.write_all(&answer)?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)?;
    // Drain until the client closes, briefly (closing first could reset
    // a client still sending).
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    Ok(())
}

/// Sends `request` to `upstream` and returns its whole answer, `Location`
/// rewritten to `location_host` if given.
fn forward(
    request: &Request,
    upstream: &str,
    authorization: Option<String>,
    location_host: Option<String>,
) -> std::io::Result<Vec<u8>> {
    let mut head = request.head[0].clone() + "\r\n";
    for line in request.head.iter().skip(1) {
        let key = line.split(':').next().unwrap_or("").trim().to_lowercase();
        let replaced = key == "connection" || (key == "authorization" && authorization.is_some());
        if !replaced {
            head += &format!("{line}\r\n");
        }
    }
    if let Some(value) = &authorization {
        head += &format!("Authorization: {value}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    let mut upstream = TcpStream::connect(upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(30)))?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&request.body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    let Some(location_host) = location_host else {
        return Ok(answer);
    };
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let rewritten: Vec<String> = head
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((key, value)) if key.eq_ignore_ascii_case("location") => {
                format!("{key}: {}", moved_to(value.trim(), &location_host))
            }
            _ => line.to_owned(),
        })
        .collect();
    let mut out = rewritten.join("\r\n").into_bytes();
    out.extend_from_slice(&answer[end..]);
    Ok(out)
}

/// `location` (absolute, or a path) on `host` instead.
fn moved_to(location: &str, host: &str) -> String {
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => location,
    };
    format!("http://{host}{path}")
}
