//! Retries for channel downloads (repodata and packages). rattler retries
//! a body that breaks off, but leaves answers such as 503 or 429 to the
//! client's middleware; without this, one busy answer from a channel
//! ended the build.

use std::time::Duration;

use reqwest_middleware::reqwest::{Request, Response, StatusCode, header::RETRY_AFTER};
use reqwest_middleware::{Middleware, Next};

/// Tries per request, the first included.
const ATTEMPTS: u32 = 5;
/// The longest wait between tries, even if the channel asks for more.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Middleware that sends a request again after a connection failure, a
/// 5xx or a 429, waiting as `Retry-After` asks (capped) or backing off.
pub(crate) struct Retry;

#[async_trait::async_trait]
impl Middleware for Retry {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut attempt = 1;
        loop {
            // A request whose body is a stream cannot be sent twice.
            let Some(copy) = request.try_clone() else {
                return next.run(request, extensions).await;
            };
            let result = next.clone().run(copy, extensions).await;
            let wait = match &result {
                Ok(answer) if attempt < ATTEMPTS && retryable(answer.status()) => {
                    retry_after(answer).unwrap_or_else(|| backoff(attempt))
                }
                Err(reqwest_middleware::Error::Reqwest(e))
                    if attempt < ATTEMPTS
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    backoff(attempt)
                }
                _ => return result,
            };
            tracing::info!(
                "{}: {}; trying again in {wait:?}",
                request.url(),
                match &result {
                    Ok(answer) => answer.status().to_string(),
                    Err(e) => e.to_string(),
                }
            );
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
            attempt += 1;
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.saturating_sub(1).min(6))
}

/// `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(answer: &Response) -> Option<Duration> {
    let seconds: u64 = answer
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}
