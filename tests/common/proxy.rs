//! A fault-injecting HTTP proxy between a mount and the S3 server (test code).
//!
//! It relays each client connection to its own upstream connection and reads the client's
//! requests one at a time (head, then Content-Length bytes of body). A request that matches a
//! rule is answered by the proxy instead (an S3 error status, a reset connection or a stall),
//! and both connections are closed. Responses are relayed untouched. Clients send a request
//! only after the previous response, so a fault never cuts a response in half.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this HTTP status and S3 error code.
    Status(u16, &'static str),
    /// Reset the client's connection (RST) without answering.
    Reset,
    /// Hold the request this long, then forward it.
    Stall(Duration),
}

pub type Matcher = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct Rule {
    matches: Matcher,
    fault: Fault,
    /// How many more times the rule fires (`None`: always).
    remaining: Option<usize>,
    fired: usize,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Every request seen: (method, target).
    seen: Vec<(String, String)>,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

/// Matches UploadPart requests.
pub fn upload_part(method: &str, target: &str) -> bool {
    method == "PUT" && target.contains("partNumber=") && target.contains("uploadId=")
}

/// Matches PutObject of a whole object (not a part, not a copy).
pub fn put_object(method: &str, target: &str) -> bool {
    method == "PUT" && !target.contains("uploadId=") && target.matches('/').count() >= 2
}

/// Matches GetObject.
pub fn get_object(method: &str, target: &str) -> bool {
    method == "GET" && !target.contains("list-type") && !target.contains("uploads")
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (state, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || relay(client, &upstream, &state));
            }
        });
        Self { endpoint, state }
    }

    /// Adds a rule: requests for which `matches(method, target)` holds get `fault`, `times`
    /// times (`None`: every time).
    pub fn inject(
        &self,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.state.lock().unwrap().rules.push(Rule {
            matches: Box::new(matches),
            fault,
            remaining: times,
            fired: 0,
        });
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// How many times the rules fired in total.
    pub fn fired(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.fired)
            .sum()
    }

    /// How many requests matching `pred` passed through or were faulted.
    pub fn count(&self, pred: impl Fn(&str, &str) -> bool) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(m, t)| pred(m, t))
            .count()
    }
}

fn relay(client: TcpStream, upstream: &str, state: &Mutex<State>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Responses flow back untouched.
    let (mut server_read, mut client_write) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Both);
    });
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut server_write = server;
    while let Some((head, method, target, length)) = read_head(&mut reader) {
        let fault = {
            let mut st = state.lock().unwrap();
            st.seen.push((method.clone(), target.clone()));
            let mut chosen = None;
            for rule in st.rules.iter_mut() {
                if rule.remaining != Some(0) && (rule.matches)(&method, &target) {
                    if let Some(n) = rule.remaining.as_mut() {
                        *n -= 1;
                    }
                    rule.fired += 1;
                    chosen = Some(rule.fault);
                    break;
                }
            }
            chosen
        };
        match fault {
            Some(Fault::Status(status, code)) => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
                );
                let response = format!(
                    "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut c = &client;
                let _ = c.write_all(response.as_bytes());
                let _ = client.shutdown(Shutdown::Both);
                let _ = server_write.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Reset) => {
                reset(&client);
                let _ = server_write.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Stall(d)) => std::thread::sleep(d),
            None => {}
        }
        if server_write.write_all(&head).is_err() {
            break;
        }
        let mut body = (&mut reader).take(length);
        if std::io::copy(&mut body, &mut server_write).is_err() {
            break;
        }
    }
    let _ = server_write.shutdown(Shutdown::Both);
}

/// Reads one request head; returns its bytes, method, target and Content-Length.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(Vec<u8>, String, String, u64)> {
    let mut head = Vec::new();
    let mut length = 0;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(line.as_bytes());
        if first.is_empty() {
            first = line.trim_end().to_string();
        } else if line == "\r\n" {
            break;
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            assert!(
                !(name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")),
                "the test proxy does not relay chunked request bodies"
            );
        }
    }
    let mut parts = first.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    Some((head, method, target, length))
}

/// Closes with RST: SO_LINGER on with a zero timeout.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor belongs to `stream`, alive for the call; `linger` is a valid struct of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Read);
}
