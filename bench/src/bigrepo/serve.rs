//! A git server over smart HTTP on 127.0.0.1: `git http-backend` as CGI, one
//! process per request, as a stand-in for GitHub's git host. The approach of
//! the engine tests' server (`crates/engine/tests/engine/githttp.rs`), made
//! for a repository of hundreds of MB: the pack is streamed to the client as
//! `http-backend` writes it (not gathered in memory first, which would hold
//! the clone back until the whole pack is made), and a chunked request body
//! (git sends one when its request is over `http.postBuffer`) is understood.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The server; it stops when dropped.
pub struct GitHttp {
    /// `http://127.0.0.1:<port>`; a repository `<root>/<name>` is at `<url>/<name>`.
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHttp {
    /// Serves the bare repositories under `root`.
    pub async fn start(root: PathBuf) -> anyhow::Result<GitHttp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1")?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let root = root.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, root).await {
                        eprintln!("bench: git http server: {e:#}");
                    }
                });
            }
        });
        Ok(GitHttp { url, task })
    }
}

/// A request's head: method, target and headers (names in lower case).
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_head(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Option<Head>> {
    let mut first = String::new();
    if conn.read_line(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

/// The request body: by `Content-Length`, or decoded from chunks.
async fn read_body(conn: &mut BufReader<TcpStream>, head: &Head) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).await?;
            let hex = size.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(hex, 16)
                .with_context(|| format!("bad chunk size {hex:?}"))?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut line = String::new();
                    if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            conn.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf).await?;
        }
    } else {
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        body.resize(length, 0);
        conn.read_exact(&mut body).await?;
    }
    Ok(body)
}

async fn serve(conn: TcpStream, root: PathBuf) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let mut conn = BufReader::new(conn);
    let Some(head) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let body = read_body(&mut conn, &head).await?;
    let (path, query) = head
        .target
        .split_once('?')
        .unwrap_or((head.target.as_str(), ""));
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &root)
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", head.header("content-type").unwrap_or(""))
        .env(
            "HTTP_CONTENT_ENCODING",
            head.header("content-encoding").unwrap_or(""),
        )
        .env("GIT_PROTOCOL", head.header("git-protocol").unwrap_or(""))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start git http-backend")?;
    let mut stdin = child.stdin.take().context("http-backend's stdin")?;
    // Written while the answer is read: a large request must not wait for
    // http-backend to read it while http-backend waits for its output to be
    // read.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut out = BufReader::new(child.stdout.take().context("http-backend's stdout")?);
    // The CGI head: `Status:` and the headers, up to an empty line.
    let mut status = "200 OK".to_string();
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).await? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                headers.push_str(line);
                headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let mut conn = conn.into_inner();
    // No length: the body ends when the connection closes.
    let head = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await?;
    tokio::io::copy_buf(&mut out, &mut conn).await?;
    conn.shutdown().await?;
    let _ = writer.await;
    let _ = child.wait().await;
    Ok(())
}
