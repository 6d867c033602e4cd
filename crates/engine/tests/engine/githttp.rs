//! A git server over smart HTTP (`git http-backend` as CGI, one connection per
//! request) that records the `Authorization` header of every request: a
//! stand-in for GitHub's git host that needs and sees the token.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The path and `Authorization` header (if any) of every request, in order.
pub type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct GitHttp {
    pub url: String,
    /// The path and `Authorization` header of every request.
    pub seen: Seen,
}

impl GitHttp {
    /// Serves the bare repositories under `root` at `http://127.0.0.1:<port>/<name>`.
    pub async fn start(root: PathBuf) -> GitHttp {
        GitHttp::serve(root, false).await
    }

    /// The same, speaking only git's protocol v0, which serves no commit that
    /// is not a branch or tag tip (as servers without
    /// `uploadpack.allowReachableSHA1InWant` do).
    pub async fn start_v0(root: PathBuf) -> GitHttp {
        GitHttp::serve(root, true).await
    }

    async fn serve(root: PathBuf, v0: bool) -> GitHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (root, log) = (root.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, root, log, v0).await;
                });
            }
        });
        GitHttp { url, seen }
    }
}

async fn serve(mut conn: TcpStream, root: PathBuf, log: Seen, v0: bool) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body = buf[end + 4..].to_vec();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    log.lock()
        .unwrap()
        .push((target.clone(), header("authorization")));
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &root)
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env(
            "GIT_PROTOCOL",
            if v0 {
                String::new()
            } else {
                header("git-protocol").unwrap_or_default()
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cgi.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await?;
    }
    let out = child.wait_with_output().await?;
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2)));
    let Some((at, skip)) = split else {
        conn.write_all(b"HTTP/1.1 500 Error\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    let cgi_head = String::from_utf8_lossy(&text[..at]).into_owned();
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for line in cgi_head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => response.push_str(&format!("{line}\r\n")),
            None => {}
        }
    }
    let body = &text[at + skip..];
    let head = format!(
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}
